"""The grounding metrics one query at a time in plain Python, the way the public reference
scripts compute them: the parity check for the vectorised `metrics.compute_metrics` (tests) and
the baseline of its speed benchmark. Same rules, same protocols, same dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scenetg.errors import ScenetgError
from scenetg.eval.metrics import (
    _MISSING,
    BUCKET_EDGES,
    BUCKET_NAMES,
    THRESHOLDS,
    UNKNOWN_BUCKET,
    _check_edges,
    _coerce,
    _summary,
    _with_counts,
)
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
    for rec in records:
        d = rec.duration_s
        windows = []
        for gs, ge in rec.windows if rec.raw_windows is None else rec.raw_windows:
            if protocol.clip_gt == "both":
                gs = max(gs, 0.0)
            if protocol.clip_gt != "none" and d is not None:
                ge = min(ge, d)
            windows.append((gs, ge))
        pred = predictions.get(rec.qid, _MISSING)
        if pred is _MISSING:
            n_missing += 1
        s, e = _coerce(pred)
        iou = 0.0
        invalid = s != s  # NaN
        if not invalid:
            if protocol.clip_pred:
                s, e = max(s, 0.0), max(e, 0.0)
                if d is not None:
                    s, e = min(s, d), min(e, d)
            if s >= e:
                n_empty += 1
            for gs, ge in windows:
                inter = min(e, ge) - max(s, gs)
                if inter > 0:
                    value = inter / (max(e, ge) - min(s, gs))
                    if value > iou:
                        iou = value
        longest = max(ge - gs for gs, ge in windows)
        n_degenerate += longest <= 0
        if d is None:
            name = UNKNOWN_BUCKET
        else:
            name = BUCKET_NAMES[sum(longest / d >= edge for edge in bucket_edges)]
        acc[name]["seen"] += 1
        counted = pred is not _MISSING or protocol.denominator == "annotations"
        for a in (total, acc[name]):
            a["n"] += counted
            a["iou"] += iou
            a["invalid"] += invalid
            for i, m in enumerate(thresholds):
                if (iou > m) if protocol.strict else (iou >= m):
                    a["hits"][i] += 1

    def summary(a: dict) -> dict:
        return _summary(a["n"], a["hits"], a["iou"], int(a["invalid"]), thresholds)

    out = summary(total)
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
