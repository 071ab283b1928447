"""Noticing that the broker lost its state, and getting every service back on its feet.

The embedded broker keeps topics in memory: a restart loses every topic, every record and
every consumer group's offsets. A running consumer cannot tell on its own: its fetch position
points past the end of a log that no longer exists, and topics recreated by a producer's
metadata request look normal. So the registry has a marker topic that nothing writes or
fetches, whose config carries a random *generation* picked by whoever created it. Each
process remembers the generation it started under; when the marker is gone or carries another
generation, the broker's state is gone.

The process that notices recreates the registry's topics (idempotent; races with its peers are
fine, one creation wins) and exits with :data:`EXIT_BROKER_LOST`, crash-only style: its
supervisor (the kubelet, the chaos harness) starts it again, and the fresh consumer joins an
empty group and reads the new topics from the beginning. Nothing is lost in between:
PostgreSQL is the system of record, and ingest's reconciler re-drives unfinished tasks from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import Gauge

from switchyard._kafka import client_options
from switchyard._settings import Settings
from switchyard._streams import TRANSIENT_ERRORS
from switchyard._topics import BROKER_MARKER, create_topics, marker_generation

log = logging.getLogger(__name__)

#: ``EX_TEMPFAIL``: the process should simply be started again.
EXIT_BROKER_LOST = 75

#: What the watch saw at its last check, per service: a broker away shows here (and in the
#: SwitchyardBrokerUnreachable alert) while readiness stays SERVING, since a service's own
#: work goes on without it (ingest accepts into PostgreSQL; the reconciler publishes later).
BROKER_REACHABLE = Gauge(
    "switchyard_broker_reachable",
    "1 when the service's last broker check (every SWITCHYARD_BROKER_CHECK_INTERVAL_S) was "
    "answered, 0 when it failed.", ["service"])
BROKER_LAST_ANSWER = Gauge(
    "switchyard_broker_last_answer_timestamp_seconds",
    "When the broker last answered the service's check (Unix time).", ["service"])


async def broker_generation(admin: AIOKafkaAdminClient, settings: Settings) -> int | None:
    """The marker's generation; None when the marker topic does not exist."""
    name = BROKER_MARKER.full_name(settings)
    if name not in set(await admin.list_topics()):
        return None
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    for error_code, _message, _type, _name, entries in response.resources:
        if error_code:
            return None
        for entry in entries:
            if entry[0] == "retention.ms":
                return marker_generation(entry[1])
    return None


async def watch_broker(settings: Settings, on_lost: Callable[[], None],
                       service: str = "") -> None:
    """Every ``broker_check_interval_s``, compare the marker's generation with the one this
    process started under; on a change, recreate the topics and call ``on_lost`` (which stops
    the service with :data:`EXIT_BROKER_LOST`). Each check's answer, or its failure, is
    :data:`BROKER_REACHABLE` of ``service``."""
    if settings.broker_check_interval_s <= 0:
        return
    reachable = BROKER_REACHABLE.labels(service)
    last_answer = BROKER_LAST_ANSWER.labels(service)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        started_under = await broker_generation(admin, settings)
        if started_under is None:  # a broker without our topics: create them and begin there
            await create_topics(settings)
            started_under = await broker_generation(admin, settings)
        reachable.set(1)
        last_answer.set_to_current_time()
        answering = True   # said once per outage in the log, not once per check
        while True:
            await asyncio.sleep(settings.broker_check_interval_s)
            try:
                now = await broker_generation(admin, settings)
            except TRANSIENT_ERRORS as exc:  # broker down right now: ask again next round
                if answering:
                    log.error("the broker does not answer (%r): checking again every %g s",
                              exc, settings.broker_check_interval_s)
                answering = False
                reachable.set(0)
                continue
            if not answering:
                log.info("the broker answers again")
            answering = True
            reachable.set(1)
            last_answer.set_to_current_time()
            if now == started_under:
                continue
            log.error("the broker lost its state (marker generation %s, started under %s): "
                      "recreating topics and restarting so consumers rejoin from the start",
                      now, started_under)
            if now is None:
                try:
                    await create_topics(settings)
                except TRANSIENT_ERRORS as exc:  # the next process creates them
                    log.warning("recreating topics failed: %r", exc)
            on_lost()
            return
    finally:
        await admin.close()


__all__ = ["BROKER_REACHABLE", "EXIT_BROKER_LOST", "broker_generation", "watch_broker"]
