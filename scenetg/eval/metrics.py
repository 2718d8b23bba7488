"""Temporal grounding metrics: R1@IoU≥m and mIoU over top-1 predictions, vectorised with NumPy.

Rules (the same in `compute_metrics` and the plain-loop `reference_metrics_loop`); the conventions
that differ between benchmarks come from a `Protocol` (`scenetg.eval.protocols`, default first):

- IoU of `[s, e]` and a GT window `[gs, ge]` (seconds), in span form as every benchmark script
  computes it: `inter / (max(e, ge) - min(s, gs))` with `inter = min(e, ge) - max(s, gs)`; 0 when
  `inter <= 0` (so a zero-length or reversed window scores 0). The other algebraic form,
  `inter / (len_pred + len_gt - inter)`, rounds exact ties differently (0.5000000000000001).
- GT windows: the record's windows as written in the file (`raw_windows`), clipped to the video
  as the protocol says (default: start to 0, end to D). None is dropped.
- A prediction is clipped to `[0, D]` when the protocol says so (default; only to `[0, inf)`
  when D is unknown). If then `start >= end` its IoU is 0 and it is counted in `empty`.
- A missing qid, a `None` prediction or one that is not two finite numbers: IoU 0, counted in
  `invalid` (`missing` counts the qids with no prediction at all, a subset of `invalid`).
- Several GT windows: the best-matching one counts (max IoU).
- IoUs in float32 (arithmetic and threshold comparisons) when the protocol says so (MMN, MAD).
- R@k (protocols that name a table, `Protocol.recall_ks` x `recall_thresholds`): `R{k}@{m}` = %
  of counted queries with a window of IoU >= m (> m when strict) among their first k ranked
  windows (`predictions` module: `candidates`, or `pred` as a ranked list; a one-window line is
  a list of one). Same clipping, IoU and denominator as R1; `R1@m` from the table equals R1.
- With `bootstrap=B` (> 0): a 95 % percentile bootstrap interval over the counted queries for
  each R1 and mIoU (`ci95`; `scenetg.eval.uncertainty`), seeded.
- `R1@m` = % of counted queries with IoU ≥ m (IoU > m for strict protocols and `strict=True`);
  `mIoU` = mean IoU × 100. Counted: every annotation record (denominator "annotations", the
  default) or those with a prediction line ("predictions": Ego4D, Time-R1, Moment-DETR).
- Breakdown by the GT's length relative to the video's: relative length = longest GT window / D
  (the longest window, so a query's bucket does not depend on the model); buckets `short`
  (< 0.1), `medium` (0.1 to < 0.3), `long` (≥ 0.3), and `unknown` when D is unknown.
  Cut points: `bucket_edges`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import chain, repeat

import numpy as np

from scenetg.errors import ScenetgError
from scenetg.eval.ground_truth import (
    BUCKET_EDGES,
    BUCKET_NAMES,
    MISSING,
    NAN_PAIR,
    THRESHOLDS,
    UNKNOWN_BUCKET,
    GroundTruth,
    gt_best_iou,
    gt_ranks,
    gt_windows,
    protocol_hits,
    scored_spans,
)
from scenetg.eval.predictions import PredictionSet
from scenetg.eval.protocols import Protocol, get_protocol
from scenetg.eval.uncertainty import DEFAULT_SEED, LEVEL, interval_dict
from scenetg.grounding.iou import best_iou, clip_to_video, span_iou, temporal_iou_matrix  # noqa: F401  (best_iou, temporal_iou_matrix: public here too)
from scenetg.grounding.records import GroundingRecord


def ranked_iou(
    windows: np.ndarray, owner: np.ndarray, gt: GroundTruth, protocol: Protocol
) -> np.ndarray:
    """IoU (T,) of ranked windows (T, 2) with the GT of the record each belongs to (`owner`),
    best GT window, under the protocol's clipping and dtype."""
    s, e = scored_spans(windows, gt, protocol, gt.durations[owner])
    starts, ends = gt_windows(gt, s.dtype)
    n = gt.n
    best = span_iou(s, e, starts[:n][owner], ends[:n][owner])
    for part, rows in gt_ranks(n, gt.rank_rows):
        where = np.full(n, -1, dtype=np.int64)
        where[rows] = np.arange(part.start, part.stop)
        w = where[owner]
        has = w >= 0
        if has.any():
            iou = span_iou(s[has], e[has], starts[w[has]], ends[w[has]])
            best[has] = np.maximum(best[has], iou)
    return best


def recall_at_k(
    ranked: tuple[np.ndarray, np.ndarray, np.ndarray],
    gt: GroundTruth,
    protocol: Protocol,
    counted: np.ndarray | None = None,
) -> dict:
    """`{"R{k}@{m}": %}` over the protocol's table and `ranked_windows` ({max, mean} windows per
    counted query) from `ranked` = (windows (T, 2), owner (T,), rank (T,)), owner
    non-decreasing and ranks increasing within an owner (`PredictionSet.ranked_rows`)."""
    windows, owner, rank = ranked
    n_all = gt.n if counted is None else int(np.count_nonzero(counted))
    keep = np.ones(owner.size, dtype=bool) if counted is None else counted[owner]
    iou = ranked_iou(windows, owner, gt, protocol)
    out: dict = {}
    for m in protocol.recall_thresholds:
        ok = protocol_hits(iou, m, protocol) & keep
        o, r = owner[ok], rank[ok]
        first_rank = np.full(gt.n, np.iinfo(np.int64).max)
        if o.size:
            starts = np.flatnonzero(np.concatenate(([True], o[1:] != o[:-1])))
            first_rank[o[starts]] = r[starts]  # ranks rise within an owner: its best rank
        for k in protocol.recall_ks:
            hits = int(np.count_nonzero(first_rank < k))
            out[f"R{k}@{m}"] = 100.0 * hits / n_all if n_all else None
    counts = np.bincount(owner[keep], minlength=gt.n)
    counts = counts if counted is None else counts[counted]
    out["ranked_windows"] = {
        "max": int(counts.max()) if counts.size else 0,
        "mean": float(counts.mean()) if counts.size else 0.0,
    }
    return out


def top1_ranked(preds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top-1 predictions (N, 2) as ranked rows of one window each (NaN rows: none)."""
    owner = np.flatnonzero(~np.isnan(preds[:, 0]))
    return preds[owner], owner, np.zeros(owner.size, dtype=np.int64)


def _merge_recall(out: dict, table: dict) -> None:
    """R@k keys the R1 keys do not already hold (R1@m equals them), then `ranked_windows`."""
    for key, value in table.items():
        out.setdefault(key, value)


_FAST_TYPES = {tuple, type(None), object}  # object: the missing-prediction sentinel


def align_predictions(
    qids: Sequence[str], predictions: Mapping[str, object]
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions in `qids` order as an (N, 2) float array (NaN rows: missing, None or not two
    finite numbers) and a (N,) bool mask of the qids with no prediction at all."""

    if isinstance(predictions, PredictionSet):  # what read_predictions gives: array lookups
        return predictions.rows(qids)
    n = len(qids)
    if len(predictions) == n and list(predictions) == qids:  # in annotation order, as written
        values, missing = list(predictions.values()), np.zeros(n, dtype=bool)  # by `ground`
    else:
        values = list(map(predictions.get, qids, repeat(MISSING, n)))
        missing = np.fromiter((v is MISSING for v in values), bool, count=n)
    arr = None
    if set(map(type, values)) <= _FAST_TYPES:  # what read_predictions gives: tuples and None
        pairs = [v if v.__class__ is tuple else NAN_PAIR for v in values]
        if set(map(len, pairs)) <= {2}:
            try:
                flat = np.fromiter(chain.from_iterable(pairs), np.float64, count=2 * n)
                arr = flat.reshape(n, 2)
            except (TypeError, ValueError):  # a tuple holding a non-number
                arr = None
    if arr is None:
        arr = np.array([_coerce(v) for v in values], dtype=np.float64).reshape(n, 2)
    arr[~np.isfinite(arr).all(axis=1)] = np.nan
    return arr, missing


def _coerce(value) -> tuple[float, float]:
    """A prediction value as two floats, or NaNs when it is not a pair of finite numbers."""
    if value is None or value is MISSING or isinstance(value, (str, bytes)):
        return NAN_PAIR
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        value = value[0]  # a ranked list: its top-1 window
    try:
        s, e = value
        s, e = float(s), float(e)
    except (TypeError, ValueError):
        return NAN_PAIR
    if not (math.isfinite(s) and math.isfinite(e)):
        return NAN_PAIR
    return s, e


def metrics_from_arrays(
    preds: np.ndarray,
    gt: GroundTruth,
    strict: bool = False,
    thresholds: Sequence[float] = THRESHOLDS,
    bucket_edges: Sequence[float] = BUCKET_EDGES,
    protocol: str | Protocol = "default",
    missing: np.ndarray | None = None,
    ranked: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    bootstrap: int = 0,
    seed: int = DEFAULT_SEED,
) -> dict:
    """The metric dict from aligned predictions (N, 2) (NaN rows invalid), a `GroundTruth` and
    the (N,) mask of qids with no prediction (None: none missing). `ranked`: the ranked windows
    for R@k (`PredictionSet.ranked_rows`; None: the top-1 windows). `bootstrap`: resamples of
    the 95 % intervals (0: none), drawn with `seed`."""
    _check_edges(bucket_edges)
    protocol = _protocol_for(gt, protocol, strict)
    s, e = scored_spans(preds, gt, protocol)
    iou = gt_best_iou(s, e, gt)
    invalid = np.isnan(s)  # a NaN row stays NaN through clipping
    if missing is None or protocol.denominator == "annotations":
        counted = None
    else:
        counted = ~missing
        iou[missing] = 0.0  # already 0 (NaN rows); explicit: they leave the sums below
    n_buckets = len(BUCKET_NAMES) + 1
    bucket = gt.buckets(bucket_edges)

    def per_bucket(values: np.ndarray) -> np.ndarray:
        return np.bincount(bucket, weights=values, minlength=n_buckets)

    hits = [protocol_hits(iou, m, protocol) for m in thresholds]
    n_all = gt.n if counted is None else int(np.count_nonzero(counted))
    n_b = np.bincount(bucket, weights=counted, minlength=n_buckets).astype(np.int64)
    hits_b = [per_bucket(h) for h in hits]
    iou_b, invalid_b = per_bucket(iou), per_bucket(invalid)

    out = _summary(
        n_all,
        [int(np.count_nonzero(h)) for h in hits],
        float(iou.sum(dtype=np.float64)),
        int(np.count_nonzero(invalid)),
        thresholds,
    )
    if protocol.recall_ks:
        _merge_recall(out, recall_at_k(ranked or top1_ranked(preds), gt, protocol, counted))
    if bootstrap:
        rows = slice(None) if counted is None else counted
        values = 100.0 * np.stack([h[rows] for h in hits] + [iou[rows]], axis=1)
        names = [f"R1@{m}" for m in thresholds] + ["mIoU"]
        out["ci95"] = interval_dict(names, values, bootstrap, seed)
        out["bootstrap"] = bootstrap_info(bootstrap, seed)
    out["empty"] = int(np.count_nonzero(s >= e))  # False for NaN
    out["strict"] = protocol.strict
    out["protocol"] = protocol.name
    out["n_annotations"] = gt.n
    out["degenerate_gt"] = gt.degenerate
    names = (*BUCKET_NAMES, UNKNOWN_BUCKET)
    out["breakdown"] = {
        name: _summary(
            int(n_b[b]), [int(h[b]) for h in hits_b], float(iou_b[b]), int(invalid_b[b]), thresholds
        )
        for b, name in enumerate(names)
        if name != UNKNOWN_BUCKET or np.count_nonzero(bucket == b)
    }
    out["bucket_edges"] = [float(x) for x in bucket_edges]
    out["protocol_rules"] = protocol.describe()
    return out


def bootstrap_info(resamples: int, seed: int) -> dict:
    """How `ci95` was computed (written next to it)."""
    return {
        "resamples": int(resamples),
        "seed": int(seed),
        "level": LEVEL,
        "method": "percentile bootstrap; queries resampled with replacement",
    }


def resolve_protocol(
    protocol: str | Protocol, fmt: str, records: Sequence[GroundingRecord], strict: bool = False
) -> Protocol:
    """The concrete preset for `records` read from a `fmt` file (`Protocol.for_format`: 2D-TAN
    clips GT per dataset; a format that does not name the dataset is refused only when a GT
    window starts before 0, where the rules differ)."""
    protocol = get_protocol(protocol, strict)
    if not protocol.by_format:
        return protocol
    below = sum(
        s < 0 for r in records for s, _ in (r.windows if r.raw_windows is None else r.raw_windows)
    )
    return protocol.for_format(fmt, int(below))


def _protocol_for(gt: GroundTruth, protocol: str | Protocol, strict: bool) -> Protocol:
    protocol = get_protocol(protocol, strict)
    if protocol.clip_gt != gt.clip_gt:
        raise ScenetgError(
            f"protocol {protocol.name} clips GT windows {protocol.clip_gt!r}, but these GT arrays "
            f"were built with {gt.clip_gt!r}: build them with GroundTruth.from_records(records, "
            f"{protocol.name!r})"
        )
    return protocol


def _check_edges(bucket_edges: Sequence[float]) -> None:
    if len(bucket_edges) != len(BUCKET_NAMES) - 1 or not 0 < bucket_edges[0] < bucket_edges[1]:
        raise ScenetgError(
            f"bucket edges must be two increasing positive numbers (short|medium|long cut "
            f"points, as fractions of the video length), got {list(bucket_edges)}"
        )


def _summary(n: int, hits: list[int], iou_sum: float, invalid: int, thresholds) -> dict:
    out: dict = {"n": n}
    for m, h in zip(thresholds, hits, strict=True):
        out[f"R1@{m}"] = 100.0 * h / n if n else None
    out["mIoU"] = 100.0 * iou_sum / n if n else None
    out["invalid"] = invalid
    return out


def compute_metrics(
    records: Sequence[GroundingRecord] | GroundTruth,
    predictions: Mapping[str, object],
    strict: bool = False,
    thresholds: Sequence[float] = THRESHOLDS,
    bucket_edges: Sequence[float] = BUCKET_EDGES,
    protocol: str | Protocol = "default",
    bootstrap: int = 0,
    seed: int = DEFAULT_SEED,
) -> dict:
    """R1@m, mIoU and the breakdown for `predictions` (qid -> (start_s, end_s) | None, or a
    ranked list of windows, best first), scored as `protocol` says (`strict=True`: IoU > m on
    top of it). Protocols with an R@k table add `R{k}@{m}` keys and `ranked_windows`;
    `bootstrap=B` adds `ci95` ({R1@m, mIoU: [low, high]}) and `bootstrap` (how).

    Returns `{n, "R1@0.3", "R1@0.5", "R1@0.7", mIoU, invalid, empty, strict, protocol,
    n_annotations, degenerate_gt, missing, extra, breakdown: {short|medium|long|unknown: {n,
    R1@m..., mIoU, invalid}}, bucket_edges, protocol_rules}`; percentages 0-100. `extra` counts
    predictions whose qid is in no record; `degenerate_gt` the records with no GT window of
    positive length (kept, IoU 0).
    """
    gt = (
        records
        if isinstance(records, GroundTruth)
        else GroundTruth.from_records(records, get_protocol(protocol))
    )
    preds, missing = align_predictions(gt.qids, predictions)
    ranked = None
    if get_protocol(protocol).recall_ks:
        pset = predictions if isinstance(predictions, PredictionSet) else PredictionSet.from_mapping(predictions)
        ranked = pset.ranked_rows(gt.qids)
    out = metrics_from_arrays(preds, gt, strict, thresholds, bucket_edges, protocol, missing,
                              ranked, bootstrap, seed)
    return _with_counts(out, gt.n, int(np.count_nonzero(missing)), len(predictions))


def _with_counts(out: dict, n: int, n_missing: int, n_predictions: int) -> dict:
    tail = ("ranked_windows", "ci95", "bootstrap", "breakdown", "bucket_edges", "protocol_rules")
    ordered = {k: out[k] for k in out if k not in tail}
    ordered["missing"] = n_missing
    ordered["extra"] = n_predictions - (n - n_missing)
    ordered.update((k, out[k]) for k in tail if k in out)
    return ordered


def per_query_iou(
    records: Sequence[GroundingRecord] | GroundTruth,
    predictions: Mapping[str, object],
    protocol: str | Protocol = "default",
) -> np.ndarray:
    """Each record's IoU (N,) under the same rules as `compute_metrics` (invalid ⇒ 0)."""
    protocol = get_protocol(protocol)
    gt = (
        records
        if isinstance(records, GroundTruth)
        else GroundTruth.from_records(records, protocol)
    )
    preds, _ = align_predictions(gt.qids, predictions)
    s, e = scored_spans(preds, gt, _protocol_for(gt, protocol, False))
    return gt_best_iou(s, e, gt)


def match_warnings(metrics: dict, predictions_name: object = "predictions") -> tuple[list[str], str | None]:
    """What a user must hear about how predictions matched the annotations: one-line warnings
    (missing and extra qids) and, when no prediction matched any annotation qid, the error to
    stop with (scores of 0 would otherwise look like a model that failed every query)."""
    n_ann = metrics.get("n_annotations", metrics["n"])
    missing, extra = metrics.get("missing", 0), metrics.get("extra", 0)
    matched = n_ann - missing
    lines = []
    if missing:
        fate = (
            "left out of the denominator"
            if metrics.get("protocol_rules", {}).get("denominator") == "predictions"
            else "scored IoU 0"
        )
        lines.append(f"{missing} of {n_ann} annotation queries have no prediction ({fate})")
    if extra:
        lines.append(f"{extra} predictions match no annotation qid (ignored)")
    ks = metrics.get("protocol_rules", {}).get("recall_ks") or []
    windows = metrics.get("ranked_windows")
    if windows and max(ks, default=1) > 1 and windows["max"] <= 1 and matched:
        lines.append(
            f"the predictions carry one window per query, so R@k for k > 1 equals R@1 "
            f"(`scenetg ground --candidates {max(ks)}` writes ranked windows)"
        )
    if matched == 0:
        given = matched + extra
        why = "the file is empty" if given == 0 else f"none of its {given} qids is an annotation qid"
        return lines, (
            f"{predictions_name}: no prediction matches the {n_ann} annotation queries ({why}); "
            "are these the predictions for this benchmark?"
        )
    return lines, None
