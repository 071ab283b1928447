"""Declared ranges: a process refuses a setting outside its range, naming the variable."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

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
    "SWITCHYARD_LOG_LEVEL": ("LOUD", "one of DEBUG, INFO, WARNING, ERROR"),
    "SWITCHYARD_LOG_FORMAT": ("xml", "one of json, text"),
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


#: A malformed value of each setting with a grammar, and what the refusal says. The secret
#: ones' refusals name the entry by position, never the value.
GRAMMARS = {
    "SWITCHYARD_API_KEYS": ("s3cret-key-1", "entry 0 must be 'key:tenant:role'"),
    "SWITCHYARD_INTAKE_SIGNING_KEYS": ("s3cret-key-1", "entry 0 must be 'tenant:secret'"),
    "SWITCHYARD_ENCRYPTION_KEYS": ("k1:s3cret-key-1", "key 'k1' is not valid base64"),
    "SWITCHYARD_ENCRYPTION_ACTIVE_KEY": ("k9", "names key 'k9' but "
                                               "SWITCHYARD_ENCRYPTION_KEYS is empty"),
    "SWITCHYARD_RETENTION_OVERRIDES": ("acme:soon", "entry 'acme:soon' must be 'tenant:days'"),
    "SWITCHYARD_TENANT_RATE_LIMIT": ("fast", "'fast' is not 'rate/burst'"),
    "SWITCHYARD_TENANT_WEIGHTS": ("acme:heavy", "'acme:heavy' is not 'tenant:weight'"),
}


@pytest.mark.parametrize("name", list(GRAMMARS), ids=list(GRAMMARS))
def test_a_value_its_parser_refuses_is_refused_at_start_up_in_one_line(name: str) -> None:
    """Parsed as the services parse it when the settings are read: an outside operator's
    malformed keys and limits passed `switchyard settings`, then every service of `up`
    died with a traceback after the broker, PostgreSQL and Triton had started."""
    raw, problem = GRAMMARS[name]
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: raw})
    assert name in str(caught.value) and problem in str(caught.value), str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_up_refuses_a_malformed_setting_before_starting_anything(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "switchyard", "up", "--detach"], capture_output=True,
        text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "SWITCHYARD_LOG_LEVEL": "LOUD",
                                    "SWITCHYARD_STATE_DIR": str(tmp_path / "state")})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "switchyard: invalid setting: SWITCHYARD_LOG_LEVEL='LOUD': must be one of DEBUG, "
        "INFO, WARNING, ERROR"], done.stderr
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())
