-- Vendor history learns only from outcomes a person confirmed (a HUMAN approve/modify) or a
-- successful execution, and keeps no personal value in plaintext (switchyard/_dataclass.py):
-- vendor, invoice number and bank account are keyed hashes (HMAC under
-- SWITCHYARD_MATCHING_KEY, bound to the tenant), the extracted fields are sealed with the
-- payload codec. The history written by 0006's rules is dropped, not converted: it counted
-- escalated-but-unreviewed invoices and took the first bank account seen as the reference,
-- so it cannot be trusted, and its plaintext names and accounts must not survive.

DROP TABLE decision_vendors;
DROP TABLE decision_invoices;

-- One row per scored invoice, written with its model decision (state 'pending'); a human
-- approval makes it 'confirmed', and so does a SUCCEEDED status when the model ran it
-- straight through (auto); a human rejection makes it 'rejected'. An escalated invoice
-- executed on a review default action (no person) stays pending.
CREATE TABLE decision_invoices (
    task_id       uuid PRIMARY KEY,
    tenant_id     text             NOT NULL,
    vendor_hash   text             NOT NULL,            -- '' when no vendor was read
    number_hash   text             NOT NULL,            -- '' when no invoice number was read
    bank_hash     text             NOT NULL,            -- '' when no bank account was read
    amount        double precision,
    currency      text             NOT NULL DEFAULT '',
    fields        bytea,                                -- sealed JSON field -> value; NULL once purged
    p_auto        real             NOT NULL,            -- invoice_risk's P(auto)
    auto          boolean          NOT NULL,            -- the model decided AUTO_EXECUTE
    state         text             NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'confirmed', 'rejected')),
    recorded_at   timestamptz      NOT NULL DEFAULT now(),
    settled_at    timestamptz                           -- when it was confirmed or rejected
);
CREATE INDEX decision_invoices_vendor ON decision_invoices (tenant_id, vendor_hash, state);
CREATE INDEX decision_invoices_number ON decision_invoices (tenant_id, vendor_hash, number_hash);

-- Per tenant and vendor: the summary of its confirmed invoices, recomputed from
-- decision_invoices whenever one of them is confirmed or rejected.
CREATE TABLE decision_vendors (
    tenant_id      text             NOT NULL,
    vendor_hash    text             NOT NULL,
    currency       text             NOT NULL DEFAULT '',   -- currency of the first confirmed invoice
    invoice_count  integer          NOT NULL DEFAULT 0,    -- confirmed invoices in that currency
    amount_sum     double precision NOT NULL DEFAULT 0,
    bank_hash      text             NOT NULL DEFAULT '',   -- account of the latest confirmed invoice
    updated_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, vendor_hash)
);
