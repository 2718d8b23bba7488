"""Captions over many short clips: batches within one video (the old local loop, still the Ray
worker's path) vs batches across videos, with and without the prefetch thread.

A Charades-like corpus scaled to the CPU: short 320x180 25 fps clips of 3 scenes each, the demo
build config (4 frames per scene at 112 px, 24 new tokens), the tiny Qwen2.5-VL, one torch
thread. Shots run first (not timed); each arm then captions a copy of that folder from scratch.
The captions of every arm are checked equal.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _setup(root: Path, n_clips: int):
    from scenetg.config import load_build_config
    from scenetg.models.tiny import make_tiny_models
    from scenetg.video.synthetic import write_synthetic_video

    models = make_tiny_models(root / "models")
    videos = root / "videos"
    videos.mkdir()
    for i in range(n_clips):
        durations = [2.0 + (i % 3) * 0.5, 3.0, 2.5]
        write_synthetic_video(videos / f"clip{i:03d}.mp4", durations, 25.0, size=(320, 180), seed=i)
    cfg = load_build_config(ROOT / "pipelines" / "demo" / "build.yaml", {
        "captions.model": str(models["qwen"]), "filter.clip_model": str(models["clip"]),
    })
    return videos, cfg


def _arm(shots_dir: Path, out: Path, cfg, captioner, mode: str) -> dict:
    from bench_common import run_build_stage

    from scenetg.curate.run.pipeline import Build

    shutil.copytree(shots_dir, out)
    b = Build.open(out, cfg)
    b.models._captioner = captioner
    calls: list[int] = []
    real = captioner.caption_scenes

    def counting(scenes):
        calls.append(len(scenes))
        return real(scenes)

    captioner.caption_scenes = counting
    jobs = b.jobs()
    t0 = time.perf_counter()
    try:
        run_build_stage(b, jobs, "captions", per_video=mode == "per_video", prefetch=mode != "no_prefetch")
    finally:
        captioner.caption_scenes = real
    wall = time.perf_counter() - t0
    captions = [b.stored_results(j)[1]["captions"] for j in jobs]
    n = sum(calls)
    return {"wall_s": wall, "scenes": n, "calls": len(calls), "captions": captions}


def run(quick: bool = False) -> dict:
    from scenetg.curate.run.pipeline import run_stage
    from scenetg.curate.stages.captions import TransformersCaptioner

    torch.set_num_threads(1)  # comparable on a shared 2-core machine; decode gets the other core
    root = Path(tempfile.mkdtemp(prefix="bench_captions_"))
    n_clips = 8 if quick else 24
    videos, cfg = _setup(root, n_clips)
    run_stage(root / "shots", "shots", cfg, videos_dir=videos, resume=False)
    captioner = TransformersCaptioner(cfg.captions)
    # Warm the model's first-call setup before timing.
    _arm(root / "shots", root / "warm", cfg, captioner, "across")
    arms = {}
    for mode in ("per_video", "no_prefetch", "across"):
        arms[mode] = _arm(root / "shots", root / mode, cfg, captioner, mode)
    same = all(a["captions"] == arms["per_video"]["captions"] for a in arms.values())
    n = arms["across"]["scenes"]
    rate = {m: a["scenes"] / a["wall_s"] for m, a in arms.items()}
    label = {
        "per_video": "batches within one video (old local loop; Ray worker path)",
        "no_prefetch": "batches across videos, prefetch off",
        "across": "batches across videos, prefetch on (`auto` = 4 on CPU)",
    }
    md = [
        f"{n_clips} clips of 3 scenes (320×180, 25 fps, 7.5–8.5 s), {n} scenes; demo config "
        "(4 frames/scene at 112 px, 24 new tokens), tiny Qwen2.5-VL, 1 torch thread, shots done "
        "beforehand. Wall time of the captions stage (decode + generate).",
        "",
        "| arm | generate calls | mean scenes/call | scenes/s | vs old |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for mode, a in arms.items():
        md.append(
            f"| {label[mode]} | {a['calls']} | {a['scenes'] / a['calls']:.2f} | "
            f"{rate[mode]:.1f} | {rate[mode] / rate['per_video']:.2f}× |"
        )
    md += ["", f"Captions equal in all arms: {'yes' if same else '**NO**'}."]
    return {
        "scenes": n,
        "calls_per_video": arms["per_video"]["calls"],
        "calls_across": arms["across"]["calls"],
        "scenes_per_s": {m: round(r, 2) for m, r in rate.items()},
        "across_vs_per_video": round(rate["across"] / rate["per_video"], 3),
        "prefetch_on_vs_off": round(rate["across"] / rate["no_prefetch"], 3),
        "same_captions": same,
        "markdown": "\n".join(md),
    }


if __name__ == "__main__":
    import json

    print(json.dumps({k: v for k, v in run(quick=True).items() if k != "markdown"}, indent=2))
