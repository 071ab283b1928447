-- A status change keeps its detail (the decision's explanation, what the executor's failure
-- was: "invalid_plan: alias 'wms' of target ... has no http entry"), so the status feed,
-- WatchTask, the REST events and the timeline show what the task-status record carried.
ALTER TABLE task_status_history ADD COLUMN detail text NOT NULL DEFAULT '';
