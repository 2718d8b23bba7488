"""R@k over ranked windows, the protocol residues (ego4d_nlq no-text queries, float32 IoU of
mmn / mad, 2d_tan's per-dataset GT clipping) and bootstrap intervals, against hand-computed
values and re-expressions of the official scripts' arithmetic."""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction

import numpy as np
import pytest

from scenetg.cli import main
from scenetg.errors import ScenetgError
from scenetg.eval.metrics import compute_metrics
from scenetg.eval.metrics_loop import reference_metrics_loop
from scenetg.eval.predictions import read_predictions
from scenetg.eval.uncertainty import bootstrap_ci, paired_comparison, sign_test_p
from scenetg.grounding.records import GroundingRecord


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _eval_json(capsys, *args) -> dict:
    assert main(["eval", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ----------------------------------------------------------------------------------- R@k


def _ranked_case():
    """q1: hit only at rank 2 (IoU 8/12); q2: one window, IoU 1; q3: rank 2 has IoU exactly 0.5
    (not > 0.5); q4: no prediction (left out of Ego4D's denominator)."""
    records = [
        GroundingRecord("q1", "v", 100.0, "a", [(10.0, 20.0)]),
        GroundingRecord("q2", "v", 100.0, "b", [(50.0, 60.0)]),
        GroundingRecord("q3", "v", 100.0, "c", [(0.0, 10.0)]),
        GroundingRecord("q4", "v", 100.0, "d", [(0.0, 10.0)]),
    ]
    preds = {
        "q1": [(0.0, 5.0), (12.0, 22.0), (10.0, 20.0)],
        "q2": (50.0, 60.0),
        "q3": [(20.0, 30.0), (0.0, 5.0)],
    }
    return records, preds


def test_ego4d_recall_at_k_hand_computed():
    records, preds = _ranked_case()
    m = compute_metrics(records, preds, protocol="ego4d_nlq")
    assert m["n"] == 3
    assert m["R1@0.3"] == pytest.approx(100 / 3) and m["R5@0.3"] == pytest.approx(100.0)
    assert m["R1@0.5"] == pytest.approx(100 / 3) and m["R5@0.5"] == pytest.approx(200 / 3)
    assert m["mIoU"] == pytest.approx(100 * (0 + 1 + 0) / 3)  # the first window's IoU
    assert m["ranked_windows"] == {"max": 3, "mean": 2.0}
    assert json.dumps(m) == json.dumps(reference_metrics_loop(records, preds, protocol="ego4d_nlq"))


def test_ranked_windows_in_both_file_encodings(tmp_path, capsys):
    records, preds = _ranked_case()
    ann = _jsonl(tmp_path / "a.jsonl", [
        {"qid": r.qid, "vid": r.video_id, "duration": r.duration_s, "query": r.query,
         "relevant_windows": [list(w) for w in r.windows]} for r in records])
    as_pred = _jsonl(tmp_path / "p1.jsonl", [{"qid": q, "pred": v} for q, v in preds.items()])
    as_cands = _jsonl(tmp_path / "p2.jsonl", [
        {"qid": "q1", "pred": [0, 5], "candidates": [[0, 5], [12, 22], [10, 20]], "raw": "x"},
        {"qid": "q2", "pred": [50, 60], "raw": "x"},
        {"qid": "q3", "pred": [20, 30], "candidates": [[20, 30], [0, 5]], "raw": "x"},
    ])
    a = _eval_json(capsys, "-p", as_pred, "-a", ann, "--protocol", "ego4d_nlq")
    b = _eval_json(capsys, "-p", as_cands, "-a", ann, "--protocol", "ego4d_nlq")
    for key in ("R1@0.3", "R5@0.3", "R1@0.5", "R5@0.5", "mIoU", "n"):
        assert a[key] == b[key], key
    assert b["R5@0.5"] == pytest.approx(200 / 3)
    # a reader that wants one window still gets the top-1 from `pred`
    assert read_predictions(as_cands)["q1"] == (0.0, 5.0)


def test_pred_that_is_not_the_first_candidate_is_a_one_line_error(tmp_path, capsys):
    records, _ = _ranked_case()
    ann = _jsonl(tmp_path / "a.jsonl", [{"qid": "q1", "vid": "v", "duration": 100, "query": "a",
                                         "relevant_windows": [[10, 20]]}])
    bad = _jsonl(tmp_path / "p.jsonl", [{"qid": "q1", "pred": [12, 22], "candidates": [[0, 5], [12, 22]]}])
    assert main(["eval", "-p", str(bad), "-a", str(ann)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad}:1: 'pred' must be the first of 'candidates'" in err


def test_one_window_per_query_warns_that_r5_equals_r1(tmp_path, capsys):
    ann = _jsonl(tmp_path / "a.jsonl", [{"qid": "q1", "vid": "v", "duration": 100, "query": "a",
                                         "relevant_windows": [[10, 20]]}])
    preds = _jsonl(tmp_path / "p.jsonl", [{"qid": "q1", "pred": [10, 20]}])
    assert main(["eval", "-p", str(preds), "-a", str(ann), "--protocol", "ego4d_nlq", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["R5@0.5"] == 100.0
    assert "one window per query, so R@k for k > 1 equals R@1" in out.err


def _ego4d_doc(queries):
    """An official-format NLQ file: one clip (0-120 s) and annotation `ann` with `queries`."""
    clip = {"clip_uid": "clip-a", "clip_start_sec": 0.0, "clip_end_sec": 120.0,
            "annotations": [{"annotation_uid": "ann", "language_queries": queries}]}
    return {"version": "v2", "videos": [{"video_uid": "vid", "clips": [clip]}]}


def _official_nlq(submission: list[dict], doc: dict, thresholds, top_k):
    """The arithmetic of EGO4D/episodic-memory NLQ/VSLNet/utils/evaluate_ego4d_nlq.py
    (`compute_IoU`, `evaluate_nlq_performance`), restated: for each submitted prediction, the
    IoUs of its `predicted_times` (in order) with the one GT window of its language query
    (float64, inter clipped at 0, union clipped at 0); R@k at t = any of the first k IoUs > t;
    mIoU = the first window's IoU; means over the submitted predictions."""
    gt = {}
    for video in doc["videos"]:
        for clip in video["clips"]:
            for ann in clip["annotations"]:
                gt[(clip["clip_uid"], ann["annotation_uid"])] = ann["language_queries"]
    hits = np.zeros((len(thresholds), len(top_k)))
    first = []
    for p in submission:
        lq = gt[(p["clip_uid"], p["annotation_uid"])][p["query_idx"]]
        w = np.array(p["predicted_times"], dtype=np.float64)
        g0, g1 = lq["clip_start_sec"], lq["clip_end_sec"]
        inter = np.maximum(0.0, np.minimum(w[:, 1], g1) - np.maximum(w[:, 0], g0))
        union = np.maximum(0.0, np.maximum(w[:, 1], g1) - np.minimum(w[:, 0], g0))
        overlap = inter / union
        first.append(overlap[0])
        for i, t in enumerate(thresholds):
            for j, k in enumerate(top_k):
                hits[i, j] += bool((overlap > t)[:k].any())
    return 100 * hits / len(submission), 100 * float(np.mean(first))


def test_ego4d_protocol_reproduces_the_official_r_at_5_on_a_fixture(tmp_path, capsys):
    """40 queries (one with no text, as in the real val file), 5 ranked windows each, several
    IoUs landing exactly on 0.3 / 0.5 (the script's `>` leaves them out)."""
    rng = random.Random(7)
    queries, submission = [], []
    for i in range(40):
        s = rng.choice([0.0, 10.0, 20.0, 30.0])
        length = rng.choice([5.0, 10.0, 20.0])
        lq = {"clip_start_sec": s, "clip_end_sec": s + length,
              "query": "" if i == 3 else f"where is thing {i}?"}
        if i == 3:
            del lq["query"]
        queries.append(lq)
        times = []
        for _ in range(5):
            kind = rng.random()
            if kind < 0.35:  # IoU exactly 1, 0.5 or 0.3: part of the GT from its start
                frac = rng.choice([1.0, 0.5, 0.3])
                times.append([s, s + frac * length])
            else:
                a = rng.uniform(0, 100)
                times.append([a, a + rng.uniform(1, 30)])
        submission.append({"clip_uid": "clip-a", "annotation_uid": "ann", "query_idx": i,
                           "predicted_times": times})
    doc = _ego4d_doc(queries)
    ann = tmp_path / "nlq_val.json"
    ann.write_text(json.dumps(doc))
    preds = _jsonl(tmp_path / "p.jsonl", [
        {"qid": f"ann_{p['query_idx']}", "pred": p["predicted_times"]} for p in submission])
    m = _eval_json(capsys, "-p", preds, "-a", ann, "--protocol", "ego4d_nlq", "--bootstrap", 0)
    table, miou = _official_nlq(submission, doc, (0.3, 0.5), (1, 5))
    assert m["n"] == 40  # the no-text query is scored, as the script scores it
    ours = [m["R1@0.3"], m["R5@0.3"], m["R1@0.5"], m["R5@0.5"]]
    assert ours == pytest.approx(table.ravel().tolist())
    assert m["mIoU"] == pytest.approx(miou)
    assert 0 < table[1, 0] < table[1, 1] < 100  # the case exercises ranks beyond the first


def test_ego4d_keeps_the_no_text_query_other_protocols_skip_it(tmp_path, capsys):
    """Three language queries, the second with no text; all three predicted. The official script
    scores 3 (R1@0.5 = 2/3); skipping it gave 1/2."""
    doc = _ego4d_doc([
        {"clip_start_sec": 0.0, "clip_end_sec": 10.0, "query": "where is the cup?"},
        {"clip_start_sec": 20.0, "clip_end_sec": 30.0, "query": None},
        {"clip_start_sec": 40.0, "clip_end_sec": 50.0, "query": "who did I meet?"},
    ])
    ann = tmp_path / "nlq.json"
    ann.write_text(json.dumps(doc))
    preds = _jsonl(tmp_path / "p.jsonl", [{"qid": "ann_0", "pred": [0, 10]},
                                          {"qid": "ann_1", "pred": [20, 30]},
                                          {"qid": "ann_2", "pred": [0, 5]}])
    assert main(["eval", "-p", str(preds), "-a", str(ann), "--protocol", "ego4d_nlq", "--json"]) == 0
    out = capsys.readouterr()
    m = json.loads(out.out)
    assert (m["n"], m["extra"]) == (3, 0) and m["R1@0.5"] == pytest.approx(200 / 3)
    assert "1 queries with no text kept" in out.err
    m = _eval_json(capsys, "-p", preds, "-a", ann, "--protocol", "time_r1")
    assert (m["n"], m["extra"]) == (2, 1) and m["R1@0.5"] == pytest.approx(50.0)


# ------------------------------------------------------------------------ float32 scripts


def _torch_float32_iou(pred, gt) -> float:
    """MMN's / MAD's `iou` (`.float()` tensors, inter clamped at 0, divided by the span)."""
    import torch  # deferred: pulls torch

    cand = torch.tensor([pred], dtype=torch.float64)
    start, end = cand[:, 0].float(), cand[:, 1].float()
    g = torch.tensor(gt)
    s, e = g[0].float(), g[1].float()
    return ((end.min(e) - start.max(s)).clamp(min=0) / (end.max(e) - start.min(s))).item()


def test_mmn_computes_iou_in_float32_as_mmn_does():
    """GT [0, 10], prediction [0, 4.99999999]: IoU 0.499999999 in float64 (a miss at 0.5), but
    the end rounds to 5.0 in float32 and MMN's IoU is exactly 0.5 (a hit)."""
    records = [GroundingRecord("q", "v", 100.0, "x", [(0.0, 10.0)])]
    preds = {"q": (0.0, 4.99999999)}
    assert _torch_float32_iou(preds["q"], (0.0, 10.0)) >= 0.5
    m = compute_metrics(records, preds, protocol="mmn")
    assert m["R1@0.5"] == 100.0
    assert compute_metrics(records, preds, protocol="default")["R1@0.5"] == 0.0
    assert m["protocol_rules"]["iou_dtype"] == "float32"
    assert json.dumps(m) == json.dumps(reference_metrics_loop(records, preds, protocol="mmn"))


def test_float32_thresholds_are_compared_in_float32():
    """IoU 0.7 (GT [0, 10], prediction [0, 7]) is 0.69999999 in float32 and the threshold
    torch.tensor(0.7) is the same float32: a hit for MMN, as in float64."""
    records = [GroundingRecord("q", "v", 100.0, "x", [(0.0, 10.0)])]
    preds = {"q": (0.0, 7.0)}
    assert compute_metrics(records, preds, protocol="mmn")["R1@0.7"] == 100.0


def test_mad_recall_table_hand_computed_with_100_windows():
    """MAD: R@{1,5,10,50,100} at {0.1,0.3,0.5}, >=, float32, every annotation counted.
    a: the GT window at rank 7 (0-based 6); b: IoU 0.3 at rank 60, IoU 0.2 at rank 1;
    c: no prediction."""
    records = [GroundingRecord(q, "movie", 7200.0, "x", [(100.0, 110.0)]) for q in "abc"]
    far = [(5000.0 + i, 5001.0 + i) for i in range(100)]
    a = far[:6] + [(100.0, 110.0)] + far[6:99]
    b = [(100.0, 102.0)] + far[:58] + [(100.0, 103.0)] + far[58:98]
    assert len(a) == len(b) == 100
    m = compute_metrics(records, {"a": a, "b": b}, protocol="mad")
    third = 100 / 3
    expected = {
        "R1@0.1": third, "R5@0.1": third, "R10@0.1": 2 * third, "R50@0.1": 2 * third, "R100@0.1": 2 * third,
        "R1@0.3": 0.0, "R5@0.3": 0.0, "R10@0.3": third, "R50@0.3": third, "R100@0.3": 2 * third,
        "R1@0.5": 0.0, "R5@0.5": 0.0, "R10@0.5": third, "R50@0.5": third, "R100@0.5": third,
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key
    assert m["n"] == 3 and m["ranked_windows"]["max"] == 100
    loop = reference_metrics_loop(records, {"a": a, "b": b}, protocol="mad")
    assert json.dumps(m) == json.dumps(loop)


def test_ranked_parity_with_the_loop_on_random_lists():
    rng = random.Random(3)
    records, preds = [], {}
    for i in range(600):
        d = rng.uniform(20, 500)
        s = rng.uniform(-5, d)
        raw = [(s, s + rng.uniform(0.5, d / 3))]
        records.append(GroundingRecord(f"q{i}", "v", d, "x", [(max(raw[0][0], 0), min(raw[0][1], d))], raw))
        r = rng.random()
        if r < 0.1:
            continue
        if r < 0.15:
            preds[f"q{i}"] = None
            continue
        ws = []
        for _ in range(rng.randint(1, 12)):
            a = rng.uniform(-10, d + 10)
            ws.append(None if rng.random() < 0.05 else (a, a + rng.uniform(-2, d / 2)))
        preds[f"q{i}"] = ws
    for name in ("ego4d_nlq", "mad"):
        vec = compute_metrics(records, preds, protocol=name)
        loop = reference_metrics_loop(records, preds, protocol=name)
        keys = [k for k in vec if k[0] == "R"] + ["n"]
        assert {k: vec[k] for k in keys} == pytest.approx({k: loop[k] for k in keys}), name
        assert vec["ranked_windows"] == pytest.approx(loop["ranked_windows"])
        assert 0 < vec["R1@0.5"] < vec.get("R5@0.5", vec.get("R10@0.5"))


# ---------------------------------------------------------------------------------- 2D-TAN


def test_2d_tan_clips_gt_starts_per_dataset(tmp_path, capsys):
    """GT [-2, 4], prediction [0, 4]. 2D-TAN's Charades loader keeps the start (IoU 4/6, a miss
    at 0.7); its ActivityNet and TACoS loaders clip it to 0 (IoU 1, a hit)."""
    preds = _jsonl(tmp_path / "p.jsonl", [{"qid": "v_0", "pred": [0, 4]}])
    anet = tmp_path / "anet.json"
    anet.write_text(json.dumps({"v": {"duration": 50, "timestamps": [[-2, 4]], "sentences": ["a"]}}))
    m = _eval_json(capsys, "-p", preds, "-a", anet, "--protocol", "2d_tan")
    assert m["protocol"] == "2d_tan_activitynet" and m["R1@0.7"] == 100.0
    sta = tmp_path / "sta.txt"
    sta.write_text("v -2 4##a person opens a door\n")
    preds1 = _jsonl(tmp_path / "p1.jsonl", [{"qid": "v_1", "pred": [0, 4]}])
    m = _eval_json(capsys, "-p", preds1, "-a", sta, "--durations", _durations(tmp_path), "--protocol", "2d_tan")
    assert m["protocol"] == "2d_tan_charades" and m["mIoU"] == pytest.approx(100 * 4 / 6)
    # a JSONL file does not say which dataset it is: refused where the rules differ...
    tacos = _jsonl(tmp_path / "tacos.jsonl", [{"qid": "v_0", "vid": "v", "duration": 50, "query": "a",
                                               "relevant_windows": [[-2, 4]]}])
    assert main(["eval", "-p", str(preds), "-a", str(tacos), "--protocol", "2d_tan"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2d_tan_activitynet, 2d_tan_charades, 2d_tan_tacos" in err
    m = _eval_json(capsys, "-p", preds, "-a", tacos, "--protocol", "2d_tan_tacos")
    assert m["R1@0.7"] == 100.0 and m["protocol_rules"]["clip_gt"] == "both"
    # ... and accepted where they agree (no GT start before 0)
    fine = _jsonl(tmp_path / "fine.jsonl", [{"qid": "v_0", "vid": "v", "duration": 50, "query": "a",
                                             "relevant_windows": [[0, 4]]}])
    assert _eval_json(capsys, "-p", preds, "-a", fine, "--protocol", "2d_tan")["R1@0.7"] == 100.0


def _durations(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("id,length\nv,50\n")
    return path


# ------------------------------------------------------------------------------ uncertainty


def test_bootstrap_of_two_queries_is_the_percentiles_of_0_50_100():
    """Values (0, 100): a resample's mean is 0, 50 or 100 (1/4, 1/2, 1/4), so with 1000
    resamples the 2.5th percentile is 0 and the 97.5th is 100."""
    lo, hi = bootstrap_ci(np.array([0.0, 100.0]), resamples=1000, seed=0)[0]
    assert (lo, hi) == (0.0, 100.0)
    assert bootstrap_ci(np.full(50, 100.0))[0].tolist() == [100.0, 100.0]
    assert math.isnan(bootstrap_ci(np.empty(0))[0, 0])


def test_bootstrap_is_seeded():
    x = np.random.default_rng(1).random((300, 2))
    a = bootstrap_ci(x, 500, seed=4)
    assert np.array_equal(a, bootstrap_ci(x, 500, seed=4))
    assert not np.array_equal(a, bootstrap_ci(x, 500, seed=5))
    means = x.mean(axis=0)
    assert np.all(a[:, 0] < means) and np.all(means < a[:, 1])
    # the interval of a mean of 300 values is about ±1.96 standard errors wide
    se = x.std(axis=0) / math.sqrt(300)
    assert np.allclose(a[:, 1] - a[:, 0], 2 * 1.96 * se, rtol=0.15)


def _binomial_p(g: int, lost: int) -> float:
    n, k = g + lost, min(g, lost)
    return min(1.0, float(2 * sum(Fraction(math.comb(n, i), 2**n) for i in range(k + 1))))


@pytest.mark.parametrize("gained,lost", [(5, 0), (3, 1), (0, 0), (10, 10), (40, 22), (0, 9)])
def test_sign_test_is_the_exact_binomial(gained, lost):
    assert sign_test_p(gained, lost) == pytest.approx(_binomial_p(gained, lost), rel=1e-9)
    assert sign_test_p(5, 0) == pytest.approx(1 / 16)  # 2 * (1/2)^5


def test_paired_comparison_counts_gains_and_losses():
    a = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    b = np.array([1, 0, 1, 1, 1, 1], dtype=bool)
    assert paired_comparison(a, b) == {"n": 6, "gained": 3, "lost": 1, "p": pytest.approx(10 / 16)}


def test_eval_json_keeps_its_keys_and_adds_intervals(tmp_path, capsys):
    records, preds = _ranked_case()
    ann = _jsonl(tmp_path / "a.jsonl", [
        {"qid": r.qid, "vid": r.video_id, "duration": r.duration_s, "query": r.query,
         "relevant_windows": [list(w) for w in r.windows]} for r in records])
    p = _jsonl(tmp_path / "p.jsonl", [{"qid": "q1", "pred": [10, 20]}, {"qid": "q2", "pred": [0, 1]}])
    m = _eval_json(capsys, "-p", p, "-a", ann)
    for key in ("n", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "invalid"):
        assert key in m
    assert set(m["ci95"]) == {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}
    assert m["bootstrap"]["resamples"] == 1000 and m["bootstrap"]["seed"] == 0
    lo, hi = m["ci95"]["R1@0.5"]
    assert 0.0 <= lo <= m["R1@0.5"] <= hi <= 100.0 and hi > lo
    assert "ci95" not in _eval_json(capsys, "-p", p, "-a", ann, "--bootstrap", 0)
    assert main(["eval", "-p", str(p), "-a", str(ann), "--bootstrap", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--bootstrap" in err
    assert main(["eval", "-p", str(p), "-a", str(ann)]) == 0
    assert "95% bootstrap intervals over queries (1000 resamples, seed 0)" in capsys.readouterr().out


def test_compute_metrics_rejects_nothing_new_without_bootstrap():
    """compute_metrics without `bootstrap` stays as before (no interval keys)."""
    records, preds = _ranked_case()
    m = compute_metrics(records, preds)
    assert "ci95" not in m and "R5@0.3" not in m
    with pytest.raises(ScenetgError):
        compute_metrics([], preds)


# --------------------------------------------------------------------- eval-suite reports


def _paired_results(tmp_path, protocol="default"):
    from scenetg.eval.metrics import per_query_iou
    from scenetg.eval.report import EvalResult

    records = [GroundingRecord(f"q{i}", "v", 100.0, "x", [(0.0, 10.0)]) for i in range(6)]
    hit, miss = (0.0, 10.0), (50.0, 60.0)
    a = dict(zip([r.qid for r in records], [hit, hit, miss, miss, hit, miss], strict=True))
    b = dict(zip([r.qid for r in records], [hit, miss, hit, hit, hit, hit], strict=True))
    out = []
    for name, preds in (("base", a), ("trained", b)):
        m = compute_metrics(records, preds, protocol=protocol, bootstrap=200)
        out.append(EvalResult("bench", name, m, per_query_iou(records, preds, protocol), tmp_path / f"{name}.jsonl"))
    return out


def test_paired_tests_count_gains_and_losses_per_threshold(tmp_path):
    from scenetg.eval.report import paired_tests, write_eval_report

    results = _paired_results(tmp_path)
    rows = paired_tests(results)
    assert len(rows) == 1 and (rows[0]["a"], rows[0]["b"], rows[0]["n"]) == ("base", "trained", 6)
    for key in ("R1@0.3", "R1@0.5", "R1@0.7"):
        assert rows[0]["tests"][key] == {"n": 6, "gained": 3, "lost": 1, "p": pytest.approx(10 / 16)}
    text = write_eval_report(results, tmp_path).read_text()
    assert "## Paired comparisons" in text and "| bench | base | trained | 6 | +3 / −1 (p=0.625)" in text
    lo, hi = results[0].metrics["ci95"]["R1@0.5"]
    assert f"| bench | base | default | 6 | 50.00 [{lo:.1f}, {hi:.1f}]" in text


def test_paired_tests_use_the_queries_both_methods_are_scored_on(tmp_path):
    """Under a predictions-denominator protocol a query one method has no line for is left out."""
    from scenetg.eval.report import paired_tests

    results = _paired_results(tmp_path, "time_r1")
    results[1].counted = np.array([True, True, False, True, True, True])
    row = paired_tests(results)[0]
    assert row["n"] == 5 and row["tests"]["R1@0.5"]["gained"] == 2  # q2 left out


def test_suite_writes_intervals_and_paired_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rows = [{"qid": i, "vid": "v", "duration": 10.0, "query": "a", "relevant_windows": [[3, 7]]}
            for i in range(4)]
    _jsonl(tmp_path / "anno.jsonl", rows)
    (tmp_path / "videos").mkdir()
    (tmp_path / "eval.yaml").write_text(
        "out: out\nmethods: [center]\nbootstrap: '300'\nseed: 3\n"
        "benchmarks:\n  - {name: a, annotations: anno.jsonl, videos: videos}\n")
    assert main(["eval-suite", "-c", "eval.yaml"]) == 0
    m = json.loads((tmp_path / "out" / "a" / "center.metrics.json").read_text())
    assert m["bootstrap"]["resamples"] == 300 and m["bootstrap"]["seed"] == 3
    assert m["ci95"]["mIoU"] == [m["mIoU"], m["mIoU"]]  # every query has the same IoU
    assert json.loads((tmp_path / "out" / "paired.json").read_text()) == []
    (tmp_path / "eval.yaml").write_text(
        "out: out2\nmethods: [center]\nbootstrap: -5\n"
        "benchmarks:\n  - {name: a, annotations: anno.jsonl, videos: videos}\n")
    capsys.readouterr()
    assert main(["eval-suite", "-c", "eval.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bootstrap: expected an integer >= 0, got -5" in err


def test_mmn_float32_matches_torch_on_real_activitynet_val(assets):
    """All 17,505 ActivityNet val queries, each predicted as the first half of its GT window
    (IoU 0.5 in exact arithmetic; rounding puts each just above or below): `mmn` counts R1@0.5
    exactly as MMN's float32 `iou` with `torch.tensor(0.5)` does, and differently from float64."""
    import dataclasses

    import torch  # deferred: pulls torch

    from scenetg.eval.protocols import get_protocol
    from scenetg.grounding.loaders import load_annotations

    records, _ = load_annotations(assets / "annotations" / "activitynet_captions" / "val_1.json")
    preds, starts, ends, pred_s, pred_e = {}, [], [], [], []
    for r in records:
        s, e = (r.raw_windows or r.windows)[0]
        d = r.duration_s
        gs, ge = max(s, 0.0), min(e, d)  # MMN's GT: [max(s, 0), min(e, duration)]
        ps, pe = gs, gs + 0.5 * (ge - gs)
        preds[r.qid] = (ps, pe)
        starts.append(gs), ends.append(ge), pred_s.append(ps), pred_e.append(pe)
    f = torch.float32
    st, en = torch.tensor(pred_s, dtype=torch.float64).to(f), torch.tensor(pred_e, dtype=torch.float64).to(f)
    gs_t, ge_t = torch.tensor(starts, dtype=torch.float64).to(f), torch.tensor(ends, dtype=torch.float64).to(f)
    inter = (torch.minimum(en, ge_t) - torch.maximum(st, gs_t)).clamp(min=0)
    iou = inter / (torch.maximum(en, ge_t) - torch.minimum(st, gs_t))
    torch_hits = int((iou >= torch.tensor(0.5)).sum())
    m = compute_metrics(records, preds, protocol="mmn")
    assert round(m["R1@0.5"] * len(records) / 100) == torch_hits
    as64 = dataclasses.replace(get_protocol("mmn"), name="mmn64", float32=False)
    hits64 = round(compute_metrics(records, preds, protocol=as64)["R1@0.5"] * len(records) / 100)
    assert hits64 != torch_hits  # the dtype decides queries on this real file
