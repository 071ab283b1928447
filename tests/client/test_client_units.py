"""The client's retry policy and error mapping, as pure functions (the behaviour against the
real services is in test_client_stack.py)."""

from __future__ import annotations

import grpc
from switchyard_client import (
    Conflict,
    FieldViolation,
    InvalidSubmission,
    NotFound,
    RateLimited,
    RetryPolicy,
    SwitchyardError,
    Unavailable,
)
from switchyard_client._status import ErrorDetails
from switchyard_client.errors import from_item_error


def test_only_unavailable_and_resource_exhausted_are_retried() -> None:
    policy = RetryPolicy()
    assert policy.next_delay(1, NotFound(grpc.StatusCode.NOT_FOUND, "x"), 0) is None
    assert policy.next_delay(1, Conflict(grpc.StatusCode.ALREADY_EXISTS, "x"), 0) is None
    delay = policy.next_delay(1, Unavailable(grpc.StatusCode.UNAVAILABLE, "x"), 0)
    assert delay is not None and 0 < delay <= policy.initial_backoff_s
    # RESOURCE_EXHAUSTED without the server's hint is gRPC's own "larger than max": never
    # resent
    too_large = RateLimited(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            "Received message larger than max (22044609 vs. 21037056)")
    assert policy.next_delay(1, too_large, 0) is None


def test_the_servers_retry_after_is_honoured_within_the_bounds() -> None:
    limited = RateLimited(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down",
                          ErrorDetails(retry_after_s=2.5))
    policy = RetryPolicy(max_attempts=3, max_total_s=10)
    assert policy.next_delay(1, limited, 0) == 2.5
    assert policy.next_delay(2, limited, 5) == 2.5
    assert policy.next_delay(3, limited, 5) is None        # out of attempts
    assert policy.next_delay(1, limited, 8) is None        # would end past max_total_s


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=20, max_total_s=1e6, initial_backoff_s=1, max_backoff_s=4)
    error = Unavailable(grpc.StatusCode.UNAVAILABLE, "down")
    for attempt, ceiling in ((1, 1), (2, 2), (3, 4), (10, 4)):
        delay = policy.next_delay(attempt, error, 0)
        assert delay is not None and ceiling / 2 <= delay <= ceiling


def test_item_errors_become_typed_exceptions() -> None:
    invalid = from_item_error(3, "bad", [FieldViolation("document.body", "empty")])
    assert isinstance(invalid, InvalidSubmission)
    assert invalid.violations() == {"document.body": "empty"}
    assert isinstance(from_item_error(6, "taken", []), Conflict)
    unknown = from_item_error(99, "?", [])
    assert type(unknown) is SwitchyardError and unknown.code == grpc.StatusCode.UNKNOWN
