"""Supervised warm start for the toy task: `scenetg train --algo sft` (`scenetg.rl.sft`) on the tiny
Qwen2.5-VL, as a user would run it: the toy split's Moment-DETR JSONL as the training data, the
same `SAMPLING` as GRPO and eval, full fine-tuning (vision tower too), whole-second targets
(``sft.answer_decimals: 0``: `scenetg.toy_task.answer_text`). The recipe of the earlier plain loop
(batch 16, AdamW lr 2.5e-3, weight decay 0, warm-up steps/50 then cosine to 0, grad-norm clip 1.0)
is passed to TRL's `SFTConfig`; the data order is the Trainer's seeded sampler.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scenetg.grounding.samples import FrameSampling, SampledVideo, sample_video

SAMPLING = FrameSampling(fps=1.0, max_frames=16, max_side=64)
"""16 frames at i·D/16 (2 per cell), frames at their native 64 px: used by SFT, GRPO and eval."""


def load_videos(rows: Sequence[dict], videos_dir: Path, cache: Any) -> dict[str, SampledVideo]:
    """Each row's video sampled once (uint8 frames through `cache`), keyed by video id."""
    out: dict[str, SampledVideo] = {}
    for r in rows:
        if r["vid"] not in out:
            out[r["vid"]] = sample_video(videos_dir / f"{r['vid']}.mp4", r["duration"], SAMPLING, cache)
    return out


def sft_config(model_dir: Path, run_dir: Path, split: Any, steps: int, batch_size: int, lr: float,
               seed: int, log_every: int, frame_cache: Path | None) -> Any:
    """The `scenetg train` config of one SFT cycle on `split` (a `toy_task.ToySplit`)."""
    from scenetg.rl.config import train_config_from_dict

    return train_config_from_dict({
        "algo": "sft", "model": str(model_dir), "output_dir": str(run_dir), "device": "cpu",
        "dtype": "float32", "freeze_vision": False, "lora": {"enabled": False},
        "frame_cache": str(frame_cache) if frame_cache else None,
        "data": {"dataset": str(split.jsonl), "video_root": str(split.videos), "split": None},
        "sampling": {"fps": SAMPLING.fps, "max_frames": SAMPLING.max_frames, "max_side": SAMPLING.max_side},
        "sft": {"answer_decimals": 0, "per_device_train_batch_size": batch_size, "learning_rate": lr,
                "weight_decay": 0.0, "lr_scheduler_type": "cosine", "warmup_steps": max(1, steps // 50),
                "max_grad_norm": 1.0, "max_steps": steps, "logging_steps": min(log_every, steps),
                "save_strategy": "no", "report_to": "none", "seed": seed, "data_seed": seed},
    })


def train_sft(model_dir: Path, out_dir: Path, split: Any, steps: int, batch_size: int = 16,
              lr: float = 2.5e-3, seed: int = 0, log_every: int = 50, prior: dict | None = None,
              frame_cache: Path | None = None) -> Path:
    """Fine-tune the model in `model_dir` on `split` for `steps` steps with `scenetg train --algo
    sft` and put its ``final/`` at `out_dir` with ``sft_log.json``; an existing `out_dir` is reused.
    The run folder (config.yaml, metrics.jsonl, curves.png) stays beside it as ``OUT.run``.
    `prior`: the sft_log of the checkpoint in `model_dir` when this is a further cycle; its steps
    and seconds are added to the saved log (``steps`` is then the total). A killed cycle restarts
    (full fine-tuning resume does not restore weights before issue 15's fix)."""
    from scenetg.rl.curves import read_metrics
    from scenetg.rl.train import train

    if (out_dir / "sft_log.json").is_file():
        return out_dir
    run_dir = out_dir.with_name(out_dir.name + ".run")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = sft_config(model_dir, run_dir, split, steps, batch_size, lr, seed, log_every, frame_cache)
    summary = train(cfg)
    log = [{"step": r["step"], "loss": r["loss"]} for r in read_metrics(summary.metrics_path) if "loss" in r]
    record = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
              "seconds": round(summary.seconds, 1), "trainer": "scenetg train --algo sft", "log": log}
    if prior is not None:
        before = prior["steps"]
        record = {**record, "steps": before + steps, "cycles": [*prior.get("cycles", [before]), steps],
                  "seconds": round(record["seconds"] + prior.get("seconds", 0.0), 1),
                  "log": [*prior["log"], *({**e, "step": e["step"] + before} for e in log)]}
    final = summary.final_dir
    (final / "sft_log.json").write_text(json.dumps(record, indent=1))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    final.rename(out_dir)
    return out_dir
