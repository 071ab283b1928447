"""Triton Python-backend model ``document_ocr``: IMAGE (BYTES [1], a PNG or JPEG page) -> WORDS
(BYTES [1], JSON: the page's size and its words with pixel boxes and confidences).

The engine is RapidOCR from the ``rapidocr-onnxruntime`` wheel: PaddleOCR's PP-OCRv4 text
detector and recogniser and the PP-OCR mobile angle classifier as ONNX files inside the wheel,
run by onnxruntime. Nothing is fetched at run time: the models load from the installed package.

Detection on a smaller copy: the text detector looks for the lines on a copy of the page
shrunk to ``det_max_side`` pixels (a parameter of the config), where most printed text is
still well above the size it needs; the recogniser reads each line from the full page. A page
whose lines come out small there is detected again at full size (``det_min_line_px``).

Batching: the text detector sees one page at a time (pages differ in size), then the text
lines of *all* pages of the batch go through the angle classifier and the recogniser together,
``rec_batch_num`` lines per onnxruntime call, so a batch of pages costs fewer, fuller calls than
the same pages one request each.

On a GPU instance (the chart's ``instanceKind: KIND_GPU``) the sessions use onnxruntime's CUDA
provider when the installed onnxruntime has it (the ``onnxruntime-gpu`` build); otherwise they
run on the CPU and the model logs so.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

# The engine's wheels for the backend's Python, when the deployment ships them beside the model
# (the Switchyard image builds document_ocr/python3.10/ for the official Triton image); the
# embedded Triton finds them in the virtualenv instead.
_VENDORED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         f"python{sys.version_info.major}.{sys.version_info.minor}")
if os.path.isdir(_VENDORED) and _VENDORED not in sys.path:
    sys.path.insert(0, _VENDORED)

try:
    import cv2
    import onnxruntime
    from rapidocr_onnxruntime import RapidOCR
except ImportError as exc:  # the Triton image lacks the engine: say so at load time
    RapidOCR = None
    _IMPORT_ERROR = exc


def _bounds(points):
    """(x0, y0, x1, y1) of a quadrilateral's points."""
    arr = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    return [float(arr[:, 0].min()), float(arr[:, 1].min()),
            float(arr[:, 0].max()), float(arr[:, 1].max())]


def _split_line(text, box, score):
    """Words of a line whose word boxes the engine did not give: split on spaces and share the
    line's width out by character count."""
    x0, y0, x1, y1 = box
    parts = text.split()
    total = sum(len(p) for p in parts) + max(0, len(parts) - 1)
    words, pos = [], 0
    for part in parts:
        start = x0 + (x1 - x0) * pos / max(total, 1)
        pos += len(part)
        end = x0 + (x1 - x0) * pos / max(total, 1)
        pos += 1
        words.append({"text": part, "box": [start, y0, end, y1], "confidence": score})
    return words


def _word(parts):
    """A word from its (text, box, confidence) parts: box around them, lowest confidence."""
    return {"text": "".join(p[0] for p in parts),
            "box": [min(p[1][0] for p in parts), min(p[1][1] for p in parts),
                    max(p[1][2] for p in parts), max(p[1][3] for p in parts)],
            "confidence": min(1.0, max(0.0, min(p[2] for p in parts)))}


#: How much the detector would enlarge a page (to its minimum side) before the page is padded
#: instead (TritonPythonModel._padded).
PAD_OVER_ENLARGING = 2.0


def _clipped(box, width, height):
    """A box found on a padded copy, inside the page (a line may run into the padding)."""
    box[:, 0] = np.clip(box[:, 0], 0, width - 1)
    box[:, 1] = np.clip(box[:, 1], 0, height - 1)
    return box


def _merge_pieces(tokens, pieces):
    """Words from the engine's pieces (characters or words with boxes): pieces are taken in
    order until they spell each token; None when they do not line up with the tokens. A colon after a letter inside a token ends a word."""
    words, index = [], 0
    for token in tokens:
        spelled, parts = "", []
        while len(spelled) < len(token) and index < len(pieces):
            piece_text, quad, confidence = pieces[index]
            spelled += piece_text
            parts.append((piece_text, _bounds(quad), confidence))
            index += 1
        if spelled != token:
            return None
        current = []
        for position, part in enumerate(parts):
            current.append(part)
            # a label's colon glued to its value ("number:INV-2041": the recogniser often
            # drops that space) ends a word; a time's ("10:30") does not
            spelled = "".join(p[0] for p in current)
            if spelled.endswith(":") and spelled[:-1][-1:].isalpha() and \
                    position < len(parts) - 1:
                words.append(_word(current))
                current = []
        words.append(_word(current))
    return words if index == len(pieces) else None


def _without_spinning():
    """Have the engine's onnxruntime sessions made with idle worker threads that sleep.

    By default onnxruntime's intra-op threads spin, waiting for the next operator, so on a
    CPU shared with other work (the services, another model) they burn cycles doing
    nothing. RapidOCR builds its sessions from its own options and offers no setting for
    this, so the options it makes are extended here, in this model's own process, before
    the engine is built."""
    from rapidocr_onnxruntime.utils import infer_engine

    made = infer_engine.OrtInferSession._init_sess_opts

    def options(config):
        opts = made(config)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return opts

    infer_engine.OrtInferSession._init_sess_opts = staticmethod(options)


class TritonPythonModel:
    def initialize(self, args):
        if RapidOCR is None:
            raise pb_utils.TritonModelException(
                "document_ocr needs rapidocr-onnxruntime (and onnxruntime, opencv) importable by "
                f"Triton's Python backend: {_IMPORT_ERROR!r}")
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        gpu = args.get("model_instance_kind") == "GPU"
        cuda = gpu and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        spinning = params.get("allow_spinning", "1") != "0"
        if not spinning:
            _without_spinning()
        self.engine = RapidOCR(det_use_cuda=cuda, cls_use_cuda=cuda, rec_use_cuda=cuda)
        lines_per_call = int(params.get("rec_batch_num") or 6)
        self.det_max_side = int(params.get("det_max_side") or 0)
        self.det_min_line_px = float(params.get("det_min_line_px") or 0)
        self.engine.text_rec.rec_batch_num = lines_per_call
        self.engine.text_cls.cls_batch_num = lines_per_call
        if gpu and not cuda:
            pb_utils.Logger.log_warn("document_ocr: GPU instance but onnxruntime has no CUDA "
                                     "provider; running on the CPU")
        side = self.engine.text_det.limit_side_len
        pb_utils.Logger.log_info(
            f"document_ocr {params.get('model_version', '?')} loaded: {params.get('engine', '')}"
            f", cuda={cuda}, spinning threads={spinning}, "
            f"lines per call={lines_per_call}, detection on "
            f"{self.det_max_side or 'the full'} px, a short side under {side} px padded to "
            f"{side} px where the detector would enlarge it over {PAD_OVER_ENLARGING:g}x (as "
            f"the engine does by itself again under {self.det_min_line_px:g} px lines)")

    # -- the engine over many pages ------------------------------------------------------------

    def read_pages(self, images):
        """Words of each page (BGR arrays) as dicts: detection per page, then one pass of the
        angle classifier and the recogniser over the text lines of every page."""
        eng = self.engine
        pages, crops = [], []
        for img in images:
            raw_h, raw_w = img.shape[:2]
            record = {}
            work, ratio_h, ratio_w = eng.preprocess(img)
            record["preprocess"] = {"ratio_h": ratio_h, "ratio_w": ratio_w}
            work, record = eng.maybe_add_letterbox(work, record)
            boxes = self.detect(work)
            page_crops = eng.get_crop_img_list(work, boxes) if boxes is not None else []
            pages.append((raw_h, raw_w, record, boxes, len(page_crops)))
            crops.extend(page_crops)
        recognised = []
        if crops:
            crops, _, _ = eng.text_cls(crops)
            recognised, _ = eng.text_rec(crops, True)
        results, start = [], 0
        for raw_h, raw_w, record, boxes, n in pages:
            words = []
            if n:
                page_crops = crops[start:start + n]
                lines = eng.cal_rec_boxes(page_crops, boxes, recognised[start:start + n])
                line_boxes = eng._get_origin_points(boxes, record, raw_h, raw_w)
                for line_box, line in zip(line_boxes, lines):
                    words.extend(self._line_words(line, line_box, record, raw_h, raw_w))
            start += n
            results.append({"width": raw_w, "height": raw_h, "words": words})
        return results

    def detect(self, work):
        """The text lines' boxes on a page (``work``: the engine's resized page), found on a
        copy fitted to the detector, the recogniser still reading each line from the full
        page. The copy is shrunk to ``det_max_side`` pixels (the detector's cost grows with
        the pixels, and most text stays well above the size it needs there), and a page whose
        short side is under the detector's minimum is padded to it with its background
        rather than enlarged by the detector (a 480x120 strip became 2944x736 pixels, six
        times its text's size, for a line or two). Where the lines found on the copy are small
        (the lower quartile of their heights under ``det_min_line_px``: a screenshot, fine
        print) or none are found, the page is detected again as the engine does by itself."""
        eng = self.engine
        height, width = work.shape[:2]
        scale = 1.0
        if self.det_max_side and max(height, width) > self.det_max_side:
            scale = self.det_max_side / max(height, width)
        copy = work if scale == 1.0 else cv2.resize(work, None, fx=scale, fy=scale,
                                                    interpolation=cv2.INTER_AREA)
        padded = self._padded(copy)
        if scale != 1.0 or padded is not copy:
            boxes, _ = eng.auto_text_det(padded)
            # (no line at all on the copy: perhaps only small print, looked for in full)
            heights = [y1 - y0 for _, y0, _, y1 in map(_bounds, boxes or ())]
            if heights and np.percentile(heights, 25) >= self.det_min_line_px:
                return [_clipped(np.asarray(box, dtype=np.float32) / scale, width, height)
                        for box in boxes]
        boxes, _ = eng.auto_text_det(work)
        return boxes

    def _padded(self, img):
        """``img`` with its short side padded (right or bottom, in the colour of its border)
        to the detector's minimum side, where the detector would enlarge it more than
        ``PAD_OVER_ENLARGING`` times; else ``img`` itself (and when padding is off: no
        ``det_min_line_px`` to fall back on). A page enlarged less is left to the engine:
        its print is often small, and padded it would be detected twice."""
        det = self.engine.text_det
        if not self.det_min_line_px or det.limit_type != "min":
            return img
        height, width = img.shape[:2]
        limit = det.limit_side_len
        if limit <= PAD_OVER_ENLARGING * min(height, width):
            return img
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        colour = [int(c) for c in np.median(border, axis=0)]
        return cv2.copyMakeBorder(img, 0, max(0, limit - height), 0, max(0, limit - width),
                                  cv2.BORDER_CONSTANT, value=colour)

    def _line_words(self, line, line_box, record, raw_h, raw_w):
        """The words of one recognised line. The engine's boxes are per character for Latin
        text (per word for some scripts): consecutive pieces are merged up to each space of the
        line's text, the word's box around its pieces and its confidence their lowest."""
        text, score, piece_boxes, piece_texts, piece_scores = line
        score = min(1.0, max(0.0, float(score)))
        if not text.strip() or score < self.engine.text_score:
            return []
        tokens = text.split()
        if piece_boxes and len(piece_boxes) == len(piece_texts):
            points = self.engine._get_origin_points(piece_boxes, record, raw_h, raw_w)
            scores = list(piece_scores) if len(piece_scores) == len(piece_texts) else \
                [score] * len(piece_texts)
            pieces = [(str(t).replace(" ", ""), q, float(c))
                      for t, q, c in zip(piece_texts, points, scores) if str(t).strip()]
            words = _merge_pieces(tokens, pieces)
            if words is not None:
                return words
        return _split_line(text, _bounds(line_box), score)

    # -- Triton --------------------------------------------------------------------------------

    def execute(self, requests):
        images, owners, errors = [], [], {}
        for index, request in enumerate(requests):
            rows = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            decoded = []
            for row in rows:
                data = row if isinstance(row, bytes) else bytes(row)
                img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
                if img is None:
                    errors[index] = "IMAGE: a row is not a PNG or JPEG image"
                    break
                decoded.append(img)
            if index not in errors:
                images.extend(decoded)
                owners.extend([index] * len(decoded))
        pages = self.read_pages(images) if images else []
        per_request = {i: [] for i in range(len(requests))}
        for owner, page in zip(owners, pages):
            per_request[owner].append(json.dumps(page, separators=(",", ":")).encode("utf-8"))
        responses = []
        for index in range(len(requests)):
            if index in errors:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(errors[index])))
                continue
            rows = per_request[index]
            out = np.array(rows, dtype=np.object_).reshape(len(rows), 1)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("WORDS", out)]))
        return responses

    def finalize(self):
        self.engine = None
