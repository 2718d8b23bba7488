"""Pieces the benchmark scripts share: the textured synthetic video (decodes like real footage)
and the command line every `bench_*.py` offers when run on its own."""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_textured_video(
    path: Path, durations_s: Sequence[float], size: tuple[int, int], fps: int, options: dict[str, str]
) -> list[float]:
    """Write an H.264 video of grainy, slowly panning textured scenes lasting `durations_s`
    (alternating brightness, so every cut is a clear one) and return the cut times (s).

    Film grain is what makes real footage cost bits, and so decoding time. Seeded: the same
    arguments give the same file. `options` are libx264's (preset, crf, x264-params)."""
    import av
    import cv2

    w, h = size
    rng = np.random.default_rng(11)
    grain = [rng.integers(-6, 7, (h, w), dtype=np.int16) for _ in range(7)]
    cuts, n = [], 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = dict(options)
        # One slice per frame, like most real files (PyAV's default slice threads write many).
        stream.codec_context.thread_type = "FRAME"
        for k, dur in enumerate(durations_s):
            if k:
                cuts.append(n / fps)
            frames = round(dur * fps)
            pad = frames + 8
            small = rng.integers(0, 256, (h // 24 + 2, (w + pad) // 24 + 2), dtype=np.uint8)
            texture = cv2.resize(small, ((w + pad) // 24 * 24 + 48, h // 24 * 24 + 48),
                                 interpolation=cv2.INTER_CUBIC)[:h, : w + pad]
            base = 150 if k % 2 else 70
            luma = np.clip(base + (texture.astype(np.int16) - 128) // 3, 16, 235).astype(np.uint8)
            u, v = (int(x) for x in rng.integers(90, 166, 2))
            for f in range(frames):
                yuv = np.empty((h * 3 // 2, w), np.uint8)
                yuv[:h] = np.clip(luma[:, f : f + w] + grain[n % 7], 16, 235)
                yuv[h : h + h // 4] = u
                yuv[h + h // 4 :] = v
                frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                frame.pts = n
                frame.time_base = Fraction(1, fps)
                for pkt in stream.encode(frame):
                    container.mux(pkt)
                n += 1
        for pkt in stream.encode(None):
            container.mux(pkt)
    return cuts


class InlinePrefetch:
    """Prefetch stand-in that runs the producer inline (prefetch off)."""

    def __init__(self, iterable, capacity=1, name=""):
        self.iterable, self.capacity = iterable, capacity

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def run_build_stage(b, jobs: list, stage: str, per_video: bool, prefetch: bool = True) -> None:
    """Run build `b` up to `stage` on `jobs` as the local engine does (batches across videos,
    decoding in the prefetch thread; `prefetch=False` decodes inline), or one video at a time
    (`per_video`, the path Ray's workers and `Build.process_video` take)."""
    from scenetg.curate.run import caption_batches

    if per_video:
        for job in jobs:
            b.process_video(job, stage, resume=True)
        return
    saved = caption_batches.Prefetch
    if not prefetch:
        caption_batches.Prefetch = InlinePrefetch
    try:
        caption_batches.run_local(b, jobs, stage, True)
    finally:
        caption_batches.Prefetch = saved


def scene_durations(total_s: float) -> list[float]:
    """Scene lengths of 2–12 s (a fixed pattern) filling `total_s` exactly."""
    durations, i = [], 0
    while sum(durations) < total_s:
        durations.append(2.0 + (i * 37 % 101) / 10.0)
        i += 1
    durations[-1] = round(total_s - sum(durations[:-1]), 3)
    return durations


def standalone_main(run: Callable[[bool], dict], doc: str, argv: list[str] | None = None,
                    quick_help: str | None = None) -> int:
    """`python benchmarks/bench_X.py [--quick] [--out FILE]`: run, print the Markdown and the
    figures, and save them as JSON (what `run_all.py --results MODULE=FILE` re-renders)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    result = run(args.quick)
    print(result["markdown"])
    print(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """(fastest of `repeats` calls of `fn` in seconds, the last call's result); a GC before each."""
    best, result = float("inf"), None
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result
