"""The JSON Schemas of pack.yaml and of tenant settings, and their errors as one line each.

The schema is the structural half of validation (keys, types, ranges, name patterns): the
loader runs jsonschema's ``iter_errors`` and reports EVERY error, then checks what a schema
cannot say (CEL, declared names, entry points). ``docs/pack.schema.json`` is generated from
:func:`pack_schema` (``make pack-schema``) so editors complete and check pack.yaml as you type.

Lines read ``<file>: <path>: <value>: <what is wrong / allowed>``, e.g.
``pack.yaml: plan[1].retry.max_attempts: 0: must be an integer >= 1``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from typing import Any

import jsonschema

from switchyard.packs._model import (
    COLUMN_TYPES,
    DATA_CLASSES,
    DATE_ORDERS,
    ESCALATION_REASONS,
    FIELD_TYPES,
    HIT_POLICIES,
    OUTCOMES,
    PARAM_TYPES,
    PRIORITIES,
)

SCHEMA_ID = "https://switchyard.dev/schemas/pack.schema.json"
PACK_NAME = r"^[a-z][a-z0-9_]{1,62}$"
IDENTIFIER = r"^[a-z][a-z0-9_]{0,62}$"
SEMVER = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$"
#: 30s, 15m, 4h, 2d, 200ms, or combined: 1h30m.
DURATION = r"^([0-9]+(ms|s|m|h|d))+$"
#: ${params.<name>}: a value taken from the tenant's pack parameters when the plan is built.
PARAM_TEMPLATE = r"^\$\{params\.[a-z][a-z0-9_]{0,62}\}$"
CONTENT_TYPE = r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$"


def _str(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _duration(description: str) -> dict[str, Any]:
    return _str(description + " A duration: 30s, 15m, 4h, 2d, 200ms, or combined (1h30m).",
                pattern=DURATION)


def _review(description: str, reveal: bool = False) -> dict[str, Any]:
    extra = {"reveal": {
        "type": "array", "maxItems": 256, "uniqueItems": True,
        "items": _str("A declared field.", pattern=IDENTIFIER),
        "description": "Personal and health fields the pack's reviewers see in clear "
                       "(minimum necessary: only what they check); every other one is "
                       "withheld from them. An approval step's own reveal wins for its "
                       "items."}} if reveal else {}
    return {
        "type": "object", "description": description, "additionalProperties": False,
        "properties": {
            **extra,
            "queue": _str("The review queue the task waits in (may be ${params.x}).",
                          minLength=1, maxLength=128),
            "group": _str("Only reviewers in this group may take it; empty: any reviewer "
                          "(may be ${params.x}).", maxLength=128),
            "priority": _str("Review priority.", enum=list(PRIORITIES)),
            "sla": _duration("How long reviewers have."),
            "four_eyes": {"type": "boolean",
                          "description": "Two different reviewers must approve."},
        },
    }


def _payload(description: str) -> dict[str, Any]:
    return {"type": "object", "description": description + " String values may hold "
            "templates: exactly \"${expr}\" becomes the typed value, ${expr} inside a longer "
            "string is replaced by its text (CEL over fields, metadata, task, params, steps)."}


def _call_properties() -> dict[str, Any]:
    return {
        "name": _str("Unique in the plan; the step id is <position>-<name>.", pattern=IDENTIFIER),
        "connector": _str("http (default), grpc, sql, or a connector registered in entry "
                          "point group switchyard.connectors.", pattern=IDENTIFIER),
        "target": _str("An endpoint alias or URL; may hold ${expr} templates and {task_id}, "
                       "{step_id}, {idempotency_key}.", minLength=1, maxLength=2048),
        "operation": _str("What to do at the target (HTTP: the method when it names one); "
                          "default: the step name.", minLength=1, maxLength=128),
        "payload": _payload("The request body."),
        "timeout": _duration("Limit for one attempt."),
        "retry": {
            "type": "object", "additionalProperties": False,
            "description": "Retries of a failing call (doubling backoff with full jitter).",
            "properties": {
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100,
                                 "description": "Attempts in all, the first included."},
                "backoff": _duration("First retry delay."),
                "max_backoff": _duration("Longest retry delay."),
            },
        },
        "when": _str("A CEL condition; false: the step is skipped.", minLength=1),
        "retry_later": {
            "type": "object", "additionalProperties": False, "required": ["when", "every"],
            "description": "A business-level 'not now' (e.g. no bed free): when `when` holds "
                           "for the downstream's answer, the task waits durably and the step "
                           "is called again after `every`, with the same idempotency key.",
            "properties": {
                "when": _str("A CEL condition over answer.status (HTTP status, gRPC code "
                             "number) and answer.body (the JSON answer), with fields, params, "
                             "steps, ...", minLength=1),
                "every": {"type": "string", "pattern": f"{DURATION}|{PARAM_TEMPLATE}",
                          "description": "How long to wait before the next try, at least 1s: "
                                         "a duration (30s, 5m, 1h30m) or ${params.<name>} "
                                         "(a string parameter holding a duration, or a "
                                         "number of seconds)."},
            },
        },
        "compensate": {
            "type": "object", "additionalProperties": False, "required": ["target"],
            "description": "The call that undoes this step when a later one fails for good.",
            "properties": {
                "name": _str("Default undo_<step>.", pattern=IDENTIFIER),
                "connector": _str("Default: the step's connector.", pattern=IDENTIFIER),
                "target": _str("As the step's target.", minLength=1, maxLength=2048),
                "operation": _str("Default DELETE.", minLength=1, maxLength=128),
                "payload": _payload("The undo request body."),
            },
        },
    }


def _call_step() -> dict[str, Any]:
    return {"type": "object", "title": "call", "additionalProperties": False,
            "required": ["name", "target"], "properties": _call_properties(),
            "description": "A downstream call."}


def _approval_step() -> dict[str, Any]:
    return {
        "type": "object", "title": "approval", "additionalProperties": False,
        "required": ["approval"],
        "description": "The task waits in review; approved: the plan goes on, rejected: the "
                       "finished steps are compensated.",
        "properties": {"approval": {
            "type": "object", "additionalProperties": False, "required": ["name"],
            "properties": {
                "name": _str("Unique in the plan.", pattern=IDENTIFIER),
                "group": _str("Reviewer group allowed to approve (may be ${params.x}).",
                              maxLength=256),
                "four_eyes": {"type": "boolean"},
                "sla": _duration("How long reviewers have."),
                "queue": _str("Review queue; default: the decision's.", maxLength=256),
                "instructions": _str("What the reviewer is asked.", maxLength=4000),
                "when": _str("A CEL condition; false: the approval is skipped.", minLength=1),
                "discrepancies": _str(
                    "A CEL expression giving a list of maps with keys field, submitted, "
                    "found, source, note (e.g. steps.check.output.discrepancies): shown to "
                    "the reviewer as the fields that disagree.", minLength=1),
                "reveal": {"type": "array", "maxItems": 64, "uniqueItems": True,
                           "items": _str("A declared field.", pattern=IDENTIFIER),
                           "description": "Fields this approval's reviewers see in clear, "
                                          "whatever their class; default: the pack's "
                                          "review.reveal."},
                "document": {"type": "boolean",
                             "description": "false: its reviewers get the fields and the "
                                            "discrepancies, not the document (default "
                                            "true)."},
            },
        }},
    }


def _wait_step() -> dict[str, Any]:
    return {
        "type": "object", "title": "wait", "additionalProperties": False, "required": ["wait"],
        "description": "A durable wait: a timer (duration) or a callback (with a timeout).",
        "properties": {"wait": {
            "type": "object", "additionalProperties": False, "required": ["name"],
            "properties": {
                "name": _str("Unique in the plan.", pattern=IDENTIFIER),
                "duration": _duration("Timer: how long to wait."),
                "callback": _str("Callback name (ExecutorService.CompleteWait).",
                                 pattern=IDENTIFIER),
                "timeout": _duration("Callback only: give up after this long."),
                "when": _str("A CEL condition; false: the wait is skipped.", minLength=1),
            },
        }},
    }


def _parallel_step() -> dict[str, Any]:
    return {
        "type": "object", "title": "parallel", "additionalProperties": False,
        "required": ["parallel"], "description": "Calls that run concurrently.",
        "properties": {"parallel": {"type": "array", "minItems": 2, "maxItems": 32,
                                    "items": _call_step()}},
    }


#: Plan entry kinds, by the key that tells them apart (a call has none of these).
STEP_FORMS: tuple[str, ...] = ("approval", "wait", "parallel")


def pack_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of pack.yaml."""
    labels = {"type": "array", "minItems": 1, "maxItems": 32,
              "items": {"type": "string", "minLength": 1, "maxLength": 64}}
    values = {"type": "array", "minItems": 1, "maxItems": 256, "uniqueItems": True,
              "items": {"type": "string", "minLength": 1},
              "description": "enum only: the allowed values."}
    date_order = _str("date only: how a date with day and month in doubt (03/07/1962) is "
                      "read: day_first (3 July) or month_first (March 7). Not declared: day "
                      "first, with a lowered confidence. Dates written with dots are always "
                      "day first; ISO dates, month names and a day above 12 read the same "
                      "either way.", enum=list(DATE_ORDERS))
    column_spec = {
        "type": "object", "additionalProperties": False, "required": ["type"],
        "properties": {
            "type": _str("Value type of the column's cells.", enum=list(COLUMN_TYPES)),
            "labels": {**labels, "description": "Labels of the column in the table's header "
                                                "row; default: the column name."},
            "values": values,
            "date_order": date_order,
        },
    }
    field_spec = {
        "type": "object", "additionalProperties": False, "required": ["type"],
        "properties": {
            "type": _str("Value type.", enum=list(FIELD_TYPES)),
            "required": {"type": "boolean", "description": "Missing: an extraction issue."},
            "data_class": _str("Drives redaction, encryption and retention; default personal. "
                               "health (a diagnosis, allergies): the most sensitive, withheld "
                               "from reviewers like personal unless review.reveal names it.",
                               enum=list(DATA_CLASSES)),
            "labels": {**labels, "description": "Labels the value follows in the document "
                                                "(right of them or below); default: the "
                                                "field name."},
            "pattern": _str("A regex with one capture group, tried before the labels.",
                            minLength=1, maxLength=1000),
            "values": values,
            "aliases": {"type": "object", "maxProperties": 256,
                        "propertyNames": {"minLength": 1, "maxLength": 64},
                        "additionalProperties": {"type": "string", "minLength": 1},
                        "description": "enum only: other ways documents write a value, "
                                       "alias -> value (F: female); matched without case."},
            "columns": {"type": "object", "minProperties": 1, "maxProperties": 32,
                        "propertyNames": {"pattern": IDENTIFIER},
                        "additionalProperties": column_spec,
                        "description": "table only: the columns, each found by its labels in "
                                       "the header row; the value is the rows, a list of "
                                       "column -> cell value."},
            "end": {**labels, "description": "table only: labels of a line that ends the "
                                             "table (e.g. Subtotal)."},
            "date_order": date_order,
        },
    }
    scalar = {"type": ["number", "string", "boolean"]}
    param_spec = {
        "type": "object", "additionalProperties": False, "required": ["type", "default"],
        "properties": {
            "type": _str("Parameter type.", enum=list(PARAM_TYPES)),
            "default": {"description": "Value for tenants that do not override it.",
                        "type": ["number", "string", "boolean", "array"]},
            "items": _str("list only: the item type.", enum=["string", "number"]),
            "minimum": {"type": "number"},
            "maximum": {"type": "number"},
            "values": {"type": "array", "minItems": 1, "items": scalar,
                       "description": "The allowed values."},
            "description": _str("What it does, for the tenant.", maxLength=2000),
        },
    }
    rule = {
        "type": "object", "additionalProperties": False, "required": ["name", "when", "outcome"],
        "properties": {
            "name": _str("Unique; recorded on each decision.", pattern=IDENTIFIER),
            "when": {"type": ["string", "boolean"],
                     "description": "A CEL condition over fields, metadata, task, params, "
                                    "route, scores, extraction, history."},
            "outcome": _str("What the rule decides.", enum=list(OUTCOMES)),
            "reason": _str("Escalations only.", enum=list(ESCALATION_REASONS)),
            "explain": _str("A sentence a reviewer reads; may hold ${expr}.", maxLength=4000),
            "review": _review("Escalations only: overrides the pack's review defaults."),
            "discrepancies": _str(
                "Escalations only: a CEL expression giving a list of maps with keys field, "
                "submitted, found, source, note (e.g. history.po_discrepancy_list): shown to "
                "the reviewer, field by field.", maxLength=4000),
        },
    }
    case = {
        "type": "object", "additionalProperties": False, "required": ["name", "document", "expect"],
        "properties": {
            "name": _str("What the case shows.", minLength=1, maxLength=256),
            "document": {
                "type": "object", "additionalProperties": False, "required": ["text"],
                "properties": {
                    "text": {"type": "string"},
                    "content_type": _str("Default text/plain.", pattern=CONTENT_TYPE),
                    "metadata": {"type": "object",
                                 "additionalProperties": {"type": ["string", "number",
                                                                   "boolean"]}},
                },
            },
            "parameters": {"type": "object", "description": "Overrides for this case."},
            "expect": {
                "type": "object", "additionalProperties": False, "minProperties": 1,
                "properties": {
                    "outcome": _str("Expected outcome.", enum=list(OUTCOMES)),
                    "rule": _str("Expected rule.", pattern=IDENTIFIER),
                    "fields": {"type": "object",
                               "additionalProperties": {"type": ["string", "number",
                                                                 "boolean"]}},
                },
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Switchyard automation pack (pack.yaml)",
        "description": "A document type's whole automation: fields, decision table, plan, "
                       "review, retention and golden tests. See docs/packs.md.",
        "type": "object",
        "additionalProperties": False,
        "required": ["pack", "version", "description", "decision", "plan"],
        "properties": {
            "pack": _str("The document type: the router's label.", pattern=PACK_NAME),
            "version": _str("Semantic version MAJOR.MINOR.PATCH.", pattern=SEMVER),
            "description": _str("What the pack automates.", minLength=1, maxLength=2000),
            "content_types": {"type": "array", "minItems": 1, "uniqueItems": True,
                              "items": _str("A media type.", pattern=CONTENT_TYPE)},
            "fields": {"type": "object", "maxProperties": 200,
                       "propertyNames": {"pattern": IDENTIFIER},
                       "additionalProperties": field_spec},
            "extractor": _str("labels (built-in) or an entry point in switchyard.extractors.",
                              pattern=IDENTIFIER),
            "parameters": {"type": "object", "maxProperties": 200,
                           "propertyNames": {"pattern": IDENTIFIER},
                           "additionalProperties": param_spec},
            "models": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "router": {"type": "object", "additionalProperties": False,
                               "properties": {"min_confidence": {
                                   "type": "number", "minimum": 0, "maximum": 1,
                                   "description": "Router confidence needed to act without a "
                                                  "person; default: the tenant's threshold."},
                                   "signatures": {
                                       "type": "array", "maxItems": 16,
                                       "description": "A standard format's marks: a document "
                                                      "whose first 2,000 characters hold every "
                                                      "string of one signature is this type, "
                                                      "without the router model.",
                                       "items": {"type": "array", "minItems": 1, "maxItems": 4,
                                                 "uniqueItems": True,
                                                 "items": _str("A literal string, case "
                                                               "sensitive.", minLength=4,
                                                               maxLength=100)}},
                                   "titles": {
                                       "type": "array", "maxItems": 200, "uniqueItems": True,
                                       "description": "Words this type's documents title "
                                                      "themselves with, in any language: a "
                                                      "head that holds one is no look-alike.",
                                       "items": _str("A word or phrase, matched without "
                                                     "case, alone or ending a compound "
                                                     "word.", minLength=1, maxLength=60)},
                                   "look_alike_titles": {
                                       "type": "array", "maxItems": 200, "uniqueItems": True,
                                       "description": "Titles of documents that resemble this "
                                                      "type but are not it: one heading a cell "
                                                      "of the first lines (and none of `titles` "
                                                      "there) sends a document the router names "
                                                      "this type to a person to confirm "
                                                      "(rule look_alike_title).",
                                       "items": _str("A word or phrase, matched without case at "
                                                     "the start of a cell.", minLength=2,
                                                     maxLength=60)}}},
                    "scorers": {"type": "array", "maxItems": 16, "items": {
                        "type": "object", "additionalProperties": False,
                        "required": ["name", "features"],
                        "properties": {
                            "name": _str("Triton model; its score is scores.<name>.",
                                         pattern=IDENTIFIER),
                            "features": _str("Entry point in switchyard.features.",
                                             pattern=IDENTIFIER),
                            "output_class": _str("Class whose probability is the score; "
                                                 "default: the top class.", minLength=1),
                        }}},
                },
            },
            "enrichers": {"type": "array", "maxItems": 16, "uniqueItems": True,
                          "items": _str("Entry point in switchyard.enrichers.",
                                        pattern=IDENTIFIER)},
            "decision": {
                "type": "object", "additionalProperties": False, "required": ["rules"],
                "properties": {
                    "hit_policy": _str("first: the first matching rule decides; collect: "
                                       "reject > escalate > auto_execute.",
                                       enum=list(HIT_POLICIES)),
                    "rules": {"type": "array", "minItems": 1, "maxItems": 500, "items": rule},
                },
            },
            "review": _review("Defaults for escalations.", reveal=True),
            "plan": {"type": "array", "maxItems": 100, "description": "Steps, in order.",
                     "items": {"oneOf": [_call_step(), _approval_step(), _wait_step(),
                                         _parallel_step()]}},
            "fairness": {
                "type": "object", "additionalProperties": False, "required": ["attributes"],
                "description": "Who the models could treat unequally: the automation rates of "
                               "each attribute's groups may differ by at most "
                               "max_parity_difference, or a model version is not promoted "
                               "(and a canary is rolled back).",
                "properties": {
                    "attributes": {"type": "array", "minItems": 1, "maxItems": 5, "items": {
                        "type": "object", "additionalProperties": False,
                        "required": ["field"],
                        "properties": {
                            "field": _str("An enum field of this pack; its values are the "
                                          "groups.", pattern=r"^[a-z][a-z0-9_]{0,62}$"),
                            "note": _str("Why it stands for a protected characteristic, when "
                                         "it is a proxy.", maxLength=500)}}},
                    "max_parity_difference": {
                        "type": "number", "exclusiveMinimum": 0, "maximum": 1,
                        "description": "Largest difference between two groups' shares of "
                                       "tasks decided without a person (default 0.2)."}}},
            "retention": {"type": "object", "additionalProperties": False,
                          "required": ["days"],
                          "properties": {"days": {"type": "integer", "minimum": 1,
                                                  "maximum": 36500}}},
            "examples": _str("A JSON Lines file of {\"text\": ...} in the pack folder.",
                             pattern=r"^[A-Za-z0-9_.-]+\.jsonl$"),
            "look_alikes": _str("A JSON Lines file of {\"text\": ...} in the pack folder: "
                                "documents that resemble this type but are something else; "
                                "the router learns them as `other`.",
                                pattern=r"^[A-Za-z0-9_.-]+\.jsonl$"),
            "tests": {"oneOf": [
                {"type": "array", "items": case, "maxItems": 1000},
                _str("A YAML file in the pack folder holding the cases.",
                     pattern=r"^[A-Za-z0-9_.-]+\.ya?ml$"),
            ]},
        },
    }


def tests_file_schema() -> dict[str, Any]:
    """A separate tests.yaml: a list of cases, or {tests: [cases]}."""
    cases = pack_schema()["properties"]["tests"]["oneOf"][0]
    return {"oneOf": [cases, {"type": "object", "additionalProperties": False,
                              "required": ["tests"], "properties": {"tests": cases}}]}


def tenant_settings_schema() -> dict[str, Any]:
    """The JSON Schema of a tenant settings document."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Switchyard tenant pack settings",
        "type": "object", "additionalProperties": False,
        "properties": {"packs": {
            "type": "object", "propertyNames": {"pattern": PACK_NAME},
            "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "enabled": {"type": "boolean", "description": "Default true."},
                    "version": _str("Pin this pack version.", pattern=SEMVER),
                    "parameters": {"type": "object",
                                   "propertyNames": {"pattern": IDENTIFIER}},
                    "retention_days": {
                        "type": "integer", "minimum": 1, "maximum": 36500,
                        "description": "This tenant's tasks of the pack are purged after "
                                       "these days (or after the tenant's retention when "
                                       "that is shorter); replaces the pack's "
                                       "retention.days for the tenant."},
                },
            },
        }},
    }


# -- errors as lines ------------------------------------------------------------------------


def json_path(parts: Iterable[Any]) -> str:
    """['plan', 1, 'retry'] -> 'plan[1].retry'; empty -> '(root)'."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
                out += f".{text}" if out else text
            else:
                out += f"[{json.dumps(text, ensure_ascii=False)}]"
    return out or "(root)"


def show(value: Any, limit: int = 60) -> str:
    """A value as it appears in a problem line: JSON, shortened, one line."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def line(file: str, path: str, value: str, message: str) -> str:
    """One problem line (line breaks in any part become spaces: one mistake, one line)."""
    text = f"{file}: {path}: {value}: {message}"
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false",
               "null": "null"}


def _type_words(types: Any) -> str:
    if isinstance(types, list):
        return " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    return _TYPE_WORDS.get(types, str(types))


def _message(error: jsonschema.ValidationError) -> tuple[list[Any], str, str]:
    """(path parts, value text, message) for one jsonschema error."""
    path = list(error.absolute_path)
    schema, value, kind = error.schema, error.instance, error.validator
    if kind == "required":
        missing = re.search(r"'(.*?)' is a required property", error.message)
        name = missing.group(1) if missing else "?"
        return path + [name], "(missing)", "required"
    if kind == "additionalProperties":
        extra = sorted(k for k in value if k not in schema.get("properties", {})) \
            if isinstance(value, dict) else []
        allowed = ", ".join(sorted(schema.get("properties", {}))) or "none"
        key = extra[0] if extra else "?"
        title = schema.get("title", "")
        if title in STEP_FORMS and key in _call_properties():
            return path + [key], show(value.get(key)), \
                f"only a call step has {key}; an {title} step has only {title}:"
        return path + [key], show(value.get(key) if isinstance(value, dict) else None), \
            f"unknown key; allowed: {allowed}"
    if kind == "propertyNames":
        return path, show(value), f"key does not match {schema['propertyNames'].get('pattern')}"
    if kind == "type":
        wanted = _type_words(schema.get("type"))
        extra = ""
        if schema.get("type") == "integer" and "minimum" in schema:
            extra = f" >= {schema['minimum']}"
        if isinstance(value, (dt.date, dt.datetime)) and "string" in str(schema.get("type")):
            extra += " (quote it: YAML reads this as a date)"
        return path, show(value), f"must be {wanted}{extra}"
    if kind == "enum":
        return path, show(value), "must be one of: " + " | ".join(str(v) for v in schema["enum"])
    if kind == "pattern":
        return path, show(value), _pattern_words(schema["pattern"])
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">",
              "exclusiveMaximum": "<"}[kind]
        what = _type_words(schema.get("type", "number"))
        return path, show(value), f"must be {what} {op} {schema[kind]}"
    if kind == "minLength":
        return path, show(value), ("must not be empty" if schema["minLength"] == 1 else
                                   f"must be at least {schema['minLength']} characters")
    if kind == "maxLength":
        return path, show(value), f"must be at most {schema['maxLength']} characters"
    if kind == "minItems":
        return path, show(value), f"must have at least {schema['minItems']} item" + \
            ("s" if schema["minItems"] != 1 else "")
    if kind == "maxItems":
        return path, show(value), f"must have at most {schema['maxItems']} items"
    if kind == "maxProperties":
        return path, show(value), f"must have at most {schema['maxProperties']} entries"
    if kind == "minProperties":
        return path, show(value), "must not be empty"
    if kind == "uniqueItems":
        return path, show(value), "must not repeat an item"
    return path, show(value), " ".join(error.message.split())[:200]


def _pattern_words(pattern: str) -> str:
    return {
        PACK_NAME: "must be a lowercase name: a letter, then 1-62 letters, digits or _",
        IDENTIFIER: "must be a lowercase name: a letter, then up to 62 letters, digits or _",
        SEMVER: "must be a version MAJOR.MINOR.PATCH, e.g. 1.0.0",
        DURATION: "must be a duration such as 30s, 15m, 4h, 2d, 200ms",
        CONTENT_TYPE: "must be a media type such as text/plain",
    }.get(pattern, f"must match {pattern}")


def _form_of(value: Any) -> int:
    """Which plan entry form (index in the oneOf) a plan entry means."""
    if isinstance(value, dict):
        for index, key in enumerate(STEP_FORMS, start=1):
            if key in value:
                return index
    return 0


def _expand(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """Replace a oneOf error by the errors of the branch the value means."""
    if error.validator != "oneOf":
        return [error]
    options = error.validator_value
    value = error.instance
    if len(options) == 4 and options[0].get("title") == "call":  # a plan entry
        if not isinstance(value, dict):
            return [_retitle(error, "must be a mapping: a call step, or approval:, wait: or "
                                    "parallel:")]
        branch = _form_of(value)
        if branch and sum(1 for k in STEP_FORMS if k in value) > 1:
            return [_retitle(error, "a step is one of a call, approval:, wait: or parallel:")]
    else:  # tests: a list or a file name
        branch = 0 if isinstance(value, list) else 1
    chosen = [e for e in error.context or () if e.schema_path and e.schema_path[0] == branch]
    if not chosen:
        return [_retitle(error, "does not match any allowed form")]
    out: list[jsonschema.ValidationError] = []
    for sub in chosen:
        out.extend(_expand(sub))
    return out


def _retitle(error: jsonschema.ValidationError, message: str) -> jsonschema.ValidationError:
    copy = jsonschema.ValidationError(message, validator="custom", path=error.absolute_path,
                                      instance=error.instance, schema=error.schema)
    return copy


def structural_problems(instance: Any, schema: dict[str, Any], file: str,
                        prefix: Iterable[Any] = ()) -> list[str]:
    """Every schema error of ``instance`` as a problem line, in document order; ``prefix`` is
    where ``instance`` sits in its file (e.g. ['packs'] inside a policy file)."""
    validator = jsonschema.Draft202012Validator(schema)
    errors: list[jsonschema.ValidationError] = []
    for error in validator.iter_errors(instance):
        errors.extend(_expand(error))
    lines: list[tuple[str, str]] = []
    for error in errors:
        if error.validator == "custom":
            parts, value, message = list(error.absolute_path), show(error.instance), error.message
        else:
            parts, value, message = _message(error)
        path = json_path(list(prefix) + parts)
        lines.append((path, line(file, path, value, message)))
    seen: set[str] = set()
    out = []
    for _, text in sorted(lines, key=lambda item: _sort_key(item[0])):
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _sort_key(path: str) -> list[tuple[int, int, str]]:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p)
            for p in re.split(r"[\[\].]+", path) if p]


__all__ = ["DURATION", "IDENTIFIER", "PACK_NAME", "SEMVER", "json_path", "line", "pack_schema",
           "show", "structural_problems", "tenant_settings_schema", "tests_file_schema"]
