-- Reviewer groups and four eyes on review items.
--
-- 1. An escalation may name the reviewer group allowed to take it (Escalation.reviewer_group;
--    empty: any reviewer of the tenant). Kept as a column so ListQueue filters by the caller's
--    groups in SQL, before paging.
-- 2. Four eyes (Escalation.four_eyes): approvals_required is 2 and the first approval is
--    recorded, not published: its reviewer lands in approved_by (key ids, no document data)
--    and the verdict itself in review_approvals, shaped like review_verdicts (the reason after
--    redaction, the ReviewVerdict sealed at rest like review_verdicts.verdict_pb, because it
--    holds the reviewer's edited field values). The second, different approver's verdict goes
--    to review_verdicts as any final verdict does.
ALTER TABLE review_items
    ADD COLUMN reviewer_group     text     NOT NULL DEFAULT '',
    ADD COLUMN approvals_required smallint NOT NULL DEFAULT 1,
    ADD COLUMN approved_by        text[]   NOT NULL DEFAULT '{}';

CREATE TABLE review_approvals (
    item_id      uuid PRIMARY KEY REFERENCES review_items (item_id),
    task_id      uuid        NOT NULL REFERENCES tasks (task_id),
    reviewer_id  text        NOT NULL,
    verdict      text        NOT NULL,               -- APPROVE or MODIFY
    reason       text        NOT NULL DEFAULT '',
    verdict_pb   bytea       NOT NULL,               -- serialized switchyard.v1.ReviewVerdict
    approved_at  timestamptz NOT NULL DEFAULT now()
);
