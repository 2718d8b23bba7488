"""Scene assembly: merge detected shots into scenes that are worth one grounding query each.

`assemble_scenes` is pure (no I/O). Order of operations, each on the result of the previous one:

1. **Normalise** shots into a contiguous cover of ``[0, duration_s)``: the first segment starts at
   0, each ends where the next begins (a gap between shots belongs to the earlier shot), the last
   ends at ``duration_s``; frame bounds are made contiguous the same way. Shots that start at or
   after ``duration_s`` (or at the previous shot's start) fold into the preceding segment.
2. **Stitch**: walking left to right, the next shot joins the current segment when the cosine of
   the segment's embedding and the shot's embedding is ``>= cfg.stitch_similarity``
   (``stitch_similarity >= 1.0`` disables stitching). Comparing with the segment so far, not only
   with the previous shot, stops a slow drift (a pan) from chaining the whole video together.
3. **Merge short**: while some segment is shorter than ``cfg.min_scene_s`` and more than one segment
   is left, the shortest one (earliest on ties) joins the neighbour with the more similar
   embedding (the previous one on ties, the only one at either end). A video shorter than
   ``min_scene_s`` therefore becomes one scene.
4. **Split long**: a segment longer than ``cfg.max_scene_s`` is cut into the minimal number
   ``n = ceil(length / max_scene_s)`` of equal parts. Frame bounds are interpolated proportionally
   to time (``start_frame + round(i * (end_frame - start_frame) / n)``), which is exact for
   constant frame rate and close otherwise. A part's ``n_shots`` counts the shots it overlaps.
   Parts can be shorter than ``min_scene_s`` only when ``max_scene_s < 2 * min_scene_s``.

A merged segment's embedding is the length-weighted mean of its parts' embeddings, L2-normalised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from scenetg.config import ScenesConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from scenetg.curate.stages.shots import Shot  # deferred: pulls av, cv2, scenedetect


@dataclass
class Scene:
    """One scene: a half-open time interval ``[start_s, end_s)`` with its keyframe times."""

    scene_index: int
    start_s: float
    end_s: float
    start_frame: int
    end_frame: int
    n_shots: int
    keyframe_times: list[float]


@dataclass
class _Segment:
    start_s: float
    end_s: float
    start_frame: int
    end_frame: int
    embedding: np.ndarray  # float64, L2-normalised (or zero)
    shot_spans: list[tuple[float, float]] = field(default_factory=list)

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else np.zeros_like(v)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))  # both unit (or zero) vectors


def _join(a: _Segment, b: _Segment) -> _Segment:
    """Merge two adjacent segments (``a`` before ``b``)."""
    wa, wb = a.length_s, b.length_s
    if wa + wb <= 0:
        wa = wb = 1.0
    return _Segment(
        start_s=a.start_s,
        end_s=b.end_s,
        start_frame=a.start_frame,
        end_frame=b.end_frame,
        embedding=_unit(wa * a.embedding + wb * b.embedding),
        shot_spans=a.shot_spans + b.shot_spans,
    )


def _normalise(shots: Sequence[Any], duration_s: float) -> list[_Segment]:
    ordered = sorted(shots, key=lambda s: (float(s.start_s), int(s.start_frame)))
    groups: list[list[Any]] = []
    starts: list[float] = []
    for shot in ordered:
        start = 0.0 if not groups else min(max(float(shot.start_s), 0.0), duration_s)
        if groups and start <= starts[-1]:
            groups[-1].append(shot)  # degenerate: zero length once clipped; folds into previous
        else:
            groups.append([shot])
            starts.append(start)
    segments: list[_Segment] = []
    for g, group in enumerate(groups):
        start = starts[g]
        end = starts[g + 1] if g + 1 < len(groups) else duration_s
        start_frame = 0 if g == 0 else max(int(group[0].start_frame), segments[-1].start_frame)
        segments.append(_Segment(
            start_s=start,
            end_s=end,
            start_frame=start_frame,
            end_frame=max(int(group[-1].end_frame), start_frame),  # fixed below, except the last
            embedding=_unit(np.asarray(group[0].embedding, dtype=np.float64).ravel()),
            shot_spans=[(start, end)] + [(end, end)] * (len(group) - 1),
        ))
        if g > 0:
            segments[-2].end_frame = start_frame
    return segments


def _stitch(segments: list[_Segment], threshold: float) -> list[_Segment]:
    if threshold >= 1.0 or not segments:
        return segments
    out = [segments[0]]
    for seg in segments[1:]:
        if _cosine(out[-1].embedding, seg.embedding) >= threshold:
            out[-1] = _join(out[-1], seg)
        else:
            out.append(seg)
    return out


def _merge_short(segments: list[_Segment], min_scene_s: float) -> list[_Segment]:
    segs = list(segments)
    while len(segs) > 1:
        short = [i for i, s in enumerate(segs) if s.length_s < min_scene_s]
        if not short:
            break
        i = min(short, key=lambda k: (segs[k].length_s, k))
        if i == 0:
            target = 1
        elif i == len(segs) - 1:
            target = i - 1
        else:
            prev_sim = _cosine(segs[i].embedding, segs[i - 1].embedding)
            next_sim = _cosine(segs[i].embedding, segs[i + 1].embedding)
            target = i + 1 if next_sim > prev_sim else i - 1
        lo, hi = min(i, target), max(i, target)
        segs[lo:hi + 1] = [_join(segs[lo], segs[hi])]
    return segs


def _split_long(seg: _Segment, max_scene_s: float) -> list[tuple[float, float, int, int, int]]:
    """``(start_s, end_s, start_frame, end_frame, n_shots)`` parts of one segment."""
    length = seg.length_s
    n = max(1, math.ceil(length / max_scene_s - 1e-9))
    parts = []
    frames = seg.end_frame - seg.start_frame
    for i in range(n):
        start = seg.start_s if i == 0 else seg.start_s + length * i / n
        end = seg.end_s if i == n - 1 else seg.start_s + length * (i + 1) / n
        f0 = seg.start_frame + round(frames * i / n)
        f1 = seg.start_frame + round(frames * (i + 1) / n)
        if n == 1:
            n_shots = len(seg.shot_spans)
        else:
            n_shots = sum(1 for a, b in seg.shot_spans if min(b, end) > max(a, start))
        parts.append((start, end, f0, f1, max(n_shots, 1)))
    return parts


def assemble_scenes(
    shots: Sequence[Shot],
    duration_s: float,
    cfg: ScenesConfig,
    frames_per_scene: int,
) -> list[Scene]:
    """Merge ``shots`` into scenes covering ``[0, duration_s)`` contiguously (see module docstring).

    ``shots`` are objects with ``start_s, end_s, start_frame, end_frame, embedding`` (an L2-normalised
    appearance vector). ``keyframe_times`` are the centres of ``frames_per_scene`` equal parts of
    each scene (``scenetg.video.frames.sample_times``). Raises ValueError on no shots or a
    non-positive duration.
    """
    from scenetg.video.frames import sample_times  # deferred: pulls av

    if not shots:
        raise ValueError("assemble_scenes: no shots (shot detection must return at least one)")
    if not duration_s > 0:
        raise ValueError(f"assemble_scenes: duration_s must be > 0, got {duration_s}")
    if frames_per_scene < 1:
        raise ValueError(f"assemble_scenes: frames_per_scene must be >= 1, got {frames_per_scene}")

    segments = _normalise(shots, float(duration_s))
    segments = _stitch(segments, cfg.stitch_similarity)
    segments = _merge_short(segments, cfg.min_scene_s)

    scenes: list[Scene] = []
    for seg in segments:
        for start, end, f0, f1, n_shots in _split_long(seg, cfg.max_scene_s):
            scenes.append(Scene(
                scene_index=len(scenes),
                start_s=start,
                end_s=end,
                start_frame=f0,
                end_frame=f1,
                n_shots=n_shots,
                keyframe_times=[float(t) for t in sample_times(start, end, frames_per_scene)],
            ))
    return scenes
