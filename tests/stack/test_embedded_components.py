"""The embedded stack launchers against the real binaries: start, real request, stop, no leftovers.

Each component is started on free ports in a temp state dir, probed with a real client
(aiokafka produce/consume, asyncpg ``SELECT 1``, a Triton Python-backend inference over
gRPC), stopped, and then no process of its group may remain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from switchyard import Settings
from switchyard.stack import (
    EmbeddedStack,
    KafkaBroker,
    ManagedProcess,
    PostgresServer,
    ServiceSpec,
    StackError,
    TritonServer,
    free_port,
    read_state,
    stack_down,
    stack_status,
    with_free_ports,
)

pytestmark = pytest.mark.integration

ADD_ONE_CONFIG = """
backend: "python"
max_batch_size: 8
input [ { name: "X", data_type: TYPE_FP32, dims: [ 2 ] } ]
output [ { name: "Y", data_type: TYPE_FP32, dims: [ 2 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""

ADD_ONE_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            y = pb_utils.Tensor("Y", (x + 1.0).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[y]))
        return responses
"""

HEALTH_SERVER = """
import os, signal, sys, threading
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2_grpc

with open(sys.argv[2], "w") as fh:
    fh.write(os.environ.get("SWITCHYARD_POSTGRES_DSN", ""))
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
server.start()
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait()
server.stop(0)
"""


@pytest.fixture(scope="module")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("models")
    (repo / "add_one" / "1").mkdir(parents=True)
    (repo / "add_one" / "config.pbtxt").write_text(ADD_ONE_CONFIG)
    (repo / "add_one" / "1" / "model.py").write_text(ADD_ONE_MODEL)
    return repo


@pytest.fixture
def settings(model_repository: Path) -> Settings:
    return with_free_ports(Settings(model_repository=model_repository))


def _group_alive(pgid: int) -> list[int]:
    """Non-zombie pids in process group ``pgid`` (pgrep -g, then zombies filtered out)."""
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout
    alive = []
    for pid in map(int, out.split()):
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def assert_gone(pid: int) -> None:
    assert not _group_alive(pid), f"processes left in group {pid}: {_group_alive(pid)}"
    if psutil.pid_exists(pid):
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_kafka_broker_produce_consume(settings: Settings, tmp_path: Path) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    broker = KafkaBroker(settings, tmp_path)
    broker.start(timeout_s=30)
    pid = broker.pid
    assert pid is not None
    try:
        assert broker.healthy()
        assert broker.endpoint == settings.kafka_bootstrap_servers
        assert ManagedProcess.pid_path_for(tmp_path, "kafka").read_text().strip() == str(pid)

        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic("stack-smoke", num_partitions=1, replication_factor=1)]
            )
        finally:
            await admin.close()

        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap_servers, acks="all", enable_idempotence=False
        )
        await producer.start()
        try:
            await producer.send_and_wait("stack-smoke", b"hello", key=b"task-1")
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap_servers, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition("stack-smoke", 0)])
            batches = await consumer.getmany(timeout_ms=10_000)
        finally:
            await consumer.stop()
        records = [r for batch in batches.values() for r in batch]
        assert [(r.key, r.value) for r in records] == [(b"task-1", b"hello")]
    finally:
        broker.stop()
    assert_gone(pid)
    assert not broker.healthy()
    assert not ManagedProcess.pid_path_for(tmp_path, "kafka").exists()


async def test_postgres_select_1_and_restart_keeps_data(settings: Settings, tmp_path: Path) -> None:
    import asyncpg

    port = free_port()   # SWITCHYARD_POSTGRES_PORT
    server = PostgresServer(settings.replace(postgres_port=port), tmp_path)
    server.start(timeout_s=60)
    pid = server.pid
    assert pid is not None
    try:
        assert server.port == port and f"@127.0.0.1:{port}/" in server.dsn
        assert (tmp_path / "postgres.dsn").read_text().strip() == server.dsn
        assert "@127.0.0.1:" in server.dsn and server.dsn.endswith("/switchyard")
        assert ":" not in server.endpoint.split("@")[0].removeprefix("postgresql://")  # no password
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("SELECT 1") == 1
            await conn.execute("CREATE TABLE kept (v int)")
            await conn.execute("INSERT INTO kept VALUES (42)")
        finally:
            await conn.close()
        # the password is required on TCP
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(server.endpoint)
    finally:
        server.stop()
    assert_gone(pid)

    again = PostgresServer(settings, tmp_path, port=server.port)
    again.start(timeout_s=60)
    pid = again.pid
    assert pid is not None
    try:
        conn = await asyncpg.connect(again.dsn)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == 42
        finally:
            await conn.close()
    finally:
        again.stop()
    assert_gone(pid)
    log = (tmp_path / "logs" / "postgres.log").read_text()
    assert log.count("=== initdb") == 1


def test_triton_python_model_inference(settings: Settings, tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient

    server = TritonServer(settings, tmp_path)
    server.start(timeout_s=60)
    pid = server.pid
    assert pid is not None
    stubs = [p.pid for p in psutil.Process(pid).children(recursive=True)]
    try:
        assert server.healthy()
        client = grpcclient.InferenceServerClient(url=server.grpc_url)
        x = np.array([[1.0, 2.0]], dtype=np.float32)
        inp = grpcclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("add_one", [inp], outputs=[grpcclient.InferRequestedOutput("Y")])
        np.testing.assert_allclose(result.as_numpy("Y"), x + 1.0)
        client.close()
    finally:
        server.stop()
    assert_gone(pid)
    assert all(not psutil.pid_exists(p) or psutil.Process(p).status() == "zombie" for p in stubs)
    from switchyard.stack._triton import shm_prefix

    assert not list(Path("/dev/shm").glob(shm_prefix(tmp_path) + "*"))


def test_start_failure_reports_log_tail(settings: Settings, tmp_path: Path) -> None:
    broken = tmp_path / "broken-models"
    (broken / "bad" / "1").mkdir(parents=True)
    (broken / "bad" / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: 0\n')
    (broken / "bad" / "1" / "model.py").write_text("raise RuntimeError('boom at import')\n")
    server = TritonServer(settings, tmp_path / "state", model_repository=broken)
    with pytest.raises(StackError) as err:
        server.start(timeout_s=60)
    assert "last lines of" in str(err.value)
    assert "bad" in str(err.value)
    assert server.pid is None


def test_detached_stack_status_and_down_from_another_process(
    settings: Settings, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    health_port = free_port()
    env_file = tmp_path / "service-env.txt"
    seen: list[Settings] = []
    stack = EmbeddedStack(
        settings,
        state_dir,
        services=[
            ServiceSpec(
                "echo",
                [sys.executable, "-c", HEALTH_SERVER, str(health_port), str(env_file)],
                health_port=health_port,
            )
        ],
        bootstrap=seen.append,
        detached=True,
        postgres_port=free_port(),
    )
    ready: list[str] = []
    stack.start(timeout_s=60, on_ready=ready.append)
    try:
        # what `switchyard up` draws its progress bar from: each step once, services last
        assert len(ready) == stack.start_steps == 5
        assert sorted(ready[:3]) == ["kafka", "postgres", "triton"]
        assert ready[3:] == ["bootstrap", "echo"]
        assert seen and seen[0].postgres_dsn == stack.postgres.dsn  # type: ignore[union-attr]
        assert env_file.read_text() == stack.postgres.dsn  # type: ignore[union-attr]
        rows = {row.name: row for row in stack_status(state_dir)}
        assert list(rows) == ["kafka", "triton", "postgres", "echo"]
        assert all(row.healthy and row.pid for row in rows.values()), rows
        state = read_state(state_dir)
        assert state is not None and state["detached"] is True
        pids = [row.pid for row in rows.values()]

        # `switchyard down` runs in another process and only knows the state dir
        code = (
            "import sys, json; from switchyard.stack import stack_down; "
            "print(json.dumps(stack_down(sys.argv[1])))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert sorted(json.loads(out.stdout.strip().splitlines()[-1])) == sorted(rows)
        for pid in pids:
            assert pid is not None
            assert_gone(pid)
        assert stack_status(state_dir) == []
        assert not (state_dir / "stack.json").exists()
    finally:
        stack_down(state_dir)  # no-op when the test passed
        stack.stop()  # reaps our (already dead) children


def test_children_die_with_their_launcher(tmp_path: Path) -> None:
    """A foreground launcher killed with SIGKILL takes its children along (PR_SET_PDEATHSIG)."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from switchyard.stack import ManagedProcess
        proc = ManagedProcess("sleeper", ["sleep", "300"], state_dir=Path({str(tmp_path)!r}))
        proc.start()
        print(proc.pid, flush=True)
        time.sleep(300)
        """
    )
    launcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert launcher.stdout is not None
    child = int(launcher.stdout.readline())
    assert psutil.pid_exists(child)
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 5
    while _group_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_gone(child)
    # and a stale pid file is harmless
    assert ManagedProcess.find_running(tmp_path, "sleeper") is None
    assert ManagedProcess.stop_from_pidfile(tmp_path, "sleeper") is False


def test_stop_from_pidfile_never_signals_a_reused_pid(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        meta = ManagedProcess.meta_path_for(tmp_path, "ghost")
        meta.parent.mkdir(parents=True)
        meta.write_text(
            json.dumps({"pid": bystander.pid, "pgid": bystander.pid, "create_time": 1.0})
        )
        ManagedProcess.pid_path_for(tmp_path, "ghost").write_text(f"{bystander.pid}\n")
        assert ManagedProcess.find_running(tmp_path, "ghost") is None
        assert ManagedProcess.stop_from_pidfile(tmp_path, "ghost", timeout_s=1) is False
        assert bystander.poll() is None
        assert not meta.exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_managed_process_kills_a_stubborn_group(tmp_path: Path) -> None:
    """SIGTERM ignored by the leader and a grandchild: stop() escalates to SIGKILL on the group."""
    script = "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
        "subprocess.Popen(['sleep', '300']); time.sleep(300)"
    proc = ManagedProcess(
        "stubborn", [sys.executable, "-c", script], state_dir=tmp_path, env=dict(os.environ)
    )
    proc.start()
    pid = proc.pid
    assert pid is not None
    deadline = time.monotonic() + 5
    while len(_group_alive(pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_group_alive(pid)) == 2
    proc.stop(timeout_s=0.5)
    # the leader ignored SIGTERM, so only the escalation can have ended it; and the whole
    # group (the grandchild too) is gone, not just the leader
    assert proc.returncode == -signal.SIGKILL
    assert_gone(pid)


def test_second_stack_on_same_state_dir_or_port_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    first = EmbeddedStack(settings, tmp_path / "a", components=["kafka"])
    first.start(timeout_s=30)
    try:
        with pytest.raises(StackError, match="already running"):
            EmbeddedStack(settings, tmp_path / "a", components=["kafka"]).start(timeout_s=30)
        # a stack elsewhere on the same port must not mistake the first broker for its own
        with pytest.raises(StackError, match="already in use"):
            EmbeddedStack(settings, tmp_path / "b", components=["kafka"]).start(timeout_s=30)
        assert [(r.name, r.healthy) for r in stack_status(tmp_path / "a")] == [("kafka", True)]
    finally:
        first.stop()
    assert stack_status(tmp_path / "a") == []


def test_the_spill_over_triton_is_opt_in_and_the_services_are_pointed_at_it(
        tmp_path: Path) -> None:
    # what `switchyard up` builds from SWITCHYARD_STACK_COMPONENTS (nothing is started here;
    # tests/decision/test_inference_pools.py starts the component and uses it)
    from switchyard._launcher import build_stack

    settings = with_free_ports(Settings(state_dir=tmp_path))
    default = build_stack(settings)
    assert default.triton_spill is None and default.settings.triton_spill_url == ""
    both = build_stack(settings.replace(
        stack_components="kafka,postgres,triton,triton-spill"))
    assert both.triton_spill is not None
    assert [c.name for c in both.infrastructure] == [
        "kafka", "postgres", "triton", "triton-spill"]
    assert both.triton_spill.grpc_url == f"127.0.0.1:{settings.triton_spill_grpc_port}"
    assert both.triton_spill.grpc_port != both.triton.grpc_port  # type: ignore[union-attr]
    decision = next(s for s in both.services_specs if s.name == "decision")
    env = both.service_env(decision)
    assert env["SWITCHYARD_TRITON_SPILL_URL"] == both.triton_spill.grpc_url
    assert env["SWITCHYARD_TRITON_URL"] == both.triton.grpc_url  # type: ignore[union-attr]


def test_a_step_of_the_wall_clock_does_not_make_a_running_process_a_stranger(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process is recognised by its start in ticks since boot: psutil's create_time (the
    boot time plus those ticks) moves with every step of the wall clock, and after one the
    whole embedded stack read as gone (`switchyard status`: every pid None). A recycled pid,
    started at another tick, is still a stranger; and it is stopped from its pid file."""
    proc = ManagedProcess("sleeper", ["sleep", "300"], state_dir=tmp_path)
    proc.start()
    try:
        real = psutil.Process.create_time
        monkeypatch.setattr(psutil.Process, "create_time", lambda self: real(self) + 7.0)
        found = ManagedProcess.find_running(tmp_path, "sleeper")
        assert found is not None and found.pid == proc.pid
        meta = ManagedProcess.meta_path_for(tmp_path, "sleeper")
        recorded = json.loads(meta.read_text())
        meta.write_text(json.dumps({**recorded, "started": recorded["started"] - 3.0}))
        assert ManagedProcess.find_running(tmp_path, "sleeper") is None
        meta.write_text(json.dumps(recorded))
        assert ManagedProcess.stop_from_pidfile(tmp_path, "sleeper", timeout_s=5) is True
        assert_gone(proc.pid)
    finally:
        proc.stop()
