"""Per-tenant YAML policies: loading, inheritance, and errors that name file, key and value.

Business rules (the invoice limits, vendor lists, plans) are pack parameters now: a policy
file keeps the routing keys and a ``packs:`` key (tests/decision/test_invoice_pack.py covers
the invoice pack's rules)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.decision.packs import PackCatalog
from services.decision.policies import PolicyError, load_policies, parse_policy
from services.decision.policy import Policy
from tests.decision.documents import ROOT


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_empty_setting_means_built_in_defaults() -> None:
    policies = load_policies("", Policy(auto_execute_threshold=0.7))
    assert policies.for_tenant("anyone").auto_execute_threshold == 0.7


def test_tenants_inherit_from_default_yaml(tmp_path: Path) -> None:
    write(tmp_path, {
        "default.yaml": "auto_execute_threshold: 0.9\n"
                        "packs: {invoice: {parameters: {max_auto_amount: 5000}}}\n",
        "acme.yaml": "review_queue: finance\nlabel_thresholds: {expense_claim: 0.7}\n"
                     "packs: {invoice: {parameters: {min_p_auto: 0.95}}}\n",
        "beta2.yaml": "packs: {support_ticket: {enabled: false}}\n",
        "notes.txt": "ignored",
    })
    policies = load_policies(tmp_path)
    acme, other = policies.for_tenant("acme"), policies.for_tenant("beta")
    assert (acme.auto_execute_threshold, acme.review_queue) == (0.9, "finance")
    assert acme.label_thresholds == {"expense_claim": 0.7}  # any well-formed type name
    assert (other.review_queue, other.auto_execute_threshold) == ("default", 0.9)
    # the packs key is the tenant's pack settings: parameters reach the invoice pack
    catalog = PackCatalog(None, policies)
    assert catalog.check_policy_files() == []
    acme_invoice = catalog.for_tenant("acme").get("invoice")
    beta_invoice = catalog.for_tenant("beta").get("invoice")
    assert acme_invoice is not None and beta_invoice is not None
    assert acme_invoice.params["min_p_auto"] == 0.95
    assert beta_invoice.params["max_auto_amount"] == 5000
    # a tenant's settings for a pack replace default.yaml's for that pack, not for the others
    assert acme_invoice.params["max_auto_amount"] == 50000
    assert beta_invoice.params["min_p_auto"] == 0.8  # the pack's default
    beta2 = catalog.for_tenant("beta2")
    assert beta2.get("support_ticket") is None  # its own setting ...
    assert beta2.get("invoice").params["max_auto_amount"] == 5000  # ... default.yaml's others


def test_a_packs_key_with_mistakes_is_named_per_line(tmp_path: Path) -> None:
    write(tmp_path, {"acme.yaml": "packs:\n  invoice: {parameters: {max_auto_amount: -5, "
                                  "colour: blue}}\n  purchase_order: {enabled: true}\n"})
    problems = PackCatalog(None, load_policies(tmp_path)).check_policy_files()
    assert len(problems) == 3, problems
    assert all(line.startswith(f"{tmp_path / 'acme.yaml'}: packs: ") for line in problems)
    text = "\n".join(problems)
    assert "max_auto_amount" in text and "colour" in text and "purchase_order" in text


def test_the_helm_charts_default_policy_is_valid() -> None:
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
    for tenant, document in values["policies"].items():
        policy = parse_policy(document, f"values.yaml policies.{tenant}")
        assert policy.reject_labels == {"other"}


@pytest.mark.parametrize(("text", "message"), [
    ("auto_execute_threshold: 1.5", "auto_execute_threshold: must be a number between 0 and 1, got 1.5"),
    ("auto_execute_treshold: 0.9", "auto_execute_treshold: unknown key (allowed: auto_execute_threshold"),
    ("reject_labels: [Spam Mail]", "reject_labels: not a document type name 'Spam Mail'"),
    ("label_thresholds: {Memo!: 0.5}", "label_thresholds.Memo!: not a document type name"),
    ("label_thresholds: {memo: 2}", "label_thresholds.memo: must be a number between 0 and 1"),
    ("on_model_unavailable: wait", "on_model_unavailable: must be one of escalate, hold, got 'wait'"),
    # business rules and plans moved into packs: the old keys are unknown now
    ("invoice: {max_auto_amount: 10}", "invoice: unknown key (allowed: auto_execute_threshold"),
    ("plans: {invoice: []}", "plans: unknown key"),
    ("vendors: {block: [x]}", "vendors: unknown key"),
    ("packs: [invoice]", "packs: must be a mapping of pack name -> settings"),
    ("- a list", "(top level): must be a mapping"),
])
def test_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(yaml.safe_load(text), "acme.yaml")
    assert f"acme.yaml: {message}" in str(caught.value)


def test_a_directory_with_mistakes_is_refused_whole(tmp_path: Path) -> None:
    write(tmp_path, {"good.yaml": "review_queue: ok\n", "bad.yaml": "reject_threshold: high\n",
                     "broken.yaml": "packs: [\n", "bad name!.yaml": "{}\n"})
    with pytest.raises(PolicyError) as caught:
        load_policies(tmp_path)
    text = str(caught.value)
    assert "bad.yaml: reject_threshold: must be a number between 0 and 1, got 'high'" in text
    assert "broken.yaml: not valid YAML" in text
    assert "bad name!.yaml: file name must be <tenant>.yaml" in text
    with pytest.raises(PolicyError, match="does not exist"):
        load_policies(tmp_path / "missing")
