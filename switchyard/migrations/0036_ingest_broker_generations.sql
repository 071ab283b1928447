-- Each broker generation (the marker topic's random number, switchyard/_brokerwatch.py) the
-- reconciler has seen, and when it first saw it. A generation newer than another is a broker
-- that lost its state: every unfinished task that made no progress since then lost its
-- records with it, and is re-driven at once instead of after SWITCHYARD_REDRIVE_AFTER_S.
CREATE TABLE ingest_broker_generations (
    generation bigint PRIMARY KEY,
    first_seen_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
