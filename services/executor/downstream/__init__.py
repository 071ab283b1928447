"""The demo downstream: a small, real ERP / scheduling system for the demo and the tests.

It has nothing to do with Switchyard beyond reading the same settings: an HTTP/JSON API
(``http_app``) and a gRPC API (``grpc_app``, ``ledger.proto``) over one ledger in its own
PostgreSQL schema (``store``). It honours idempotency keys (a repeated key is a replay, never a
second effect), reverses effects for compensations, logs every call, and takes fault injection
through its own API (``faults``: outage, error rate, lost responses, throttling, latency, slow
calls). ``switchyard up`` starts it; the demo's plans post to it (targets ``http://erp/...``,
``http://sis/...``, ``http://helpdesk/...``, ``http://analytics/...``), and the hospital
admission pack's to its hospital (``http://ehr/...``, ``http://payer/...``, ``http://beds/...``:
:mod:`.hospital`). Its ERP also holds purchase orders and goods receipts, set through its
operator API, and publishes each order's state to the ``purchase-orders`` topic for the invoice
pack's matching (:mod:`.purchasing`).

    curl -X PUT localhost:8095/_/faults/erp -d '{"error_rate": 0.3}'
    curl -X PUT localhost:8095/_/faults/erp -d '{"outage": true}'
    curl -X DELETE localhost:8095/_/faults
"""
