"""A new pack's type reaches a running system without a restart: `switchyard models train
--packs ... --reload` retrains the router with the new class, the running Triton loads it, and
the decision service's router client (already holding the old class list) routes the new type
on its next prediction."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.decision.training import datagen, train
from services.decision.training.__main__ import main as cli
from services.decision.training.packs import collect_packs
from services.decision.pools import new_breaker
from services.decision.triton import RouterClient
from switchyard import Settings
from switchyard.stack import EmbeddedStack, with_free_ports
from tests.models.packs import CORPUS_KINDS, expense_claims, write_pack

pytestmark = pytest.mark.integration

TRACKED = Path(__file__).resolve().parents[2] / "models" / "repository"


async def test_a_retrained_router_is_loaded_and_routes_the_new_type(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, repo, packs_dir = tmp_path / "data", tmp_path / "repository", tmp_path / "packs"
    datagen.write_corpora(data, seed=11, router_n=400, invoice_n=200)
    for tracked in ("document_router/1/model.py", "invoice_risk/config.pbtxt",
                    "invoice_risk/1/model.py"):   # what a checkout ships beside the weights
        (repo / tracked).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TRACKED / tracked, repo / tracked)
    dirs = [write_pack(packs_dir, kind) for kind in CORPUS_KINDS]
    args = ["--data-dir", str(data), "--repository", str(repo), "--seed", "5",
            "--no-shipped-packs", "--no-stored-packs"]
    assert cli([*args, "--packs", *map(str, dirs)]) == 0

    settings = with_free_ports(Settings(state_dir=tmp_path / "state"))
    with EmbeddedStack(settings, tmp_path / "state", components=("triton",),
                       model_repository=repo) as stack:
        client = RouterClient(stack.settings.triton_url, 30, new_breaker("t", 5, 10), "1")
        claims = expense_claims(20, seed=2)
        try:
            await client.predict(claims)
            assert client.classes == [*CORPUS_KINDS, "other"]

            dirs.append(write_pack(packs_dir, "expense_claim", expense_claims(90, seed=1)))
            monkeypatch.setenv("SWITCHYARD_TRITON_URL", stack.settings.triton_url)
            assert cli([*args, "--packs", *map(str, dirs), "--reload"]) == 0

            after = await client.predict(claims)
        finally:
            await client.close()
    assert client.classes == [*CORPUS_KINDS, "expense_claim", "other"]
    assert sum(p.label == "expense_claim" for p in after) >= 18, [p.label for p in after]
    assert all(set(p.scores) == set(client.classes) for p in after)
    assert train.artifacts_status(data, repo, 5, collect_packs(dirs, builtin=False)) is None
