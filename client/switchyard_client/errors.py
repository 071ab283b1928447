"""Typed exceptions for every way a Switchyard call can fail.

Each gRPC status a server returns becomes one class below, carrying the server's message and,
where the server sent them, the field violations (:class:`InvalidSubmission`) or the delay it
asked for (:class:`RateLimited`, :class:`Unavailable`).
"""

from __future__ import annotations

from typing import Any

import grpc

from switchyard_client._status import ErrorDetails, FieldViolation, error_details


class SwitchyardError(Exception):
    """A call failed. ``code`` is the gRPC status, ``message`` the server's explanation."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 details: ErrorDetails | None = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details = details or ErrorDetails()


class InvalidSubmission(SwitchyardError):
    """INVALID_ARGUMENT: the request was refused; ``field_violations`` says which fields."""

    @property
    def field_violations(self) -> tuple[FieldViolation, ...]:
        return self.details.field_violations

    def violations(self) -> dict[str, str]:
        """``{field: description}``, e.g. ``{"document.body": "malformed JSON ..."}``."""
        return {v.field: v.description for v in self.details.field_violations}


class Conflict(SwitchyardError):
    """ALREADY_EXISTS: the idempotency key names a task with a different payload."""


class NotFound(SwitchyardError):
    """NOT_FOUND: no such task (or it belongs to another tenant)."""


class PermissionDenied(SwitchyardError):
    """PERMISSION_DENIED: the credentials do not allow this tenant or this call."""


class Unauthenticated(SwitchyardError):
    """UNAUTHENTICATED: no API key, or one the server does not know."""


class FailedPrecondition(SwitchyardError):
    """FAILED_PRECONDITION: the task's state does not allow it (e.g. cancel a finished task,
    retry one that did not fail)."""


class RateLimited(SwitchyardError):
    """RESOURCE_EXHAUSTED: over the tenant's rate or the server's backlog, after the client's
    own retries; ``retry_after`` is the server's suggested wait in seconds (None if unsaid)."""

    @property
    def retry_after(self) -> float | None:
        return self.details.retry_after_s


class Unavailable(SwitchyardError):
    """UNAVAILABLE: the server could not be reached or is restarting, after the client's own
    retries."""

    @property
    def retry_after(self) -> float | None:
        return self.details.retry_after_s


class WaitTimeout(SwitchyardError, TimeoutError):
    """``wait`` gave up: the task was not terminal within the timeout (it keeps running)."""

    def __init__(self, task_id: str, timeout_s: float) -> None:
        super().__init__(grpc.StatusCode.DEADLINE_EXCEEDED,
                         f"task {task_id} not finished within {timeout_s:g}s")
        self.task_id = task_id


_BY_CODE: dict[grpc.StatusCode, type[SwitchyardError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidSubmission,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def from_rpc_error(error: grpc.RpcError) -> SwitchyardError:
    """The typed exception for a failed call (sync ``grpc.RpcError`` or ``AioRpcError``)."""
    call: Any = error
    code = call.code()
    details = error_details(call.trailing_metadata())
    return _BY_CODE.get(code, SwitchyardError)(code, call.details() or "", details)


def from_item_error(code: int, message: str,
                    violations: list[FieldViolation]) -> SwitchyardError:
    """The typed exception for one refused item of ``submit_many`` (a google.rpc.Code)."""
    status = next((s for s in grpc.StatusCode if s.value[0] == code), grpc.StatusCode.UNKNOWN)
    return _BY_CODE.get(status, SwitchyardError)(status, message,
                                                 ErrorDetails(tuple(violations)))


__all__ = ["Conflict", "FailedPrecondition", "FieldViolation", "InvalidSubmission", "NotFound",
           "PermissionDenied", "RateLimited", "SwitchyardError", "Unauthenticated",
           "Unavailable", "WaitTimeout", "from_item_error", "from_rpc_error"]
