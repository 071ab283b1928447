-- Classroom engagement (decision service, services/decision/engagement/): only derived data.
-- Class-level windows (k-anonymous), per-student windows of students whose guardian
-- consented to individual support (the subject is a keyed-hash pseudonym), alerts, fairness
-- counts, and the marks that make a restart count no closed window twice.

-- One closed window of one class session. Suppressed (fewer than k students): engagement and
-- drivers are NULL. Kept signal_class_retention_days.
CREATE TABLE engagement_windows (
    tenant_id text NOT NULL,
    classroom_id text NOT NULL,
    session_id text NOT NULL,
    kind smallint NOT NULL,                 -- WindowKind: 1 tumbling, 2 hopping
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    students integer NOT NULL,
    suppressed boolean NOT NULL,
    engagement double precision,
    occupancy double precision NOT NULL,
    audio_level double precision,
    attendance integer NOT NULL,
    expected_students integer NOT NULL,
    signals bigint NOT NULL,
    dropped_no_consent bigint NOT NULL,
    late_signals bigint NOT NULL,
    duplicate_signals bigint NOT NULL,
    model_version text NOT NULL DEFAULT '',
    drivers jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    PRIMARY KEY (tenant_id, classroom_id, session_id, kind, window_start)
);
CREATE INDEX engagement_windows_created ON engagement_windows (created_at);
CREATE INDEX engagement_windows_unpublished ON engagement_windows (created_at)
    WHERE published_at IS NULL;

-- One student in one closed window (only with individual-support consent). subject is the
-- pseudonym. Kept signal_subject_retention_days; deleted on erasure.
CREATE TABLE engagement_subject_windows (
    tenant_id text NOT NULL,
    classroom_id text NOT NULL,
    session_id text NOT NULL,
    kind smallint NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    subject text NOT NULL,
    seat_id text NOT NULL DEFAULT '',
    p_engaged double precision NOT NULL,
    features jsonb NOT NULL,
    model_version text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, classroom_id, session_id, kind, window_start, subject)
);
CREATE INDEX engagement_subject_windows_subject ON engagement_subject_windows (tenant_id, subject);
CREATE INDEX engagement_subject_windows_created ON engagement_subject_windows (created_at);

-- Alerts: raised (written to intake as a classroom_event submission) or suppressed (held
-- back by the per-classroom rate limit). Kept signal_subject_retention_days; a student's are
-- deleted on erasure.
CREATE TABLE engagement_alerts (
    alert_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    classroom_id text NOT NULL,
    session_id text NOT NULL,
    kind smallint NOT NULL,                 -- AlertKind
    subject text NOT NULL DEFAULT '',
    seat_id text NOT NULL DEFAULT '',
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    windows integer NOT NULL,
    score double precision NOT NULL,
    model_version text NOT NULL DEFAULT '',
    drivers jsonb NOT NULL DEFAULT '[]',
    detail text NOT NULL DEFAULT '',
    suppressed boolean NOT NULL,
    suppressed_before integer NOT NULL DEFAULT 0,
    document jsonb,
    raised_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX engagement_alerts_class ON engagement_alerts (tenant_id, classroom_id, raised_at);
CREATE INDEX engagement_alerts_session ON engagement_alerts (tenant_id, classroom_id, session_id);
CREATE INDEX engagement_alerts_subject ON engagement_alerts (tenant_id, subject);

-- Per (tenant, classroom, session, window kind): windows are closed up to closed_until (event
-- time), the watermark, late signals not yet reported in a window, and the last record offset
-- these marks account for. Written in the same transaction as the windows they close.
CREATE TABLE engagement_marks (
    tenant_id text NOT NULL,
    classroom_id text NOT NULL,
    session_id text NOT NULL,
    kind smallint NOT NULL,
    closed_until double precision NOT NULL,
    max_observed double precision NOT NULL,
    late_pending bigint NOT NULL DEFAULT 0,
    processed_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, classroom_id, session_id, kind)
);

-- Fairness on live data: per (tenant, model version, group) the per-student tumbling windows
-- scored and those flagged disengaged, each window counted once (aggregates, no subject).
CREATE TABLE engagement_group_counts (
    tenant_id text NOT NULL,
    model_version text NOT NULL,
    group_name text NOT NULL,
    windows bigint NOT NULL DEFAULT 0,
    flagged bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, model_version, group_name)
);
