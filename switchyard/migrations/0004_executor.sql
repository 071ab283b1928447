-- The executor's durable state: one job per decision it carries out, the replicas that may own
-- jobs, and the circuit breakers every replica shares.

-- A job exists from the moment a decision's record is handled until the task is terminal or
-- handed to a person; it is written before the decision's offset is committed, so a task can
-- be parked (breaker open, retries exhausted), resumed by any replica, or taken over from a
-- replica that died, and never lost.
CREATE TABLE executor_jobs (
    decision_id  uuid PRIMARY KEY,
    task_id      uuid        NOT NULL REFERENCES tasks (task_id),
    tenant_id    text        NOT NULL,
    decision     bytea       NOT NULL,           -- serialized switchyard.v1.Decision
    state        text        NOT NULL,           -- running | parked | succeeded | failed | escalated
    blocked_by   text        NOT NULL DEFAULT '', -- parked on: 'breaker' (endpoint) or 'retry' (retry_at)
    endpoint     text        NOT NULL DEFAULT '',
    reason       text        NOT NULL DEFAULT '',
    retry_at     timestamptz,
    deadline     timestamptz NOT NULL,           -- the tenant's SLA for this task
    parks        integer     NOT NULL DEFAULT 0,
    owner        text        NOT NULL,           -- replica that runs (or last ran) it
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX executor_jobs_open ON executor_jobs (state, retry_at)
    WHERE state IN ('running', 'parked');
CREATE INDEX executor_jobs_task ON executor_jobs (task_id);

-- Executor replicas alive right now: each beats every poll interval; a job whose owner stopped
-- beating is taken over by another replica (or by the restarted one).
CREATE TABLE executor_replicas (
    owner         text PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

-- Circuit breakers, one per downstream endpoint, shared by every replica: the first replica
-- that trips publishes OPEN here, every replica adopts it; a single replica at a time holds
-- the probe lease for the half-open trial call; its success publishes CLOSED.
CREATE TABLE executor_breakers (
    name           text PRIMARY KEY,              -- endpoint, e.g. http://erp
    state          text        NOT NULL,          -- closed | open | half-open
    failure_count  integer     NOT NULL DEFAULT 0,
    opened_at      timestamptz,
    probe_owner    text,
    probe_until    timestamptz,
    updated_by     text        NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
