"""A service's port taken for a moment is not "in use": the default gRPC ports lie in the
kernel's ephemeral range, so a passing connection may hold one as its source port."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

from switchyard.stack import free_port, port_frees_up, port_is_free


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_port_let_go_within_the_grace_is_free_and_a_listener_keeps_it() -> None:
    port = free_port()
    held = _listen(port)
    threading.Timer(0.3, held.close).start()
    assert not port_is_free(port)
    assert port_frees_up(port, grace_s=3.0)
    kept = _listen(port)
    try:
        assert not port_frees_up(port, grace_s=0.3)
    finally:
        kept.close()


def test_two_processes_picking_ports_at_once_never_get_the_same_one() -> None:
    """pytest-xdist's workers pick ports side by side: a port one process holds (picked, its
    server not yet started) is never handed to the other. Without the shared reservation the
    two sets of 3,000 picks out of some 17,000 ports would overlap by hundreds."""
    picker = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from switchyard.stack import free_port\n"
         "print(' '.join(str(free_port()) for _ in range(3000)), flush=True)\n"
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert picker.stdout is not None
        theirs = {int(port) for port in picker.stdout.readline().split()}
        ours = {free_port() for _ in range(3000)}
    finally:
        picker.communicate("", timeout=30)
    assert len(theirs) == 3000 and len(ours) == 3000
    assert not theirs & ours


def test_status_tells_a_running_service_that_is_not_ready_from_one_that_is_down() -> None:
    """A service whose database does not answer is running and NOT_SERVING: `switchyard
    status` says "not ready", not "down" (an outside SRE read "down" while it was there)."""
    from switchyard._launcher import health_word
    from switchyard.stack import ComponentStatus

    def word(pid: int | None, healthy: bool) -> str:
        return health_word(ComponentStatus("executor", pid, "127.0.0.1:7053", healthy))
    assert "healthy" in word(4242, True)
    assert "not ready" in word(4242, False)
    assert "down" in word(None, False)
