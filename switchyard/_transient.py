"""The one list of failures that mean "try again later", shared by the stream middleware,
the gRPC servers and every background loop.

It lives apart from :mod:`switchyard._streams` so that what needs only the list (the gRPC
layer, and through it every command-line client) does not import faust to get it.
"""

from __future__ import annotations

import asyncio

import asyncpg
from aiokafka.errors import KafkaError

#: Failures that say "try again later", never "this record is bad". A PostgreSQL restart
#: shows as refused connections (OSError) while it is down, and around that as "the database
#: system is shutting down / starting up" (CannotConnectNowError) and "terminating connection
#: due to administrator command" (AdminShutdownError) on connections it closes.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, KafkaError, asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError, asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)

__all__ = ["TRANSIENT_ERRORS"]
