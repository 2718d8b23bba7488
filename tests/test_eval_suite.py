"""`scenetg eval-suite`: the config's `protocol` (and a benchmark's own) decides how R1/mIoU are
scored, and the report names it."""

from __future__ import annotations

import json

import pytest

from scenetg.cli import main


@pytest.fixture
def suite_dir(tmp_path, monkeypatch):
    """Two queries on a 10 s video, scored with the centre prior ([3.5, 6.5] at fraction 0.3):
    GT [5, 14] runs past the video's end (IoU 1.5/6.5 with the GT clipped to the video, 1.5/10.5
    as given); GT [3.5, 5] has IoU exactly 0.5 (counted by >=, not by >)."""
    monkeypatch.chdir(tmp_path)
    rows = [{"qid": 1, "vid": "v", "duration": 10.0, "query": "a", "relevant_windows": [[5, 14]]},
            {"qid": 2, "vid": "v", "duration": 10.0, "query": "b", "relevant_windows": [[3.5, 5]]}]
    (tmp_path / "anno.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "videos").mkdir()
    return tmp_path


def write_config(folder, top: str, bench_b: str = "") -> None:
    (folder / "eval.yaml").write_text(
        f"out: out\nmethods: [center]\n{top}"
        "benchmarks:\n"
        "  - {name: a, annotations: anno.jsonl, videos: videos}\n"
        f"  - {{name: b, annotations: anno.jsonl, videos: videos{bench_b}}}\n")


def metrics(folder, bench: str) -> dict:
    return json.loads((folder / "out" / bench / "center.metrics.json").read_text())


def test_suite_scores_with_the_configured_protocol_and_names_it(suite_dir, capsys):
    write_config(suite_dir, "protocol: moment_detr\n", ", protocol: ego4d")
    assert main(["eval-suite", "-c", "eval.yaml"]) == 0
    a, b = metrics(suite_dir, "a"), metrics(suite_dir, "b")
    # moment_detr: GT as given, IoU >= m
    assert a["protocol"] == "moment_detr"
    assert a["mIoU"] == pytest.approx(100 * (1.5 / 10.5 + 0.5) / 2)
    assert a["R1@0.5"] == pytest.approx(50.0)
    # the benchmark's own protocol (an alias of ego4d_nlq): GT as given, IoU > m
    assert b["protocol"] == "ego4d_nlq"
    assert b["mIoU"] == pytest.approx(100 * (1.5 / 10.5 + 0.5) / 2)
    assert b["R1@0.5"] == pytest.approx(0.0)
    report = (suite_dir / "out" / "report.md").read_text()
    assert "| a | center | moment_detr |" in report and "| b | center | ego4d_nlq |" in report
    assert "Protocol: moment_detr (R1 counts IoU >= m" in report


def test_suite_default_protocol_clips_gt_to_the_video(suite_dir):
    write_config(suite_dir, "strict: true\n")
    assert main(["eval-suite", "-c", "eval.yaml"]) == 0
    a = metrics(suite_dir, "a")
    assert a["protocol"] == "default+strict"
    assert a["mIoU"] == pytest.approx(100 * (1.5 / 6.5 + 0.5) / 2)
    assert a["R1@0.5"] == pytest.approx(0.0)


@pytest.mark.parametrize("top,bench_b,key", [
    ("protocol: tacos\n", "", "protocol: unknown protocol 'tacos'"),
    ("protocol: [moment_detr]\n", "", "protocol: expected a protocol name"),
    ("", ", protocol: nope", "benchmarks.b.protocol: unknown protocol 'nope'"),
])
def test_unknown_protocol_is_a_one_line_error_naming_the_key(suite_dir, capsys, top, bench_b, key):
    write_config(suite_dir, top, bench_b)
    assert main(["eval-suite", "-c", "eval.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and "moment_detr, univtg" in err[0]
    assert not (suite_dir / "out").exists()


def test_suite_report_and_plot_are_reproducible(suite_dir):
    """A re-run (predictions resumed) writes the same report.md and IoU histogram bytes."""
    write_config(suite_dir, "protocol: 2d_tan\n")
    assert main(["eval-suite", "-c", "eval.yaml"]) == 0
    files = [suite_dir / "out" / "report.md", suite_dir / "out" / "iou_distribution.png"]
    first = [f.read_bytes() for f in files]
    assert first[1][:8] == b"\x89PNG\r\n\x1a\n" and b"matplotlib" not in first[1]
    assert main(["eval-suite", "-c", "eval.yaml"]) == 0
    assert [f.read_bytes() for f in files] == first
