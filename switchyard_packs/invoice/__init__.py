"""The invoice pack's Python code: what its ``pack.yaml`` cannot say in YAML.

``extension`` holds the entry points the pack names (extractor ``invoice``, risk-model
features ``invoice``, enricher ``vendor_history``); ``extraction`` is the invoice field
extractor and ``history`` the tenant's vendor history in PostgreSQL.
"""
