-- Per-tenant submission limits shared by every replica: one token bucket per tenant. Replicas
-- lease tokens from it in small chunks (switchyard/_ratelimit.py), so a tenant's limit is the
-- same whether 3 or 12 ingest replicas run. Refill uses the database clock, the one clock all
-- replicas share.
CREATE TABLE tenant_rate_buckets (
    tenant_id   text PRIMARY KEY,
    tokens      double precision NOT NULL,   -- left in the bucket at refilled_at
    refilled_at timestamptz NOT NULL,
    last_grant  double precision NOT NULL    -- tokens the latest lease took (0: refused)
);
