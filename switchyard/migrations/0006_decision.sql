-- The decision service's own records: the vendor history the invoice_risk features read,
-- every scored invoice (duplicate detection), shadow model outputs, and tasks held while the
-- models are unavailable.

-- Per tenant and vendor: what past invoices looked like. vendor_key is the vendor name
-- without case, punctuation or legal suffix (services/decision/extraction.py:vendor_key).
CREATE TABLE decision_vendors (
    tenant_id      text             NOT NULL,
    vendor_key     text             NOT NULL,
    vendor_name    text             NOT NULL,
    currency       text             NOT NULL DEFAULT '',   -- the vendor's usual currency
    invoice_count  integer          NOT NULL DEFAULT 0,    -- invoices seen in that currency
    amount_sum     double precision NOT NULL DEFAULT 0,
    bank_account   text             NOT NULL DEFAULT '',   -- first remittance account seen
    first_seen     timestamptz      NOT NULL DEFAULT now(),
    last_seen      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, vendor_key)
);

-- One row per scored invoice, written with its decision.
CREATE TABLE decision_invoices (
    task_id         uuid PRIMARY KEY,
    tenant_id       text             NOT NULL,
    vendor_key      text             NOT NULL,
    invoice_number  text             NOT NULL,
    amount          double precision,
    currency        text             NOT NULL DEFAULT '',
    fields          jsonb            NOT NULL,              -- extracted field -> value
    p_auto          real             NOT NULL,              -- invoice_risk's P(auto)
    recorded_at     timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX decision_invoices_number ON decision_invoices (tenant_id, vendor_key, invoice_number);

-- A candidate model's answer beside the live one's: recorded, never acted on.
CREATE TABLE decision_shadow_results (
    task_id            uuid        NOT NULL,
    model_name         text        NOT NULL,
    shadow_version     text        NOT NULL,
    tenant_id          text        NOT NULL,
    live_version       text        NOT NULL,
    live_label         text        NOT NULL,
    live_confidence    real        NOT NULL,
    shadow_label       text        NOT NULL,
    shadow_confidence  real        NOT NULL,
    agree              boolean     NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, model_name, shadow_version)
);

-- Tasks BLOCKED because the models were unavailable (policy on_model_unavailable: hold);
-- the decision service re-decides them when Triton answers and deletes the row in the same
-- transaction that stores the decision.
CREATE TABLE decision_holds (
    task_id          uuid PRIMARY KEY REFERENCES tasks (task_id),
    tenant_id        text        NOT NULL,
    envelope         bytea       NOT NULL,                 -- serialized switchyard.v1.TaskEnvelope
    reason           text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    held_at          timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decision_holds_due ON decision_holds (next_attempt_at);
