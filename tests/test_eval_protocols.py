"""Scoring protocols: each preset against hand-computed results of its benchmark's own script."""

from __future__ import annotations

import json
import random

import pytest

from scenetg.errors import ScenetgError
from scenetg.eval.metrics import GroundTruth, compute_metrics, per_query_iou, temporal_iou_matrix
from scenetg.eval.metrics_loop import reference_metrics_loop
from scenetg.eval.protocols import PROTOCOLS, get_protocol
from scenetg.grounding.records import GroundingRecord


def both(records, preds, **kw):
    """compute_metrics, after checking the plain loop gives the same dict."""
    vec = compute_metrics(records, preds, **kw)
    loop = reference_metrics_loop(records, preds, **kw)
    assert json.dumps(vec) == json.dumps(loop)
    return vec


def test_exact_tie_is_exactly_one_half():
    """pred 5.71-10.65 vs GT 4.41-8.83: the span form gives 0.5 (as every benchmark script); the
    algebraic union gave 0.5000000000000001, which flips R1@0.5 under `>`."""
    records = [GroundingRecord("q", "v", 20.0, "x", [(4.41, 8.83)])]
    preds = {"q": (5.71, 10.65)}
    assert per_query_iou(records, preds)[0] == 0.5
    assert temporal_iou_matrix([[5.71, 10.65]], [[4.41, 8.83]])[0, 0] == 0.5
    assert both(records, preds)["R1@0.5"] == 100.0  # >= counts the tie
    for name in ("ego4d_nlq", "time_r1", "2d_tan"):
        assert both(records, preds, protocol=name)["R1@0.5"] == 0.0  # > does not
    assert both(records, preds, strict=True)["R1@0.5"] == 0.0


def _conventions_case():
    """Six queries where the benchmarks' conventions disagree (the IoUs per script in the test).

    A: prediction past the video's end.  B: GT past the video's end (as in Charades-STA).
    C: GT starting before 0.  D: IoU exactly 0.5.  E: zero-length GT (Ego4D-NLQ).
    F: no prediction at all.
    """
    records = [
        GroundingRecord("A", "v", 10.0, "x", [(8.0, 10.0)]),
        GroundingRecord("B", "v", 30.0, "x", [(24.0, 30.0)], [(24.0, 32.0)]),
        GroundingRecord("C", "v", 100.0, "x", [(0.0, 4.0)], [(-2.0, 4.0)]),
        GroundingRecord("D", "v", 100.0, "x", [(0.0, 10.0)]),
        GroundingRecord("E", "v", 100.0, "x", [(5.0, 5.0)]),
        GroundingRecord("F", "v", 100.0, "x", [(0.0, 10.0)]),
    ]
    preds = {"A": (8.0, 14.0), "B": (24.0, 30.0), "C": (0.0, 4.0), "D": (0.0, 5.0), "E": (4.0, 6.0)}
    return records, preds


# IoUs of A..E as each script computes them, by hand (F has no prediction):
#  default      clip pred to [0, D] -> A 1;  GT clipped -> B 1, C 1.
#  moment_detr  nothing clipped: A 2/6, B 6/8, C 4/6; averages over the submitted qids.
#  mmn          GT [max(s, 0), min(e, D)]: B 1, C 1; predictions as given: A 2/6.
#  ego4d/time_r1 nothing clipped (as moment_detr), IoU > m, over the predictions given.
#  2d_tan       GT end clipped only: B 1, C 4/6 (start -2 kept); A 2/6; IoU > m; all annotations.
EXPECTED = {
    # name: (n, R1@0.5 hits, R1@0.7 hits, sum of IoUs)
    "default": (6, 4, 3, 1 + 1 + 1 + 0.5),
    "moment_detr": (5, 3, 1, 2 / 6 + 6 / 8 + 4 / 6 + 0.5),
    "univtg": (5, 3, 1, 2 / 6 + 6 / 8 + 4 / 6 + 0.5),
    "mmn": (6, 3, 2, 2 / 6 + 1 + 1 + 0.5),
    "ego4d_nlq": (5, 2, 1, 2 / 6 + 6 / 8 + 4 / 6 + 0.5),
    "time_r1": (5, 2, 1, 2 / 6 + 6 / 8 + 4 / 6 + 0.5),
    "2d_tan": (6, 2, 1, 2 / 6 + 1 + 4 / 6 + 0.5),
    "2d_tan_charades": (6, 2, 1, 2 / 6 + 1 + 4 / 6 + 0.5),
    # activitynet.py / tacos.py clip the GT start too: C scores 1
    "2d_tan_activitynet": (6, 2, 2, 2 / 6 + 1 + 1 + 0.5),
    "2d_tan_tacos": (6, 2, 2, 2 / 6 + 1 + 1 + 0.5),
    # MAD (VLG-Net's evaluation): MMN's conventions (float32, >=, GT clipped, all annotations)
    "mad": (6, 3, 2, 2 / 6 + 1 + 1 + 0.5),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_preset_scores_as_its_script(name):
    records, preds = _conventions_case()
    m = both(records, preds, protocol=name)
    n, hits5, hits7, iou_sum = EXPECTED[name]
    assert m["protocol"] == name and m["n_annotations"] == 6
    assert m["n"] == n
    assert m["R1@0.5"] == pytest.approx(100 * hits5 / n)
    assert m["R1@0.7"] == pytest.approx(100 * hits7 / n)
    assert m["mIoU"] == pytest.approx(100 * iou_sum / n)
    assert m["missing"] == 1 and m["invalid"] == 1  # F, whatever the denominator
    assert m["degenerate_gt"] == 1  # E stays in every denominator, scored 0
    rules = m["protocol_rules"]
    assert rules["name"] == name and rules["source"]
    assert rules["threshold"] == (">" if PROTOCOLS[name].strict else ">=")


def test_every_preset_is_covered_and_strict_is_a_shortcut():
    assert set(PROTOCOLS) == set(EXPECTED)
    records, preds = _conventions_case()
    m = both(records, preds, strict=True)
    assert m["protocol"] == "default+strict" and m["strict"] is True
    assert m["R1@0.5"] == pytest.approx(100 * 3 / 6)  # D's exact 0.5 no longer counts
    assert get_protocol("ego4d_nlq", strict=True).name == "ego4d_nlq"  # already strict
    assert get_protocol("Moment-DETR").name == "moment_detr"
    assert get_protocol("2D-TAN").name == "2d_tan"
    with pytest.raises(ScenetgError, match="unknown protocol 'charades'"):
        get_protocol("charades")


def test_gt_arrays_must_match_the_protocol():
    records, preds = _conventions_case()
    gt = GroundTruth.from_records(records, "ego4d_nlq")
    assert compute_metrics(gt, preds, protocol="time_r1")["n"] == 5  # same GT clipping
    with pytest.raises(ScenetgError, match="clips GT windows"):
        compute_metrics(gt, preds)


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_vectorised_matches_the_loop_for_every_protocol(name):
    rng = random.Random(1)
    records, preds = [], {}
    for i in range(3000):
        duration = None if rng.random() < 0.05 else rng.uniform(5, 300)
        span = duration or 300.0
        raw = []
        for _ in range(1 if rng.random() < 0.6 else rng.randint(2, 4)):
            s = rng.uniform(-5, span)
            raw.append((s, s + rng.uniform(-1, span * 0.4)))  # some past D, before 0, reversed
        clipped = [(max(s, 0.0), min(e, duration) if duration else e) for s, e in raw]
        records.append(GroundingRecord(f"q{i}", "v", duration, "x", clipped, raw))
        r = rng.random()
        if r < 0.05:
            continue
        s = rng.uniform(-10, span + 10)
        preds[f"q{i}"] = None if r < 0.1 else (s, s + rng.uniform(-5, span * 0.5))
    vec = compute_metrics(records, preds, protocol=name)
    loop = reference_metrics_loop(records, preds, protocol=name)
    assert vec.keys() == loop.keys()
    for key in ("n", "invalid", "missing", "extra", "empty", "degenerate_gt", "R1@0.5", "R1@0.7"):
        assert vec[key] == loop[key], key
    assert vec["mIoU"] == pytest.approx(loop["mIoU"], rel=1e-12)
    assert vec["breakdown"].keys() == loop["breakdown"].keys()
    for bucket, sub in vec["breakdown"].items():
        assert sub == pytest.approx(loop["breakdown"][bucket], rel=1e-12), bucket


def test_report_names_the_protocol(tmp_path):
    from scenetg.eval.report import EvalResult, write_eval_report

    records, preds = _conventions_case()
    m = compute_metrics(records, preds, protocol="2d_tan")
    result = EvalResult("charades", "center", m, per_query_iou(records, preds, "2d_tan"), tmp_path / "p.jsonl")
    text = write_eval_report([result], tmp_path).read_text()
    assert "| charades | center | 2d_tan | 6 |" in text
    assert "Protocol: 2d_tan (R1 counts IoU > m; GT clipped: end;" in text
