"""Signals integration fixtures: the real ingest process (as tests/ingest starts it), with API
keys on, a short consent refresh and encryption at rest (the ingest stub and the PostgreSQL
connection are tests/conftest.py's)."""

from __future__ import annotations

import base64

import pytest

from switchyard import Settings
from tests.ingest.conftest import ingest_process  # noqa: F401 (fixtures)

KEYS = {"acme-admin": ("acme", "admin"), "acme-audit": ("acme", "auditor"),
        "acme-sub": ("acme", "submitter"), "globex-admin": ("globex", "admin"),
        "ops": ("*", "admin")}
REFRESH_S = 0.5


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(
        api_keys=",".join(f"{k}:{t}:{r}" for k, (t, r) in KEYS.items()),
        client_api_key="acme-admin", signal_consent_refresh_s=REFRESH_S,
        encryption_keys=f"k1:{base64.b64encode(b'signals-test-key' * 2).decode()}",
        encryption_active_key="k1")
