"""GRPO training costs on this CPU, with the tiny Qwen2.5-VL (ratios measured side by side):

- the token-aware KL loss (forward + backward of `VideoGRPOTrainer._compute_loss`) against TRL's
  own `GRPOTrainer._compute_loss` on the same batch, video injected the same way;
- the share of a training step spent generating rollouts;
- a step with the frame cache warm against decoding every step (no cache);
- a step's work with one vision encoding per distinct video (the default) against the stock
  encoding of every rollout's video, on the same batch, alternating in one run.

Real-size numbers (a lent GPU) are in benchmarks/gpu_results/ (`gpu_grpo_step.py`).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _setup(root: Path, duration_s: float, max_frames: int):
    from scenetg.models.tiny import make_tiny_qwen
    from scenetg.video.synthetic import write_synthetic_video

    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    scenes = [duration_s / 4] * 4
    lines = []
    for i in range(2):
        write_synthetic_video(videos / f"v{i}.mp4", scenes, fps=25, size=(320, 180), seed=i)
        for j in range(2):
            lines.append(json.dumps({"qid": f"q{i}{j}", "vid": f"v{i}", "duration": duration_s,
                                     "query": f"scene {j}", "relevant_windows": [[j * scenes[0], (j + 1) * scenes[0]]]}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return make_tiny_qwen(root / "tiny"), max_frames


def _trainer(root: Path, model_dir: Path, max_frames: int, steps: int, cache: bool, out: str):
    from scenetg.rl.config import train_config_from_dict
    from scenetg.rl.train import build_trainer

    cfg = train_config_from_dict({
        "model": str(model_dir), "output_dir": str(root / out), "device": "cpu", "dtype": "float32",
        "data": {"dataset": str(root / "train.jsonl"), "video_root": str(root / "videos")},
        "sampling": {"fps": 2.0, "max_frames": max_frames, "max_side": 112},
        "lora": {"enabled": False}, "kl": {"beta": 0.04, "beta_timestamp": 0.0},
        "grpo": {"num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 16,
                 "max_steps": steps, "save_strategy": "no", "report_to": "none", "seed": 0,
                 "logging_steps": 1000},
    })
    trainer, _, _ = build_trainer(cfg)
    if not cache:
        trainer.frame_cache = None
    return trainer


def _timed(fn, bucket: list[float]):
    def wrapper(*a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        bucket.append(time.perf_counter() - t)
        return out
    return wrapper


def _loss_ratio(trainer, reps: int) -> dict:
    from trl import GRPOTrainer

    from scenetg.rl.trainer import VideoBatch

    rows = list(trainer.train_dataset)
    batch = trainer._generate_and_score_completions([r for r in rows for _ in range(4)][:8])
    g = torch.Generator().manual_seed(0)
    batch["advantages"] = torch.randn(8, generator=g)
    width = batch["completion_ids"].shape[1]
    batch["ref_per_token_logps"] = -3.0 + 0.5 * torch.randn(8, width, generator=g)
    batch["timestamp_mask"] = torch.rand(8, width, generator=g) < 0.2  # some timestamp tokens
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()

    def ours():
        return trainer._compute_loss(trainer.model, batch)

    def stock():
        trainer._video = VideoBatch(list(batch["pixel_values_videos"]), batch["video_grid_thw"],
                                    batch["second_per_grid_ts"])
        try:
            return GRPOTrainer._compute_loss(trainer, trainer.model, batch)
        finally:
            trainer._video = None

    times: dict[str, list[float]] = {"ours": [], "stock": []}
    order = [("ours", ours), ("stock", stock)]
    for rep in range(reps + 2):
        for name, fn in order if rep % 2 == 0 else order[::-1]:
            trainer.model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            fn().backward()
            if rep >= 2:  # two warm-up rounds
                times[name].append(time.perf_counter() - t)
    ours_s, stock_s = statistics.median(times["ours"]), statistics.median(times["stock"])
    return {"ours_ms": 1000 * ours_s, "stock_ms": 1000 * stock_s, "ratio": ours_s / stock_s}


def _steps(trainer) -> dict:
    step, gen, videos = [], [], []
    trainer.training_step = _timed(trainer.training_step, step)
    trainer._generate_single_turn = _timed(trainer._generate_single_turn, gen)
    trainer._sample_videos = _timed(trainer._sample_videos, videos)
    trainer.train()
    warm = slice(1, None)  # the first step fills the frame cache and warms everything up
    return {"step_s": statistics.median(step[warm]), "generate_s": statistics.median(gen[warm]),
            "frames_s": statistics.median(videos[warm])}


def _sharing(trainer, reps: int) -> dict:
    """One step's work on one batch (2 prompts of 2 videos × 4 rollouts): rollouts, rewards and
    the reference pass (`_generate_and_score_completions`), then the policy loss forward +
    backward, with one vision encoding per distinct video and with the stock encoding,
    alternating (on, off, off, on, ...) after a warm-up round, each from the same seed (same
    rollouts when the logits agree, as on the tiny model). Wall time, vision tower time and videos encoded, by mode."""
    from scenetg.models.shared_video_encoding import share_video_encoding

    rows = list(trainer.train_dataset)
    videos = {}
    for r in rows:
        videos.setdefault(r["video_path"], r)
    batch_rows = [r for r in list(videos.values())[:2] for _ in range(4)]
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    now = {"vision": 0.0, "videos": 0, "t": 0.0}

    def before(module, args, kwargs):
        now["t"] = time.perf_counter()
        now["videos"] += int(kwargs["grid_thw"].shape[0])

    def after(module, args, kwargs, output):
        now["vision"] += time.perf_counter() - now["t"]

    for model in (trainer.model, trainer.ref_model):
        model.model.visual.register_forward_pre_hook(before, with_kwargs=True)
        model.model.visual.register_forward_hook(after, with_kwargs=True)
    took: dict[bool, dict[str, list]] = {m: {"step": [], "vision": [], "videos": []} for m in (True, False)}
    for rep in range(reps + 1):
        for share in (True, False) if rep % 2 == 0 else (False, True):
            for model in (trainer.model, trainer.ref_model):
                share_video_encoding(model, enabled=share)
            trainer.model.zero_grad(set_to_none=True)
            torch.manual_seed(rep)
            now.update(vision=0.0, videos=0)
            t = time.perf_counter()
            batch = trainer._generate_and_score_completions(batch_rows)
            trainer._compute_loss(trainer.model, batch).backward()
            if rep >= 1:  # a warm-up round first
                took[share]["step"].append(time.perf_counter() - t)
                took[share]["vision"].append(now["vision"])
                took[share]["videos"].append(now["videos"])
    share_video_encoding(trainer.model)
    return {m: {k: statistics.median(v) for k, v in took[m].items()} for m in (True, False)}


def run(quick: bool = False) -> dict:
    torch.set_num_threads(1)  # one thread: timings comparable on a shared 2-core machine
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="bench_train_"))
    duration, frames = (20.0, 8) if quick else (60.0, 16)
    model_dir, max_frames = _setup(root, duration, frames)
    loss = _loss_ratio(_trainer(root, model_dir, max_frames, 1, True, "run_loss"), 5 if quick else 20)
    steps = 4 if quick else 8
    cached = _steps(_trainer(root, model_dir, max_frames, steps, True, "run_cached"))
    decoded = _steps(_trainer(root, model_dir, max_frames, steps, False, "run_decoded"))
    sharing = _sharing(_trainer(root, model_dir, max_frames, 1, True, "run_sharing"), 4 if quick else 12)
    shared, stock = sharing[True], sharing[False]
    md = [
        f"Tiny Qwen2.5-VL on CPU (1 torch thread); 2 videos of {duration:.0f} s (320×180, 25 fps), {max_frames} frames "
        "each at 112 px, 2 prompts × 4 generations per step, 16 new tokens. Command: "
        "`.venv/bin/python benchmarks/run_all.py --only bench_train`. The loss ratio moves by a "
        "few percent between runs (0.92–1.05× seen under varying load): read it as equal cost. The sharing rows "
        "time one step's work (rollouts, rewards, reference pass, policy loss forward + backward; "
        "no optimizer step) on one batch of 2 prompts on 2 videos × 4 rollouts, with and without "
        "one vision encoding per distinct video, alternating in one run from the same seeds. "
        f"The tiny model's vision tower is {stock['vision'] / stock['step']:.0%} of the stock "
        "step's work, which bounds the gain here; the real-size share is for "
        "`benchmarks/gpu_grpo_step.py --no-share-video` against the default (GPU section). "
        f"Load average (1 min) before / after the run: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores (other jobs inflate the absolute times, not the side-by-side ratios).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| token-aware KL loss, forward + backward (median) | {loss['ours_ms']:.1f} ms |",
        f"| TRL's own GRPO loss, same batch (median) | {loss['stock_ms']:.1f} ms |",
        f"| **token-aware / stock** | **{loss['ratio']:.3f}×** (target ≤ 1.05×) |",
        f"| training step, frame cache warm (median) | {cached['step_s'] * 1000:.0f} ms |",
        f"| share of the step generating rollouts | {cached['generate_s'] / cached['step_s']:.0%} |",
        f"| frames for the step: cache hit | {cached['frames_s'] * 1000:.1f} ms |",
        f"| training step, decoding the videos every step | {decoded['step_s'] * 1000:.0f} ms |",
        f"| frames for the step: decoded | {decoded['frames_s'] * 1000:.1f} ms |",
        f"| **step with warm cache / step decoding** | **{cached['step_s'] / decoded['step_s']:.2f}×** |",
        f"| videos through the vision tower (generation, reference and policy passes): shared / stock | {shared['videos']:.0f} / {stock['videos']:.0f} |",
        f"| vision tower time (median): shared / stock | {shared['vision'] * 1000:.0f} / {stock['vision'] * 1000:.0f} ms |",
        f"| step's work, one vision encoding per distinct video (median) | {shared['step'] * 1000:.0f} ms |",
        f"| step's work, every rollout encodes its video (stock, same batch) | {stock['step'] * 1000:.0f} ms |",
        f"| **step's work with shared / stock video encoding** | **{shared['step'] / stock['step']:.2f}×** |",
    ]
    return {
        "loss_ratio": round(loss["ratio"], 3),
        "generate_share": round(cached["generate_s"] / cached["step_s"], 3),
        "cache_step_ratio": round(cached["step_s"] / decoded["step_s"], 3),
        "frames_cached_ms": round(cached["frames_s"] * 1000, 1),
        "frames_decoded_ms": round(decoded["frames_s"] * 1000, 1),
        "videos_encoded_shared_stock": [shared["videos"], stock["videos"]],
        "vision_ms_shared_stock": [round(shared["vision"] * 1000, 1), round(stock["vision"] * 1000, 1)],
        "sharing_step_ratio": round(shared["step"] / stock["step"], 3),
        "markdown": "\n".join(md),
    }


if __name__ == "__main__":
    result = run(quick=False)
    print(result.pop("markdown"))
    print(json.dumps(result, indent=2))
