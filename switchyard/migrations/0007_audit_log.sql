-- The audit trail: append-only, one hash chain per tenant. Each entry's hash covers the
-- previous entry's hash and its own canonical content, so editing or deleting any entry
-- breaks every later link (`switchyard audit verify` names the first broken one). The
-- database itself refuses UPDATE, DELETE and TRUNCATE; only a superuser who disables the
-- triggers can tamper, and the chain shows it.
CREATE TABLE audit_log (
    entry_id     bigserial   PRIMARY KEY,
    tenant_id    text        NOT NULL,
    seq          bigint      NOT NULL,
    occurred_at  timestamptz NOT NULL,
    actor        text        NOT NULL,              -- service name or reviewer/operator id
    action       text        NOT NULL,              -- e.g. decision.made, step.executed
    task_id      uuid,
    detail       jsonb       NOT NULL,              -- redacted snapshot; hashes, not raw data
    prev_hash    text        NOT NULL,
    entry_hash   text        NOT NULL,
    CONSTRAINT audit_log_tenant_seq UNIQUE (tenant_id, seq)
);
CREATE INDEX audit_log_task ON audit_log (task_id, entry_id);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
