-- The W3C trace context a task's work started in, stored with work that resumes later on
-- another request, so it continues the task's trace (as review_items.trace_context does for
-- the human verdict, migration 0009):
--   tasks           the submission's context: the reconciler's re-publish and re-drive
--   decision_holds  the decision's context: a held task decided after the models return
--   executor_jobs   the decision record's context: parked jobs resumed, probes, SLA
--                   escalations and jobs taken over from a dead replica
ALTER TABLE tasks ADD COLUMN trace_context jsonb;
ALTER TABLE decision_holds ADD COLUMN trace_context jsonb;
ALTER TABLE executor_jobs ADD COLUMN trace_context jsonb;
