"""A service's port taken for a moment is not "in use": the default gRPC ports lie in the
kernel's ephemeral range, so a passing connection may hold one as its source port."""

from __future__ import annotations

import socket
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
