-- Fairness (services/decision/fairness.py): for each task decided with a pack that declares
-- protected attributes, the group it belongs to per attribute and whether it was decided
-- without a person, with the version of every model consulted. The group is a keyed hash
-- (the attribute's value is personal data); the pack's declared values are hashed again to
-- name the groups when the rates are shown.
CREATE TABLE decision_fairness_samples (
    task_id     uuid        NOT NULL,
    tenant_id   text        NOT NULL,
    pack        text        NOT NULL,
    attribute   text        NOT NULL,
    group_hash  text        NOT NULL,
    models      jsonb       NOT NULL,           -- model name -> version consulted
    automated   boolean     NOT NULL,           -- decided without a person (auto_execute)
    decided_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, attribute)
);
CREATE INDEX decision_fairness_samples_decided ON decision_fairness_samples (decided_at);
