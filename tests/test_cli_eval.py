"""`scenetg eval` as users script it: --json contract, metrics file, clear errors."""

from __future__ import annotations

import json

import pytest

from scenetg.cli import main


def _write(tmp_path):
    ann = tmp_path / "ann.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in [
        {"qid": 1, "vid": "a", "duration": 100.0, "query": "a man opens a door", "relevant_windows": [[10, 20]]},
        {"qid": 2, "vid": "a", "duration": 100.0, "query": "a dog runs", "relevant_windows": [[50, 60]]},
        {"qid": 3, "vid": "b", "duration": 50.0, "query": "lights go off", "relevant_windows": [[0, 10]]},
    ]) + "\n")
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(json.dumps(r) for r in [
        {"qid": 1, "pred": [10, 20], "raw": "<answer>10 - 20</answer>"},   # IoU 1
        {"qid": 2, "pred": [55, 65], "raw": "<answer>55 - 65</answer>"},   # IoU 5/15
        {"qid": 3, "pred": None, "raw": "no idea"},                          # invalid
    ]) + "\n")
    return ann, preds


def test_eval_json_contract(tmp_path, capsys):
    ann, preds = _write(tmp_path)
    assert main(["eval", "--predictions", str(preds), "--annotations", str(ann), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 3 and m["invalid"] == 1
    assert m["R1@0.3"] == 200 / 3
    assert m["R1@0.5"] == 100 / 3 and m["R1@0.7"] == 100 / 3
    assert abs(m["mIoU"] - 100 * (1 + 1 / 3) / 3) < 1e-9
    assert json.loads((tmp_path / "preds.metrics.json").read_text())["n"] == 3


def test_eval_bad_predictions_line_is_one_line_error(tmp_path, capsys):
    ann, preds = _write(tmp_path)
    preds.write_text('{"qid": 1, "pred": [1, 2]}\nnot json\n')
    assert main(["eval", "--predictions", str(preds), "--annotations", str(ann)]) == 2
    err = capsys.readouterr().err.strip()
    assert "preds.jsonl:2" in err and len(err.splitlines()) == 1


def test_ground_center_baseline_then_eval(tmp_path, assets, capsys):
    """The real Charades clip: ground with the center prior, then score it end to end."""
    ann = tmp_path / "ann.jsonl"
    ann.write_text(json.dumps({"qid": "q1", "vid": "3MSZA", "duration": 30.96,
                               "query": "person turn a light on.", "relevant_windows": [[24.3, 30.4]]}) + "\n")
    preds = tmp_path / "preds.jsonl"
    videos = str(assets / "videos" / "charades")
    assert main(["ground", "-a", str(ann), "--videos", videos, "--out", str(preds), "--method", "center"]) == 0
    row = json.loads(preds.read_text().splitlines()[0])
    # A window of 0.3·D centred in the video.
    assert row["qid"] == "q1"
    assert row["pred"] == pytest.approx([30.96 * 0.35, 30.96 * 0.65])
    capsys.readouterr()
    assert main(["eval", "-p", str(preds), "-a", str(ann), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 1 and m["mIoU"] == 0.0 and m["invalid"] == 0


def test_ground_model_method_needs_a_model(tmp_path, capsys):
    ann, _ = _write(tmp_path)
    assert main(["ground", "-a", str(ann), "--videos", str(tmp_path), "--out", str(tmp_path / "p.jsonl")]) == 2
    assert "--model" in capsys.readouterr().err
