-- One audit chain per tenant and writer (ingest, decision, executor, review, retention), so
-- the services append without queueing on one lock per tenant (switchyard/_audit.py).
-- Entries written before keep writer '' and verify as the chain they were.
ALTER TABLE audit_log ADD COLUMN writer text NOT NULL DEFAULT '';
ALTER TABLE audit_log DROP CONSTRAINT audit_log_tenant_seq;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_writer_seq UNIQUE (tenant_id, writer, seq);
