"""The engagement processor: admitted frames in, closed windows scored, stored and published.

A supervised loop with its own consumer group on ``classroom-signals-admitted``. Each batch
(``signal_batch_size`` records or ``signal_batch_window_ms``) is counted into the open windows
(:mod:`.windows`); the windows it closes are scored in ONE Triton call (model ``engagement``:
every student row of every closed window), then written in ONE PostgreSQL transaction with
the sessions' marks, then published. Consumer offsets are committed only up to the lowest
offset an open window still needs, so a restarted process re-reads exactly what rebuilds its
open windows; the marks make it skip records of windows already closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from pathlib import Path
from collections import defaultdict
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import Counter, Gauge
from tritonclient.utils import InferenceServerException

from services.decision.engagement.alerts import (
    ATTENDANCE,
    SUSTAINED,
    Alert,
    HoppingScore,
    attendance_alert,
    intake_headers,
    store_alerts,
    sustained_alerts,
    utc,
)
from services.decision.engagement.features import FEATURE_NAMES, SubjectWindow
from services.decision.engagement.windows import (
    HOPPING,
    TUMBLING,
    ClassWindow,
    Mark,
    SessionKey,
    SessionWindows,
    WindowShape,
)
from services.decision.triton import ModelUnavailable, ScorerClient
from switchyard import Settings
from switchyard.messaging import (
    ENGAGEMENT_WINDOWS,
    INTAKE,
    SIGNALS_ADMITTED,
    Producer,
    SerdeError,
    client_options,
    decode,
)
from switchyard.v1 import AdmittedFrame, Driver, EngagementWindow

log = logging.getLogger(__name__)

WINDOWS_CLOSED = Counter("switchyard_engagement_windows_closed_total",
                         "Engagement windows closed, by kind and whether k-anonymity withheld "
                         "them.", ["kind", "suppressed"])
FRAMES = Counter("switchyard_engagement_frames_total", "Admitted frames counted into windows.")
BAD_FRAMES = Counter("switchyard_engagement_bad_frames_total",
                     "Records on the admitted topic that are no AdmittedFrame (skipped).")
ALERT_RATE = Gauge("switchyard_engagement_alert_rate",
                   "Per-student windows flagged disengaged / scored, per model version and "
                   "group (fairness on live data; groups under k withheld).",
                   ["model_version", "group"])
PARITY = Gauge("switchyard_engagement_parity_difference",
               "Demographic parity difference (max - min group alert rate) per model version.",
               ["model_version"])
#: How long to wait before asking Triton again when the engagement model cannot answer.
SCORE_RETRY_S = 2.0
#: How long the processor waits for signals while no session is open (it wakes at once when
#: they come; with sessions open it wakes every signal_batch_window_ms to close windows).
IDLE_WAIT_MS = 1000
#: How often the served engagement model's config (its version) is read again.
MODEL_REFRESH_S = 60.0
DRIVERS_SHOWN = 3


def group_id(settings: Settings) -> str:
    return f"{settings.kafka_topic_prefix}switchyard-decision-engagement"


def shapes(settings: Settings) -> list[WindowShape]:
    return [WindowShape.tumbling(settings.signal_window_s),
            WindowShape.hopping(settings.signal_hopping_window_s, settings.signal_hopping_step_s)]


class DriverWeights:
    """The engagement model's logistic weights (its ``weights.npz``: ``mean``, ``scale``,
    ``coef``), for the drivers: contribution_i = coef_i * (value_i - mean_i) / scale_i, the
    feature's share of the log-odds against the training mean (Platt scaling keeps the sign
    and order)."""

    def __init__(self, coef: list[float] | None = None, mean: list[float] | None = None,
                 scale: list[float] | None = None) -> None:
        self.coef, self.mean, self.scale = coef, mean, scale

    @classmethod
    def from_repository(cls, repository: str | Path) -> DriverWeights:
        """The newest version directory of ``engagement`` with weights; none: no weights
        (drivers then carry values with contribution 0)."""
        root = Path(repository) / "engagement"
        versions = sorted((p for p in root.glob("[0-9]*") if (p / "weights.npz").is_file()),
                          key=lambda p: int(p.name) if p.name.isdigit() else -1)
        if not versions:
            return cls()
        import numpy as np  # noqa: PLC0415

        with np.load(versions[-1] / "weights.npz") as w:
            return cls([float(v) for v in w["coef"]], [float(v) for v in w["mean"]],
                       [float(v) or 1.0 for v in w["scale"]])

    def drivers(self, vector: list[float]) -> list[dict[str, Any]]:
        """The features that moved a score most, largest contribution first."""
        out = []
        for i, (name, value) in enumerate(zip(FEATURE_NAMES, vector)):
            contribution = (self.coef[i] * (value - self.mean[i]) / self.scale[i]
                            if self.coef and self.mean and self.scale else 0.0)
            out.append({"feature": name, "value": round(value, 6),
                        "contribution": round(contribution, 6)})
        if self.coef:
            out.sort(key=lambda d: -abs(d["contribution"]))
        return out[:DRIVERS_SHOWN]


def mean_vector(vectors: list[list[float]]) -> list[float]:
    return [sum(column) / len(vectors) for column in zip(*vectors)] if vectors else []


#: The share of a window's seconds the class must have been observed in for the window to
#: raise an alert: a window that reaches before the lesson began (its first, partial minute,
#: students still sitting down; a hopping window over the start) is stored and charted, but
#: says nothing about attendance or a student's attention yet.
WHOLE_WINDOW_SHARE = 0.9


def observed_whole(window: ClassWindow) -> bool:
    """Whether the class was observed for (nearly) all of ``window``: see
    :data:`WHOLE_WINDOW_SHARE`."""
    return window.observed_seconds >= WHOLE_WINDOW_SHARE * (window.end - window.start)


class Scored:
    """A closed window with its students' probabilities of engagement."""

    def __init__(self, window: ClassWindow, students: list[tuple[str, SubjectWindow]],
                 vectors: list[list[float]], probabilities: list[float]) -> None:
        self.window = window
        self.students = students
        self.vectors = vectors
        self.probabilities = probabilities


class EngagementProcessor:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, producer: Producer,
                 scorer: ScorerClient, weights: DriverWeights | None = None) -> None:
        self.settings = settings
        self.weights = weights or DriverWeights.from_repository(settings.model_repository)
        self._metadata_at = 0.0
        self.pool = pool
        self.producer = producer
        self.scorer = scorer

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Consume, window, close, score, persist, publish, commit; forever. A failure ends
        the loop; the supervisor restarts it, and the new one rebuilds its open windows from
        the committed offsets and the persisted marks."""
        s = self.settings
        windows = SessionWindows(shapes(s), s.signal_allowed_lateness_s, s.signal_idle_close_s)
        consumer = AIOKafkaConsumer(
            group_id=group_id(s), enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, s.kafka_session_timeout_ms // 6),
            max_poll_interval_ms=600_000, **client_options(s))

        class Revoked(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
                windows.drop_partitions({tp.partition for tp in revoked})

            def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
                pass

        consumer.subscribe([SIGNALS_ADMITTED.full_name(s)], listener=Revoked())
        await consumer.start()
        try:
            await self.republish()
            positions: dict[TopicPartition, int] = {}
            committed: dict[TopicPartition, int] = {}
            while True:
                # with no session open nothing waits to be closed: sleep until signals come
                # (getmany returns as soon as records are fetched) instead of waking every
                # batch window
                wait_ms = s.signal_batch_window_ms if windows.sessions else IDLE_WAIT_MS
                batch = await consumer.getmany(timeout_ms=int(wait_ms),
                                               max_records=s.signal_batch_size)
                records = [r for part in batch.values() for r in part]
                for tp, part in batch.items():
                    positions[tp] = part[-1].offset + 1
                if records or windows.sessions:
                    await self.process(records, windows, time.time())
                lowest = windows.lowest_offsets()
                commits = {}
                for tp, position in positions.items():
                    if tp not in consumer.assignment():
                        continue
                    offset = min(lowest.get(tp.partition, position), position)
                    if committed.get(tp) != offset:
                        commits[tp] = offset
                if commits:
                    await consumer.commit(commits)
                    committed.update(commits)
                for tp in [tp for tp in positions if tp not in consumer.assignment()]:
                    positions.pop(tp)
                    committed.pop(tp, None)
        finally:
            await consumer.stop()

    async def process(self, records: list[Any], windows: SessionWindows, now: float) -> None:
        """One batch: count, close, score, persist, publish."""
        frames: list[tuple[AdmittedFrame, int, int]] = []
        for record in records:
            headers = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
                       for k, v in (record.headers or [])}
            try:
                frame = decode(record.value, headers, AdmittedFrame)
            except SerdeError as exc:
                BAD_FRAMES.inc()
                log.warning("skipping a record that is no AdmittedFrame (%s)", exc)
                continue
            frames.append((frame, record.partition, record.offset))
        unknown = {windows.key_of(f): p for f, p, _ in frames if not windows.known(windows.key_of(f))}
        if unknown:
            marks = await load_marks(self.pool, list(unknown))
            for key, partition in unknown.items():
                windows.restore(key, partition, marks.get(key, {}))
        for frame, partition, offset in frames:
            windows.add(frame, partition, offset, now)
            FRAMES.inc()
        closed = windows.close_due(now)
        scored = await self.score(closed)
        marks = windows.persisted()
        if not scored and not marks:
            return
        raised = await self.persist(scored, marks)
        windows.forget_idle()
        await self.publish_windows([self.window_message(s) for s in scored])
        await self.publish_alerts(raised)
        if scored:
            await self.update_fairness_gauges()

    # -- scoring -----------------------------------------------------------------------------
    async def score(self, closed: list[ClassWindow]) -> list[Scored]:
        """Every student row of every closed window in one Triton call (retried while the
        model is away: nothing is committed meanwhile)."""
        rows: list[list[float]] = []
        parts = []
        for window in closed:
            audio = window.audio_level or 0.0
            students = window.scored_subjects()
            vectors = [sw.vector(audio) for _, sw in students]
            parts.append((window, students, vectors))
            rows.extend(vectors)
        probabilities: list[float] = []
        while rows:
            try:
                await self._refresh_model()
                probabilities = await self._predict(rows)
                break
            except ModelUnavailable as exc:
                log.warning("engagement model unavailable (%s); %d windows wait", exc,
                            len(closed))
                await asyncio.sleep(SCORE_RETRY_S)
        out, at = [], 0
        for window, students, vectors in parts:
            out.append(Scored(window, students, vectors,
                              probabilities[at:at + len(vectors)]))
            at += len(vectors)
        return out

    async def _predict(self, rows: list[list[float]]) -> list[float]:
        """One request, or (above the model's max_batch_size) one request per chunk, sent
        together."""
        limit = int(self.scorer.config.get("max_batch_size") or 0) or len(rows)
        chunks = [rows[i:i + limit] for i in range(0, len(rows), limit)]
        answers = await asyncio.gather(*(self.scorer.predict(chunk) for chunk in chunks))
        return [p.confidence for answer in answers for p in answer]

    async def _refresh_model(self) -> None:
        """Re-read the served model's config now and then: a promoted version (Triton serves
        the newest) brings its own model_version and weights (the drivers)."""
        now = time.monotonic()
        if self._metadata_at and now - self._metadata_at < MODEL_REFRESH_S:
            return
        before = self.scorer.version if self._metadata_at else None
        try:
            await asyncio.wait_for(self.scorer.load_metadata(),
                                   self.settings.triton_timeout_s + 1)
        except (InferenceServerException, asyncio.TimeoutError, OSError, KeyError) as exc:
            raise ModelUnavailable(f"engagement: no config ({exc!r})") from None
        self._metadata_at = now
        if before is not None and self.scorer.version != before:
            log.info("engagement model %s -> %s", before, self.scorer.version)
            self.weights = DriverWeights.from_repository(self.settings.model_repository)

    @property
    def model_version(self) -> str:
        return self.scorer.version

    def class_figures(self, scored: Scored) -> tuple[bool, float | None, list[dict[str, Any]]]:
        """(suppressed, engagement, drivers): withheld below k students."""
        window = scored.window
        suppressed = window.students < self.settings.signal_k_anonymity
        if suppressed or not scored.probabilities:
            return suppressed, None, []
        engagement = sum(scored.probabilities) / len(scored.probabilities)
        return False, engagement, self.weights.drivers(mean_vector(scored.vectors))

    def window_message(self, scored: Scored) -> EngagementWindow:
        window = scored.window
        suppressed, engagement, class_drivers = self.class_figures(scored)
        message = EngagementWindow(
            tenant_id=window.session[0], classroom_id=window.session[1],
            session_id=window.session[2], kind=window.kind,  # type: ignore[arg-type]
            students=window.students, suppressed=suppressed, occupancy=window.occupancy,
            attendance=len(window.present), expected_students=window.expected,
            signals=window.signals, dropped_no_consent=window.dropped_no_consent,
            late_signals=window.late, duplicate_signals=window.duplicates,
            model_version=self.model_version if scored.probabilities else "",
            drivers=[Driver(**d) for d in class_drivers])
        message.start.FromDatetime(utc(window.start))
        message.end.FromDatetime(utc(window.end))
        if engagement is not None:
            message.engagement = engagement
        if window.audio_level is not None:
            message.audio_level = window.audio_level
        return message

    # -- persistence -------------------------------------------------------------------------
    async def persist(self, scored: list[Scored],
                      marks: list[tuple[SessionKey, int, Mark]]) -> list[Alert]:
        """One transaction: windows, per-student rows, fairness counts, alerts, marks."""
        s = self.settings
        version = self.model_version
        window_rows, subject_rows, hopping = [], [], []
        groups: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        candidates: list[Alert] = []
        for item in scored:
            w = item.window
            tenant, classroom, session = w.session
            suppressed, engagement, class_drivers = self.class_figures(item)
            window_rows.append((
                tenant, classroom, session, w.kind, utc(w.start), utc(w.end), w.students,
                suppressed, engagement, w.occupancy, w.audio_level, len(w.present), w.expected,
                w.signals, w.dropped_no_consent, w.late, w.duplicates,
                version if item.probabilities else "",
                None if suppressed else json.dumps(class_drivers)))
            for (subject, sw), vector, p in zip(item.students, item.vectors, item.probabilities):
                group = w.groups.get(subject)
                if w.kind == TUMBLING and group:  # each student window counted once
                    counts = groups[(tenant, group)]
                    counts[0] += 1
                    counts[1] += p < s.signal_disengaged_below
                if not w.individual.get(subject):
                    continue
                subject_rows.append((tenant, classroom, session, w.kind, utc(w.start),
                                     utc(w.end), subject, sw.seat_id, p,
                                     json.dumps(sw.counts()), version))
                if w.kind == HOPPING and observed_whole(w):
                    hopping.append(HoppingScore(tenant, classroom, session, subject,
                                                sw.seat_id, w.start, w.end, p,
                                                self.weights.drivers(vector)))
            if w.kind == TUMBLING and observed_whole(w):
                alert = attendance_alert(tenant, classroom, session, w.start, w.end,
                                         len(w.present), w.expected, s.signal_attendance_below,
                                         version)
                if alert is not None:
                    candidates.append(alert)
        async with self.pool.acquire() as conn, conn.transaction():
            if window_rows:
                await conn.executemany(
                    "INSERT INTO engagement_windows (tenant_id, classroom_id, session_id, kind, "
                    "window_start, window_end, students, suppressed, engagement, occupancy, "
                    "audio_level, attendance, expected_students, signals, dropped_no_consent, "
                    "late_signals, duplicate_signals, model_version, drivers) VALUES ($1,$2,$3,"
                    "$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19::jsonb) "
                    "ON CONFLICT DO NOTHING", window_rows)
            if subject_rows:
                await conn.executemany(
                    "INSERT INTO engagement_subject_windows (tenant_id, classroom_id, "
                    "session_id, kind, window_start, window_end, subject, seat_id, p_engaged, "
                    "features, model_version) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10::jsonb,"
                    "$11) ON CONFLICT DO NOTHING", subject_rows)
            if groups:
                await conn.executemany(
                    "INSERT INTO engagement_group_counts (tenant_id, model_version, group_name, "
                    "windows, flagged) VALUES ($1,$2,$3,$4,$5) ON CONFLICT (tenant_id, "
                    "model_version, group_name) DO UPDATE SET windows = "
                    "engagement_group_counts.windows + EXCLUDED.windows, flagged = "
                    "engagement_group_counts.flagged + EXCLUDED.flagged",
                    [(t, version, g, c[0], c[1]) for (t, g), c in groups.items()])
            if hopping:
                candidates += await sustained_alerts(
                    conn, hopping, s.signal_hopping_step_s, s.signal_disengaged_below,
                    s.signal_disengaged_windows, version)
            raised = await store_alerts(conn, candidates, s.signal_alerts_per_class_per_hour)
            if marks:
                await conn.executemany(
                    "INSERT INTO engagement_marks (tenant_id, classroom_id, session_id, kind, "
                    "closed_until, max_observed, late_pending, processed_offset) VALUES ($1,$2,"
                    "$3,$4,$5,$6,$7,$8) ON CONFLICT (tenant_id, classroom_id, session_id, kind) "
                    "DO UPDATE SET closed_until = EXCLUDED.closed_until, max_observed = "
                    "EXCLUDED.max_observed, late_pending = EXCLUDED.late_pending, "
                    "processed_offset = EXCLUDED.processed_offset, updated_at = now()",
                    [(*key, kind, _finite(m.closed_until), _finite(m.max_observed),
                      m.late_pending, m.processed_offset) for key, kind, m in marks])
        for item in scored:
            WINDOWS_CLOSED.labels(str(item.window.kind),
                                  str(item.window.students < s.signal_k_anonymity).lower()).inc()
        return raised

    # -- publishing --------------------------------------------------------------------------
    async def publish_windows(self, messages: list[EngagementWindow]) -> None:
        if not messages:
            return
        futures = [await self.producer.send_nowait(ENGAGEMENT_WINDOWS, window_key(m), m)
                   for m in messages]
        for future in futures:
            await future
        async with self.pool.acquire() as conn:
            await conn.executemany(
                "UPDATE engagement_windows SET published_at = now() WHERE tenant_id = $1 AND "
                "classroom_id = $2 AND session_id = $3 AND kind = $4 AND window_start = $5",
                [(m.tenant_id, m.classroom_id, m.session_id, m.kind,
                  m.start.ToDatetime(tzinfo=utc(0).tzinfo)) for m in messages])

    async def publish_alerts(self, alerts: list[Alert]) -> None:
        """Raised alerts to intake (a JSON submission each), then marked published."""
        for alert in alerts:
            value = alert.submission()
            await self.producer.send_raw(INTAKE.full_name(self.settings),
                                         alert.alert_id.encode(), value,
                                         intake_headers(alert, value,
                                                        self.settings.intake_signing_keys))
        if alerts:
            async with self.pool.acquire() as conn:
                await conn.execute("UPDATE engagement_alerts SET published_at = now() "
                                   "WHERE alert_id = ANY($1::text[])",
                                   [a.alert_id for a in alerts])

    async def republish(self) -> None:
        """What a previous process stored but may not have published (it stopped between
        its commit and its sends): windows and raised alerts without published_at."""
        async with self.pool.acquire() as conn:
            windows = await conn.fetch("SELECT * FROM engagement_windows "
                                       "WHERE published_at IS NULL")
            alerts = await conn.fetch("SELECT alert_id, tenant_id, document FROM "
                                      "engagement_alerts WHERE published_at IS NULL AND NOT "
                                      "suppressed")
        if windows:
            await self.publish_windows([stored_window(r) for r in windows])
        for row in alerts:
            document = json.loads(row["document"])
            alert = alert_from_document(row["tenant_id"], document)
            await self.publish_alerts([alert])

    async def update_fairness_gauges(self) -> None:
        from services.decision.engagement.analytics import fairness  # noqa: PLC0415
        async with self.pool.acquire() as conn:
            report = await fairness(conn, None, self.settings.signal_k_anonymity)
        for model in report:
            for group in model["groups"]:
                if group["rate"] is not None:
                    ALERT_RATE.labels(model["model_version"], group["group"]).set(group["rate"])
            if model["parity_difference"] is not None:
                PARITY.labels(model["model_version"]).set(model["parity_difference"])


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -1e18


def window_key(m: EngagementWindow) -> str:
    return (f"{m.tenant_id}/{m.classroom_id}/{m.session_id}/{m.kind}/"
            f"{m.start.ToDatetime().isoformat()}")


def stored_window(row: asyncpg.Record) -> EngagementWindow:
    """An engagement_windows row as the published message."""
    message = EngagementWindow(
        tenant_id=row["tenant_id"], classroom_id=row["classroom_id"],
        session_id=row["session_id"], kind=row["kind"], students=row["students"],
        suppressed=row["suppressed"], occupancy=row["occupancy"],
        attendance=row["attendance"], expected_students=row["expected_students"],
        signals=row["signals"], dropped_no_consent=row["dropped_no_consent"],
        late_signals=row["late_signals"], duplicate_signals=row["duplicate_signals"],
        model_version=row["model_version"],
        drivers=[Driver(**d) for d in json.loads(row["drivers"] or "[]")])
    message.start.FromDatetime(row["window_start"])
    message.end.FromDatetime(row["window_end"])
    if row["engagement"] is not None:
        message.engagement = row["engagement"]
    if row["audio_level"] is not None:
        message.audio_level = row["audio_level"]
    return message


def alert_from_document(tenant: str, doc: dict[str, Any]) -> Alert:
    kind = SUSTAINED if doc["event"] == "sustained_disengagement" else ATTENDANCE
    return Alert(doc["alert_id"], tenant, doc["class_id"], doc["session"], kind,
                 datetime.fromisoformat(doc["window_start"]).timestamp(),
                 datetime.fromisoformat(doc["window_end"]).timestamp(), doc["windows"],
                 doc["score"], doc["model_version"], doc["detail"], subject=doc["subject"],
                 seat_id=doc["seat"], attendance_rate=doc.get("attendance_rate"),
                 drivers=doc["drivers"], suppressed_before=doc["suppressed_before"])


async def load_marks(pool: asyncpg.Pool, keys: list[SessionKey]
                     ) -> dict[SessionKey, dict[int, Mark]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT m.* FROM engagement_marks m JOIN unnest($1::text[], $2::text[], $3::text[]) "
            "AS k(tenant_id, classroom_id, session_id) USING (tenant_id, classroom_id, "
            "session_id)", [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])
    out: dict[SessionKey, dict[int, Mark]] = defaultdict(dict)
    for r in rows:
        out[(r["tenant_id"], r["classroom_id"], r["session_id"])][r["kind"]] = Mark(
            r["closed_until"], r["max_observed"], r["late_pending"], r["processed_offset"])
    return out


__all__ = ["DriverWeights", "EngagementProcessor", "group_id", "shapes"]
