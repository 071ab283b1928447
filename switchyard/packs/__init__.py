"""Automation packs: a document type's whole automation declared in one folder.

A pack (``pack.yaml`` plus optional ``examples.jsonl`` and golden tests) says what a document
type is, which fields to extract, which models decide, a decision table (CEL conditions, first
hit or collect), a plan (templated calls with retries, compensation, conditions, parallel
blocks, human approvals and durable waits), review routing and retention. This package loads
and validates packs (one line per mistake), parses tenant settings, compiles and evaluates the
expressions (shared by the decision service and the executor), extracts fields with the
built-in ``labels`` extractor (from text, an HL7 v2 message's fields by position, or from a
document's layout with each value's provenance), and turns a plan into the ActionPlan
protobuf. It imports no service. The packs Switchyard ships live in the
``switchyard_packs`` package. See docs/packs.md.
"""

from switchyard.packs import _expressions as expressions
from switchyard.packs._entrypoints import GROUPS, EntryPointError, entry_point, is_declared
from switchyard.packs._expressions import (
    DECISION_VARIABLES,
    DISCREPANCY_KEYS,
    PLAN_VARIABLES,
    Activation,
    Condition,
    ExpressionError,
    Names,
    Template,
    as_text,
    compile_condition,
    discrepancy_maps,
    evaluate_condition,
    template_parts,
    typed_fields,
    typed_value,
)
from switchyard.packs._extract import (
    ExtractedField,
    Extraction,
    Extractor,
    accepts_layout,
    extract_fields,
    parse_date,
    extractor_for,
    parse_value,
    placement_factor,
    run_extractor,
)
from switchyard.packs._hl7 import Hl7Field, hl7_field_around, hl7_fields, is_hl7_position
from switchyard.packs._loader import (
    ENGINE_RULES,
    MAX_PACK_BYTES,
    MIN_RETRY_LATER_S,
    PACKS_GROUP,
    builtin_packs,
    load_pack,
    load_pack_files,
    parse_duration,
    read_pack_folder,
    validate_pack_files,
)
from switchyard.packs._model import (
    NO_RULE_MATCHED,
    Compensation,
    FieldSpec,
    FairnessSpec,
    GoldenCase,
    Pack,
    PackError,
    ParamSpec,
    ReviewSpec,
    RuleSpec,
    ScorerSpec,
    StepApproval,
    StepSpec,
    StepWait,
)
from switchyard.packs._plan import plan_to_proto, step_id, with_params
from switchyard.packs._schema import pack_schema, tenant_settings_schema
from switchyard.packs._tenant import (
    TenantPackSettings,
    TenantSettings,
    parameter_problems,
    parse_tenant_settings,
    resolve_parameters,
    tenant_settings_from_object,
)

__all__ = [
    "DECISION_VARIABLES", "DISCREPANCY_KEYS", "ENGINE_RULES", "GROUPS", "MAX_PACK_BYTES",
    "MIN_RETRY_LATER_S",
    "NO_RULE_MATCHED", "PACKS_GROUP",
    "PLAN_VARIABLES", "Activation", "Compensation", "Condition", "EntryPointError", "ExpressionError",
    "ExtractedField", "Extraction", "Extractor", "accepts_layout", "as_text", "extract_fields",
    "extractor_for", "discrepancy_maps", "parse_date", "parse_value", "placement_factor",
    "run_extractor", "Hl7Field", "hl7_field_around", "hl7_fields", "is_hl7_position",
    "FairnessSpec", "FieldSpec", "GoldenCase", "Names", "Pack", "PackError", "ParamSpec", "ReviewSpec",
    "RuleSpec", "ScorerSpec", "StepApproval", "StepSpec", "StepWait", "Template",
    "TenantPackSettings", "TenantSettings", "builtin_packs", "compile_condition",
    "entry_point", "evaluate_condition", "expressions", "is_declared", "load_pack",
    "load_pack_files", "pack_schema", "parameter_problems", "parse_duration",
    "parse_tenant_settings", "plan_to_proto", "read_pack_folder", "resolve_parameters",
    "step_id", "template_parts", "tenant_settings_from_object", "tenant_settings_schema",
    "typed_fields", "typed_value", "validate_pack_files", "with_params",
]
