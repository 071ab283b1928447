"""Settings are declared once; the generated reference in docs/ must match them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from switchyard import Settings, SettingsError, settings_reference_markdown
from switchyard._settings import env_var

ROOT = Path(__file__).resolve().parents[2]


def test_settings_reference_is_current() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == settings_reference_markdown(), (
        "docs/settings.md is stale: run `make docs`")


def test_every_setting_is_documented_with_env_var_and_default() -> None:
    reference = settings_reference_markdown()
    for field in dataclasses.fields(Settings):
        assert field.metadata["doc"], f"{field.name} has no doc"
        assert f"`{env_var(field.name)}`" in reference


def test_env_values_are_parsed_by_type() -> None:
    settings = Settings.from_env({
        "SWITCHYARD_KAFKA_PARTITIONS": "12",
        "SWITCHYARD_BATCH_MAX_DELAY_MS": "2.5",
        "SWITCHYARD_STATE_DIR": "/tmp/x",
        "SWITCHYARD_LOG_LEVEL": "DEBUG",
    })
    assert settings.kafka_partitions == 12
    assert settings.batch_max_delay_ms == 2.5
    assert settings.state_dir == Path("/tmp/x")
    assert settings.log_level == "DEBUG"
    assert Settings.from_env({}).bind_host == "127.0.0.1"


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="SWITCHYARD_KAFKA_PARTITIONS='many'"):
        Settings.from_env({"SWITCHYARD_KAFKA_PARTITIONS": "many"})


def test_to_env_round_trips() -> None:
    settings = Settings(kafka_topic_prefix="t1.", review_web_port=9999)
    assert Settings.from_env(settings.to_env()) == settings


def test_secrets_are_not_printed_in_reference() -> None:
    reference = settings_reference_markdown()
    assert "SWITCHYARD_KAFKA_SASL_PASSWORD` | str | `` |" in reference


def test_the_triton_url_follows_the_embedded_tritons_port_unless_set() -> None:
    """A command run beside a stack on moved ports (README: set each SWITCHYARD_*_PORT for
    every command) reaches that stack's Triton, not another one on the default port."""
    assert Settings.from_env({}).triton_url == "127.0.0.1:8001"
    assert Settings.from_env({"SWITCHYARD_TRITON_GRPC_PORT": "47014"}).triton_url == \
        "127.0.0.1:47014"
    assert Settings.from_env({"SWITCHYARD_TRITON_GRPC_PORT": "47014",
                              "SWITCHYARD_TRITON_URL": "triton.ml:8001"}).triton_url == \
        "triton.ml:8001"
