-- A step's full output (the downstream's JSON answer as it came), sealed with the payload
-- codec (column executions.output, bound to output_id): the plan's templates read it
-- (steps.<name>.output), also after the task was parked and resumed, while the plain
-- ExecutionResult in executions.result keeps only the redacted output. output_id is
-- uuid5(task_id:step_id), a single-column id the codec binds the blob to and key rotation
-- walks by. `switchyard purge` sets output to NULL.
ALTER TABLE executions ADD COLUMN output_id uuid, ADD COLUMN output bytea;
CREATE UNIQUE INDEX executions_output_id ON executions (output_id);
