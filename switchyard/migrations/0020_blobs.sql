-- The claim check: a document above SWITCHYARD_BLOB_THRESHOLD_BYTES is stored once here and
-- task envelopes carry a BlobRef ("pg:<blob_id>", sha256, size) instead of the bytes.
-- body is sealed with the payload codec (column blobs.body, bound to blob_id) like every
-- payload column; `switchyard purge` deletes a task's blobs with its payload.
CREATE TABLE blobs (
    blob_id     uuid PRIMARY KEY,
    tenant_id   text        NOT NULL,
    task_id     uuid        NOT NULL,
    sha256      text        NOT NULL,
    size_bytes  bigint      NOT NULL,
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX blobs_task ON blobs (task_id);
