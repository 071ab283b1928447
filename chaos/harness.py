"""The chaos run: the embedded stack, the services under a supervisor, a workload, faults.

Faults, in this order, while the workload flows:

1. SIGKILL each service in turn at seeded random moments, for several rounds; the supervisor
   starts it again (as Kubernetes would);
2. stop Triton for a while (20 s in the full run) and start it again;
3. the downstream refuses every invoice payment (HTTP 422, permanent): the invoice plan's
   second step fails and its first (the posted invoice) is compensated (the fault stays until
   one has been); then payments go down (503) while invoices are still posted, so tasks wait
   between their two steps, and clients cancel some of them (the invoice they posted is
   reversed); then the downstream fails half of all calls, then goes fully down (clients
   cancel more of the tasks waiting for it), then recovers;
4. PostgreSQL stops (15 s, in both runs) under load and starts again: every service rides
   it out (retrying, never exiting for it), nothing accepted is lost;
5. an escalation storm: escalating submissions at 10x the review admission rate;
6. restart the broker while work waits in its topics (the executor, then the decision
   service, are paused with SIGSTOP while a burst is submitted): its memory storage loses
   every topic, record and group offset. The services notice (the marker topic's generation
   changed), recreate the topics and restart; ingest's reconciler re-drives every unfinished
   task that nothing durable owns from PostgreSQL.

Hospital admissions are part of the steady workload (the ``hospital_admission`` pack's sample
forms; the payer's records and the bed capacity they need are put into the downstream first):
some disagree with the payer (an approval the reviewer bot answers), some lack a consent, and
some ask for a bed in a full unit, so their plan waits (``retry_later``, every 2 s for the
run's tenants) until the harness discharges a patient from each full unit.

Every plan of the run's tenants is its shipped pack's (the invoice pack's is the two-step saga
with a compensation above), one parameter aside: classroom events are counted, through the
classroom_event pack's ``analytics_target`` (a tenant setting), on the demo downstream's
non-deduplicating endpoint (``http://analytics/events/append``), which shows what the executor guarantees without the
downstream's help (see :mod:`chaos.invariants`).

Before the broker restart the harness waits until the intake records the broker acknowledged
have become tasks: a broker that forgets acknowledged records loses them for every client
(real Kafka, replicated and on disk, does not), while everything Switchyard accepted must
survive. Then the harness waits for the work to settle (a reviewer bot approves escalations)
and checks :mod:`chaos.invariants`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import asyncpg
import grpc
from aiokafka.admin import AIOKafkaAdminClient

from chaos.invariants import (
    Report,
    blocked_executing,
    check,
    reversed_effects,
    tasks_for,
    unsettled,
)
from chaos.supervisor import Supervisor
from chaos.workload import (
    Item,
    Ledger,
    Submitter,
    admissions,
    build,
    interleave,
    reviewer,
)
from switchyard import Settings
from switchyard.demo import discharge_full_units, seed_hospital
from switchyard.messaging import client_options
from switchyard.rpc import create_channel
from switchyard.runtime import bootstrap, broker_generation, service_specs
from switchyard.stack import EmbeddedStack, free_port, grpc_serving, wait_until, with_free_ports
from switchyard.storage import connect
from switchyard.v1 import CancelTaskRequest, IngestServiceStub

log = logging.getLogger("chaos")
ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models" / "repository"
SERVICES = ("ingest", "decision", "executor", "review")


@dataclass(frozen=True)
class ChaosConfig:
    tasks: int
    seed: int = 7
    kill_rounds: int = 2
    kill_gap_s: float = 4.0         # between two kills
    triton_outage_s: float = 20.0
    downstream_errors_s: float = 15.0
    downstream_outage_s: float = 10.0
    payments_refused_s: float = 8.0  # every invoice payment refused: sagas compensate
    payments_down_s: float = 6.0     # payments down: invoices wait between their steps
    postgres_outage_s: float = 15.0
    storm_tasks: int = 300
    lagging_tasks: int = 300        # waiting in Kafka when the broker restarts
    cancels: int = 20               # tasks blocked on the downstream that clients cancel
    broker_restart: bool = True
    settle_timeout_s: float = 300.0
    admissions: int = 300           # hospital admission forms among the steady workload

    def span_s(self) -> float:
        """How long the faults take: the steady workload is spread over all of it."""
        kills = self.kill_rounds * len(SERVICES) * self.kill_gap_s
        return (kills + self.triton_outage_s + self.payments_refused_s + self.payments_down_s
                + self.downstream_errors_s + self.downstream_outage_s
                + self.postgres_outage_s + 45.0)


FULL = ChaosConfig(tasks=3000)
QUICK = ChaosConfig(tasks=300, kill_rounds=1, kill_gap_s=3.0, triton_outage_s=8.0,
                    downstream_errors_s=4.0, downstream_outage_s=5.0, payments_refused_s=5.0,
                    payments_down_s=4.0, postgres_outage_s=15.0, storm_tasks=120,
                    lagging_tasks=100, cancels=5, admissions=32,
                    settle_timeout_s=240.0)


#: The run's tenants get the shipped packs, but the classroom_event pack counts events on the
#: downstream's endpoint that does not deduplicate by idempotency key (a pack parameter).
CHAOS_POLICY = """\
packs:
  classroom_event:
    parameters: {analytics_target: "http://analytics/events/append"}
  hospital_admission:
    parameters: {bed_retry_every: "2s"}
"""


def chaos_settings(base: Settings, policy_dir: Path | None = None) -> Settings:
    """Quick recovery loops, so a run takes minutes: every value is an ordinary setting."""
    if policy_dir is not None:
        policy_dir.mkdir(parents=True, exist_ok=True)
        (policy_dir / "default.yaml").write_text(CHAOS_POLICY)
        base = base.replace(policy_dir=str(policy_dir))
    return base.replace(
        kafka_topic_prefix="chaos.", postgres_schema="chaos", kafka_partitions=4,
        ingest_grpc_port=free_port(), decision_grpc_port=free_port(),
        executor_grpc_port=free_port(), review_grpc_port=free_port(),
        review_web_port=free_port(), downstream_http_port=free_port(),
        downstream_grpc_port=free_port(), ingest_rest_port=free_port(), ingest_metrics_port=0,
        decision_metrics_port=0, executor_metrics_port=0, review_metrics_port=0, log_level="INFO",
        kafka_session_timeout_ms=6000, broker_check_interval_s=1.0,
        reconcile_interval_s=1.0, reconcile_after_s=3.0, redrive_after_s=10.0,
        executor_breaker_reset_s=3.0, executor_poll_s=0.5, executor_replica_timeout_s=5.0,
        executor_retry_park_s=1.0, executor_backoff_base_s=0.05, executor_backoff_cap_s=1.0,
        review_sla_interval_s=1.0, review_tenant_burst=20,
    )


class Chaos:
    def __init__(self, config: ChaosConfig, infra: EmbeddedStack, settings: Settings,
                 supervisor: Supervisor) -> None:
        self.config = config
        self.infra = infra
        self.settings = settings
        self.supervisor = supervisor
        self.rng = random.Random(config.seed)
        self.faults: list[str] = []
        self.began = time.monotonic()
        self.unfinished_at_broker_restart = 0
        self.cancelled: list[str] = []
        self.postgres_restarts: dict[str, int] = {}

    def note(self, what: str) -> None:
        line = f"t+{time.monotonic() - self.began:5.1f}s {what}"
        self.faults.append(line)
        log.warning("%s", line)

    async def kill_services(self) -> None:
        for round_no in range(self.config.kill_rounds):
            for name in self.rng.sample(SERVICES, len(SERVICES)):
                await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.config.kill_gap_s)
                pid = self.supervisor.kill(name)
                self.note(f"SIGKILL {name} (pid {pid}, round {round_no + 1})")

    async def triton_outage(self) -> None:
        triton = self.infra.triton
        assert triton is not None
        self.note(f"Triton stopped for {self.config.triton_outage_s:.0f}s")
        await asyncio.to_thread(triton.stop)
        await asyncio.sleep(self.config.triton_outage_s)
        await asyncio.to_thread(triton.start, 120.0)
        self.note("Triton back")

    async def downstream_faults(self) -> None:
        base = f"http://127.0.0.1:{self.settings.downstream_http_port}/_/faults"
        async with aiohttp.ClientSession() as http:
            self.note(f"downstream refuses every invoice payment (422) for at least "
                      f"{self.config.payments_refused_s:.0f}s")
            await _put(http, f"{base}/erp/payments", {"error_rate": 1.0, "error_status": 422})
            await asyncio.sleep(self.config.payments_refused_s)
            # until a saga has compensated: an invoice posted, its payment refused, reversed
            await self._until(lambda: reversed_effects(self.settings), "an invoice reversed")
            self.note("invoice payments down (503): invoices wait between their two steps")
            await _put(http, f"{base}/erp/payments", {"outage": True})
            await asyncio.sleep(self.config.payments_down_s)
            await self._until(lambda: blocked_executing(self.settings, 1),
                              "a task waiting for the downstream")
            self.cancelled = await cancel_some_blocked(self.settings, self.config.cancels)
            self.note(f"clients cancelled {len(self.cancelled)} tasks waiting between their "
                      "steps (what they did is undone)")
            async with http.delete(f"{base}/erp/payments") as response:
                response.raise_for_status()
            self.note(f"downstream fails 50% of calls for {self.config.downstream_errors_s:.0f}s")
            await _put(http, f"{base}/*", {"error_rate": 0.5})
            await asyncio.sleep(self.config.downstream_errors_s)
            self.note(f"downstream fully down for {self.config.downstream_outage_s:.0f}s")
            await _put(http, f"{base}/*", {"outage": True})
            await asyncio.sleep(self.config.downstream_outage_s / 2)
            more = await cancel_some_blocked(self.settings, self.config.cancels)
            self.cancelled += more
            self.note(f"clients cancelled {len(more)} tasks waiting for the downstream")
            await asyncio.sleep(self.config.downstream_outage_s / 2)
            async with http.delete(base) as response:
                response.raise_for_status()
            self.note("downstream recovered")

    async def _until(self, probe: Callable[[], Awaitable[object]], what: str,
                     timeout_s: float = 30.0) -> None:
        """Keep the current fault until ``probe`` answers something truthy (the fault had the
        effect it is there for), or note that it never did."""
        deadline = time.monotonic() + timeout_s
        while not await probe():
            if time.monotonic() > deadline:
                self.note(f"no {what} within {timeout_s:.0f}s")
                return
            await asyncio.sleep(0.5)

    async def postgres_outage(self) -> None:
        """Stop PostgreSQL under load and start it again: the services must ride it out
        (their restarts by the supervisor during the outage are noted: there must be none)."""
        postgres = self.infra.postgres
        assert postgres is not None
        before = dict(self.supervisor.restarts)
        self.note(f"PostgreSQL stopped for {self.config.postgres_outage_s:.0f}s")
        await asyncio.to_thread(postgres.stop)
        await asyncio.sleep(self.config.postgres_outage_s)
        await asyncio.to_thread(postgres.start, 60.0)
        self.note("PostgreSQL back")
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(all_serving, self.settings):
            if time.monotonic() > deadline:
                raise RuntimeError("services did not recover from the PostgreSQL restart")
            await asyncio.sleep(1.0)
        await asyncio.sleep(3.0)  # a service that exits on its next database call shows here
        self.postgres_restarts = {name: n - before.get(name, 0)
                                  for name, n in self.supervisor.restarts.items()
                                  if n > before.get(name, 0)}
        self.note("services serving again; restarted meanwhile: "
                  f"{self.postgres_restarts or 'none'}")

    async def escalation_storm(self, submitter: Submitter, items: list[Item]) -> None:
        rate = self.settings.review_tenant_rate * 10
        self.note(f"escalation storm: {len(items)} escalations for one tenant at {rate:.0f}/s "
                  f"(10x its admission rate)")
        await submitter.send(items, rate)

    async def broker_restart(self, submitter: Submitter, items: list[Item],
                             lagging: list[Item]) -> None:
        """Restart the broker while records wait in its topics: the executor and then the
        decision service are paused (SIGSTOP) while ``lagging`` tasks are submitted, so
        decisions wait in ``decisions`` and tasks in ``tasks`` when the broker forgets them."""
        submitter.kafka_open.clear()
        while submitter.kafka_in_flight:
            await asyncio.sleep(0.1)
        await self._intake_drained(submitter.ledger, items)
        half = len(lagging) // 2
        self.supervisor.pause("executor")
        self.note(f"executor paused; {half} tasks submitted, their decisions queue up")
        await submitter.send(lagging[:half], rate=200.0)
        await asyncio.sleep(3.0)
        self.supervisor.pause("decision")
        self.note(f"decision paused; {len(lagging) - half} more tasks queue up in Kafka")
        await submitter.send(lagging[half:], rate=200.0)
        kafka = self.infra.kafka
        assert kafka is not None
        self.unfinished_at_broker_restart = sum(await unsettled(self.settings))
        self.note(f"broker restarted (memory storage: every topic and offset lost) with "
                  f"{self.unfinished_at_broker_restart} tasks unfinished")
        await asyncio.to_thread(kafka.stop)
        await asyncio.to_thread(kafka.start, 60.0)
        self.supervisor.resume("decision")
        self.supervisor.resume("executor")
        await self._recovered()
        self.note("services recreated the topics and are serving again")
        submitter.kafka_open.set()

    async def _recovered(self, timeout_s: float = 120) -> None:
        """The marker topic is back (a service noticed and recreated the topics) and every
        service answers SERVING again."""
        admin = AIOKafkaAdminClient(**client_options(self.settings))
        await admin.start()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                if (await broker_generation(admin, self.settings) is not None
                        and await asyncio.to_thread(all_serving, self.settings)):
                    return
            raise RuntimeError("services did not recover from the broker restart")
        finally:
            await admin.close()

    async def _intake_drained(self, ledger: Ledger, items: list[Item], timeout_s: float = 60
                              ) -> None:
        by_key = {i.key: i for i in items}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            keys = [(by_key[k].tenant_id, k) for k in ledger.kafka_acked if not by_key[k].invalid]
            if len(await tasks_for(self.settings, keys)) == len(keys):
                return
            await asyncio.sleep(0.5)
        self.note("intake not drained before the broker restart; its records may be lost")


async def discharge_for_waiting(settings: Settings, stop: asyncio.Event) -> int:
    """While admissions wait for a bed (parked, ``retry_later``), a patient goes home from
    each full unit once a second; returns how many. Rides out the faults: a failed look or
    discharge is tried again a second later."""
    discharged = 0
    async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.downstream_http_port}",
                                     timeout=aiohttp.ClientTimeout(total=5)) as http:
        while not stop.is_set():
            try:
                conn = await connect(settings)
                try:
                    waiting = await conn.fetchval(
                        "SELECT count(*) FROM tasks WHERE status = 'BLOCKED' "
                        "AND reason LIKE 'retry_later%'")
                finally:
                    await conn.close()
                if waiting:
                    discharged += await discharge_full_units(http)
            except (OSError, aiohttp.ClientError, asyncpg.PostgresError):
                pass   # PostgreSQL or the downstream is down for a while: next second
            await asyncio.sleep(1.0)
    return discharged


async def cancel_some_blocked(settings: Settings, count: int) -> list[str]:
    """CancelTask, as a client would, on tasks that wait for the downstream (executing, so
    ingest answers FAILED_PRECONDITION and the executor must compensate and cancel)."""
    task_ids = await blocked_executing(settings, count)
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    try:
        ingest = IngestServiceStub(channel)
        for task_id in task_ids:
            try:
                await ingest.CancelTask(CancelTaskRequest(task_id=task_id, reason="chaos"),
                                        timeout=10)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
    finally:
        await channel.close()
    return task_ids


async def _put(http: aiohttp.ClientSession, url: str, body: dict[str, object]) -> None:
    async with http.put(url, json=body) as response:
        response.raise_for_status()


def steps(config: ChaosConfig) -> list[str]:
    """The steps :func:`run` reports to its ``on_step`` as each one ends, in order (for a
    progress bar)."""
    return ["stack started", "services serving", "services killed", "Triton outage",
            "downstream faults", *(["PostgreSQL outage"] if config.postgres_outage_s > 0 else []),
            "escalation storm", *(["broker restart"] if config.broker_restart else []),
            "work settled", "invariants checked"]


async def drive(config: ChaosConfig, infra: EmbeddedStack, settings: Settings,
                supervisor: Supervisor,
                on_step: Callable[[str], None] = lambda step: None) -> Report:
    chaos = Chaos(config, infra, settings, supervisor)
    admitted, hospital = admissions(config.admissions, config.seed)
    items = interleave(build(config.tasks, config.seed), admitted)
    async with aiohttp.ClientSession(
            f"http://127.0.0.1:{settings.downstream_http_port}") as http:
        await seed_hospital(http, hospital)   # the payer's members, the units' beds
    storm = [replace(i, tenant_id="storm", via_kafka=False)
             for i in build(config.storm_tasks, config.seed + 1, escalate_share=1.0,
                            invalid_share=0.0, kafka_share=0.0, prefix="storm")]
    lagging = [replace(i, via_kafka=False) for i in build(
        config.lagging_tasks, config.seed + 2, escalate_share=0.0, invalid_share=0.0,
        kafka_share=0.0, prefix="lag")]
    everything = items + storm + lagging
    ledger = Ledger()
    stop_reviewer = asyncio.Event()
    await supervisor.start_watching()
    review_bot = asyncio.create_task(reviewer(settings, stop_reviewer))
    discharger = asyncio.create_task(discharge_for_waiting(settings, stop_reviewer))
    try:
        async with Submitter(settings, ledger) as submitter:
            steady = asyncio.create_task(submitter.send(items, len(items) / config.span_s()))
            await chaos.kill_services()
            on_step("services killed")
            await chaos.triton_outage()
            on_step("Triton outage")
            await chaos.downstream_faults()
            on_step("downstream faults")
            if config.postgres_outage_s > 0:
                await chaos.postgres_outage()
                on_step("PostgreSQL outage")
            await chaos.escalation_storm(submitter, storm)
            on_step("escalation storm")
            if config.broker_restart:
                await chaos.broker_restart(submitter, everything, lagging)
                on_step("broker restart")
            await steady
            chaos.note(f"all {ledger.sent} submissions sent; waiting for the work to settle")
            await settle(settings, config.settle_timeout_s)
            chaos.note("settled")
            on_step("work settled")
    finally:
        stop_reviewer.set()
        await asyncio.gather(review_bot, discharger, return_exceptions=True)
        await supervisor.stop_watching()
    report = await check(settings, everything, ledger, chaos.cancelled,
                         executor_restarts=supervisor.restarts["executor"])
    on_step("invariants checked")
    report.restarts = dict(supervisor.restarts)
    report.restarts_during_postgres_outage = chaos.postgres_restarts
    report.unfinished_at_broker_restart = chaos.unfinished_at_broker_restart
    report.faults = chaos.faults
    report.seconds = time.monotonic() - chaos.began
    return report


async def settle(settings: Settings, timeout_s: float,
                 quiet_s: float = 30.0) -> None:
    """Until every accepted task is terminal; or, when only waiting (BLOCKED) tasks are left,
    until nothing has changed for ``quiet_s``; or the timeout (then the report says why)."""
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        counts = await unsettled(settings)
        if counts == (0, 0):
            return
        if counts != last:
            last, since = counts, time.monotonic()
        elif counts[0] == 0 and time.monotonic() - since > quiet_s:
            return
        await asyncio.sleep(1.0)


def run(config: ChaosConfig, state_dir: Path,
        on_step: Callable[[str], None] = lambda step: None
        ) -> tuple[Report, dict[str, int | None]]:
    """The whole run on its own embedded stack; returns the report and the services' exit
    codes at the final SIGTERM (0 each: a clean shutdown). ``on_step`` is told as each of
    :func:`steps` ends."""
    base = with_free_ports(Settings(model_repository=MODELS, state_dir=state_dir / "infra"))
    with EmbeddedStack(base, state_dir / "infra", postgres_port=free_port(),
                       model_repository=MODELS) as infra:
        on_step("stack started")
        settings = chaos_settings(infra.settings, state_dir / "policies")
        asyncio.run(bootstrap(settings))
        supervisor = Supervisor(service_specs(settings), state_dir / "services",
                                {**os.environ, **settings.to_env()})
        supervisor.start_all()
        try:
            _wait_serving(settings)
            on_step("services serving")
            report = asyncio.run(drive(config, infra, settings, supervisor, on_step))
        finally:
            codes = supervisor.stop_all()
    return report, codes


def all_serving(settings: Settings) -> bool:
    """Every service answers SERVING on its gRPC health endpoint."""
    return all(grpc_serving(getattr(settings, f"{name}_grpc_port")) for name in SERVICES)


def _wait_serving(settings: Settings, timeout_s: float = 120.0) -> None:
    if not wait_until(lambda: all_serving(settings), timeout_s, interval_s=0.5):
        raise RuntimeError("services did not become ready")
