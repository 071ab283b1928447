-- Labelled examples: what a person's verdict on an escalated task teaches the models.
--
-- The decision service writes one row when it escalates a task (verdict NULL: pending), with
-- the text the models read and the fields it proposed, sealed; the person's verdict, read
-- from the decisions topic, completes it: APPROVE / MODIFY / REJECT, the document type the
-- person confirmed (on a rejection only the type the person named, if any), and the fields
-- the person corrected (names in clear, predicted and corrected values sealed).
-- `switchyard models retrain` trains candidates from the labelled rows. Retention and
-- erasure clear the sealed columns with the task's other copies (switchyard/_retention.py);
-- the verdict and the versions stay, so live accuracy can still be counted.
CREATE TABLE decision_labels (
    task_id              uuid        PRIMARY KEY,
    tenant_id            text        NOT NULL,
    pack                 text        NOT NULL DEFAULT '',   -- the pack that decided ('' none)
    pack_version         text        NOT NULL DEFAULT '',
    models               jsonb       NOT NULL DEFAULT '{}', -- model name -> version consulted
    outputs              jsonb       NOT NULL DEFAULT '{}', -- model -> [label, confidence, kind]
    rule                 text        NOT NULL,              -- why it escalated
    predicted_label      text        NOT NULL,              -- the type the decision acted on
    predicted_confidence real        NOT NULL,
    example              bytea,                             -- sealed JSON {text, fields}
    verdict              text,                              -- NULL until a person decides
    label                text,                              -- the type a person confirmed
    corrected_fields     text[]      NOT NULL DEFAULT '{}',
    corrections          bytea,                             -- sealed JSON {field: [was, is]}
    created_at           timestamptz NOT NULL DEFAULT now(),
    labelled_at          timestamptz,
    purged_at            timestamptz
);
CREATE INDEX decision_labels_labelled ON decision_labels (labelled_at)
    WHERE labelled_at IS NOT NULL;
