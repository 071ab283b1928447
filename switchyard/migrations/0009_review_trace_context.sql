-- The W3C trace context of the task when it reached review, so the human verdict (which
-- arrives later, on another request) continues the task's trace as a linked span.
ALTER TABLE review_items ADD COLUMN trace_context jsonb;
