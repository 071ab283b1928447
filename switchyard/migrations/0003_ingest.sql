-- Ingest: the status feed behind WatchTask/WatchTenant/webhooks, list and backlog indexes,
-- webhook registrations with a durable delivery queue, and cancellation requests.

-- Every history row records the transaction that wrote it. A reader that only takes rows
-- whose txid is below the oldest transaction still running (pg_snapshot_xmin) sees a prefix
-- that can never grow behind its back, so a (txid, task_id, seq) cursor never skips a row
-- that commits late. See services/ingest/feed.py.
ALTER TABLE task_status_history ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX task_status_history_feed ON task_status_history (txid, task_id, seq);

-- ListTasks without a status filter: a tenant's tasks newest first, keyset-paginated.
CREATE INDEX tasks_tenant_created ON tasks (tenant_id, created_at DESC, task_id DESC);
-- The backlog behind backpressure: accepted tasks no decision has picked up yet.
CREATE INDEX tasks_queued ON tasks (created_at) WHERE status = 'QUEUED';

-- Optional per-task webhook (Submission.callback_url), signed with the service key.
ALTER TABLE tasks ADD COLUMN callback_url text;

-- Per-tenant webhooks; each has its own signing secret.
CREATE TABLE webhooks (
    webhook_id  uuid PRIMARY KEY,
    tenant_id   text        NOT NULL,
    url         text        NOT NULL,
    secret      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id) WHERE deleted_at IS NULL;

-- Where the webhook dispatcher is in the status feed; one row, locked while enqueueing so
-- several ingest replicas never enqueue the same event twice.
CREATE TABLE webhook_feed_cursor (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    txid    bigint  NOT NULL,
    task_id uuid    NOT NULL,
    seq     bigint  NOT NULL
);

-- One row per (status event, destination): the outbox the delivery worker drains.
CREATE TABLE webhook_deliveries (
    delivery_id      uuid PRIMARY KEY,
    webhook_id       uuid REFERENCES webhooks (webhook_id),  -- NULL: the task's callback_url
    tenant_id        text        NOT NULL,
    task_id          uuid        NOT NULL,
    seq              bigint      NOT NULL,
    url              text        NOT NULL,
    body             bytea       NOT NULL,                     -- the JSON that is POSTed
    state            text        NOT NULL DEFAULT 'pending',   -- pending, delivered, failed
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    last_error       text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';

-- Cancellations of tasks that were already executing, handed to the executor over the
-- "cancellations" topic; published_at NULL means the reconciler still has to publish it.
CREATE TABLE cancellation_requests (
    request_id    uuid PRIMARY KEY,
    task_id       uuid        NOT NULL UNIQUE REFERENCES tasks (task_id),
    tenant_id     text        NOT NULL,
    reason        text        NOT NULL,
    requested_by  text        NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
