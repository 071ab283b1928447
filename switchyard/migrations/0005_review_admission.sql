-- Review admission throttling, SLA handling and resolution bookkeeping.
--
-- Escalations enter review_items as BACKLOGGED and are admitted (-> PENDING) by token buckets
-- per tenant and per queue plus a cap on open items per queue; nothing is ever dropped, the
-- backlog is worked highest priority first, oldest first. The buckets live here, not in a
-- process, so every review replica draws from the same ones.

ALTER TABLE review_items
    ADD COLUMN base_priority          smallint,     -- as escalated, before any SLA bump
    ADD COLUMN admitted_at            timestamptz,  -- left the admission backlog
    ADD COLUMN sla_bumped_at          timestamptz,  -- moved up a bucket as the deadline neared
    ADD COLUMN expired_at             timestamptz,  -- last time the SLA ran out
    ADD COLUMN expiries               integer NOT NULL DEFAULT 0,
    ADD COLUMN resolution             text,         -- e.g. verdict:approve, storm:reject
    ADD COLUMN decision_id            uuid,         -- the decision the item ended with
    ADD COLUMN decision_published_at  timestamptz;  -- that decision acknowledged by Kafka

-- Items enqueued before this migration were visible at once: they count as admitted.
UPDATE review_items SET base_priority = priority, admitted_at = created_at;
ALTER TABLE review_items ALTER COLUMN base_priority SET NOT NULL;

CREATE INDEX review_items_backlog ON review_items (priority, created_at)
    WHERE state = 'BACKLOGGED';
CREATE INDEX review_items_open_deadline ON review_items (sla_deadline)
    WHERE state IN ('BACKLOGGED', 'PENDING', 'CLAIMED');
CREATE INDEX review_items_unpublished ON review_items (resolved_at)
    WHERE decision_id IS NOT NULL AND decision_published_at IS NULL;
CREATE INDEX review_items_updated ON review_items (updated_at);

-- One token bucket per (scope, key): scope 'tenant' or 'queue'.
CREATE TABLE review_buckets (
    scope        text             NOT NULL,
    key          text             NOT NULL,
    tokens       double precision NOT NULL,
    refilled_at  timestamptz      NOT NULL,
    PRIMARY KEY (scope, key)
);
