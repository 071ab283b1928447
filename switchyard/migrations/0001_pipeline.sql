-- The system of record for the pipeline: tasks, their status history, the dedupe index every
-- consumer uses, decisions, executed steps and review items.

CREATE TABLE tasks (
    task_id          uuid PRIMARY KEY,
    tenant_id        text        NOT NULL,
    idempotency_key  text        NOT NULL,
    payload_sha256   text        NOT NULL,
    kind             text        NOT NULL,
    source           text        NOT NULL,
    envelope         bytea       NOT NULL,          -- serialized switchyard.v1.TaskEnvelope
    status           text        NOT NULL,
    stage            text        NOT NULL,
    reason           text        NOT NULL DEFAULT '',
    status_seq       bigint      NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,                   -- envelope acknowledged by the broker
    CONSTRAINT tasks_tenant_key_unique UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX tasks_tenant_status_created ON tasks (tenant_id, status, created_at);
CREATE INDEX tasks_unpublished ON tasks (created_at) WHERE published_at IS NULL;

-- Append-only: one row per status change, seq increasing per task.
CREATE TABLE task_status_history (
    task_id      uuid        NOT NULL REFERENCES tasks (task_id),
    seq          bigint      NOT NULL,
    status       text        NOT NULL,
    stage        text        NOT NULL,
    reason       text        NOT NULL DEFAULT '',
    service      text        NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, seq)
);

-- At-least-once delivery made effect-once: a consumer records (task, step) in the same
-- transaction as its effect and skips a redelivered record whose step is already here.
CREATE TABLE processed_steps (
    task_id       uuid        NOT NULL,
    step          text        NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, step)
);

CREATE TABLE decisions (
    decision_id  uuid PRIMARY KEY,
    task_id      uuid        NOT NULL REFERENCES tasks (task_id),
    tenant_id    text        NOT NULL,
    source       text        NOT NULL,               -- MODEL or HUMAN
    outcome      text        NOT NULL,
    confidence   real        NOT NULL,
    rule         text        NOT NULL,
    explanation  text        NOT NULL,
    decision     bytea       NOT NULL,               -- serialized switchyard.v1.Decision
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_task ON decisions (task_id, created_at);
-- One model decision per task: a redelivered task re-publishes it instead of deciding again.
CREATE UNIQUE INDEX decisions_one_model_decision ON decisions (task_id) WHERE source = 'MODEL';

CREATE TABLE executions (
    task_id          uuid        NOT NULL REFERENCES tasks (task_id),
    step_id          text        NOT NULL,
    idempotency_key  text        NOT NULL,
    outcome          text        NOT NULL,
    attempts         integer     NOT NULL,
    error            text        NOT NULL DEFAULT '',
    result           bytea       NOT NULL,           -- serialized switchyard.v1.ExecutionResult
    finished_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, step_id)
);

CREATE TABLE review_items (
    item_id           uuid PRIMARY KEY,
    escalation_id     uuid        NOT NULL UNIQUE,
    task_id           uuid        NOT NULL REFERENCES tasks (task_id),
    tenant_id         text        NOT NULL,
    queue             text        NOT NULL,
    priority          smallint    NOT NULL,          -- 0 (P0, most urgent) .. 3 (P3)
    reason            text        NOT NULL,
    state             text        NOT NULL,
    claimed_by        text,
    lease_expires_at  timestamptz,
    sla_deadline      timestamptz,
    escalation        bytea       NOT NULL,          -- serialized switchyard.v1.Escalation
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at       timestamptz
);
CREATE INDEX review_items_queue ON review_items (queue, state, priority, sla_deadline);

CREATE TABLE review_verdicts (
    item_id      uuid PRIMARY KEY REFERENCES review_items (item_id),
    task_id      uuid        NOT NULL REFERENCES tasks (task_id),
    reviewer_id  text        NOT NULL,
    verdict      text        NOT NULL,
    reason       text        NOT NULL DEFAULT '',
    verdict_pb   bytea       NOT NULL,               -- serialized switchyard.v1.ReviewVerdict
    decided_at   timestamptz NOT NULL DEFAULT now()
);

-- Every record a stage could not accept, mirrored from the dead-letter topic for operators.
CREATE TABLE dead_letters (
    dead_letter_id  uuid PRIMARY KEY,
    service         text        NOT NULL,
    source_topic    text        NOT NULL,
    reason_code     text        NOT NULL,
    reason          text        NOT NULL,
    original_value  bytea,
    failed_at       timestamptz NOT NULL DEFAULT now()
);
