"""Temporal IoU and Center Distance: the pure interval functions both eval's metrics and the GRPO
rewards use, so a metric and its reward can never disagree.

- IoU in span form, as every benchmark script computes it: ``inter / (max(e, ge) − min(s, gs))``
  with ``inter = min(e, ge) − max(s, gs)``; 0 when ``inter <= 0`` (an empty or reversed window).
- CenDist (DESIGN.md, RL): ``max(0, 1 − |c_pred − c_gt| / D)``, c = interval centre.
"""

from __future__ import annotations

import math

import numpy as np

Span = tuple[float, float]


def temporal_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every interval in `a` (N, 2) with every one in `b` (M, 2) -> (N, M).

    Empty intervals (start >= end) and NaN rows give 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    return span_iou(a[:, 0:1], a[:, 1:2], b[None, :, 0], b[None, :, 1])


def span_iou(s, e, gs, ge, where=None) -> np.ndarray:
    """Elementwise (broadcast) IoU in span form. The loop computes the same float ops, so both
    give bit-identical IoUs. Float32 inputs give float32 IoUs (the PyTorch scripts' arithmetic)."""
    inter = np.minimum(e, ge)
    inter -= np.maximum(s, gs)
    span = np.maximum(e, ge)
    span -= np.minimum(s, gs)
    ok = inter > 0  # False for NaN (invalid prediction, padding) and for empty intervals
    if where is not None:
        ok &= where
    out = np.zeros(span.shape, dtype=span.dtype if span.dtype.kind == "f" else np.float64)
    np.divide(inter, span, out=out, where=ok)
    return out


def best_iou(
    preds: np.ndarray,
    gts: np.ndarray,
    mask: np.ndarray | None = None,
    durations: np.ndarray | None = None,
) -> np.ndarray:
    """Per-query IoU of the prediction with its best-matching GT window -> (N,).

    `preds` (N, 2), NaN rows for invalid predictions; `gts` (N, W, 2) padded, `mask` (N, W) True
    on real windows (None: all real); `durations` (N,) (inf or None: unknown). Predictions are
    clipped to [0, D]; an empty one (start >= end after clipping) gives 0.
    """
    s, e = clip_to_video(preds, durations)
    gts = np.asarray(gts, dtype=np.float64)
    return span_iou(s[:, None], e[:, None], gts[..., 0], gts[..., 1], mask).max(axis=1)


def clip_to_video(preds, durations) -> tuple[np.ndarray, np.ndarray]:
    """Prediction starts and ends clipped to [0, D] (NaN stays NaN)."""
    preds = np.asarray(preds, dtype=np.float64)
    upper = math.inf if durations is None else np.asarray(durations, dtype=np.float64)
    s = np.minimum(np.maximum(preds[:, 0], 0.0), upper)
    e = np.minimum(np.maximum(preds[:, 1], 0.0), upper)
    return s, e


def temporal_iou(pred: Span | None, gt: Span, duration_s: float | None = None) -> float:
    """IoU of two ``(start, end)`` spans in seconds, as eval scores it (span form; the prediction
    clipped to ``[0, duration_s]`` when given). 0 for None, ``start >= end`` or no overlap."""
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
