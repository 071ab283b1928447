"""What a loaded pack is: frozen dataclasses the decision service and the executor read.

A :class:`Pack` is built only by the loader (:mod:`switchyard.packs._loader`) after every check
passed, so code holding one may rely on it: names are unique, expressions compiled, durations
parsed, entry points declared. Durations are kept as seconds (floats) beside the text they came
from; CEL conditions and templates are compiled once, here, and evaluated many times.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchyard.packs._expressions import Condition, Template


class PackError(ValueError):
    """A pack (or tenant settings document) is not valid.

    ``problems`` holds one line per mistake, ``<file>: <path>: <value>: <what is wrong>``, so
    a CLI prints them as they are and a gRPC handler turns each into a BadRequest violation.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems) or ["(pack): (root): (none): invalid"]
        super().__init__("\n".join(self.problems))


#: Field types a pack may declare, and the CEL type each becomes in rule/template contexts.
FIELD_TYPES: tuple[str, ...] = ("string", "money", "number", "integer", "date", "iban", "email",
                                "enum", "boolean", "table")
#: Types a table's column may have (every field type but table).
COLUMN_TYPES: tuple[str, ...] = FIELD_TYPES[:-1]
#: How a date field reads a numeric date whose day and month cannot be told apart (03/07/1962):
#: ``day_first`` 3 July, ``month_first`` March 7. Not declared: day first, as a guess.
DATE_ORDERS: tuple[str, ...] = ("day_first", "month_first")
#: Data classes of a field (see DataClass in decision.proto); personal is the safe default.
DATA_CLASSES: tuple[str, ...] = ("personal", "derived", "operational", "health")
PARAM_TYPES: tuple[str, ...] = ("number", "integer", "string", "boolean", "list")
OUTCOMES: tuple[str, ...] = ("auto_execute", "escalate", "reject")
ESCALATION_REASONS: tuple[str, ...] = ("POLICY", "LOW_CONFIDENCE", "OTHER")
PRIORITIES: tuple[str, ...] = ("urgent", "high", "normal", "low")
#: Review priority bucket per priority name (0 = P0, most urgent; as switchyard._priority).
PRIORITY_BUCKETS: dict[str, int] = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
HIT_POLICIES: tuple[str, ...] = ("first", "collect")
BUILTIN_CONNECTORS: tuple[str, ...] = ("http", "grpc", "sql")
#: The router's class for documents no pack automates: no pack may be called so.
RESERVED_PACK_NAMES: frozenset[str] = frozenset({"other"})
#: The rule a decision names when no rule of the table matched (it escalates, reason POLICY).
NO_RULE_MATCHED = "no_rule_matched"


@dataclass(frozen=True)
class FieldSpec:
    """A field the extractor reports."""

    name: str
    type: str = "string"
    required: bool = False
    data_class: str = "personal"
    labels: tuple[str, ...] = ()
    pattern: str = ""  # a regex with one capture group, tried before the labels
    values: tuple[str, ...] = ()  # enum only
    #: enum only: other ways documents write a value (``F`` for ``female``), alias -> value
    aliases: tuple[tuple[str, str], ...] = ()
    #: table only: its columns (name, type and the labels of its header), in declared order
    columns: tuple[FieldSpec, ...] = ()
    #: table only: labels of a line that ends the table (``Subtotal``)
    end: tuple[str, ...] = ()
    #: date only: ``day_first`` or ``month_first`` for ``03/07/1962``; empty: not declared
    #: (read day first, its confidence lowered as a guess)
    date_order: str = ""


@dataclass(frozen=True)
class ParamSpec:
    """A parameter tenants may override."""

    name: str
    type: str
    default: Any = None
    items: str = ""  # list only: string | number
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[Any, ...] = ()
    description: str = ""

    def coerce(self, value: Any) -> Any:
        """``value`` as the rule context holds it: a number parameter (or a list of numbers)
        as floats, so CEL sees doubles whether the YAML said 500 or 500.0 (CEL does not mix
        int and double in arithmetic)."""
        if self.type == "number" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if self.type == "list" and self.items == "number" and isinstance(value, list):
            return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                    for v in value]
        return value


@dataclass(frozen=True)
class ScorerSpec:
    """An extra Triton model whose score is ``scores.<name>`` in rules."""

    name: str
    features: str  # entry point in group switchyard.features
    output_class: str = ""  # empty: the top class


@dataclass(frozen=True)
class FairnessSpec:
    """Who the models could treat unequally: each attribute is an enum field the pack reads
    (its values are the groups), with why it stands for a protected characteristic when it
    is a proxy. Automation rates across a group's values may differ by at most
    ``max_parity_difference``: a model version past it is not promoted
    (services/decision/fairness.py)."""

    attributes: tuple[str, ...]
    notes: tuple[str, ...]
    max_parity_difference: float


@dataclass(frozen=True)
class ReviewSpec:
    """Where an escalation waits and who may take it."""

    queue: str = ""  # empty: the tenant policy's review queue
    group: str = ""
    priority: str = "normal"
    sla: str = ""  # empty: the queue's SLA
    sla_s: float | None = None
    four_eyes: bool = False
    #: pack level only: personal and health fields its reviewers see in clear
    #: (``Decision.revealed_fields``); every other one is withheld from them
    reveal: tuple[str, ...] = ()

    @property
    def priority_bucket(self) -> int:
        """The review priority bucket (0 = P0 .. 3 = P3) of ``priority``."""
        return PRIORITY_BUCKETS[self.priority]


@dataclass(frozen=True)
class RuleSpec:
    """One row of the decision table."""

    name: str
    when: str
    condition: Condition
    outcome: str
    reason: str = ""  # escalations only: POLICY | LOW_CONFIDENCE | OTHER
    explain: str = ""
    explain_template: Template | None = field(default=None, compare=False)
    review: ReviewSpec | None = None  # escalations only (rule's review over the defaults)
    #: escalations only: CEL giving a list of {field, submitted, found, source, note} maps,
    #: shown to the reviewer as the escalation's discrepancies (compiled once, as a template)
    discrepancies: str = ""
    discrepancies_template: Template | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Compensation:
    """The call that undoes a finished step."""

    name: str
    target: str
    operation: str = "DELETE"
    connector: str = "http"
    payload: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class StepApproval:
    """An approval step: a person approves before the plan goes on."""

    group: str = ""
    four_eyes: bool = False
    sla: str = ""
    sla_s: float | None = None
    queue: str = ""
    instructions: str = ""
    discrepancies: str = ""  # CEL: a list of {field, submitted, found, source, note}
    reveal: tuple[str, ...] = ()  # fields its reviewers see in clear
    document: bool = True  # false: its reviewers get fields and discrepancies, no document


@dataclass(frozen=True)
class RetryLaterSpec:
    """A call step's business-level "not now": ``when`` (CEL over ``answer`` and the step
    context) holds -> the step is called again after ``every`` (a duration, or
    ``${params.<name>}`` resolved when the plan is built)."""

    when: str
    every: str
    every_s: float | None = None  # None: from a parameter


@dataclass(frozen=True)
class StepWait:
    """A durable wait: a timer (``duration``) or a callback with an optional timeout."""

    duration: str = ""
    duration_s: float | None = None
    callback: str = ""
    timeout: str = ""
    timeout_s: float | None = None


@dataclass(frozen=True)
class StepSpec:
    """One step of a plan, flattened: a parallel block's steps share ``parallel_group``."""

    name: str
    kind: str = "call"  # call | approval | wait
    connector: str = "http"
    target: str = ""
    operation: str = ""
    payload: dict[str, Any] = field(default_factory=dict, compare=False)
    timeout: str = ""
    timeout_s: float | None = None
    max_attempts: int = 0  # 0: the executor's default
    backoff: str = ""
    backoff_s: float | None = None
    max_backoff: str = ""
    max_backoff_s: float | None = None
    when: str = ""
    parallel_group: str = ""
    compensation: Compensation | None = None
    retry_later: RetryLaterSpec | None = None
    approval: StepApproval | None = None
    wait: StepWait | None = None


@dataclass(frozen=True)
class GoldenCase:
    """A test case: a document and what the pack should decide about it."""

    name: str
    text: str
    content_type: str = "text/plain"
    metadata: dict[str, str] = field(default_factory=dict, compare=False)
    parameters: dict[str, Any] = field(default_factory=dict, compare=False)
    expect_outcome: str = ""
    expect_rule: str = ""
    expect_fields: dict[str, str] = field(default_factory=dict, compare=False)


@functools.lru_cache(maxsize=64)
def _title_patterns(titles: tuple[str, ...], look_alikes: tuple[str, ...]
                    ) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None,
                               re.Pattern[str] | None]:
    """A pack's own titles, found anywhere in a head, alone or ending a compound
    (``Mietrechnung``); its look-alikes' titles, at the start of a cell and not as a key
    with its value (``Bestellung: B123``: the order referred to), the title matched named
    ``title``; and a cell that is one of its own titles and nothing else but the document's
    number (``INVOICE``, ``Tax Invoice``, ``Facture N° 562044387``; not a column's ``Invoice
    No`` or ``Invoice Date``, which carry no digit). Compiled once per pack: every decision
    of the pack's type asks."""
    def alternatives(words: tuple[str, ...]) -> str:
        return "|".join(re.escape(word.lower()) for word in sorted(words, key=len, reverse=True))
    own = re.compile(rf"(?:{alternatives(titles)})(?![^\W\d_])") if titles else None
    look_alike = re.compile(
        rf"(?P<title>{alternatives(look_alikes)})(?![^\W\d_])(?!\s*:\s*\S)") \
        if look_alikes else None
    heading = re.compile(
        rf"(?:{alternatives(titles)})(?:[ \t]*(?:no\.?|nr\.?|n°|nº|#|number)?[ \t]*[:.]?"
        rf"[ \t]*[\w/.-]*\d[\w/.-]*)?") if titles else None
    return own, look_alike, heading


#: Where a line of a head splits into cells: a laid-out page's `` | ``, a tab, or a gap of
#: three spaces or more in plain text's columns.
_CELLS = re.compile(r" \| |\t|   +")


#: How much of a document's text a router signature is looked for in: a format's header.
SIGNATURE_WINDOW = 2000
#: The non-blank lines a document's title stands among (a letterhead's first, then the title).
TITLE_LINES = 8


def _head(text: str) -> list[str]:
    """The first :data:`TITLE_LINES` non-blank lines of ``text``: where its title stands."""
    return [line for line in text[:SIGNATURE_WINDOW].splitlines() if line.strip()][:TITLE_LINES]


@dataclass(frozen=True)
class Pack:
    """A validated pack: a document type's whole automation."""

    name: str
    version: str
    description: str
    content_types: tuple[str, ...]
    fields: dict[str, FieldSpec] = field(compare=False)
    extractor: str
    parameters: dict[str, ParamSpec] = field(compare=False)
    router_min_confidence: float | None
    scorers: tuple[ScorerSpec, ...]
    enrichers: tuple[str, ...]
    hit_policy: str
    rules: tuple[RuleSpec, ...]
    review: ReviewSpec
    plan: tuple[StepSpec, ...]
    retention_days: int | None
    examples: tuple[str, ...] = field(compare=False)
    tests: tuple[GoldenCase, ...] = field(compare=False)
    digest: str = ""
    files: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    fairness: FairnessSpec | None = None
    #: ``models.router.signatures``: each a set of strings that all appear in the head of a
    #: document of this type (a standard format's header), naming its type without the router
    router_signatures: tuple[tuple[str, ...], ...] = ()
    #: ``models.router.titles`` and ``.look_alike_titles``: what this type's documents are
    #: titled, and what documents that resemble it but are something else are titled
    router_titles: tuple[str, ...] = ()
    router_look_alike_titles: tuple[str, ...] = ()
    #: ``look_alikes`` (default ``look_alikes.jsonl``): documents that resemble this type but
    #: are something else (a statement of account beside invoices); the router learns them as
    #: ``other``, which no pack automates, so they reach a person instead of this pack
    look_alikes: tuple[str, ...] = field(default=(), compare=False)

    def look_alike_title(self, text: str) -> str | None:
        """The look-alike's title ``text`` is headed with, or None: a cell of its first
        :data:`TITLE_LINES` non-blank lines (a laid-out page's cells are separated by `` | ``)
        that starts with one of ``router_look_alike_titles`` (``PACKING LIST``, ``Packing List
        No: 7``), where those lines name none of ``router_titles`` (``Rechnung/Lieferschein``
        is an invoice that delivers too).

        Why: the router learns what a type's documents say, and a packing list, a quotation
        or a statement says much of what an invoice does; its title says what it is."""
        own, look_alike, _ = _title_patterns(self.router_titles, self.router_look_alike_titles)
        if look_alike is None:
            return None
        head = _head(text)
        if own is not None and own.search("\n".join(head).lower()):
            return None
        return self._look_alike_heading(head, look_alike)

    def _look_alike_heading(self, head: list[str], look_alike: re.Pattern[str]) -> str | None:
        """The look-alike title a cell of ``head`` starts with, as the pack writes it."""
        for cell in (c.strip().lower() for line in head for c in line.split(" | ")):
            found = look_alike.match(cell)
            if found is not None:
                return next(title for title in self.router_look_alike_titles
                            if title.lower() == found.group("title"))
        return None

    def own_title(self, text: str) -> str | None:
        """The cell of ``text``'s first :data:`TITLE_LINES` non-blank lines that titles it as
        this type (one of ``router_titles``, alone or with the document's number: ``INVOICE``,
        ``Rechnung Nr. 2024-17``), or None; None too when a look-alike's title heads it.

        Why: the router's best guess, when it is unsure, is confirmed by what the document
        calls itself (the decision service then lets the pack decide instead of asking a
        person for the type)."""
        _, look_alike, heading = _title_patterns(self.router_titles,
                                                 self.router_look_alike_titles)
        head = _head(text)
        if heading is None or (look_alike is not None
                               and self._look_alike_heading(head, look_alike) is not None):
            return None
        for line in head:
            for cell in _CELLS.split(line):
                if heading.fullmatch(cell.strip().lower()):
                    return cell.strip()
        return None

    def recognises(self, text: str) -> bool:
        """Whether ``text`` carries one of the pack's signatures in its first
        :data:`SIGNATURE_WINDOW` characters."""
        head = text[:SIGNATURE_WINDOW]
        return any(all(part in head for part in signature)
                   for signature in self.router_signatures)

    @property
    def field_types(self) -> dict[str, str]:
        """Field name -> declared type (what :func:`typed_fields` needs)."""
        return {name: spec.type for name, spec in self.fields.items()}

    @property
    def defaults(self) -> dict[str, Any]:
        """Parameter name -> default value (number parameters as floats: CEL doubles)."""
        return {name: spec.coerce(spec.default) for name, spec in self.parameters.items()}

    def rule(self, name: str) -> RuleSpec | None:
        """The rule called ``name``, or None."""
        return next((r for r in self.rules if r.name == name), None)
