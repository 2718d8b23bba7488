"""`scenetg demo` (what `make demo` runs) end to end, and the eval-suite config."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scenetg.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run_demo(cwd: Path, assets: Path) -> tuple[int, str]:
    """`scenetg demo --out demo` from `cwd` (outside the checkout, packaged configs); exit code
    and what it printed."""
    printed, here = io.StringIO(), Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(printed):
            code = main(["demo", "--out", "demo", "--assets", str(assets / "videos")])
    finally:
        os.chdir(here)
    return code, printed.getvalue()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, assets):
    """One demo run shared by the tests below (the whole demo takes about a minute)."""
    work = tmp_path_factory.mktemp("demo_run")
    code, printed = _run_demo(work, assets)
    return work / "demo", code, printed


def _toy_metrics(out: Path) -> dict[str, dict]:
    return {p.name.split(".")[0]: json.loads(p.read_text())
            for p in (out / "toy" / "eval" / "toy_heldout").glob("*.metrics.json")}


@pytest.mark.slow
def test_demo_runs_build_ground_eval_and_writes_the_report(demo_run):
    out, code, printed = demo_run
    assert code == 0
    videos = pq.read_table(out / "dataset" / "videos.parquet").to_pylist()
    assert len(videos) == 6 and all(v["status"] == "ok" for v in videos)
    assert {"real/charades/3MSZA", "synthetic/garden vfr ü"} <= {v["video_id"] for v in videos}
    report = (out / "eval" / "report.md").read_text()
    # GRPO ran a few steps on the demo's own dataset and its model was evaluated beside the others
    assert (out / "train" / "final" / "config.json").is_file()
    assert (out / "train" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "train" / "metrics.jsonl").read_text().splitlines()) >= 4
    # started from the toy SFT checkpoint, so the curves carry a signal (from the random tiny model
    # reward, loss and KL were 0 at every step)
    steps = [r for r in map(json.loads, (out / "train" / "metrics.jsonl").read_text().splitlines()) if "reward" in r]
    assert any(r["reward"] > 0 for r in steps) and any(r["reward_std"] > 0 for r in steps)
    assert any(r["loss"] != 0 for r in steps) and any(r["kl"] > 0 for r in steps)
    for method in ("model", "trained", "center", "clip"):
        assert f"| {method} |" in report
        metrics = json.loads(next((out / "eval").rglob(f"{method}.metrics.json")).read_text())
        assert metrics["n"] >= 1
    assert (out / "eval" / "iou_distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "load_dataset" in printed and "report.md" in printed


@pytest.mark.slow
def test_demo_toy_leg_trained_model_and_its_sft_start_beat_the_baselines_beyond_noise(demo_run):
    """GRPO from the shipped SFT checkpoint on unseen toy videos; on the held-out toy queries the
    trained model and the SFT start each beat center and clip on R1@0.5 by more than 3 standard
    errors of the difference (binomial, n held-out queries)."""
    from scenetg.demo_toy import TOY_HELDOUT

    out, code, printed = demo_run
    assert code == 0
    assert (out / "toy" / "train" / "final" / "config.json").is_file()
    logged = [json.loads(line) for line in (out / "toy" / "train" / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in logged) >= 10
    metrics = _toy_metrics(out)
    assert set(metrics) == {"trained", "sft_start", "center", "clip"}
    n = TOY_HELDOUT.videos * TOY_HELDOUT.per_video
    assert all(m["n"] == n for m in metrics.values())
    r1 = {k: m["R1@0.5"] / 100 for k, m in metrics.items()}
    for model in ("trained", "sft_start"):
        for baseline in ("center", "clip"):
            se = math.sqrt((r1[model] * (1 - r1[model]) + r1[baseline] * (1 - r1[baseline])) / n)
            assert r1[model] - r1[baseline] > 3 * se, (model, baseline, r1)
    assert metrics["trained"]["invalid"] <= 0.05 * n  # GRPO kept the answer format
    report = (out / "toy" / "eval" / "report.md").read_text()
    assert all(f"| toy_heldout | {m} |" in report for m in metrics)
    assert "| toy_heldout | trained |" in printed and "| toy_heldout | sft_start |" in printed


@pytest.mark.slow
def test_demo_rerun_reuses_every_finished_stage(demo_run, assets):
    out, code, _ = demo_run
    assert code == 0
    kept = [out / "train" / "final" / "model.safetensors", out / "toy" / "sft_start" / "model.safetensors",
            out / "toy" / "train" / "final" / "model.safetensors", out / "toy" / "train" / "metrics.jsonl",
            out / "toy" / "data" / "demo_heldout" / "demo_heldout.jsonl",
            *sorted((out / "toy" / "data").rglob("*.mp4"))[:5],
            *sorted((out / "eval").rglob("*.jsonl")), *sorted((out / "toy" / "eval").rglob("*.jsonl"))]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in kept}
    metrics = _toy_metrics(out)
    code, printed = _run_demo(out.parent, assets)
    assert code == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in kept} == before
    assert _toy_metrics(out) == metrics
    assert "| toy_heldout | trained |" in printed


def test_demo_configs_in_the_checkout_are_the_packaged_ones():
    from scenetg.demo import DEMO_BUILD_CONFIG, DEMO_EVAL_CONFIG, DEMO_TRAIN_CONFIG
    from scenetg.demo_toy import DEMO_TOY_EVAL_CONFIG, DEMO_TOY_TRAIN_CONFIG

    assert (ROOT / "pipelines/demo/build.yaml").read_text() == DEMO_BUILD_CONFIG.read_text()
    assert (ROOT / "pipelines/demo/eval.yaml").read_text() == DEMO_EVAL_CONFIG.read_text()
    assert (ROOT / "pipelines/demo/train.yaml").read_text() == DEMO_TRAIN_CONFIG.read_text()
    assert (ROOT / "pipelines/demo/toy_train.yaml").read_text() == DEMO_TOY_TRAIN_CONFIG.read_text()
    assert (ROOT / "pipelines/demo/toy_eval.yaml").read_text() == DEMO_TOY_EVAL_CONFIG.read_text()


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


def test_demo_runs_torch_on_one_thread_and_restores_it(tmp_path, monkeypatch):
    """On a busy CPU threaded tiny-model ops stalled the toy GRPO 12× (docs/CHOICES.md)."""
    import torch

    from scenetg.errors import ScenetgError

    seen = []

    def record(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise ScenetgError("stop here")

    monkeypatch.setattr("scenetg.commands.train_and_demo.run_demo", record)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["demo", "--out", str(tmp_path / "demo")]) != 0
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("flag, text, message", [
    ("--toy-train-config", None, "config file not found"),
    ("--eval-config", "methdos: [model]\n", "unknown config key methdos"),
    ("--train-config", "kl: {beta: lots}\n", "kl.beta: expected a number"),
    ("--config", "captions: {modle: x}\n", "unknown config key captions.modle"),
    ("--toy-eval-config", "benchmarks: [{name: b}]\n", "benchmarks[0]: missing key(s)"),
])
def test_a_bad_demo_config_stops_it_before_any_work(tmp_path, capsys, flag, text, message):
    """Every config the user names is read first: the error comes before the build, not after
    minutes of build and training."""
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), flag, str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()
