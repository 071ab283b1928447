"""The model clients: batched calls to Triton over gRPC, behind circuit breakers.

A client sends each batch to a Triton pool (services/decision/pools.py: the primary, or the
spill-over while the primary is queueing) behind that pool's breaker, and to the other pool
when the first fails; callers turn ``ModelUnavailable`` (no pool answered) into an escalation
(or a BLOCKED hold) so no task is dropped while the models are away.

Every client names the Triton *version directory* it calls: the router's repository serves
several versions at once (the live one and a shadow candidate), so "latest" would be a guess.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
import pybreaker
import tritonclient.grpc.aio as triton
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from tritonclient.utils import InferenceServerException

from services.decision.pools import (
    POOL_BATCHES,
    POOL_FAILURES,
    POOL_ROWS,
    PRIMARY,
    Pool,
    TritonPools,
)
from switchyard.documents import reading_order
from switchyard.runtime import Backoff
from switchyard.v1 import BoundingBox, LayoutPage, LayoutSource, LayoutWord

tracer = trace.get_tracer("switchyard.decision.triton")
log = logging.getLogger(__name__)

DEADLINE_RETRIES = Counter(
    "switchyard_triton_deadline_retries_total",
    "Triton requests sent again because the previous send ran past its deadline (Triton busy; "
    "setting triton_deadline_retries), by model.",
    ["model"],
)
INFERENCE_SECONDS = Histogram(
    "switchyard_inference_seconds", "Triton request latency (one batch).", ["model", "version"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
MODEL_CONFIDENCE = Histogram(
    "switchyard_model_confidence",
    "Confidence of each model output (router: top class probability; a scorer: its score).",
    ["model", "version"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0),
)


class ModelUnavailable(Exception):
    """Triton cannot answer now (down, overloaded, breaker open)."""


class ModelTimedOut(ModelUnavailable):
    """A request ran past its deadline: Triton is there but busy, so the request is worth
    sending again (``TritonPools.deadline_retries``), unlike a refused one."""


#: The waits before the sends again of a request that timed out: 0.5 s, 1 s, 2 s... (at most
#: 4 s); the failure limit is the pools' deadline_retries, not the backoff's.
DEADLINE_BACKOFF = Backoff(initial_s=0.5, max_s=4.0)
#: A pool's failures are logged at most this often per model and pool (the counter
#: switchyard_inference_pool_failures_total has every one): an outage is in the log at once,
#: without a line per batch.
FAILURE_LOG_EVERY_S = 30.0
_failure_logged: dict[tuple[str, str], float] = {}


def _log_failure(model: str, pool: str, exc: Exception) -> None:
    now = time.monotonic()
    last = _failure_logged.get((model, pool))
    if last is not None and now - last < FAILURE_LOG_EVERY_S:
        return
    _failure_logged[(model, pool)] = now
    log.warning("Triton pool %s did not answer a %s request: %s (the tasks go to people or "
                "wait for it; logged at most every %.0f s)", pool, model, exc,
                FAILURE_LOG_EVERY_S)


@dataclass(frozen=True)
class Prediction:
    model_name: str
    model_version: str
    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    #: the Triton pool that answered (pools.py: "primary" or "spill")
    pool: str = PRIMARY
    #: for an answer pooled from several models (the router cascade), theirs
    consulted: tuple[Prediction, ...] = ()


class _ModelClient:
    """One Triton model at one version directory, on every pool; breakers per pool, latency,
    confidence and per-pool metrics.

    ``pools`` is the decision service's :class:`TritonPools`, or one Triton's URL (a single
    pool: tests, benchmarks and tools talk to one server).
    """

    model_name = ""

    def __init__(self, pools: TritonPools | str, timeout_s: float,
                 breaker: pybreaker.CircuitBreaker, triton_version: str = "1") -> None:
        self._owns_pools = isinstance(pools, str)  # else the service's, closed by it
        self._pools = TritonPools(pools) if isinstance(pools, str) else pools
        self._timeout_s = timeout_s
        self._breaker = breaker
        self.triton_version = triton_version  # the version directory requests name
        self.version = triton_version  # the model's semantic version (its card's), once loaded
        self.parameters: dict[str, str] = {}
        self.config: dict = {}

    async def load_metadata(self) -> None:
        """Read the config from the first pool that serves this version (fails if none
        does: the model or this version is not being served)."""
        failures = []
        for pool in self._pools.pools:
            try:
                await self._load_metadata_from(pool.client())
                return
            except (ModelUnavailable, InferenceServerException, OSError) as exc:
                if self._pools.spill is None:
                    raise
                failures.append(f"{pool.name}: {exc}")
        raise ModelUnavailable("; ".join(failures))

    async def _load_metadata_from(self, client: triton.InferenceServerClient) -> None:
        ready = await client.is_model_ready(self.model_name, self.triton_version)
        if not ready:
            raise ModelUnavailable(f"{self.model_name} version {self.triton_version} is not "
                                   "ready on Triton")
        config = await client.get_model_config(self.model_name, self.triton_version,
                                               as_json=True)
        self.config = config["config"]
        self.parameters = {k: v.get("string_value", "")
                           for k, v in config["config"].get("parameters", {}).items()}
        listed = self.parameters.get("versions", "")
        versions = dict(pair.split(":", 1) for pair in listed.split(",") if ":" in pair)
        # a directory the config does not list (a candidate `switchyard models retrain` added
        # beside the others) is named by its directory: never by another version's semver
        self.version = versions.get(self.triton_version) or (
            self.triton_version if versions and self.triton_version else
            self.parameters.get("model_version", self.triton_version))

    async def close(self) -> None:
        if self._owns_pools:
            await self._pools.close()

    async def _infer(self, inputs: list[triton.InferInput], output: str, rows: int
                     ) -> tuple[np.ndarray, str]:
        """One batch, on the pool :meth:`TritonPools.order` puts first, else on the next;
        the output and the name of the pool that answered. A batch that ran past its
        deadline is sent again (up to the pools' ``deadline_retries``): a Triton busy for a
        moment (a burst of OCR beside it on the same cores) would otherwise send every task
        of the batch to a person as if the models were away."""
        sent_again = 0
        while True:
            try:
                return await self._infer_once(inputs, output, rows)
            except ModelTimedOut as exc:
                if sent_again >= self._pools.deadline_retries:
                    raise
                sent_again += 1
                delay = DEADLINE_BACKOFF.delay_s(sent_again)
                DEADLINE_RETRIES.labels(self.model_name).inc()
                log.warning("%s: a batch of %d ran past its deadline; sending it again in "
                            "%.1fs (%d of %d): %s", self.model_name, rows, delay, sent_again,
                            self._pools.deadline_retries, exc)
                await asyncio.sleep(delay)

    async def _infer_once(self, inputs: list[triton.InferInput], output: str, rows: int
                          ) -> tuple[np.ndarray, str]:
        failures, timed_out = [], False
        for pool in self._pools.order():
            try:
                result = await self._infer_on(pool, inputs, output, rows)
            except ModelUnavailable as exc:
                POOL_FAILURES.labels(self.model_name, pool.name).inc()
                _log_failure(self.model_name, pool.name, exc)
                failures.append(f"{pool.name}: {exc}" if self._pools.spill else str(exc))
                timed_out = timed_out or isinstance(exc, ModelTimedOut)
                continue
            POOL_BATCHES.labels(self.model_name, pool.name).inc()
            POOL_ROWS.labels(self.model_name, pool.name).inc(rows)
            return result, pool.name
        # a pool that timed out is busy, not away: the batch is worth another send
        raise (ModelTimedOut if timed_out else ModelUnavailable)("; ".join(failures))

    async def _infer_on(self, pool: Pool, inputs: list[triton.InferInput], output: str,
                        rows: int) -> np.ndarray:
        try:
            # pybreaker's call_async needs tornado; its context manager records the outcome
            # of an awaited block just as well (one event loop thread, no lock held across).
            with pool.breaker(self._breaker).calling():
                started = time.perf_counter()
                with tracer.start_as_current_span(
                    "triton infer", kind=trace.SpanKind.CLIENT,
                    attributes={"model.name": self.model_name, "model.version": self.version,
                                "batch.size": rows, "triton.pool": pool.name},
                ):
                    result = await asyncio.wait_for(
                        pool.client().infer(
                            self.model_name, inputs, model_version=self.triton_version,
                            outputs=[triton.InferRequestedOutput(output)],
                            client_timeout=self._timeout_s),
                        self._timeout_s + 1,
                    )
                INFERENCE_SECONDS.labels(self.model_name, self.version).observe(
                    time.perf_counter() - started)
                return result.as_numpy(output)
        except pybreaker.CircuitBreakerError as exc:
            raise ModelUnavailable(f"{self.model_name}: circuit open ({exc})") from None
        except asyncio.TimeoutError:
            raise ModelTimedOut(f"{self.model_name}: no answer within "
                                f"{self._timeout_s + 1:g}s") from None
        except InferenceServerException as exc:
            if exc.status() == str(grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ModelTimedOut(f"{self.model_name}: {exc}") from None
            raise ModelUnavailable(f"{self.model_name}: {exc}") from None
        except OSError as exc:
            raise ModelUnavailable(f"{self.model_name}: {exc}") from None


class RouterClient(_ModelClient):
    """``document_router``: text in, calibrated class probabilities out."""

    model_name = "document_router"

    def __init__(self, pools: TritonPools | str, timeout_s: float,
                 breaker: pybreaker.CircuitBreaker, triton_version: str = "1") -> None:
        super().__init__(pools, timeout_s, breaker, triton_version)
        self.classes: list[str] = []

    async def load_metadata(self) -> None:
        """Read the deployed router's class list (PROBS order) from its Triton config: training
        writes one class per pack it trained with, and ``other``, into ``parameters.classes``."""
        await super().load_metadata()
        self.classes = self.parameters["classes"].split(",")

    async def _reload_classes(self) -> None:
        """Read the class list now: no list yet, or a retrained router answers with another
        number of classes. Failing to read it is the model being unavailable."""
        try:
            await asyncio.wait_for(self.load_metadata(), self._timeout_s + 1)
        except ModelUnavailable:
            raise
        except (InferenceServerException, KeyError, asyncio.TimeoutError, OSError) as exc:
            raise ModelUnavailable(f"{self.model_name}: no class list yet ({exc!r})") from None

    async def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if not self.classes:   # Triton was away when the service started
            await self._reload_classes()
        data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        inputs = [triton.InferInput("TEXT", list(data.shape), "BYTES")]
        inputs[0].set_data_from_numpy(data)
        probs, pool = await self._infer(inputs, "PROBS", len(texts))
        if probs.shape[1] != len(self.classes):   # a retrained router was deployed meanwhile
            await self._reload_classes()
            if probs.shape[1] != len(self.classes):
                raise ModelUnavailable(f"{self.model_name}: {probs.shape[1]} outputs for "
                                       f"{len(self.classes)} configured classes")
        best = probs.argmax(axis=1)
        confidence = MODEL_CONFIDENCE.labels(self.model_name, self.version)
        predictions = []
        for row, index in zip(probs.tolist(), best.tolist()):
            confidence.observe(row[index])
            predictions.append(Prediction(
                model_name=self.model_name, model_version=self.version,
                label=self.classes[index], confidence=row[index],
                scores=dict(zip(self.classes, row)), pool=pool,
            ))
        return predictions


class EncoderClient(RouterClient):
    """``text_encoder``, the router cascade's second stage: text in, the class probabilities
    of a head on a sentence embedding out (the router's classes: both are trained together),
    and the temperature its training fitted for pooling the two answers
    (services/decision/cascade.py)."""

    model_name = "text_encoder"

    def __init__(self, pools: TritonPools | str, timeout_s: float,
                 breaker: pybreaker.CircuitBreaker, triton_version: str = "1") -> None:
        super().__init__(pools, timeout_s, breaker, triton_version)
        self.pool_temperature = 1.0

    async def load_metadata(self) -> None:
        await super().load_metadata()
        self.pool_temperature = float(self.parameters.get("pool_temperature") or 1.0)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The sentence embedding of each text (unit length: a dot product is the cosine),
        for comparing short texts such as invoice and purchase-order lines."""
        data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        inputs = [triton.InferInput("TEXT", list(data.shape), "BYTES")]
        inputs[0].set_data_from_numpy(data)
        embeddings, _ = await self._infer(inputs, "EMBEDDING", len(texts))
        return [[float(v) for v in row] for row in embeddings.tolist()]


class ScorerClient(_ModelClient):
    """A pack's scorer model: a float vector in (its config's first input, in the order of its
    ``feature_names`` parameter), class probabilities out (its first output).

    One output column is the probability of the pack's ``output_class`` (``invoice_risk``'s
    ``P_AUTO`` is P(auto)); several columns are the classes of the model's ``classes``
    parameter, and the score is ``output_class``'s column (the top class when none is named).
    """

    def __init__(self, model_name: str, pools: TritonPools | str, timeout_s: float,
                 breaker: pybreaker.CircuitBreaker, triton_version: str = "1",
                 output_class: str = "") -> None:
        super().__init__(pools, timeout_s, breaker, triton_version)
        self.model_name = model_name
        self.output_class = output_class
        self.feature_names: list[str] = []
        self.classes: list[str] = []
        self.input_name = "FEATURES"
        self.output_name = ""

    async def load_metadata(self) -> None:
        await super().load_metadata()
        config = self.config
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.feature_names = [n for n in self.parameters.get("feature_names", "").split(",") if n]
        self.classes = [c for c in self.parameters.get("classes", "").split(",") if c]

    def _prediction(self, row: list[float], pool: str = PRIMARY) -> Prediction:
        if len(row) == 1:  # P(output_class)
            p = row[0]
            positive = self.output_class or "positive"
            label = positive if p >= 0.5 else f"not_{positive}"
            return Prediction(self.model_name, self.version, label, p,
                              {(self.output_name or "score").lower(): p}, pool)
        classes = self.classes or [str(i) for i in range(len(row))]
        scores = dict(zip(classes, row))
        top = max(scores, key=scores.__getitem__)
        score = scores.get(self.output_class, scores[top]) if self.output_class else scores[top]
        return Prediction(self.model_name, self.version, top, score, scores, pool)

    async def predict(self, rows: Sequence[Sequence[float]]) -> list[Prediction]:
        if not self.output_name:
            await self.load_metadata()
        data = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        inputs = [triton.InferInput(self.input_name, list(data.shape), "FP32")]
        inputs[0].set_data_from_numpy(data)
        out, pool = await self._infer(inputs, self.output_name, len(rows))
        out = out.reshape(len(rows), -1)
        confidence = MODEL_CONFIDENCE.labels(self.model_name, self.version)
        predictions = []
        for row in out.tolist():
            prediction = self._prediction(row, pool)
            confidence.observe(prediction.confidence)
            predictions.append(prediction)
        return predictions


class OcrClient(_ModelClient):
    """``document_ocr``: page images (PNG or JPEG bytes) in, each page's words out.

    Returns one ``LayoutPage`` per image with source OCR, its size in pixels and its words'
    boxes as fractions of the page; ``number`` is left 0 for the caller (which knows which page
    of which document each image is). Confidence metrics observe each word's confidence.
    """

    model_name = "document_ocr"

    async def read(self, images: Sequence[bytes]) -> list[LayoutPage]:
        data = np.array([[image] for image in images], dtype=np.object_)
        inputs = [triton.InferInput("IMAGE", list(data.shape), "BYTES")]
        inputs[0].set_data_from_numpy(data)
        out, _ = await self._infer(inputs, "WORDS", len(images))
        rows = out.reshape(-1)
        if len(rows) != len(images):
            raise ModelUnavailable(f"{self.model_name}: {len(rows)} pages read for "
                                   f"{len(images)} sent")
        confidence = MODEL_CONFIDENCE.labels(self.model_name, self.version)
        pages = []
        for row in rows:
            page = json.loads(row.decode("utf-8") if isinstance(row, bytes) else str(row))
            pages.append(ocr_page(page))
            for word in pages[-1].words:
                confidence.observe(word.confidence)
        return pages


def ocr_page(page: dict) -> LayoutPage:
    """``document_ocr``'s JSON for one page as a ``LayoutPage`` (boxes normalised to 0..1)."""
    width, height = float(page["width"]), float(page["height"])

    def clamp(value: float) -> float:
        return min(1.0, max(0.0, value))

    words = [LayoutWord(text=str(w["text"]), confidence=clamp(float(w["confidence"])),
                        box=BoundingBox(x0=clamp(w["box"][0] / width),
                                        y0=clamp(w["box"][1] / height),
                                        x1=clamp(w["box"][2] / width),
                                        y1=clamp(w["box"][3] / height)))
             for w in page["words"]]
    return LayoutPage(width=width, height=height, source=LayoutSource.LAYOUT_SOURCE_OCR,
                      words=reading_order(words))
