-- A keyed hash of the refused record's key (the key itself stays sealed in original_key), so
-- a producer's admin finds the letter of the record it produced with key K
-- (ListDeadLetters' record_key): equality only, never the key.
ALTER TABLE dead_letters ADD COLUMN original_key_hash text;
CREATE INDEX dead_letters_by_key ON dead_letters (original_key_hash)
    WHERE original_key_hash IS NOT NULL;
