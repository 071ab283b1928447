"""``switchyard demo``'s classroom section against the real services: simulated classrooms
with consent for most students go through ingest's signal processor and decision's
engagement windows, and the summary is what the AnalyticsService keeps (windows,
attendance, alerts), including the attendance problem the simulation put in room-001."""

from __future__ import annotations

import asyncio

import pytest
from rich.console import Console

from switchyard import Settings
from switchyard.demo import classroom_table, run_classrooms
from switchyard.v1 import AlertKind

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]


def test_the_classroom_section_prints_what_analytics_kept(settings: Settings) -> None:
    result = asyncio.run(run_classrooms(settings, classrooms=3, seed=11, minutes=4,
                                        replay_s=4.0))
    assert not result.skipped, result.skipped
    assert result.consented < result.students and result.individual > 0
    assert result.duplicates > 0 and result.flood > 0
    by_room = {summary.classroom_id: (summary, detail) for summary, detail in result.sessions}
    assert set(by_room) == {"room-001", "room-002", "room-003"}
    for summary, detail in by_room.values():
        # four minutes of one-minute windows: at least the three closed by later frames
        assert summary.windows >= 3 and detail.windows
        assert summary.expected_students == 24
    problem, _ = by_room["room-001"]
    usual, _ = by_room["room-002"]
    assert problem.attendance / 24 < 0.7 <= usual.attendance / 24
    kinds = {a.kind for a in by_room["room-001"][1].alerts}
    assert AlertKind.ALERT_KIND_ATTENDANCE_ANOMALY in kinds
    console = Console(width=200, record=True)
    console.print(classroom_table(result))
    text = " ".join(console.export_text().split())
    assert "room-001 (attendance problem)" in text and "room-003 (flooding camera)" in text
    assert f"{result.frames} frames" in text and "Alerts raised:" in text
    # the rate limit's count comes from the decision service's metrics
    assert result.held_back is not None and f"{result.held_back} more held back" in text
