-- The local target of the executor's SQL connector: a ledger standing in for a downstream
-- system's table. Production points the connector at the downstream database instead
-- (SWITCHYARD_EXECUTOR_SQL_DSN). The idempotency key makes a repeated step a no-op.
CREATE TABLE downstream_records (
    idempotency_key  text PRIMARY KEY,
    task_id          uuid        NOT NULL,
    tenant_id        text        NOT NULL,
    system           text        NOT NULL,           -- e.g. erp.invoices
    operation        text        NOT NULL,
    payload          jsonb       NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
