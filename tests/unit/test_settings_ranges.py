"""Declared ranges: a process refuses a setting outside its range, naming the variable."""

from __future__ import annotations

import dataclasses

import pytest

from switchyard import Settings, SettingsError
from switchyard._settings import out_of_range

CASES = {
    "SWITCHYARD_BATCH_MAX_SIZE": ("0", ">= 1"),
    "SWITCHYARD_AUTO_EXECUTE_THRESHOLD": ("1.5", "<= 1"),
    "SWITCHYARD_TRITON_TIMEOUT_S": ("0", "> 0"),
    "SWITCHYARD_REVIEW_EXPIRY_POLICY": ("shrug", "one of reassign, default_action, fail"),
    "SWITCHYARD_OTEL_EXPORTER": ("zipkin", "one of none, console, otlp, jsonl"),
    "SWITCHYARD_REVIEW_STORM_PRIORITY": ("4", "<= 3"),
}


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_a_value_outside_the_range_is_refused(name: str) -> None:
    raw, problem = CASES[name]
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: raw})
    assert str(caught.value) == f"{name}={raw!r}: must be {problem}"


def test_values_at_the_edges_are_accepted() -> None:
    settings = Settings.from_env({"SWITCHYARD_BATCH_MAX_SIZE": "1",
                                  "SWITCHYARD_AUTO_EXECUTE_THRESHOLD": "1",
                                  "SWITCHYARD_REVIEW_TENANT_RATE": "0",
                                  "SWITCHYARD_INGEST_METRICS_PORT": "0"})
    assert settings.batch_max_size == 1 and settings.review_tenant_rate == 0


def test_every_default_is_inside_its_own_range() -> None:
    for f in dataclasses.fields(Settings):
        assert out_of_range(f, f.default) is None, f.name
