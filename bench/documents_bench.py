"""Accuracy on documents: per-field accuracy for text PDFs, clean scans and degraded scans.

``python -m bench --only documents`` (or ``python -m bench.documents_bench``) generates the
evaluation set (:mod:`bench.evalset`: invoices with known values, drawn by reportlab and
printed by chromium, several layouts and fonts, rasterised and degraded), starts the decision
service against the embedded broker, PostgreSQL and Triton, and sends every document through
``DecisionService.Decide``: the same path a submitted task takes after ingest (text layer
read directly, pages without one through the OCR model on Triton, the invoice pack's
extraction on the layout). Each extracted field is compared with the true value; the tables
give accuracy per field and category, per renderer and per degradation, and how many
extracted fields carry a provenance (page and box).

``--corpus DIR`` evaluates documents from elsewhere instead (a ``manifest.jsonl`` beside the
files, see :func:`bench.evalset.load_set`); ``bench/outside`` is such a set, of documents this
project's generators did not make (see its README). ``--route`` submits every document
without a kind, as an upstream system that does not know what it sent: the router names the
type, and the report scores that against each document's ``kind``. ``--save DIR`` keeps the
generated set for inspection or for another tool. Several documents are in flight at once (``--concurrency``),
so the decision service's micro-batcher batches their OCR pages as it does in production.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from bench._common import (
    RESULTS, Pipeline, isolated, percentile_ms, print_table, quick_mode, setting_changes,
    standalone, write_json)
from bench.evalset import CATEGORIES, SCORED_FIELDS, EvalDocument, generate, load_set, score, \
    write_set
from services.decision.engine import GUESSING_RULES
from switchyard import Settings

TENANT = "eval"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few documents per category")
    p.add_argument("--seed", type=int, default=16, help="evaluation set seed (same seed, same set)")
    p.add_argument("--text-pdfs", type=int, default=20)
    p.add_argument("--clean-scans", type=int, default=12)
    p.add_argument("--degraded-scans", type=int, default=16)
    p.add_argument("--corpus", type=Path, default=None,
                   help="evaluate the documents listed in DIR/manifest.jsonl instead")
    p.add_argument("--save", type=Path, default=None, help="write the generated set to DIR")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                   help="change a setting of the decision service measured, e.g. "
                        "router_cascade_below=0 (repeatable; recorded in the JSON)")
    p.add_argument("--route", action="store_true",
                   help="submit without a kind: the router names the type (routing is scored)")
    p.add_argument("--concurrency", type=int, default=4, help="documents in flight at once")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per Decide call")
    p.add_argument("--json", type=Path, default=RESULTS / "documents.json")
    return p


def configure(args: argparse.Namespace) -> argparse.Namespace:
    if quick_mode(args.quick):
        args.quick = True
        args.text_pdfs, args.clean_scans, args.degraded_scans = 3, 2, 3
    return args


def documents_for(args: argparse.Namespace) -> list[EvalDocument]:
    if args.corpus is not None:
        return load_set(args.corpus)
    documents = generate(args.text_pdfs, args.clean_scans, args.degraded_scans, seed=args.seed)
    if args.save is not None:
        print(f"evaluation set: {write_set(documents, args.save)}")
    return documents


async def decide_all(settings: Settings, documents: list[EvalDocument], concurrency: int,
                     timeout_s: float, route: bool = False) -> list[dict[str, Any]]:
    """Decide every document through the decision service; one outcome row per document.
    ``route``: submitted without a kind (the router alone names the type), else as invoices."""
    from switchyard.rpc import create_channel
    from switchyard.v1 import (
        DecideRequest, DecisionOutcome, DecisionServiceStub, Document, LayoutSource,
        TaskEnvelope)

    channel = create_channel(f"127.0.0.1:{settings.decision_grpc_port}")
    stub = DecisionServiceStub(channel)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(document: EvalDocument) -> dict[str, Any]:
        kind = "" if route else "invoice"
        envelope = TaskEnvelope(
            task_id=str(uuid.uuid4()), tenant_id=TENANT, kind=kind,
            document=Document(content_type=document.content_type, body=document.body,
                              filename=document.filename, kind_hint=kind))
        async with gate:
            began = time.monotonic()
            try:
                decision = (await stub.Decide(DecideRequest(task=envelope),
                                              timeout=timeout_s)).decision
            except grpc.aio.AioRpcError as error:   # a refused or failed document counts
                return {"document": document, "error": f"{error.code().name}: {error.details()}",
                        "seconds": time.monotonic() - began, "fields": {}, "located": {}}
            seconds = time.monotonic() - began
        fields = {f.name: f.value for f in decision.fields}
        located = {f.name: f.HasField("provenance") and f.provenance.page > 0
                       and f.provenance.HasField("box") for f in decision.fields}
        sources = {f.name: LayoutSource.Name(f.provenance.source) for f in decision.fields
                   if f.HasField("provenance")}
        return {"document": document, "error": "", "seconds": seconds, "fields": fields,
                "located": located, "sources": sources, "label": decision.label,
                "confidence": round(decision.confidence, 3),
                "pack": decision.pack, "rule": decision.rule,
                "outcome": DecisionOutcome.Name(decision.outcome)}

    try:
        return list(await asyncio.gather(*(one(d) for d in documents)))
    finally:
        await channel.close()


def _rate(right: int, total: int) -> float | None:
    return round(right / total, 3) if total else None


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy tables from the per-document outcomes (pure: no I/O)."""
    per_category: dict[str, dict[str, list[int]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: [0, 0]))
    groups: dict[str, dict[str, list[int]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: [0, 0]))
    whole = collections.defaultdict(lambda: [0, 0])
    unread: collections.Counter[str] = collections.Counter()   # the pack never ran: by rule
    misread = collections.defaultdict(lambda: [0, 0])   # a value given, and not the true one
    located = [0, 0]
    documents = []
    for row in rows:
        document: EvalDocument = row["document"]
        marks = score(document.expected, row["fields"])
        category = document.category
        for name, right in marks.items():
            per_category[category][name][0] += right
            per_category[category][name][1] += 1
            per_category[category]["(all fields)"][0] += right
            per_category[category]["(all fields)"][1] += 1
            keys = [f"{what}={document.made[what]}" for what in ("renderer", "layout",
                                                                 "vocabulary")
                    if what in document.made]
            keys += [f"degradation={kind.split(':')[0]}"
                     for kind in document.made.get("degradations", [])]
            if document.made.get("format"):
                keys.append(f"scan_format={document.made['format']}")
            for key in keys:
                groups[f"{category} {key}"]["fields"][0] += right
                groups[f"{category} {key}"]["fields"][1] += 1
        if not row["error"] and not row.get("pack"):
            unread[f"{category}: {row.get('rule') or '?'}"] += 1
        for name, right in marks.items():
            misread[category][0] += not right and bool(row["fields"].get(name))
            misread[category][1] += 1
        whole[category][0] += all(marks.values()) and not row["error"]
        whole[category][1] += 1
        for name, value in row["fields"].items():
            if document.expected.get(name) is not None and value:
                located[0] += bool(row["located"].get(name))
                located[1] += 1
        documents.append({
            "id": document.doc_id, "category": category, "content_type": document.content_type,
            "made": document.made, "error": row["error"], "seconds": round(row["seconds"], 2),
            "kind": document.kind, "label": row.get("label", ""),
            "confidence": row.get("confidence"), "pack": row.get("pack", ""),
            "rule": row.get("rule", ""), "outcome": row.get("outcome", ""),
            "read_by": sorted(set(row.get("sources", {}).values())),
            "wrong": {name: {"expected": document.expected[name],
                             "got": row["fields"].get(name)}
                      for name, right in marks.items() if not right}})
    categories = [c for c in CATEGORIES if c in per_category] + sorted(
        set(per_category) - set(CATEGORIES))
    return {
        "accuracy": {c: {name: {"right": r, "shown": n, "accuracy": _rate(r, n)}
                         for name, (r, n) in sorted(per_category[c].items())}
                     for c in categories},
        "documents_fully_right": {c: {"right": r, "of": n, "share": _rate(r, n)}
                                  for c, (r, n) in whole.items()},
        "read_wrong": {c: {"wrong": w, "shown": n, "share": _rate(w, n)}
                       for c, (w, n) in misread.items()},
        "by_group": {g: {"right": v["fields"][0], "shown": v["fields"][1],
                         "accuracy": _rate(*v["fields"])} for g, v in sorted(groups.items())},
        "provenance": {"located": located[0], "extracted": located[1],
                       "share": _rate(*located)},
        "errors": sum(1 for row in rows if row["error"]),
        "not_extracted": dict(sorted(unread.items())),
        "routing": routing(rows),
        "documents": documents,
    }


#: Outcomes decided without a person.
WITHOUT_A_PERSON = frozenset({"DECISION_OUTCOME_AUTO_EXECUTE", "DECISION_OUTCOME_REJECT"})


def routing(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per document kind (documents with one): how many the router named right, how many went
    to a person to confirm the type, how many were routed wrong with no person asked; and how
    many were decided without a person at all (carried out or refused), and of those how many
    a person would have decided otherwise: another type, or a field read wrong (a value that
    is not the true one)."""
    counted = ("documents", "named_right", "asked_a_person", "routed_wrong_unasked",
               "automated", "automated_wrongly")
    per_kind: dict[str, dict[str, int]] = collections.defaultdict(dict.fromkeys(counted, 0).copy)
    for row in rows:
        kind = row["document"].kind
        if kind is None or row["error"]:
            continue
        counts = per_kind[kind]
        counts["documents"] += 1
        counts["named_right"] += row.get("label") == kind
        # the routing policy's escalations: the router was unsure, or disagreed with the
        # submitter, and a person confirms the type
        asked = row.get("rule") in GUESSING_RULES
        counts["asked_a_person"] += asked
        # a decision that named no type (the models unavailable, the document unreadable)
        # went to a person without routing anywhere
        counts["routed_wrong_unasked"] += bool(row.get("label")) and row.get("label") != kind \
            and not asked
        if row.get("outcome") in WITHOUT_A_PERSON:
            counts["automated"] += 1
            misread = any(not right and row["fields"].get(name)
                          for name, right in score(row["document"].expected,
                                                   row["fields"]).items())
            counts["automated_wrongly"] += row.get("label") != kind or misread
    total = {name: sum(c[name] for c in per_kind.values()) for name in counted}
    return {
        "per_kind": {k: {**c, "accuracy": _rate(c["named_right"], c["documents"])}
                     for k, c in sorted(per_kind.items())},
        "all": {**total, "accuracy": _rate(total["named_right"], total["documents"])},
    }


def print_summary(summary: dict[str, Any]) -> None:
    categories = list(summary["accuracy"])
    names = [*SCORED_FIELDS, "(all fields)"]
    extra = sorted({n for c in categories for n in summary["accuracy"][c]} - set(names))
    rows = []
    for name in [*names[:-1], *extra, names[-1]]:
        cells = []
        for category in categories:
            entry = summary["accuracy"][category].get(name)
            cells.append("-" if entry is None else
                         f"{entry['accuracy']:.0%} ({entry['right']}/{entry['shown']})")
        rows.append([name, *cells])
    rows.append(["documents fully right", *(
        f"{summary['documents_fully_right'][c]['share']:.0%} "
        f"({summary['documents_fully_right'][c]['right']}/"
        f"{summary['documents_fully_right'][c]['of']})" for c in categories)])
    rows.append(["fields read wrong (not missing)", *(
        f"{summary['read_wrong'][c]['share']:.0%} ({summary['read_wrong'][c]['wrong']}/"
        f"{summary['read_wrong'][c]['shown']})" for c in categories)])
    print_table("per-field accuracy", ["field", *categories], rows)
    print_table("accuracy by renderer, layout, scan format and degradation",
                ["group", "fields right", "accuracy"],
                [[g, f"{v['right']}/{v['shown']}", f"{v['accuracy']:.0%}"]
                 for g, v in summary["by_group"].items()])
    located = summary["provenance"]
    print(f"\nextracted fields with a provenance: {located['located']}/{located['extracted']}"
          f"; documents that failed: {summary['errors']}")
    for what, count in summary["not_extracted"].items():
        print(f"  decided before the pack read fields ({what}): {count}")
    if summary["routing"]["all"].get("documents"):
        print_table("routing (the router's type vs the document's kind)",
                    ["kind", "documents", "named right", "asked a person",
                     "wrong, not asked", "no person at all", "of which wrongly"],
                    [[k, c["documents"], c["named_right"], c["asked_a_person"],
                      c["routed_wrong_unasked"], c["automated"], c["automated_wrongly"]]
                     for k, c in [*summary["routing"]["per_kind"].items(),
                                  ("(all)", summary["routing"]["all"])]])
    for document in [d for d in summary["documents"] if d["error"]][:5]:
        print(f"  {document['id']} ({document['content_type']}): {document['error'][:300]}")


def run(infra: Settings, state: Path, args: argparse.Namespace, json_path: Path) -> dict:
    from switchyard.runtime import service_specs

    began = time.monotonic()
    documents = documents_for(args)
    made_s = time.monotonic() - began
    print(f"{len(documents)} documents ({made_s:.0f}s to make them)", flush=True)
    changes = setting_changes(args.setting, infra)
    settings = isolated(infra, "docs", **changes)
    with Pipeline(settings, state / "documents", service_specs(settings, ("decision",))):
        began = time.monotonic()
        rows = asyncio.run(decide_all(settings, documents, args.concurrency, args.timeout,
                                      args.route))
        wall = time.monotonic() - began
    summary = summarise(rows)
    print_summary(summary)
    seconds = [row["seconds"] for row in rows]
    result = {
        "benchmark": "documents", "quick": bool(args.quick),
        "set": {"corpus": str(args.corpus) if args.corpus else None,
                "seed": None if args.corpus else args.seed, "routed": args.route,
                "settings": changes,
                "documents": len(documents),
                "per_category": dict(collections.Counter(d.category for d in documents))},
        "decide": {"wall_s": round(wall, 1), "p50_ms": percentile_ms(seconds, 0.5),
                   "p95_ms": percentile_ms(seconds, 0.95), "concurrency": args.concurrency},
        **summary,
    }
    write_json(json_path, result)
    return result


def main(argv: list[str] | None = None) -> int:
    return standalone(parser, configure, run, argv)


if __name__ == "__main__":
    sys.exit(main())
