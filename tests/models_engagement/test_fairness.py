"""The fairness figures of the engagement model card, on examples computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from services.decision.training.engagement import fairness


def test_alert_rates_parity_and_equalised_odds_by_hand() -> None:
    # group a: 4 windows, labels 1,1,0,0; P 0.9,0.2,0.1,0.5 -> alerts (P < 0.35): 0,1,1,0
    #   alert rate 2/4 = 0.5; true alert rate (labelled 0): 1/2; false alert rate (labelled 1): 1/2
    # group b: 5 windows, labels 1,1,1,0,0; P 0.8,0.9,0.7,0.3,0.2 -> alerts 0,0,0,1,1
    #   alert rate 2/5 = 0.4; true alert rate 2/2 = 1; false alert rate 0/3 = 0
    p = [0.9, 0.2, 0.1, 0.5, 0.8, 0.9, 0.7, 0.3, 0.2]
    y = [1, 1, 0, 0, 1, 1, 1, 0, 0]
    g = ["a"] * 4 + ["b"] * 5
    f = fairness(np.array(p), np.array(y), g, 0.35)
    assert f["groups"]["a"] == {"n": 4, "disengaged_rate": 0.5, "alert_rate": 0.5,
                                "true_alert_rate": 0.5, "false_alert_rate": 0.5}
    assert f["groups"]["b"] == {"n": 5, "disengaged_rate": 0.4, "alert_rate": 0.4,
                                "true_alert_rate": 1.0, "false_alert_rate": 0.0}
    assert f["demographic_parity_difference"] == pytest.approx(0.1)
    assert f["true_alert_rate_gap"] == pytest.approx(0.5)
    assert f["false_alert_rate_gap"] == pytest.approx(0.5)
    assert f["equalized_odds_difference"] == pytest.approx(0.5)


def test_the_threshold_is_strict_and_three_groups_take_the_widest_gap() -> None:
    # P exactly at the threshold is not an alert (alert = P < threshold)
    p = np.array([0.35, 0.34, 0.0, 0.0, 0.9, 0.9])
    y = np.array([1, 0, 0, 0, 1, 1])
    f = fairness(p, y, ["a", "a", "b", "b", "c", "c"], 0.35)
    assert [f["groups"][k]["alert_rate"] for k in "abc"] == [0.5, 1.0, 0.0]
    assert f["demographic_parity_difference"] == 1.0
    # b has no window labelled engaged, c none labelled disengaged: left out of those gaps
    assert f["groups"]["b"]["false_alert_rate"] is None
    assert f["groups"]["c"]["true_alert_rate"] is None
    assert f["true_alert_rate_gap"] == 0.0          # a 1/1, b 2/2
    assert f["false_alert_rate_gap"] == 0.0         # a 0/1, c 0/2
    assert f["equalized_odds_difference"] == 0.0


def test_equal_alert_rates_have_no_parity_difference() -> None:
    f = fairness(np.array([0.1, 0.9, 0.2, 0.8]), np.array([0, 1, 1, 0]), ["x", "x", "y", "y"], 0.5)
    assert f["demographic_parity_difference"] == 0.0
    # but the errors differ: y's alert hit an engaged window and missed a disengaged one
    assert f["true_alert_rate_gap"] == 1.0 and f["false_alert_rate_gap"] == 1.0
