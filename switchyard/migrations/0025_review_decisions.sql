-- People's decisions (a reviewer's verdict, HUMAN; a review policy's default action, POLICY)
-- are the review service's own record, beside its items: `decisions` keeps the models'
-- decisions and has one writer, the decision service. Rows already written move here; their
-- sealed blobs keep the context they were sealed under (switchyard/_payloads.py:
-- REVIEW_DECISION), so they open as they did.
CREATE TABLE review_decisions (
    decision_id  uuid        PRIMARY KEY,
    item_id      uuid        NOT NULL REFERENCES review_items (item_id),
    task_id      uuid        NOT NULL,
    tenant_id    text        NOT NULL,
    source       text        NOT NULL,               -- HUMAN or POLICY
    outcome      text        NOT NULL,
    rule         text        NOT NULL,
    explanation  text        NOT NULL,               -- a reviewer's reason only redacted
    decision     bytea       NOT NULL,               -- serialized switchyard.v1.Decision, sealed
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX review_decisions_task ON review_decisions (task_id);

INSERT INTO review_decisions (decision_id, item_id, task_id, tenant_id, source, outcome, rule,
                              explanation, decision, created_at)
SELECT d.decision_id, r.item_id, d.task_id, d.tenant_id, d.source, d.outcome, d.rule,
       d.explanation, d.decision, d.created_at
FROM decisions d JOIN review_items r ON r.decision_id = d.decision_id
WHERE d.source <> 'MODEL';
DELETE FROM decisions d USING review_decisions r WHERE r.decision_id = d.decision_id;
