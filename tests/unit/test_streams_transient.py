"""A PostgreSQL restart is infrastructure trouble, never a bad record.

While the database shuts down or starts up, asyncpg raises these errors (seen in the chaos
run's PostgreSQL restart); the stream middleware must retry them with backoff instead of
counting them as handler bugs, which it dead-letters after a few attempts.
"""

from __future__ import annotations

import asyncpg
import pytest

from switchyard.messaging import TRANSIENT_ERRORS


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.CannotConnectNowError,   # "the database system is shutting down"
    asyncpg.exceptions.AdminShutdownError,      # "terminating connection due to administrator
                                                # command"
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    ConnectionRefusedError,                     # while it is down
])
def test_a_database_restart_is_transient(error: type[BaseException]) -> None:
    assert issubclass(error, TRANSIENT_ERRORS)


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.UniqueViolationError, asyncpg.exceptions.UndefinedColumnError,
    ValueError,
])
def test_a_bug_is_not_transient(error: type[BaseException]) -> None:
    assert not issubclass(error, TRANSIENT_ERRORS)
