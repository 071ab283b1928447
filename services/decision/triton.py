"""The model client: batched calls to Triton over gRPC, behind a circuit breaker.

The breaker (pybreaker) opens after consecutive failures so a down or slow Triton costs one
fast failure per item instead of a timeout each; callers turn ``ModelUnavailable`` into an
escalation (or a BLOCKED hold) so no task is dropped while the models are away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pybreaker
import tritonclient.grpc.aio as triton
from opentelemetry import trace
from prometheus_client import Histogram
from tritonclient.utils import InferenceServerException

tracer = trace.get_tracer("switchyard.decision.triton")

INFERENCE_SECONDS = Histogram(
    "switchyard_inference_seconds", "Triton request latency (one batch).", ["model", "version"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class ModelUnavailable(Exception):
    """Triton cannot answer now (down, overloaded, breaker open)."""


@dataclass(frozen=True)
class Prediction:
    model_name: str
    model_version: str
    label: str
    confidence: float
    scores: dict[str, float]


class RouterClient:
    """Client for the ``document_router`` model: text in, class probabilities out."""

    model_name = "document_router"

    def __init__(self, url: str, timeout_s: float, breaker: pybreaker.CircuitBreaker,
                 triton_version: str = "") -> None:
        self._client = triton.InferenceServerClient(url=url)
        self._timeout_s = timeout_s
        self._breaker = breaker
        self.triton_version = triton_version  # version directory; "" = the latest loaded
        self.version = ""  # the model's own semantic version, from its config
        self.classes: list[str] = []

    async def load_metadata(self) -> None:
        """Read the class list and version from the model config (fails if the model is absent)."""
        config = await self._client.get_model_config(self.model_name, self.triton_version,
                                                     as_json=True)
        params = config["config"].get("parameters", {})
        self.classes = params["classes"]["string_value"].split(",")
        self.version = params.get("model_version", {}).get("string_value", "unknown")

    async def close(self) -> None:
        await self._client.close()

    async def predict(self, texts: Sequence[str]) -> list[Prediction]:
        try:
            # pybreaker's call_async needs tornado; its context manager records the outcome
            # of an awaited block just as well (one event loop thread, no lock held across).
            with self._breaker.calling():
                return await self._predict(texts)
        except pybreaker.CircuitBreakerError as exc:
            raise ModelUnavailable(f"{self.model_name}: circuit open ({exc})") from None
        except (InferenceServerException, asyncio.TimeoutError, OSError) as exc:
            raise ModelUnavailable(f"{self.model_name}: {exc}") from None

    async def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        inputs = [triton.InferInput("TEXT", list(data.shape), "BYTES")]
        inputs[0].set_data_from_numpy(data)
        outputs = [triton.InferRequestedOutput("PROBS")]
        started = time.perf_counter()
        with tracer.start_as_current_span(
            "triton infer", kind=trace.SpanKind.CLIENT,
            attributes={"model.name": self.model_name, "model.version": self.version,
                        "batch.size": len(texts)},
        ):
            result = await asyncio.wait_for(
                self._client.infer(self.model_name, inputs, model_version=self.triton_version,
                                   outputs=outputs, client_timeout=self._timeout_s),
                self._timeout_s + 1,
            )
        INFERENCE_SECONDS.labels(self.model_name, self.version).observe(
            time.perf_counter() - started)
        probs = result.as_numpy("PROBS")
        predictions = []
        for row in probs:
            best = int(np.argmax(row))
            predictions.append(Prediction(
                model_name=self.model_name, model_version=self.version,
                label=self.classes[best], confidence=float(row[best]),
                scores={c: float(p) for c, p in zip(self.classes, row)},
            ))
        return predictions
