"""Rubric-labelled engagement windows: the observers' rubric and two generators.

The rubric (docs/engagement-model.md) is what a trained observer marks for one student over one
window, from what they *see* (which a camera only approximates):

* **present**: seated for at least half of the window; else *disengaged*;
* **on task**: facing the front, or head down writing notes (an observer tells notes from a
  phone; the camera cannot), for at least 60% of the seconds present (each observer's own
  line wobbles a little around 60%);
* **participating**: a raised hand at least once, or leaning forward at least 10% of the
  seconds present; a student on task for 80% or more needs no participation;
* *engaged* = present and on task and (participating or on task >= 80%); else *disengaged*.
  Observers also simply mis-mark a few windows (:data:`OBSERVER_FLIP`).

Two independently written generators produce the behaviour the rubric is applied to:

:func:`simulate_windows` (the shipped training data, ``models/data/engagement_windows.jsonl``)
    a per-second behavioural simulation: each student has an attention trait and a hand-raising
    trait; attention switches on and off as a two-state Markov chain; late arrivals and early
    leavers; groups differ in *nuisance* habits the rubric ignores: group ``b`` slouches most of
    the time whatever it does, group ``c`` takes many notes head down. The camera's per-second
    frames (with detection errors, dropped and duplicated frames) are counted through
    :class:`~services.decision.engagement.features.SubjectWindow` -- the serving path.

:func:`episode_windows` (evaluation only)
    a window is a script of episodes (listening, notes, discussion, phone, chatting, dozing,
    out of the room) drawn from a student's mode; each episode has its own sensor pattern. It
    shares nothing with the simulation but the rubric and SubjectWindow.

:data:`EDGE_CASES` are hand-written windows with the label the rubric gives them.

Only ``random.Random(seed)`` is used, so the same seed gives the same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from services.decision.engagement.features import SubjectWindow
from switchyard.v1 import Posture

GENERATOR_VERSION = "1"
DATA_FILE = "engagement_windows.jsonl"
DATA_N = 6000
#: the data seed offset from datagen's seed (so one --data-seed regenerates every corpus)
SEED_OFFSET = 7
EPISODE_SEED = 424242
EPISODE_N = 2000

GROUPS: tuple[str, ...] = ("a", "b", "c")
GROUP_SHARES: tuple[float, ...] = (0.45, 0.35, 0.20)
#: window lengths in seconds: the tumbling (signal_window_s) and hopping (signal_hopping_window_s)
#: windows the engagement processor scores
WINDOW_SECONDS: tuple[int, ...] = (60, 300)

PRESENT_MIN = 0.5
ON_TASK_MIN = 0.6
ON_TASK_ALONE = 0.8
LEAN_MIN = 0.1
OBSERVER_JITTER = 0.05
OBSERVER_FLIP = 0.04

UPRIGHT = int(Posture.POSTURE_UPRIGHT)
SLOUCHED = int(Posture.POSTURE_SLOUCHED)
LEANING = int(Posture.POSTURE_LEANING_FORWARD)


def rubric_engaged(window_seconds: int, present: int, on_task: int, hand_raised: int,
                   leaning_forward: int, on_task_min: float = ON_TASK_MIN) -> bool:
    """The rubric on what the observer saw (seconds): True = engaged."""
    if present < PRESENT_MIN * window_seconds or present == 0:
        return False
    share = on_task / present
    participating = hand_raised > 0 or leaning_forward >= LEAN_MIN * present
    return share >= on_task_min and (participating or share >= ON_TASK_ALONE)


def _observer(g: random.Random, seen: Mapping[str, int], window_seconds: int) -> tuple[int, int]:
    """An observer's mark: the rubric with their own on-task line, and a few slips."""
    line = ON_TASK_MIN + g.gauss(0.0, OBSERVER_JITTER)
    engaged = rubric_engaged(window_seconds, seen["present"], seen["on_task"],
                             seen["hand_raised"], seen["leaning_forward"], line)
    flipped = g.random() < OBSERVER_FLIP
    return int(engaged != flipped), int(flipped)


class _Camera:
    """Per-second frames as the room camera reports them: detection errors, dropped frames
    (not counted) and duplicated frames (counted once by SubjectWindow)."""

    def __init__(self, g: random.Random, window_seconds: int) -> None:
        self.g = g
        self.window = SubjectWindow(window_seconds=window_seconds)

    def frame(self, second: int, face: bool, hand: bool, posture: int, head_down: bool) -> None:
        g = self.g
        if g.random() < 0.02:
            return  # frame lost
        face = face != (g.random() < 0.05)
        head_down = head_down != (g.random() < 0.03)
        hand = hand and g.random() > 0.1
        if g.random() < 0.06:
            posture = g.choice([p for p in (UPRIGHT, SLOUCHED, LEANING) if p != posture])
        for _ in range(2 if g.random() < 0.01 else 1):
            self.window.add(second, face, hand, posture, head_down)


def _audio(g: random.Random, discussion: bool) -> float:
    return round(g.uniform(0.45, 0.85) if discussion else g.uniform(0.15, 0.45), 3)


def simulate_windows(n: int = DATA_N, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` rubric-labelled windows from the per-second behavioural simulation."""
    g = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        group = g.choices(GROUPS, weights=GROUP_SHARES)[0]
        T = g.choices(WINDOW_SECONDS, weights=(0.7, 0.3))[0]
        discussion = g.random() < 0.4
        audio = _audio(g, discussion)
        attention = min(0.98, g.betavariate(3.0, 1.6))
        hand_rate = g.betavariate(1.0, 3.0) * (0.06 if discussion else 0.02)
        p_leave = 1.0 / 40.0
        p_return = min(1.0, p_leave * attention / (1.0 - attention))
        u = g.random()
        absent = set()
        if u < 0.04:
            absent = set(range(T))
        elif u < 0.12:
            absent = set(range(int(g.uniform(0.2, 0.8) * T)))
        elif u < 0.17:
            absent = set(range(T - int(g.uniform(0.2, 0.8) * T), T))
        notes = 0.30 if group == "c" else 0.08
        cam = _Camera(g, T)
        seen = {"present": 0, "on_task": 0, "hand_raised": 0, "leaning_forward": 0}
        attending = g.random() < attention
        for s in range(T):
            attending = (g.random() >= p_leave) if attending else (g.random() < p_return)
            if s in absent:
                continue
            if attending:
                writing = g.random() < notes
                head_down = writing or g.random() < 0.02
                face = not writing and g.random() < 0.92
                hand = g.random() < hand_rate
                r = g.random()
                posture = LEANING if r < 0.25 else (SLOUCHED if r < 0.33 else UPRIGHT)
                on_task = face or writing
            else:
                head_down = g.random() < 0.5
                face = not head_down and g.random() < 0.3
                hand = False
                r = g.random()
                posture = SLOUCHED if r < 0.45 else (LEANING if r < 0.5 else UPRIGHT)
                on_task = False
            if group == "b" and posture == UPRIGHT and g.random() < 0.7:
                posture = SLOUCHED  # a habit: sits back slouched, whatever it attends to
            seen["present"] += 1
            seen["on_task"] += on_task
            seen["hand_raised"] += hand
            seen["leaning_forward"] += posture == LEANING
            cam.frame(s, face, hand, posture, head_down)
        cam.window.checked_in = g.random() < (0.85 if seen["present"] else 0.02)
        label, flipped = _observer(g, seen, T)
        rows.append({"id": f"ew-{i:05d}", "group": group, "audio_level": audio,
                     "counts": cam.window.counts(), "label": label, "label_noise": flipped,
                     "observed": seen, "activity": "discussion" if discussion else "lecture"})
    return rows


# -- second style: scripted episodes (evaluation only) -----------------------------------------

#: episode -> (on task?, face share, head-down share, hand-raise share, posture weights
#: (upright, slouched, leaning)); durations in seconds (min, max)
EPISODES: dict[str, tuple[bool, float, float, float, tuple[float, float, float], tuple[int, int]]] = {
    "listening": (True, 0.95, 0.02, 0.0, (0.7, 0.1, 0.2), (15, 90)),
    "notes": (True, 0.1, 0.85, 0.0, (0.6, 0.2, 0.2), (10, 60)),
    "discussion": (True, 0.85, 0.05, 0.15, (0.4, 0.05, 0.55), (10, 45)),
    "phone": (False, 0.1, 0.8, 0.0, (0.4, 0.5, 0.1), (10, 80)),
    "chatting": (False, 0.15, 0.05, 0.0, (0.6, 0.35, 0.05), (5, 40)),
    "dozing": (False, 0.05, 0.9, 0.0, (0.2, 0.8, 0.0), (20, 120)),
    "out": (False, 0.0, 0.0, 0.0, (1.0, 0.0, 0.0), (20, 150)),
}
MODES: dict[str, dict[str, float]] = {
    "focused": {"listening": 5, "notes": 2, "discussion": 2, "phone": 0.3, "chatting": 0.3},
    "mixed": {"listening": 3, "notes": 1, "discussion": 1, "phone": 2, "chatting": 1.5, "dozing": 0.5,
              "out": 0.3},
    "checked_out": {"listening": 1, "phone": 4, "chatting": 2, "dozing": 2, "out": 1},
}


def episode_windows(n: int = EPISODE_N, seed: int = EPISODE_SEED) -> list[dict[str, Any]]:
    """``n`` windows written as scripts of episodes, labelled by the same rubric."""
    g = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        group = g.choices(GROUPS, weights=GROUP_SHARES)[0]
        mode = g.choices(list(MODES), weights=(0.5, 0.35, 0.15))[0]
        T = g.choice(WINDOW_SECONDS)
        weights = dict(MODES[mode])
        if group == "c":
            weights["notes"] = weights.get("notes", 0) * 3
        script: list[tuple[str, int]] = []
        filled = 0
        while filled < T:
            name = g.choices(list(weights), weights=list(weights.values()))[0]
            lo, hi = EPISODES[name][5]
            length = min(T - filled, g.randint(lo, hi))
            script.append((name, length))
            filled += length
        window = SubjectWindow(window_seconds=T)
        seen = {"present": 0, "on_task": 0, "hand_raised": 0, "leaning_forward": 0}
        second = 0
        for name, length in script:
            on_task, face_p, down_p, hand_p, posture_w, _ = EPISODES[name]
            for _ in range(length):
                second += 1
                if name == "out":
                    continue
                posture = g.choices((UPRIGHT, SLOUCHED, LEANING), weights=posture_w)[0]
                if group == "b" and posture == UPRIGHT and g.random() < 0.7:
                    posture = SLOUCHED
                hand = g.random() < hand_p
                seen["present"] += 1
                seen["on_task"] += on_task
                seen["hand_raised"] += hand
                seen["leaning_forward"] += posture == LEANING
                window.add(second, g.random() < face_p, hand, posture, g.random() < down_p)
        window.checked_in = seen["present"] > 0
        engaged = rubric_engaged(T, seen["present"], seen["on_task"], seen["hand_raised"],
                                 seen["leaning_forward"])
        out.append({"id": f"ep-{i:05d}", "group": group, "mode": mode,
                    "audio_level": _audio(g, any(n == "discussion" for n, _ in script)),
                    "counts": window.counts(), "label": int(engaged),
                    "script": [f"{n}:{s}" for n, s in script]})
    return out


def _counts(T: int, present: int, face: int, hand: int, down: int, slouch: int, lean: int,
            checked_in: bool = True) -> dict[str, Any]:
    return {"window_seconds": T, "present": present, "face_forward": face, "hand_raised": hand,
            "head_down": down, "slouched": slouch, "leaning_forward": lean,
            "checked_in": checked_in}


#: Hand-written windows (what the camera counted) and the rubric's label, with why.
EDGE_CASES: tuple[dict[str, Any], ...] = (
    {"case": "absent the whole window", "audio_level": 0.3,
     "counts": _counts(60, 0, 0, 0, 0, 0, 0, False), "label": 0},
    {"case": "left after ten seconds", "audio_level": 0.3,
     "counts": _counts(60, 10, 10, 0, 0, 0, 5), "label": 0},
    {"case": "attentive, hand up twice, leaning in", "audio_level": 0.6,
     "counts": _counts(60, 60, 56, 4, 1, 2, 20), "label": 1},
    {"case": "attentive through a 5-minute lecture", "audio_level": 0.25,
     "counts": _counts(300, 298, 270, 0, 8, 20, 60), "label": 1},
    {"case": "head down on the desk all window", "audio_level": 0.3,
     "counts": _counts(60, 60, 2, 0, 58, 50, 0), "label": 0},
    {"case": "facing away (chatting), slouched", "audio_level": 0.7,
     "counts": _counts(300, 300, 40, 0, 15, 200, 5), "label": 0},
    {"case": "attentive while slouched (posture habit)", "audio_level": 0.3,
     "counts": _counts(60, 60, 55, 1, 1, 55, 2), "label": 1},
    {"case": "arrived late, then attentive", "audio_level": 0.5,
     "counts": _counts(300, 200, 185, 6, 5, 10, 60), "label": 1},
)


__all__ = ["DATA_FILE", "EDGE_CASES", "GROUPS", "episode_windows", "rubric_engaged",
           "simulate_windows"]
