-- The executor serves parked jobs fairly when they come due together (a breaker that closed,
-- a wave of retries): by the tenant's weight, then the task's priority bucket within the
-- tenant (services/executor/jobs.py: JobStore.claim_due). Jobs stored before this column
-- existed are normal priority (2), as tasks without one are.
ALTER TABLE executor_jobs ADD COLUMN priority smallint NOT NULL DEFAULT 2;
