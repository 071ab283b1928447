"""What a plan step's templates and ``when`` condition see, and evaluating them.

A plan from a pack keeps its payload templates (``"${fields.amount}"``) and conditions as
written; the executor renders them just before the step runs, so a step can use what earlier
steps produced (``steps.<name>.output``), and a plan resumed after a restart renders the same
values again (outputs are read back from ``executions``), which keeps a repeated call's
payload, and so its idempotency key's payload, the same. The expression language and the
template rules are ``switchyard.packs``' (one implementation for the decision service and the
executor); this module only builds the context and maps their errors to one
:class:`ExpressionError` per step:

* ``fields``: the decision's ``extracted_fields`` (a reviewer's edits included), typed back
  with the pack field types carried in ``Decision.fields[].type``;
* ``metadata``: the task's metadata; ``task``: ``task_id``, ``tenant_id``, ``kind``;
* ``params``: the pack parameters the decision was made with (``ActionPlan.parameters``);
* ``steps``: per plan step (by name, else step id) name, ``status`` (``pending`` before it ran, else its outcome in
  lower case without the prefix: ``succeeded``, ``skipped_condition``, ``waiting``,
  ``failed_permanent``, ``compensated``) and ``output`` (``{}`` when it produced none).

A plan without templates or conditions (every plan written before packs) is not touched.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.json_format import MessageToDict

from switchyard.packs import (
    DISCREPANCY_KEYS,
    PLAN_VARIABLES,
    Activation,
    Template,
    compile_condition,
    discrepancy_maps,
    evaluate_condition,
    typed_fields,
)
from switchyard.v1 import Decision, Discrepancy, ExecutionResult, StepOutcome

PENDING = "pending"
#: What a call step's ``retry_later.when`` sees beyond the plan's context: the answer.
RETRY_LATER_VARIABLES = PLAN_VARIABLES | frozenset({"answer"})


class ExpressionError(ValueError):
    """A step's condition or template cannot be evaluated (bad expression, a missing key, a
    wrong type): the step fails permanently with this message; no retry changes it."""


@dataclass(frozen=True)
class TaskFacts:
    """What the executor knows of the task beyond the decision (from its envelope)."""

    kind: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


def step_status(outcome: int) -> str:
    return StepOutcome.Name(outcome).removeprefix("STEP_OUTCOME_").lower()  # type: ignore[arg-type]


def step_name(step: Any) -> str:
    return step.name or step.step_id


def plan_context(decision: Decision, task: TaskFacts,
                 recorded: Mapping[str, ExecutionResult]) -> Activation:
    """The CEL context of the decision's plan, given the results recorded so far: converted
    for CEL once, for every condition and template of the steps run on it."""
    types = {f.name: f.type for f in decision.fields if f.type}
    steps: dict[str, Any] = {}
    for step in decision.plan.steps:
        result = recorded.get(step.step_id)
        if result is None:
            steps[step_name(step)] = {"status": PENDING, "output": {}}
        else:
            steps[step_name(step)] = {"status": step_status(result.outcome),
                                      "output": MessageToDict(result.output)}
    return Activation({
        "fields": typed_fields(dict(decision.extracted_fields), types),
        "metadata": dict(task.metadata),
        "task": {"task_id": decision.task_id, "tenant_id": decision.tenant_id,
                 "kind": task.kind},
        "params": MessageToDict(decision.plan.parameters),
        "steps": steps,
    })


@functools.lru_cache(maxsize=1024)
def _condition(source: str, where: str, variables: frozenset[str] = PLAN_VARIABLES) -> Any:
    return compile_condition(source, where, variables)


def _holds(source: str, context: Mapping[str, Any], where: str,
           variables: frozenset[str] = PLAN_VARIABLES) -> bool:
    try:
        return evaluate_condition(_condition(source, where, variables),
                                  context if isinstance(context, Activation) else dict(context))
    except ValueError as exc:  # does not compile, or cannot be evaluated on this context
        raise ExpressionError(" ".join(str(exc).split())) from None


def condition_holds(source: str, context: Mapping[str, Any], where: str = "when") -> bool:
    """Whether a step's ``when`` is true; empty means always."""
    return _holds(source, context, where) if source.strip() else True


def check_retry_later(source: str, where: str) -> None:
    """Compile a ``retry_later.when`` (raises :class:`ExpressionError` when it cannot)."""
    try:
        _condition(source, where, RETRY_LATER_VARIABLES)
    except ValueError as exc:
        raise ExpressionError(" ".join(str(exc).split())) from None


def retry_later_holds(source: str, context: Mapping[str, Any], answer: Any,
                      where: str) -> bool:
    """Whether a call step's ``retry_later.when`` holds for the downstream's ``answer`` (an
    :class:`~services.executor.connectors.Answer`: ``answer.status``, ``answer.body``), with
    the step's context (fields, params, steps, ...) besides."""
    return _holds(source, {**context, "answer": answer.as_context()}, where,
                  RETRY_LATER_VARIABLES)


def discrepancies(source: str, context: Mapping[str, Any], where: str) -> list[Discrepancy]:
    """An approval's ``discrepancies`` expression evaluated: a list of maps with the keys
    :data:`DISCREPANCY_KEYS` (``switchyard.packs.discrepancy_maps``). Empty source: none.
    Anything else is an :class:`ExpressionError`, so the step fails with it."""
    if not source.strip():
        return []
    value = render("${" + source + "}", context, where)
    try:
        return [Discrepancy(**item) for item in discrepancy_maps(value, where)]
    except ValueError as exc:
        raise ExpressionError(" ".join(str(exc).split())) from None


@functools.lru_cache(maxsize=1024)
def _template(payload_json: str, where: str) -> Template:
    """A plan's payload compiled once (the same steps run for every task of a pack)."""
    return Template(json.loads(payload_json), where, PLAN_VARIABLES)


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, list):
        return any(_has_template(item) for item in value)
    if isinstance(value, dict):
        return any(_has_template(item) for item in value.values())
    return False


def render(payload: Any, context: Mapping[str, Any], where: str) -> Any:
    """``payload`` (a JSON-like tree, or a target string) with its templates filled in; as is
    when it has none."""
    if not _has_template(payload):
        return payload
    try:
        return _template(json.dumps(payload), where).render(context)
    except ValueError as exc:
        raise ExpressionError(" ".join(str(exc).split())) from None


def render_target(target: str, context: Mapping[str, Any], where: str) -> str:
    """A target with ``${...}`` in it (e.g. a path segment from an earlier step's output)."""
    rendered = render(target, context, where)
    if not isinstance(rendered, str):
        raise ExpressionError(f"{where}: must render to text, got {rendered!r}"[:300])
    return rendered


__all__ = ["DISCREPANCY_KEYS", "RETRY_LATER_VARIABLES", "ExpressionError", "TaskFacts",
           "check_retry_later", "condition_holds", "discrepancies", "plan_context", "render",
           "render_target", "retry_later_holds", "step_name", "step_status"]
