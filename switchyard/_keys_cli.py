"""``switchyard keys``: which encryption keys the stored payloads use, and re-wrapping them.

Retiring a key: make the new key active (keep the old one configured), run
``switchyard keys rewrap``, check ``switchyard keys status`` shows no row under the old id,
then remove it from ``SWITCHYARD_ENCRYPTION_KEYS``. Re-wrapping replaces only each blob's
wrapped data key, so it is cheap; it also seals plaintext rows written before encryption was
switched on.
"""

from __future__ import annotations

import asyncio
import sys

from switchyard._crypto import CryptoError
from switchyard._db import create_pool
from switchyard._payloads import COLUMNS, codec_for, key_usage, rewrap_column
from switchyard._settings import Settings


def status(settings: Settings) -> int:
    """Rows per key id in every payload column."""
    try:
        codec = codec_for(settings)
    except CryptoError as exc:
        print(f"switchyard keys status: {exc}", file=sys.stderr)
        return 2
    active = codec.keyring.active if codec.keyring is not None else "(encryption off)"

    async def run() -> None:
        pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=1))
        try:
            async with pool.acquire() as conn:
                print(f"active key: {active}")
                for column in COLUMNS:
                    usage = await key_usage(conn, column)
                    shown = ", ".join(f"{kid}={n}" for kid, n in usage.items()) or "empty"
                    print(f"{column.name:<30} {shown}")
        finally:
            await pool.close()

    asyncio.run(run())
    return 0


def rewrap(settings: Settings, batch: int, dry_run: bool) -> int:
    """Re-wrap every payload not under the active key; 1 if some row could not be opened."""
    try:
        codec = codec_for(settings)
    except CryptoError as exc:
        print(f"switchyard keys rewrap: {exc}", file=sys.stderr)
        return 2
    if not codec.enabled:
        print("switchyard keys rewrap: encryption at rest is off "
              "(SWITCHYARD_ENCRYPTION_KEYS is empty)", file=sys.stderr)
        return 2
    if batch < 1:
        print("switchyard keys rewrap: --batch must be >= 1", file=sys.stderr)
        return 2

    async def run() -> int:
        pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=1))
        failed = 0
        try:
            async with pool.acquire() as conn:
                for column in COLUMNS:
                    report = await rewrap_column(conn, codec, column, batch, dry_run)
                    failed += report.failed
                    verb = "would re-wrap" if dry_run else "re-wrapped"
                    print(f"{column.name:<30} {verb} {report.rewrapped}, "
                          f"unreadable {report.failed}")
        finally:
            await pool.close()
        return failed

    failed = asyncio.run(run())
    if failed:
        print(f"switchyard keys rewrap: {failed} row(s) could not be opened with the configured "
              "keys (see the log); keep their key configured", file=sys.stderr)
        return 1
    return 0


__all__ = ["rewrap", "status"]
