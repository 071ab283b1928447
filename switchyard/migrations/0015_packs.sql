-- Automation packs (docs/packs.md), owned by the decision service (services/decision/packs.py).
-- A pack version is immutable once stored: applying the same name and version with other
-- content is refused, so a task decided on a version can always be explained by it. Packs
-- shipped with Switchyard are not stored; they are read from the installed package.
CREATE TABLE packs (
    tenant_id   text        NOT NULL,            -- '' for a pack shared by every tenant
    name        text        NOT NULL,            -- the document type (the router's label)
    version     text        NOT NULL,            -- semver MAJOR.MINOR.PATCH
    digest      text        NOT NULL,            -- sha256 of its files, hex
    files       jsonb       NOT NULL,            -- path -> base64 content, as applied
    description text        NOT NULL DEFAULT '',
    applied_by  text        NOT NULL,            -- key id of who applied it
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name, version)
);

-- Every version of a tenant's pack settings (which packs are enabled, pinned versions,
-- parameter overrides); the highest version is in force. Kept whole, for the audit trail.
CREATE TABLE tenant_pack_settings (
    tenant_id   text        NOT NULL,
    version     bigint      NOT NULL CHECK (version >= 1),
    document    bytea       NOT NULL,            -- the YAML as applied
    applied_by  text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

-- The pack that made each decision (in plain text, beside the sealed decision), so retention
-- can purge a type's tasks after its pack's `retention.days` (switchyard/_retention.py).
ALTER TABLE decisions ADD COLUMN pack text NOT NULL DEFAULT '';
