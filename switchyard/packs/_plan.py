"""A pack's plan as the ActionPlan protobuf the executor runs.

Payload, target and ``when`` templates stay templates: the executor renders them just before
each step, with the fields as they are then (after a reviewer's edits) and the outputs of the
steps before. Only what the executor needs as plain values before the step runs is filled in
here, from the tenant's parameters: targets (of steps and compensations), an approval
step's reviewer group, queue and instructions, when they use nothing but ``params``, and a
``retry_later.every`` that names a parameter. An approval's ``discrepancies`` expression and a
``retry_later.when`` stay expressions (the executor evaluates them). The plan records the pack, its version and the resolved
parameters, so a task finishes on the pack version it was decided with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import duration_pb2, struct_pb2

from switchyard.packs._expressions import Names, Template, as_text
from switchyard.packs._loader import MIN_RETRY_LATER_S, retry_every_seconds
from switchyard.packs._model import Pack, StepSpec
from switchyard.v1 import (
    ActionPlan,
    ActionStep,
    ApprovalSpec,
    CompensationStep,
    Connector,
    RetryLater,
    StepKind,
    WaitSpec,
)

#: Pack connector name -> protobuf Connector. A connector registered through entry point group
#: switchyard.connectors is CONNECTOR_UNSPECIFIED; the executor finds it by name from the
#: step's target, which must then read ``<connector>://...``.
CONNECTORS: dict[str, int] = {
    "http": Connector.CONNECTOR_HTTP,
    "grpc": Connector.CONNECTOR_GRPC,
    "sql": Connector.CONNECTOR_SQL,
}
_KINDS = {"call": StepKind.STEP_KIND_CALL, "approval": StepKind.STEP_KIND_APPROVAL,
          "wait": StepKind.STEP_KIND_WAIT}


def step_id(index: int, name: str) -> str:
    """The id of the step at 1-based ``index`` of the plan: ``<index>-<name>``."""
    return f"{index}-{name}"


def _duration(seconds: float | None) -> duration_pb2.Duration | None:
    if seconds is None:
        return None
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(round(seconds * 1e9)))
    return value


def _struct(tree: Mapping[str, Any]) -> struct_pb2.Struct:
    payload = struct_pb2.Struct()
    payload.update(dict(tree))
    return payload


def with_params(text: str, params: Mapping[str, Any]) -> str:
    """``text`` rendered now when its templates use nothing but params; else unchanged (the
    pack's loader refused templates that use more where only params may appear: review
    queues and groups, an approval's texts)."""
    if "${" not in text:
        return text
    template = Template(text, "approval", Names(variables=frozenset({"params"}),
                                                params=frozenset(params)), strict=False)
    if template.issues:
        return text
    try:
        return as_text(template.render({"params": dict(params)}))
    except ValueError:
        return text


def _every_s(spec: StepSpec, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> float:
    """A ``retry_later.every`` as seconds: as written, else the parameter it names (the
    tenant's value, or the pack's default when that one is no duration), at least
    :data:`~switchyard.packs._loader.MIN_RETRY_LATER_S`."""
    later = spec.retry_later
    assert later is not None
    if later.every_s is not None:
        return later.every_s
    name = later.every.removeprefix("${params.").removesuffix("}")
    for value in (params.get(name), defaults.get(name)):
        seconds = retry_every_seconds(value)
        if seconds is not None:
            return seconds
    return MIN_RETRY_LATER_S


def _step(index: int, spec: StepSpec, params: Mapping[str, Any],
          defaults: Mapping[str, Any] | None = None) -> ActionStep:
    step = ActionStep(step_id=step_id(index, spec.name), name=spec.name,
                      kind=_KINDS[spec.kind], when=spec.when,
                      parallel_group=spec.parallel_group)
    if spec.kind == "call":
        step.connector = CONNECTORS.get(spec.connector, Connector.CONNECTOR_UNSPECIFIED)
        step.target = with_params(spec.target, params)
        step.operation = spec.operation or spec.name
        step.payload.CopyFrom(_struct(spec.payload))
        step.max_attempts = spec.max_attempts
        for name, seconds in (("timeout", spec.timeout_s), ("backoff_initial", spec.backoff_s),
                              ("backoff_max", spec.max_backoff_s)):
            value = _duration(seconds)
            if value is not None:
                getattr(step, name).CopyFrom(value)
        if spec.retry_later is not None:
            every = _duration(_every_s(spec, params, defaults or {}))
            step.retry_later.CopyFrom(RetryLater(when=spec.retry_later.when, every=every))
        undo = spec.compensation
        if undo is not None:
            step.compensation.CopyFrom(CompensationStep(
                name=undo.name,
                connector=CONNECTORS.get(undo.connector, Connector.CONNECTOR_UNSPECIFIED),
                target=with_params(undo.target, params), operation=undo.operation, payload=_struct(undo.payload)))
    elif spec.kind == "approval" and spec.approval is not None:
        approval = spec.approval
        step.operation = "approval"
        step.approval.CopyFrom(ApprovalSpec(
            queue=with_params(approval.queue, params),
            reviewer_group=with_params(approval.group, params),
            four_eyes=approval.four_eyes,
            instructions=with_params(approval.instructions, params),
            discrepancies=approval.discrepancies, reveal=list(approval.reveal),
            hide_document=not approval.document))
        sla = _duration(approval.sla_s)
        if sla is not None:
            step.approval.sla.CopyFrom(sla)
    elif spec.kind == "wait" and spec.wait is not None:
        wait = spec.wait
        step.operation = "wait"
        step.wait.CopyFrom(WaitSpec(callback=wait.callback))
        for name, seconds in (("duration", wait.duration_s), ("timeout", wait.timeout_s)):
            value = _duration(seconds)
            if value is not None:
                getattr(step.wait, name).CopyFrom(value)
    return step


def plan_to_proto(pack: Pack, params: Mapping[str, Any] | None = None) -> ActionPlan:
    """The ActionPlan of ``pack`` for a tenant whose resolved parameters are ``params``
    (default: the pack's defaults). Step ids are ``<position>-<name>``, 1-based."""
    resolved = dict(pack.defaults if params is None else params)
    plan = ActionPlan(pack=pack.name, pack_version=pack.version)
    plan.parameters.update(resolved)
    for index, spec in enumerate(pack.plan, start=1):
        plan.steps.append(_step(index, spec, resolved, pack.defaults))
    return plan


__all__ = ["CONNECTORS", "plan_to_proto", "step_id", "with_params"]
