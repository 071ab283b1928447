"""Featurization and forward passes shared by training and the Triton models. ONE copy of the truth.

This module is deliberately standalone: it imports only the standard library and numpy and
never does a relative import. Training imports it as ``services.decision.training.features``;
training also copies this file, byte for byte, into each model's version directory as
``featurize.py`` (``models/repository/<model>/1/featurize.py``), and records its sha256 in the
weights file and the model card. The Triton ``model.py`` loads that copy by file path and refuses
to start when its sha256 differs from the one the weights were trained with. So the text ->
vector and vector -> probability code that produced the card's metrics is exactly the code
Triton runs; a change here makes ``python -m services.decision.training --if-missing`` retrain.

Two models:

document_router
    text -> hashed bag of UTF-8 byte n-grams (3, 4, 5) over a normalized text (NFKC, lower case,
    every digit -> ``0``, whitespace collapsed, at most ``MAX_CHARS`` characters) plus hashed word
    unigrams and bigrams; sublinear term frequency (1 + ln tf), each row L2-normalized, in
    ``ROUTER_DIM`` = 2**18 buckets -> multinomial logistic regression -> softmax(logits / T)
    with T fitted on the validation split (temperature scaling). Classes: one per enabled pack,
    and ``other`` (services/decision/training/packs.py); the weights' ``meta`` lists them.

invoice_risk
    a flat invoice record -> the raw vector ``INVOICE_FEATURES`` (what Triton receives as
    ``FEATURES``) -> engineered design matrix ``INVOICE_DESIGN`` -> standardize -> logistic
    regression -> Platt scaling fitted on the validation split -> P(auto: processed without a
    person).

Also here: the binning and population stability index (PSI) used with the drift baselines in
the model cards, so live traffic is binned exactly like the training baseline.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
import zlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

FEATURIZER_VERSION = "1"

# --------------------------------------------------------------------------------------------
# document router
# --------------------------------------------------------------------------------------------

#: The labels of the shipped corpus (models/data), in the order training gives the shipped
#: packs' classes. The deployed router's classes (its PROBS order) are the enabled packs' and
#: ``other``, written by training into the model's meta, card and Triton config.
ROUTER_CLASSES: tuple[str, ...] = (
    "invoice",
    "admission_form",
    "support_ticket",
    "classroom_event",
    "other",
)
ROUTER_HASH_BITS = 18
ROUTER_DIM = 1 << ROUTER_HASH_BITS
CHAR_NGRAMS: tuple[int, ...] = (3, 4, 5)
MAX_CHARS = 4000
WORD_WEIGHT = 2.0  # word uni/bigram counts weigh this much relative to one char n-gram

_DIGIT = re.compile(r"\d")
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_MASK = np.uint64(ROUTER_DIM - 1)
_PRIME = np.uint64(0x100000001B3)


def normalize_text(text: str) -> str:
    """NFKC, lower case, digits -> '0', whitespace collapsed, truncated to MAX_CHARS."""
    text = unicodedata.normalize("NFKC", text)[: MAX_CHARS * 2].lower()
    text = _DIGIT.sub("0", text)
    return _SPACE.sub(" ", text).strip()[:MAX_CHARS]


def _mix(h: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finalizer, vectorized (uint64 arithmetic wraps)."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xFF51AFD7ED558CCD)
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xC4CEB9FE1A85EC53)
        h = h ^ (h >> np.uint64(33))
    return h


def router_featurize(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texts -> CSR rows ``(indptr int64[n+1], indices int64[nnz], values float32[nnz])``.

    Deterministic and platform independent (crc32 and fixed 64-bit integer hashing, no Python
    ``hash``). Rows are L2-normalized; an empty text gives an empty row.
    """
    n = len(texts)
    norms = [normalize_text(t if isinstance(t, str) else str(t)) for t in texts]
    encoded = [(" " + s + " ").encode("utf-8") for s in norms]
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=n)
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.uint64)
    doc = np.repeat(np.arange(n, dtype=np.int64), lengths)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    with np.errstate(over="ignore"):
        for k in CHAR_NGRAMS:
            m = buf.size - k + 1
            if m <= 0:
                continue
            h = np.full(m, np.uint64(0x9E3779B97F4A7C15) * np.uint64(k), dtype=np.uint64)
            for j in range(k):
                h = h * _PRIME + buf[j : j + m]
            valid = doc[:m] == doc[k - 1 : k - 1 + m]
            rows.append(doc[:m][valid])
            cols.append((_mix(h[valid]) & _MASK).astype(np.int64))
            weights.append(np.ones(rows[-1].size, dtype=np.float64))
    word_rows: list[int] = []
    word_hashes: list[int] = []
    for i, s in enumerate(norms):
        prev = b""
        for tok in _WORD.findall(s):
            t = tok.encode("utf-8")
            word_rows.append(i)
            word_hashes.append(zlib.crc32(b"\x01w" + t))
            if prev:
                word_rows.append(i)
                word_hashes.append(zlib.crc32(b"\x02b" + prev + b" " + t))
            prev = t
    if word_rows:
        wh = np.asarray(word_hashes, dtype=np.uint64) | (np.uint64(1) << np.uint64(40))
        rows.append(np.asarray(word_rows, dtype=np.int64))
        cols.append((_mix(wh) & _MASK).astype(np.int64))
        weights.append(np.full(len(word_rows), WORD_WEIGHT, dtype=np.float64))
    if not rows or sum(r.size for r in rows) == 0:
        return (np.zeros(n + 1, dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    w = np.concatenate(weights)
    keys = r * ROUTER_DIM + c
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    w = w[order]
    first = np.ones(keys.size, dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    starts = np.flatnonzero(first)
    tf = np.add.reduceat(w, starts)
    ukeys = keys[starts]
    urows = ukeys // ROUTER_DIM
    values = 1.0 + np.log(tf)
    norm = np.sqrt(np.bincount(urows, weights=values * values, minlength=n))
    values = values / norm[urows]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(urows, minlength=n), out=indptr[1:])
    return indptr, (ukeys % ROUTER_DIM).astype(np.int64), values.astype(np.float32)


def csr_rows(indptr: np.ndarray) -> np.ndarray:
    """Row index of every stored value of a CSR matrix."""
    return np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))


def router_logits(
    csr: tuple[np.ndarray, np.ndarray, np.ndarray], weights: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    """CSR features x weights[D, C] + bias[C] -> logits float64 [n, C]."""
    indptr, indices, values = csr
    n = indptr.size - 1
    rows = csr_rows(indptr)
    contrib = weights[indices].astype(np.float64) * values.astype(np.float64)[:, None]
    out = np.empty((n, weights.shape[1]), dtype=np.float64)
    for c in range(weights.shape[1]):
        out[:, c] = np.bincount(rows, weights=contrib[:, c], minlength=n)
    return out + bias.astype(np.float64)[None, :]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def router_predict_proba(
    texts: Sequence[str], weights: np.ndarray, bias: np.ndarray, temperature: float
) -> np.ndarray:
    """Texts -> calibrated class probabilities float32 [n, classes] (one per column of ``weights``)."""
    if len(texts) == 0:
        return np.zeros((0, weights.shape[1]), dtype=np.float32)
    logits = router_logits(router_featurize(texts), weights, bias)
    return softmax(logits / float(temperature)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# invoice risk
# --------------------------------------------------------------------------------------------

#: Order of the raw vector Triton's invoice_risk receives as FEATURES (FP32). The contract.
INVOICE_FEATURES: tuple[str, ...] = (
    "amount",  # invoice total, in the invoice currency, >= 0
    "vendor_mean_amount",  # mean total of the vendor's past invoices; 0 when unknown
    "vendor_known",  # 1 when the vendor is in the vendor master, else 0
    "vendor_invoice_count",  # invoices seen from the vendor before (0 when unknown)
    "has_po_number",  # 1 when a purchase-order number was extracted
    "days_until_due",  # due date - received date, days (negative: already overdue)
    "currency_mismatch",  # 1 when the invoice currency differs from the vendor's usual one
    "duplicate_invoice_number",  # 1 when (vendor, invoice number) was seen before
    "extraction_confidence",  # field-extraction confidence in [0, 1]
    "line_items_total_mismatch",  # 1 when the line items do not add up to the total (1%)
    "bank_details_changed",  # 1 when the remittance bank account differs from the master's
    "line_item_count",  # number of extracted line items
)
INVOICE_DIM = len(INVOICE_FEATURES)

#: Columns of the design matrix the logistic regression sees (derived from INVOICE_FEATURES).
INVOICE_DESIGN: tuple[str, ...] = (
    "log_amount",
    "log_amount_vs_vendor_mean",
    "abs_log_amount_vs_vendor_mean",
    "amount_over_2x_vendor_mean",
    "vendor_unknown",
    "log_vendor_invoice_count",
    "no_po_number",
    "no_po_and_amount_over_1000",
    "days_until_due_clipped",
    "overdue",
    "due_within_3_days",
    "currency_mismatch",
    "duplicate_invoice_number",
    "extraction_confidence",
    "low_extraction_confidence",
    "line_items_total_mismatch",
    "bank_details_changed",
    "log_line_item_count",
)


def _date(value: object) -> _dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    return _dt.date.fromisoformat(str(value)[:10])


def invoice_raw_features(invoice: Mapping[str, object]) -> list[float]:
    """A flat invoice record -> the raw FEATURES vector (ordered as ``INVOICE_FEATURES``).

    Keys read (all optional except ``amount``): ``amount``, ``currency``, ``vendor_currency``,
    ``po_number``, ``received_date`` / ``due_date`` (ISO dates) or ``days_until_due``,
    ``line_items_total``, ``line_item_count``, ``extraction_confidence``,
    ``bank_details_changed``, ``duplicate_invoice_number``, ``vendor_known``,
    ``vendor_mean_amount``, ``vendor_invoice_count``. The vendor-history and duplicate
    fields are context the caller looks up (vendor master, past invoices).
    """
    amount = max(0.0, float(invoice.get("amount") or 0.0))  # type: ignore[arg-type]
    known = bool(invoice.get("vendor_known"))
    mean = float(invoice.get("vendor_mean_amount") or 0.0) if known else 0.0  # type: ignore[arg-type]
    count = float(invoice.get("vendor_invoice_count") or 0.0) if known else 0.0  # type: ignore[arg-type]
    po = invoice.get("po_number")
    has_po = bool(po) and str(po).strip().lower() not in {"", "n/a", "none", "-"}
    if invoice.get("days_until_due") is not None:
        days = float(invoice["days_until_due"])  # type: ignore[arg-type]
    else:
        due, received = _date(invoice.get("due_date")), _date(invoice.get("received_date"))
        days = float((due - received).days) if due and received else 30.0
    currency = str(invoice.get("currency") or "").upper()
    usual = str(invoice.get("vendor_currency") or "").upper()
    mismatch = bool(currency and usual and currency != usual)
    lines_total = invoice.get("line_items_total")
    lines_mismatch = lines_total is not None and abs(float(lines_total) - amount) > max(  # type: ignore[arg-type]
        0.01, 0.01 * amount
    )
    conf = invoice.get("extraction_confidence")
    return [
        amount,
        mean,
        1.0 if known else 0.0,
        count,
        1.0 if has_po else 0.0,
        days,
        1.0 if mismatch else 0.0,
        1.0 if invoice.get("duplicate_invoice_number") else 0.0,
        min(1.0, max(0.0, float(conf))) if conf is not None else 0.5,  # type: ignore[arg-type]
        1.0 if lines_mismatch else 0.0,
        1.0 if invoice.get("bank_details_changed") else 0.0,
        float(invoice.get("line_item_count") or 0.0),  # type: ignore[arg-type]
    ]


def invoice_raw_matrix(invoices: Iterable[Mapping[str, object]]) -> np.ndarray:
    rows = [invoice_raw_features(inv) for inv in invoices]
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), INVOICE_DIM)


def invoice_design(raw: np.ndarray) -> np.ndarray:
    """Raw FEATURES [n, INVOICE_DIM] -> design matrix float64 [n, len(INVOICE_DESIGN)]."""
    x = np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0, posinf=1e12, neginf=-1e12)
    x = x.reshape(-1, INVOICE_DIM)
    amount = np.clip(x[:, 0], 0.0, 1e12)
    mean = np.clip(x[:, 1], 0.0, 1e12)
    known = (x[:, 2] > 0.5).astype(np.float64)
    count = np.clip(x[:, 3], 0.0, 1e9)
    has_po = (x[:, 4] > 0.5).astype(np.float64)
    days = np.clip(x[:, 5], -365.0, 365.0)
    conf = np.clip(x[:, 8], 0.0, 1.0)
    ratio = np.where(known > 0, np.log1p(amount) - np.log1p(mean), 0.0)
    bank = (x[:, 10] > 0.5).astype(np.float64)
    cols = [
        np.log1p(amount),
        np.clip(ratio, -5.0, 5.0),
        np.clip(np.abs(ratio), 0.0, 5.0),
        ((known > 0) & (amount > 2.0 * mean)).astype(np.float64),
        1.0 - known,
        np.log1p(count),
        1.0 - has_po,
        (1.0 - has_po) * (amount > 1000.0),
        np.clip(days, -30.0, 90.0) / 30.0,
        (days < 0).astype(np.float64),
        ((days >= 0) & (days < 3)).astype(np.float64),
        (x[:, 6] > 0.5).astype(np.float64),
        (x[:, 7] > 0.5).astype(np.float64),
        conf,
        np.clip(0.85 - conf, 0.0, 1.0),
        (x[:, 9] > 0.5).astype(np.float64),
        bank,
        np.log1p(np.clip(x[:, 11], 0.0, 1e6)),
    ]
    return np.stack(cols, axis=1)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def invoice_logit(raw: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
    """Uncalibrated logistic-regression logit for raw FEATURES rows."""
    z = (invoice_design(raw) - params["mean"]) / params["scale"]
    return z @ np.asarray(params["coef"], dtype=np.float64) + float(params["intercept"])


def invoice_p_auto(raw: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
    """Raw FEATURES [n, INVOICE_DIM] -> calibrated P(auto) float32 [n]."""
    logit = invoice_logit(raw, params)
    p = sigmoid(float(params["platt_a"]) * logit + float(params["platt_b"]))
    return p.astype(np.float32)


# --------------------------------------------------------------------------------------------
# drift: binning and population stability index
# --------------------------------------------------------------------------------------------


def bin_counts(values: Sequence[float] | np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts of values in the bins ``(-inf, e1), [e1, e2), ..., [e_k, inf)`` (k+1 bins).

    ``edges`` are the inner edges stored in a drift baseline; values outside the training
    range fall in the two open-ended bins.
    """
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, np.float64),
                          side="right")
    return np.bincount(idx, minlength=len(edges) + 1)


def population_stability_index(
    expected_fractions: Sequence[float], actual_counts: Sequence[float], eps: float = 1e-4
) -> float:
    """PSI = sum (a - e) ln(a / e) over bins; < 0.1 stable, 0.1-0.25 moderate, > 0.25 drift."""
    e = np.asarray(expected_fractions, dtype=np.float64)
    a = np.asarray(actual_counts, dtype=np.float64)
    if a.sum() <= 0:
        return 0.0
    a = a / a.sum()
    e = np.clip(e, eps, None)
    a = np.clip(a, eps, None)
    return float(np.sum((a - e) * np.log(a / e)))


def text_length_chars(texts: Iterable[str]) -> np.ndarray:
    """The router's drift feature: characters per document (before truncation)."""
    return np.fromiter((len(t) for t in texts), dtype=np.float64)
