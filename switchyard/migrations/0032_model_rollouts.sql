-- Model rollouts (services/decision/rollouts.py): per model the decision service consults,
-- the version that acts on tasks and the candidate being shadowed or canaried. Every change
-- is also an audit-log entry (model.rollout_started, model.promoted, model.rolled_back).
CREATE TABLE decision_model_rollouts (
    model_name        text             PRIMARY KEY,
    live_version      text             NOT NULL,      -- Triton version directory
    candidate_version text             NOT NULL DEFAULT '',
    stage             text             NOT NULL DEFAULT 'NONE',  -- NONE | SHADOW | CANARY
    canary_share      double precision NOT NULL DEFAULT 0,
    tenants           text[]           NOT NULL DEFAULT '{}',    -- empty: every tenant
    started_at        timestamptz,
    updated_at        timestamptz      NOT NULL DEFAULT now(),
    updated_by        text             NOT NULL,
    note              text             NOT NULL DEFAULT ''
);

-- What each side of a canary decided since it started (counts added by every replica).
CREATE TABLE decision_rollout_evidence (
    model_name        text        NOT NULL,
    candidate_version text        NOT NULL,
    started_at        timestamptz NOT NULL,             -- which rollout of the model
    role              text        NOT NULL,             -- live | candidate
    decisions         bigint      NOT NULL DEFAULT 0,
    escalated         bigint      NOT NULL DEFAULT 0,
    errors            bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (model_name, candidate_version, started_at, role)
);
