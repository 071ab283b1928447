-- Ingest's backpressure counts every task the machines have yet to finish: waiting for a
-- decision (QUEUED) or being decided or carried out (IN_PROGRESS), not only those waiting
-- for a decision, so decisions piling up in front of a slower executor push back too
-- (services/ingest/backpressure.py). The count runs every few seconds with a LIMIT; this
-- index keeps it off the terminal rows.
CREATE INDEX tasks_in_machines ON tasks (tenant_id) WHERE status IN ('QUEUED', 'IN_PROGRESS');
