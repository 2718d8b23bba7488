"""`make eval` on a fresh clone: paths are paths, Hub datasets are `hub:ORG/NAME`, and every
missing piece is named (one line each) before any heavy work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenetg.cli import main
from scenetg.errors import ScenetgError
from scenetg.grounding.loaders import detect_format, load_annotations
from scenetg.video.synthetic import write_synthetic_video


@pytest.fixture
def no_hub(monkeypatch):
    """Fail loudly if anything tries the Hub."""
    import datasets

    def refuse(*args, **kwargs):
        raise AssertionError(f"Hub lookup attempted: {args}")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


def test_a_relative_path_is_never_a_hub_id(tmp_path, monkeypatch, no_hub):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ScenetgError, match=r"^out/dataset: annotation file or folder not found .*`make build` "
                                           r"first.*a Hub dataset is written hub:out/dataset$"):
        load_annotations("out/dataset", split="test")
    with pytest.raises(ScenetgError, match=r"^out/dataset: no such folder or Parquet file .*`make build` first"):
        load_annotations("out/dataset", format="scenetg")
    with pytest.raises(ScenetgError, match="annotation file or folder not found"):
        detect_format("someone/scenetg-data")


def test_hub_datasets_are_named_explicitly(monkeypatch):
    import datasets

    asked = []
    table = {"sample_id": ["s1"], "video_id": ["v"], "duration_s": [30.0], "query": ["a red car"],
             "start_s": [1.0], "end_s": [5.0]}
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda repo, split=None: asked.append((repo, split)) or datasets.Dataset.from_dict(table))
    assert detect_format("hub:org/name") == "scenetg"
    records, _ = load_annotations("hub:org/name", split="test")
    assert asked == [("org/name", "test")] and [r.qid for r in records] == ["s1"]


def test_eval_suite_names_every_missing_piece_before_loading_anything(tmp_path, monkeypatch, capsys, no_hub):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "anno.jsonl").write_text(json.dumps(
        {"qid": 1, "vid": "a", "duration": 10.0, "query": "q", "relevant_windows": [[1, 2]]}) + "\n")
    (tmp_path / "clips").mkdir()
    (tmp_path / "eval.yaml").write_text(
        "out: out/eval\nmethods: [model, center]\nmodel: ./models/no-such-qwen\n"
        "benchmarks:\n"
        "  - {name: scenetg_test, annotations: out/dataset, split: test, videos: data/videos}\n"
        "  - {name: charades, annotations: anno.jsonl, durations: meta.csv, videos: clips}\n"
        "  - {name: other, annotations: missing.json, videos: clips}\n"
    )
    assert main(["eval-suite", "-c", "eval.yaml"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "error: benchmarks.scenetg_test.annotations: out/dataset: no such folder; run `make build` first "
        "(a Hub dataset is written hub:ORG/NAME)",
        "error: benchmarks.scenetg_test.videos: data/videos: no such folder",
        "error: benchmarks.charades.durations: meta.csv: no such file",
        "error: benchmarks.other.annotations: missing.json: no such file",
        "error: model: model './models/no-such-qwen': no such model folder; fix `model:` (or --model)",
    ]
    assert not (tmp_path / "out").exists()


def test_eval_videos_probe_stays_inside_the_folder(tmp_path):
    """A video_id of ../x must not probe a file outside --videos (its duration would be used)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_synthetic_video(tmp_path / "outside.mp4", [2.0], 10.0, size=(32, 32))
    write_synthetic_video(videos / "inside.mp4", [3.0], 10.0, size=(32, 32))
    ann = tmp_path / "anno.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in [
        {"qid": 1, "vid": "../outside", "query": "q", "relevant_windows": [[0.5, 1.0]]},
        {"qid": 2, "vid": "inside", "query": "q", "relevant_windows": [[0.5, 1.0]]},
    ]))
    records, report = load_annotations(ann, videos_dir=videos)
    by_qid = {r.qid: r for r in records}
    assert by_qid["2"].duration_s == pytest.approx(3.0, abs=0.15)
    assert "1" not in by_qid or by_qid["1"].duration_s is None
    assert any("leaves the videos folder" in e for e in report.examples), report.summary()
    assert Path(tmp_path / "outside.mp4").is_file()
