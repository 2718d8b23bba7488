"""The grounding metrics one query at a time in plain Python, the way the public reference
scripts compute them: the parity check for the vectorised `metrics.compute_metrics` (tests) and
the baseline of its speed benchmark. Same rules, same protocols, same dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from scenetg.errors import ScenetgError
from scenetg.eval.ground_truth import MISSING as _MISSING
from scenetg.eval.metrics import (
    BUCKET_EDGES,
    BUCKET_NAMES,
    THRESHOLDS,
    UNKNOWN_BUCKET,
    _check_edges,
    _coerce,
    _summary,
    _with_counts,
)
from scenetg.eval.predictions import PredictionSet, ranked_windows
from scenetg.eval.protocols import Protocol, get_protocol
from scenetg.grounding.records import GroundingRecord


def reference_metrics_loop(
    records: Sequence[GroundingRecord],
    predictions: Mapping[str, object],
    strict: bool = False,
    thresholds: Sequence[float] = THRESHOLDS,
    bucket_edges: Sequence[float] = BUCKET_EDGES,
    protocol: str | Protocol = "default",
) -> dict:
    """The same metrics as `compute_metrics`, one query at a time in plain Python, the way the
    public reference scripts do it. For parity tests and the speed benchmark."""
    if not records:
        raise ScenetgError("no annotation records to evaluate")
    _check_edges(bucket_edges)
    protocol = get_protocol(protocol, strict)
    names = (*BUCKET_NAMES, UNKNOWN_BUCKET)
    acc = {name: {"n": 0, "hits": [0] * len(thresholds), "iou": 0.0, "invalid": 0, "seen": 0}
           for name in names}
    total = {"n": 0, "hits": [0] * len(thresholds), "iou": 0.0, "invalid": 0}
    n_missing = n_empty = n_degenerate = 0
    num = np.float32 if protocol.float32 else float  # the dtype the protocol's script uses
    ks, recall_ms = protocol.recall_ks, protocol.recall_thresholds
    recall_hits = {(k, m): 0 for m in recall_ms for k in ks}
    window_counts = []

    def passes(value, m) -> bool:
        t = num(m)
        return bool(value > t) if protocol.strict else bool(value >= t)

    for rec in records:
        d = rec.duration_s
        windows, windows64 = [], []
        for gs, ge in rec.windows if rec.raw_windows is None else rec.raw_windows:
            if protocol.clip_gt == "both":
                gs = max(gs, 0.0)
            if protocol.clip_gt != "none" and d is not None:
                ge = min(ge, d)
            windows64.append((gs, ge))
            windows.append((num(gs), num(ge)))

        pred = predictions.get(rec.qid, _MISSING)
        if pred is _MISSING:
            n_missing += 1
        top = _scored(pred, d, protocol, num)
        invalid = top is None
        if not invalid and top[0] >= top[1]:
            n_empty += 1
        iou = _window_iou(top, windows, num)
        longest = max(ge - gs for gs, ge in windows64)
        n_degenerate += longest <= 0
        if d is None:
            name = UNKNOWN_BUCKET
        else:
            name = BUCKET_NAMES[sum(longest / d >= edge for edge in bucket_edges)]
        acc[name]["seen"] += 1
        counted = pred is not _MISSING or protocol.denominator == "annotations"
        for a in (total, acc[name]):
            a["n"] += counted
            a["iou"] += float(iou)
            a["invalid"] += invalid
            for i, m in enumerate(thresholds):
                if passes(iou, m):
                    a["hits"][i] += 1
        if ks and counted:
            ranked = _ranked(predictions, rec.qid, pred)
            window_counts.append(len(ranked))
            ious = [_window_iou(_scored(w, d, protocol, num), windows, num) for w in ranked]
            for m in recall_ms:
                first = next((r for r, v in enumerate(ious) if passes(v, m)), None)
                for k in ks:
                    recall_hits[(k, m)] += first is not None and first < k

    def summary(a: dict) -> dict:
        return _summary(a["n"], a["hits"], a["iou"], int(a["invalid"]), thresholds)

    out = summary(total)
    if ks:
        for (k, m), hits in sorted(recall_hits.items(), key=lambda kv: (recall_ms.index(kv[0][1]), ks.index(kv[0][0]))):
            out.setdefault(f"R{k}@{m}", 100.0 * hits / total["n"] if total["n"] else None)
        out["ranked_windows"] = {
            "max": max(window_counts, default=0),
            "mean": sum(window_counts) / len(window_counts) if window_counts else 0.0,
        }
    out["empty"] = n_empty
    out["strict"] = protocol.strict
    out["protocol"] = protocol.name
    out["n_annotations"] = len(records)
    out["degenerate_gt"] = n_degenerate
    out["breakdown"] = {
        name: summary(acc[name]) for name in names if name != UNKNOWN_BUCKET or acc[name]["seen"]
    }
    out["bucket_edges"] = [float(x) for x in bucket_edges]
    out["protocol_rules"] = protocol.describe()
    return _with_counts(out, len(records), n_missing, len(predictions))


def _ranked(predictions: Mapping[str, object], qid: str, pred) -> list:
    """A query's ranked windows as the loop sees them (a one-window line: a list of one)."""
    if pred is _MISSING:
        return []
    if isinstance(predictions, PredictionSet):
        return predictions.ranked_list(qid)
    windows = ranked_windows(pred)
    if windows is not None:
        return windows
    return [] if _coerce(pred)[0] != _coerce(pred)[0] else [pred]


def _scored(value, d: float | None, protocol: Protocol, num):
    """A prediction window (start, end) as scored (clipped as the protocol says, in its dtype),
    or None for an invalid one."""
    s, e = _coerce(value)
    if s != s:  # NaN
        return None
    if protocol.clip_pred:
        s, e = max(s, 0.0), max(e, 0.0)
        if d is not None:
            s, e = min(s, d), min(e, d)
    return num(s), num(e)


def _window_iou(window, windows: list, num):
    """IoU of a scored window with the best of the GT `windows` (0 for None)."""
    best = num(0.0)
    if window is None:
        return best
    s, e = window
    for gs, ge in windows:
        inter = min(e, ge) - max(s, gs)
        if inter > 0:
            value = inter / (max(e, ge) - min(s, gs))
            if value > best:
                best = value
    return best
