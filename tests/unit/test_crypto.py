"""AES-GCM envelopes: round trip, bound to their row, rotation by re-wrapping the data key."""

from __future__ import annotations

import base64
import os

import pytest

from switchyard.storage import CryptoError, Keyring, is_encrypted


def keyring(active: str = "k1") -> Keyring:
    return Keyring({"k1": b"\x01" * 32, "k2": b"\x02" * 32}, active)


def test_round_trip_and_row_binding() -> None:
    blob = keyring().encrypt(b"IBAN DE89...", b"task-1")
    assert is_encrypted(blob) and b"IBAN" not in blob
    assert keyring().decrypt(blob, b"task-1") == b"IBAN DE89..."
    with pytest.raises(CryptoError, match="authentication"):
        keyring().decrypt(blob, b"task-2")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(CryptoError, match="authentication"):
        keyring().decrypt(tampered, b"task-1")


def test_rotation_rewraps_lazily() -> None:
    old = keyring("k1").encrypt(b"payload", b"t")
    rotated = keyring("k2")
    assert rotated.decrypt(old, b"t") == b"payload"
    assert rotated.needs_rewrap(old)
    fresh = rotated.rewrap(old)
    assert not rotated.needs_rewrap(fresh)
    assert fresh.endswith(old[-(len(b"payload") + 16):])  # ciphertext untouched
    only_new = Keyring({"k2": b"\x02" * 32}, "k2")
    assert only_new.decrypt(fresh, b"t") == b"payload"
    with pytest.raises(CryptoError, match="unknown key id 'k1'"):
        only_new.decrypt(old, b"t")


def test_setting_parsing() -> None:
    spec = f"a:{base64.b64encode(os.urandom(32)).decode()},b:{base64.b64encode(os.urandom(32)).decode()}"
    ring = Keyring.from_setting(spec, "b")
    assert ring is not None and ring.active == "b"
    assert Keyring.from_setting("", "") is None
    with pytest.raises(CryptoError, match="32 bytes"):
        Keyring.from_setting("a:" + base64.b64encode(b"short").decode(), "a")
    with pytest.raises(CryptoError, match="not among"):
        Keyring.from_setting(spec, "zzz")
