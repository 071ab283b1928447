"""Router training reads the packs applied to the decision service from PostgreSQL (table
``packs``), and trains without them when the database cannot be reached."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from services.decision.training.packs import collect_packs, router_training_set, stored_packs
from switchyard import Settings
from switchyard.packs import read_pack_folder
from switchyard.stack import free_port
from switchyard.storage import connect
from tests.models.packs import expense_claims, write_pack


def test_an_unreachable_database_gives_no_stored_packs() -> None:
    said: list[str] = []
    nowhere = Settings(postgres_dsn=f"postgresql://switchyard@127.0.0.1:{free_port()}/x")
    assert stored_packs(nowhere, log=said.append) == []
    unconfigured = Settings(state_dir=Path("/nonexistent/state"))
    assert stored_packs(unconfigured, log=said.append) == []
    assert len(said) == 2 and all("stored packs not read" in s for s in said), said


async def _store(settings: Settings, tenant: str, folder: Path) -> None:
    files = {path: base64.b64encode(blob).decode() for path, blob in
             read_pack_folder(folder).items()}
    version = [line.split(": ", 1)[1] for line in (folder / "pack.yaml").read_text().splitlines()
               if line.startswith("version: ")][0]
    conn = await connect(settings)
    try:
        await conn.execute(
            "INSERT INTO packs (tenant_id, name, version, digest, files, applied_by) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, 'test')", tenant, folder.name, version,
            "d" * 64, json.dumps(files))
    finally:
        await conn.close()


@pytest.mark.integration
def test_stored_packs_are_classes_with_their_newest_examples(settings: Settings,
                                                              tmp_path: Path) -> None:
    old = write_pack(tmp_path / "old", "expense_claim", ["an old claim example"])
    new = write_pack(tmp_path / "new", "expense_claim", expense_claims(5, seed=3))
    (new / "pack.yaml").write_text((new / "pack.yaml").read_text().replace(
        "version: 1.0.0", "version: 1.2.0"))
    shared = write_pack(tmp_path / "shared", "purchase_order", ["PO 1: 3 chairs"])
    asyncio.run(_store(settings, "acme", old))
    asyncio.run(_store(settings, "acme", new))
    asyncio.run(_store(settings, "", shared))

    found = {p.name: p for p in stored_packs(settings, log=lambda *_: None)}
    assert set(found) == {"expense_claim", "purchase_order"}
    assert found["expense_claim"].examples == tuple(expense_claims(5, seed=3))  # newest only
    assert found["expense_claim"].version == "acme:1.2.0"
    assert found["purchase_order"].version == "shared:1.0.0"
    assert found["expense_claim"].source == "postgresql"

    tset = router_training_set(collect_packs(builtin=False, stored=list(found.values())), [])
    assert tset.classes == ("expense_claim", "purchase_order", "other")
    assert tset.class_examples() == {"expense_claim": 5, "purchase_order": 1, "other": 0}
