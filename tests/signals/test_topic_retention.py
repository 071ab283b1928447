"""Raw and admitted signals live only in Kafka, briefly: their topics are created with one
hour's retention (the brokers in production delete older records), the derived windows'
topic is compacted."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from switchyard import Settings
from switchyard.messaging import (
    CLASSROOM_SIGNALS,
    ENGAGEMENT_WINDOWS,
    SIGNALS_ADMITTED,
    client_options,
)

pytestmark = pytest.mark.integration
HOUR_MS = str(3600 * 1000)


async def test_signal_topics_are_created_with_short_retention(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        topics = (CLASSROOM_SIGNALS, SIGNALS_ADMITTED, ENGAGEMENT_WINDOWS)
        responses = await admin.describe_configs([
            ConfigResource(ConfigResourceType.TOPIC, t.full_name(settings)) for t in topics])
        configs = {}
        for response in responses:
            for _code, _message, _type, name, entries in response.resources:
                configs[name] = {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.close()
    raw, admitted, windows = (configs[t.full_name(settings)] for t in topics)
    assert raw["retention.ms"] == HOUR_MS and raw["cleanup.policy"] == "delete"
    assert admitted["retention.ms"] == HOUR_MS and admitted["cleanup.policy"] == "delete"
    assert windows["cleanup.policy"] == "compact"
