"""The command line without a stack: --version, input errors and an unreachable target."""

from __future__ import annotations

import argparse
import hashlib
import os
from importlib.metadata import version
from pathlib import Path

import pytest

from switchyard import Settings
from switchyard._tasks_cli import idempotency_key
from switchyard.cli import build_parser
from switchyard.stack import free_port
from tests.cli.helpers import switchyard


def test_version_is_the_installed_distributions() -> None:
    done = switchyard(None, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"switchyard {version('switchyard')}"


def test_a_file_of_another_type_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    good = tmp_path / "ticket.txt"
    good.write_text("Ticket: cannot log in")
    bad = tmp_path / "scan.gif"
    bad.write_bytes(b"GIF89a")
    # nothing is listening there: the files are checked before any connection is tried
    done = switchyard(None, "submit", str(good), str(bad), "--target",
                      f"127.0.0.1:{free_port()}")
    assert done.returncode == 2, done.stderr
    assert str(bad) in done.stderr and "'.gif'" in done.stderr and ".pdf" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_missing_file_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    done = switchyard(None, "submit", str(missing))
    assert done.returncode == 2 and str(missing) in done.stderr, done.stderr


def test_an_unreachable_target_is_exit_3_without_a_traceback(tmp_path: Path) -> None:
    ticket = tmp_path / "ticket.txt"
    ticket.write_text("Ticket: cannot log in")
    target = f"127.0.0.1:{free_port()}"
    for args in (("submit", str(ticket)), ("tasks", "get", "some-id"),
                 ("tasks", "list", "--json"), ("tasks", "watch", "some-id"),
                 ("tasks", "cancel", "some-id"), ("tasks", "retry", "some-id"),
                 ("tasks", "timeline", "some-id"), ("tasks", "redrive", "some-id"),
                 ("tasks", "list", "--kind", "invoice", "--meta", "po=17"),
                 ("models", "health", "--tenant", "acme")):
        done = switchyard(None, *args, "--target", target, "--connect-timeout", "0.2")
        assert done.returncode == 3, (args, done.stderr)
        assert "Traceback" not in done.stderr and target in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_demo_and_breakers_without_their_services_are_exit_3_in_one_line(
        tmp_path: Path) -> None:
    """Commands that call services without a --target of their own: a service that is not
    there (or went away mid-run) is one line and exit 3, as docs/cli.md says."""
    settings = Settings(ingest_grpc_port=free_port(), executor_grpc_port=free_port(),
                        downstream_http_port=free_port(), state_dir=tmp_path)
    for args in (("demo", "--tasks", "1", "--classrooms", "0"), ("breakers",)):
        done = switchyard(settings, *args)
        assert done.returncode == 3, (args, done.stderr)
        assert "Traceback" not in done.stderr and "UNAVAILABLE" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_idempotency_key_is_the_prefix_and_the_content_hash() -> None:
    body = b"Ticket: printer on fire"
    assert idempotency_key("file:", body) == f"file:sha256:{hashlib.sha256(body).hexdigest()}"
    assert idempotency_key("x-", body) != idempotency_key("x-", body + b"!")


def test_unusable_client_tls_files_are_a_usage_error(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_CLIENT_TLS_CA_FILE", str(tmp_path / "missing-ca.pem"))
    done = switchyard(None, "tasks", "get", "some-id", "--target", f"127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "client TLS" in done.stderr, done.stderr
    assert "missing-ca.pem" in done.stderr and "Traceback" not in done.stderr


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    """``switchyard settings | head -c 10``: the command stops quietly (exit 141, as a shell
    reports a writer whose pipe was closed), no traceback on stderr."""
    import subprocess
    import sys

    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first byte
    try:
        done = subprocess.run([sys.executable, "-m", "switchyard", "settings"], stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (141, "")


@pytest.mark.parametrize("lease", ["nan", "inf", "-5", "soon"])
def test_a_bad_lease_length_is_a_usage_error_not_a_traceback(lease: str) -> None:
    done = switchyard(None, "review", "claim", "some-item", "--lease-s", lease)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--lease-s" in done.stderr and "seconds" in done.stderr


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions  # noqa: SLF001 - argparse keeps them there
                 if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    return dict(action.choices)


def _shape(parser: argparse.ArgumentParser) -> list[tuple[object, ...]]:
    """What a parser accepts: its options, positionals and nested commands."""
    return [(tuple(a.option_strings), a.dest, a.nargs, tuple(a.choices or ()) if not isinstance(
        a, argparse._SubParsersAction) else tuple(  # noqa: SLF001
        (name, tuple(_shape(sub))) for name, sub in a.choices.items()))
        for a in parser._actions]  # noqa: SLF001


def test_a_command_parsed_alone_accepts_what_the_full_parser_does() -> None:
    # `switchyard run ingest` declares only `run`'s arguments (a service's start-up does not
    # import every other command's module): each command alone parses as in the full parser
    full = _subparsers(build_parser())
    for name, parser in full.items():
        assert _shape(_subparsers(build_parser(name))[name]) == _shape(parser), name


def test_a_service_start_does_not_import_the_other_commands() -> None:
    import subprocess
    import sys

    probe = ("import sys; from switchyard.cli import build_parser; build_parser('run'); "
             "print(sorted(m for m in sys.modules if m.startswith(('switchyard._signals_cli', "
             "'switchyard._packs_cli', 'switchyard._webhooks_cli', 'services.review.cli', "
             "'services.decision.training'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout
