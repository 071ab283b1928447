-- State follows the task into review, and "no priority" means normal.
--
-- 1. The review service learns which tasks ended from the task-status topic (it never reads
--    ingest's tables for it) and keeps them here, so an escalation that arrives after its task
--    ended (the two topics are consumed independently) is never admitted. One row per task
--    that reached a terminal status; ids and status only, no document data.
CREATE TABLE review_ended_tasks (
    task_id    uuid        PRIMARY KEY,
    tenant_id  text        NOT NULL,
    status     text        NOT NULL,          -- SUCCEEDED, FAILED or CANCELLED
    ended_at   timestamptz NOT NULL,          -- StatusEvent.occurred_at
    learned_at timestamptz NOT NULL DEFAULT now()
);

-- 2. Submission.priority was 0 (most urgent) by proto3 default, so every task that said
--    nothing became P0. Unset now means normal (P2); an explicit 0 on the deprecated field is
--    indistinguishable from unset and means normal too. Open review items escalated at P0
--    because of that default move to what the rule gives them now: P2, or P1 for "models
--    unavailable" (which asks for at most P1). The executor's SLA_AT_RISK escalations are P0
--    on purpose and stay. Every P0 escalation of the decision service came from the task's
--    requested priority (its own rules never ask for more than P1), so nothing else changes.
--    SLA deadlines stay as they were computed. Stored task envelopes need no rewrite: they
--    are read through the same rule (switchyard/_priority.py).
UPDATE review_items
   SET base_priority = CASE WHEN reason = 'MODEL_UNAVAILABLE' THEN 1 ELSE 2 END,
       priority      = CASE WHEN reason = 'MODEL_UNAVAILABLE' THEN 1 ELSE 2 END,
       updated_at    = now()
 WHERE state IN ('BACKLOGGED', 'PENDING', 'CLAIMED')
   AND base_priority = 0 AND priority = 0
   AND reason <> 'SLA_AT_RISK';
