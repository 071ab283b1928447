"""The demo downstream's generated code matches its proto."""

from services.executor.downstream import _protogen


def test_ledger_generated_code_is_current() -> None:
    assert _protogen.stale() == [], "run: python -m services.executor.downstream._protogen"
