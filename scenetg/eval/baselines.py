"""Grounding baselines that need no MLLM: the centre prior and CLIP sliding windows.

- ``center`` — a window centred in the video, its length a fraction of the duration
  (`DEFAULT_CENTER_FRACTION`, or the records' mean relative GT length).
- ``clip`` — OpenCLIP text–frame similarities over frames at the centres of T equal parts of the
  video, the best contrast window (`clip_best_window`). CLIP reads no time from the frames, so
  its frames stay at cell centres (`clip_frame_times`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.grounding.candidates import DEFAULT_NMS_IOU, Candidate, nms
from scenetg.grounding.prompts import DEFAULT_FPS, DEFAULT_MAX_FRAMES, frame_count
from scenetg.grounding.records import GroundingRecord
from scenetg.video.frames import iter_frames_at, sample_times

DEFAULT_CENTER_FRACTION = 0.3
"""Centre-prior window length as a fraction of the video (no data needed). ``"auto"`` uses the
mean relative GT length of the records being grounded instead: a prior fitted on the test set
itself, so an optimistic baseline."""

CLIP_SCALES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75)
"""Sliding-window lengths tried by the CLIP baseline, as fractions of the video duration."""

CLIP_STRIDE = 0.25
"""Window stride as a fraction of the window's own length."""


def clip_frame_times(
    duration_s: float, fps: float = DEFAULT_FPS, max_frames: int = DEFAULT_MAX_FRAMES
) -> list[float]:
    """T frame times for the CLIP baseline: the centres of T equal parts of ``[0, D)``, T from
    the same fps/budget rule as the MLLM's frames (`frame_count`, any T)."""
    return sample_times(0.0, float(duration_s), frame_count(duration_s, fps, max_frames, 1))


def center_window(duration_s: float, fraction: float) -> tuple[float, float]:
    """The centre prior: ``[D/2 - f·D/2, D/2 + f·D/2]``."""
    half = 0.5 * fraction * duration_s
    return 0.5 * duration_s - half, 0.5 * duration_s + half


def mean_relative_length(records: Iterable[GroundingRecord]) -> float | None:
    """Mean over records with a known duration of (longest GT window / duration); None if none."""
    values = [
        max(e - s for s, e in rec.windows) / rec.duration_s
        for rec in records
        if rec.duration_s and rec.windows
    ]
    return float(np.mean(values)) if values else None


def clip_best_window(
    sims: np.ndarray,
    duration_s: float,
    scales: Sequence[float] = CLIP_SCALES,
    stride: float = CLIP_STRIDE,
) -> tuple[float, float, float]:
    """The best sliding window for one query: ``(start_s, end_s, score)``.

    `sims` (T,) are text–frame cosine similarities of T frames at the centres of T equal parts of
    the video, frame i covering ``[i·D/T, (i+1)·D/T)``. For each scale f, windows of
    ``w = max(1, round(f·T))`` frames start every ``max(1, round(stride·w))`` frames (the last
    start, T - w, always included). Score = mean similarity inside the window minus mean outside
    it (0 when the window covers every frame): a contrast, so the window that stands out from the
    rest of the video wins; a plain inside mean would always pick the shortest window around the
    single best frame. Ties go to the earliest, shortest window.
    """
    sims = np.asarray(sims, dtype=np.float64).reshape(-1)
    t = sims.size
    if t == 0:
        raise ValueError("no frame similarities")
    cum = np.concatenate([[0.0], np.cumsum(sims)])
    total = cum[-1]
    best = (-math.inf, 0, t)
    for w in sorted({max(1, min(t, round(f * t))) for f in scales}):
        step = max(1, round(stride * w))
        starts = np.arange(0, t - w + 1, step)
        if starts[-1] != t - w:
            starts = np.append(starts, t - w)
        inside = cum[starts + w] - cum[starts]
        mean_in = inside / w
        mean_out = (total - inside) / (t - w) if t > w else mean_in
        score = mean_in - mean_out
        i = int(np.argmax(score))
        if score[i] > best[0] + 1e-12:
            best = (float(score[i]), int(starts[i]), w)
    score, start, w = best
    frame_s = duration_s / t
    return start * frame_s, (start + w) * frame_s, score


def clip_ranked_windows(
    sims: np.ndarray,
    duration_s: float,
    k: int,
    nms_iou: float = DEFAULT_NMS_IOU,
    scales: Sequence[float] = CLIP_SCALES,
    stride: float = CLIP_STRIDE,
) -> list[tuple[float, float, float]]:
    """At most `k` sliding windows for one query, best first: `clip_best_window`'s window, then
    every other window of the same grid by contrast score (ties: shorter, then earlier), with
    temporal NMS at `nms_iou` (`scenetg.grounding.candidates.nms`)."""
    sims = np.asarray(sims, dtype=np.float64).reshape(-1)
    t = sims.size
    best = clip_best_window(sims, duration_s, scales, stride)
    cum = np.concatenate([[0.0], np.cumsum(sims)])
    total, frame_s = cum[-1], duration_s / t
    pool = []
    for w in sorted({max(1, min(t, round(f * t))) for f in scales}):
        step = max(1, round(stride * w))
        starts = np.arange(0, t - w + 1, step)
        if starts[-1] != t - w:
            starts = np.append(starts, t - w)
        inside = cum[starts + w] - cum[starts]
        mean_out = (total - inside) / (t - w) if t > w else inside / w
        for start, score in zip(starts.tolist(), (inside / w - mean_out).tolist(), strict=True):
            pool.append((-score, w, start))
    pool.sort()
    ranked = [Candidate((best[0], best[1]), best[2], "")]
    ranked += [Candidate((start * frame_s, (start + w) * frame_s), -neg, "") for neg, w, start in pool]
    return [(c.window[0], c.window[1], c.score) for c in nms(ranked, k, nms_iou)]


def clip_frame_embeddings(
    encoder: Any, path: str | Path, times_s: Sequence[float], chunk: int = 64
) -> np.ndarray:
    """(T, d) CLIP embeddings of the frames at `times_s`, decoded just large enough for the
    model's input and encoded in chunks."""
    max_side = 2 * int(getattr(encoder, "image_size", 224))
    parts, buf = [], []
    for frame in iter_frames_at(path, times_s, max_side=max_side):
        buf.append(frame)
        if len(buf) == chunk:
            parts.append(encoder.encode_images(buf))
            buf = []
    if buf:
        parts.append(encoder.encode_images(buf))
    return np.concatenate(parts, axis=0)


def clip_ground_video(
    encoder: Any,
    frame_emb: np.ndarray,
    duration_s: float,
    queries: Sequence[str],
    scales: Sequence[float] = CLIP_SCALES,
    stride: float = CLIP_STRIDE,
    candidates: int = 1,
    nms_iou: float = DEFAULT_NMS_IOU,
) -> list:
    """``(start_s, end_s, score)`` per query, from one video's frame embeddings; with
    `candidates` > 1 a ranked list of at most that many per query (`clip_ranked_windows`)."""
    text = encoder.encode_text(list(queries))
    sims = text @ frame_emb.T
    if candidates > 1:
        return [clip_ranked_windows(row, duration_s, candidates, nms_iou, scales, stride) for row in sims]
    return [clip_best_window(row, duration_s, scales, stride) for row in sims]
