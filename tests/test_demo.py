"""`scenetg demo` (what `make demo` runs) end to end, and the eval-suite config."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scenetg.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_build_ground_eval_and_writes_the_report(tmp_path, assets, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--assets", str(assets / "videos"),
                 "--config", str(ROOT / "pipelines/demo/build.yaml"),
                 "--eval-config", str(ROOT / "pipelines/demo/eval.yaml")])
    assert code == 0
    videos = pq.read_table(out / "dataset" / "videos.parquet").to_pylist()
    assert len(videos) == 6 and all(v["status"] == "ok" for v in videos)
    assert {"real/charades/3MSZA", "synthetic/garden vfr ü"} <= {v["video_id"] for v in videos}
    report = (out / "eval" / "report.md").read_text()
    for method in ("model", "center", "clip"):
        assert f"| {method} |" in report
        metrics = json.loads(next((out / "eval").rglob(f"{method}.metrics.json")).read_text())
        assert metrics["n"] >= 1
    assert (out / "eval" / "iou_distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "load_dataset" in printed and "report.md" in printed


def test_eval_suite_config_errors_are_one_line(tmp_path, capsys):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("methods: [model, magic]\nbenchmarks: []\n")
    assert main(["eval-suite", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "magic" in err and len(err.strip().splitlines()) == 1
