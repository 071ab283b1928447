"""The invoice pack's Python code: what its ``pack.yaml`` cannot say in YAML.

``extension`` holds the entry points the pack names (extractor ``invoice``, risk-model
features ``invoice``, enrichers ``vendor_history`` and ``purchase_orders``); ``extraction`` is
the invoice field extractor, ``vendor`` how it finds who issued the invoice, ``keys`` what
a label no list names labels, ``history`` the
tenant's vendor history in PostgreSQL, ``orders`` the purchase orders the tenants' ERPs publish,
``purchasing`` the two- and three-way match against them, and ``samples`` the demo's orders and
invoices.
"""
