"""Keyset page tokens for the operator listings (dead letters, webhook deliveries): the
(time, id) of the last row of a page, so pages do not shift while new rows arrive."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

from switchyard.rpc import FieldViolation

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "encode", "page_size", "parse"]

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 500


def encode(at: datetime, row_id: uuid.UUID) -> str:
    """The token that continues after the row at ``at`` with id ``row_id``."""
    raw = json.dumps([at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def parse(token: str, rpc: str) -> tuple[datetime, uuid.UUID]:
    """The (time, id) in a token from :func:`encode`; anything else is a FieldViolation on
    ``page_token`` naming the RPC that issues tokens."""
    try:
        at, row_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive time")
        return when.astimezone(UTC), uuid.UUID(row_id)
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError):
        raise FieldViolation("page_token", f"not a token from {rpc}") from None


def page_size(requested: int) -> int:
    """A request's page_size: 0 means the default; outside 0..500 is a FieldViolation."""
    if requested < 0 or requested > MAX_PAGE_SIZE:
        raise FieldViolation("page_size", f"must be 0 (default {DEFAULT_PAGE_SIZE}) to "
                                          f"{MAX_PAGE_SIZE}")
    return requested or DEFAULT_PAGE_SIZE
