"""`scenetg train` end to end on the tiny model, resume, and its one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from scenetg.cli import main
from tests.train_fixtures import make_cfg

pytestmark = pytest.mark.slow


def _write_config(cfg, path):
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def _metric_steps(out):
    return [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "reward" in r]


def test_two_steps_then_resume_then_ground(grounding_set, tiny_models, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = make_cfg(grounding_set, tiny_models, out, max_steps=2, save_steps=2)
    config = _write_config(cfg, tmp_path / "train.yaml")
    assert main(["train", "-c", str(config)]) == 0
    stdout = capsys.readouterr().out
    assert "trained 2 steps on 4 queries" in stdout
    assert "'reward'" not in stdout  # per-step dicts go to metrics.jsonl, not the terminal
    assert (out / "checkpoint-2").is_dir()
    assert _metric_steps(out) == [1, 2]
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    for key in ("reward", "rewards/iou_reward/mean", "rewards/cendist_reward/mean", "kl_other"):
        assert key in row
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["kl"] == {"beta": 0.04, "beta_timestamp": 0.0}

    # resume continues the step count from checkpoint-2, on the progress bar too
    from scenetg.progress import Reporter
    from scenetg.rl.config import load_train_config
    from scenetg.rl.train import train

    class Steps(Reporter):
        def __init__(self):
            self.events = []

        def start(self, task, total):
            self.events.append(("start", task, total))

        def advance(self, task, n=1):
            self.events.append(("advance", task, n))

    steps = Steps()
    train(load_train_config(config, {"grpo.max_steps": 3}), resume_from_checkpoint="last", reporter=steps)
    assert [e for e in steps.events if e[1] == "GRPO steps"] == [
        ("start", "GRPO steps", 3), ("advance", "GRPO steps", 2), ("advance", "GRPO steps", 1)]
    assert _metric_steps(out) == [1, 2, 3]
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3

    # the trained folder is a model `scenetg ground` loads
    preds = tmp_path / "preds.jsonl"
    code = main(["ground", "--model", str(out / "final"), "--annotations", str(grounding_set / "train.jsonl"),
                 "--videos", str(grounding_set / "videos"), "--out", str(preds), "--max-frames", "4",
                 "--max-new-tokens", "8", "--device", "cpu"])
    assert code == 0
    assert len(preds.read_text().splitlines()) == 4


def test_errors_before_any_model_loads(grounding_set, tiny_models, tmp_path, capsys):
    def run(cfg) -> str:
        config = _write_config(cfg, tmp_path / "bad.yaml")
        assert main(["train", "-c", str(config)]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: ")
        return err

    # missing video files: listed, with a count
    videos = tmp_path / "videos_missing_b"
    videos.mkdir()
    shutil.copy(grounding_set / "videos" / "a.mp4", videos / "a.mp4")
    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "r1")
    cfg.data.video_root = str(videos)
    assert "2 training queries have no video file" in run(cfg) and "b" in run(cfg)

    # annotations without the needed fields
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"qid": "x", "vid": "a", "duration": 6.0, "query": "q"}) + "\n")
    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "r2")
    cfg.data.dataset = str(bad)
    assert "bad.jsonl" in run(cfg)

    # a relative dataset path that does not exist is a path, never a Hub lookup
    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "r3")
    cfg.data.dataset = "out/dataset"
    assert "no such file or folder" in run(cfg) and "make build" in run(cfg)

    # beta_ts > beta
    config = tmp_path / "kl.yaml"
    data = make_cfg(grounding_set, tiny_models, tmp_path / "r4").to_dict()
    data["kl"] = {"beta": 0.01, "beta_timestamp": 0.04}
    config.write_text(yaml.safe_dump(data))
    assert main(["train", "-c", str(config)]) == 2
    assert "kl.beta_timestamp" in capsys.readouterr().err

    # a typed value that is not one
    data["kl"] = {"beta": "lots"}
    config.write_text(yaml.safe_dump(data))
    assert main(["train", "-c", str(config)]) == 2
    assert "kl.beta: expected a number" in capsys.readouterr().err

    # a model without a video processor
    text_only = tmp_path / "text_only"
    shutil.copytree(tiny_models["qwen"], text_only)
    for f in text_only.glob("*"):
        if "video" in f.name or "preprocessor" in f.name or "processor_config" in f.name:
            f.unlink()
    cfg = make_cfg(grounding_set, tiny_models, tmp_path / "r5")
    cfg.model = str(text_only)
    err = run(cfg)
    assert "video processor" in err or "cannot be loaded" in err
