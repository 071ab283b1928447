"""A sentence encoder in numpy: all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions), mean-pooled
and normalised as sentence-transformers does, for the ``text_encoder`` Triton model.

One code path for training and serving: the cascade head is trained on embeddings computed
by this module, and the Triton model loads a verbatim copy of it (``encoder.py`` in its
version directory, sha256-checked against the head's card), so what was measured is what runs.
It imports nothing but numpy and the standard library for that reason: the copy runs in
Triton's Python backend.

Written by hand rather than with the ``tokenizers`` / ``safetensors`` wheels: the current
``tokenizers`` pulls ``huggingface-hub``, whose releases require a ``click`` that
faust-streaming refuses, and both formats are small. BERT's uncased WordPiece is: clean and
lower-case the text, strip accents, split on whitespace and punctuation (CJK characters
apart), then split each word greedily into the longest vocabulary pieces (``##`` marks a
continuation; a word with no split is ``[UNK]``). A safetensors file is an 8-byte header size,
a JSON header (dtype, shape, byte offsets per tensor) and the raw little-endian data. The
tests compare the tokens with ones the reference ``tokenizers`` library produced.
"""

from __future__ import annotations

import json
import struct
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Tokens per document the encoder reads (the model was trained on up to 256; a document's head
#: says what it is, and attention's cost grows with the square of the length).
MAX_TOKENS = 128
DIMENSIONS = 384
LAYERS = 6
HEADS = 12
_EPS = 1e-12


def _is_punctuation(ch: str) -> bool:
    code = ord(ch)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(code: int) -> bool:
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
            or 0x2A700 <= code <= 0x2B73F or 0x2B740 <= code <= 0x2B81F
            or 0x2B820 <= code <= 0x2CEAF or 0xF900 <= code <= 0xFAFF
            or 0x2F800 <= code <= 0x2FA1F)


class WordPiece:
    """BERT's uncased tokenizer over a ``tokenizer.json`` vocabulary."""

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab
        self.unk, self.cls, self.sep = vocab["[UNK]"], vocab["[CLS]"], vocab["[SEP]"]

    @classmethod
    def from_file(cls, path: Path) -> WordPiece:
        return cls(json.loads(Path(path).read_text("utf-8"))["model"]["vocab"])

    @staticmethod
    def words(text: str) -> list[str]:
        """The basic tokenizer: cleaned, lower-cased, accents stripped, split on whitespace
        and punctuation, each CJK character a word of its own."""
        out: list[str] = []
        current: list[str] = []

        def flush() -> None:
            if current:
                out.append("".join(current))
                current.clear()

        text = unicodedata.normalize("NFD", text.lower())
        for ch in text:
            code = ord(ch)
            if code == 0 or code == 0xFFFD or unicodedata.category(ch) == "Mn":
                continue   # a combining accent (stripped), NUL, the replacement character
            if ch.isspace() or (unicodedata.category(ch) in ("Cc", "Cf")):
                flush()
            elif _is_punctuation(ch) or _is_cjk(code):
                flush()
                out.append(ch)
            else:
                current.append(ch)
        flush()
        return out

    def pieces(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return ids

    def pieces_per_word(self, text: str, max_tokens: int = MAX_TOKENS) -> float:
        """How much of what the encoder reads of ``text`` its vocabulary knows: word pieces
        per word of two letters or more, over the words within its first ``max_tokens``
        tokens (1.0 when each is a vocabulary word). The model was pretrained on English:
        English prose reads at 1.1 to 1.4, German or Polish business text at 2 to 3, as
        fragments whose embedding says little of what the text is about."""
        pieces = words = read = 0
        for word in self.words(text):
            count = len(self.pieces(word))
            read += count
            if read > max_tokens - 2:
                break
            if len(word) >= 2 and word.isalpha():
                pieces, words = pieces + count, words + 1
        return pieces / words if words else 1.0

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        """``[CLS] pieces... [SEP]``, cut to ``max_tokens``."""
        ids = [self.cls]
        for word in self.words(text):
            ids.extend(self.pieces(word))
            if len(ids) >= max_tokens - 1:
                break
        return ids[:max_tokens - 1] + [self.sep]


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, as numpy arrays (float32 / int64 only)."""
    dtypes = {"F32": np.float32, "I64": np.int64}
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
        data = fh.read()
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        begin, end = spec["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype=dtypes[spec["dtype"]]).reshape(
            spec["shape"])
    return tensors


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + _EPS) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    # BERT's exact GELU, x * Phi(x), through erf (numpy has none: Abramowitz-Stegun 7.1.26,
    # error below 1.5e-7, far under float32's)
    z = x / np.sqrt(2.0)
    sign = np.sign(z)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (
        -1.453152027 + t * 1.061405429))))
    erf = sign * (1.0 - poly * np.exp(-a * a))
    return 0.5 * x * (1.0 + erf)


class Encoder:
    """Texts in, L2-normalised 384-dimensional sentence embeddings out."""

    def __init__(self, directory: Path) -> None:
        directory = Path(directory)
        self.tokenizer = WordPiece.from_file(directory / "tokenizer.json")
        w = load_safetensors(directory / "model.safetensors")
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.embed_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."

            def g(name: str) -> np.ndarray:
                return w[p + name]

            # query, key and value in one matrix: one multiplication instead of three
            qkv = np.concatenate([g(f"attention.self.{n}.weight") for n in
                                  ("query", "key", "value")]).T.copy()
            qkv_bias = np.concatenate([g(f"attention.self.{n}.bias") for n in
                                       ("query", "key", "value")])
            self.layers.append((
                qkv, qkv_bias,
                g("attention.output.dense.weight").T.copy(), g("attention.output.dense.bias"),
                g("attention.output.LayerNorm.weight"), g("attention.output.LayerNorm.bias"),
                g("intermediate.dense.weight").T.copy(), g("intermediate.dense.bias"),
                g("output.dense.weight").T.copy(), g("output.dense.bias"),
                g("output.LayerNorm.weight"), g("output.LayerNorm.bias")))

    def tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids [batch, longest] (padded with 0) and the attention mask."""
        encoded = [self.tokenizer.encode(t) for t in texts]
        longest = max((len(e) for e in encoded), default=2)
        ids = np.zeros((len(encoded), longest), dtype=np.int64)
        mask = np.zeros((len(encoded), longest), dtype=np.float32)
        for row, e in enumerate(encoded):
            ids[row, :len(e)] = e
            mask[row, :len(e)] = 1.0
        return ids, mask

    def encode(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """[len(texts), 384] float32, each row of unit length. Texts are batched by length
        (short ones are not padded to a long one's size)."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = self._forward(*self.tokens([texts[i] for i in rows]))
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = ids.shape
        x = self.word[ids] + self.position[:length] + self.token_type
        x = _layer_norm(x, *self.embed_norm)
        head = DIMENSIONS // HEADS
        # padding is never attended to
        blocked = ((1.0 - mask) * -1e9)[:, None, None, :]
        for (qkv, qkv_b, out_w, out_b, n1_w, n1_b, in_w, in_b, ff_w, ff_b, n2_w,
             n2_b) in self.layers:
            q, k, v = np.split(x @ qkv + qkv_b, 3, axis=-1)

            def heads(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, length, HEADS, head).transpose(0, 2, 1, 3)

            scores = heads(q) @ heads(k).transpose(0, 1, 3, 2) / np.sqrt(head) + blocked
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ heads(v)).transpose(0, 2, 1, 3).reshape(batch, length, -1)
            x = _layer_norm(x + context @ out_w + out_b, n1_w, n1_b)
            x = _layer_norm(x + _gelu(x @ in_w + in_b) @ ff_w + ff_b, n2_w, n2_b)
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def head_probabilities(embeddings: np.ndarray, weights: np.ndarray, bias: np.ndarray,
                       temperature: float) -> np.ndarray:
    """Class probabilities of the cascade's linear head on embeddings (float32): here, beside
    the encoder, so training's metrics and the Triton model run the same function."""
    logits = (embeddings.astype(np.float32) @ weights + bias) / np.float32(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


__all__ = ["DIMENSIONS", "MAX_TOKENS", "Encoder", "WordPiece", "head_probabilities",
           "load_safetensors"]
