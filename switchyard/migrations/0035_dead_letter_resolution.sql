-- An operator closes a dead letter that will not be replayed (the upstream system sent the
-- record again corrected, or it was a test): who resolved it, when, and why (the note passed
-- through the PII detectors). Open letters are those neither replayed nor resolved.
ALTER TABLE dead_letters ADD COLUMN resolved_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN resolved_by text;
ALTER TABLE dead_letters ADD COLUMN resolution text;
CREATE INDEX dead_letters_open ON dead_letters (tenant_id, failed_at DESC)
    WHERE replayed_at IS NULL AND resolved_at IS NULL;
