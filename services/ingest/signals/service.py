"""Classroom signals in the ingest process: ConsentService over gRPC, the ``classroom-signals``
batch processor and the consent view's refresh loop. Glue only: the rules live in
:mod:`.consent`, :mod:`.erasure`, :mod:`.frames`, :mod:`.admit` and :mod:`.processor`.
"""

from __future__ import annotations

import logging

import asyncpg
import grpc

from services.ingest import keyset
from services.ingest.signals import consent, erasure
from services.ingest.signals.consent import ConsentChange, ConsentView
from services.ingest.signals.processor import SignalProcessor
from services.ingest.signals.pseudonyms import TermKeys, parse_term_starts
from switchyard.access import Role, principal_var
from switchyard.audit import append as audit_append
from switchyard.documents import BlobStore
from switchyard.messaging import CLASSROOM_SIGNALS, Producer
from switchyard.privacy import matching_key
from switchyard.rpc import FieldViolation, abort_invalid, request_tenant
from switchyard.runtime import ServiceContext
from switchyard.storage import PayloadCodec, codec_for
from switchyard.tasks import timestamp
from switchyard.v1 import (
    Consent,
    ConsentServiceServicer,
    EraseSubjectRequest,
    EraseSubjectResponse,
    ListConsentsRequest,
    ListConsentsResponse,
    SetConsentRequest,
    SetConsentResponse,
    add_ConsentServiceServicer_to_server,
)

__all__ = ["CONSENT_POLICY", "CONSENT_SERVICE_NAME", "ConsentServicer", "register"]

log = logging.getLogger(__name__)
CONSENT_SERVICE_NAME = "switchyard.v1.ConsentService"
#: ListConsents' page when page_size is 0.
DEFAULT_PAGE_SIZE = 100
#: Admins of a tenant manage its consents; auditors read them.
CONSENT_POLICY = {
    f"/{CONSENT_SERVICE_NAME}/SetConsent": frozenset({Role.ADMIN}),
    f"/{CONSENT_SERVICE_NAME}/EraseSubject": frozenset({Role.ADMIN}),
    f"/{CONSENT_SERVICE_NAME}/ListConsents": frozenset({Role.ADMIN, Role.AUDITOR}),
}


def consent_message(change: ConsentChange) -> Consent:
    return Consent(tenant_id=change.tenant_id, subject_ref=change.subject_ref,
                   purpose=change.purpose.proto, granted=change.granted,
                   guardian_ref=change.guardian_ref, group=change.group,
                   updated_at=timestamp(change.updated_at), updated_by=change.updated_by)


class ConsentServicer(ConsentServiceServicer):
    def __init__(self, pool: asyncpg.Pool, producer: Producer, codec: PayloadCodec,
                 hash_key: bytes, keys: TermKeys, blobs: BlobStore) -> None:
        self.pool = pool
        self.producer = producer
        self.codec = codec
        self.hash_key = hash_key
        self.keys = keys
        self.blobs = blobs

    async def SetConsent(self, request: SetConsentRequest,
                         context: grpc.aio.ServicerContext) -> SetConsentResponse:
        problems = consent.set_consent_problems(request.subject_ref, request.purpose,
                                                request.granted, request.guardian_ref,
                                                request.group)
        if problems:
            await abort_invalid(context, problems)
        tenant = await request_tenant(request.tenant_id, context)
        actor = principal_var.get().key_id
        purpose = consent.purpose_of(request.purpose)
        async with self.pool.acquire() as conn, conn.transaction():
            change = await consent.set_consent(
                conn, self.codec, self.hash_key, tenant, request.subject_ref.strip(), purpose,
                request.granted, request.guardian_ref.strip(), request.group.strip(), actor)
            await audit_append(conn, tenant, actor,
                               "consent.granted" if request.granted else "consent.withdrawn",
                               {"subject_hash": change.subject_hash,
                                "purpose": purpose.value, "consent_id": str(change.consent_id),
                                "guardian": bool(change.guardian_ref),
                                "group": bool(change.group)}, writer="ingest")
        return SetConsentResponse(consent=consent_message(change))

    async def ListConsents(self, request: ListConsentsRequest,
                           context: grpc.aio.ServicerContext) -> ListConsentsResponse:
        problems: list[FieldViolation] = []
        if request.subject_ref:
            problems += consent.subject_problems(request.subject_ref)
        page_size = after = None
        try:
            # the proto's default page is 100 (keyset's listings default to 50)
            page_size = keyset.page_size(request.page_size or DEFAULT_PAGE_SIZE)
        except FieldViolation as exc:
            problems.append(exc)
        if request.page_token:
            try:
                after = keyset.parse(request.page_token, "ListConsents")
            except FieldViolation as exc:
                problems.append(exc)
        if problems:
            await abort_invalid(context, problems)
        tenant = await request_tenant(request.tenant_id, context)
        changes, more = await consent.list_consents(
            self.pool, self.codec, self.hash_key, tenant, request.subject_ref.strip(),
            page_size, after)
        token = keyset.encode(changes[-1].updated_at, changes[-1].consent_id) \
            if more and changes else ""
        return ListConsentsResponse(consents=[consent_message(c) for c in changes],
                                    next_page_token=token)

    async def EraseSubject(self, request: EraseSubjectRequest,
                           context: grpc.aio.ServicerContext) -> EraseSubjectResponse:
        problems = consent.subject_problems(request.subject_ref)
        if problems:
            await abort_invalid(context, problems)
        tenant = await request_tenant(request.tenant_id, context)
        erased = await erasure.erase_subject(
            self.pool, self.producer, self.codec, self.keys, self.hash_key, self.blobs,
            tenant, request.subject_ref.strip(), principal_var.get().key_id)
        log.warning("subject erased", extra={"erasure_id": erased.erasure_id,
                                             "tenant_id": tenant,
                                             "pseudonyms": len(erased.pseudonyms),
                                             "tasks_purged": erased.tasks_purged})
        return EraseSubjectResponse(erasure_id=erased.erasure_id,
                                    consents_removed=erased.consents_removed,
                                    pseudonyms=len(erased.pseudonyms))


async def register(ctx: ServiceContext, blobs: BlobStore) -> None:
    """Add ConsentService, the signal processor and the consent refresh loop to ingest.
    The consent view is loaded before the processor starts, so no frame is judged against
    an empty registry."""
    settings = ctx.settings
    codec = codec_for(settings)
    term_starts = parse_term_starts(settings.signal_term_starts)
    keys = TermKeys(ctx.pool, codec)
    view = ConsentView(ctx.pool, codec, settings.signal_consent_refresh_s)
    await view.refresh()
    ctx.serve((add_ConsentServiceServicer_to_server,
               ConsentServicer(ctx.pool, ctx.producer, codec, matching_key(settings), keys,
                               blobs), CONSENT_SERVICE_NAME), CONSENT_POLICY)
    processor = SignalProcessor(ctx.producer, view, keys, term_starts,
                                settings.signal_max_future_s)
    ctx.consume_batches(CLASSROOM_SIGNALS, processor.handle, settings.signal_batch_size,
                        settings.signal_batch_window_ms / 1000)
    ctx.run_in_background("signal-consents", view.run)
