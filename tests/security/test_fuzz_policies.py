"""Fuzzing policy parsing: bad policy input is a PolicyError that names where, nothing else.

Decision policies are YAML files in SWITCHYARD_POLICY_DIR: Hypothesis writes random YAML-ish
text, structured documents with wrong types, deep nesting, huge numbers, anchors that expand
exponentially, injection strings and undecodable bytes, and loads them; a policy that loads
has its ``packs:`` key checked against the shipped packs, as the service does at start.
Review policies come from settings strings and numbers (rates, bursts, durations,
overrides). Either the policy loads, or the error is the module's ``PolicyError`` naming the
file and key path (decision; ``packs:`` problems are lines naming the file too) or the
environment variable (review).
"""

from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.decision.packs import PackCatalog
from services.decision.policies import _TOP, PolicySet, load_policies, parse_policy
from services.decision.policies import PolicyError as DecisionPolicyError
from services.decision.policy import Policy
from services.decision.training.features import ROUTER_CLASSES
from switchyard.packs import Pack, builtin_packs
from services.review.policies import PolicyError as ReviewPolicyError
from services.review.policies import ReviewPolicy
from switchyard import Settings

INJECTIONS = ["'; DROP TABLE x; --", "<script>", "${jndi:x}", "../../etc/passwd", "\x00",
              "!!python/object/apply:os.system ['echo pwned']", "{{7*7}}", "\u202e", "🦄" * 30]
#: The invoice pack's parameters, fuzzed through a policy file's packs key.
INVOICE_PARAMETERS = ("min_p_auto", "min_extraction_confidence", "max_auto_amount",
                      "reject_amount_over", "required_fields", "allowed_currencies",
                      "escalate_duplicates", "vendors_allow", "vendors_block",
                      "require_allow_list")
KEYS = list(_TOP) + [f"packs.invoice.parameters.{k}" for k in INVOICE_PARAMETERS] + [
    "packs.invoice.enabled", "packs.invoice.version", "packs.support_ticket.enabled"]
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats()
           | st.text(max_size=30) | st.sampled_from(INJECTIONS + list(ROUTER_CLASSES)
                                                    + ["escalate", "hold", "USD", "usd"]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4)
                      | st.dictionaries(st.one_of(st.text(max_size=12), st.sampled_from(
                          list(ROUTER_CLASSES) + ["name", "target"])), c, max_size=4),
                      max_leaves=20)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """A policy document: mostly the real keys, with values of any shape."""
    if draw(st.integers(0, 5)) == 0:
        return draw(values)
    doc: dict[Any, Any] = {}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=6)):
        *sections, last = key.split(".")
        inner: Any = doc
        for section in sections:
            inner = inner.setdefault(section, {}) if isinstance(inner, dict) else None
        if isinstance(inner, dict):
            inner[last] = draw(values)
    if draw(st.booleans()):
        doc[draw(st.one_of(st.text(max_size=10), st.integers()))] = draw(values)
    return doc


@functools.cache
def shipped() -> dict[str, Pack]:
    return builtin_packs()


def assert_packs_named(policy: Policy, source: str) -> None:
    """The packs key, checked against the shipped packs: valid, or one line per problem,
    each naming the file."""
    problems = PackCatalog(None, PolicySet(policy), builtin=shipped()).check_policy_files()
    assert all(line.startswith(f"{source}: packs: ") and "\n" not in line
               for line in problems), problems


def assert_named(exc: Exception, source: str) -> None:
    message = str(exc)
    assert source in message, message
    for line in message.splitlines()[1:]:  # one problem a line: "<file>: <key path>: <why>"
        assert line.strip().startswith(source), message


@FUZZ
@given(document=documents())
def test_parse_policy_accepts_or_names_file_and_key(document: Any) -> None:
    try:
        policy = parse_policy(document, "acme.yaml")
    except DecisionPolicyError as exc:
        assert_named(exc, "acme.yaml")
        return
    assert isinstance(policy, Policy)
    assert all(0 <= t <= 1 for t in policy.label_thresholds.values())
    assert_packs_named(policy, "acme.yaml")


def yaml_text(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, default_flow_style=False)


yaml_texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["a:", " b: 1", "- x", "[", "]", "{", "}", ": :", "&x [1]", "*x",
                              "*nope", "!!binary AAAA", "!!python/name:os.system", "---",
                              "...", "? [a]", "\t", "'", '"', "%YAML 1.1", "<<: *x", "\\x00",
                              "auto_execute_threshold: ", "packs:", "  invoice:",
                              "    parameters:", "      max_auto_amount: ",
                              ".nan", ".inf", "1e999", "0x" + "f" * 40, "9" * 5000]),
             max_size=25).map("\n".join),
    documents().map(yaml_text),
)


def load_text(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "acme.yaml"
        path.write_bytes(content)
        try:
            policies = load_policies(directory)
        except DecisionPolicyError as exc:
            assert_named(exc, str(path))
            return
        assert isinstance(policies.for_tenant("acme"), Policy)
        assert_packs_named(policies.for_tenant("acme"), str(path))


@FUZZ
@given(text=yaml_texts, garble=st.one_of(st.none(), st.binary(min_size=1, max_size=8)))
def test_policy_files_load_or_fail_naming_the_file(text: str, garble: bytes | None) -> None:
    content = text.encode("utf-8", "surrogatepass")
    if garble is not None:  # undecodable bytes somewhere in the file
        content = content[:len(content) // 2] + b"\xff" + garble + content[len(content) // 2:]
    load_text(content)


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


@pytest.mark.parametrize("content, fragment", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"auto_execute_threshold: " + b"9" * 5000, "not valid YAML"),
    (b"review_queue: \xff\xfe", "not UTF-8"),
    ((LAUGHS + "auto_execute_threshold: *i\n").encode(), "auto_execute_threshold"),
    (b"label_thresholds:\n  invoice: .nan\n", "label_thresholds.invoice"),
    (b"\x00", "not valid YAML"),
])
def test_hostile_policy_files_are_policy_errors(content: bytes, fragment: str) -> None:
    """Each of these escaped as another exception, hung (an exponential repr of a YAML
    alias bomb) or loaded silently (NaN) before."""
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "acme.yaml").write_bytes(content)
        with pytest.raises(DecisionPolicyError, match="acme.yaml") as caught:
            load_policies(directory)
        assert fragment in str(caught.value)


# -- review policies (settings) ------------------------------------------------------------

numbers = st.one_of(st.floats(), st.integers(-10**6, 10**6).map(float),
                    st.sampled_from([0.0, -1.0, 1e308, math.inf, -math.inf, math.nan, 1e-300]))
ints = st.one_of(st.integers(-10**6, 10**6), st.integers(-2**63, 2**63))
spec_texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.tuples(st.text(max_size=8), st.sampled_from(["nan", "inf", "-1", "1e400", "0",
                                                             "5", "1" * 5000, "x", ""]),
                       st.sampled_from(["1", "0", "-3", "9" * 30, "x", ""]),
                       st.sampled_from(["0", "10", "-1", "x"])), max_size=4).map(
        lambda es: ",".join(":".join(e) for e in es)),
    st.lists(st.tuples(st.sampled_from(["*", "acme", "", "q"]), st.sampled_from(
        ["approve", "reject", "fail", "reassign", "default_action", "", "x:y"])), max_size=4)
    .map(lambda es: ",".join(":".join(e) for e in es)),
)


NASTY_SETTINGS = {
    "review_tenant_rate": numbers, "review_tenant_burst": ints, "review_queue_rate": numbers,
    "review_queue_burst": ints, "review_queue_max_open": ints,
    "review_expiry_policy": st.sampled_from(["reassign", "default_action", "fail", "", "x"]),
    "review_storm_priority": ints, "review_reassign_extension_s": numbers,
    "review_sla_bump_s": numbers, "review_storm_after_s": numbers,
    "review_default_lease_s": numbers, "review_queue_overrides": spec_texts,
    "review_queue_expiry": spec_texts, "review_default_actions": spec_texts,
}


@st.composite
def review_settings(draw: st.DrawFn) -> Settings:
    """The defaults with one to three review settings replaced by hostile values."""
    names = draw(st.lists(st.sampled_from(sorted(NASTY_SETTINGS)), min_size=1, max_size=3,
                          unique=True))
    return Settings().replace(**{name: draw(NASTY_SETTINGS[name]) for name in names})


@FUZZ
@given(candidate=review_settings())
def test_review_policy_accepts_or_names_the_variable(candidate: Settings) -> None:
    try:
        policy = ReviewPolicy.from_settings(candidate)
    except ReviewPolicyError as exc:
        assert "SWITCHYARD_REVIEW_" in str(exc), str(exc)
        return
    for limit in (policy.tenant_limit, policy.queue_default.bucket,
                  *(q.bucket for q in policy.queue_overrides.values())):
        assert math.isfinite(limit.rate) and limit.rate >= 0
    assert policy.default_lease.total_seconds() >= 0
