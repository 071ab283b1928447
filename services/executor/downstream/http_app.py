"""The demo downstream's HTTP/JSON API (an ERP / scheduling system as the demo's target).

Business API (every write needs an ``Idempotency-Key`` header):

* ``POST|PUT /{system}/{collection}``: store the JSON body once per key: 201 the first time,
  200 with ``Idempotent-Replayed: true`` for a repeat (or the fault profile's
  ``repeat_status``, e.g. 409), 422 when the key comes back with a
  different body or the body breaks a business rule (``amount`` must be >= 0).
* ``DELETE /{system}/{collection}/{key}``: reverse the effect stored under ``key`` (a
  compensation); 200, a repeat is a replay; 404 when there is no such effect.
* ``GET /{system}/{collection}/{key}``: the effect.
* ``POST /{system}/{collection}/append``: the one endpoint that does NOT deduplicate: every
  call stores a new row in ``appends`` (201), whatever its ``Idempotency-Key`` says, as many
  real APIs (notifications, event sinks) behave. It shows what the executor guarantees on
  its own: each call it repeats lands again (see docs/executor.md).

Answers are JSON with sorted keys; an effect is answered with its bookkeeping (``id``,
``idempotency_key``, ``status``, ...) and, under ``data``, the body as it was posted: an echo,
as many real APIs give, so what the executor keeps of an answer must be redacted (see
``switchyard._dataclass.downstream_excerpt``).

The hospital's systems (EHR, payer, beds: :mod:`.hospital`) have routes of their own, mounted
before these generic ones; so has the ERP's purchasing (purchase orders and goods receipts,
published to the ``purchase-orders`` topic: :mod:`.purchasing`), under ``/_/erp/``.

Operator API: ``GET /_/health``; ``GET /_/faults``; ``PUT /_/faults/{system}[/{collection}]``
with a fault profile (see ``faults``; system ``*`` for every system);
``DELETE /_/faults[/{system}[/{collection}]]``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from services.executor.downstream import hospital, purchasing
from services.executor.downstream._web import FAULTS, LEDGER, apply_faults, json_response
from services.executor.downstream.faults import FaultBoard, FaultError, FaultProfile
from services.executor.downstream.store import KeyReused, Ledger, validate_body

MAX_BODY_BYTES = 64 * 1024
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")



def _error(status: int, message: str, **headers: str) -> web.Response:
    return json_response({"error": message}, status=status, headers=headers or None)


def _names(request: web.Request) -> tuple[str, str] | web.Response:
    system, collection = request.match_info["system"], request.match_info["collection"]
    for what, value in (("system", system), ("collection", collection)):
        if not _NAME.match(value):
            return _error(404, f"no such {what} {value!r}")
    return system, collection


async def _faulted(request: web.Request, system: str, key: str) -> web.Response | int:
    """The fault board applied to a call of the ERP-like routes (see :func:`apply_faults`)."""
    return await apply_faults(request, system, request.match_info.get("collection", ""), key)


async def write(request: web.Request) -> web.Response:
    names = _names(request)
    if isinstance(names, web.Response):
        return names
    system, collection = names
    key = request.headers.get("Idempotency-Key", "")
    if not key or len(key) > 255:
        return _error(400, "Idempotency-Key header required (1-255 characters)")
    faulted = await _faulted(request, system, key)
    if isinstance(faulted, web.Response):
        return faulted
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        body: Any = json.loads(await request.text() or "null")
    except ValueError as exc:
        return _error(400, f"body is not JSON: {exc}")
    problem = validate_body(body)
    ledger = request.app[LEDGER]
    if problem:
        await ledger.log("http", request.method, request.path, key, "invalid", 422)
        return _error(422, problem)
    try:
        effect, created = await ledger.record(
            key, system, collection, request.headers.get("X-Switchyard-Operation", ""),
            request.headers.get("X-Switchyard-Task-Id", ""),
            request.headers.get("X-Switchyard-Tenant-Id", ""), body)
    except KeyReused:
        await ledger.log("http", request.method, request.path, key, "key_reused", 422)
        return _error(422, "Idempotency-Key was used before with a different payload")
    status = 201 if created else 200
    refused = 0 if created else request.app[FAULTS].profile(system, collection).repeat_status
    if refused:  # a repeat refused, as APIs that answer a duplicate key with 409 do
        await ledger.log("http", request.method, request.path, key, "refused_repeat", refused)
        return _error(refused, "duplicate request: this Idempotency-Key was used before")
    await ledger.log("http", request.method, request.path, key,
                     "created" if created else "replayed", faulted or status)
    if faulted:  # stored, but the caller never hears about it
        return _error(faulted, "injected failure after the write")
    return json_response(effect.to_json(), status=status,
                         headers=None if created else {"Idempotent-Replayed": "true"})


async def append(request: web.Request) -> web.Response:
    """Store every call as a new row: no deduplication by idempotency key."""
    names = _names(request)
    if isinstance(names, web.Response):
        return names
    system, collection = names
    key = request.headers.get("Idempotency-Key", "")
    faulted = await _faulted(request, system, key)
    if isinstance(faulted, web.Response):
        return faulted
    try:
        body: Any = json.loads(await request.text() or "null")
    except ValueError as exc:
        return _error(400, f"body is not JSON: {exc}")
    ledger = request.app[LEDGER]
    row_id = await ledger.append(key, system, collection,
                                 request.headers.get("X-Switchyard-Task-Id", ""), body)
    await ledger.log("http", request.method, request.path, key, "appended", faulted or 201)
    if faulted:
        return _error(faulted, "injected failure after the write")
    return json_response({"id": row_id, "idempotency_key": key}, status=201)


async def reverse(request: web.Request) -> web.Response:
    names = _names(request)
    if isinstance(names, web.Response):
        return names
    system, collection = names
    target = request.match_info["key"]
    by = request.headers.get("Idempotency-Key", "")
    faulted = await _faulted(request, system, by)
    if isinstance(faulted, web.Response):
        return faulted
    ledger = request.app[LEDGER]
    result = await ledger.reverse(target, system, collection, by)
    if result is None:
        await ledger.log("http", "DELETE", request.path, by, "not_found", 404)
        return _error(404, f"no effect {target!r} in {system}/{collection}")
    effect, reversed_now = result
    await ledger.log("http", "DELETE", request.path, by,
                     "reversed" if reversed_now else "replayed", faulted or 200)
    if faulted:
        return _error(faulted, "injected failure after the write")
    return json_response(effect.to_json(),
                         headers=None if reversed_now else {"Idempotent-Replayed": "true"})


async def read(request: web.Request) -> web.Response:
    names = _names(request)
    if isinstance(names, web.Response):
        return names
    effect = await request.app[LEDGER].get(request.match_info["key"], *names)
    if effect is None:
        return _error(404, "no such effect")
    return json_response(effect.to_json())


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def list_faults(request: web.Request) -> web.Response:
    board = request.app[FAULTS]
    return json_response({name: p.to_json() for name, p in board.profiles.items()})


async def set_fault(request: web.Request) -> web.Response:
    system = request.match_info["system"]
    if system != "*" and not _NAME.match(system):
        return _error(400, f"bad system name {system!r}")
    try:
        profile = FaultProfile.from_json(await request.json())
    except ValueError as exc:  # FaultError and JSON errors alike
        return _error(400, str(exc))
    name = _fault_key(request)
    if isinstance(name, web.Response):
        return name
    request.app[FAULTS].profiles[name] = profile
    return json_response({name: profile.to_json()})


def _fault_key(request: web.Request) -> str | web.Response:
    """``system`` or ``system/collection``: what a fault profile applies to."""
    collection = request.match_info.get("collection")
    if collection is None:
        return request.match_info["system"]
    if not _NAME.match(collection) or request.match_info["system"] == "*":
        return _error(400, f"bad collection {collection!r} (a named system's collection)")
    return f"{request.match_info['system']}/{collection}"


async def clear_faults(request: web.Request) -> web.Response:
    board = request.app[FAULTS]
    if request.match_info.get("system") is None:
        board.profiles.clear()
    else:
        name = _fault_key(request)
        if isinstance(name, web.Response):
            return name
        board.profiles.pop(name, None)
    return json_response({name: p.to_json() for name, p in board.profiles.items()})


def build_app(ledger: Ledger, faults: FaultBoard,
              publisher: purchasing.OrderPublisher) -> web.Application:
    """The downstream's HTTP API; ``publisher`` puts the ERP's purchase orders on their
    topic."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[LEDGER] = ledger
    app[FAULTS] = faults
    app.router.add_get("/_/health", health)
    app.router.add_get("/_/faults", list_faults)
    app.router.add_put("/_/faults/{system}", set_fault)
    app.router.add_delete("/_/faults", clear_faults)
    app.router.add_delete("/_/faults/{system}", clear_faults)
    app.router.add_put("/_/faults/{system}/{collection}", set_fault)
    app.router.add_delete("/_/faults/{system}/{collection}", clear_faults)
    hospital.add_routes(app, ledger, faults)
    purchasing.add_routes(app, publisher)
    app.router.add_post("/{system}/{collection}/append", append)
    app.router.add_post("/{system}/{collection}", write)
    app.router.add_put("/{system}/{collection}", write)
    app.router.add_delete("/{system}/{collection}/{key}", reverse)
    app.router.add_get("/{system}/{collection}/{key}", read)
    return app


__all__ = ["FaultError", "build_app"]
