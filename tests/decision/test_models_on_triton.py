"""The models as Triton serves them: every version reaches the held-out metrics its card claims.

The held-out sets are the files training wrote (``models/data/*_heldout.jsonl``); the clients
are the decision service's own (same batching, same breaker).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import numpy as np
import pytest

from services.decision.training import datagen, train
from services.decision.training.features import INVOICE_FEATURES, invoice_raw_features
from services.decision.pools import new_breaker
from services.decision.triton import RouterClient, ScorerClient
from switchyard import Settings
from switchyard.stack import EmbeddedStack, TritonServer, free_port
from tests.decision.documents import MODEL_REPOSITORY, ROOT, heldout

pytestmark = pytest.mark.integration


def card(model: str, version_dir: str) -> dict:
    return json.loads((MODEL_REPOSITORY / model / version_dir / "model_card.json").read_text())


@pytest.mark.parametrize("version_dir", ["1", *train.ROUTER_CANDIDATES])
async def test_router_reaches_its_cards_heldout_accuracy(stack: EmbeddedStack,
                                                         version_dir: str) -> None:
    client = RouterClient(stack.settings.triton_url, 30, new_breaker("t", 5, 10), version_dir)
    await client.load_metadata()
    rows = heldout()
    try:
        predictions = []
        for start in range(0, len(rows), 64):
            predictions += await client.predict([r["text"] for r in rows[start:start + 64]])
    finally:
        await client.close()
    claimed = card("document_router", version_dir)
    assert client.version == claimed["version"]
    assert len(rows) == claimed["split"]["test"]
    accuracy = np.mean([p.label == r["label"] for p, r in zip(predictions, rows)])
    assert round(float(accuracy), 6) == claimed["metrics"]["test"]["accuracy"]
    assert claimed["metrics"]["test"]["accuracy"] > 0.9


async def test_invoice_risk_reaches_its_cards_heldout_auc(stack: EmbeddedStack) -> None:
    # the invoice pack's scorer, as the decision service runs it: P(auto)
    client = ScorerClient("invoice_risk", stack.settings.triton_url, 30,
                          new_breaker("t", 5, 10), "1", output_class="auto")
    await client.load_metadata()
    assert client.feature_names == list(INVOICE_FEATURES)
    rows = datagen.read_jsonl(ROOT / "models" / "data" / train.INVOICE_HELDOUT)
    try:
        p = []
        for start in range(0, len(rows), 64):
            p += [x.confidence for x in await client.predict(
                [invoice_raw_features(r) for r in rows[start:start + 64]])]
    finally:
        await client.close()
    claimed = card("invoice_risk", "1")["metrics"]["test"]
    assert round(train.auc(np.array(p), np.array([r["label"] for r in rows])), 6) == claimed["auc"]


def _page_png(lines: list[tuple[int, int, str]], size: tuple[int, int] = (900, 500)) -> bytes:
    """A white page with ``lines`` (x, y, text) in black, as PNG bytes."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=36)
    for x, y, text in lines:
        draw.text((x, y), text, fill="black", font=font)
    out = io.BytesIO()
    page.save(out, format="PNG")
    return out.getvalue()


async def test_ocr_reads_the_words_of_each_page_with_boxes(stack: EmbeddedStack) -> None:
    # two pages in one request (as the decision service's batcher sends them): each row's
    # words come back in its own row, with boxes where the text was drawn
    from services.decision.triton import OcrClient
    from switchyard.v1 import LayoutSource

    client = OcrClient(stack.settings.triton_url, 120, new_breaker("t", 5, 10), "1")
    await client.load_metadata()
    try:
        first, second = await client.read([
            _page_png([(60, 60, "Invoice number: INV-2041"), (60, 300, "Total due: 1,250.00")]),
            _page_png([(450, 200, "Receipt 77")], size=(900, 600)),
        ])
    finally:
        await client.close()
    assert client.version == "1.0.0"
    assert first.source == second.source == LayoutSource.LAYOUT_SOURCE_OCR
    assert (first.width, first.height, second.width, second.height) == (900, 500, 900, 600)
    texts = [w.text for w in first.words]
    # a label's colon ends a word even where the recogniser drops the space after it
    assert texts == ["Invoice", "number:", "INV-2041", "Total", "due:", "1,250.00"]
    invoice, total = first.words[0], first.words[3]
    assert 0.04 < invoice.box.x0 < 0.1 and 0.1 < invoice.box.y0 < invoice.box.y1 < 0.25
    assert invoice.box.x1 < first.words[1].box.x0 < first.words[1].box.x1 < \
        first.words[2].box.x0
    assert total.box.y0 > 0.55 and total.box.x1 < first.words[4].box.x0
    assert all(0.5 < w.confidence <= 1 for w in first.words)
    assert [w.text for w in second.words] == ["Receipt", "77"]
    assert second.words[0].box.x0 == pytest.approx(450 / 900, abs=0.03)


async def test_ocr_finds_a_large_pages_lines_on_a_smaller_copy(stack: EmbeddedStack) -> None:
    # a 2000-pixel page: the detector runs on a 1280-pixel copy (the config's det_max_side;
    # tests/unit/test_ocr_detection.py drives the choice), the recogniser reads the full page
    from services.decision.triton import OcrClient

    client = OcrClient(stack.settings.triton_url, 120, new_breaker("t", 5, 10), "1")
    await client.load_metadata()
    try:
        (page,) = await client.read([_page_png(
            [(120, 150, "Invoice number: INV-7731"), (120, 260, "Total due: 4,210.50 EUR")],
            size=(2000, 1400))])
        # and a strip (a pasted receipt line, a letterhead): padded to the detector's side,
        # not enlarged four times
        (strip,) = await client.read([_page_png([(20, 20, "Total due: 4,210.50 EUR")],
                                                size=(1100, 160))])
    finally:
        await client.close()
    assert {"due:", "4,210.50"} <= {w.text for w in strip.words}, strip.words
    texts = [w.text for w in page.words]
    assert (page.width, page.height) == (2000, 1400)
    assert texts[:2] == ["Invoice", "number:"] and {"Total", "due:", "4,210.50"} <= set(texts)
    assert 0.05 < page.words[0].box.x0 < 0.07 and 0.1 < page.words[0].box.y0 < 0.12
    triton = next(c for c in stack.infrastructure if c.name == "triton")
    loaded = next(line for line in triton.log_path.read_text().splitlines()
                  if "document_ocr 1.0.0 loaded" in line)
    assert "detection on 1280 px" in loaded and "padded to 736 px" in loaded, loaded


def _scan_pdf(first_page_text: tuple[str, ...], scanned_lines: list[tuple[int, int, str]]
              ) -> bytes:
    """A PDF whose page 1 has a text layer and page 2 is a scan (an image, no text)."""
    import io

    from PIL import Image
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=(450, 250))
    pdf.setFont("Helvetica", 14)
    for row, line in enumerate(first_page_text):
        pdf.drawString(40, 200 - row * 30, line)
    pdf.showPage()
    scan = Image.open(io.BytesIO(_page_png(scanned_lines)))
    pdf.drawImage(ImageReader(scan), 0, 0, 450, 250)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def _tiff(*pages: bytes) -> bytes:
    import io

    from PIL import Image

    frames = [Image.open(io.BytesIO(p)).convert("RGB") for p in pages]
    out = io.BytesIO()
    frames[0].save(out, format="TIFF", save_all=True, append_images=frames[1:])
    return out.getvalue()


def _envelope(content_type: str, body: bytes, page_count: int = 0):  # type: ignore[no-untyped-def]
    from switchyard.v1 import Document, TaskEnvelope

    return TaskEnvelope(task_id="00000000-0000-0000-0000-000000000001", tenant_id="acme",
                        document=Document(content_type=content_type, body=body,
                                          page_count=page_count))


async def test_document_reader_reads_text_layers_directly_and_the_rest_by_ocr(
        stack: EmbeddedStack) -> None:
    # the decision service's reader over the real model, pages through a micro-batcher: a PDF
    # with a text page and a scanned page, and a two-frame TIFF, read at the same time
    import asyncio

    from services.decision.batcher import BATCH_SIZE, MicroBatcher
    from services.decision.reading import DocumentReader
    from services.decision.triton import OcrClient
    from switchyard.v1 import LayoutSource

    client = OcrClient(stack.settings.triton_url, 120, new_breaker("t", 5, 10), "1")
    batcher = MicroBatcher("reader-test", client.read, 8, 0.05, 100)
    sent_before = BATCH_SIZE.labels("reader-test")._sum.get()  # noqa: SLF001
    await batcher.start()
    reader = DocumentReader(batcher.submit, None)
    try:
        pdf, tiff = await asyncio.gather(
            reader.read(_envelope("application/pdf", _scan_pdf(
                ("Invoice number: INV-7", "Total due: 99.00"),
                [(60, 60, "Vendor: Nordic Paper"), (60, 300, "Page two")]))),
            reader.read(_envelope("image/tiff", _tiff(
                _page_png([(60, 60, "Receipt 11")]), _page_png([(60, 60, "Receipt 12")])))),
        )
        assert await reader.read(_envelope("text/plain", b"Invoice INV-7")) is None
    finally:
        await batcher.stop()
        await client.close()
    assert pdf is not None and tiff is not None
    text_page, scanned = pdf.layout.pages
    assert (text_page.number, text_page.source) == (1, LayoutSource.LAYOUT_SOURCE_TEXT_LAYER)
    assert [w.text for w in text_page.words] == ["Invoice", "number:", "INV-7", "Total", "due:",
                                                 "99.00"]
    assert (scanned.number, scanned.source) == (2, LayoutSource.LAYOUT_SOURCE_OCR)
    assert [w.text for w in scanned.words] == ["Vendor:", "Nordic", "Paper", "Page", "two"]
    assert (pdf.page_count, pdf.ocr_pages, pdf.unread_pages) == (2, 1, 0)
    assert [(p.number, p.source, [w.text for w in p.words]) for p in tiff.layout.pages] == [
        (1, LayoutSource.LAYOUT_SOURCE_OCR, ["Receipt", "11"]),
        (2, LayoutSource.LAYOUT_SOURCE_OCR, ["Receipt", "12"])]
    # three scanned pages of two documents, all sent through the batcher
    assert BATCH_SIZE.labels("reader-test")._sum.get() - sent_before == 3  # noqa: SLF001


def _text_pdf_with_a_picture_of_text(text: tuple[str, ...], pictured: list[tuple[int, int, str]]
                                     ) -> bytes:
    """One page: ``text`` in its text layer at the top, and below it a footer pasted in as
    an image with ``pictured`` drawn on it (a supplier's name and bank account), plus a small
    logo image, which is no picture of text."""
    import io

    from PIL import Image
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=(450, 500))
    pdf.setFont("Helvetica", 14)
    for row, line in enumerate(text):
        pdf.drawString(40, 450 - row * 30, line)
    pdf.drawImage(ImageReader(Image.new("RGB", (60, 30), "navy")), 380, 460, 40, 20)
    footer = Image.open(io.BytesIO(_page_png(pictured)))
    pdf.drawImage(ImageReader(footer), 0, 0, 450, 250)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


async def test_document_reader_adds_the_words_of_a_picture_of_text_to_a_text_page(
        stack: EmbeddedStack) -> None:
    # a real supplier's PDF (bench/outside/invoice2data-later/saeco.pdf) keeps its name and
    # IBAN only in a footer image: the page is OCRed for it, the picture's words join the
    # text layer marked as OCR, and the extractor reads them
    from services.decision.reading import DocumentReader
    from services.decision.triton import OcrClient
    import io

    from PIL import Image

    from switchyard.documents import DocumentLimits, lines, provenance_of
    from switchyard.v1 import LayoutSource

    client = OcrClient(stack.settings.triton_url, 120, new_breaker("t", 5, 10), "1")
    sent: list[tuple[int, int]] = []

    async def ocr(image: bytes, *_: object):  # type: ignore[no-untyped-def]
        sent.append(Image.open(io.BytesIO(image)).size)
        return (await client.read([image]))[0]

    try:
        reader = DocumentReader(ocr, None)
        read = await reader.read(_envelope("application/pdf", _text_pdf_with_a_picture_of_text(
            ("Invoice number: INV-88", "Total due: 49.99 EUR"),
            [(60, 60, "Nordic Paper B.V."), (60, 160, "IBAN: NL91ABNA0417164300")])))
    finally:
        await client.close()
    assert read is not None and (read.page_count, read.ocr_pages) == (1, 1)
    # only the footer's pixels went to the OCR (the lower half of the page and a margin), at
    # the page's resolution (450 x 500 points at the render resolution); the logo not at all
    page_px = 500 * DocumentLimits().render_dpi / 72
    assert len(sent) == 1 and abs(sent[0][1] - 0.51 * page_px) <= 2, (sent, page_px)
    (page,) = read.layout.pages
    assert page.source == LayoutSource.LAYOUT_SOURCE_TEXT_LAYER
    texts = [w.text for w in page.words]
    assert texts[:6] == ["Invoice", "number:", "INV-88", "Total", "due:", "49.99"]
    pictured = [w for w in page.words if w.source == LayoutSource.LAYOUT_SOURCE_OCR]
    assert [w.text for w in pictured] == ["Nordic", "Paper", "B.V.", "IBAN:",
                                          "NL91ABNA0417164300"]
    assert all(w.box.y0 > 0.5 and w.confidence < 1 for w in pictured)
    # the text layer's words stay exact, and a value read from the picture says so
    iban = [w for w in lines(read.layout)[-1].words]
    assert provenance_of(iban).source == LayoutSource.LAYOUT_SOURCE_OCR
    assert provenance_of(lines(read.layout)[0].words).source == \
        LayoutSource.LAYOUT_SOURCE_TEXT_LAYER
    from switchyard_packs.invoice.extraction import extract_invoice

    fields = extract_invoice("", read.layout)
    assert (fields.get("vendor"), fields.get("bank_account"), fields.get("total")) == (
        "Nordic Paper B.V.", "NL91ABNA0417164300", "49.99")


async def test_document_reader_limits_pages_and_names_what_it_cannot_read(
        stack: EmbeddedStack) -> None:
    from services.decision.reading import DocumentReader, UnreadableDocument
    from services.decision.triton import ModelUnavailable, OcrClient
    from switchyard.stack import free_port
    from tests.document_samples import corrupt_pdf, text_pdf

    client = OcrClient(stack.settings.triton_url, 120, new_breaker("t", 5, 10), "1")
    try:
        reader = DocumentReader(lambda image, *_: client.read([image]), None, max_pages=2)
        read = await reader.read(_envelope("application/pdf", text_pdf(
            ("Invoice INV-1001 for paper", "Total 120.00 EUR"), pages=3), page_count=3))
        assert read is not None
        assert [p.number for p in read.layout.pages] == [1, 2]
        assert (read.page_count, read.unread_pages, read.ocr_pages) == (3, 1, 0)
        with pytest.raises(UnreadableDocument, match="PDF"):
            await reader.read(_envelope("application/pdf", corrupt_pdf(), page_count=1))
    finally:
        await client.close()
    # Triton not there: the model is unavailable (the engine's hold/escalate policy), not a
    # document problem
    away = OcrClient(f"127.0.0.1:{free_port()}", 2, new_breaker("away", 5, 10), "1")
    try:
        with pytest.raises(ModelUnavailable):
            await DocumentReader(lambda image, *_: away.read([image]), None).read(
                _envelope("image/png", _page_png([(60, 60, "Receipt 11")])))
    finally:
        await away.close()


TICKET = ("Ticket SR127232", "Priority: P3", "Category: General", "Customer: Julia Larsen",
          "Description: Why did my bill go up? Nobody told us about a price change.")


def _text_pdf(lines: tuple[str, ...]) -> bytes:
    import io

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.setFont("Helvetica", 12)
    for row, line in enumerate(lines):
        pdf.drawString(72, A4[1] - 72 - row * 24, line)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


async def test_the_engine_routes_on_the_layout_extracts_with_provenance_and_escalates_with_it(
        stack: EmbeddedStack) -> None:
    # the decision engine as the service builds it (router and OCR batchers on the real
    # Triton), with the shipped support_ticket pack reading PDFs and PNGs: a text PDF is
    # routed on its words and its fields carry where they were read; a scanned ticket
    # submitted as another kind escalates with its OCR layout on the escalation; a damaged
    # PDF escalates as unreadable, and one whose structure pdfminer cannot recover but
    # PDFium repairs (bytes before its header) has its text layer read
    import dataclasses

    from services.decision.batcher import MicroBatcher
    from services.decision.engine import UNREADABLE_RULE, DecisionEngine
    from services.decision.packs import PackCatalog
    from services.decision.policies import PolicySet
    from services.decision.policy import Policy
    from services.decision.reading import DocumentReader
    from services.decision.service import escalation_for
    from services.decision.triton import OcrClient
    from switchyard.packs import builtin_packs
    from switchyard.stack import free_port
    from switchyard.v1 import DecisionOutcome, LayoutSource
    from tests.document_samples import corrupt_pdf, shifted_pdf

    pack = builtin_packs()["support_ticket"]
    pack = dataclasses.replace(pack, content_types=(*pack.content_types, "application/pdf",
                                                    "image/png"))
    router = RouterClient(stack.settings.triton_url, 30, new_breaker("r", 5, 10), "1")
    ocr = OcrClient(stack.settings.triton_url, 120, new_breaker("o", 5, 10), "1")
    await router.load_metadata()
    router_batcher = MicroBatcher("engine-test-router", router.predict, 16, 0.005, 100)
    ocr_batcher = MicroBatcher("engine-test-ocr", ocr.read, 8, 0.005, 100)
    policies = PolicySet(Policy(auto_execute_threshold=0.5))
    engine = DecisionEngine(router_batcher, policies,
                            PackCatalog(None, policies, builtin={"support_ticket": pack}),
                            router_classes=lambda: router.classes,
                            reader=DocumentReader(ocr_batcher.submit, None))
    await router_batcher.start()
    await ocr_batcher.start()
    try:
        text = await engine.assess(_envelope("application/pdf", _text_pdf(TICKET)))
        scanned_ticket = _page_png([(40, 40 + 60 * i, line) for i, line in
                                    enumerate(TICKET[:4])], size=(900, 320))
        scan = await engine.assess(_kind(_envelope("image/png", scanned_ticket), "invoice"))
        broken = await engine.assess(_envelope("application/pdf", corrupt_pdf(), page_count=1))
        shifted = await engine.assess(_envelope("application/pdf", shifted_pdf(TICKET[:4]),
                                                page_count=1))
        # OCR away (nothing listens there): the scan meets the models' unavailable policy,
        # while a text PDF, which needs no OCR, is still decided
        away = OcrClient(f"127.0.0.1:{free_port()}", 2, new_breaker("away", 5, 10), "1")
        engine.reader = DocumentReader(lambda image, *_: away.read([image]), None)
        unavailable = await engine.assess(_envelope("image/png", scanned_ticket))
        still_decided = await engine.assess(_envelope("application/pdf", _text_pdf(TICKET)))
        await away.close()
    finally:
        await router_batcher.stop()
        await ocr_batcher.stop()
        await router.close()
        await ocr.close()

    decision = text.decision
    assert decision.models[0].label == "support_ticket"   # routed on the layout's words
    assert decision.outcome == DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE, \
        decision.explanation
    fields = {f.name: f for f in decision.fields}
    assert fields["ticket_id"].value == "SR127232"
    assert fields["priority"].value == "P3"
    where = fields["priority"].provenance
    assert (where.page, where.source) == (1, LayoutSource.LAYOUT_SOURCE_TEXT_LAYER)
    priority_word = next(w for w in text.layout.pages[0].words if w.text == "P3")
    assert where.box.x0 == pytest.approx(priority_word.box.x0)
    assert where.box.y0 == pytest.approx(priority_word.box.y0)

    assert scan.outcome.rule == "kind_mismatch"
    assert scan.layout is not None
    assert scan.layout.pages[0].source == LayoutSource.LAYOUT_SOURCE_OCR
    escalation = escalation_for(_kind(_envelope("image/png", b""), "invoice"), scan.decision,
                                scan.outcome, "default", scan.layout)
    assert escalation.layout == scan.layout
    assert "Priority:" in [w.text for w in escalation.layout.pages[0].words]

    assert broken.outcome.rule == UNREADABLE_RULE
    assert broken.decision.outcome == DecisionOutcome.DECISION_OUTCOME_ESCALATE
    assert shifted.outcome.rule != UNREADABLE_RULE, shifted.decision.explanation
    assert shifted.layout is not None
    assert shifted.layout.pages[0].source == LayoutSource.LAYOUT_SOURCE_TEXT_LAYER
    assert "Priority:" in [w.text for w in shifted.layout.pages[0].words]
    assert shifted.decision.models[0].label == "support_ticket"

    assert unavailable.model_unavailable
    assert still_decided.decision.outcome == DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE


def _kind(task, kind: str):  # type: ignore[no-untyped-def]
    task.kind = kind
    return task


async def test_document_reader_reads_a_claim_checked_document_and_refuses_a_tampered_one(
        settings) -> None:  # type: ignore[no-untyped-def]
    # a document ingest stored in the blob store (PostgreSQL, sealed): the envelope carries
    # only the reference; a reference whose sha256 is not the stored bytes' is unreadable
    from services.decision.reading import DocumentReader, UnreadableDocument
    from switchyard.storage import connect
    from switchyard.storage import codec_for
    from switchyard.documents import PostgresBlobStore

    body = _text_pdf(TICKET)
    conn = await connect(settings)
    try:
        store = PostgresBlobStore(conn, codec_for(settings))
        task = _envelope("application/pdf", b"", page_count=1)
        task.document.blob.CopyFrom(await store.put(body, "acme", task.task_id))
        reader = DocumentReader(_no_ocr, store)
        read = await reader.read(task)
        assert read is not None and read.ocr_pages == 0
        assert [w.text for w in read.layout.pages[0].words][:2] == ["Ticket", "SR127232"]
        task.document.blob.sha256 = "0" * 64
        with pytest.raises(UnreadableDocument, match="loaded"):
            await reader.read(task)
    finally:
        await conn.close()


async def _no_ocr(image: bytes, *_: object):  # type: ignore[no-untyped-def]
    raise AssertionError("a text PDF needs no OCR")


def test_every_model_is_warm_before_triton_reports_ready(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A Triton of its own on the project's repository, asked nothing: when it reports ready
    (strict readiness, as the stack and the chart's probes use it), every version of every
    model has already run its warm-up sample (``model_warmup`` in its config; Triton counts
    those runs in the model's statistics), and each run succeeded: the OCR model read a real
    page, the numpy models zeros."""
    state = tmp_path_factory.mktemp("warm")
    settings = Settings(triton_http_port=free_port(), triton_grpc_port=free_port(),
                        triton_metrics_port=free_port(), state_dir=state)
    server = TritonServer(settings, state, model_repository=MODEL_REPOSITORY)
    server.start()
    try:
        def get(path: str, body: bytes | None = None) -> Any:
            request = urllib.request.Request(f"{server.http_url}{path}", data=body)
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        loaded = [(m["name"], m["version"]) for m in get("/v2/repository/index", b"{}")
                  if m.get("state") == "READY"]
        assert {name for name, _ in loaded} >= {
            "document_router", "document_ocr", "invoice_risk", "engagement"}
        for name, version in loaded:
            stats = get(f"/v2/models/{name}/versions/{version}/stats")["model_stats"][0]
            assert stats["execution_count"] >= 1, (name, version, stats)
            assert stats["inference_stats"]["success"]["count"] >= 1, (name, version)
            assert stats["inference_stats"]["fail"]["count"] == 0, (name, version)
    finally:
        server.stop()
