"""``Client`` (blocking) and ``AsyncClient`` (asyncio) for Switchyard's IngestService.

Both share everything but the waiting: the channel credentials, the request builders, the
retry policy and the error mapping live here once; each class only drives its kind of stub.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from switchyard_client._status import FieldViolation
from switchyard_client._v1.ingest_service_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    GetTaskTimelineRequest,
    ListTasksRequest,
    ListTasksResponse,
    RedriveTaskRequest,
    RetryTaskRequest,
    SubmitTaskRequest,
    SubmitTaskResponse,
    SubmitTasksRequest,
    SubmitTasksResponse,
    WatchTaskRequest,
)
from switchyard_client._v1.ingest_service_pb2_grpc import IngestServiceStub
from switchyard_client._v1.ingest_service_pb2 import TimelineEntry
from switchyard_client._v1.task_pb2 import (
    Document,
    StatusEvent,
    Submission,
    Task,
    TaskPriority,
    TaskStatus,
)
from switchyard_client.errors import (
    SwitchyardError,
    WaitTimeout,
    from_item_error,
    from_rpc_error,
)

#: A task in one of these statuses never changes again. The SDK's own copy of the server's
#: ``switchyard._taskstore.TERMINAL``: the client cannot import ``switchyard`` (it installs
#: alone). tests/unit/test_terminal.py checks the two agree.
TERMINAL_STATUSES = frozenset({TaskStatus.TASK_STATUS_SUCCEEDED, TaskStatus.TASK_STATUS_FAILED,
                               TaskStatus.TASK_STATUS_CANCELLED})
#: The header the servers read the API key from (``authorization: Bearer KEY``).
AUTH_HEADER = "authorization"
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True)
class RetryPolicy:
    """How calls are retried on UNAVAILABLE and RESOURCE_EXHAUSTED.

    Every retry resends the very same request, so a submission keeps its idempotency key and
    can never create a second task. RESOURCE_EXHAUSTED is retried only when the server says
    when (its rate limits and backlog always do): gRPC's own "message larger than max" carries
    no such hint, and resending it could never succeed. The wait is the server's
    (``RetryInfo``, else the ``retry-after-ms`` trailer) when it says one, otherwise
    exponential backoff with jitter.
    Retrying stops after ``max_attempts`` calls in all, or when the next wait would end more
    than ``max_total_s`` after the first call; the last error is then raised.
    """

    max_attempts: int = 5
    max_total_s: float = 60.0
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 10.0

    def next_delay(self, attempt: int, error: SwitchyardError, elapsed_s: float) -> float | None:
        """Seconds to wait before call ``attempt + 1``, or None to give up with ``error``."""
        if error.code not in _RETRYABLE or attempt >= self.max_attempts:
            return None
        delay = error.details.retry_after_s
        if delay is None and error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return None   # no backpressure of the server's: a request too large, say
        if delay is None:
            backoff = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1))
            delay = backoff * random.uniform(0.5, 1.0)
        if elapsed_s + delay > self.max_total_s:
            return None
        return delay


#: A policy that never retries.
NO_RETRIES = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class Submitted:
    """An accepted submission: the task's id, its status then, and whether this call created
    it (False: the idempotency key already named it)."""

    task_id: str
    idempotency_key: str
    status: TaskStatus.ValueType
    created: bool


@dataclass(frozen=True)
class BatchItem:
    """One submission of ``submit_many``: exactly one of ``submitted`` and ``error`` is set."""

    submission: Submission
    submitted: Submitted | None = None
    error: SwitchyardError | None = None

    @property
    def ok(self) -> bool:
        return self.submitted is not None


def new_submission(tenant_id: str, body: bytes | str, *, kind: str = "",
                   content_type: str = "text/plain", filename: str = "",
                   metadata: Mapping[str, str] | None = None,
                   priority: TaskPriority.ValueType = TaskPriority.TASK_PRIORITY_UNSPECIFIED,
                   deadline: datetime | None = None, callback_url: str = "",
                   idempotency_key: str | None = None) -> Submission:
    """A submission; without ``idempotency_key`` a fresh one (a UUID4) is generated. Give your
    own (e.g. your order number) to make a resubmission after a crash return the same task."""
    submission = Submission(
        tenant_id=tenant_id, idempotency_key=idempotency_key or str(uuid.uuid4()), kind=kind,
        document=Document(content_type=content_type, filename=filename,
                          body=body.encode() if isinstance(body, str) else body),
        metadata=dict(metadata or {}), priority_level=priority, callback_url=callback_url)
    if deadline is not None:
        submission.deadline.FromDatetime(deadline)
    return submission


def _with_key(submission: Submission) -> Submission:
    if submission.idempotency_key:
        return submission
    keyed = Submission()
    keyed.CopyFrom(submission)
    keyed.idempotency_key = str(uuid.uuid4())
    return keyed


def _submitted(response: SubmitTaskResponse, key: str) -> Submitted:
    return Submitted(task_id=response.task_id, idempotency_key=key, status=response.status,
                     created=response.created)


def _batch(submissions: Sequence[Submission], response: SubmitTasksResponse
           ) -> list[BatchItem]:
    items = []
    for submission, result in zip(submissions, response.results):
        if result.HasField("accepted"):
            items.append(BatchItem(submission, submitted=_submitted(
                result.accepted, submission.idempotency_key)))
        else:
            violations = [FieldViolation(v.field, v.description)
                          for v in result.error.field_violations]
            items.append(BatchItem(submission, error=from_item_error(
                result.error.code, result.error.message, violations)))
    return items


@dataclass(frozen=True)
class TaskPage:
    """One page of :meth:`Client.list_tasks`: newest first; ``next_page_token`` is empty on
    the last page (pass it back, with the same filters, for the next one)."""

    tasks: list[Task]
    next_page_token: str


@dataclass(frozen=True)
class Timeline:
    """A task and its story, oldest first (:meth:`Client.timeline`)."""

    task: Task
    entries: list[TimelineEntry]


def list_request(tenant_id: str = "", *, statuses: Sequence[int] = (),
                 kinds: Sequence[str] = (), metadata: Mapping[str, str] | None = None,
                 page_size: int = 0, page_token: str = "") -> ListTasksRequest:
    """A ListTasks request: statuses and kinds match any of theirs, metadata every pair."""
    return ListTasksRequest(tenant_id=tenant_id, statuses=list(statuses), kinds=list(kinds),
                            metadata=dict(metadata or {}), page_size=page_size,
                            page_token=page_token)


def _page(response: ListTasksResponse) -> TaskPage:
    return TaskPage(tasks=list(response.tasks), next_page_token=response.next_page_token)


def _read(path: str | Path | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _credentials(tls: bool, ca_file: str | Path | None, cert_file: str | Path | None,
                 key_file: str | Path | None) -> grpc.ChannelCredentials | None:
    """TLS when asked for or when any certificate is given (the system's roots without
    ``ca_file``); mutual TLS when a client certificate and key are given."""
    if not (tls or ca_file or cert_file or key_file):
        return None
    if bool(cert_file) != bool(key_file):
        raise ValueError("mutual TLS needs both cert_file and key_file")
    return grpc.ssl_channel_credentials(root_certificates=_read(ca_file),
                                        private_key=_read(key_file),
                                        certificate_chain=_read(cert_file))


class _Base:
    """What both clients share: the channel's credentials, the API key, the retry policy."""

    def __init__(self, target: str, *, api_key: str | None = None, tls: bool = False,
                 ca_file: str | Path | None = None, cert_file: str | Path | None = None,
                 key_file: str | Path | None = None, server_name: str | None = None,
                 retry_policy: RetryPolicy = RetryPolicy(), timeout_s: float = 30.0) -> None:
        self.target = target
        self.retry_policy = retry_policy
        self.timeout_s = timeout_s
        self._metadata = ((AUTH_HEADER, f"Bearer {api_key}"),) if api_key else ()
        self._credentials = _credentials(tls, ca_file, cert_file, key_file)
        self._options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        self._channel = self._open_channel()
        self._stub = IngestServiceStub(self._channel)

    def _open_channel(self) -> Any:
        raise NotImplementedError

    def _give_up(self, error: SwitchyardError, attempt: int, started: float) -> float | None:
        return self.retry_policy.next_delay(attempt, error, time.monotonic() - started)

    def _remaining(self, deadline: float | None, task_id: str, timeout_s: float | None
                   ) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(task_id, timeout_s or 0)
        return left


class Client(_Base):
    """A blocking client for IngestService. Use as a context manager, or call ``close()``.

    ``target`` is ``host:port``. ``api_key`` is sent on every call; ``ca_file`` (or
    ``tls=True`` for the system's roots) turns on TLS, ``cert_file`` + ``key_file`` mutual
    TLS; ``server_name`` overrides the name checked in the server's certificate.
    ``timeout_s`` bounds each call (not ``wait``/``watch``, which take their own timeout).
    """

    def _open_channel(self) -> grpc.Channel:
        if self._credentials:
            return grpc.secure_channel(self.target, self._credentials, options=self._options)
        return grpc.insecure_channel(self.target)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any, policy: RetryPolicy | None = None) -> Any:
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            try:
                return method(request, timeout=self.timeout_s, metadata=self._metadata)
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                delay = (policy or self.retry_policy).next_delay(
                    attempt, error, time.monotonic() - started)
                if delay is None:
                    raise error from exc
                time.sleep(delay)

    def submit(self, tenant_id: str, body: bytes | str, **fields: Any) -> Submitted:
        """Submit one document (fields as :func:`new_submission`)."""
        return self.submit_submission(new_submission(tenant_id, body, **fields))

    def submit_submission(self, submission: Submission) -> Submitted:
        """Submit a prepared :class:`Submission` (a key is generated when it has none)."""
        submission = _with_key(submission)
        response = self._call(self._stub.SubmitTask, SubmitTaskRequest(submission=submission))
        return _submitted(response, submission.idempotency_key)

    def submit_many(self, submissions: Sequence[Submission]) -> list[BatchItem]:
        """Submit several in one call; each gets its own result, in order (a refused item is
        a :class:`BatchItem` with ``error`` set, not an exception)."""
        keyed = [_with_key(s) for s in submissions]
        response = self._call(self._stub.SubmitTasks, SubmitTasksRequest(submissions=keyed))
        return _batch(keyed, response)

    def get(self, task_id: str) -> Task:
        return self._call(self._stub.GetTask, GetTaskRequest(task_id=task_id)).task

    def cancel(self, task_id: str, reason: str = "") -> Task:
        """Cancel a task that has not started executing; an executing one raises
        :class:`FailedPrecondition` (the executor is asked to compensate; watch for it).
        Not retried: a repeat after a lost answer would report the task already cancelled."""
        return self._call(self._stub.CancelTask,
                          CancelTaskRequest(task_id=task_id, reason=reason), NO_RETRIES).task

    def retry(self, task_id: str, attempt: int = 1) -> Submitted:
        """Run a FAILED or CANCELLED task again as a new task (``retry_of`` metadata names the
        old one). The same ``attempt`` always returns the same new task; pass 2 to retry the
        same old task a second time."""
        response = self._call(self._stub.RetryTask,
                              RetryTaskRequest(task_id=task_id, attempt=attempt))
        return Submitted(task_id=response.task.envelope.task_id,
                         idempotency_key=response.task.envelope.idempotency_key,
                         status=response.task.status, created=response.created)

    def list_tasks(self, tenant_id: str = "", **filters: Any) -> TaskPage:
        """One page of a tenant's tasks (the caller's own when ``tenant_id`` is empty),
        newest first; ``filters`` as :func:`list_request` (statuses, kinds, metadata,
        page_size, page_token)."""
        return _page(self._call(self._stub.ListTasks, list_request(tenant_id, **filters)))

    def timeline(self, task_id: str) -> Timeline:
        """The task's status changes and audit entries, oldest first (admin and auditor
        keys)."""
        response = self._call(self._stub.GetTaskTimeline,
                              GetTaskTimelineRequest(task_id=task_id))
        return Timeline(task=response.task, entries=list(response.entries))

    def redrive(self, task_id: str, reason: str = "") -> Task:
        """Publish an unfinished task again now (admin keys); a terminal one raises
        :class:`FailedPrecondition`. Not retried: each call is one audited re-drive."""
        return self._call(self._stub.RedriveTask,
                          RedriveTaskRequest(task_id=task_id, reason=reason), NO_RETRIES).task

    def watch(self, task_id: str, *, after_sequence: int = 0,
              timeout_s: float | None = None) -> Iterator[StatusEvent]:
        """The task's status events after ``after_sequence`` (0: its whole history), ending
        after the terminal one. A dropped stream is resumed where it stopped (under the retry
        policy); past ``timeout_s`` it raises :class:`WaitTimeout`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        started, attempt, last = time.monotonic(), 0, after_sequence
        while True:
            attempt += 1
            call = self._stub.WatchTask(
                WatchTaskRequest(task_id=task_id, after_sequence=last),
                timeout=self._remaining(deadline, task_id, timeout_s), metadata=self._metadata)
            try:
                for response in call:
                    last, attempt, started = response.event.sequence, 0, time.monotonic()
                    yield response.event
                    if response.event.status in TERMINAL_STATUSES:
                        return
                if self.get(task_id).status in TERMINAL_STATUSES:
                    return
                time.sleep(self.retry_policy.initial_backoff_s)  # ended early: resume
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                if error.code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise WaitTimeout(task_id, timeout_s or 0) from exc
                delay = self._give_up(error, max(attempt, 1), started)
                if delay is None:
                    raise error from exc
                time.sleep(delay)
            finally:
                call.cancel()

    def wait(self, task_id: str, timeout_s: float | None = None) -> Task:
        """Block until the task is SUCCEEDED, FAILED or CANCELLED and return it; raise
        :class:`WaitTimeout` after ``timeout_s`` (the task itself goes on)."""
        for _ in self.watch(task_id, timeout_s=timeout_s):
            pass
        return self.get(task_id)


class AsyncClient(_Base):
    """The asyncio twin of :class:`Client`: the same arguments, the same methods, awaited
    (``watch`` is an async iterator). Create it inside the event loop that uses it."""

    def _open_channel(self) -> grpc.aio.Channel:
        if self._credentials:
            return grpc.aio.secure_channel(self.target, self._credentials, options=self._options)
        return grpc.aio.insecure_channel(self.target)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any, policy: RetryPolicy | None = None) -> Any:
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            try:
                return await method(request, timeout=self.timeout_s, metadata=self._metadata)
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                delay = (policy or self.retry_policy).next_delay(
                    attempt, error, time.monotonic() - started)
                if delay is None:
                    raise error from exc
                await asyncio.sleep(delay)

    async def submit(self, tenant_id: str, body: bytes | str, **fields: Any) -> Submitted:
        return await self.submit_submission(new_submission(tenant_id, body, **fields))

    async def submit_submission(self, submission: Submission) -> Submitted:
        submission = _with_key(submission)
        response = await self._call(self._stub.SubmitTask,
                                    SubmitTaskRequest(submission=submission))
        return _submitted(response, submission.idempotency_key)

    async def submit_many(self, submissions: Sequence[Submission]) -> list[BatchItem]:
        keyed = [_with_key(s) for s in submissions]
        response = await self._call(self._stub.SubmitTasks,
                                    SubmitTasksRequest(submissions=keyed))
        return _batch(keyed, response)

    async def get(self, task_id: str) -> Task:
        return (await self._call(self._stub.GetTask, GetTaskRequest(task_id=task_id))).task

    async def cancel(self, task_id: str, reason: str = "") -> Task:
        return (await self._call(self._stub.CancelTask,
                                 CancelTaskRequest(task_id=task_id, reason=reason),
                                 NO_RETRIES)).task

    async def retry(self, task_id: str, attempt: int = 1) -> Submitted:
        response = await self._call(self._stub.RetryTask,
                                    RetryTaskRequest(task_id=task_id, attempt=attempt))
        return Submitted(task_id=response.task.envelope.task_id,
                         idempotency_key=response.task.envelope.idempotency_key,
                         status=response.task.status, created=response.created)

    async def list_tasks(self, tenant_id: str = "", **filters: Any) -> TaskPage:
        return _page(await self._call(self._stub.ListTasks,
                                      list_request(tenant_id, **filters)))

    async def timeline(self, task_id: str) -> Timeline:
        response = await self._call(self._stub.GetTaskTimeline,
                                    GetTaskTimelineRequest(task_id=task_id))
        return Timeline(task=response.task, entries=list(response.entries))

    async def redrive(self, task_id: str, reason: str = "") -> Task:
        return (await self._call(self._stub.RedriveTask,
                                 RedriveTaskRequest(task_id=task_id, reason=reason),
                                 NO_RETRIES)).task

    async def watch(self, task_id: str, *, after_sequence: int = 0,
                    timeout_s: float | None = None) -> AsyncIterator[StatusEvent]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        started, attempt, last = time.monotonic(), 0, after_sequence
        while True:
            attempt += 1
            call = self._stub.WatchTask(
                WatchTaskRequest(task_id=task_id, after_sequence=last),
                timeout=self._remaining(deadline, task_id, timeout_s), metadata=self._metadata)
            try:
                async for response in call:
                    last, attempt, started = response.event.sequence, 0, time.monotonic()
                    yield response.event
                    if response.event.status in TERMINAL_STATUSES:
                        return
                if (await self.get(task_id)).status in TERMINAL_STATUSES:
                    return
                await asyncio.sleep(self.retry_policy.initial_backoff_s)  # ended early: resume
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                if error.code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise WaitTimeout(task_id, timeout_s or 0) from exc
                delay = self._give_up(error, max(attempt, 1), started)
                if delay is None:
                    raise error from exc
                await asyncio.sleep(delay)
            finally:
                call.cancel()

    async def wait(self, task_id: str, timeout_s: float | None = None) -> Task:
        async for _ in self.watch(task_id, timeout_s=timeout_s):
            pass
        return await self.get(task_id)


__all__ = ["AUTH_HEADER", "NO_RETRIES", "TERMINAL_STATUSES", "AsyncClient", "BatchItem",
           "Client", "RetryPolicy", "Submitted", "TaskPage", "Timeline", "list_request",
           "new_submission"]
