-- The operator console's reads.
--
-- ListTasks by metadata: the metadata lives only in the sealed envelope, so each key/value
-- pair is also kept as a keyed hash (switchyard._dataclass.matching_hash, bound to the
-- tenant), which the filter matches with "@>" through a GIN index. Tasks accepted before
-- this migration have none and are not found by a metadata filter.
ALTER TABLE tasks ADD COLUMN metadata_hashes text[] NOT NULL DEFAULT '{}';
CREATE INDEX tasks_metadata_hashes ON tasks USING gin (metadata_hashes);

-- DecisionService.GetModelHealth: shadow agreement per tenant and time bucket.
CREATE INDEX decision_shadow_results_tenant_recorded
    ON decision_shadow_results (tenant_id, recorded_at);

-- Input drift as the decision service's drift monitors measure it (each publish of the
-- PSI gauges), kept 30 days (`switchyard purge` deletes older samples).
CREATE TABLE decision_drift_samples (
    model        text             NOT NULL,
    version      text             NOT NULL,
    feature      text             NOT NULL,
    psi          double precision NOT NULL,
    measured_at  timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX decision_drift_samples_measured ON decision_drift_samples (measured_at);
