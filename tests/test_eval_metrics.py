"""Grounding metrics: hand-computed values for each rule, loop parity, predictions files."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from scenetg.errors import ScenetgError
from scenetg.eval.metrics import (
    GroundTruth,
    best_iou,
    compute_metrics,
    temporal_iou_matrix,
)
from scenetg.eval.metrics_loop import reference_metrics_loop
from scenetg.eval.predictions import append_prediction, read_predictions
from scenetg.eval.report import format_markdown
from scenetg.grounding.records import GroundingRecord


def rec(qid, windows, duration=100.0):
    return GroundingRecord(qid, "v", duration, "q", [tuple(map(float, w)) for w in windows])


def both(records, preds, **kw):
    """compute_metrics, after checking the plain loop gives the same dict."""
    vec = compute_metrics(records, preds, **kw)
    loop = reference_metrics_loop(records, preds, **kw)
    assert json.dumps(vec) == json.dumps(loop)
    return vec


def test_iou_matrix_hand_computed():
    a = np.array([[0, 10], [5, 15], [20, 30], [3, 3], [np.nan, np.nan]])
    b = np.array([[0, 10], [8, 12]])
    expected = [[1, 2 / 12], [5 / 15, 4 / 10], [0, 0], [0, 0], [0, 0]]
    np.testing.assert_allclose(temporal_iou_matrix(a, b), expected)


@pytest.mark.parametrize(("end", "m"), [(3.0, 0.3), (5.0, 0.5), (7.0, 0.7)])
def test_threshold_boundary_ge_vs_strict(end, m):
    records = [rec("a", [(0, 10)])]
    preds = {"a": (0.0, end)}  # IoU exactly m
    loose = both(records, preds)
    strict = both(records, preds, strict=True)
    assert loose[f"R1@{m}"] == 100.0 and strict[f"R1@{m}"] == 0.0
    assert loose["mIoU"] == pytest.approx(100 * m) and strict["strict"] is True


def test_several_gt_windows_best_match_counts():
    records = [rec("a", [(0, 4), (10, 20), (50, 60)])]
    m = both(records, {"a": (10.0, 20.0)})
    assert m["R1@0.7"] == 100.0 and m["mIoU"] == 100.0
    m = both(records, {"a": (2.0, 12.0)})  # IoU 2/12 with (0, 4), 2/18 with (10, 20)
    assert m["mIoU"] == pytest.approx(100 * 2 / 12)


def test_missing_none_and_unparsable_are_invalid():
    records = [rec(q, [(0, 10)]) for q in "abcdef"]
    preds = {
        "a": (0.0, 10.0),
        "b": None,
        "c": "12.5 - 17",
        "d": (math.nan, 3.0),
        "e": [0.0, 5.0],  # a list is a valid pair
        "zz": (0.0, 1.0),  # qid in no record
    }  # "f" missing
    m = both(records, preds)
    assert (m["n"], m["invalid"], m["missing"], m["extra"], m["empty"]) == (6, 4, 1, 1, 0)
    assert m["R1@0.3"] == pytest.approx(200 / 6) and m["R1@0.7"] == pytest.approx(100 / 6)
    assert m["mIoU"] == pytest.approx(100 * 1.5 / 6)


def test_predictions_clipped_to_the_video():
    records = [rec("a", [(0, 10)], 10.0), rec("b", [(8, 10)], 10.0)]
    m = both(records, {"a": (-5.0, 10.0), "b": (8.0, 50.0)})  # unclipped IoUs: 2/3, 2/42
    assert m["mIoU"] == 100.0 and m["invalid"] == 0


def test_empty_and_reversed_predictions_score_zero_but_are_not_invalid():
    records = [rec("a", [(0, 10)], 10.0), rec("b", [(0, 10)], 10.0), rec("c", [(0, 10)], None)]
    m = both(records, {"a": (12.0, 15.0), "b": (6.0, 3.0), "c": (5.0, 15.0)})
    assert (m["empty"], m["invalid"]) == (2, 0)
    # unknown duration: no upper clip, IoU 5 / 15
    assert m["mIoU"] == pytest.approx(100 * (5 / 15) / 3)


def test_breakdown_by_relative_gt_length():
    records = [
        rec("s", [(0, 5)]),  # 0.05 -> short
        rec("m1", [(0, 10)]),  # exactly 0.1 -> medium
        rec("m2", [(0, 29)]),  # medium
        rec("l", [(0, 30)]),  # exactly 0.3 -> long
        rec("x", [(0, 2), (40, 75)]),  # longest window 35 -> long
        rec("u", [(0, 5)], None),  # unknown duration
    ]
    preds = {"s": (0.0, 5.0), "m1": None, "m2": (0.0, 29.0), "l": (0.0, 30.0), "x": (0.0, 2.0)}
    m = both(records, preds)
    b = m["breakdown"]
    assert list(b) == ["short", "medium", "long", "unknown"]
    assert [b[k]["n"] for k in b] == [1, 2, 2, 1]
    assert b["medium"]["R1@0.5"] == 50.0 and b["medium"]["invalid"] == 1
    assert b["long"]["mIoU"] == 100.0 and b["unknown"]["invalid"] == 1
    assert m["bucket_edges"] == [0.1, 0.3]
    m2 = both(records[:1], {}, bucket_edges=(0.01, 0.02))
    assert m2["breakdown"]["long"]["n"] == 1 and "unknown" not in m2["breakdown"]
    assert m2["breakdown"]["short"]["mIoU"] is None  # empty bucket


def test_contract_keys_json_and_markdown():
    records = [rec("a", [(0, 10)]), rec("b", [(20, 30)])]
    m = compute_metrics(records, {"a": (0.0, 10.0)})
    for key in ("n", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "invalid"):
        assert key in m
    assert json.loads(json.dumps(m)) == m
    table = format_markdown(m)
    lines = table.splitlines()
    assert lines[0] == "| subset | n | R1@0.3 | R1@0.5 | R1@0.7 | mIoU | invalid |"
    assert lines[2] == "| all | 2 | 50.00 | 50.00 | 50.00 | 50.00 | 1 |"
    assert any(line.startswith("| short (GT < 0.1·D) | 0 | – |") for line in lines)


def test_no_records_or_bad_bucket_edges_are_errors():
    with pytest.raises(ScenetgError):
        compute_metrics([], {})
    with pytest.raises(ScenetgError):
        reference_metrics_loop([], {})
    for fn in (compute_metrics, reference_metrics_loop):
        with pytest.raises(ScenetgError, match="bucket edges"):
            fn([rec("a", [(0, 1)])], {}, bucket_edges=(0.3, 0.1))


def test_best_iou_padded_matches_ground_truth_arrays():
    preds = np.array([[0, 10], [15, 25], [np.nan, np.nan], [-3, 4]], dtype=float)
    gts = np.array(
        [[[0, 5], [0, 0]], [[10, 20], [20, 40]], [[0, 1], [0, 0]], [[0, 2], [0, 0]]], float
    )
    mask = np.array([[True, False], [True, True], [True, False], [True, False]])
    out = best_iou(preds, gts, mask, np.array([100.0, 100.0, 100.0, 100.0]))
    np.testing.assert_allclose(out, [0.5, 5 / 15, 0.0, 0.5])


def _random_case(seed: int, n: int):
    rng = random.Random(seed)
    records, preds = [], {}
    for i in range(n):
        duration = None if rng.random() < 0.05 else rng.uniform(5, 500)
        span = duration or 500.0
        k = 1 if rng.random() < 0.6 else rng.randint(2, 5)
        windows = []
        for _ in range(k):
            s = rng.uniform(0, span * 0.9)
            windows.append((s, min(s + rng.uniform(0.1, span * 0.6), span)))
        qid = f"q{i}"
        records.append(GroundingRecord(qid, f"v{i % 37}", duration, "q", windows))
        r = rng.random()
        if r < 0.05:
            continue
        if r < 0.1:
            preds[qid] = None
        elif r < 0.12:
            preds[qid] = "garbage"
        else:
            s = rng.uniform(-10, span + 10)
            preds[qid] = (s, s + rng.uniform(-5, span * 0.5))
    rng.shuffle(order := list(preds))
    return records, {q: preds[q] for q in order}


@pytest.mark.parametrize("strict", [False, True])
def test_vectorised_matches_the_plain_loop_on_random_data(strict):
    records, preds = _random_case(0, 5000)
    vec = compute_metrics(records, preds, strict=strict)
    loop = reference_metrics_loop(records, preds, strict=strict)

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    vec_items, loop_items = dict(flat(vec)), dict(flat(loop))
    assert vec_items.keys() == loop_items.keys()
    for key, value in vec_items.items():
        if key.endswith("mIoU"):
            assert value == pytest.approx(loop_items[key], rel=1e-12), key
        else:
            assert value == loop_items[key], key  # counts and R1 exactly
    assert vec["invalid"] > 0 and vec["empty"] > 0 and vec["missing"] > 0
    # same result from prepared arrays, and from predictions in annotation order
    gt = GroundTruth.from_records(records)
    assert compute_metrics(gt, preds, strict=strict) == vec
    ordered = {r.qid: preds.get(r.qid) for r in records}
    assert compute_metrics(gt, ordered, strict=strict)["R1@0.5"] == vec["R1@0.5"]
    clean = {q: v if isinstance(v, tuple) else None for q, v in ordered.items()}  # fast paths
    fast, slow = (
        compute_metrics(gt, clean, strict=strict),
        reference_metrics_loop(records, clean, strict=strict),
    )
    assert fast["R1@0.5"] == slow["R1@0.5"] == vec["R1@0.5"]
    assert (fast["invalid"], fast["missing"]) == (slow["invalid"], 0)


# --------------------------------------------------------------------------- predictions files


def test_predictions_roundtrip(tmp_path):
    path = tmp_path / "preds.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        append_prediction(fh, "a", (1.5, 3.0), "<answer>1.5 - 3</answer>")
        append_prediction(fh, 12404, None, "no idea — ünïcode")
        append_prediction(fh, "c", (float("nan"), 2.0), "nan")
        fh.write("\n")
        fh.write(json.dumps({"qid": "d", "pred": [1, 2, 3], "raw": ""}) + "\n")
        append_prediction(fh, "a", (1.5, 3.0), "the same again: counted once")
    assert read_predictions(path) == {"a": (1.5, 3.0), "12404": None, "c": None, "d": None}
    assert read_predictions(path).duplicates == 1
    assert (
        json.loads(path.read_text(encoding="utf-8").splitlines()[1])["raw"] == "no idea — ünïcode"
    )
    records = [rec("12404", [(0, 1)]), rec("a", [(2, 4)])]
    m = compute_metrics(records, read_predictions(path))
    assert (m["invalid"], m["missing"], m["extra"], m["mIoU"]) == (1, 0, 2, 20.0)  # a: IoU 1 / 2.5
    with path.open("a", encoding="utf-8") as fh:  # a qid with two different predictions
        append_prediction(fh, "a", (2.0, 4.0), "which one?")
    with pytest.raises(ScenetgError, match=r"preds.jsonl:7: qid 'a' again with another prediction"):
        read_predictions(path)


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ('{"qid": "a", "pred": null}\n{"qid": "b", "pred": [1, 2\n', ":2:", "invalid JSON"),
        ('{"qid": "a", "pred": null}\n\n[1, 2]\n', ":3:", "expected a JSON object"),
        ('{"pred": [1, 2]}\n', ":1:", "missing or invalid 'qid'"),
    ],
)
def test_malformed_predictions_name_file_and_line(tmp_path, text, where, reason):
    path = tmp_path / "p.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenetgError) as info:
        read_predictions(path)
    assert str(info.value).startswith(f"{path}{where}") and reason in str(info.value)
    with pytest.raises(ScenetgError, match="not found"):
        read_predictions(tmp_path / "none.jsonl")


def test_prediction_set_from_file_aligns_like_a_dict(tmp_path):
    """read_predictions' array-backed set gives the same metrics as the dict path."""
    import json

    from scenetg.eval.metrics import compute_metrics
    from scenetg.eval.metrics_loop import reference_metrics_loop
    from scenetg.eval.predictions import read_predictions
    from scenetg.grounding.records import GroundingRecord

    records = [GroundingRecord(f"q{i}", "v", 100.0, "x", [(10.0 * i, 10.0 * i + 8)]) for i in range(6)]
    lines = [{"qid": "q0", "pred": [0, 8]}, {"qid": "q1", "pred": None}, {"qid": "q2", "pred": [21, 29]},
             {"qid": "q2", "pred": [21.0, 29]}, {"qid": "q4", "pred": [45, 40]}, {"qid": "zz", "pred": [1, 2]},
             {"qid": "q5", "pred": [50, 58]}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    pset = read_predictions(path)
    assert pset["q2"] == (21.0, 29.0) and pset["q1"] is None and "q3" not in pset
    as_dict = dict(pset.items())
    m = compute_metrics(records, pset)
    assert m == compute_metrics(records, as_dict) == reference_metrics_loop(records, as_dict)
    assert m["invalid"] == 2 and m["missing"] == 1 and m["extra"] == 1 and m["empty"] == 1
