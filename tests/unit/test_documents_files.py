"""switchyard.documents._files: inspect refuses each bad document with its own code (never
another exception, never a hang) and render_page draws real pages."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard import Settings
from switchyard.documents import (
    ERROR_CODES,
    DocumentError,
    DocumentLimits,
    inspect,
    read_pdf_pages,
    render_page,
    sniff,
)
from tests.document_samples import (
    corrupt_pdf,
    image,
    png_bomb,
    rotated_jpeg,
    text_pdf,
    tiff,
    truncated,
)

LIMITS = DocumentLimits()


def code_of(content_type: str, body: bytes, limits: DocumentLimits = LIMITS) -> str:
    with pytest.raises(DocumentError) as caught:
        inspect(content_type, body, limits)
    return caught.value.code


def test_good_documents_and_their_page_counts() -> None:
    assert inspect("application/pdf", text_pdf(pages=3), LIMITS).page_count == 3
    assert inspect("image/png", image("PNG"), LIMITS).page_count == 1
    assert inspect(" IMAGE/JPEG ", image("JPEG"), LIMITS).content_type == "image/jpeg"
    assert inspect("image/tiff", tiff(), LIMITS).page_count == 3
    assert inspect("text/plain", b"hello", LIMITS).page_count == 0
    assert inspect("", b'{"a": 1}', LIMITS).content_type == "text/plain"


def test_each_bad_document_gets_its_specific_code() -> None:
    assert code_of("application/msword", b"x") == "unsupported_type"
    assert code_of("application/pdf", b"") == "empty"
    assert code_of("application/pdf", image("PNG")) == "type_mismatch"
    assert code_of("image/png", text_pdf()) == "type_mismatch"
    assert code_of("image/jpeg", image("PNG")) == "type_mismatch"
    assert code_of("image/png", b"just some text") == "type_mismatch"
    assert code_of("text/plain", text_pdf()) == "type_mismatch"
    assert code_of("application/pdf", text_pdf(pages=40)) == "too_many_pages"
    assert code_of("image/tiff", tiff(), DocumentLimits(max_pages=2)) == "too_many_pages"
    assert code_of("application/pdf", text_pdf(), DocumentLimits(max_bytes=100)) == "too_large"
    assert code_of("text/plain", b"x" * 11, DocumentLimits(max_text_bytes=10)) == "too_large"
    assert code_of("image/png", png_bomb()) == "too_many_pixels"
    assert code_of("image/png", image("PNG"), DocumentLimits(max_pixels=1000)) \
        == "too_many_pixels"
    # a PDF page whose size would render to more pixels than allowed (a page-size bomb)
    assert code_of("application/pdf", text_pdf(size=(14400, 14400))) == "too_many_pixels"
    assert code_of("application/pdf", corrupt_pdf()) == "corrupt"
    assert code_of("application/pdf", truncated(text_pdf(), 0.3)) == "corrupt"
    assert code_of("image/png", truncated(image("PNG", size=(300, 300), colour="red"))) \
        == "corrupt"
    assert code_of("image/jpeg", truncated(image("JPEG", size=(300, 300)), 0.4)) == "corrupt"
    assert code_of("application/pdf", text_pdf(password="secret")) == "encrypted"
    assert code_of("text/plain", b"\xff\xfe") == "corrupt"
    assert code_of("application/json", b"{") == "corrupt"


def test_errors_name_the_field_and_say_what_is_wrong() -> None:
    with pytest.raises(DocumentError) as caught:
        inspect("image/png", text_pdf(), LIMITS)
    assert caught.value.field == "body"
    assert str(caught.value) == "declared image/png but the bytes are a PDF"
    with pytest.raises(DocumentError) as caught:
        inspect("application/zip", b"PK", LIMITS)
    assert caught.value.field == "content_type"
    with pytest.raises(DocumentError) as caught:
        inspect("application/pdf", text_pdf(pages=40), LIMITS)
    assert "40 pages exceeds the limit of 30 pages" in str(caught.value)


def test_limits_come_from_settings() -> None:
    limits = DocumentLimits.from_settings(Settings(
        max_payload_bytes=7, document_max_bytes=8, document_max_pages=9,
        document_max_pixels=10, document_render_dpi=72))
    assert limits == DocumentLimits(7, 8, 9, 10, 72)


def test_render_pdf_page_at_dpi() -> None:
    page = render_page("application/pdf", text_pdf(pages=2, size=(200, 100)), 2, dpi=72)
    assert page.mode == "RGB"
    assert page.size == (200, 100)
    assert page.getpixel((5, 5)) == (0, 0, 0)          # the black square, top left
    assert page.getpixel((190, 90)) == (255, 255, 255)
    assert render_page("application/pdf", text_pdf(size=(200, 100)), 1, dpi=144).size \
        == (400, 200)
    with pytest.raises(IndexError):
        render_page("application/pdf", text_pdf(), 2, dpi=72)


def test_render_images_tiff_frames_and_exif_rotation() -> None:
    assert render_page("image/png", image("PNG"), 1).getpixel((2, 2)) == (0, 0, 0)
    assert render_page("image/tiff", tiff(), 2).getpixel((1, 1)) == (0, 128, 0)
    assert render_page("image/tiff", tiff(), 3).getpixel((1, 1)) == (0, 0, 255)
    assert render_page("image/jpeg", rotated_jpeg((40, 20)), 1).size == (20, 40)
    with pytest.raises(IndexError):
        render_page("image/tiff", tiff(), 4)


def test_render_refuses_what_inspect_refuses() -> None:
    with pytest.raises(DocumentError) as caught:
        render_page("image/png", png_bomb(), 1)
    assert caught.value.code == "too_many_pixels"
    with pytest.raises(DocumentError) as caught:
        render_page("application/pdf", text_pdf(), 1, dpi=600,
                    limits=DocumentLimits(max_pixels=1_000_000))
    assert caught.value.code == "too_many_pixels"
    with pytest.raises(DocumentError) as caught:
        render_page("text/plain", b"hi", 1)
    assert caught.value.code == "unsupported_type"


SEEDS = {"application/pdf": text_pdf(), "image/png": image("PNG"),
         "image/jpeg": image("JPEG"), "image/tiff": tiff()}
TYPES = st.sampled_from(sorted(SEEDS) + ["text/plain", "application/json", "image/gif"])


@st.composite
def mangled(draw: st.DrawFn) -> tuple[str, bytes]:
    """A real document with bytes flipped, cut or inserted, under its type or another."""
    content_type = draw(st.sampled_from(sorted(SEEDS)))
    body = bytearray(SEEDS[content_type])
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(body) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            body[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del body[at: at + draw(st.integers(1, 64))]
        else:
            body[at:at] = draw(st.binary(min_size=1, max_size=32))
        if not body:
            break
    declared = draw(st.one_of(st.just(content_type), TYPES))
    return declared, bytes(body)


def _only_document_errors(content_type: str, body: bytes) -> None:
    try:
        info = inspect(content_type, body, LIMITS)
    except DocumentError as exc:
        assert exc.code in ERROR_CODES
        return
    if info.page_count:  # what inspect accepts renders, and a PDF's text layer reads
        render_page(info.content_type, body, 1, dpi=36)
        if info.content_type == "application/pdf":
            pages = read_pdf_pages(body, max_pages=3)
            assert len(pages) == min(info.page_count, 3)
            for page in pages:
                for word in page.layout.words if page.layout else ():
                    assert word.text.strip() and 0 <= word.box.x0 <= word.box.x1 <= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mangled())
def test_fuzz_mangled_documents_give_a_code_or_render(case: tuple[str, bytes]) -> None:
    try:
        _only_document_errors(*case)
    except DocumentError as exc:  # render_page may still refuse what the parser accepted
        assert exc.code in ERROR_CODES


@settings(max_examples=150, deadline=None)
@given(TYPES, st.sampled_from([b"%PDF-", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00",
                               b"MM\x00*", b""]), st.binary(max_size=512))
def test_fuzz_random_bytes_behind_magic_numbers(content_type: str, magic: bytes,
                                                rest: bytes) -> None:
    try:
        _only_document_errors(content_type, magic + rest)
    except DocumentError as exc:
        assert exc.code in ERROR_CODES


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1100), st.booleans())
def test_fuzz_a_prefix_before_a_pdf(prefix: bytes, whole: bool) -> None:
    # whatever stands before the header, a code or a page that renders, never a crash
    body = prefix + (text_pdf() if whole else b"%PDF-1.7\n" + prefix)
    try:
        _only_document_errors("application/pdf", body)
    except DocumentError as exc:
        assert exc.code in ERROR_CODES


def test_sniff() -> None:
    assert sniff(text_pdf()) == "application/pdf"
    assert sniff(tiff()) == "image/tiff"
    assert sniff(b"hello") is None


def test_a_pdf_behind_a_prefix_opens_as_pdf_readers_open_it() -> None:
    # a harness or a gateway wrote lines before the header: readers look 1024 bytes in
    prefixed = b"PHPUnit 9.5.3 by Sebastian Bergmann and contributors.\n\n" + text_pdf()
    limits = DocumentLimits.from_settings(Settings())
    assert inspect("application/pdf", prefixed, limits).page_count == 1
    from switchyard.documents import read_text_layer

    assert read_text_layer(prefixed)[0] is not None
    assert render_page("application/pdf", prefixed, 1).size[0] > 0  # the OCR path's pages
    # past the window it is no PDF; a text quoting the header stays text
    with pytest.raises(DocumentError) as err:
        inspect("application/pdf", b"x" * 1100 + text_pdf(), limits)
    assert err.value.code == "type_mismatch"
    assert sniff(b"see the header %PDF-1.7 in the attachment") is None
    assert inspect("text/plain", b"see the header %PDF-1.7 in the attachment",
                   limits).content_type == "text/plain"


def test_a_parsers_error_names_no_python_object() -> None:
    with pytest.raises(DocumentError) as refused:
        inspect("image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00", LIMITS)
    assert refused.value.code == "corrupt"
    assert refused.value.message == ("not a readable image/png file (UnidentifiedImageError: "
                                     "cannot identify image file)")
