"""Grounding rewards for GRPO (DESIGN.md, RL), each in [0, 1].

- ``iou``: temporal IoU of the parsed prediction and the GT span, computed by eval's metric code
  (`scenetg.eval.metrics.best_iou`: prediction clipped to [0, D]; 0 when unparsable or empty).
- ``cendist`` (Center Distance): ``max(0, 1 − |c_pred − c_gt| / D)``, c = interval centre, D =
  video duration; 0 when unparsable. Dense: it ranks rollouts that overlap nothing.
- ``format``: 1 if the output matches ``<think>…</think><answer>…</answer>``, else 0.

`iou_reward`, `cendist_reward`, `format_reward` are TRL reward functions: they take
``completions`` (plain strings or conversational ``[{"role": "assistant", "content": ...}]``)
and the dataset columns ``start_s``, ``end_s``, ``duration_s`` as keyword lists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from scenetg.rl.parsing import format_ok, parse_answer

Span = tuple[float, float]

REWARD_NAMES = ("iou", "cendist", "format")


def temporal_iou(pred: Span | None, gt: Span, duration_s: float | None = None) -> float:
    """IoU of two ``(start, end)`` spans in seconds, as eval scores it (span form; the prediction
    clipped to ``[0, duration_s]`` when given). 0 for None, ``start >= end`` or no overlap."""
    from scenetg.eval.metrics import best_iou

    if pred is None:
        return 0.0
    preds = np.asarray([pred], dtype=np.float64)
    gts = np.asarray([[gt]], dtype=np.float64)
    durations = None if duration_s is None else np.asarray([duration_s], dtype=np.float64)
    return float(best_iou(preds, gts, durations=durations)[0])


def center_distance_reward(pred: Span | None, gt: Span, duration: float) -> float:
    """``max(0, 1 − |c_pred − c_gt| / D)``; 0 for None or a non-positive duration.

    Not clipped to [0, D] first: a centre past the video's end is simply far from the GT. A
    reversed prediction still has a centre, so it is ranked (IoU gives it 0)."""
    if pred is None or not duration or duration <= 0:
        return 0.0
    c_pred = 0.5 * (float(pred[0]) + float(pred[1]))
    c_gt = 0.5 * (float(gt[0]) + float(gt[1]))
    if not (math.isfinite(c_pred) and math.isfinite(c_gt)):
        return 0.0
    return max(0.0, 1.0 - abs(c_pred - c_gt) / float(duration))


def completion_text(completion: Any) -> str:
    """The generated text of a TRL completion: a string, or the last message's content of a
    conversational completion (content as a string or a list of text blocks)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, Sequence) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, str):
            return content
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict)
        )
    return ""


def _span_scores(
    score, completions: Sequence[Any], start_s: Sequence[float], end_s: Sequence[float],
    duration_s: Sequence[float],
) -> list[float]:
    """`score(parsed answer, (start, end), duration)` for each completion and its GT columns."""
    return [
        score(parse_answer(completion_text(c)), (s, e), d)
        for c, s, e, d in zip(completions, start_s, end_s, duration_s, strict=True)
    ]


def iou_reward(completions, start_s, end_s, duration_s, **_: Any) -> list[float]:
    """TRL reward: temporal IoU of each completion's answer with its GT span."""
    return _span_scores(temporal_iou, completions, start_s, end_s, duration_s)


def cendist_reward(completions, start_s, end_s, duration_s, **_: Any) -> list[float]:
    """TRL reward: Center Distance of each completion's answer to its GT span."""
    return _span_scores(center_distance_reward, completions, start_s, end_s, duration_s)


def format_reward(completions: Sequence[Any], **_: Any) -> list[float]:
    """TRL reward: 1.0 when the completion follows the answer template, else 0.0."""
    return [1.0 if format_ok(completion_text(c)) else 0.0 for c in completions]


REWARD_FUNCTIONS = {"iou": iou_reward, "cendist": cendist_reward, "format": format_reward}
