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


def test_unknown_model_error_names_the_flag_of_the_command_run(tmp_path, capsys):
    ann, _ = _write(tmp_path)
    (tmp_path / "videos").mkdir()
    code = main(["ground", "-a", str(ann), "--videos", str(tmp_path / "videos"),
                 "--out", str(tmp_path / "p.jsonl"), "--model", str(tmp_path / "no_such_model")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--model" in err and "--caption-model" not in err


def test_clip_and_answer_model_errors_name_their_own_flags(tmp_path, capsys):
    ann, _ = _write(tmp_path)
    (tmp_path / "videos").mkdir()
    missing = str(tmp_path / "no_such_model")
    assert main(["ground", "-a", str(ann), "--videos", str(tmp_path / "videos"), "--method", "clip",
                 "--out", str(tmp_path / "p.jsonl"), "--model", missing]) == 2
    err = capsys.readouterr().err
    assert "set --model" in err and "--clip-model" not in err
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps([{"video_id": "v", "question_id": "q", "question": "?",
                               "options": ["A. x", "B. y"], "answer": "A", "duration": "short"}]))
    assert main(["answer", "--qa", str(qa), "--videos", str(tmp_path / "videos"),
                 "--out", str(tmp_path / "a.jsonl"), "--answerer", missing]) == 2
    err = capsys.readouterr().err
    assert "--answerer" in err and "--caption-model" not in err


def test_ground_help_keeps_the_interval_text(capsys):
    assert main(["ground", "--help"]) == 0
    assert "[start, end]" in capsys.readouterr().out


def _ego4d(tmp_path, videos=None):
    clip = {
        "clip_uid": "clip-a", "clip_start_sec": 0.0, "clip_end_sec": 100.0,
        "annotations": [{"annotation_uid": "ann", "language_queries": [
            {"clip_start_sec": 10.0, "clip_end_sec": 20.0, "query": "where was the cup?"},
            {"clip_start_sec": 30.0, "clip_end_sec": 30.0, "query": "zero-length window"},
            {"clip_start_sec": 50.0, "clip_end_sec": 60.0, "query": "who did I meet?"},
        ]}],
    }
    doc = {"version": "v1", "videos": videos if videos is not None else [{"clips": [clip]}]}
    path = tmp_path / "nlq_val.json"
    path.write_text(json.dumps(doc))  # one line, as released
    return path


def test_eval_ego4d_protocol_keeps_zero_length_windows(tmp_path, capsys):
    """evaluate_nlq keeps queries whose GT window has zero length (IoU 0) in the denominator."""
    ann = _ego4d(tmp_path)
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"qid": q, "pred": w}) + "\n" for q, w in [
        ("ann_0", [10, 20]), ("ann_1", [29, 31]), ("ann_2", [50, 55])]))
    assert main(["eval", "-p", str(preds), "-a", str(ann), "--protocol", "ego4d_nlq", "--json"]) == 0
    captured = capsys.readouterr()
    m = json.loads(captured.out)
    assert m["protocol"] == "ego4d_nlq" and m["protocol_rules"]["threshold"] == ">"
    assert m["n"] == 3 and m["degenerate_gt"] == 1
    assert m["R1@0.5"] == pytest.approx(100 / 3)  # IoU 0.5 is not > 0.5
    assert m["mIoU"] == pytest.approx(100 * 1.5 / 3)
    assert "zero length" in captured.err  # the load report says so


def test_eval_missing_and_extra_are_shown_and_warned(tmp_path, capsys):
    ann, preds = _write(tmp_path)
    preds.write_text(json.dumps({"qid": 1, "pred": [10, 20]}) + "\n"
                     + json.dumps({"qid": 99, "pred": [1, 2]}) + "\n")
    assert main(["eval", "-p", str(preds), "-a", str(ann)]) == 0
    captured = capsys.readouterr()
    assert "protocol: default" in captured.out
    assert "missing predictions: 2" in captured.out and "qid in no annotation): 1" in captured.out
    assert "warning: 2 of 3 annotation queries have no prediction" in captured.err
    assert "warning: 1 predictions match no annotation qid" in captured.err
    # under a protocol that averages over the predictions given, the missing ones leave n
    assert main(["eval", "-p", str(preds), "-a", str(ann), "--protocol", "time_r1", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert (m["n"], m["n_annotations"], m["missing"], m["mIoU"]) == (1, 3, 2, 100.0)


@pytest.mark.parametrize("text", ["", json.dumps({"qid": "nope", "pred": [1, 2]}) + "\n"])
def test_eval_nothing_matched_exits_non_zero(tmp_path, capsys, text):
    ann, preds = _write(tmp_path)
    preds.write_text(text)
    assert main(["eval", "-p", str(preds), "-a", str(ann), "--json"]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "no prediction matches the 3 annotation queries" in err
    assert str(preds) in err


def test_eval_non_utf8_files_are_one_line_errors(tmp_path, capsys):
    ann, preds = _write(tmp_path)
    preds.write_bytes(b'{"qid": 1, "pred": [1, 2]}\n{"qid": 2, "pred": null, "raw": "caf\xe9"}\n')
    assert main(["eval", "-p", str(preds), "-a", str(ann)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{preds}:2: not UTF-8" in err
    _, preds = _write(tmp_path)
    sta = tmp_path / "sta.txt"
    sta.write_bytes(b"AAAAA 0 5##a person opens a door\nBBBBB 1 2##caf\xe9\n")
    assert main(["eval", "-p", str(preds), "-a", str(sta)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{sta}:2: not UTF-8" in err
    listed = tmp_path / "anet.json"
    listed.write_bytes(b'{"v_1": {"duration": 5, "timestamps": [[0, 1]], "sentences": ["\xff"]}}')
    assert main(["eval", "-p", str(preds), "-a", str(listed), "-f", "activitynet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{listed}: not UTF-8" in err


def test_eval_ego4d_videos_not_objects_is_a_one_line_error(tmp_path, capsys):
    ann = _ego4d(tmp_path, videos=[1, 2])
    _, preds = _write(tmp_path)
    assert main(["eval", "-p", str(preds), "-a", str(ann)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{ann}: videos[0]: expected a JSON object, got 1" in err


def test_eval_help_names_protocols_and_strict_scripts(capsys):
    assert main(["eval", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "2D-TAN" in text and "Time-R1" in text and "Ego4D-NLQ" in text
    for name in ("moment_detr", "ego4d_nlq", "time_r1", "2d_tan", "mmn", "univtg"):
        assert name in text


def test_eval_unknown_protocol(tmp_path, capsys):
    ann, preds = _write(tmp_path)
    assert main(["eval", "-p", str(preds), "-a", str(ann), "--protocol", "nope"]) == 2
    assert "unknown protocol 'nope'" in capsys.readouterr().err
