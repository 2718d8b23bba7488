"""The CLIP filter over many short clips: one encode per video (the old local loop) vs batches
across videos, with and without the prefetch thread.

A Charades-like corpus scaled to the CPU: short 320x180 25 fps clips of 3-5 scenes, the demo
build config with the real default of 8 filter frames per scene, the tiny OpenCLIP at
`filter.batch_size: auto` (64 on a CPU), one torch thread. Shots and captions (a stand-in
captioner: the captions are not what is measured) run first, untimed; each arm then runs the
filter stage on a copy of that folder, its frames read from the keyframe store as in a build.

Arms: "old" is the previous code's calls exactly (each video's frames, then its texts, in one
call shaped to the video); "per video" is today's per-video path (`Build.filter`), whose calls
are padded to the batch size so a row's embedding never depends on its batch-mates; the
cross-video arms are the local engine's (Ray's CLIP actors run the same on 16 videos at a time).
Each arm runs twice: frames from the keyframe store, and decoded by the filter. The figures of every arm but "old" must be equal
bit for bit; how many of old's differ (last-digit rounding, see the table) is reported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


class _Captioner:
    model_name = "stand-in"

    def batch_size(self, scene) -> int:
        return 8

    def caption_scenes(self, scenes):
        return [f"scene at {s.times_s[0]:.2f} s lasting {s.duration_s:.1f} s" for s in scenes]


def _setup(root: Path, n_clips: int):
    from scenetg.config import load_build_config
    from scenetg.models.tiny import make_tiny_clip
    from scenetg.video.synthetic import write_synthetic_video

    clip_dir = make_tiny_clip(root / "clip")
    videos = root / "videos"
    videos.mkdir()
    for i in range(n_clips):
        n_scenes = 3 + i % 3
        durations = [2.0 + ((i + j) % 3) * 0.5 for j in range(n_scenes)]
        write_synthetic_video(videos / f"clip{i:03d}.mp4", durations, 25.0, size=(320, 180), seed=i)
    cfg = load_build_config(ROOT / "pipelines" / "demo" / "build.yaml", {
        "captions.model": "unused", "filter.clip_model": str(clip_dir),
        "filter.frames_per_scene": 8, "filter.batch_size": "auto",
    })
    return videos, cfg


class _Counting:
    """Counts the encoder's calls; `shaped_to_call` runs each at its own size (the old code)."""

    def __init__(self, clip, shaped_to_call: bool):
        self.clip, self.shaped = clip, shaped_to_call
        self.images: list[int] = []
        self.texts: list[int] = []
        self.names = ("encode_images", "encode_pixels", "encode_text")
        self.real = {n: getattr(clip, n) for n in self.names}
        for n in self.names:
            setattr(clip, n, self._counted(n, self.texts if n == "encode_text" else self.images))

    def _counted(self, name, log):
        def call(items, batch_size=None):
            log.append(len(items))
            if batch_size is None and self.shaped:
                batch_size = min(len(items), self.clip.batch_size)
            return self.real[name](items, batch_size)
        return call

    def restore(self):
        for n in self.names:
            setattr(self.clip, n, self.real[n])


def _arm(captioned: Path, out: Path, cfg, clip, mode: str, decode: bool) -> dict:
    from bench_common import run_build_stage

    from scenetg.curate.run.pipeline import Build

    shutil.copytree(captioned, out)
    if decode:  # as after a CLIP model change: the filter decodes its frames
        for folder in (out / "work").glob("*/keyframes"):
            shutil.rmtree(folder)
    b = Build.open(out, cfg)
    b.models._clip = clip
    counting = _Counting(clip, shaped_to_call=mode == "old")
    jobs = b.jobs()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        run_build_stage(b, jobs, "filter", per_video=mode in ("old", "per_video"), prefetch=mode != "no_prefetch")
    finally:
        counting.restore()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    figures = [b.stored_results(j)[2]["figures"] for j in jobs]
    return {"wall_s": wall, "cpu_s": cpu, "images": sum(counting.images), "image_calls": len(counting.images),
            "text_calls": len(counting.texts), "videos": len(jobs), "figures": figures}


def run(quick: bool = False) -> dict:
    from scenetg.curate.run.pipeline import run_stage
    from scenetg.curate.stages import captions
    from scenetg.models.batch_size import resolve_clip_batch_size
    from scenetg.models.clip import load_clip

    torch.set_num_threads(1)  # comparable on a shared 2-core machine; decode gets the other core
    root = Path(tempfile.mkdtemp(prefix="bench_clip_"))
    n_clips = 12 if quick else 24
    videos, cfg = _setup(root, n_clips)
    saved = captions.make_caption_backend, captions.check_caption_model
    captions.make_caption_backend = lambda c: _Captioner()
    captions.check_caption_model = lambda c: None
    try:
        run_stage(root / "captioned", "shots", cfg, videos_dir=videos, resume=False)
        run_stage(root / "captioned", "captions", cfg)
    finally:
        captions.make_caption_backend, captions.check_caption_model = saved
    clip = load_clip(cfg.filter.clip_model, device="cpu")
    clip.batch_size = resolve_clip_batch_size(cfg.filter.batch_size, clip.device)
    _arm(root / "captioned", root / "warm", cfg, clip, "across", False)  # first-call setup
    label = {
        "old": "one encode per video, shaped to it (previous code)",
        "per_video": "one encode per video, padded to the batch (`Build.filter`)",
        "no_prefetch": "batches across videos, prefetch off",
        "across": "batches across videos, prefetch on (`auto` = 64 on CPU)",
    }
    load_before = os.getloadavg()[0]
    runs: dict = {}
    repeats = 1 if quick else 3
    for rep in range(repeats):  # interleaved, best of: this machine is shared and noisy
        for decode in (False, True):
            for mode in label:
                a = _arm(root / "captioned", root / f"{mode}{int(decode)}-{rep}", cfg, clip, mode, decode)
                best = runs.get((decode, mode))
                if best is None or a["wall_s"] < best["wall_s"]:
                    runs[decode, mode] = a
    ref = runs[False, "across"]["figures"]
    same = all(a["figures"] == ref for (_, m), a in runs.items() if m != "old")
    flat_old = [f for v in runs[False, "old"]["figures"] for f in v]
    flat_new = [f for v in ref for f in v]
    old_diff = sum(a != b for a, b in zip(flat_old, flat_new, strict=True))
    kept_diff = sum(a["kept"] != b["kept"] for a, b in zip(flat_old, flat_new, strict=True))
    rate = {k: a["images"] / a["wall_s"] for k, a in runs.items()}
    calls = {k: (a["image_calls"] + a["text_calls"]) / a["videos"] for k, a in runs.items()}
    n_images = runs[False, "across"]["images"]
    md = [
        f"{n_clips} clips of 3–5 scenes (320×180, 25 fps, 6–15 s), {len(flat_new)} scenes, "
        f"{n_images} filter frames (8 per scene, 224 px); tiny OpenCLIP, `filter.batch_size: auto` "
        "(64 on CPU), 1 torch thread; shots and captions done beforehand. Wall time (best of "
        f"{repeats}, arms interleaved) of the filter stage: frames from the keyframe store (as in a build) or decoded (as after a CLIP model "
        "change), CLIP's preprocess, encode, figures, stage files.",
        "",
        "| frames | arm | CLIP calls per video (images + texts) | mean images/call | images/s | vs old "
        "| CPU ms per image (all threads) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (decode, mode), a in runs.items():
        md.append(
            f"| {'decoded' if decode else 'stored'} | {label[mode]} | {calls[decode, mode]:.2f} | "
            f"{a['images'] / a['image_calls']:.1f} | {rate[decode, mode]:.0f} | "
            f"{rate[decode, mode] / rate[decode, 'old']:.2f}× | {1000 * a['cpu_s'] / a['images']:.2f} |"
        )
    md += [
        "",
        f"Figures equal bit for bit in every arm but the old one: {'yes' if same else '**NO**'}. "
        f"Old vs today: {old_diff} of {len(flat_new)} queries' figures differ in the last (6th) "
        f"decimal, {kept_diff} change their keep decision: the old calls had each video's own "
        "shape, and the CPU kernels give a batch of 1–3 texts other last bits than a batch of 4+. "
        "The tiny CLIP costs almost nothing, so images/s here is mostly decode and preprocess; "
        "the calls per video are what a GPU-sized CLIP pays for. CPU time counts the work, not "
        f"the waiting: 1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} "
        f"after the arms on {os.cpu_count()} CPUs shared with other jobs, so wall-time ratios "
        "move from run to run.",
    ]
    return {
        "clips": n_clips,
        "images": n_images,
        "clip_calls_per_video": {m: round(calls[False, m], 3) for m in label},
        "images_per_s_stored": {m: round(rate[False, m], 1) for m in label},
        "images_per_s_decoded": {m: round(rate[True, m], 1) for m in label},
        "across_vs_old_stored": round(rate[False, "across"] / rate[False, "old"], 3),
        "across_vs_old_decoded": round(rate[True, "across"] / rate[True, "old"], 3),
        "prefetch_on_vs_off_decoded": round(rate[True, "across"] / rate[True, "no_prefetch"], 3),
        "same_figures": same,
        "old_queries_differing": old_diff,
        "markdown": "\n".join(md),
    }


if __name__ == "__main__":
    import json

    print(json.dumps({k: v for k, v in run(quick=True).items() if k != "markdown"}, indent=2))
