"""Grounding rewards: hand-computed IoU / Center Distance / format values, TRL-style functions."""

from __future__ import annotations

import pytest

from scenetg.rl.rewards import (
    cendist_reward,
    center_distance_reward,
    completion_text,
    format_reward,
    iou_reward,
    temporal_iou,
)


@pytest.mark.parametrize(
    "pred, gt, duration, expected",
    [
        ((10.0, 20.0), (15.0, 25.0), None, 5 / 15),  # overlap: inter 5, span 10..25
        ((12.0, 18.0), (10.0, 20.0), None, 6 / 10),  # prediction inside GT
        ((5.0, 30.0), (10.0, 20.0), None, 10 / 25),  # GT inside prediction
        ((0.0, 5.0), (10.0, 20.0), None, 0.0),  # disjoint
        ((20.0, 25.0), (10.0, 20.0), None, 0.0),  # touching at one point
        ((18.0, 12.0), (10.0, 20.0), None, 0.0),  # reversed
        ((15.0, 15.0), (10.0, 20.0), None, 0.0),  # empty
        (None, (10.0, 20.0), None, 0.0),  # unparsable
        ((10.0, 20.0), (10.0, 20.0), None, 1.0),
        ((25.0, 40.0), (25.0, 30.0), 30.0, 1.0),  # clipped to D = 30 first: 25..30
        ((-5.0, 5.0), (0.0, 10.0), 30.0, 0.5),  # clipped to 0..5
        ((5.71, 10.65), (4.41, 8.83), None, 0.5),  # span form: exactly 0.5 (eval's tie)
    ],
)
def test_temporal_iou_hand_computed(pred, gt, duration, expected):
    assert temporal_iou(pred, gt, duration) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "pred, gt, duration, expected",
    [
        ((10.0, 20.0), (10.0, 20.0), 100.0, 1.0),
        ((0.0, 10.0), (90.0, 100.0), 100.0, 0.1),  # centres 5 and 95: 1 - 90/100
        ((0.0, 10.0), (90.0, 100.0), 1000.0, 0.91),  # same gap, longer video: normalised by D
        ((0.0, 2.0), (98.0, 100.0), 50.0, 0.0),  # farther than D: clamped at 0
        ((20.0, 10.0), (10.0, 20.0), 100.0, 1.0),  # reversed: same centre (IoU gives it 0)
        ((40.0, 60.0), (10.0, 20.0), 100.0, 0.65),  # disjoint, yet ranked: 1 - 35/100
        ((-10.0, -2.0), (0.0, 2.0), 10.0, 0.3),  # centre -6 before the start, not clipped to 0: 1 - 7/10
        ((12.0, 16.0), (8.0, 10.0), 10.0, 0.5),  # centre 14 past the end, not clipped to 10: 1 - 5/10
        (None, (10.0, 20.0), 100.0, 0.0),
        ((10.0, 20.0), (10.0, 20.0), 0.0, 0.0),  # no duration
    ],
)
def test_center_distance_hand_computed(pred, gt, duration, expected):
    assert center_distance_reward(pred, gt, duration) == pytest.approx(expected, abs=1e-12)


def test_cendist_ranks_rollouts_that_iou_cannot():
    gt, d = (100.0, 110.0), 600.0
    near, far = (120.0, 130.0), (400.0, 410.0)
    assert temporal_iou(near, gt) == temporal_iou(far, gt) == 0.0
    assert center_distance_reward(near, gt, d) > center_distance_reward(far, gt, d)


def _conv(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_trl_reward_functions_on_conversational_completions():
    completions = [
        _conv("<think>the door opens</think><answer>10 - 20</answer>"),
        _conv("<think>hmm</think><answer>20.0 - 10.0</answer>"),  # reversed
        _conv("the answer is near the end"),  # unparsable, no template
        [{"role": "assistant", "content": [{"type": "text", "text": "<think></think><answer>0:15 - 0:25</answer>"}]}],
    ]
    cols = {"start_s": [15.0] * 4, "end_s": [25.0] * 4, "duration_s": [100.0] * 4}
    extra = {"prompts": ["p"] * 4, "query": ["q"] * 4, "trainer_state": None}
    assert iou_reward(completions, **cols, **extra) == pytest.approx([5 / 15, 0.0, 0.0, 1.0])
    assert cendist_reward(completions, **cols, **extra) == pytest.approx([0.95, 0.95, 0.0, 1.0])
    assert format_reward(completions, **extra) == [1.0, 1.0, 0.0, 1.0]
    # plain-string completions (non-conversational datasets) work the same way
    plain = [completion_text(c) for c in completions]
    assert iou_reward(plain, **cols) == iou_reward(completions, **cols)
