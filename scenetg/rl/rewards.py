"""Grounding rewards for GRPO (DESIGN.md, RL), each in [0, 1].

- ``iou``: temporal IoU of the parsed prediction and the GT span, the same function eval's metric
  uses (`scenetg.grounding.iou`: prediction clipped to [0, D]; 0 when unparsable or empty).
- ``cendist`` (Center Distance): ``max(0, 1 − |c_pred − c_gt| / D)``, c = interval centre, D =
  video duration; 0 when unparsable. Dense: it ranks rollouts that overlap nothing.

`temporal_iou` and `center_distance_reward` live in `scenetg.grounding.iou` and are re-exported here
(their public import path, DESIGN.md "Interfaces").
- ``format``: 1 if the output matches ``<think>…</think><answer>…</answer>``, else 0.

`iou_reward`, `cendist_reward`, `format_reward` are TRL reward functions: they take
``completions`` (plain strings or conversational ``[{"role": "assistant", "content": ...}]``)
and the dataset columns ``start_s``, ``end_s``, ``duration_s`` as keyword lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scenetg.grounding.iou import Span, center_distance_reward, temporal_iou
from scenetg.grounding.parsing import format_ok, parse_answer

__all__ = [
    "REWARD_FUNCTIONS", "REWARD_NAMES", "Span", "cendist_reward", "center_distance_reward",
    "completion_text", "format_reward", "iou_reward", "temporal_iou",
]


REWARD_NAMES = ("iou", "cendist", "format")


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
