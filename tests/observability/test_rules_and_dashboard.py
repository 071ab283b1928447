"""Alert rules and the Grafana dashboard are checked by promtool and against the code.

Every ``switchyard_*`` metric a rule or panel queries must be one the code exports, so a
renamed metric cannot silently blank a panel or disarm an alert.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "helm" / "files" / "switchyard-rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "switchyard-dashboard.json"
METRIC = re.compile(r"\bswitchyard_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool missing: `make setup` installs Debian's prometheus package"
    return found


def exported_metrics() -> set[str]:
    names = set()
    for path in [*ROOT.glob("switchyard/*.py"), *ROOT.glob("services/**/*.py")]:
        names.update(re.findall(r'"(switchyard_[a-z0-9_]+)"', path.read_text()))
    return names


def base_name(metric: str, exported: set[str]) -> str:
    for suffix in SUFFIXES:
        if metric.endswith(suffix) and metric[: -len(suffix)] in exported:
            return metric[: -len(suffix)]
    return metric


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_rules_pass_promtool_check_and_unit_tests() -> None:
    check = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([promtool(), "test", "rules", "rules_test.yaml"],
                          cwd=Path(__file__).parent, capture_output=True, text=True, timeout=60)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(dashboard_exprs())]}]}
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    check = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_queried_metric_is_exported_by_the_code(source: str) -> None:
    exported = exported_metrics()
    text = RULES.read_text() if source == "rules" else "\n".join(dashboard_exprs())
    queried = {base_name(m, exported) for m in METRIC.findall(text)}
    missing = sorted(queried - exported)
    assert not missing, f"{source} query metrics no code exports: {missing}"


def test_dashboard_covers_system_model_and_business_views() -> None:
    titles = " ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("latency", "lag", "throughput", "breaker", "drift", "batch", "automation",
                  "escalations", "cost", "time saved", "error"):
        assert topic in titles, f"no panel about {topic}"
