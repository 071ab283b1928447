"""The payload codec: sealed per column and row, plaintext passthrough, lazy re-wrapping."""

from __future__ import annotations

import base64
import os
import uuid

import pytest

from switchyard import Settings
from switchyard.storage import (
    DEAD_LETTER_VALUE,
    MAGIC,
    PLAINTEXT,
    REVIEW_ESCALATION,
    CryptoError,
    PayloadError,
    codec_for,
    key_id,
)

K1, K2 = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
TASK = str(uuid.uuid4())
SECRET = b"IBAN DE89 3704 0044 0532 0130 00"


def codec(keys: str = f"k1:{K1}", active: str = "k1"):  # type: ignore[no-untyped-def]
    return codec_for(Settings(encryption_keys=keys, encryption_active_key=active))


def test_off_passes_plaintext_through() -> None:
    off = codec("", "")
    assert not off.enabled and off == PLAINTEXT
    assert off.seal(TASK, SECRET) == SECRET
    assert off.open(TASK, SECRET) == SECRET
    assert off.refresh(TASK, SECRET) is None


def test_sealed_blob_is_bound_to_its_row_and_column() -> None:
    on = codec()
    blob = on.seal(TASK, SECRET)
    assert blob.startswith(MAGIC) and SECRET not in blob and key_id(blob) == "k1"
    assert on.open(TASK, blob) == SECRET
    assert on.open(uuid.UUID(TASK), blob) == SECRET  # asyncpg hands back UUIDs
    other = str(uuid.uuid4())
    with pytest.raises(PayloadError, match=f"tasks.envelope of {other}.*authentication"):
        on.open(other, blob)
    with pytest.raises(PayloadError, match="review_items.escalation"):
        on.open(TASK, blob, REVIEW_ESCALATION)
    with pytest.raises(PayloadError, match="ENCRYPTION_KEYS is empty"):
        codec("", "").open(TASK, blob)


def test_plaintext_rows_from_before_encryption_still_open() -> None:
    on = codec()
    assert on.open(TASK, SECRET) == SECRET
    sealed = on.refresh(TASK, SECRET, DEAD_LETTER_VALUE)
    assert sealed is not None and on.open(TASK, sealed, DEAD_LETTER_VALUE) == SECRET


def test_rotation_rewraps_only_stale_blobs() -> None:
    old = codec().seal(TASK, SECRET)
    rotated = codec(f"k1:{K1},k2:{K2}", "k2")
    assert rotated.open(TASK, old) == SECRET and rotated.stale(old)
    fresh = rotated.refresh(TASK, old)
    assert fresh is not None and key_id(fresh) == "k2" and not rotated.stale(fresh)
    assert rotated.refresh(TASK, fresh) is None
    assert codec(f"k2:{K2}", "k2").open(TASK, fresh) == SECRET
    with pytest.raises(PayloadError, match="unknown key id 'k1'"):
        codec(f"k2:{K2}", "k2").open(TASK, old)
    with pytest.raises(PayloadError, match="re-wrap"):  # a moved blob is never re-keyed
        rotated.refresh(str(uuid.uuid4()), old)


def test_built_once_per_configuration_and_validated() -> None:
    assert codec() is codec()
    with pytest.raises(CryptoError, match="base64"):
        codec("k1:not base64!!", "k1")
    with pytest.raises(CryptoError, match="kid:base64key"):
        codec("nokey", "")
    with pytest.raises(CryptoError, match="not among"):
        codec(f"k1:{K1}", "k9")


def test_corrupt_blobs_fail_as_crypto_errors() -> None:
    on = codec()
    blob = on.seal(TASK, SECRET)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    for broken in (MAGIC, MAGIC + b"\x05\xff\xfe", blob[:30], tampered):
        with pytest.raises(CryptoError):
            on.open(TASK, broken)
    with pytest.raises(CryptoError):
        codec(f"k1:{K2}", "k1").refresh(TASK, codec(f"k0:{K1}", "k0").seal(TASK, SECRET))
