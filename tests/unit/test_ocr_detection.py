"""The OCR model's text detection on a shrunk copy of the page (models/repository/document_ocr/
1/model.py ``detect``): the model initialised from its shipped config with the real RapidOCR
engine in-process, and the stand-in for Triton's ``triton_python_backend_utils`` the training
tests load model.py files with. Through Triton: tests/decision/test_models_on_triton.py."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.models.test_training import REPO, _config_json, _load_model

LINES = ("Invoice number: INV-7731", "Order reference: PO-55120", "Total due: 4,210.50 EUR")


@pytest.fixture(scope="module")
def ocr_model() -> Iterator[object]:
    with pytest.MonkeyPatch.context() as patch:  # the stand-in only while the module imports
        module = _load_model(REPO / "document_ocr" / "1" / "model.py", patch)
    model = module.TritonPythonModel()
    model.initialize({"model_config": _config_json("document_ocr")})
    # as the config ships them
    assert (model.det_max_side, model.det_min_line_px) == (1280, 15.0)
    yield model


def _page(font_px: int, size: tuple[int, int] = (2000, 1400), top: int = 150,
          left: int = 120, spacing: float = 3) -> np.ndarray:
    """A white page (BGR, as the model decodes it) with :data:`LINES` at ``font_px``, the
    first at ``top``, each ``spacing`` font sizes below the last."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=font_px)
    for number, text in enumerate(LINES):
        draw.text((left, top + int(number * spacing * font_px)), text, fill="black", font=font)
    return np.array(page)[:, :, ::-1].copy()


def _read(model: object, page: np.ndarray, shapes: list[tuple[int, int]] | None = None
          ) -> tuple[list[str], list[int]]:
    """The words read, and the longest side of each image the detector ran on (``shapes``:
    gets each one's height and width)."""
    engine = model.engine  # type: ignore[attr-defined]
    detector, runs = engine.auto_text_det, []

    def counted(image: np.ndarray):  # type: ignore[no-untyped-def]
        runs.append(max(image.shape[:2]))
        if shapes is not None:
            shapes.append(image.shape[:2])
        return detector(image)

    engine.auto_text_det = counted
    try:
        words = model.read_pages([page])[0]["words"]  # type: ignore[attr-defined]
    finally:
        engine.auto_text_det = detector
    return [w["text"] for w in words], runs


def test_print_of_an_ordinary_size_is_found_on_the_shrunk_copy_and_read_in_full(
        ocr_model: object) -> None:
    words, runs = _read(ocr_model, _page(36))
    assert runs == [1280]
    assert words[:2] == ["Invoice", "number:"] and {"reference:", "4,210.50"} <= set(words)


def test_small_print_and_a_page_without_lines_are_detected_again_in_full(
        ocr_model: object) -> None:
    # 12-pixel print: its lines come out small on the copy; 8-pixel print: none are found
    # there at all (the full page finds them)
    for font_px in (12, 8):
        words, runs = _read(ocr_model, _page(font_px))
        assert runs == [1280, 2000] and {"PO-55120", "4,210.50"} <= set(words), \
            (font_px, words)
    blank = np.full((1400, 2000, 3), 255, dtype=np.uint8)
    assert _read(ocr_model, blank) == ([], [1280, 2000])


def test_a_page_no_larger_than_the_copy_is_detected_once_as_it_is(ocr_model: object) -> None:
    words, runs = _read(ocr_model, _page(24, size=(1200, 800)))
    assert runs == [1200] and "PO-55120" in words


def test_a_strip_is_padded_to_the_detectors_side_not_enlarged(ocr_model: object) -> None:
    # a 1,100 x 160 strip: the detector would enlarge it 4.6 times to 736 pixels high (about
    # 5,100 x 736); padded with its background it is detected as 1,100 x 736, its print as
    # large as it is, and every line still read
    strip = _page(28, size=(1100, 160), top=12, left=20, spacing=1.4)
    shapes: list[tuple[int, int]] = []
    words, _ = _read(ocr_model, strip, shapes)
    # (where the recogniser puts a space varies with a line's crop, padded or not)
    assert shapes == [(736, 1100)] and "PO-55120" in words, (shapes, words)
    assert "4,210.50" in "".join(words), words
    # 8-pixel print on a strip: found small on the padded copy, so detected again as the
    # engine does by itself (enlarged: the image it gets is the strip as it is)
    shapes.clear()
    words, _ = _read(ocr_model, _page(8, size=(700, 120), top=10, left=20, spacing=1.6),
                     shapes)
    assert shapes == [(736, 736), (120, 700)] and "PO-55120" in words, (shapes, words)
    # a page the detector enlarges less than twice is left to it (its print is often small)
    shapes.clear()
    _read(ocr_model, _page(24, size=(900, 500)), shapes)
    assert shapes == [(500, 900)]


def test_the_engines_sessions_let_idle_threads_sleep(ocr_model: object) -> None:
    """As the config ships it (allow_spinning "0"): every onnxruntime session of the engine
    (detector, angle classifier, recogniser) was made with spinning off."""
    engine = ocr_model.engine  # type: ignore[attr-defined]
    for part in (engine.text_det, engine.text_cls, engine.text_rec):
        made = part.infer if hasattr(part, "infer") else part.session  # (the recogniser's)
        options = made.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
