"""Unit tests of what the review console shows of a PDF or image: the layout's words with
personal data redacted (personal fields through their provenance, PII detectors over each
line), the boxes masked on the page image, and the item's JSON (fields with provenance, the
layout, the document as its words). No broker, no database."""

from __future__ import annotations

from PIL import Image

from services.review.console import item_json
from services.review.pages import MASK_COLOUR, mask
from switchyard.privacy import Redactor, page_redactions, redact_escalation
from switchyard.v1 import (
    BoundingBox,
    Decision,
    Document,
    DocumentLayout,
    Escalation,
    FieldExtraction,
    LayoutPage,
    LayoutSource,
    LayoutWord,
    Provenance,
    ReviewItem,
    TaskEnvelope,
)


def word(text: str, x0: float, y0: float, x1: float, y1: float,
         confidence: float = 1.0) -> LayoutWord:
    return LayoutWord(text=text, box=BoundingBox(x0=x0, y0=y0, x1=x1, y1=y1),
                      confidence=confidence)


# page 1: "Invoice INV-77" / "Vendor Jane Roe" / "Phone +44 20 7946 0958" / "Total 120.00"
WORDS = [word("Invoice", .10, .10, .20, .12), word("INV-77", .22, .10, .30, .12),
         word("Vendor", .10, .20, .18, .22), word("Jane", .20, .20, .25, .22),
         word("Roe", .26, .20, .30, .22),
         word("Phone", .10, .30, .17, .32), word("+44", .18, .30, .22, .32),
         word("20", .23, .30, .25, .32), word("7946", .26, .30, .30, .32),
         word("0958", .31, .30, .35, .32),
         word("Total", .10, .40, .16, .42), word("120.00", .18, .40, .26, .42, .9)]


def box_of(*indexes: int) -> BoundingBox:
    boxes = [WORDS[i].box for i in indexes]
    return BoundingBox(x0=min(b.x0 for b in boxes), y0=min(b.y0 for b in boxes),
                       x1=max(b.x1 for b in boxes), y1=max(b.y1 for b in boxes))


def provenance(*indexes: int, source: int = LayoutSource.LAYOUT_SOURCE_OCR,
               confidence: float = 0.9) -> Provenance:
    return Provenance(page=1, box=box_of(*indexes),
                      word_boxes=[WORDS[i].box for i in indexes], source=source,  # type: ignore[arg-type]
                      ocr_confidence=confidence)


def invoice_escalation() -> Escalation:
    layout = DocumentLayout(pages=[LayoutPage(number=1, width=1240, height=1754,
                                              source=LayoutSource.LAYOUT_SOURCE_OCR,
                                              words=WORDS)])
    decision = Decision(fields=[
        FieldExtraction(name="invoice_number", value="INV-77", confidence=.97,
                        provenance=provenance(1)),
        FieldExtraction(name="vendor", value="Jane Roe", confidence=.9,
                        provenance=provenance(3, 4)),
        FieldExtraction(name="total", value="120.00", confidence=.8,
                        provenance=provenance(11)),
    ])
    task = TaskEnvelope(task_id="t-1", tenant_id="acme", kind="invoice",
                        document=Document(content_type="image/png", body=b"\x89PNG\r\n\x1a\n",
                                          page_count=1, filename="scan.png"))
    return Escalation(task_id="t-1", tenant_id="acme", task=task, proposed_decision=decision,
                      layout=layout)


def test_personal_fields_and_detected_pii_are_redacted_in_the_layout() -> None:
    shown = redact_escalation(invoice_escalation(), Redactor())
    texts = [w.text for w in shown.layout.pages[0].words]
    # the vendor (a personal field) by its provenance, the phone (four words) by the detector
    assert texts[3:5] == ["[VENDOR REDACTED]"] * 2
    assert texts[6:10] == ["[PHONE REDACTED]"] * 4
    # derived values and labels stay readable, with their boxes
    assert texts[:3] == ["Invoice", "INV-77", "Vendor"] and texts[10:] == ["Total", "120.00"]
    assert "Jane" not in str(shown) and "7946" not in str(shown)
    # the file itself cannot be redacted: withheld (its pages are shown as masked images)
    assert shown.task.document.body == b"" and not shown.task.document.HasField("blob")
    assert shown.task.document.page_count == 1 and shown.task.document.content_type == "image/png"
    fields = {f.name: f for f in shown.proposed_decision.fields}
    assert fields["vendor"].value == "[VENDOR REDACTED]"
    assert fields["vendor"].provenance.page == 1   # where it was read is no secret


def test_the_page_image_is_masked_where_the_words_are_redacted() -> None:
    esc = invoice_escalation()
    redactions = page_redactions(esc.layout, esc.proposed_decision, Redactor())
    assert sorted(redactions.words[0]) == [3, 4, 6, 7, 8, 9]
    boxes = redactions.boxes_on(1)
    assert redactions.boxes_on(2) == []
    # every redacted word lies inside a masked box; the total and the invoice number do not
    for index in (3, 4, 6, 7, 8, 9):
        b = WORDS[index].box
        assert any(m.x0 <= b.x0 and m.y0 <= b.y0 and b.x1 <= m.x1 and b.y1 <= m.y1
                   for m in boxes), WORDS[index].text
    for index in (1, 11):
        centre = ((WORDS[index].box.x0 + WORDS[index].box.x1) / 2,
                  (WORDS[index].box.y0 + WORDS[index].box.y1) / 2)
        assert not any(m.x0 <= centre[0] <= m.x1 and m.y0 <= centre[1] <= m.y1 for m in boxes)

    image = mask(Image.new("RGB", (1000, 1000), (255, 255, 255)), boxes)
    assert image.getpixel((225, 210)) == MASK_COLOUR     # inside "Jane"
    assert image.getpixel((280, 310)) == MASK_COLOUR     # inside "7946"
    assert image.getpixel((220, 410)) == (255, 255, 255)  # "120.00" stays visible
    assert image.getpixel((260, 110)) == (255, 255, 255)  # "INV-77" stays visible


def test_a_field_without_provenance_is_found_by_its_value_and_a_revealed_one_is_not_masked(
        ) -> None:
    esc = invoice_escalation()
    for field in esc.proposed_decision.fields:
        if field.name == "vendor":
            field.ClearField("provenance")
    esc.layout.pages[0].words[7].text = "x"   # no phone number any more
    redactions = page_redactions(esc.layout, esc.proposed_decision, Redactor())
    # the withheld value is still found where a line of words shows it
    assert redactions.words == {0: {3: "[VENDOR REDACTED]", 4: "[VENDOR REDACTED]"}}
    assert len(redactions.boxes_on(1)) == 2
    # a field the item reveals is shown (and its words not masked), whatever its class
    revealed = page_redactions(esc.layout, esc.proposed_decision, Redactor(), ["vendor"])
    assert revealed.words == {} and revealed.boxes_on(1) == []
    for field in esc.proposed_decision.fields:
        if field.name == "vendor":
            field.value = "Someone Else"   # the value is not on the page: nothing to mask
    redactions = page_redactions(esc.layout, esc.proposed_decision, Redactor())
    assert redactions.words == {} and redactions.boxes_on(1) == []


def test_item_json_carries_the_layout_the_provenance_and_the_words_as_text() -> None:
    esc = invoice_escalation()
    shown = redact_escalation(esc, Redactor())
    view = item_json(ReviewItem(item_id="i-1", escalation=shown))
    document = view["document"]
    assert document["page_count"] == 1 and document["content_type"] == "image/png"
    # the document's text is its words, never the file's bytes decoded as text
    assert document["text"] == ("Invoice INV-77 Vendor [VENDOR REDACTED] Phone "
                                "[PHONE REDACTED] Total 120.00")
    assert "PNG" not in document["text"] and "PNG" not in view["summary"]
    (page,) = document["layout"]
    assert page["number"] == 1 and page["source"] == "OCR"
    assert page["words"][11] == {"text": "120.00", "box": [.18, .40, .26, .42],
                                 "confidence": .9}
    total = next(f for f in view["proposal"]["fields"] if f["name"] == "total")
    assert total["provenance"] == {"page": 1, "box": [.18, .40, .26, .42],
                                   "word_boxes": [[.18, .40, .26, .42]], "source": "OCR",
                                   "ocr_confidence": .9}


def test_text_documents_have_no_pages() -> None:
    esc = Escalation(task=TaskEnvelope(document=Document(content_type="text/plain",
                                                         body=b"Invoice INV-1")),
                     proposed_decision=Decision(fields=[FieldExtraction(name="total",
                                                                        value="1")]))
    view = item_json(ReviewItem(item_id="i-2", escalation=esc))
    assert view["document"]["page_count"] == 0 and view["document"]["layout"] == []
    assert view["document"]["text"] == "Invoice INV-1"
    assert view["proposal"]["fields"][0]["provenance"] is None
