-- Inbound webhook sources (IngestService.RegisterWebhookSource): upstream systems POST to
-- /webhooks/in/<source_id> on the ingest REST gateway, signed in the Standard Webhooks format
-- with the source's secret; the mapping (a switchyard.v1.WebhookFieldMapping in proto3 JSON)
-- says which JSON paths of the body give the submission's kind, idempotency key, metadata and
-- document. No table of received messages: a redelivered message maps to the same
-- idempotency key (by default its webhook-id), so tasks dedupe it as any resubmission.
CREATE TABLE webhook_sources (
    source_id   uuid PRIMARY KEY,
    tenant_id   text        NOT NULL,
    name        text        NOT NULL,
    secret      text        NOT NULL,
    mapping     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE INDEX webhook_sources_tenant ON webhook_sources (tenant_id) WHERE deleted_at IS NULL;
