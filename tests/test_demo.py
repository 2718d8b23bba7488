"""`scenetg demo` (what `make demo` runs) end to end, and the eval-suite config."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scenetg.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_build_ground_eval_and_writes_the_report(tmp_path, assets, capsys, monkeypatch):
    # From a folder outside the checkout, with the packaged demo configs (no --config).
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "--out", "demo", "--assets", str(assets / "videos")])
    out = tmp_path / "demo"
    assert code == 0
    videos = pq.read_table(out / "dataset" / "videos.parquet").to_pylist()
    assert len(videos) == 6 and all(v["status"] == "ok" for v in videos)
    assert {"real/charades/3MSZA", "synthetic/garden vfr ü"} <= {v["video_id"] for v in videos}
    report = (out / "eval" / "report.md").read_text()
    # GRPO ran a few steps on the demo's own dataset and its model was evaluated beside the others
    assert (out / "train" / "final" / "config.json").is_file()
    assert (out / "train" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "train" / "metrics.jsonl").read_text().splitlines()) >= 4
    for method in ("model", "trained", "center", "clip"):
        assert f"| {method} |" in report
        metrics = json.loads(next((out / "eval").rglob(f"{method}.metrics.json")).read_text())
        assert metrics["n"] >= 1
    assert (out / "eval" / "iou_distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "load_dataset" in printed and "report.md" in printed


def test_demo_configs_in_the_checkout_are_the_packaged_ones():
    from scenetg.demo import DEMO_BUILD_CONFIG, DEMO_EVAL_CONFIG

    assert (ROOT / "pipelines/demo/build.yaml").read_text() == DEMO_BUILD_CONFIG.read_text()
    assert (ROOT / "pipelines/demo/eval.yaml").read_text() == DEMO_EVAL_CONFIG.read_text()


def test_demo_finds_the_shared_assets_beside_the_checkout_only(tmp_path, monkeypatch):
    from scenetg import demo

    shared = ROOT.parent / "shared" / "assets" / "videos"
    assert demo.default_assets_dir() == (shared if shared.is_dir() else None)
    # An installed package (no pyproject.toml above it) never guesses a folder.
    site = tmp_path / "site-packages" / "scenetg"
    site.mkdir(parents=True)
    (tmp_path / "shared" / "assets" / "videos").mkdir(parents=True)
    monkeypatch.setattr(demo, "__file__", str(site / "demo.py"))
    assert demo.default_assets_dir() is None
    (tmp_path / "site-packages" / "pyproject.toml").write_text("")
    (tmp_path / "site-packages").rename(tmp_path / "checkout")
    monkeypatch.setattr(demo, "__file__", str(tmp_path / "checkout" / "scenetg" / "demo.py"))
    assert demo.default_assets_dir() == tmp_path / "shared" / "assets" / "videos"


def test_eval_suite_config_errors_are_one_line(tmp_path, capsys):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("methods: [model, magic]\nbenchmarks: []\n")
    assert main(["eval-suite", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "magic" in err and len(err.strip().splitlines()) == 1
