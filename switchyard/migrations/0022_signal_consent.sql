-- Classroom signals at ingest (services/ingest/signals/): the consent registry, the
-- per-(tenant, term) pseudonymisation keys and the record of erasures.
--
-- signal_consents: one row per (tenant, student, purpose), the latest SetConsent wins. The
-- student's reference is personal: sealed with the payload codec (subject_ref, bound to
-- consent_id), and kept as a keyed hash (subject_hash, switchyard._dataclass.matching_hash)
-- for lookups and uniqueness. guardian_ref and group_label are sealed the same way. Ingest's
-- consent view re-reads rows by updated_at, so every write sets it.
CREATE TABLE signal_consents (
    consent_id    uuid        PRIMARY KEY,
    tenant_id     text        NOT NULL,
    subject_hash  text        NOT NULL,
    subject_ref   bytea       NOT NULL,
    purpose       text        NOT NULL
        CHECK (purpose IN ('class_analytics', 'individual_support', 'fairness_monitoring')),
    granted       boolean     NOT NULL,
    guardian_ref  bytea,
    group_label   bytea,
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_by    text        NOT NULL DEFAULT '',
    UNIQUE (tenant_id, subject_hash, purpose)
);
CREATE INDEX signal_consents_updated ON signal_consents (updated_at);
CREATE INDEX signal_consents_listing ON signal_consents (tenant_id, updated_at DESC, consent_id DESC);

-- The random key of each (tenant, term) pseudonyms are made with, sealed (key, bound to
-- key_id). The first frame of a new term creates it (ON CONFLICT: one key however many
-- replicas race).
CREATE TABLE signal_term_keys (
    key_id      uuid        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    term        text        NOT NULL,
    key         bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, term)
);

-- Right-to-erasure requests carried out (ConsentService.EraseSubject); subject_hash lets the
-- consent views of every ingest replica forget the student at once.
CREATE TABLE signal_erasures (
    erasure_id        uuid        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    subject_hash      text        NOT NULL,
    pseudonyms        integer     NOT NULL,
    consents_removed  integer     NOT NULL,
    tasks_purged      integer     NOT NULL,
    requested_by      text        NOT NULL,
    requested_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX signal_erasures_requested ON signal_erasures (requested_at);
