-- Retention: raw payloads are purged past a tenant's retention while derived signals
-- (status, kind, decisions, scores, the audit chain) stay. purged_at records when.
ALTER TABLE tasks ADD COLUMN purged_at timestamptz;
ALTER TABLE review_items ADD COLUMN purged_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN purged_at timestamptz;
CREATE INDEX tasks_purge_candidates ON tasks (tenant_id, updated_at)
    WHERE purged_at IS NULL AND status IN ('SUCCEEDED', 'FAILED', 'CANCELLED');
