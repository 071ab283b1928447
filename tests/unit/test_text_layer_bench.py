"""bench/text_layer_bench.py: both readers run over the same outside PDFs and are counted
alike (figures only, no timing asserted)."""

from __future__ import annotations

from bench import text_layer_bench


def test_both_readers_read_the_same_pages_and_are_compared() -> None:
    paths = sorted(text_layer_bench.OUTSIDE.rglob("*.pdf"))[:4]
    result = text_layer_bench.measure(paths, max_pages=3, rounds=1)
    assert result["documents"] == 4 and result["pages"] >= 4
    assert set(result["cpu_ms_per_page"]) == {"reader", "pdfminer"}
    assert all(ms > 0 for ms in result["cpu_ms_per_page"].values())
    assert result["text_layer_pages"]["reader"] > 0
    assert result["pdfminer_over_reader"] > 0
