"""Turn a task into a Decision protobuf: route, then the tenant's pack for the type decides.

Shared by the Kafka path, the sync Decide RPC and PackService.TestPack; all reach Triton
through the same micro-batchers (one per model). The router names the document type; the
tenant's routing policy (:mod:`services.decision.policy`) may reject it, or send it to a
person when the router is unsure or disagrees with the submitter. Otherwise the tenant's
enabled pack for the type decides: its extractor reads the fields, its enrichers add what the
tenant's records say (``history``), its scorer models score it (``scores``), and the first
matching rule of its decision table (or, with hit policy ``collect``, the most severe of all
that match) gives the outcome, the explanation and, for an escalation, the review routing. The
decision names the pack, its version and the rule, and carries the pack's plan with the
tenant's parameters, so the task finishes on the pack version it was decided with.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, is_dataclass, replace
from typing import Any

import asyncpg
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.decision.batcher import MicroBatcher, Overloaded
from services.decision.cascade import RouterCascade
from services.decision.drift import DriftMonitor
from services.decision.extensions import Enrichers, Scorers, extractor_of, features_for
from services.decision.packs import ActivePack, PackCatalog
from services.decision.policies import PolicySet
from services.decision.policy import Outcome, Policy, no_plan, route, unavailable
from services.decision.reading import DocumentReader, ReadDocument, UnreadableDocument
from services.decision.rollouts import RolloutBook
from services.decision.triton import ModelUnavailable, Prediction
from services.decision.versions import DECIDING, Deciding, ModelVersions
from switchyard.documents import layout_text
from switchyard.packs import (
    NO_RULE_MATCHED,
    Activation,
    ExpressionError,
    ExtractedField,
    FieldSpec,
    Pack,
    RuleSpec,
    as_text,
    discrepancy_maps,
    evaluate_condition,
    parse_value,
    run_extractor,
    typed_fields,
    with_params,
)
from switchyard.privacy import Redactor, WithheldValues, withheld_label, withheld_values
from switchyard.tasks import DEFAULT_REVIEW_QUEUE, task_bucket
from switchyard.v1 import (
    ActionPlan,
    DataClass,
    Decision,
    DecisionOutcome,
    DecisionSource,
    Discrepancy,
    DocumentLayout,
    FieldExtraction,
    ModelOutput,
    TaskEnvelope,
    WrittenValue,
)

log = logging.getLogger(__name__)
_OUTCOMES = {
    "auto_execute": DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE,
    "escalate": DecisionOutcome.DECISION_OUTCOME_ESCALATE,
    "reject": DecisionOutcome.DECISION_OUTCOME_REJECT,
}
#: With hit policy ``collect``, the outcome that wins when several rules match.
_SEVERITY = {"reject": 0, "escalate": 1, "auto_execute": 2}
_DATA_CLASSES = {"personal": DataClass.DATA_CLASS_PERSONAL,
                 "derived": DataClass.DATA_CLASS_DERIVED,
                 "operational": DataClass.DATA_CLASS_OPERATIONAL,
                 "health": DataClass.DATA_CLASS_HEALTH}
_DETECTORS = Redactor()
MAX_TEXT_CHARS = 20_000  # the router reads the head of long documents
#: The rule named when a pack's extension (extractor, enricher, feature builder) or one of its
#: expressions fails on a document: a person decides instead.
PACK_ERROR_RULE = "pack_error"
#: The rule named when a document's content type is not among its pack's ``content_types``.
CONTENT_TYPE_RULE = "content_type_not_supported"
#: The rule named when a PDF or image cannot be read (damaged, its blob's checksum wrong).
UNREADABLE_RULE = "document_unreadable"
#: Routing rules that escalate with a best guess of the type: the proposal carries the fields
#: that type's pack reads (:meth:`DecisionEngine.best_guess`).
GUESSING_RULES = frozenset({"low_confidence", "kind_mismatch", "look_alike_title"})


#: The model name a decision's ``models`` gives a type named by a pack's router signature.
SIGNATURE_MODEL = "pack_signature"
#: What names a type the deployed router does not know yet, in Decision.models: the kind the
#: submitter gave (after the router's own answer, so neither is credited with the other's).
SUBMITTED_KIND_MODEL = "submitted_kind"


def signature_match(actives: Iterable[ActivePack], text: str) -> Pack | None:
    """The one pack whose router signature ``text`` carries (``models.router.signatures``),
    or None: none does, or several do (then the router decides, as without signatures)."""
    matched = [active.pack for active in actives if active.pack.recognises(text)]
    return matched[0] if len(matched) == 1 else None


def title_match(actives: Iterable[ActivePack], text: str) -> tuple[Pack, str] | None:
    """The one pack whose own title heads ``text`` (``Pack.own_title``) with that title, or
    None: none does, or several do."""
    matched = [(active.pack, title) for active in actives
               if (title := active.pack.own_title(text)) is not None]
    return matched[0] if len(matched) == 1 else None


def document_text(task: TaskEnvelope, read: ReadDocument | None = None) -> str:
    """What the router reads: the layout's words in reading order for a PDF or an image
    (``read``), else the body as UTF-8; the head of long documents."""
    if read is not None:
        return layout_text(read.layout)[:MAX_TEXT_CHARS]
    return task.document.body.decode("utf-8", errors="replace")[:MAX_TEXT_CHARS]


def _allowed_values(spec: FieldSpec | None) -> tuple[str, ...]:
    """An enum field's values, for the reviewer's edit to be checked against."""
    return spec.values if spec is not None and spec.type == "enum" else ()


def _model_output(p: Prediction) -> ModelOutput:
    return ModelOutput(model_name=p.model_name, model_version=p.model_version, label=p.label,
                       confidence=p.confidence, scores=p.scores, pool=p.pool)


@dataclass(frozen=True)
class Assessment:
    """What a pack's stage found about a document, before it became a protobuf."""

    active: ActivePack
    extraction: Any  # the extractor's result: .fields (name -> value, confidence), .confidence
    raw_fields: dict[str, str]
    scorer_outputs: tuple[Prediction, ...] = ()
    #: each scorer's input vector (what a reviewer's verdict then labels for retraining)
    scorer_inputs: Mapping[str, tuple[float, ...]] = field(default_factory=dict)


def to_decision(task: TaskEnvelope, outcome: Outcome, prediction: Prediction | None,
                policy: Policy, assessment: Assessment | None = None,
                active: ActivePack | None = None) -> Decision:
    now = Timestamp()
    now.GetCurrentTime()
    active = assessment.active if assessment is not None else active
    # Escalations and rejections carry the plan too, so an approving reviewer runs it.
    plan = active.plan if active is not None else ActionPlan()
    decision = Decision(
        decision_id=str(uuid.uuid4()), task_id=task.task_id, tenant_id=task.tenant_id,
        outcome=_OUTCOMES[outcome.action], confidence=outcome.confidence, rule=outcome.rule,
        explanation=outcome.explanation, plan=plan,
        source=DecisionSource.DECISION_SOURCE_MODEL, decided_at=now, label=outcome.label,
        review_queue=outcome.queue or policy.review_queue,
    )
    if assessment is not None:  # the pack's table decided (the plan names its pack anyway)
        decision.pack, decision.pack_version = active.pack.name, active.pack.version
    if active is not None:
        # minimum necessary: what the pack's reviewers see in clear, on every decision of
        # the pack (an approval step's escalation falls back to it)
        decision.revealed_fields.extend(active.pack.review.reveal)
    # who may take the task's escalations, the executor's later ones too (an SLA at risk, a
    # failed compensation): the escalating rule's routing, else its pack's
    decision.reviewer_group = outcome.reviewer_group
    decision.four_eyes = outcome.four_eyes
    if outcome.action == "escalate" and outcome.review_sla_s:
        decision.review_sla.CopyFrom(Duration(seconds=int(outcome.review_sla_s)))
    if prediction is not None:   # a pooled answer (the router cascade) after the ones it pooled
        decision.models.extend(_model_output(p) for p in (*prediction.consulted, prediction))
    if assessment is not None:
        pack = assessment.active.pack
        decision.models.extend(_model_output(p) for p in assessment.scorer_outputs)
        found_fields = assessment.extraction.fields
        for name, found in found_fields.items():
            spec = pack.fields.get(name)
            decision.fields.append(FieldExtraction(
                name=name, value=found.value, confidence=found.confidence,
                data_class=_DATA_CLASSES[spec.data_class] if spec is not None
                else DataClass.DATA_CLASS_PERSONAL,
                type=spec.type if spec is not None else "string",
                allowed_values=_allowed_values(spec),
                # where a document's layout had it (an extractor's ExtractedField.provenance)
                provenance=getattr(found, "provenance", None),
                # how the text wrote it, where not as the value (masked where withheld)
                written=_written_value(getattr(found, "written", None)),
                written_elsewhere=list(filter(None, map(
                    _written_value, getattr(found, "elsewhere", None) or ())))))
        # every declared field travels with its type and class, those not found empty (value
        # '', confidence 0): the executor's templates see them as null, a reviewer can fill
        # them in
        # (one whose label was there with a value that did not parse carries that value as
        # written: data of the field's class, masked where the field is withheld)
        unread = getattr(assessment.extraction, "unread", None)
        unread = unread if isinstance(unread, dict) else {}
        decision.fields.extend(
            FieldExtraction(name=name, value="", confidence=0.0,
                            data_class=_DATA_CLASSES[spec.data_class], type=spec.type,
                            allowed_values=_allowed_values(spec),
                            written=_written_value(unread.get(name)))
            for name, spec in pack.fields.items() if name not in found_fields)
        overall = float(assessment.extraction.confidence)
        decision.fields.append(FieldExtraction(
            name="extraction_confidence", value=f"{overall:.3f}", confidence=overall,
            data_class=DataClass.DATA_CLASS_OPERATIONAL, type="number"))
        decision.extracted_fields.update(assessment.raw_fields)
        # the explanation is stored in plaintext and published on task-status: a rule's
        # template (or a failing expression's message) quoting a personal or health value
        # leaves its label instead
        decision.explanation = withheld_values(decision, _DETECTORS, prose=True).text(
            decision.explanation)
    return decision


def _written_value(written: Any) -> WrittenValue | None:
    """An extractor's ``ExtractedField.written`` (label, value as written) as the proto; a
    custom extractor's field without one (or with something else there) has none."""
    if isinstance(written, tuple) and len(written) == 2 and all(
            isinstance(part, str) and part for part in written):
        return WrittenValue(label=written[0], value=written[1])
    return None


@dataclass(frozen=True)
class Decided:
    decision: Decision
    outcome: Outcome
    policy: Policy
    assessment: Assessment | None = None
    #: the document's layout (PDFs and images): escalations carry it to the reviewer
    layout: DocumentLayout | None = None
    #: the text the models read ('' when none did): an escalation keeps it as the example a
    #: reviewer's verdict labels (services/decision/labels.py)
    text: str = ""

    @property
    def model_unavailable(self) -> bool:
        return self.outcome.rule == "model_unavailable"


@dataclass(frozen=True)
class TableResult:
    """The decision table's verdict: the deciding rule (None: none matched) and every match."""

    rule: RuleSpec | None
    matched: tuple[RuleSpec, ...]
    error: str = ""


def with_edits(extraction: Any, edits: Mapping[str, str], pack: Pack) -> Any:
    """``extraction`` (an :class:`Extraction` or a pack's own dataclass with ``fields``) with
    a reviewer's edits in place of what was read: each value normalised as its declared type
    reads (``60,000`` as ``60000.00``), sure (confidence 1.0); an empty value clears the
    field."""
    fields = dict(extraction.fields)
    for name, value in edits.items():
        name, value = name.strip(), value.strip()
        if not value:
            fields.pop(name, None)
            continue
        spec = pack.fields.get(name)
        parsed = parse_value(spec, value) if spec is not None else (value, 1.0)
        fields[name] = ExtractedField(parsed[0] if isinstance(parsed, tuple) else value, 1.0)
    if is_dataclass(extraction):
        return replace(extraction, fields=fields)
    extraction.fields = fields
    return extraction


def run_table(pack: Pack, context: Mapping[str, Any]) -> TableResult:
    """Evaluate ``pack``'s rules in order under its hit policy. A rule whose expression fails
    at run time (a type mismatch on this document) stops the table: a person decides."""
    matched: list[RuleSpec] = []
    for rule in pack.rules:
        try:
            hit = evaluate_condition(rule.condition, context)
        except ExpressionError as exc:
            return TableResult(rule, tuple(matched), str(exc))
        if hit:
            matched.append(rule)
            if pack.hit_policy == "first":
                break
    if not matched:
        return TableResult(None, ())
    if pack.hit_policy == "collect":
        best = min(_SEVERITY[r.outcome] for r in matched)
        winner = next(r for r in matched if _SEVERITY[r.outcome] == best)
        return TableResult(winner, tuple(matched))
    return TableResult(matched[0], tuple(matched))


#: The data classes whose values an explanation never shows (it is stored in plaintext and
#: published on task-status).
_WITHHELD_CLASSES = frozenset({"personal", "health"})
_FIELD_QUOTE = re.compile(r"\s*fields\.([A-Za-z_][A-Za-z0-9_]*)\s*")


def _explain(rule: RuleSpec, context: Mapping[str, Any], pack: Pack) -> str:
    """The rule's explanation. Each ``${...}`` that quotes a personal or health field
    (``${fields.injured}``) shows the field's label, and one that computes with such values
    shows its text with them masked; the template's own words are never masked. (Searching
    the rendered text for the values afterwards had taken the word ``no`` of "names no
    policy number" for a health field that read ``no``.)"""
    if rule.explain_template is None:
        return rule.explain or f"Rule '{rule.name}' matched."
    fields = context["fields"]
    withheld = [(name, as_text(fields[name]), spec.type) for name, spec in pack.fields.items()
                if spec.data_class in _WITHHELD_CLASSES and spec.type != "table"
                and fields.get(name) not in (None, "")]
    try:
        if not withheld:
            return str(rule.explain_template.render(context))
        names = {name for name, _, _ in withheld}
        values = WithheldValues(withheld, _DETECTORS)

        def shown(source: str, text: str) -> str:
            quote = _FIELD_QUOTE.fullmatch(source)
            if quote and quote.group(1) in names:
                return withheld_label(quote.group(1))
            return values.text(text)

        return rule.explain_template.render_text(context, shown)
    except ExpressionError as exc:
        return f"Rule '{rule.name}' matched (its explanation could not be rendered: {exc})."


def _discrepancies(rule: RuleSpec, context: Mapping[str, Any]) -> tuple[Discrepancy, ...]:
    """What an escalating rule's ``discrepancies`` expression gives, for the reviewer; a
    value that cannot be rendered gives none (the explanation still says why)."""
    if rule.discrepancies_template is None:
        return ()
    where = f"rule {rule.name} discrepancies"
    try:
        value = rule.discrepancies_template.render(context)
        return tuple(Discrepancy(**item) for item in discrepancy_maps(value, where))
    except ValueError as exc:
        log.warning("%s could not be rendered: %s", where, exc)
        return ()


def _routing(review: Any, policy: Policy, params: Mapping[str, Any]) -> dict[str, Any]:
    # the pack's queue when it names one, else the tenant's; a queue or group may name the
    # tenant's parameters (``${params.reviewer_group}``)
    queue = with_params(review.queue, params)
    if not queue or queue == DEFAULT_REVIEW_QUEUE:
        queue = policy.review_queue
    return {"queue": queue, "reviewer_group": with_params(review.group, params),
            "four_eyes": review.four_eyes, "review_sla_s": review.sla_s}


def table_outcome(pack: Pack, context: Mapping[str, Any], policy: Policy, bucket: int = 2,
                  note: str = "") -> Outcome:
    """What ``pack``'s decision table decides in ``context`` (the rule context: fields,
    params, route, scores, history, ...): outcome, rule, explanation and, for an escalation,
    its reason, priority and review routing. ``note`` prefixes the explanation."""
    params = context["params"]
    context = Activation(context)  # every rule and the explanation: converted for CEL once
    route_confidence = float(context["route"]["confidence"])
    confidence = min([route_confidence, *context["scores"].values()])
    result = run_table(pack, context)
    review = pack.review
    if result.error:
        assert result.rule is not None
        return Outcome("escalate", result.rule.name,
                       f"{note}Rule '{result.rule.name}' could not be evaluated on this "
                       f"document ({result.error}); a person decides.", confidence,
                       pack.name, "OTHER", priority=bucket, **_routing(review, policy, params))
    if result.rule is None:
        return Outcome("escalate", NO_RULE_MATCHED,
                       f"{note}No rule of pack {pack.name} {pack.version} matched.",
                       confidence, pack.name, "POLICY",
                       priority=min(bucket, review.priority_bucket),
                       **_routing(review, policy, params))
    rule = result.rule
    explanation = _explain(rule, context, pack)
    if pack.hit_policy == "collect" and len(result.matched) > 1:
        explanation = explanation.rstrip()
        if not explanation.endswith((".", "!", "?")):
            explanation += "."
        explanation += " Also matched: " + "; ".join(
            f"{r.name} ({r.outcome})" for r in result.matched if r is not rule) + "."
    if rule.outcome != "escalate":
        # the pack's review routing still says who takes the task should the executor hand
        # it to a person later (an SLA at risk, a failed compensation)
        return Outcome(rule.outcome, rule.name, note + explanation, confidence, pack.name,
                       **_routing(review, policy, params))
    review = rule.review or pack.review
    return Outcome("escalate", rule.name, note + explanation, confidence, pack.name,
                   rule.reason or "POLICY", priority=min(bucket, review.priority_bucket),
                   discrepancies=_discrepancies(rule, context), **_routing(review, policy, params))


class DecisionEngine:
    def __init__(self, router: MicroBatcher[str, Prediction] | ModelVersions[str],
                 policies: PolicySet | Policy,
                 catalog: PackCatalog, scorers: Scorers | None = None,
                 enrichers: Enrichers | None = None,
                 router_drift: DriftMonitor | None = None,
                 router_classes: Callable[[], Collection[str]] = frozenset,
                 reader: DocumentReader | None = None,
                 cascade: RouterCascade | None = None,
                 rollouts: RolloutBook | None = None) -> None:
        # the router's versions (ModelVersions: live, canary, shadow per the rollouts), or
        # one batcher
        self.router = router
        self.rollouts = rollouts  # counts what each side of a canary decided
        self.cascade = cascade  # the router's unsure answers get a second opinion
        self.reader = reader  # PDFs and images -> layouts (text layer, OCR on Triton)
        self.policies = policies if isinstance(policies, PolicySet) else PolicySet(policies)
        self.catalog = catalog
        self.scorers = scorers
        self.enrichers = enrichers or Enrichers(None)
        self.router_drift = router_drift
        self.router_classes = router_classes  # the deployed router's labels

    @property
    def policy(self) -> Policy:
        """The default policy (tenants without their own)."""
        return self.policies.default

    async def decide(self, task: TaskEnvelope, persist: bool = False) -> tuple[Decision, Outcome]:
        """Raises ``Overloaded`` when a batcher is full (callers push back)."""
        result = await self.assess(task, persist)
        return result.decision, result.outcome

    async def assess(self, task: TaskEnvelope, persist: bool = False,
                     testing: ActivePack | None = None) -> Decided:
        """Decide ``task``; ``persist`` marks tasks of the system of record (Kafka path).

        ``testing`` (PackService.TestPack) stands in for the tenant's pack of that name, and
        the task is not production traffic: the shadow and drift monitors do not see it, nor
        does a canary (services/decision/versions.py).
        """
        deciding = Deciding(task.task_id, persist, testing is not None)
        token = DECIDING.set(deciding)
        try:
            result = await self._assess(task, persist, testing)
        finally:
            DECIDING.reset(token)
        if self.rollouts is not None and not result.model_unavailable:
            escalated = result.decision.outcome == DecisionOutcome.DECISION_OUTCOME_ESCALATE
            for rollout, role in deciding.used:
                self.rollouts.count(rollout, role, escalated=escalated)
        return result

    async def _assess(self, task: TaskEnvelope, persist: bool,
                      testing: ActivePack | None) -> Decided:
        policy = self.policies.for_tenant(task.tenant_id)
        packs = self.catalog.for_tenant(task.tenant_id)
        if testing is not None:
            packs = replace(packs, packs={**packs.packs, testing.pack.name: testing})
        bucket = task_bucket(task)
        read = None
        if self.reader is not None:
            try:
                read = await self.reader.read(task)
            except ModelUnavailable as exc:
                if testing is not None:
                    raise
                return self._unavailable(task, policy, str(exc))
            except UnreadableDocument as exc:
                outcome = Outcome("escalate", UNREADABLE_RULE,
                                  f"The document cannot be read ({exc}); a person decides.",
                                  0.0, "", "OTHER", priority=bucket)
                return Decided(to_decision(task, outcome, None, policy), outcome, policy)
        layout = read.layout if read is not None else None
        text = document_text(task, read)
        try:
            prediction = await self.router.submit(text, task.tenant_id, bucket)
        except ModelUnavailable as exc:
            if testing is not None:
                raise
            return self._unavailable(task, policy, str(exc), layout=layout, text=text)
        if testing is None and self.router_drift is not None:
            self.router_drift.observe({"text_length_chars": len(text),
                                       "predicted_class": prediction.label,
                                       "max_prob": prediction.confidence})
        if self.cascade is not None:   # the shadow and drift monitors watch the router itself
            prediction = await self.cascade.refine(prediction, text, task.tenant_id, bucket)
        note = ""
        if read is not None and read.unread_pages:
            note = (f"Only the first {len(read.layout.pages)} of {read.page_count} pages were "
                    "read. ")
        recognised = signature_match(packs.packs.values(), text)
        if recognised is not None and not (recognised.name == prediction.label
                                           and prediction.confidence >= 1.0):
            # a standard format's marks name the type for sure: the router was consulted
            note += f"recognised as '{recognised.name}' by its format's signature. "
            prediction = Prediction(
                model_name=SIGNATURE_MODEL, model_version=f"{recognised.name} {recognised.version}",
                label=recognised.name, confidence=1.0, scores={recognised.name: 1.0},
                pool=prediction.pool, consulted=(*prediction.consulted, prediction))
        kind_pack = packs.get(task.kind) if task.kind else None
        if kind_pack is not None and task.kind not in self.router_classes():
            # a type newer than the deployed router: the submitter's kind routes it
            note += f"routed by the submitted kind: the router does not know '{task.kind}' yet. "
            prediction = Prediction(
                model_name=SUBMITTED_KIND_MODEL, model_version="", label=task.kind,
                confidence=1.0, scores={task.kind: 1.0}, pool=prediction.pool,
                consulted=(*prediction.consulted, prediction))
        titled = None   # the document's own title, when it names an unsure router's type
        if not task.kind and prediction.model_name != SIGNATURE_MODEL and \
                packs.get(prediction.label) is None and \
                prediction.confidence < policy.threshold_for(prediction.label):
            # unsure that no pack's type it is, and the document's title names one: that one
            titled_pack = title_match(packs.packs.values(), text)
            if titled_pack is not None:
                named, titled = titled_pack
                note += (f"The router was unsure ('{prediction.label}' at "
                         f"{prediction.confidence:.0%}); the document's title "
                         f"'{titled}' names '{named.name}'. ")
                prediction = replace(prediction, label=named.name,
                                     confidence=prediction.scores.get(named.name, 0.0))
        active = packs.get(prediction.label)
        # a format's signature names the type for sure; else a look-alike's title is asked about
        look_alike = active.pack.look_alike_title(text) \
            if active is not None and prediction.model_name != SIGNATURE_MODEL else None
        if titled is None and active is not None and not task.kind and prediction.confidence < \
                policy.threshold_for(prediction.label, active.pack.router_min_confidence):
            # an unsure best guess that the document's own title names goes on to its pack
            titled = active.pack.own_title(text)
            if titled is not None:
                note += (f"The router's best guess '{prediction.label}' at "
                         f"{prediction.confidence:.0%} is what the document's title calls it. ")
        outcome = route(task.kind, prediction, policy, bucket,
                        active.pack.router_min_confidence if active is not None else None,
                        look_alike, titled)
        if outcome is None and active is None:
            outcome = no_plan(prediction.label, prediction.confidence, bucket)
        if outcome is not None:
            guess = None
            if outcome.rule in GUESSING_RULES and kind_pack is not None and \
                    outcome.label != task.kind and (active is None or
                                                    outcome.rule == "low_confidence"):
                # the router's type has no pack here ('other'), or the router is unsure of
                # it: the type a person confirms is the submitter's, so the proposal is its
                # pack's, and the document goes to that type's reviewers as they see it (its
                # withheld fields masked); only a sure router overrules the submitter
                why = (f"No pack of this tenant's reads '{prediction.label}'" if active is None
                       else "An unsure router does not overrule the submitter")
                outcome = replace(outcome, label=task.kind, explanation=(
                    f"{outcome.explanation} {why}: the proposal is the submitted kind's."))
                active = kind_pack
            if outcome.rule in GUESSING_RULES and active is not None:
                outcome, guess = self.best_guess(task, text, active, policy, outcome, layout)
            # ``guess`` shapes the proposal only: the Decided carries no assessment, so no
            # enricher records this document (nothing learns from a guess)
            return Decided(to_decision(task, outcome, prediction, policy, guess, active=active),
                           outcome, policy, layout=layout, text=text)
        assert active is not None
        try:
            return replace(await self.decide_with_pack(task, text, prediction, active, policy,
                                                       note, layout), text=text)
        except ModelUnavailable as exc:
            if testing is not None:
                raise
            return self._unavailable(task, policy, str(exc), prediction, layout, text, active)

    def best_guess(self, task: TaskEnvelope, text: str, active: ActivePack, policy: Policy,
                   outcome: Outcome, layout: DocumentLayout | None = None
                   ) -> tuple[Outcome, Assessment | None]:
        """A routing rule escalated (``low_confidence``, ``kind_mismatch``) and the label the
        proposal acts on has a pack: read the document with that pack's extractor (as
        :meth:`decide_with_pack` does, on the layout too; no enrichers, scorers or table), so
        the reviewer gets the fields to check and correct, the withheld ones are masked in the
        document they see, and an approval runs the plan with every declared field. The
        escalation keeps its rule, reason and explanation and takes the pack's review routing
        (reviewer group, priority, SLA, four eyes; its queue, else the tenant's). A document
        the pack does not read (content type) or cannot read (its extractor fails) is
        proposed as before, without fields."""
        pack = active.pack
        if (task.document.content_type or "text/plain") not in pack.content_types:
            return outcome, None
        try:
            extraction = run_extractor(extractor_of(pack), text, layout)
            raw = {name: f.value for name, f in extraction.fields.items()}
        except Exception:  # noqa: BLE001 - a pack's Python must not stop the service
            # logged as every exception is: its type and frames, never its message
            # (switchyard._telemetry.exception_outline), which may quote the document
            log.exception("pack %s %s failed on a document it was guessed for", pack.name,
                          pack.version)
            return outcome, None
        review = pack.review
        routed = replace(outcome, priority=min(outcome.priority, review.priority_bucket),
                         **_routing(review, policy, active.params))
        return routed, Assessment(active, extraction, raw)

    async def decide_with_pack(self, task: TaskEnvelope, text: str, prediction: Prediction,
                               active: ActivePack, policy: Policy, note: str = "",
                               layout: DocumentLayout | None = None,
                               edits: Mapping[str, str] | None = None) -> Decided:
        """The pack's stage: extract (on ``layout`` too, for a PDF or an image), enrich, score,
        run the decision table. ``edits`` (a reviewer's, :meth:`reconsider`) replace what the
        extractor read before anything else sees the fields. Raises
        ModelUnavailable (a scorer's model away) and Overloaded (a batcher full); errors
        reading the tenant's records (PostgreSQL) propagate, as transient."""
        pack, params = active.pack, active.params
        bucket = task_bucket(task)
        content_type = task.document.content_type or "text/plain"
        if content_type not in pack.content_types:
            outcome = Outcome("escalate", CONTENT_TYPE_RULE,
                              f"{note}Pack {pack.name} {pack.version} reads "
                              f"{', '.join(pack.content_types)}, not {content_type}; a person "
                              "decides.", prediction.confidence, pack.name, "OTHER",
                              priority=bucket)
            return Decided(to_decision(task, outcome, prediction, policy, active=active),
                           outcome, policy, layout=layout)
        try:
            # with layout= when the extractor takes it (text-only extractors keep working)
            extraction = run_extractor(extractor_of(pack), text, layout)
            if edits:
                extraction = with_edits(extraction, edits, pack)
            raw = {name: f.value for name, f in extraction.fields.items()}
            history = await self.enrichers.enrich(pack.enrichers, task, extraction, params)
            vectors = [(scorer, features_for(scorer.features)(extraction, history, task))
                       for scorer in pack.scorers]
        except (ModelUnavailable, Overloaded, OSError, asyncpg.PostgresError,
                asyncpg.InterfaceError):
            raise  # transient: the caller retries (Kafka path) or answers UNAVAILABLE
        except Exception as exc:  # noqa: BLE001 - a pack's Python must not stop the service
            # logged as every exception is: its type and frames, never its message
            # (switchyard._telemetry.exception_outline), which may quote the document
            log.exception("pack %s %s failed on a document", pack.name, pack.version)
            outcome = Outcome("escalate", PACK_ERROR_RULE,
                              f"{note}Pack {pack.name} {pack.version} could not read this "
                              f"document ({type(exc).__name__}); a person decides.",
                              prediction.confidence, pack.name, "OTHER", priority=bucket)
            return Decided(to_decision(task, outcome, prediction, policy, active=active),
                           outcome, policy, layout=layout)
        outputs = []
        scores: dict[str, float] = {}
        if vectors and self.scorers is None:
            raise ModelUnavailable("no scorer models configured")
        for scorer, vector in vectors:
            assert self.scorers is not None
            p = await self.scorers.score(scorer.name, scorer.output_class, vector,
                                         task.tenant_id, bucket)
            outputs.append(p)
            scores[scorer.name] = p.confidence
        context = {
            "fields": typed_fields(raw, pack.field_types),
            "metadata": dict(task.metadata),
            "task": {"task_id": task.task_id, "tenant_id": task.tenant_id, "kind": task.kind},
            "params": dict(params),
            "route": {"label": prediction.label, "confidence": prediction.confidence},
            "scores": scores,
            "extraction": {"confidence": float(extraction.confidence),
                           "issues": list(extraction.issues)},
            "history": history,
        }
        outcome = table_outcome(pack, context, policy, bucket, note)
        assessment = Assessment(active, extraction, raw, tuple(outputs),
                                {scorer.name: tuple(float(v) for v in vector)
                                 for scorer, vector in vectors})
        return Decided(to_decision(task, outcome, prediction, policy, assessment), outcome,
                       policy, assessment, layout)

    async def reconsider(self, task: TaskEnvelope, proposed: Decision,
                         edits: Mapping[str, str]) -> Decided | None:
        """What the pack that made (or would have run) ``proposed`` decides once its fields
        read as a reviewer edited them (DecisionService.ReconsiderEdits): the document is read
        again and the edits replace what the extractor read; enrichers, scorers and the
        decision table run as for a new task, on the route ``proposed`` took (a person
        confirmed the type by approving it, so the router is not asked again). None when the
        tenant has no such pack enabled. Nothing is stored: the caller only judges the
        outcome, and the monitors (shadow, drift, canary) do not count it as traffic.
        Raises ModelUnavailable, Overloaded and UnreadableDocument."""
        active = self.catalog.for_tenant(task.tenant_id).get(proposed.pack or proposed.label)
        if active is None:
            return None
        policy = self.policies.for_tenant(task.tenant_id)
        token = DECIDING.set(Deciding(task.task_id, persist=False, testing=True))
        try:
            read = await self.reader.read(task) if self.reader is not None else None
            routed = [m for m in proposed.models if m.label == proposed.label]
            prediction = Prediction(
                model_name=routed[0].model_name if routed else "", label=active.pack.name,
                model_version=routed[0].model_version if routed else "",
                confidence=max((m.confidence for m in routed), default=1.0))
            return await self.decide_with_pack(
                task, document_text(task, read), prediction, active, policy,
                layout=read.layout if read is not None else None, edits=edits)
        finally:
            DECIDING.reset(token)

    async def test_case(self, task: TaskEnvelope, active: ActivePack) -> Decided:
        """Decide a golden case (PackService.TestPack) the way a task submitted with the
        pack's name as its kind is decided, with ``active`` standing in for the tenant's pack
        of that name: the router and the tenant's routing policy first (so a case may expect
        ``low_confidence`` or ``kind_mismatch``), then the pack. Nothing is stored."""
        return await self.assess(task, testing=active)

    def _unavailable(self, task: TaskEnvelope, policy: Policy, reason: str,
                     prediction: Prediction | None = None,
                     layout: DocumentLayout | None = None, text: str | None = None,
                     active: ActivePack | None = None) -> Decided:
        """A person decides what the models could not. The type is known when the router
        routed it before a scorer failed (``active``) or the submitter named one of the
        tenant's packs: then the proposal is that pack's, read by its extractor where the
        text is there (as :meth:`best_guess` reads an unsure router's guess), so the reviewer
        checks its fields and an approval runs its plan; without a known type it has no plan,
        and the console says an approval runs nothing."""
        if active is None and task.kind:
            active = self.catalog.for_tenant(task.tenant_id).get(task.kind)
        outcome = unavailable(active.pack.name if active is not None else task.kind, reason,
                              task_bucket(task))
        guess = None
        if active is not None and text is not None:
            outcome, guess = self.best_guess(task, text, active, policy, outcome, layout)
        return Decided(to_decision(task, outcome, prediction, policy, guess, active=active),
                       outcome, policy, layout=layout)


__all__ = ["CONTENT_TYPE_RULE", "GUESSING_RULES", "PACK_ERROR_RULE", "SIGNATURE_MODEL",
           "SUBMITTED_KIND_MODEL",
           "UNREADABLE_RULE", "Assessment", "Decided", "DecisionEngine", "Overloaded",
           "TableResult", "document_text", "run_table", "signature_match", "table_outcome",
           "to_decision", "with_edits"]
