"""The benchmarks' pure parts: the seeded workload, invoice renumbering, percentiles and the
py-spy summary (the benchmarks themselves run with `make bench`, not in the suite)."""

from __future__ import annotations

from bench._common import percentile_ms, summarise_folded
from bench.ceiling import Ceiling
from bench.e2e_bench import Pool, load_docs, unique_invoice, workload
from switchyard_packs.invoice.extraction import extract_invoice


def pool() -> Pool:
    docs = load_docs()
    automated = [i for i, d in enumerate(docs) if d["label"] != "invoice"]
    return Pool(docs, automated)


def test_workload_is_seeded_and_has_the_asked_for_mix() -> None:
    items = workload(4000, seed=3, pool=pool())
    again = workload(4000, seed=3, pool=pool())
    assert [i.submission.SerializeToString() for i in items] == \
        [i.submission.SerializeToString() for i in again]
    escalated = sum(i.escalate for i in items) / len(items)
    invalid = sum(i.invalid for i in items) / len(items)
    assert 0.17 < escalated < 0.23 and 0.08 < invalid < 0.12
    valid = [i for i in items if not i.invalid]
    assert 0.15 < sum(i.via_kafka for i in valid) / len(valid) < 0.25
    assert not any(i.via_kafka for i in items if i.invalid)
    assert len({i.key for i in items}) == len(items)
    automated = {d["text"] for d in pool().docs if d["label"] != "invoice"}
    assert all(i.submission.document.body.decode() in automated
               for i in items if not (i.escalate or i.invalid))
    # escalations are submitted under a kind other than the document's own
    labels = {d["text"]: d["label"] for d in pool().docs}
    for item in items:
        if item.escalate and item.submission.document.body.decode() in labels:
            assert item.submission.kind != labels[item.submission.document.body.decode()]


def test_unique_invoice_changes_only_the_invoice_number() -> None:
    invoices = [d["text"] for d in load_docs() if d["label"] == "invoice"]
    changed = 0
    for text in invoices[:60]:
        number = extract_invoice(text).get("invoice_number")
        renumbered = unique_invoice(text, 4242)
        if number and sum(c.isdigit() for c in number) >= 4:
            new_number = extract_invoice(renumbered).get("invoice_number")
            assert new_number != number and len(new_number or "") == len(number)
            assert renumbered.replace(new_number or "", number) == text
            changed += 1
        else:
            assert renumbered == text
    assert changed > 30
    text = invoices[0]
    assert unique_invoice(text, 1) != unique_invoice(text, 2)


def test_percentile_is_nearest_rank_in_ms() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentile_ms(values, 0.5) == 51.0
    assert percentile_ms(values, 0.99) == 100.0
    assert percentile_ms([], 0.5) == 0.0


def test_summarise_folded_ranks_self_and_inclusive_time() -> None:
    folded = "\n".join([
        "process 1:\"python\";thread (0x1);main (app.py:1);handle (svc.py:10);execute "
        "(/x/site-packages/asyncpg/connection.py:5) 6",
        "process 1:\"python\";thread (0x1);main (app.py:1);handle (svc.py:12);encode "
        "(serde.py:3) 3",
        "process 1:\"python\";thread (0x1);main (app.py:1) 1",
    ])
    summary = summarise_folded(folded)
    assert summary["samples"] == 10
    assert summary["self_pct"][0] == ("execute (asyncpg/connection.py)", 60.0)
    inclusive = dict(summary["inclusive_pct"])
    assert inclusive["main (app.py)"] == 100.0
    assert inclusive["handle (svc.py)"] == 90.0  # two lines of one function, merged


def test_the_ceiling_adds_up_each_parts_share_of_a_task() -> None:
    ceiling = Ceiling(triton_rows_per_s=5000, db_tasks_per_s=2000,
                      downstream_calls_per_s=1000, hops_tasks_per_s=1000,
                      rows_per_task=1.0, calls_per_task=2.0)
    # 0.2 ms + 0.5 ms + 2 ms + 1 ms a task
    assert ceiling.seconds_per_task == {"inference": 0.0002, "database": 0.0005,
                                        "downstream": 0.002, "hops": 0.001}
    assert ceiling.tasks_per_s == round(1 / 0.0037, 1)
    without_hops = Ceiling(5000, 2000, 1000, 0.0, 1.0, 2.0)
    assert without_hops.tasks_per_s == round(1 / 0.0027, 1)
