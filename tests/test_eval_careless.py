"""Eval as a careless user runs it (issue 17): stale predictions are never reused for another
producer, and nothing fails silently — each case of the issue's list has a test here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scenetg.cli import main
from scenetg.errors import ConfigError
from scenetg.eval import grounding as G
from scenetg.eval.producer import producer_path
from scenetg.grounding.records import GroundingRecord
from scenetg.models.fingerprint import SAMPLE_BYTES, folder_fingerprint
from scenetg.video.synthetic import write_synthetic_video

ANSWER = "<answer>1.0 - 2.5</answer>"


class FakeRunner:
    def __init__(self, text: str = ANSWER):
        self.text = text
        self.calls = 0

    def generate(self, videos, times_s, prompts, durations_s, max_new_tokens=None):
        self.calls += 1
        return [self.text] * len(videos)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_synthetic_video(root / "a.mp4", [2.0, 2.0], fps=10, size=(64, 48))
    return root


def _records() -> list[GroundingRecord]:
    return [GroundingRecord("q1", "a", 4.0, "a dark scene", [(0.0, 2.0)]),
            GroundingRecord("q2", "a", 4.0, "a bright scene", [(2.0, 4.0)])]


def _ann(tmp_path: Path, vid: str = "a") -> Path:
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(json.dumps({"qid": q, "vid": vid, "duration": 10.0, "query": "x",
                                       "relevant_windows": [w]}) + "\n"
                           for q, w in (("q1", [3, 7]), ("q2", [0, 2]))))
    return ann


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ------------------------------------------------------------------ 4. producers of predictions


def test_resuming_another_models_file_is_refused_naming_the_difference(videos, tmp_path):
    out = tmp_path / "p.jsonl"
    G.ground(_records()[:1], videos, out, model=FakeRunner(), model_name="model-A")
    side = json.loads(producer_path(out).read_text())
    assert side["model"] == "model-A" and side["method"] == "model" and side["fps"] == 2.0
    assert side["decoding"] == {"greedy": True, "max_new_tokens": 256} and len(side["fingerprint"]) == 12
    runner_b = FakeRunner("<answer>0 - 1</answer>")
    with pytest.raises(ConfigError, match=r"model: 'model-A' -> 'model-B'.*--overwrite"):
        G.ground(_records(), videos, out, model=runner_b, model_name="model-B")
    assert runner_b.calls == 0 and len(out.read_text().splitlines()) == 1
    # same producer: resumes, only the missing qid is grounded
    stats = G.ground(_records(), videos, out, model=FakeRunner(), model_name="model-A")
    assert stats.skipped == 1 and stats.written == 1
    # --overwrite: B's predictions replace A's
    stats = G.ground(_records(), videos, out, model=runner_b, model_name="model-B", overwrite=True)
    assert stats.written == 2 and {json.loads(x)["pred"][1] for x in out.read_text().splitlines()} == {1.0}


def test_other_settings_and_a_file_with_no_record_are_refused(videos, tmp_path):
    out = tmp_path / "p.jsonl"
    G.ground(_records(), videos, out, model=FakeRunner(), model_name="m", max_frames=6)
    with pytest.raises(ConfigError, match=r"max_frames: 6 -> 8"):
        G.ground(_records(), videos, out, model=FakeRunner(), model_name="m", max_frames=8)
    with pytest.raises(ConfigError, match=r"candidates: None -> \{'k': 3, 'nms_iou': 0.5"):
        G.ground(_records(), videos, out, model=FakeRunner(), model_name="m", max_frames=6,
                 candidates=3, nms_iou=0.5)
    producer_path(out).unlink()  # a file from before producers were recorded
    with pytest.raises(ConfigError, match=r"no producer record \(p.producer.json\)"):
        G.ground(_records(), videos, out, model=FakeRunner(), model_name="m", max_frames=6)


def test_model_fingerprint_follows_content_not_path(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    big = folder / "model.safetensors"
    big.write_bytes(bytes(70 << 20))  # above FULL_HASH_BYTES: sampled
    first = folder_fingerprint(folder)
    assert folder_fingerprint(folder) == first
    with big.open("r+b") as fh:  # a retrained model: the middle block changes
        fh.seek((70 << 20) // 2)
        fh.write(b"\x01" * SAMPLE_BYTES)
    assert folder_fingerprint(folder) != first
    (folder / "config.json").write_text('{"a": 1}')
    assert len({first, folder_fingerprint(folder)}) == 2


def test_ground_cli_center_then_clip_into_the_same_file(tmp_path, capsys):
    """`--method clip` into a file of center predictions used to say "0 written"."""
    ann = _ann(tmp_path)
    (tmp_path / "videos").mkdir()
    out = tmp_path / "p.jsonl"
    base = ["ground", "-a", str(ann), "--videos", str(tmp_path / "videos"), "--out", str(out)]
    assert main([*base, "--method", "center"]) == 0
    capsys.readouterr()
    assert main([*base, "--method", "center", "--center-fraction", "0.5"]) == 2
    assert "center_fraction: 0.3 -> 0.5" in _err(capsys)
    assert main([*base, "--method", "clip", "--model", "ViT-B-32"]) == 2
    assert "method: 'center' -> 'clip'" in _err(capsys)
    assert main([*base, "--method", "center", "--center-fraction", "0.5", "--overwrite"]) == 0
    assert json.loads(out.read_text().splitlines()[0])["pred"] == pytest.approx([2.5, 7.5])


@pytest.mark.slow
def test_eval_suite_keys_predictions_by_producer(tmp_path, tiny_models, videos, monkeypatch):
    """Changing `model:` no longer scores the old model's file as the new one's; switching back
    reuses the first model's predictions from cache/."""
    monkeypatch.chdir(tmp_path)
    model_a = tiny_models["qwen"]
    model_b = tmp_path / "model_b"
    shutil.copytree(model_a, model_b)
    (model_b / "generation_config.json").write_text(
        (model_a / "generation_config.json").read_text().replace("{", '{\n  "retrained": 1,', 1))
    (tmp_path / "anno.jsonl").write_text(json.dumps(
        {"qid": 1, "vid": "a", "duration": 4.0, "query": "x", "relevant_windows": [[0, 2]]}) + "\n")
    (tmp_path / "eval.yaml").write_text(
        f"out: out\nmethods: [model]\nmodel: {model_a}\nfps: '1.0'\nmax_frames: '4'\n"
        "max_new_tokens: 8\ndevice: cpu\n"
        f"benchmarks:\n  - {{name: a, annotations: anno.jsonl, videos: {videos}}}\n")
    bench = tmp_path / "out" / "a"

    def producer() -> dict:
        return json.loads((bench / "model.producer.json").read_text())

    assert main(["eval-suite", "-c", "eval.yaml"]) == 0
    fp_a = producer()["fingerprint"]
    assert producer()["model"] == str(model_a) and producer()["fps"] == 1.0
    assert main(["eval-suite", "-c", "eval.yaml", "--model", str(model_b)]) == 0
    assert producer()["model"] == str(model_b) and producer()["fingerprint"] != fp_a
    assert (bench / "cache" / f"model-{fp_a}.jsonl").is_file()
    assert main(["eval-suite", "-c", "eval.yaml"]) == 0  # back to A: its file comes back
    assert producer()["fingerprint"] == fp_a
    assert not (bench / "cache" / f"model-{fp_a}.jsonl").exists()


@pytest.mark.slow
def test_eval_suite_exits_3_when_a_video_is_missing(tmp_path, tiny_models, videos, monkeypatch, capsys):
    """A query whose video is missing is an error row and a miss; the suite still writes its
    report, then says which benchmark/method failed and exits 3, as `ground` does."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "anno.jsonl").write_text("".join(json.dumps(
        {"qid": q, "vid": v, "duration": 4.0, "query": "x", "relevant_windows": [[0, 2]]}) + "\n"
        for q, v in ((1, "a"), (2, "gone"))))
    (tmp_path / "eval.yaml").write_text(
        f"out: out\nmethods: [model, center]\nmodel: {tiny_models['qwen']}\nfps: 1.0\nmax_frames: 4\n"
        "max_new_tokens: 8\ndevice: cpu\n"
        f"benchmarks:\n  - {{name: a, annotations: anno.jsonl, videos: {videos}}}\n")
    assert main(["eval-suite", "-c", "eval.yaml"]) == 3
    assert "finished; queries failed (a/model: 1)" in capsys.readouterr().err.splitlines()[-1]
    assert (tmp_path / "out" / "report.md").is_file()
    rows = [json.loads(line) for line in (tmp_path / "out" / "a" / "model.jsonl").read_text().splitlines()]
    assert {r["qid"]: r["raw"].startswith("error:") for r in rows} == {"1": False, "2": True}
    shutil.copy(videos / "a.mp4", videos / "gone.mp4")
    try:  # the video is back: the rerun retries the error row and succeeds
        assert main(["eval-suite", "-c", "eval.yaml"]) == 0
    finally:
        (videos / "gone.mp4").unlink()


# ---------------------------------------------------------------------------- 5. nothing silent


def test_failed_eval_writes_no_metrics_and_keeps_the_old_file(tmp_path, capsys):
    ann = _ann(tmp_path)
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"qid": "q1", "pred": [3, 7], "raw": ""}\n')
    assert main(["eval", "-p", str(preds), "-a", str(ann)]) == 0
    metrics = tmp_path / "p.metrics.json"
    good = metrics.read_bytes()
    preds.write_text('{"qid": "other", "pred": [3, 7], "raw": ""}\n')  # matches no query
    capsys.readouterr()
    assert main(["eval", "-p", str(preds), "-a", str(ann)]) == 2
    assert metrics.read_bytes() == good
    preds.write_text('{"qid": "q1", "pred": [3, 7]}\nnot json\n')
    assert main(["eval", "-p", str(preds), "-a", str(ann)]) == 2
    assert metrics.read_bytes() == good


def test_duplicate_qids_conflicting_refused_identical_warned(tmp_path, capsys):
    ann = _ann(tmp_path)
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"qid": "q1", "pred": [3, 7]}\n{"qid": "q2", "pred": null}\n'
                     '{"qid": "q1", "pred": [0, 1]}\n')
    assert main(["eval", "-p", str(preds), "-a", str(ann), "--json"]) == 2
    assert "p.jsonl:3: qid 'q1' again with another prediction (first on line 1)" in _err(capsys)
    assert not (tmp_path / "p.metrics.json").exists()
    preds.write_text('{"qid": "q1", "pred": [3, 7]}\n{"qid": "q1", "pred": [3.0, 7.0]}\n')
    assert main(["eval", "-p", str(preds), "-a", str(ann), "--json"]) == 0
    out = capsys.readouterr()
    m = json.loads(out.out)
    assert m["n"] == 2 and m["mIoU"] == pytest.approx(50.0)  # q1 counted once, q2 missing
    assert "1 line(s) repeat a qid with the same prediction" in out.err


def test_retried_error_rows_leave_one_row_per_qid(videos, tmp_path):
    """A resumed run retries a failed video's queries without leaving two rows for one qid."""
    recs = [*_records(), GroundingRecord("q3", "later", 4.0, "x", [(0.0, 1.0)])]
    out = tmp_path / "p.jsonl"
    assert G.ground(recs, videos, out, model=FakeRunner(), model_name="m").failed == 1
    shutil.copy(videos / "a.mp4", tmp_path / "later.mp4")
    shutil.copy(videos / "a.mp4", tmp_path / "a.mp4")
    stats = G.ground(recs, tmp_path, out, model=FakeRunner(), model_name="m")
    assert stats.written == 1 and stats.failed == 0
    qids = [json.loads(x)["qid"] for x in out.read_text().splitlines()]
    assert sorted(qids) == ["q1", "q2", "q3"]


@pytest.mark.parametrize("extra,flag", [
    (["--fps", "nan"], "--fps: expected a number > 0, got nan"),
    (["--fps", "inf"], "--fps: expected a number > 0, got inf"),
    (["--center-fraction", "abc"], "--center-fraction: expected a number > 0 and <= 1, got 'abc'"),
    (["--center-fraction", "nan"], "--center-fraction: expected a number > 0 and <= 1, got 'nan'"),
    (["--limit", "-5"], "--limit: expected an integer >= 0, got -5"),
])
def test_ground_refuses_bad_numbers_naming_the_option(tmp_path, capsys, extra, flag):
    ann = _ann(tmp_path)
    (tmp_path / "videos").mkdir()
    assert main(["ground", "-a", str(ann), "--videos", str(tmp_path / "videos"), "--method",
                 "center", "--out", str(tmp_path / "p.jsonl"), *extra]) == 2
    assert flag in _err(capsys)
    assert not (tmp_path / "p.jsonl").exists()


def _qa(tmp_path: Path) -> Path:
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps([{"video_id": "v", "question_id": "q", "question": "?",
                               "options": ["A. x", "B. y"], "answer": "A", "duration": "short"}]))
    return qa


@pytest.mark.parametrize("extra,flag", [
    (["--context-fraction", "nan"], "--context-fraction: expected a number >= 0, got nan"),
    (["--context-s", "-inf"], "--context-s: expected a number >= 0, got -inf"),
    (["--limit", "-5"], "--limit: expected an integer >= 0, got -5"),
])
def test_answer_refuses_bad_numbers_naming_the_option(tmp_path, capsys, extra, flag):
    (tmp_path / "videos").mkdir()
    assert main(["answer", "--qa", str(_qa(tmp_path)), "--videos", str(tmp_path / "videos"),
                 "--out", str(tmp_path / "a.jsonl"), "--answerer", "x", *extra]) == 2
    assert flag in _err(capsys)


def test_ground_and_answer_exit_3_when_queries_failed(tmp_path, tiny_models, capsys):
    ann = _ann(tmp_path, vid="missing")
    (tmp_path / "videos").mkdir()
    code = main(["ground", "-a", str(ann), "--videos", str(tmp_path / "videos"), "--out",
                 str(tmp_path / "p.jsonl"), "--model", str(tiny_models["qwen"]), "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 3 and "2 of 2 queries failed" in out.err
    code = main(["answer", "--qa", str(_qa(tmp_path)), "--videos", str(tmp_path / "videos"),
                 "--out", str(tmp_path / "a.jsonl"), "--answerer", str(tiny_models["qwen"]),
                 "--device", "cpu"])
    assert code == 3 and "1 of 1 questions failed" in capsys.readouterr().err


def test_output_paths_that_are_folders_or_below_a_file(tmp_path, capsys):
    ann = _ann(tmp_path)
    (tmp_path / "videos").mkdir()
    folder = tmp_path / "folder"
    folder.mkdir()
    ground = ["ground", "-a", str(ann), "--videos", str(tmp_path / "videos"), "--method", "center"]
    assert main([*ground, "--out", str(folder)]) == 2
    assert "--out" in (err := _err(capsys)) and "is a folder" in err
    assert main([*ground, "--out", str(ann / "p.jsonl")]) == 2
    assert "ann.jsonl is a file, not a folder" in _err(capsys)
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"qid": "q1", "pred": [3, 7]}\n')
    assert main(["eval", "-p", str(preds), "-a", str(ann), "--out", str(folder)]) == 2
    assert "is a folder" in _err(capsys)
    assert main(["eval", "-p", str(preds), "-a", str(ann), "--out", str(preds)]) == 2
    assert "is the predictions file" in _err(capsys)
    assert main(["eval", "-p", str(folder), "-a", str(ann)]) == 2
    assert "is a folder, not a predictions file" in _err(capsys)
    assert main(["answer", "--qa", str(_qa(tmp_path)), "--videos", str(tmp_path / "videos"),
                 "--out", str(folder), "--answerer", "x", "--summary", str(tmp_path / "s.json")]) == 2
    assert "is a folder" in _err(capsys)


@pytest.fixture
def suite_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "anno.jsonl").write_text(json.dumps(
        {"qid": 1, "vid": "v", "duration": 10.0, "query": "a", "relevant_windows": [[3, 7]]}) + "\n")
    (tmp_path / "videos").mkdir()
    return tmp_path


def _suite(folder: Path, top: str = "", bench: str = "", name: str = "a") -> None:
    (folder / "eval.yaml").write_text(
        f"out: out\nmethods: [center]\n{top}benchmarks:\n"
        f"  - {{name: '{name}', annotations: anno.jsonl, videos: videos{bench}}}\n")


@pytest.mark.parametrize("top,bench,name,message", [
    ("", "", "../../x", "benchmarks[0].name: '../../x' is not a plain folder name"),
    ("", "", "/tmp/x", "benchmarks[0].name: '/tmp/x' is not a plain folder name"),
    ("", ", limit: -5", "a", "benchmarks[0].limit: expected an integer >= 0, got -5"),
    ("fps: .nan\n", "", "a", "fps: expected a number > 0, got nan"),
    ("fps: 'nan'\n", "", "a", "fps: expected a number > 0, got 'nan'"),
    ("max_frames: 2.5\n", "", "a", "max_frames: expected an integer >= 1, got 2.5"),
    ("strict: 'maybe'\n", "", "a", "strict: expected true or false, got 'maybe'"),
])
def test_suite_values_go_through_the_coercion_path(suite_dir, capsys, top, bench, name, message):
    _suite(suite_dir, top, bench, name)
    assert main(["eval-suite", "-c", "eval.yaml"]) == 2
    assert message in _err(capsys)
    assert not (suite_dir / "out").exists() and not (suite_dir.parent.parent / "x").exists()


def test_suite_coerces_numeric_strings(suite_dir):
    _suite(suite_dir, "fps: '1.0'\nmax_frames: '4'\nstrict: 'false'\n", ", limit: '1'")
    assert main(["eval-suite", "-c", "eval.yaml"]) == 0
    m = json.loads((suite_dir / "out" / "a" / "center.metrics.json").read_text())
    assert m["n"] == 1 and m["mIoU"] == pytest.approx(100 * 3 / 4)  # [3.5, 6.5] in [3, 7]
