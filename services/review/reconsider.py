"""What a pack's rules say of a reviewer's edits: the review desk asks the decision service.

A reviewer who approves with edits changes what the pack decided on: an invoice's total
raised past the tenant's reject limit, a vendor renamed to a blocked one, a bank account
added. The pack's rules live in the decision service, so before the desk accepts such an
approval it calls DecisionService.ReconsiderEdits with the reviewer's own credentials (the
caller's ``authorization`` metadata, as the operator console forwards it) and judges the
answer (:func:`services.review.verdicts.reconsidered_problems`). Verdicts without edits, and
rejections, never ask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc

from services.review.queue import ReviewError, invalid
from switchyard.v1 import Decision, DecisionServiceStub, Escalation, ReconsiderEditsRequest

#: A scanned document is read again (OCR) before the rules run: seconds on a busy CPU Triton.
RECONSIDER_TIMEOUT_S = 60.0
#: The caller's metadata entries the desk forwards: the API key, nothing else.
FORWARDED = frozenset({"authorization"})

Credentials = Sequence[tuple[str, str]]

_WHERE = "verdict.modified_fields"


class EditsCheck:
    """DecisionService.ReconsiderEdits over ``channel``; its refusals as ReviewErrors."""

    def __init__(self, channel: grpc.aio.Channel,
                 timeout_s: float = RECONSIDER_TIMEOUT_S) -> None:
        self._channel = channel
        self._stub = DecisionServiceStub(channel)
        self._timeout_s = timeout_s

    async def __call__(self, escalation: Escalation, edits: Mapping[str, str],
                       credentials: Credentials) -> Decision:
        request = ReconsiderEditsRequest(task=escalation.task,
                                         proposed_decision=escalation.proposed_decision,
                                         edits=dict(edits))
        metadata = tuple((k, v) for k, v in credentials if k.lower() in FORWARDED)
        try:
            response = await self._stub.ReconsiderEdits(request, metadata=metadata,
                                                        timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise refusal(exc) from None
        return response.decision

    async def close(self) -> None:
        await self._channel.close()


def refusal(exc: grpc.aio.AioRpcError) -> ReviewError:
    """The desk's error for a ReconsiderEdits call that did not answer."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:   # the tenant's pack is gone (disabled since)
        why = (f"{details}: its rules cannot check the edits; approve without edits, or "
               "reject")
        return invalid([(_WHERE, why)])
    if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT):
        # the document cannot be read again (or is gone: its retention purged it)
        why = f"the edits cannot be checked against the pack's rules ({details})"
        return invalid([(_WHERE, why)])
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return ReviewError("forbidden", f"the decision service refused to check the edits: "
                                        f"{details}")
    return ReviewError("unavailable", "the decision service could not check the edits against "
                                      f"the pack's rules now ({code.name}: {details}); the "
                                      "verdict was not recorded: submit it again shortly")


__all__ = ["Credentials", "EditsCheck", "RECONSIDER_TIMEOUT_S", "refusal"]
