"""Encryption at rest for payloads: AES-256-GCM envelopes with key ids, rotated lazily.

Each payload gets its own random data key; the data key is wrapped by a key-encryption key
(KEK) named by its id. Rotating the KEK means adding a new one and making it active: old
blobs still decrypt (their KEK id is in the header) and :meth:`Keyring.rewrap` re-wraps just the
32-byte data key when a blob is next touched, so no bulk re-encryption job is needed.

Blob layout: ``b"SYE1" | len(kid) (1 byte) | kid | wrap nonce (12) | wrapped DEK (48)
| data nonce (12) | ciphertext+tag``. The task id is bound as associated data, so a blob
copied onto another row fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"SYE1"
_WRAPPED_DEK_LEN = 32 + 16


class CryptoError(ValueError):
    pass


@dataclass(frozen=True)
class Header:
    kid: str
    wrap_nonce: bytes
    wrapped_dek: bytes
    data_nonce: bytes
    body_offset: int


def _parse(blob: bytes) -> Header:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 1:
        raise CryptoError("not an encrypted payload (missing SYE1 header)")
    kid_len = blob[len(MAGIC)]
    pos = len(MAGIC) + 1
    try:
        kid = blob[pos:pos + kid_len].decode()
    except UnicodeDecodeError:
        raise CryptoError("corrupt encrypted payload (key id is not UTF-8)") from None
    pos += kid_len
    wrap_nonce = blob[pos:pos + 12]
    pos += 12
    wrapped = blob[pos:pos + _WRAPPED_DEK_LEN]
    pos += _WRAPPED_DEK_LEN
    data_nonce = blob[pos:pos + 12]
    pos += 12
    if len(data_nonce) != 12:
        raise CryptoError("truncated encrypted payload")
    return Header(kid, wrap_nonce, wrapped, data_nonce, pos)


class Keyring:
    """KEKs by id; ``active`` encrypts, every known id decrypts."""

    def __init__(self, keys: dict[str, bytes], active: str) -> None:
        if active not in keys:
            raise CryptoError(f"active key id {active!r} is not among the configured keys")
        for kid, key in keys.items():
            if len(key) != 32:
                raise CryptoError(f"key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
            if not 0 < len(kid.encode()) < 256:
                raise CryptoError("key ids must be 1-255 bytes")
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self.active = active

    @classmethod
    def from_setting(cls, spec: str, active: str) -> Keyring | None:
        """``kid:base64key,kid2:base64key``; empty means encryption at rest is off (and then
        an active key id is a mistake: it names a key that is not configured)."""
        if not spec.strip():
            if active.strip():
                raise CryptoError(f"SWITCHYARD_ENCRYPTION_ACTIVE_KEY names key {active!r} but "
                                  "SWITCHYARD_ENCRYPTION_KEYS is empty (encryption at rest "
                                  "off)")
            return None
        keys = {}
        for entry in spec.split(","):
            kid, sep, encoded = entry.strip().partition(":")
            if not sep:
                raise CryptoError("SWITCHYARD_ENCRYPTION_KEYS entries must be 'kid:base64key'")
            try:
                keys[kid] = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise CryptoError(f"SWITCHYARD_ENCRYPTION_KEYS: key {kid!r} is not valid "
                                  "base64") from None
        return cls(keys, active or next(iter(keys)))

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        dek = AESGCM.generate_key(bit_length=256)
        wrap_nonce, data_nonce = os.urandom(12), os.urandom(12)
        kid = self.active.encode()
        wrapped = self._keys[self.active].encrypt(wrap_nonce, dek, kid)
        body = AESGCM(dek).encrypt(data_nonce, plaintext, context)
        return MAGIC + bytes([len(kid)]) + kid + wrap_nonce + wrapped + data_nonce + body

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        header = _parse(blob)
        kek = self._keys.get(header.kid)
        if kek is None:
            raise CryptoError(f"payload encrypted with unknown key id {header.kid!r}")
        try:
            dek = kek.decrypt(header.wrap_nonce, header.wrapped_dek, header.kid.encode())
            return AESGCM(dek).decrypt(header.data_nonce, blob[header.body_offset:], context)
        except Exception as exc:  # InvalidTag: wrong key, wrong row, or tampered
            raise CryptoError("payload failed authentication (wrong key, row or tampered)") \
                from exc

    def needs_rewrap(self, blob: bytes) -> bool:
        return _parse(blob).kid != self.active

    def rewrap(self, blob: bytes) -> bytes:
        """Re-wrap the data key with the active KEK; the payload ciphertext is untouched."""
        header = _parse(blob)
        kek = self._keys.get(header.kid)
        if kek is None:
            raise CryptoError(f"payload encrypted with unknown key id {header.kid!r}")
        try:
            dek = kek.decrypt(header.wrap_nonce, header.wrapped_dek, header.kid.encode())
        except Exception as exc:  # InvalidTag: wrong key material under that id, or tampered
            raise CryptoError("payload data key failed authentication (wrong key or "
                              "tampered)") from exc
        kid = self.active.encode()
        wrap_nonce = os.urandom(12)
        wrapped = self._keys[self.active].encrypt(wrap_nonce, dek, kid)
        return (MAGIC + bytes([len(kid)]) + kid + wrap_nonce + wrapped + header.data_nonce
                + blob[header.body_offset:])


def is_encrypted(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


def key_id(blob: bytes) -> str:
    """The id of the KEK that wraps ``blob``'s data key (raises on a plaintext blob)."""
    return _parse(blob).kid


def header_prefix(kid: str) -> bytes:
    """The first bytes of every blob wrapped by ``kid``: lets SQL find rows under other keys."""
    raw = kid.encode()
    return MAGIC + bytes([len(raw)]) + raw


__all__ = ["MAGIC", "CryptoError", "Keyring", "header_prefix", "is_encrypted", "key_id"]
