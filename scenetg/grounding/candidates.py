"""Ranked candidate windows for one grounding query (`scenetg ground --candidates K`): scored
model outputs in, at most K distinct windows out, best first.

Rule: parse each output (`parse_answer`; unparsable ones drop out), order by score (the
sequence log-prob; ties keep the order given, the greedy output first), then temporal NMS: a
window is dropped when its IoU with a window already kept exceeds `nms_iou` or it repeats one
exactly; the first `k` kept windows are the candidates. The top-1 is the highest-scoring
parsable output, so `pred` stays one window a reader of the old format understands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scenetg.grounding.parsing import parse_answer

DEFAULT_TEMPERATURE = 1.0
"""Sampling temperature of the candidates (the model's own distribution)."""
DEFAULT_NMS_IOU = 0.5
"""Windows overlapping a better one by more than this IoU are duplicates."""


@dataclass(frozen=True)
class Candidate:
    window: tuple[float, float]
    score: float
    text: str


def window_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Span-form IoU of two windows (0 when they do not overlap)."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    if inter <= 0:
        return 0.0
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def nms(candidates: Sequence[Candidate], k: int, nms_iou: float = DEFAULT_NMS_IOU) -> list[Candidate]:
    """Greedy temporal NMS over `candidates` (already best first): at most `k` kept."""
    kept: list[Candidate] = []
    for c in candidates:
        if len(kept) >= k:
            break
        if any(c.window == d.window or window_iou(c.window, d.window) > nms_iou for d in kept):
            continue
        kept.append(c)
    return kept


def rank_candidates(
    outputs: Sequence[tuple[str, float]], k: int, nms_iou: float = DEFAULT_NMS_IOU
) -> list[Candidate]:
    """At most `k` ranked candidates from (text, score) outputs (see the module's rule)."""
    parsed = []
    for i, (text, score) in enumerate(outputs):
        window = parse_answer(text)
        if window is not None:
            parsed.append((-score, i, Candidate((float(window[0]), float(window[1])), score, text)))
    parsed.sort(key=lambda item: (item[0], item[1]))
    return nms([c for _, _, c in parsed], k, nms_iou)
