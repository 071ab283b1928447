"""The analytics page's JSON views (services/review/analytics.py): what reaches the browser
of the decision service's answers. A student's pseudonym never does; withheld figures stay
absent (null), never zero."""

from __future__ import annotations

from services.review.analytics import alert_json, fairness_json, session_json, window_json
from switchyard.v1 import (
    AlertKind,
    Driver,
    EngagementAlert,
    EngagementWindow,
    GroupRate,
    ModelFairness,
    SessionSummary,
    WindowKind,
)


def test_an_alert_reaches_the_page_without_the_pseudonym() -> None:
    alert = EngagementAlert(alert_id="al_1", kind=AlertKind.ALERT_KIND_SUSTAINED_DISENGAGEMENT,
                            subject="s_" + "ab" * 16, seat_id="r1c1", windows=3, score=0.2,
                            drivers=[Driver(feature="head_down_share", value=0.8,
                                            contribution=-1.5)], suppressed_before=2)
    alert.window_end.FromSeconds(1_800_000_000)
    out = alert_json(alert)
    assert "s_" + "ab" * 16 not in repr(out) and "subject" not in out
    assert (out["kind"], out["seat_id"], out["window_end"], out["suppressed_before"]) == (
        "SUSTAINED_DISENGAGEMENT", "r1c1", "2027-01-15T08:00:00Z", 2)
    assert out["drivers"] == [{"feature": "head_down_share", "value": 0.8,
                               "contribution": -1.5}]


def test_a_suppressed_window_has_no_engagement_and_a_shown_one_has() -> None:
    withheld = window_json(EngagementWindow(kind=WindowKind.WINDOW_KIND_TUMBLING, students=2,
                                            suppressed=True, attendance=2))
    assert (withheld["engagement"], withheld["drivers"], withheld["attendance"]) == (None, [], 2)
    shown = window_json(EngagementWindow(kind=WindowKind.WINDOW_KIND_TUMBLING, students=5,
                                         engagement=0.0))
    assert shown["engagement"] == 0.0 and shown["kind"] == "TUMBLING"
    assert session_json(SessionSummary(session_id="s"))["engagement"] is None


def test_fairness_says_when_a_version_is_over_the_limit() -> None:
    over = fairness_json(ModelFairness(model_version="1", limit=0.1, parity_difference=0.2,
                                       groups=[GroupRate(group="g1", windows=10, flagged=3,
                                                         rate=0.3),
                                               GroupRate(group="g2", windows=2, flagged=1)]))
    assert over["over_limit"] is True
    assert [g["rate"] for g in over["groups"]] == [0.3, None]  # g2: fewer than k windows
    single = fairness_json(ModelFairness(model_version="2", limit=0.1))
    assert (single["parity_difference"], single["over_limit"]) == (None, False)
