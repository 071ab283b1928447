"""The shadow router's sample: a fixed share of task ids, the same choice every time."""

from __future__ import annotations

import uuid

from services.decision.shadow import shadow_sampled


def test_the_share_of_task_ids_is_the_setting_and_the_choice_is_sticky() -> None:
    ids = [str(uuid.uuid4()) for _ in range(20_000)]
    chosen = [i for i in ids if shadow_sampled(i, 0.1)]
    assert 0.09 < len(chosen) / len(ids) < 0.11
    assert all(shadow_sampled(i, 0.1) for i in chosen)          # the same on redelivery
    assert set(chosen) <= {i for i in ids if shadow_sampled(i, 0.5)}  # a larger share adds
    assert all(shadow_sampled(i, 1.0) for i in ids)
    assert not any(shadow_sampled(i, 0.0) for i in ids)
