-- The webhook dispatcher reads the status feed only while someone listens: a registered
-- webhook, or a task that carries a callback_url. This partial index answers the second
-- question with one probe (it holds only the tasks submitted with a callback).
CREATE INDEX tasks_with_callback ON tasks (task_id) WHERE callback_url IS NOT NULL;
