"""`switchyard dead-letters` without a stack, and the plain domain code behind
DeadLetterService: input errors, an unreachable target, paging tokens, tenant scoping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest import dead_letters
from switchyard._dead_letters_cli import parse_since, printable
from switchyard.access import Principal, Role
from switchyard.rpc import FieldViolation
from switchyard.stack import free_port
from tests.cli.helpers import switchyard


@pytest.mark.parametrize("action", [("list",), ("show", str(uuid.uuid4())),
                                    ("replay", str(uuid.uuid4()))])
def test_an_unreachable_target_is_exit_3_without_a_traceback(action: tuple[str, ...]) -> None:
    done = switchyard(None, "dead-letters", *action, "--target", f"127.0.0.1:{free_port()}",
                      "--connect-timeout", "0.2")
    assert done.returncode == 3, done.stderr
    assert "cannot connect" in done.stderr and "Traceback" not in done.stderr


def test_a_bad_since_is_a_usage_error_before_connecting() -> None:
    done = switchyard(None, "dead-letters", "list", "--since", "yesterday", "--target",
                      f"127.0.0.1:{free_port()}")
    assert done.returncode == 2, done.stderr
    assert "--since 'yesterday'" in done.stderr and "Traceback" not in done.stderr


def test_since_is_an_age_or_an_iso_time() -> None:
    now = datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-01-30T08:00:00Z") == datetime(2026, 1, 30, 8, tzinfo=UTC)
    assert parse_since("2026-01-30T08:00:00") == datetime(2026, 1, 30, 8, tzinfo=UTC)


def test_bytes_are_text_only_when_a_terminal_can_show_them() -> None:
    assert printable(b'{"tenant_id": "acme"}\n') == '{"tenant_id": "acme"}\n'
    assert printable("Grüße".encode()) == "Grüße"
    assert printable(b"\x00 not json") is None
    assert printable(b"\xff\xfe") is None
    assert printable(b"\x1b[2J") is None


def test_a_page_token_round_trips_and_anything_else_names_the_field() -> None:
    failed_at, letter_id = datetime.now(UTC), uuid.uuid4()
    token = dead_letters.page_token_of({"failed_at": failed_at, "dead_letter_id": letter_id})
    assert dead_letters.parse_page_token(token) == (failed_at, letter_id)
    with pytest.raises(FieldViolation) as caught:
        dead_letters.parse_page_token("not a token")
    assert caught.value.field == "page_token"


@given(token=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(
    lambda b: __import__("base64").urlsafe_b64encode(b).decode())))
def test_fuzzed_ids_tokens_and_filters_are_parsed_or_name_their_field(token: str) -> None:
    for field, parse in (("page_token", dead_letters.parse_page_token),
                         ("dead_letter_id", dead_letters.parse_id),
                         ("source_topic", lambda v: dead_letters.text_filter("source_topic", v))):
        try:
            parse(token)
        except FieldViolation as exc:
            assert exc.field == field and exc.description


def test_page_size_is_bounded() -> None:
    assert dead_letters.page_size_of(0) == dead_letters.DEFAULT_PAGE_SIZE
    assert dead_letters.page_size_of(500) == 500
    for bad in (-1, 501):
        with pytest.raises(FieldViolation):
            dead_letters.page_size_of(bad)


def test_a_tenants_key_sees_its_tenant_an_operator_any() -> None:
    acme = Principal(key_id="key-0", tenant_id="acme", role=Role.ADMIN)
    ops = Principal(key_id="key-1", tenant_id="*", role=Role.ADMIN)
    assert dead_letters.scope_for(acme, "") == dead_letters.Scope("acme")
    assert dead_letters.scope_for(acme, "acme") == dead_letters.Scope("acme")
    with pytest.raises(PermissionError):
        dead_letters.scope_for(acme, "globex")
    assert dead_letters.scope_for(ops, "") == dead_letters.Scope(None)
    assert dead_letters.scope_for(ops, "*") == dead_letters.Scope(None)  # every tenant's
    assert dead_letters.scope_for(ops, "globex") == dead_letters.Scope("globex")
    with pytest.raises(PermissionError):  # '*' is no way around a tenant's key
        dead_letters.scope_for(acme, "*")
