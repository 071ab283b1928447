-- Re-driving unfinished work from the system of record (ingest's reconciler): when a task was
-- last published again and how often, so repeats back off instead of flooding the broker.
ALTER TABLE tasks
    ADD COLUMN redriven_at timestamptz,
    ADD COLUMN redrives    integer NOT NULL DEFAULT 0;

CREATE INDEX tasks_unfinished ON tasks (updated_at)
    WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED');

-- Never used: every consumer dedupes in its own tables (decisions, executor_jobs,
-- review_items), in the transaction of its effect.
DROP TABLE processed_steps;
