-- Operators: dead letters they can replay, and webhook deliveries they can list.
-- Dead letters an operator can replay: what is needed to re-publish the record exactly
-- (key, headers, partition and offset it was read at), the tenant it names (the
-- x-tenant-id header when it is a well-formed tenant id; '' otherwise, and such a letter is
-- for operators only), and
-- who replayed it when (replaying twice needs --force).
ALTER TABLE dead_letters ADD COLUMN tenant_id text NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN original_key bytea;
-- headers as a JSON object in bytes: header names and values may hold NUL, which
-- PostgreSQL text and jsonb cannot.
ALTER TABLE dead_letters ADD COLUMN original_headers bytea;
ALTER TABLE dead_letters ADD COLUMN source_partition integer;
ALTER TABLE dead_letters ADD COLUMN source_offset bigint;
ALTER TABLE dead_letters ADD COLUMN replayed_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN replayed_by text;
ALTER TABLE dead_letters ADD COLUMN replay_count integer NOT NULL DEFAULT 0;
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant_id, failed_at DESC, dead_letter_id);
-- A tenant's webhook deliveries newest first (IngestService.ListWebhookDeliveries).
CREATE INDEX webhook_deliveries_by_tenant
    ON webhook_deliveries (tenant_id, created_at DESC, delivery_id DESC);
