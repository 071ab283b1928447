"""An e-mail (``message/rfc822``) is stored as the document it carries: its PDF, its pictures
when its text is a cover note, or itself as text; what is kept of it goes to the metadata;
bad e-mails get the codes every document gets."""

from __future__ import annotations

from email.message import EmailMessage

import pypdfium2 as pdfium
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard.documents import (
    COVER_NOTE_CHARS,
    DocumentError,
    DocumentLimits,
    html_text,
    inspect,
    read_text_layer,
    unpack_email,
)
from switchyard.tasks import MAX_METADATA_VALUE_CHARS, stored_document
from switchyard.v1 import Document
from tests.document_samples import image, text_pdf

LIMITS = DocumentLimits()


def mail(body: str = "Hello,\n\nplease find our invoice attached.\n\nRegards, Anna",
         *, html: str | None = None, subject: str = "Invoice 2024-17",
         attachments: tuple[tuple[str, str, bytes], ...] = (),
         inline: tuple[tuple[str, bytes], ...] = ()) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Anna Berg <billing@nordlicht.example>"
    message["To"] = "ap@acme.example"
    message["Date"] = "Tue, 05 Mar 2024 09:12:00 +0100"
    message["Subject"] = subject
    message["Message-ID"] = "<42@nordlicht.example>"
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name, content in inline:
        related = message.get_body(("html",)) or message
        related.add_related(content, maintype="image", subtype="png", cid=f"<{name}>")
    for name, media, data in attachments:
        main, sub = media.split("/")
        message.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return message


def test_a_message_without_files_is_its_own_text_headers_first() -> None:
    raw = mail("My printer shows error E42 since this morning.", subject="Printer broken")
    unpacked = unpack_email(bytes(raw), LIMITS)
    text = unpacked.body.decode()
    assert unpacked.content_type == "text/plain" and unpacked.page_count == 0
    assert text.startswith("From: Anna Berg <billing@nordlicht.example>\nTo: ap@acme.example\n"
                           "Date: Tue, 05 Mar 2024 09:12:00 +0100\nSubject: Printer broken\n\n")
    assert "error E42 since this morning" in text
    assert unpacked.metadata == {
        "email_from": "Anna Berg <billing@nordlicht.example>", "email_to": "ap@acme.example",
        "email_date": "Tue, 05 Mar 2024 09:12:00 +0100", "email_subject": "Printer broken",
        "email_message_id": "<42@nordlicht.example>"}
    assert inspect("message/rfc822", bytes(raw), LIMITS).content_type == "text/plain"


def test_an_html_only_message_is_read_as_its_words_and_cells() -> None:
    raw = EmailMessage()
    raw["From"], raw["Subject"] = "shop@example.com", "Your order"
    raw.set_content("<html><head><style>p {color: red}</style></head><body><p>Thanks for "
                    "your order&nbsp;#981.</p><table><tr><th>Item</th><th>Price</th></tr>"
                    "<tr><td>Lamp</td><td>39.90</td></tr></table></body></html>",
                    subtype="html")
    text = unpack_email(bytes(raw), LIMITS).body.decode()
    assert "Thanks for your order #981." in text
    assert "Item | Price\nLamp | 39.90" in text
    assert "color" not in text
    assert html_text("<div>a<br>b</div><script>x()</script>") == "a\nb"
    assert html_text("<table>\n <tr>\n  <td>Net</td>\n  <td>10.00</td>\n </tr>\n <tr>\n"
                     "  <td>VAT</td> <td>2.00</td></tr></table>") == "Net | 10.00\nVAT | 2.00"


def test_an_attached_pdf_is_the_document_as_sent() -> None:
    pdf = text_pdf(("Invoice INV-77", "Total 120.00 EUR"))
    raw = bytes(mail(attachments=(("INV-77.pdf", "application/pdf", pdf),)))
    unpacked = unpack_email(raw, LIMITS)
    assert (unpacked.content_type, unpacked.body, unpacked.filename) == (
        "application/pdf", pdf, "INV-77.pdf")
    assert unpacked.page_count == 1
    assert unpacked.metadata["email_attachments"] == "INV-77.pdf"
    assert "please find our invoice attached" in unpacked.metadata["email_text"]
    assert unpacked.metadata["email_text"].startswith("From: Anna Berg")
    # a PDF sent as application/octet-stream is still a PDF
    raw = bytes(mail(attachments=(("scan.pdf", "application/octet-stream", pdf),)))
    assert unpack_email(raw, LIMITS).content_type == "application/pdf"


def test_several_files_become_one_pdf_in_the_order_attached() -> None:
    first = text_pdf(("Invoice INV-78",), pages=2)
    picture = image("PNG", (400, 300))
    raw = bytes(mail(attachments=(("INV-78.pdf", "application/pdf", first),
                                  ("delivery-note.png", "image/png", picture),
                                  ("receipt.tif", "image/tiff", image("TIFF")))))
    unpacked = unpack_email(raw, LIMITS)
    assert unpacked.content_type == "application/pdf" and unpacked.page_count == 4
    assert unpacked.metadata["email_attachments"] == (
        "INV-78.pdf, delivery-note.png, receipt.tif")
    merged = pdfium.PdfDocument(unpacked.body)
    assert len(merged) == 4
    # the picture's page renders back at the reading resolution to its own pixels
    width, height = merged.get_page_size(2)
    assert round(width * LIMITS.render_dpi / 72) == 400
    assert round(height * LIMITS.render_dpi / 72) == 300
    merged.close()
    first_page = read_text_layer(unpacked.body)[0]
    assert first_page is not None
    assert "INV-78" in " ".join(word.text for word in first_page.words)


def test_a_picture_is_the_document_of_a_cover_note_and_an_illustration_of_a_long_message(
        ) -> None:
    photo = image("JPEG", (300, 200))
    note = bytes(mail("Receipt attached.", attachments=(("receipt.jpg", "image/jpeg", photo),)))
    assert unpack_email(note, LIMITS).content_type == "image/jpeg"
    story = "The export fails with a timeout after the upgrade. " * (COVER_NOTE_CHARS // 40)
    ticket = bytes(mail(story, subject="Export broken",
                        attachments=(("screenshot.png", "image/png", image("PNG")),)))
    unpacked = unpack_email(ticket, LIMITS)
    assert unpacked.content_type == "text/plain"
    assert unpacked.body.decode().rstrip().endswith("[attached, not read: screenshot.png]")
    assert "email_text" not in unpacked.metadata


def test_a_logo_inside_the_message_is_neither_the_document_nor_named() -> None:
    raw = bytes(mail("Short note.", html="<p>Short note.</p><img src='cid:logo'>",
                     inline=(("logo", image("PNG")),)))
    unpacked = unpack_email(raw, LIMITS)
    assert unpacked.content_type == "text/plain"
    assert "not read" not in unpacked.body.decode()


def test_a_forwarded_message_brings_its_headers_text_and_files() -> None:
    pdf = text_pdf(("Invoice INV-80",))
    inner = mail("See the invoice.", subject="Invoice INV-80",
                 attachments=(("INV-80.pdf", "application/pdf", pdf),))
    outer = mail("FYI, please pay this one.", subject="Fwd: Invoice INV-80")
    outer.add_attachment(inner)
    unpacked = unpack_email(bytes(outer), LIMITS)
    assert unpacked.content_type == "application/pdf" and unpacked.body == pdf
    kept = unpacked.metadata["email_text"]
    assert "FYI, please pay this one." in kept
    assert "---------- Forwarded message ----------" in kept
    assert "Subject: Invoice INV-80" in kept and "See the invoice." in kept


def test_the_stored_task_keeps_the_submitters_metadata_first() -> None:
    pdf = text_pdf()
    raw = bytes(mail(attachments=(("a.pdf", "application/pdf", pdf),)))
    stored, metadata = stored_document(
        Document(content_type="message/rfc822", body=raw, filename="mail.eml",
                 kind_hint="invoice"), {"email_subject": "mine", "erp": "x"})
    assert (stored.content_type, stored.body, stored.filename, stored.kind_hint) == (
        "application/pdf", pdf, "a.pdf", "invoice")
    assert metadata["email_subject"] == "mine" and metadata["erp"] == "x"
    assert metadata["email_from"] == "Anna Berg <billing@nordlicht.example>"
    long = bytes(mail("x" * 5000, attachments=(("a.pdf", "application/pdf", pdf),)))
    _, metadata = stored_document(Document(content_type="message/rfc822", body=long), {})
    assert len(metadata["email_text"]) == MAX_METADATA_VALUE_CHARS
    # other documents pass as before
    stored, metadata = stored_document(
        Document(content_type="text/plain; charset=iso-8859-1", body="Caf\xe9".encode("latin-1")),
        {"a": "b"})
    assert (stored.content_type, stored.body, metadata) == ("text/plain", "Café".encode(),
                                                            {"a": "b"})


@pytest.mark.parametrize(("raw", "code", "says"), [
    (b"just some words\n", "corrupt", "none of the headers From, To, Date, Subject"),
    (text_pdf(), "type_mismatch", "the bytes are a PDF"),
    (bytes(mail("", subject="empty")), "empty", "no text and carries no PDF"),
    (bytes(mail(attachments=(("locked.pdf", "application/pdf", text_pdf(password="pw")),))),
     "encrypted", "attachment 'locked.pdf': the PDF is password-protected"),
    (bytes(mail("x" * (LIMITS.max_text_bytes + 10))), "too_large", "exceeds the limit"),
    (bytes(mail(attachments=(("big.pdf", "application/pdf", text_pdf(pages=31)),))),
     "too_many_pages", "attachment 'big.pdf': 31 pages"),
])
def test_bad_e_mails_get_their_specific_code(raw: bytes, code: str, says: str) -> None:
    with pytest.raises(DocumentError) as refused:
        inspect("message/rfc822", raw, LIMITS)
    assert refused.value.code == code and says in refused.value.message, refused.value.message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.integers(0, 5000), st.booleans())
def test_fuzz_mangled_e_mails_give_a_code_or_a_document(noise: bytes, at: int,
                                                        attach: bool) -> None:
    base = bytes(mail(attachments=(("a.pdf", "application/pdf", text_pdf()),) if attach else ()))
    raw = base[:at] + noise + base[at + len(noise):]
    try:
        info = inspect("message/rfc822", raw, LIMITS)
    except DocumentError as refused:
        assert refused.message
        return
    assert info.content_type in ("text/plain", "application/pdf", "image/png", "image/jpeg",
                                 "image/tiff")
    unpacked = unpack_email(raw)
    assert unpacked.content_type == info.content_type and unpacked.body
