"""Every setting of every Switchyard process, declared once.

Each setting has a default, an environment variable and a one-line doc, in the way faust
declares its app settings. The reference in ``docs/settings.md`` is generated from this
module (``switchyard settings --markdown``) and a test fails when it drifts, so this file is
the single source of truth for operators, the Helm chart and the embedded stack alike.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "SWITCHYARD_"


class SettingsError(ValueError):
    """A setting's environment value cannot be parsed; the message names the variable."""


def setting(default: Any, doc: str, *, group: str = "general", secret: bool = False,
            minimum: float | None = None, maximum: float | None = None,
            exclusive_minimum: float | None = None,
            choices: tuple[str, ...] | None = None) -> Any:
    """Declare a setting field; its env var is ``SWITCHYARD_`` + the upper-cased field name.

    ``minimum``/``maximum`` (inclusive), ``exclusive_minimum`` and ``choices`` are its range:
    :meth:`Settings.from_env` refuses a value outside it, and the Helm chart's values schema
    (``python -m switchyard._tools.helmschema``) is generated from the same declaration.
    """
    return field(default=default, metadata={
        "doc": doc, "group": group, "secret": secret, "minimum": minimum, "maximum": maximum,
        "exclusive_minimum": exclusive_minimum, "choices": choices,
    })


def out_of_range(f: dataclasses.Field[Any], value: Any) -> str | None:
    """Why ``value`` is outside the declared range of setting ``f``, or None when it is not."""
    meta = f.metadata
    if meta["choices"] is not None and value not in meta["choices"]:
        return f"must be one of {', '.join(meta['choices'])}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if meta["minimum"] is not None and value < meta["minimum"]:
        return f"must be >= {meta['minimum']}"
    if meta["exclusive_minimum"] is not None and value <= meta["exclusive_minimum"]:
        return f"must be > {meta['exclusive_minimum']}"
    if meta["maximum"] is not None and value > meta["maximum"]:
        return f"must be <= {meta['maximum']}"
    return None


def range_text(f: dataclasses.Field[Any]) -> str:
    """The declared range in words (``>= 1``, ``0 to 1``, ``one of a, b``), '' when none."""
    meta = f.metadata
    if meta["choices"] is not None:
        return "one of " + ", ".join(meta["choices"])
    low = meta["minimum"]
    if low is not None and meta["maximum"] is not None:
        return f"{low} to {meta['maximum']}"
    if low is not None:
        return f">= {low}"
    if meta["exclusive_minimum"] is not None:
        return f"> {meta['exclusive_minimum']}"
    if meta["maximum"] is not None:
        return f"<= {meta['maximum']}"
    return ""


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _parse(name: str, kind: Any, raw: str) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is Path:
            return Path(raw)
        return raw
    except ValueError as exc:
        raise SettingsError(f"{env_var(name)}={raw!r}: {exc}") from None


@dataclass(frozen=True)
class Settings:
    """Process configuration. Build with :meth:`from_env`; override in tests with :meth:`replace`."""

    # -- general ---------------------------------------------------------------------------
    environment: str = setting(
        "dev", "Deployment name, written in every log line and set as the trace resource's "
        "deployment.environment. Metrics do not carry it: tell deployments apart in "
        "Prometheus (e.g. an external label per cluster).")
    log_level: str = setting("INFO", "Root log level.",
                             choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = setting("json", "Log line format: 'json' (one object a line) or 'text'.",
                              choices=("json", "text"))
    bind_host: str = setting(
        "127.0.0.1", "Address every server binds to. Loopback by default; 0.0.0.0 in a pod."
    )
    state_dir: Path = setting(
        Path(".switchyard"),
        "Where the embedded stack keeps data, logs and pid files.",
        group="stack",
    )
    stack_components: str = setting(
        "kafka,postgres,triton",
        "Infrastructure `switchyard up` runs embedded; leave one out to use the external server "
        "its settings name; add `triton-spill` for a second (spill-over) Triton pool.",
        group="stack",
    )

    # -- supervision -----------------------------------------------------------------------
    background_backoff_initial_s: float = setting(
        1.0, "Wait before restarting a background loop that raised; doubles with each failure "
        "in a row (> 0, at most background_backoff_max_s).", group="supervision",
        exclusive_minimum=0,
    )
    background_backoff_max_s: float = setting(
        60.0, "Longest wait before restarting a failed background loop (>= the initial wait).",
        group="supervision", exclusive_minimum=0,
    )
    shutdown_deadline_s: float = setting(
        12.0, "Once asked to stop (SIGTERM, SIGINT), a service exits within this long whatever "
        "it waits on (a database or broker that stopped answering): what it had not finished "
        "is re-read from its sources. Under the embedded stack's 15 s and the chart's 30 s "
        "grace.", group="supervision", exclusive_minimum=0,
    )
    background_failure_limit: int = setting(
        8, "Failures in a row after which a background loop takes its process down (exit 70, "
        "for the kubelet to restart it). 0: restart forever (critical loops exit at once).",
        group="supervision", minimum=0,
    )
    background_healthy_after_s: float = setting(
        5.0, "How long a restarted loop must run without raising to count as up again (gRPC "
        "health is NOT_SERVING until then; > 0).", group="supervision",
        exclusive_minimum=0,
    )

    # -- kafka -----------------------------------------------------------------------------
    kafka_bootstrap_servers: str = setting(
        "127.0.0.1:9092", "Kafka bootstrap servers, comma separated. The embedded stack's "
        "broker listens on the first one's port (move it here).", group="kafka"
    )
    kafka_topic_prefix: str = setting(
        "", "Prefix for every topic name (isolates tests and tenants of a shared cluster).",
        group="kafka",
    )
    kafka_partitions: int = setting(
        4, "Partitions for topics Switchyard creates.", group="kafka", minimum=1,
    )
    kafka_replication_factor: int = setting(
        1, "Replication factor for topics Switchyard creates.", group="kafka",
        minimum=1,
    )
    kafka_session_timeout_ms: int = setting(
        8000, "Consumer group session timeout; a join takes about half of it.", group="kafka",
        minimum=1,
    )
    stream_batch_max_records: int = setting(
        256, "Most records a stream processor on the task path takes in one batch (handled "
        "together, stored in one transaction; docs/architecture.md#batches).",
        group="kafka", minimum=1, maximum=10_000,
    )
    stream_batch_window_ms: float = setting(
        10.0, "Longest a stream processor waits to fill a batch once a record has arrived.",
        group="kafka", exclusive_minimum=0, maximum=10_000,
    )
    stream_fair_window: int = setting(
        4096, "Records a fair stream processor (the decision service's tasks, the executor's "
        "decisions) reads ahead of the oldest one not finished, to serve tenants by "
        "tenant_weights instead of in log order; a steady tenant's record waits behind a "
        "burst when the burst is longer than this (docs/architecture.md#fairness).",
        group="kafka", minimum=1, maximum=100_000,
    )
    stream_fair_batches: int = setting(
        1, "Batches a fair stream processor runs at a time (each up to "
        "stream_batch_max_records, chosen in weighted fair order). More cut smaller batches "
        "under the same load: each costs a transaction.",
        group="kafka", minimum=1, maximum=64,
    )
    stream_fair_sparse_records: int = setting(
        32, "A tenant with at most this many records waiting in a fair stream processor is "
        "sparse: while all stream_fair_batches are running, one more batch may run, of "
        "sparse tenants' records only, so a light tenant does not wait for a bursting one's "
        "batch to end (0: no such batch; docs/architecture.md#fairness).",
        group="kafka", minimum=0, maximum=100_000,
    )
    kafka_fetch_max_wait_ms: int = setting(
        100, "Longest a stream consumer's fetch waits at the broker for new records (faust "
        "fixes 1500). Tansu holds a fetch on a quiet partition for up to this long, so it "
        "bounds the wait on every hop; lower costs idle CPU in the broker and the services.",
        group="kafka",
        minimum=0,
    )
    broker_check_interval_s: float = setting(
        5.0, "How often each service checks that the broker still has its state (a marker "
        "topic's generation); when it changed the service recreates the topics and exits 75 "
        "to be restarted. 0: off.", group="kafka",
        minimum=0,
    )
    kafka_security_protocol: str = setting(
        "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.", group="kafka",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    kafka_sasl_mechanism: str = setting("", "SASL mechanism, e.g. SCRAM-SHA-512.", group="kafka")
    kafka_sasl_username: str = setting("", "SASL user name.", group="kafka")
    kafka_sasl_password: str = setting("", "SASL password.", group="kafka", secret=True)
    kafka_ssl_cafile: str = setting("", "CA bundle for Kafka TLS.", group="kafka")

    # -- postgres --------------------------------------------------------------------------
    postgres_dsn: str = setting(
        "",
        "PostgreSQL DSN. Empty: the embedded stack's server (DSN read from the state dir).",
        group="postgres",
        secret=True,
    )
    postgres_schema: str = setting(
        "switchyard", "Schema holding Switchyard's tables (one per test run).", group="postgres"
    )
    postgres_pool_min: int = setting(
        1, "Minimum pooled connections a process.", group="postgres", minimum=0,
    )
    postgres_pool_max: int = setting(
        8, "Maximum pooled connections a process.", group="postgres", minimum=1,
    )
    database_check_interval_s: float = setting(
        2.0, "How often each service asks PostgreSQL `SELECT 1` on a connection of its own "
        "(the answer may take as long): gRPC readiness is NOT_SERVING from the first check "
        "that failed until one is answered (liveness stays SERVING). 0: off.",
        group="postgres", minimum=0, maximum=3600,
    )
    postgres_port: int = setting(
        0, "Embedded PostgreSQL port (stack component `postgres`); 0: 5432 when free, else the "
        "port this state dir's server had, else any free port.", group="postgres", minimum=0,
        maximum=65535,
    )

    # -- triton ----------------------------------------------------------------------------
    triton_url: str = setting(
        "127.0.0.1:8001", "Triton gRPC endpoint. Unset while `SWITCHYARD_TRITON_GRPC_PORT` is "
        "set: the embedded Triton at that port on 127.0.0.1 (so a command run beside a stack "
        "on moved ports reaches that stack's Triton).", group="triton")
    triton_http_port: int = setting(
        8000, "Embedded Triton HTTP port.", group="triton", minimum=0, maximum=65535,
    )
    triton_grpc_port: int = setting(
        8001, "Embedded Triton gRPC port.", group="triton", minimum=0, maximum=65535,
    )
    triton_metrics_port: int = setting(
        8002, "Embedded Triton metrics port.", group="triton", minimum=0, maximum=65535,
    )
    triton_spill_url: str = setting(
        "", "Spill-over Triton gRPC endpoint (CPU capacity beside the primary `triton_url`): "
        "while the primary's queue delay is over `triton_spill_after_ms`, a share of batches "
        "goes here; a pool that fails is skipped. Empty: one pool.", group="triton",
    )
    triton_spill_after_ms: float = setting(
        50.0, "The primary's mean queue delay (Triton's statistics, over the last poll) above "
        "which batches spill over; spilling stops once it has stayed at or below half of it "
        "for `triton_spill_cooldown_s`.", group="triton", exclusive_minimum=0,
    )
    triton_spill_cooldown_s: float = setting(
        5.0, "How long the primary's queue delay must stay low before spilling stops (a "
        "spike comes in bursts; one quiet poll between them is not its end).", group="triton",
        minimum=0,
    )
    triton_spill_share: float = setting(
        0.5, "Share of batches sent to the spill-over pool while spilling.", group="triton",
        exclusive_minimum=0, maximum=1,
    )
    triton_pool_poll_ms: float = setting(
        1000.0, "How often the decision service reads each pool's queue statistics (only "
        "when there is a spill-over pool).", group="triton", minimum=50,
    )
    triton_reconnect_s: float = setting(
        60.0, "How often the decision service replaces its channel to each Triton pool, so "
        "pods added to a pool behind one DNS name (a headless Service) get requests; 0: never.",
        group="triton", minimum=0,
    )
    triton_spill_http_port: int = setting(
        8010, "Embedded spill-over Triton HTTP port (stack component `triton-spill`).",
        group="triton", minimum=0, maximum=65535,
    )
    triton_spill_grpc_port: int = setting(
        8011, "Embedded spill-over Triton gRPC port.", group="triton", minimum=0,
        maximum=65535,
    )
    triton_spill_metrics_port: int = setting(
        8012, "Embedded spill-over Triton metrics port.", group="triton", minimum=0,
        maximum=65535,
    )
    triton_timeout_s: float = setting(
        5.0, "Deadline of one Triton request.", group="triton", exclusive_minimum=0,
    )
    triton_deadline_retries: int = setting(
        2, "Times a Triton request that ran past its deadline (Triton busy, not away) is sent "
        "again, after 0.5 s, then 1 s, 2 s..., before its tasks meet the unavailable policy. A "
        "refused connection or an open breaker is never retried.", group="triton", minimum=0,
        maximum=10,
    )
    model_repository: Path = setting(
        Path("models/repository"), "Triton model repository served by Triton.", group="triton"
    )

    # -- services --------------------------------------------------------------------------
    # The gRPC ports lie below Linux's ephemeral range (32768-60999): there an outgoing
    # connection may hold a server's port as its source port, and the stack cannot start.
    ingest_grpc_port: int = setting(
        7051, "IngestService gRPC port.", group="services", minimum=0, maximum=65535,
    )
    decision_grpc_port: int = setting(
        7052, "DecisionService gRPC port.", group="services", minimum=0, maximum=65535,
    )
    executor_grpc_port: int = setting(
        7053, "Executor admin gRPC port.", group="services", minimum=0, maximum=65535,
    )
    review_grpc_port: int = setting(
        7054, "ReviewService gRPC port.", group="services", minimum=0, maximum=65535,
    )
    review_web_port: int = setting(
        8080, "Review web console HTTP port.", group="services", minimum=0, maximum=65535,
    )
    ingest_address: str = setting(
        "", "Where other processes reach IngestService (host:port); empty means "
        "127.0.0.1:<ingest_grpc_port>. The review process's operator console calls it.",
        group="services",
    )
    decision_address: str = setting(
        "", "Where other processes reach DecisionService (host:port); empty means "
        "127.0.0.1:<decision_grpc_port>. The review process calls it: the operator console, "
        "and a reviewer's edits are put to the pack's rules there.",
        group="services",
    )
    executor_address: str = setting(
        "", "Where other processes reach the executor's admin gRPC API (host:port); empty "
        "means 127.0.0.1:<executor_grpc_port>. The review process's operator console calls "
        "it.", group="services",
    )
    ingest_rest_port: int = setting(
        8081, "Ingest REST/JSON gateway and inbound webhook HTTP port (0 = off).",
        group="services", minimum=0, maximum=65535,
    )
    ingest_metrics_port: int = setting(
        9101, "Ingest Prometheus port (0 = off).", group="services", minimum=0, maximum=65535,
    )
    decision_metrics_port: int = setting(
        9102, "Decision Prometheus port (0 = off).", group="services",
        minimum=0, maximum=65535,
    )
    executor_metrics_port: int = setting(
        9103, "Executor Prometheus port (0 = off).", group="services",
        minimum=0, maximum=65535,
    )
    review_metrics_port: int = setting(
        9104, "Review Prometheus port (0 = off).", group="services", minimum=0, maximum=65535,
    )
    grpc_max_message_bytes: int = setting(
        4 * 1024 * 1024, "Largest gRPC message a server accepts.", group="services",
        minimum=1,
    )
    max_payload_bytes: int = setting(
        256 * 1024, "Largest text or JSON document accepted at ingest (files: "
        "document_max_bytes).", group="services",
        minimum=1,
    )

    # -- documents (PDFs, scans and photos; docs/documents.md) -----------------------------
    document_max_bytes: int = setting(
        20 * 1024 * 1024, "Largest PDF, PNG, JPEG or TIFF accepted at ingest. gRPC servers "
        "accept messages this large (plus 64 KiB) whatever grpc_max_message_bytes says.",
        group="documents", minimum=1, maximum=512 * 1024 * 1024,
    )
    document_max_pages: int = setting(
        30, "Most pages of a PDF or frames of a TIFF accepted at ingest.", group="documents",
        minimum=1, maximum=10_000,
    )
    document_max_pixels: int = setting(
        40_000_000, "Most pixels of one page: an image as stored, a PDF page rendered at "
        "document_render_dpi. Larger (a decompression bomb) is refused at ingest.",
        group="documents", minimum=1, maximum=1_000_000_000,
    )
    document_render_dpi: int = setting(
        200, "Resolution PDF pages are checked against document_max_pixels at (the "
        "resolution OCR renders scanned pages at).", group="documents",
        minimum=36, maximum=1200,
    )
    blob_threshold_bytes: int = setting(
        512 * 1024, "Documents larger than this are stored once in the blob store and "
        "records carry a reference with its sha256 (claim check); keep it below the broker's "
        "largest message.", group="documents", minimum=1,
    )
    blob_store: str = setting(
        "postgres", "Where claim-checked documents live: 'postgres' (table blobs) or 's3' "
        "(an S3-compatible bucket, the s3_* settings). Sealed with the payload codec either "
        "way.", group="documents", choices=("postgres", "s3"),
    )
    s3_endpoint_url: str = setting(
        "", "S3-compatible endpoint, e.g. https://s3.eu-west-1.amazonaws.com or a MinIO URL. "
        "Empty: AWS's default for s3_region.", group="documents",
    )
    s3_bucket: str = setting(
        "", "Bucket of the s3 blob store (it must exist).", group="documents",
    )
    s3_region: str = setting("", "Region of the s3 blob store.", group="documents")
    s3_access_key_id: str = setting(
        "", "Access key id of the s3 blob store; empty: the default AWS credential chain.",
        group="documents", secret=True,
    )
    s3_secret_access_key: str = setting(
        "", "Secret access key of the s3 blob store.", group="documents", secret=True,
    )

    # -- ingest ----------------------------------------------------------------------------
    ingest_max_batch_items: int = setting(
        500, "Most submissions one SubmitTasks call may carry.", group="ingest",
        minimum=1,
    )
    ingest_max_backlog: int = setting(
        10_000,
        "Tasks the machines have yet to finish (QUEUED or IN_PROGRESS: to be decided or "
        "carried out, not BLOCKED on a person or a breaker; counted in PostgreSQL) at which "
        "submissions get RESOURCE_EXHAUSTED and intake consumption pauses; a tenant holding "
        "its share of it (`tenant_weights`) is refused before. 0: no limit.",
        group="ingest",
        minimum=0,
    )
    ingest_backlog_check_s: float = setting(
        1.0, "How often ingest re-counts the backlog.", group="ingest",
        exclusive_minimum=0,
    )
    ingest_retry_after_ms: int = setting(
        2000, "Retry-after hint sent with RESOURCE_EXHAUSTED.", group="ingest",
        minimum=0,
    )
    reconcile_interval_s: float = setting(
        5.0, "How often the reconciler looks for accepted tasks missing from Kafka.",
        group="ingest",
        exclusive_minimum=0,
    )
    reconcile_after_s: float = setting(
        30.0, "Age after which an accepted but unpublished task is re-published.",
        group="ingest",
        minimum=0,
    )
    ingest_publish_wait_s: float = setting(
        2.0, "How long a submission's answer waits for the broker to acknowledge the new task. "
        "The task is committed first; past this the answer goes, the acknowledgement is "
        "awaited behind it, and a task the broker never takes is published by the reconciler "
        "(SWITCHYARD_RECONCILE_AFTER_S).", group="ingest", exclusive_minimum=0,
    )
    redrive_after_s: float = setting(
        300.0, "A published, unfinished task with no durable owner (executor job, review item, "
        "model hold) and no progress for this long is published again (e.g. after the broker "
        "lost its state); repeats back off exponentially. 0: off.", group="ingest",
        minimum=0,
    )
    watch_poll_ms: int = setting(
        200, "How often the status feed behind WatchTask/WatchTenant/webhooks polls.",
        group="ingest",
        minimum=1,
    )
    webhook_signing_key: str = setting(
        "", "HMAC key signing per-task callback POSTs (tenant webhooks use their own). Empty: "
        "per-task callback_url is refused.", group="ingest", secret=True,
    )
    webhook_allowed_hosts: str = setting(
        "127.0.0.1,localhost,::1",
        "Hosts webhooks may POST to, comma separated; '*' allows any. The stack's own servers "
        "(broker, PostgreSQL, Triton, the services' ports) are refused whatever it says.",
        group="ingest",
    )
    webhook_max_attempts: int = setting(
        8, "Delivery attempts before a webhook delivery is marked failed.", group="ingest",
        minimum=1,
    )
    webhook_backoff_s: float = setting(
        1.0, "First webhook retry delay; doubles per attempt (capped at 5 minutes).",
        group="ingest",
        minimum=0,
    )
    webhook_timeout_s: float = setting(
        5.0, "Timeout of one webhook POST.", group="ingest", exclusive_minimum=0,
    )
    fault_inject: str = setting(
        "", "Test-only fault: 'crash_after_commit' kills ingest between the PostgreSQL commit "
        "and the Kafka produce; 'drop_cancel_status' makes CancelTask commit without producing "
        "the CANCELLED status event (a lost event). Never set in production.", group="ingest",
    )

    # -- decision --------------------------------------------------------------------------
    batch_max_size: int = setting(
        64, "Most items in one Triton request.", group="decision", minimum=1,
    )
    decide_batch_max_items: int = setting(
        256, "Most tasks one DecideBatch call may carry (they share the micro-batcher).",
        group="decision", minimum=1, maximum=10_000,
    )
    batch_max_delay_ms: float = setting(
        5.0, "Longest an item waits for its batch to fill.", group="decision",
        minimum=0,
    )
    batch_queue_limit: int = setting(
        4096, "Items waiting for Triton before callers are pushed back.", group="decision",
        minimum=1,
    )
    auto_execute_threshold: float = setting(
        0.80, "Model confidence at or above which a decision runs without a person.",
        group="decision",
        minimum=0, maximum=1,
    )
    policy_dir: str = setting(
        "", "Directory of per-tenant decision policies, `<tenant>.yaml` (`default.yaml` for "
        "other tenants): routing thresholds and a `packs:` key for pack settings; validated "
        "at start. Empty: built-in defaults.", group="decision",
    )
    router_version: str = setting(
        "1", "Triton version directory of document_router whose answers decide.",
        group="decision",
    )
    router_shadow_version: str = setting(
        "2", "document_router version run as a shadow beside the live one: outputs and "
        "agreement recorded, never acted on. Empty: no shadow.", group="decision",
    )
    router_shadow_sample: float = setting(
        1.0, "Share of routed documents the shadow also scores, chosen by task id (a task "
        "delivered again is chosen again or not at all); 0.1 spends a tenth of the shadow's "
        "Triton work and still measures agreement.", group="decision", minimum=0.0,
        maximum=1.0,
    )
    router_cascade_below: float = setting(
        0.80, "Router confidence below which a document also goes to text_encoder, the "
        "cascade's sentence-embedding model, and the two answers are pooled "
        "(docs/decision.md#router-cascade); 0: the router alone decides.", group="decision",
        minimum=0.0, maximum=1.0,
    )
    text_encoder_version: str = setting(
        "1", "Triton version directory of text_encoder (the router cascade's second stage).",
        group="decision",
    )
    text_encoder_timeout_s: float = setting(
        30.0, "Deadline of one text_encoder request (a batch of up to 16 documents, about "
        "50 ms of CPU each).", group="decision", exclusive_minimum=0,
    )
    invoice_risk_version: str = setting(
        "1", "Triton version directory of invoice_risk (the invoice pack's scorer; a pack's "
        "scorer model `<name>` uses the setting `<name>_version` when one exists, else Triton's "
        "latest).", group="decision"
    )
    ocr_version: str = setting(
        "1", "Triton version directory of document_ocr, the OCR model that reads scanned "
        "pages and images.", group="decision",
    )
    ocr_timeout_s: float = setting(
        60.0, "Deadline of one document_ocr request (a batch of pages; OCR on CPU takes "
        "seconds per page).", group="decision", exclusive_minimum=0,
    )
    ocr_batch_max_pages: int = setting(
        8, "Most pages in one document_ocr request (pages of many tasks share it).",
        group="decision", minimum=1, maximum=16,
    )
    ocr_max_pages: int = setting(
        20, "Pages of a document the decision service reads (text layer or OCR); later pages "
        "are not read and the decision's explanation says so.", group="decision", minimum=1,
    )
    breaker_fail_max: int = setting(
        5, "Consecutive failed Triton requests that open the circuit breaker.", group="decision",
        minimum=1,
    )
    breaker_reset_s: float = setting(
        10.0, "Seconds an open breaker waits before letting a trial request through.",
        group="decision",
        minimum=0,
    )
    hold_retry_s: float = setting(
        5.0, "How often tasks held BLOCKED for unavailable models are retried.",
        group="decision",
        exclusive_minimum=0,
    )
    pack_reload_s: float = setting(
        10.0, "How often each decision replica re-reads applied packs and tenant pack settings "
        "from PostgreSQL, besides reloading at once on their NOTIFY (a missed notification "
        "is caught up within this).",
        group="decision",
        exclusive_minimum=0,
    )
    drift_window: int = setting(
        2000, "Recent inputs the drift (PSI) gauges compare with the training baseline.",
        group="decision",
        minimum=1,
    )
    drift_publish_every: int = setting(
        200, "Model inputs between two updates of the drift (PSI) gauges (the first update "
        "comes after this many).", group="decision",
        minimum=1,
    )
    rollout_refresh_s: float = setting(
        5.0, "Seconds between two rounds of the model-rollout loop: this replica's canary "
        "counts are added to PostgreSQL, every rollout is read again (a change an admin or "
        "another replica made is acted on within this), and each canary is judged.",
        group="decision", minimum=0.5, maximum=300.0,
    )
    rollout_min_decisions: int = setting(
        200, "Decisions each side of a canary (the candidate, and the live version on the "
        "same tenants) must have made before their escalation rates are compared and the "
        "candidate may be promoted.", group="decision", minimum=1,
    )
    rollout_min_verdicts: int = setting(
        20, "Reviewers' verdicts that must have judged each side of a canary before their "
        "agreement is compared and the candidate may be promoted.", group="decision",
        minimum=1,
    )
    rollout_max_error_rate: float = setting(
        0.02, "A canary whose share of failed requests (after 20 tries) passes this is rolled "
        "back.", group="decision", minimum=0.0, maximum=1.0,
    )
    rollout_max_escalation_increase: float = setting(
        0.05, "A canary that escalates more than this share of tasks above the live version is "
        "rolled back.", group="decision", minimum=0.0, maximum=1.0,
    )
    rollout_max_agreement_drop: float = setting(
        0.05, "A canary that agrees with reviewers less than the live version by more than "
        "this is rolled back.", group="decision", minimum=0.0, maximum=1.0,
    )
    fairness_min_group_samples: int = setting(
        30, "Tasks a group of a pack's protected attribute needs before its automation rate "
        "counts in a model version's demographic parity difference (the fairness gate and "
        "switchyard_model_parity_difference).", group="decision", minimum=1,
    )
    model_evaluation_days: int = setting(
        7, "Days of reviewers' verdicts the live-accuracy gauges "
        "(switchyard_model_human_agreement_ratio, switchyard_model_calibration_gap) count.",
        group="decision", minimum=1, maximum=30,
    )
    model_evaluation_refresh_s: float = setting(
        60.0, "Seconds between two refreshes of the live-accuracy gauges (one aggregate query "
        "over decision_labels).", group="decision", minimum=1.0, maximum=3600.0,
    )

    # -- executor --------------------------------------------------------------------------
    executor_endpoints: str = setting(
        "", "Endpoint aliases for step targets, 'alias=url' comma separated: http://ALIAS/path "
        "goes to url/path, grpc://ALIAS/Svc/Method to the url's host:port. Required: empty makes "
        "`switchyard run executor` exit 1, and a plan naming an alias missing here fails "
        "(invalid_plan) without calling it; the alias is never used as a host name. "
        "`switchyard up` fills it in, when unset, with its demo downstream (erp, sis, "
        "helpdesk, analytics, ehr, payer, beds); set, it is used as it is (list the demo "
        "aliases too if the shipped packs' plans should still reach the demo downstream).",
        group="executor",
    )
    executor_max_attempts: int = setting(
        4, "Calls of a step before it is parked for a later retry (a step's max_attempts wins).",
        group="executor",
        minimum=1,
    )
    executor_backoff_base_s: float = setting(
        0.2, "First retry delay; doubles per attempt, full jitter.", group="executor",
        minimum=0,
    )
    executor_backoff_cap_s: float = setting(
        5.0, "Longest delay between two attempts in one run; a longer Retry-After parks the "
        "task instead.", group="executor",
        minimum=0,
    )
    executor_http_timeout_s: float = setting(
        10.0, "Deadline of one HTTP call (a step's timeout wins).", group="executor",
        exclusive_minimum=0,
    )
    executor_grpc_timeout_s: float = setting(
        10.0, "Deadline of one gRPC call (a step's timeout wins).", group="executor",
        exclusive_minimum=0,
    )
    executor_sql_timeout_s: float = setting(
        5.0, "Deadline of one SQL statement (a step's timeout wins).", group="executor",
        exclusive_minimum=0,
    )
    executor_sql_dsn: str = setting(
        "", "PostgreSQL DSN of the SQL connector's target: SQL steps (system.table) become rows "
        "of its downstream_records table. Empty: Switchyard's own database and its "
        "downstream_records table.", group="executor", secret=True,
    )
    executor_breaker_fail_max: int = setting(
        10, "Consecutive retryable failures of an endpoint that open its breaker.",
        group="executor",
        minimum=1,
    )
    executor_breaker_reset_s: float = setting(
        15.0, "Seconds an open breaker waits before one replica sends a probe.",
        group="executor",
        minimum=0,
    )
    executor_poll_s: float = setting(
        1.0, "How often a replica beats, adopts shared breaker state and resumes parked tasks.",
        group="executor",
        exclusive_minimum=0,
    )
    executor_replica_timeout_s: float = setting(
        15.0, "A replica silent this long is presumed dead; its running tasks are taken over.",
        group="executor",
        exclusive_minimum=0,
    )
    executor_retry_park_s: float = setting(
        5.0, "Delay before a parked task whose retries ran out runs again; doubles per park "
        "(at most 10 min).", group="executor",
        minimum=0,
    )
    executor_concurrency: int = setting(
        32, "Parked or taken-over tasks one replica resumes at a time.", group="executor",
        minimum=1,
    )
    executor_sla_s: float = setting(
        86400.0, "Deadline of a task without its own, in seconds after acceptance; a task that "
        "would pass it while blocked is escalated.", group="executor",
        exclusive_minimum=0,
    )
    executor_sla_overrides: str = setting(
        "", "Per-tenant deadlines 'tenant:seconds', comma separated.", group="executor"
    )
    downstream_http_port: int = setting(
        8095, "HTTP port of the embedded demo downstream (ERP/scheduling simulator).",
        group="executor",
        minimum=0, maximum=65535,
    )
    downstream_grpc_port: int = setting(
        7055, "gRPC port of the embedded demo downstream (also its health check).",
        group="executor",
        minimum=0, maximum=65535,
    )
    downstream_schema: str = setting(
        "", "Schema of the demo downstream's own tables. Empty: '<postgres_schema>_downstream'.",
        group="executor",
    )

    # -- classroom signals -----------------------------------------------------------------
    signal_batch_size: int = setting(
        2000, "Frames a signal stream processor takes at once (ingest and the engagement "
        "windows).", group="signals", minimum=1, maximum=100000,
    )
    signal_batch_window_ms: float = setting(
        20.0, "How long a signal processor waits to fill a batch.", group="signals",
        exclusive_minimum=0,
    )
    signal_max_future_s: float = setting(
        300.0, "How far in the future (device clock) a frame may claim to be; later ones are "
        "dead-lettered.", group="signals", minimum=0,
    )
    signal_consent_refresh_s: float = setting(
        1.0, "How often ingest reloads consent changes (a withdrawal takes effect within "
        "this).", group="signals", exclusive_minimum=0,
    )
    signal_term_starts: str = setting(
        "01-01,09-01", "Month-day dates a school term starts, comma separated; the "
        "pseudonymisation key rotates at each.", group="signals",
    )
    signal_window_s: float = setting(
        60.0, "Tumbling window size (seconds): the engagement timeline's step.",
        group="signals", exclusive_minimum=0,
    )
    signal_hopping_window_s: float = setting(
        300.0, "Hopping window size (seconds), for sustained disengagement.", group="signals",
        exclusive_minimum=0,
    )
    signal_hopping_step_s: float = setting(
        60.0, "Hopping window step (seconds).", group="signals", exclusive_minimum=0,
    )
    signal_allowed_lateness_s: float = setting(
        10.0, "How long after a window's end (event time) late signals are still counted in "
        "it; later ones are counted as late and dropped.", group="signals", minimum=0,
    )
    signal_idle_close_s: float = setting(
        30.0, "A classroom silent this long (wall clock) has its open windows closed.",
        group="signals", exclusive_minimum=0,
    )
    signal_k_anonymity: int = setting(
        5, "Smallest group of students a class-level figure may describe (smaller groups are "
        "withheld); the fairness report's per-group alert rate needs at least this many "
        "scored windows, which a single student can reach.", group="signals", minimum=2,
        maximum=1000,
    )
    signal_disengaged_below: float = setting(
        0.35, "A student window whose probability of engagement is below this is disengaged.",
        group="signals", minimum=0, maximum=1,
    )
    signal_disengaged_windows: int = setting(
        3, "Consecutive disengaged hopping windows that make a sustained-disengagement alert.",
        group="signals", minimum=1,
    )
    signal_attendance_below: float = setting(
        0.7, "Attendance rate (of expected students) below which a session raises an "
        "attendance-anomaly alert.", group="signals", minimum=0, maximum=1,
    )
    signal_alerts_per_class_per_hour: int = setting(
        4, "Alerts one classroom may raise per hour; the rest are counted and held back.",
        group="signals", minimum=1,
    )
    signal_subject_retention_days: int = setting(
        30, "Days per-student derived signals are kept.", group="signals", minimum=1,
    )
    signal_class_retention_days: int = setting(
        365, "Days class-level engagement windows and attendance are kept.", group="signals",
        minimum=1,
    )
    engagement_max_parity_difference: float = setting(
        0.1, "Largest demographic parity difference (alert rates across groups) an engagement "
        "model may show to be promoted.", group="signals", minimum=0, maximum=1,
    )

    # -- review ----------------------------------------------------------------------------
    review_tenant_rate: float = setting(
        5.0, "Review items admitted per second per tenant (token bucket refill; 0: no limit).",
        group="review",
        minimum=0,
    )
    review_tenant_burst: int = setting(
        100, "Admissions a tenant may take at once (token bucket size).", group="review",
        minimum=1,
    )
    review_queue_rate: float = setting(
        10.0, "Review items admitted per second per queue (0: no limit).", group="review",
        minimum=0,
    )
    review_queue_burst: int = setting(
        200, "Admissions a queue may take at once (token bucket size).", group="review",
        minimum=1,
    )
    review_queue_max_open: int = setting(
        1000, "Pending + claimed items per queue beyond which escalations wait in the "
        "backlog (0: no cap).", group="review",
        minimum=0,
    )
    review_queue_overrides: str = setting(
        "", "Per-queue limits 'queue:rate:burst:max_open', comma separated.", group="review"
    )
    review_expiry_policy: str = setting(
        "reassign", "What an item past its SLA deadline gets: 'reassign' (back to the queue at "
        "P0 with a new deadline; a reviewer's claim on it is dropped, whoever takes it first "
        "decides), 'default_action' (its tenant's) or 'fail'.", group="review",
        choices=("reassign", "default_action", "fail"),
    )
    review_queue_expiry: str = setting(
        "", "Per-queue expiry policy 'queue:policy', comma separated.", group="review"
    )
    review_reassign_extension_s: float = setting(
        3600.0, "The new SLA, in seconds, of an item reassigned after expiry, counted from the "
        "expiry (even past the task's own deadline, which may have passed by then: the item is "
        "overdue and listed first).", group="review",
        exclusive_minimum=0,
    )
    review_sla_bump_s: float = setting(
        900.0, "Items this close (seconds) to their SLA deadline move up one priority bucket.",
        group="review",
        minimum=0,
    )
    review_default_actions: str = setting(
        "", "Tenants' default actions 'tenant:approve|reject' ('*': any other tenant), taken by "
        "the storm and expiry policies.", group="review",
    )
    review_storm_after_s: float = setting(
        0.0, "Seconds a backlogged item at review_storm_priority or less urgent waits before "
        "its tenant's default action is taken (0: never).", group="review",
        minimum=0,
    )
    review_storm_priority: int = setting(
        3, "Most urgent priority bucket the storm policy touches (3: P3 only).", group="review",
        minimum=0, maximum=3,
    )
    review_admission_interval_ms: float = setting(
        100.0, "How often the admission backlog is worked while it holds items (empty, the "
        "admitter waits for an escalation, or a second).", group="review",
        exclusive_minimum=0,
    )
    review_sla_interval_s: float = setting(
        1.0, "How often SLA deadlines and the storm policy are checked.", group="review",
        exclusive_minimum=0,
    )
    review_default_lease_s: float = setting(
        300.0, "Lease of a claim that names none.", group="review",
        exclusive_minimum=0,
    )
    review_redact_pii: bool = setting(
        True, "Redact personal data before reviewers see it: emails, cards, IBANs, national "
        "ids, phones and IP addresses in documents and metadata; personal and health "
        "extracted fields (switchyard/_dataclass.py) the item does not reveal, in the proposed decision, the "
        "discrepancies and wherever the document shows their values.", group="review",
    )

    kpi_minutes_per_manual_task: float = setting(
        6.0, "Minutes a person spends on a task the pipeline automates (time saved).",
        group="kpis",
        minimum=0,
    )
    kpi_review_minutes_per_item: float = setting(
        4.0, ("Minutes a reviewer spends on one verdict or four-eyes approval (the KPI cost counts "
         "those a person gave, not escalations withdrawn undecided)."), group="kpis",
        minimum=0,
    )
    kpi_refresh_s: float = setting(
        10.0, "How often the ingest service recomputes the KPI gauges from PostgreSQL.",
        group="kpis",
        exclusive_minimum=0,
    )
    kpi_idle_after_s: float = setting(
        300.0, "The KPI exporter stops querying PostgreSQL when its metrics endpoint has not "
        "been scraped for this long (and exports no KPI series); the next scrape wakes it, and "
        "the series are back from the scrape after. Keep it above the scrape interval.",
        group="kpis",
        exclusive_minimum=0,
    )
    kpi_inference_cost: float = setting(
        0.0004, "Inference cost per task on the primary Triton pool (GPUs in production).",
        group="kpis", minimum=0,
    )
    kpi_spill_inference_cost: float = setting(
        0.0002, "Inference cost per task the spill-over Triton pool (CPUs) routed "
        "(`triton_spill_url`).", group="kpis", minimum=0,
    )
    kpi_compute_cost: float = setting(
        0.0002, "Compute cost per task.", group="kpis", minimum=0,
    )
    kpi_review_minute_cost: float = setting(
        0.75, "Cost of one reviewer minute.", group="kpis", minimum=0,
    )
    retention_days: int = setting(
        30, "Days a terminal task's raw payload is kept before `switchyard purge` strips it.",
        group="privacy",
        minimum=0,
    )
    retention_overrides: str = setting(
        "", "Per-tenant retention, 'tenant:days' comma separated.", group="privacy"
    )
    matching_key: str = setting(
        "", "HMAC key of the keyed hashes that stand in for personal values the vendor history "
        "only compares (vendor, invoice number, bank account). Empty: a public development key "
        "(a warning is logged). Changing it makes the decision service forget vendor history.",
        group="privacy", secret=True,
    )

    # -- telemetry & auth ------------------------------------------------------------------
    otel_exporter: str = setting(
        "none", "Trace exporter: 'none', 'console', 'otlp' or 'jsonl' (a file).",
        group="telemetry", choices=("none", "console", "otlp", "jsonl"),
    )
    otel_file: str = setting(
        "spans.jsonl", "File the 'jsonl' trace exporter appends spans to.", group="telemetry"
    )
    otel_endpoint: str = setting(
        "http://127.0.0.1:4317", "OTLP collector endpoint when otel_exporter=otlp.",
        group="telemetry",
    )
    tls_cert_file: str = setting(
        "", "PEM certificate chain every gRPC server and the review console (HTTPS) present. "
        "Empty: plaintext.", group="auth"
    )
    tls_key_file: str = setting("", "PEM private key for tls_cert_file.", group="auth",
                                secret=True)
    tls_client_ca_file: str = setting(
        "", "PEM CA bundle; when set, the gRPC servers and the review console require client "
        "certificates from it (mutual TLS). Needs tls_cert_file.",
        group="auth",
    )
    encryption_keys: str = setting(
        "", "Payload encryption keys 'kid:base64(32 bytes)', comma separated. Empty: off.",
        group="auth", secret=True,
    )
    encryption_active_key: str = setting(
        "", "Key id that encrypts new payloads (others only decrypt).", group="auth"
    )
    intake_signing_keys: str = setting(
        "",
        "Per-tenant HMAC keys for intake records, 'tenant:secret' comma separated. Empty: "
        "intake records are not authenticated (dev).",
        group="auth", secret=True,
    )
    tenant_rate_limit: str = setting(
        "", "Per-tenant submission limit, 'rate/burst' (e.g. 500/1000), for the whole "
        "deployment: every replica draws on one shared bucket per tenant in PostgreSQL. "
        "Empty: off.",
        group="auth",
    )
    tenant_rate_limit_overrides: str = setting(
        "", "Per-tenant limits, 'tenant:rate/burst' comma separated.", group="auth"
    )
    tenant_weights: str = setting(
        "", "Tenants' weights, 'tenant:weight' comma separated (a tenant not named weighs 1): "
        "a tenant's share of ingest's backlog limit, and of each decision micro-batcher's "
        "queue, is the limit split by weight among the tenants with work waiting, and the "
        "micro-batchers serve waiting tenants in proportion to their weights.",
        group="auth",
    )
    tenant_rate_lease_s: float = setting(
        0.25, "Seconds of a tenant's rate a replica leases from the shared bucket at once "
        "(one statement per lease); unspent leased tokens are dropped after this long. "
        "Must be > 0.",
        group="auth", exclusive_minimum=0,
    )
    api_keys: str = setting(
        "",
        "Accepted API keys as 'key:tenant:role' entries, comma separated; a reviewer's or an "
        "auditor's key may add its reviewer groups, 'key:tenant:role:group+group' (it then also "
        "sees review items escalated for those groups; an admin is in every group). Empty: "
        "auth off (dev).",
        group="auth",
        secret=True,
    )
    client_api_key: str = setting(
        "", "API key the command-line clients (`switchyard review`, `breakers`, `demo`) send. "
        "Empty: none.",
        group="auth", secret=True,
    )
    client_tls_ca_file: str = setting(
        "", "PEM CA bundle the command-line clients (`switchyard review`, `breakers`, `demo`, "
        "`health`) and the embedded stack's health checks verify servers against; set: they "
        "connect with TLS. Empty: plaintext.",
        group="auth",
    )
    client_tls_cert_file: str = setting(
        "", "PEM client certificate those clients present (for servers with mutual TLS, "
        "SWITCHYARD_TLS_CLIENT_CA_FILE). Needs client_tls_key_file.",
        group="auth",
    )
    client_tls_key_file: str = setting(
        "", "PEM private key for client_tls_cert_file.", group="auth", secret=True,
    )
    client_tls_server_name: str = setting(
        "", "Name those clients check the server certificate against. Empty: the target's "
        "host.",
        group="auth",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_var(f.name))
            if raw is not None:
                values[f.name] = _parse(f.name, hints[f.name], raw)
                problem = out_of_range(f, values[f.name])
                if problem:
                    raise SettingsError(f"{env_var(f.name)}={raw!r}: {problem}")
        if "triton_url" not in values and "triton_grpc_port" in values:
            values["triton_url"] = f"127.0.0.1:{values['triton_grpc_port']}"
        settings = cls(**values)
        settings.check_grammars()
        return settings

    def check_grammars(self) -> None:
        """Parse every setting whose text has a grammar (keys, limits, weights, retention) as
        the services will, so a malformed one stops a command or a service at start-up with
        one line naming it, instead of each service failing with a traceback after the
        stack's components started. Messages name entries by position, never a key."""
        import importlib

        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for names, where in _GRAMMARS:
            if all(getattr(self, name) == defaults[name] for name in names):
                continue  # as shipped (empty): nothing to parse, and no parser to import
            module, _, attribute = where.partition(":")
            parse: Any = importlib.import_module(module)
            for part in attribute.split("."):
                parse = getattr(parse, part)
            try:
                parse(*(getattr(self, name) for name in names))
            except ValueError as exc:
                variables = " and ".join(env_var(name) for name in names)
                message = str(exc)
                raise SettingsError(message if any(env_var(n) in message for n in names)
                                    else f"{variables}: {message}") from None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def triton_urls(self) -> list[str]:
        """Every Triton pool's gRPC endpoint, the primary first (a model loaded into one must
        be loaded into all: they serve the same versions)."""
        return [self.triton_url, *([self.triton_spill_url] if self.triton_spill_url else [])]

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            env[env_var(f.name)] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return env


#: Settings whose text has a grammar, with the parser the services use (module:callable,
#: imported when checked: those modules import this one).
_GRAMMARS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("api_keys",), "switchyard._auth:ApiKeyAuthenticator"),
    (("intake_signing_keys",), "switchyard._auth:IntakeSigner"),
    (("encryption_keys", "encryption_active_key"), "switchyard._crypto:Keyring.from_setting"),
    (("retention_days", "retention_overrides"), "switchyard._retention:parse_retention"),
    (("tenant_rate_limit", "tenant_rate_limit_overrides"), "switchyard._ratelimit:parse_limits"),
    (("tenant_weights",), "switchyard._fairness:parse_weights"),
)


def settings_reference_markdown() -> str:
    """The generated operator reference (docs/settings.md)."""
    hints = get_type_hints(Settings)
    lines = [
        "# Settings reference",
        "",
        "Generated by `switchyard settings --markdown` from `switchyard/_settings.py`; "
        "do not edit by hand.",
        "Every setting is read from its environment variable at process start.",
    ]
    group = None
    for f in dataclasses.fields(Settings):
        if f.metadata["group"] != group:
            group = f.metadata["group"]
            lines += ["", f"## {group}", "", "| env var | type | default | description |",
                      "| --- | --- | --- | --- |"]
        default = "" if f.metadata["secret"] and f.default else f.default
        kind = getattr(hints[f.name], "__name__", str(hints[f.name]))
        if range_text(f):
            kind = f"{kind} ({range_text(f)})"
        lines.append(f"| `{env_var(f.name)}` | {kind} | `{default}` | {f.metadata['doc']} |")
    return "\n".join(lines) + "\n"
