-- Purchase orders the tenants' ERPs publish on the compacted purchase-orders topic, as the
-- decision service last read them (the invoice pack matches invoices against them), and the
-- invoice lines matched to each order line, so that one order is not invoiced twice over.
--
-- The vendor and its bank account are personal data (a supplier may be a sole trader): the
-- vendor is a keyed hash here (found by equality only), and the whole order is sealed with
-- the payload codec (switchyard/_dataclass.py). A tombstone on the topic deletes the row.
CREATE TABLE decision_purchase_orders (
    order_id     uuid             PRIMARY KEY,         -- uuid5 of tenant and po_key: the sealing context
    tenant_id    text             NOT NULL,
    po_key       text             NOT NULL,            -- the PO number, upper case, no spaces or '#'
    vendor_hash  text             NOT NULL,            -- keyed hash of the vendor (vendor_key)
    currency     text             NOT NULL,
    amount       double precision NOT NULL,            -- what the order is worth (lines x prices)
    status       text             NOT NULL,            -- open | closed | cancelled
    body         bytea            NOT NULL,            -- the sealed PurchaseOrder (protobuf)
    updated_at   timestamptz      NOT NULL,            -- the ERP's updated_at (older records lose)
    UNIQUE (tenant_id, po_key)
);
CREATE INDEX decision_purchase_orders_vendor
    ON decision_purchase_orders (tenant_id, vendor_hash) WHERE status = 'open';

-- One row per invoice line matched to an order line, written with the invoice's decision
-- (decision_invoices holds the invoice's state: a rejected invoice's lines count no more).
CREATE TABLE decision_invoice_matches (
    task_id    uuid             NOT NULL,
    tenant_id  text             NOT NULL,
    po_key     text             NOT NULL,
    line       integer          NOT NULL,
    quantity   double precision NOT NULL,
    PRIMARY KEY (task_id, po_key, line)
);
CREATE INDEX decision_invoice_matches_order ON decision_invoice_matches (tenant_id, po_key);
