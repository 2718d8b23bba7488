"""The GT side of the metrics: annotation windows as flat arrays (`GroundTruth`), every rank of
several windows included, and a prediction's best IoU against them under a protocol's clipping and
threshold rule (≥ or >, float64 or float32)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from scenetg.errors import ScenetgError
from scenetg.eval.protocols import Protocol, get_protocol
from scenetg.grounding.iou import best_iou, clip_to_video, span_iou, temporal_iou_matrix  # noqa: F401  (best_iou, temporal_iou_matrix: public here too)
from scenetg.grounding.records import GroundingRecord

THRESHOLDS = (0.3, 0.5, 0.7)
BUCKET_EDGES = (0.1, 0.3)
BUCKET_NAMES = ("short", "medium", "long")
UNKNOWN_BUCKET = "unknown"

MISSING = object()
NAN_PAIR = (math.nan, math.nan)


@dataclass
class GroundTruth:
    """Annotation records as arrays, built once per annotation set and protocol (`from_records`).

    `starts`, `ends`, `lengths` (K,) hold every GT window (clipped as `clip_gt` says) rank-major:
    the first window of every record (N entries, record order), then the second windows of the
    records in `rank_rows[0]`, the third of those in `rank_rows[1]`, ... So the common one-window
    case is plain (N,) vector work, and a record with many windows costs no padding for the others.
    `durations` (N,) with inf where unknown; `rel_length` (N,) longest GT window / duration,
    NaN where unknown; `degenerate` counts records with no window of positive length (kept; they
    score IoU 0).
    """

    qids: list[str]
    starts: np.ndarray
    ends: np.ndarray
    lengths: np.ndarray
    rank_rows: list[np.ndarray]
    durations: np.ndarray
    rel_length: np.ndarray
    clip_gt: str = "both"
    degenerate: int = 0
    _buckets: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n(self) -> int:
        return len(self.qids)

    def buckets(self, bucket_edges: Sequence[float]) -> np.ndarray:
        """Bucket index per record (N,): how many edges its relative length reaches, or
        `len(BUCKET_NAMES)` (`unknown`) when the duration is unknown. Cached per edges."""
        key = tuple(float(x) for x in bucket_edges)
        if key not in self._buckets:
            bucket = np.zeros(self.n, dtype=np.intp)
            for edge in key:
                bucket += self.rel_length >= edge
            bucket[np.isnan(self.rel_length)] = len(BUCKET_NAMES)
            self._buckets[key] = bucket
        return self._buckets[key]

    @classmethod
    def from_records(
        cls, records: Sequence[GroundingRecord], protocol: str | Protocol = "default"
    ) -> GroundTruth:
        clip_gt = get_protocol(protocol).clip_gt
        n = len(records)
        if n == 0:
            raise ScenetgError("no annotation records to evaluate")
        qids = [r.qid for r in records]
        if len(set(qids)) != n:
            raise ScenetgError("annotation qids are not unique; predictions cannot be matched")
        windows = [r.windows if r.raw_windows is None else r.raw_windows for r in records]
        counts = np.fromiter(map(len, windows), np.int64, count=n)
        if counts.min() == 0:
            bad = records[int(np.argmin(counts))].qid
            raise ScenetgError(f"annotation record {bad!r} has no GT window")
        flat = np.fromiter(
            chain.from_iterable(chain.from_iterable(windows)),
            np.float64,
            count=2 * int(counts.sum()),
        ).reshape(-1, 2)
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank_rows = [np.flatnonzero(counts > j) for j in range(1, int(counts.max()))]
        row_of = np.concatenate([np.arange(n)] + rank_rows)
        order = np.concatenate(
            [offsets] + [offsets[rows] + j for j, rows in enumerate(rank_rows, 1)]
        )
        starts, ends = flat[order, 0], flat[order, 1]
        durations = np.fromiter(
            (math.inf if r.duration_s is None else r.duration_s for r in records),
            np.float64,
            count=n,
        )
        if clip_gt == "both":
            starts = np.maximum(starts, 0.0)
        if clip_gt != "none":
            ends = np.minimum(ends, durations[row_of])
        lengths = ends - starts
        longest = lengths[:n].copy()
        for part, rows in gt_ranks(n, rank_rows):
            longest[rows] = np.maximum(longest[rows], lengths[part])
        with np.errstate(invalid="ignore"):
            rel = np.where(np.isinf(durations), np.nan, longest / durations)
        degenerate = int(np.count_nonzero(longest <= 0))
        return cls(qids, starts, ends, lengths, rank_rows, durations, rel, clip_gt, degenerate)


def gt_ranks(n: int, rank_rows: list[np.ndarray]):
    """(slice into the flat window arrays, rows it belongs to) for each rank after the first."""
    pos = n
    for rows in rank_rows:
        yield slice(pos, pos + len(rows)), rows
        pos += len(rows)


def gt_windows(gt: GroundTruth, dtype) -> tuple[np.ndarray, np.ndarray]:
    return gt.starts.astype(dtype, copy=False), gt.ends.astype(dtype, copy=False)


def gt_best_iou(s: np.ndarray, e: np.ndarray, gt: GroundTruth) -> np.ndarray:
    """Predictions against a `GroundTruth`: best IoU per record (N,), in the dtype of `s`."""
    n = gt.n
    starts, ends = gt_windows(gt, s.dtype)
    best = span_iou(s, e, starts[:n], ends[:n])
    for part, rows in gt_ranks(n, gt.rank_rows):
        iou = span_iou(s[rows], e[rows], starts[part], ends[part])
        best[rows] = np.maximum(best[rows], iou)
    return best


def scored_spans(preds: np.ndarray, gt: GroundTruth, protocol: Protocol, durations=None):
    """Prediction starts and ends as the protocol scores them (clipped or as given; float32
    when the protocol computes in float32). `durations`: per row (default: the records')."""
    if protocol.clip_pred:
        s, e = clip_to_video(preds, gt.durations if durations is None else durations)
    else:
        s, e = preds[:, 0].copy(), preds[:, 1].copy()
    if protocol.float32:
        return s.astype(np.float32), e.astype(np.float32)
    return s, e


def protocol_threshold(m: float, protocol: Protocol):
    """Threshold `m` in the protocol's dtype (float32: 0.3 -> 0.30000001, as torch.tensor)."""
    return np.float32(m) if protocol.float32 else m


def protocol_hits(iou: np.ndarray, m: float, protocol: Protocol) -> np.ndarray:
    t = protocol_threshold(m, protocol)
    return (iou > t) if protocol.strict else (iou >= t)
