"""Model rollouts through the running decision service: a canary of router version 2 decides
its share of one tenant's tasks (the same tasks whichever replica or delivery), each side's
decisions are counted, reviewers' verdicts judge each side, and the judge promotes it on the
thresholds; an admin rolls a later canary back; bad requests are refused field by field;
every step is in the audit log. A canary that automates one group of a pack's protected
attribute more than another is rolled back, and such a candidate is not promoted."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from services.decision.fairness import group_names, record, sample_rows
from services.decision.labels import record_pending, record_verdicts
from services.decision.model_admin import ModelRollouts
from services.decision.rollouts import Evidence, Rollout, Thresholds, judge
from switchyard import Settings
from switchyard.packs import builtin_packs
from switchyard.privacy import matching_key
from switchyard.rpc import create_channel, field_violations
from switchyard.stack import EmbeddedStack
from switchyard.storage import DECISION, PLAINTEXT, codec_for, connect, create_pool
from switchyard.v1 import (
    Decision,
    DecisionOutcome,
    DecisionServiceStub,
    DecisionSource,
    Document,
    IngestServiceStub,
    ListRolloutsRequest,
    PromoteModelRequest,
    RolloutStage,
    StartRolloutRequest,
    Submission,
    SubmitTaskRequest,
)
from tests.decision.documents import heldout
from tests.polling import eventually
from tests.review.helpers import switchyard
from tests.services import running

pytestmark = pytest.mark.integration
ROUTER = "document_router"
TENANT = "canaryco"


@pytest.fixture(scope="module")
def rollout_settings(settings: Settings) -> Settings:
    # a judge that acts on little evidence and only on reviewers' agreement, every half second
    return settings.replace(rollout_refresh_s=0.5, rollout_min_decisions=3,
                            rollout_min_verdicts=2, rollout_max_escalation_increase=1.0,
                            rollout_max_agreement_drop=0.2)


@pytest.fixture(scope="module")
def services(rollout_settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    with running(rollout_settings, tmp_path_factory.mktemp("rollouts"),
                 ("ingest", "decision")) as stack:
        yield stack


@pytest.fixture
async def db(rollout_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(rollout_settings)
    yield conn
    await conn.close()


@pytest.fixture
async def stubs(rollout_settings: Settings, services: EmbeddedStack
                ) -> AsyncIterator[tuple[DecisionServiceStub, IngestServiceStub]]:
    decide = create_channel(f"127.0.0.1:{rollout_settings.decision_grpc_port}")
    ingest = create_channel(f"127.0.0.1:{rollout_settings.ingest_grpc_port}")
    yield DecisionServiceStub(decide), IngestServiceStub(ingest)
    await decide.close()
    await ingest.close()


def _card_version(directory: str) -> str:
    root = Path(__file__).resolve().parents[2] / "models" / "repository" / ROUTER
    return json.loads((root / directory / "model_card.json").read_text())["version"]


async def _decided(settings: Settings, db: asyncpg.Connection, ingest: IngestServiceStub,
                   tenant: str, texts: list[str]) -> dict[str, str]:
    """Submit ``texts`` for ``tenant``; task id -> the router version its decision names."""
    ids = [(await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
        tenant_id=tenant, idempotency_key=uuid.uuid4().hex,
        document=Document(content_type="text/plain", body=text.encode()))))).task_id
        for text in texts]

    async def stored() -> list[asyncpg.Record] | None:
        rows = await db.fetch("SELECT decision_id, decision FROM decisions WHERE task_id = "
                              "ANY($1::uuid[]) AND source = 'MODEL'", ids)
        return rows if len(rows) == len(ids) else None
    codec = codec_for(settings)
    versions = {}
    for row in await eventually(stored, f"{len(ids)} decisions", 90, 0.2):
        decision = Decision.FromString(codec.open(row["decision_id"], row["decision"],
                                                  DECISION))
        versions[decision.task_id] = next(m.model_version for m in decision.models
                                          if m.model_name == ROUTER)
    return versions


async def _verdicts(settings: Settings, db: asyncpg.Connection, versions: dict[str, str],
                    agree: bool) -> None:
    """Reviewers' verdicts on escalations of these tasks, as the decisions topic brings them
    (the labels' own functions): the router was right, or not."""
    model, people = [], []
    for task_id, version in versions.items():
        escalated = Decision(task_id=task_id, tenant_id=TENANT, label="support_ticket",
                             rule="low_confidence", confidence=0.5,
                             outcome=DecisionOutcome.DECISION_OUTCOME_ESCALATE)
        escalated.models.add(model_name=ROUTER, model_version=version, label="support_ticket",
                             confidence=0.5, scores={"support_ticket": 0.5, "other": 0.5})
        model.append((escalated, "text"))
        people.append(Decision(task_id=task_id, tenant_id=TENANT, rule="reviewer_approve",
                               label="support_ticket" if agree else "other",
                               source=DecisionSource.DECISION_SOURCE_HUMAN,
                               outcome=DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE
                               if agree else DecisionOutcome.DECISION_OUTCOME_REJECT))
        people[-1].rule = "reviewer_approve" if agree else "reviewer_reject"
    await db.execute("DELETE FROM decision_labels WHERE task_id = ANY($1::uuid[])",
                     list(versions))
    await record_pending(db, model, PLAINTEXT)
    pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=1))
    try:
        await record_verdicts(pool, people, PLAINTEXT)
    finally:
        await pool.close()


async def test_a_canary_decides_its_share_is_judged_and_promoted_then_one_is_rolled_back(
        rollout_settings: Settings, stubs: tuple[DecisionServiceStub, IngestServiceStub],
        db: asyncpg.Connection) -> None:
    decide, ingest = stubs
    v1, v2 = _card_version("1"), _card_version("2")
    listed = {r.model_name: r for r in (await decide.ListRollouts(ListRolloutsRequest())
                                        ).rollouts}
    # the settings' state: version 1 live, version 2 its shadow; the invoice pack's scorer
    assert (listed[ROUTER].live_version, listed[ROUTER].candidate_version,
            listed[ROUTER].stage) == ("1", "2", RolloutStage.ROLLOUT_STAGE_SHADOW)
    assert "invoice_risk" in listed

    started = (await decide.StartRollout(StartRolloutRequest(
        model_name=ROUTER, candidate_version="2", stage=RolloutStage.ROLLOUT_STAGE_CANARY,
        canary_share=0.5, tenants=[TENANT]))).rollout
    assert (started.stage, started.canary_share, list(started.tenants)) == (
        RolloutStage.ROLLOUT_STAGE_CANARY, 0.5, [TENANT])
    canary = Rollout(ROUTER, "1", "2", "CANARY", 0.5, (TENANT,))

    texts = [r["text"] for r in heldout()[100:124]]
    versions = await _decided(rollout_settings, db, ingest, TENANT, texts)
    # the hash of the task id chose, the same way the service did
    for task_id, version in versions.items():
        assert version == (v2 if canary.canary_takes(TENANT, task_id) else v1), task_id
    took = [t for t, v in versions.items() if v == v2]
    assert 0 < len(took) < len(versions)
    # another tenant's tasks stay with the live version
    assert set((await _decided(rollout_settings, db, ingest, "otherco", texts[:4])).values()
               ) == {v1}

    async def counted() -> tuple[int, int] | None:
        (router,) = [r for r in (await decide.ListRollouts(ListRolloutsRequest())).rollouts
                     if r.model_name == ROUTER]
        got = (router.candidate.decisions, router.live.decisions)
        return got if got == (len(took), len(versions) - len(took)) else None
    await eventually(counted, "each side's decisions counted", 30, 0.3)
    still = (await decide.ListRollouts(ListRolloutsRequest())).rollouts
    assert [r.stage for r in still if r.model_name == ROUTER] == [
        RolloutStage.ROLLOUT_STAGE_CANARY]   # no verdicts yet: the judge waits

    # reviewers agree with both sides: the judge promotes the candidate
    await _verdicts(rollout_settings, db, versions, agree=True)

    async def promoted() -> object:
        (router,) = [r for r in (await decide.ListRollouts(ListRolloutsRequest())).rollouts
                     if r.model_name == ROUTER]
        return router if router.live_version == "2" else None
    router = await eventually(promoted, "the judge to promote version 2", 30, 0.3)
    assert router.stage == RolloutStage.ROLLOUT_STAGE_NONE and not router.candidate_version
    assert router.updated_by == "rollout-judge" and "agreement with reviewers" in router.note
    assert set((await _decided(rollout_settings, db, ingest, "otherco", texts[4:8])
                ).values()) == {v2}   # every tenant now

    # a canary of version 1 that reviewers disagree with: rolled back by the judge
    await decide.StartRollout(StartRolloutRequest(
        model_name=ROUTER, candidate_version="1", stage=RolloutStage.ROLLOUT_STAGE_CANARY,
        canary_share=0.5, tenants=[TENANT]))
    # until each side has decided enough tasks to be judged (the task id's hash picks the
    # side: twelve tasks left one side under rollout_min_decisions about once in 25 runs)
    again: dict[str, str] = {}
    more = texts[8:] + [r["text"] for r in heldout()[124:164]]
    for start in range(0, len(more), 4):
        again.update(await _decided(rollout_settings, db, ingest, TENANT, more[start:start + 4]))
        sides = Counter(again.values())
        if len(again) >= 12 and min(sides[v1], sides[v2]) >= 3:
            break
    await _verdicts(rollout_settings, db, {t: v for t, v in again.items() if v == v2}, True)
    await _verdicts(rollout_settings, db, {t: v for t, v in again.items() if v == v1}, False)

    async def rolled_back() -> object:
        (router,) = [r for r in (await decide.ListRollouts(ListRolloutsRequest())).rollouts
                     if r.model_name == ROUTER]
        return router if router.stage == RolloutStage.ROLLOUT_STAGE_NONE else None
    router = await eventually(rolled_back, "the judge to roll back version 1", 30, 0.3)
    assert router.live_version == "2" and "agreement with reviewers" in router.note

    # by hand, from the command line: shadow version 1 again, and roll it back
    code, out = await switchyard(rollout_settings, "models", "shadow", ROUTER, "--version", "1")
    assert code == 0 and "version 1 shadows live 2" in out, out
    code, out = await switchyard(rollout_settings, "models", "rollback", ROUTER, "--reason",
                                 "not needed")
    assert code == 0, out
    code, out = await switchyard(rollout_settings, "models", "rollouts", "--json")
    assert code == 0, out
    (back,) = [r for r in json.loads(out)["rollouts"] if r["model"] == ROUTER]
    assert (back["live_version"], back["stage"], back["note"]) == ("2", "NONE", "not needed")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await decide.PromoteModel(PromoteModelRequest(model_name=ROUTER))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # no candidate

    actions = [r["action"] for r in await db.fetch(
        "SELECT action FROM audit_log WHERE action LIKE 'model.%' ORDER BY entry_id")]
    assert actions == ["model.rollout_replaced", "model.rollout_started", "model.promoted",
                       "model.rollout_started", "model.rolled_back", "model.rollout_started",
                       "model.rolled_back"], actions
    detail = await db.fetchval("SELECT detail FROM audit_log WHERE action = 'model.promoted'")
    assert json.loads(detail)["automatic"] is True


@pytest.mark.parametrize(("request_", "fields"), [
    (StartRolloutRequest(model_name=ROUTER, candidate_version="2",
                         stage=RolloutStage.ROLLOUT_STAGE_CANARY, canary_share=0.9),
     {"canary_share"}),
    (StartRolloutRequest(model_name=ROUTER, candidate_version="two",
                         stage=RolloutStage.ROLLOUT_STAGE_SHADOW), {"candidate_version"}),
    (StartRolloutRequest(model_name="no_such_model", candidate_version="2",
                         stage=RolloutStage.ROLLOUT_STAGE_SHADOW), {"model_name"}),
    (StartRolloutRequest(model_name=ROUTER, candidate_version="2"), {"stage"}),
    (StartRolloutRequest(), {"model_name", "stage", "candidate_version"}),
])
async def test_bad_rollout_requests_are_refused_field_by_field(
        stubs: tuple[DecisionServiceStub, IngestServiceStub], request_: StartRolloutRequest,
        fields: set[str]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs[0].StartRollout(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == fields


async def test_a_version_triton_does_not_serve_is_refused(
        stubs: tuple[DecisionServiceStub, IngestServiceStub]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs[0].StartRollout(StartRolloutRequest(
            model_name=ROUTER, candidate_version="7", stage=RolloutStage.ROLLOUT_STAGE_SHADOW))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not served by Triton" in (caught.value.details() or "")


async def _skewed_samples(settings: Settings, db: asyncpg.Connection, version: str) -> None:
    """Admissions the candidate decided: every woman's without a person, no man's."""
    pack = builtin_packs()["hospital_admission"]
    key = matching_key(settings)
    rows = []
    for sex, automated in (("female", True), ("male", False)):
        for _ in range(settings.fairness_min_group_samples):
            decision = Decision(task_id=str(uuid.uuid4()), tenant_id=TENANT,
                                outcome=DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE
                                if automated else DecisionOutcome.DECISION_OUTCOME_ESCALATE)
            decision.models.add(model_name=ROUTER, model_version=version)
            rows += sample_rows([(decision, pack, {"sex": sex})], key)
    await record(db, rows)


async def test_the_fairness_gate_rolls_back_a_canary_and_refuses_a_promotion(
        rollout_settings: Settings, stubs: tuple[DecisionServiceStub, IngestServiceStub],
        db: asyncpg.Connection) -> None:
    decide, ingest = stubs
    # hospital admissions decided on the Kafka path leave their group, hashed
    texts = [r["text"] for r in heldout() if r["label"] == "hospital_admission"][:6]
    decided = await _decided(rollout_settings, db, ingest, "fairco", texts)
    groups = {r["group_hash"] for r in await db.fetch(
        "SELECT group_hash FROM decision_fairness_samples WHERE task_id = ANY($1::uuid[]) "
        "AND pack = 'hospital_admission' AND attribute = 'sex'", list(decided))}
    names = group_names(matching_key(rollout_settings), builtin_packs()["hospital_admission"],
                        "sex")
    assert groups and groups <= set(names), (groups, names)

    listed = {r.model_name: r for r in (await decide.ListRollouts(ListRolloutsRequest())
                                        ).rollouts}
    live = listed[ROUTER].live_version
    other = "1" if live == "2" else "2"
    candidate_name = _card_version(other)
    # a canary that automates one sex's admissions and not the other's: rolled back
    await decide.StartRollout(StartRolloutRequest(
        model_name=ROUTER, candidate_version=other, stage=RolloutStage.ROLLOUT_STAGE_CANARY,
        canary_share=0.1, tenants=["fairco"]))
    await _skewed_samples(rollout_settings, db, candidate_name)

    async def rolled_back() -> object:
        (router,) = [r for r in (await decide.ListRollouts(ListRolloutsRequest())).rollouts
                     if r.model_name == ROUTER]
        return router if router.stage == RolloutStage.ROLLOUT_STAGE_NONE else None
    router = await eventually(rolled_back, "the fairness gate to roll the canary back", 30, 0.3)
    assert router.live_version == live and router.note.startswith("fairness: ")
    assert "hospital_admission.sex: demographic parity difference 1.000" in router.note
    assert "female 100%" in router.note and "male 0%" in router.note

    # the same candidate as a shadow, with the same record: an operator may not promote it
    await decide.StartRollout(StartRolloutRequest(
        model_name=ROUTER, candidate_version=other, stage=RolloutStage.ROLLOUT_STAGE_SHADOW))
    await _skewed_samples(rollout_settings, db, candidate_name)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await decide.PromoteModel(PromoteModelRequest(model_name=ROUTER))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "refused by the fairness gate" in (caught.value.details() or "")
    code, out = await switchyard(rollout_settings, "models", "rollback", ROUTER)
    assert code == 0, out


def test_the_judge_rolls_back_on_the_first_broken_threshold_and_promotes_on_evidence() -> None:
    t = Thresholds(min_decisions=100, min_verdicts=10, max_error_rate=0.02,
                   max_escalation_increase=0.05, max_agreement_drop=0.05)
    live = Evidence(decisions=400, escalated=80, judged=40, agreed=36)
    assert judge(live, Evidence(decisions=50, escalated=10), t)[0] == "wait"
    assert judge(live, Evidence(decisions=15, errors=5), t) == (
        "rollback", "error rate 25.0% above 2.0% (5 errors)")
    worse = judge(live, Evidence(decisions=120, escalated=40, judged=10, agreed=10), t)
    assert worse[0] == "rollback" and "escalation rate 33.3%" in worse[1]
    wrong = judge(live, Evidence(decisions=120, escalated=24, judged=10, agreed=7), t)
    assert wrong[0] == "rollback" and "agreement with reviewers 70.0%" in wrong[1]
    good = judge(live, Evidence(decisions=120, escalated=25, judged=12, agreed=11), t)
    assert good[0] == "promote" and "120 decisions" in good[1]


def test_a_candidate_card_past_a_packs_limit_is_a_fairness_breach(tmp_path: Path) -> None:
    card = tmp_path / ROUTER / "3" / "model_card.json"
    card.parent.mkdir(parents=True)
    item = {"pack": "hospital_admission", "attribute": "sex", "max_parity_difference": 0.2,
            "candidate": {"demographic_parity_difference": 0.35}}
    card.write_text(json.dumps({"fairness": {"holdout": [item]}}))
    admin = ModelRollouts(None, None, None, None, repository=tmp_path)  # type: ignore[arg-type]
    candidate = Rollout(ROUTER, "1", "3", "SHADOW")
    assert admin._card_breaches(candidate) == [
        "hospital_admission.sex: demographic parity difference 0.350 on the frozen holdout "
        "(model card) above 0.2"]
    item["candidate"]["demographic_parity_difference"] = 0.1
    card.write_text(json.dumps({"fairness": {"holdout": [item]}}))
    assert admin._card_breaches(candidate) == []
    assert admin._card_breaches(Rollout(ROUTER, "1", "4", "SHADOW")) == []  # no card


async def test_a_failing_canary_costs_no_task_and_is_rolled_back_on_its_errors(
        rollout_settings: Settings, stubs: tuple[DecisionServiceStub, IngestServiceStub],
        db: asyncpg.Connection) -> None:
    """A canary whose version Triton does not serve (stored as a deployment gone wrong would
    leave it, past StartRollout's check): its tasks are decided by the live version, its
    failures counted, and the judge rolls it back on its error rate."""
    decide, ingest = stubs
    listed = {r.model_name: r for r in (await decide.ListRollouts(ListRolloutsRequest())
                                        ).rollouts}
    live = listed[ROUTER].live_version
    await db.execute(
        "INSERT INTO decision_model_rollouts (model_name, live_version, candidate_version, "
        "stage, canary_share, tenants, started_at, updated_by) VALUES ($1, $2, '9', 'CANARY', "
        "0.5, '{brokenco}', now(), 'test') ON CONFLICT (model_name) DO UPDATE SET "
        "candidate_version = '9', stage = 'CANARY', canary_share = 0.5, "
        "tenants = '{brokenco}', started_at = now(), updated_by = 'test', note = ''",
        ROUTER, live)
    await asyncio.sleep(rollout_settings.rollout_refresh_s * 3)   # every replica reads it
    texts = [r["text"] for r in heldout()[200:260]]
    versions = await _decided(rollout_settings, db, ingest, "brokenco", texts)
    assert set(versions.values()) == {_card_version(live)}   # no task lost, none on "9"

    async def rolled_back() -> object:
        (router,) = [r for r in (await decide.ListRollouts(ListRolloutsRequest())).rollouts
                     if r.model_name == ROUTER]
        return router if router.stage == RolloutStage.ROLLOUT_STAGE_NONE else None
    router = await eventually(rolled_back, "the judge to roll the failing canary back", 30,
                              0.3)
    assert router.live_version == live and router.note.startswith("error rate 100.0%"), \
        router.note
