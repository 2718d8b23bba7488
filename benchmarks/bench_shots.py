"""Shot-detection throughput: `detect_shots` against plain PyAV decoding and the scenedetect CLI.

Measured side by side in one run, on PySceneDetect's testvideo.mp4 (real 720p H.264) and on two
10-minute synthetic 720p videos (cached under `.cache/bench/`): flat-colour scenes (the test
generator's; they decode ~4x faster than real footage, so any per-frame work weighs more), and
textured panning scenes with film grain (decoding cost close to real footage):

* plain PyAV decode: ``for f in container.decode(video=0): pass``, no pixel conversion, the
  fastest of ``thread_type`` AUTO and FRAME (the anchor: PyAV's default SLICE threads are slower
  on one-slice-per-frame files, so comparing against it measured threading, not our overhead);
* ours: ``detect_shots(path, ShotsConfig())`` (probe + decode + shrink + ContentDetector +
  shot embeddings);
* the scenedetect CLI with its defaults, ``scenedetect -i FILE detect-content list-scenes -n``
  as a subprocess (wall time, interpreter start included; `list-scenes -n` only prints the
  cuts so they can be compared), and, for reference, the same detection through the API,
  ``scenedetect.detect(path, ContentDetector())`` in-process.

Each method runs `repeats` times, interleaved, and the best time counts (other load on the
machine only ever slows a run down). Targets: ours >= 0.8x plain decode, >= 1.5x the CLI.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"
ASSETS = ROOT.parent / "shared" / "assets" / "videos" / "pyscenedetect"


def _synthetic(minutes: float, size=(1280, 720), fps: int = 30) -> tuple[Path, list[float]]:
    """A cached synthetic video of `minutes` with 2-12 s scenes, and its exact cut times."""
    from scenetg.video.synthetic import write_synthetic_video

    path = CACHE / f"shots_{minutes:g}min_{size[0]}x{size[1]}_{fps}fps_v1.mp4"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, json.loads(meta.read_text())["cuts"]
    CACHE.mkdir(parents=True, exist_ok=True)
    from bench_common import scene_durations

    durations = scene_durations(minutes * 60.0)  # 2.0-12.0 s, deterministic
    tmp = path.with_suffix(".tmp.mp4")
    started = time.perf_counter()
    cuts = write_synthetic_video(tmp, durations, fps, size=size, seed=7)
    write_s = time.perf_counter() - started
    tmp.replace(path)
    meta.write_text(json.dumps({"cuts": cuts, "write_s": round(write_s, 2)}))
    return path, cuts


def _textured(minutes: float, size=(1280, 720), fps: int = 30) -> tuple[Path, list[float]]:
    """A cached 720p video with camera-like content (`bench_common.write_textured_video`): a
    smooth random texture per scene, panning 1 px per frame, with film grain, so decoding costs
    about what real footage costs (flat synthetic scenes decode several times faster)."""
    from bench_common import scene_durations, write_textured_video

    path = CACHE / f"shots_textured_{minutes:g}min_{size[0]}x{size[1]}_{fps}fps_v3.mp4"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, json.loads(meta.read_text())["cuts"]
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    cuts = write_textured_video(tmp, scene_durations(minutes * 60.0), size, fps,
                                {"preset": "ultrafast", "crf": "23"})
    tmp.replace(path)
    meta.write_text(json.dumps({"cuts": cuts}))
    return path, cuts


PLAIN_THREAD_TYPES = ("AUTO", "FRAME")
"""The plain-decode anchor is the faster of these (PyAV's default, SLICE, is slower on files
with one slice per frame, and `detect_shots` decodes with AUTO)."""


def _plain_decode(path: Path, thread_type: str) -> tuple[int, float]:
    import av

    with av.open(str(path)) as container:
        container.streams.video[0].thread_type = thread_type
        started = time.perf_counter()
        n = 0
        for _ in container.decode(video=0):
            n += 1
        return n, time.perf_counter() - started


def _pyav_default_threading() -> str:
    import av

    with av.open(str(ASSETS / "counter.mp4")) as container:
        cc = container.streams.video[0].codec_context
        return f"thread_type={cc.thread_type.name}, thread_count={cc.thread_count} (0 = auto)"


def _ours(path: Path) -> tuple[float, list[float]]:
    from scenetg.config import ShotsConfig
    from scenetg.curate.stages.shots import detect_shots

    started = time.perf_counter()
    shots = detect_shots(path, ShotsConfig())
    return time.perf_counter() - started, [s.start_s for s in shots[1:]]


def _timecode_s(tc: str) -> float:
    h, m, s = tc.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _cli(path: Path) -> tuple[float, float | None, list[float]]:
    """Wall time, the CLI's own reported processing fps, and its cut times."""
    exe = Path(sys.executable).with_name("scenedetect")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "scenedetect"]
    cmd += ["-i", str(path), "detect-content", "list-scenes", "-n"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    out = proc.stdout + proc.stderr
    fps = re.search(r"\(average ([\d.]+) FPS\)", out)
    cuts: list[float] = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if "Comma-separated timecode list" in line and i + 1 < len(lines):
            cuts = [_timecode_s(t) for t in lines[i + 1].strip().split(",") if t.strip()]
    return wall, float(fps.group(1)) if fps else None, cuts


def _api(path: Path) -> tuple[float, list[float]]:
    from scenedetect import ContentDetector, detect

    started = time.perf_counter()
    scenes = detect(str(path), ContentDetector())
    return time.perf_counter() - started, [a.seconds for a, _ in scenes[1:]]


def _agree(a: list[float], b: list[float], tol_s: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol_s for x, y in zip(a, b, strict=True))


def _bench_video(label: str, path: Path, repeats: int, truth: list[float] | None) -> dict:
    plain_keys = [f"plain_{t.lower()}" for t in PLAIN_THREAD_TYPES]
    times: dict[str, list[float]] = {k: [] for k in (*plain_keys, "ours", "cli", "api")}
    cli_fps: list[float] = []
    n_frames = 0
    for _ in range(repeats):
        for thread_type, key in zip(PLAIN_THREAD_TYPES, plain_keys, strict=True):
            n_frames, t = _plain_decode(path, thread_type)
            times[key].append(t)
        t, ours_cuts = _ours(path)
        times["ours"].append(t)
        t, fps, cli_cuts = _cli(path)
        times["cli"].append(t)
        if fps:
            cli_fps.append(fps)
        t, api_cuts = _api(path)
        times["api"].append(t)
    fps = {k: n_frames / min(v) for k, v in times.items()}
    anchor = max(plain_keys, key=lambda k: fps[k])
    fps["plain"] = fps[anchor]
    row = {
        "video": label,
        "file": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name),
        "frames": n_frames,
        "repeats": repeats,
        "fps_plain_pyav_decode": round(fps["plain"]),
        "plain_anchor": anchor.removeprefix("plain_").upper(),
        "fps_plain_by_thread_type": {k.removeprefix("plain_").upper(): round(fps[k]) for k in plain_keys},
        "fps_ours": round(fps["ours"]),
        "fps_scenedetect_cli_wall": round(fps["cli"]),
        "fps_scenedetect_cli_reported": round(max(cli_fps)) if cli_fps else None,
        "fps_scenedetect_api": round(fps["api"]),
        "seconds_best": {k: round(min(v), 3) for k, v in times.items()},
        "seconds_median": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "ratio_ours_vs_plain": round(fps["ours"] / fps["plain"], 3),
        "ratio_ours_vs_cli": round(fps["ours"] / fps["cli"], 3),
        "ratio_ours_vs_api": round(fps["ours"] / fps["api"], 3),
        "n_cuts": {"ours": len(ours_cuts), "cli": len(cli_cuts), "api": len(api_cuts)},
        # The CLI prints cut times rounded to milliseconds.
        "cuts_agree_ours_cli": _agree(ours_cuts, cli_cuts, 0.0011),
        "cuts_agree_ours_api": _agree(ours_cuts, api_cuts, 1e-6),
    }
    if truth is not None:
        row["cuts_exact_vs_truth"] = _agree(ours_cuts, truth, 1e-6)
    return row


WHERE_THE_TIME_GOES = (
    "Where the time goes on the flat video (instructions per frame counted with valgrind "
    "callgrind, 600 frames, so independent of the machine's load): plain decoding 3.75M; "
    "`detect_shots` 5.07M (5.43M before its per-frame thumbnail became a running frame sum): "
    "libavcodec 3.69M (plain: 3.64M), swscale's shrink to 256x144 plus YUV->BGR 0.60M, OpenCV's "
    "HSV conversion and frame difference 0.31M, the interpreter (PySceneDetect's per-frame "
    "`FrameTimecode` and flash filter, our loop) 0.16M, the embedding's running sum 0.13M. "
    "Decoding-bound work at 0.8x allows ~0.94M of extra work per frame there. The shrink and "
    "colour path stay as they are (swscale's cheapest filters already, and the pixels whose "
    "frame scores match PySceneDetect's own pipeline, so the cuts equal its CLI's): what is left "
    "is mostly that fixed pixel work, and on 2 cores the ratio then depends on how many cores the other "
    "load leaves the decoder's threads."
    ' Tried and dropped (2026-11-26, same video, side by side in one process): resizing the '
    "decoder's Y/U/V planes with cv2.resize INTER_LINEAR and converting with one cv2.transform "
    '(0.61-0.67x plain against 0.71-0.74x for the swscale path in the same runs: cv2.resize reads'
    ' the freshly decoded frame no faster than swscale does, and chroma rounded to 8 bits before '
    'conversion adds hue noise in fades, so testvideo.mp4 gained false cuts at frames 212 and '
    '358); swscale POINT instead of FAST_BILINEAR (no change); decoding in one thread and '
    'shrinking in another (slower: one more hand-off per frame). CPU per frame in the pipeline '
    '(getrusage, 18,000 frames): plain decoding 215 us, the shrink and BGR conversion 87 us, the '
    'detector thread 60 us (HSV 30, difference 11, running sum 7-14; timed on frames held in memory); the decoder keeps ~1.5 of '
    "the 2 cores busy, so 0.8x would need ~75 us less work per frame than PySceneDetect's own "
    'pixel pipeline does.'
)
"""Measured once by hand (2026-11-26): `valgrind --tool=callgrind python -c "detect_shots(...)"` on
the flat synthetic video's first 20 s, minus an import-only run; see the section's text."""


def _markdown(rows: list[dict], load_avg: list[float] | None = None) -> str:
    head = (
        "| video | frames | plain PyAV decode, fastest threading (fps) | ours `detect_shots` (fps) | "
        "scenedetect CLI (fps, wall) | scenedetect API (fps) | ours / plain | ours / CLI | "
        "cuts agree |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    body = ""
    for r in rows:
        agree = "yes" if r["cuts_agree_ours_cli"] and r["cuts_agree_ours_api"] else "NO"
        if "cuts_exact_vs_truth" in r:
            agree += ", exact vs truth" if r["cuts_exact_vs_truth"] else ", NOT exact vs truth"
        body += (
            f"| {r['video']} | {r['frames']} | {r['fps_plain_pyav_decode']} ({r['plain_anchor']}) | "
            f"{r['fps_ours']} | "
            f"{r['fps_scenedetect_cli_wall']} | {r['fps_scenedetect_api']} | "
            f"{r['ratio_ours_vs_plain']:.2f}x | {r['ratio_ours_vs_cli']:.2f}x | {agree} |\n"
        )
    under = [r["video"].split(" (")[0] for r in rows if r["ratio_ours_vs_plain"] < 0.8]
    under_cli = [r["video"].split(" (")[0] for r in rows if r["ratio_ours_vs_cli"] < 1.5]
    # Where decoding alone is under 1.5x the CLI, no detector built on that decode can reach it.
    cli_bound = [f"{r['video'].split(' (')[0]} (plain decode itself is "
                 f"{r['fps_plain_pyav_decode'] / r['fps_scenedetect_cli_wall']:.2f}x the CLI)"
                 for r in rows if r["fps_plain_pyav_decode"] / r["fps_scenedetect_cli_wall"] < 1.5]
    load = (f" (1-minute load average {min(load_avg)}-{max(load_avg)} at the rows' starts and end, "
            f"on {os.cpu_count()} shared cores)" if load_avg else "")
    note = (
        "\nEvery row is measured against the same anchor in this one run" + load + ": the fastest "
        "plain PyAV decode of the file, `thread_type` AUTO or FRAME (the winner in brackets), no "
        "pixel conversion; each method's best of its repeats. Targets: ours >= 0.8x that anchor "
        "and >= 1.5x the CLI, with the same cuts. "
        + (f"Under 0.8x: {', '.join(under)}. " if under else "Every row meets 0.8x. ")
        + (f"Under 1.5x the CLI: {', '.join(under_cli)}. " if under_cli else "")
        + (f"Out of reach of any detector that decodes every frame: {', '.join(cli_bound)}. "
           if cli_bound else "")
        + "With a load average above the core count, each process gets an uneven share of "
        "the cores (more threads, more share), so a row's ratio moves by 15% or more between runs; the "
        "instruction counts below do not. "
        + "Real footage (testvideo.mp4) and the textured, grainy synthetic decode 5-8x slower than "
        "the flat scenes, so our per-frame work is small beside decoding; on the flat video "
        "it weighs most. " + WHERE_THE_TIME_GOES + "\n"
    )
    return head + body + note


def run(quick: bool = False) -> dict:
    """Run the benchmark; return the figures (and a Markdown table under "markdown")."""
    import av
    import scenedetect

    minutes = 2 if quick else 10
    synthetic, truth = _synthetic(minutes)
    textured, textured_truth = _textured(minutes)
    videos = [
        ("testvideo.mp4 (1280x720, 29.97 fps)", ASSETS / "testvideo.mp4", 3 if quick else 5, None),
        (f"synthetic {minutes} min, flat scenes (1280x720, 30 fps)", synthetic, 1 if quick else 2, truth),
        (f"synthetic {minutes} min, textured panning scenes (1280x720, 30 fps)", textured,
         1 if quick else 2, textured_truth),
    ]
    loads, rows = [], []
    for label, path, repeats, cuts in videos:
        loads.append(round(os.getloadavg()[0], 2))
        rows.append(_bench_video(label, path, repeats, cuts))
    loads.append(round(os.getloadavg()[0], 2))
    result = {
        "benchmark": "shot detection throughput",
        "quick": quick,
        "rows": rows,
        "targets": {"ours_vs_plain": ">= 0.8", "ours_vs_cli": ">= 1.5"},
        "met": {
            "ours_vs_plain": all(r["ratio_ours_vs_plain"] >= 0.8 for r in rows),
            "ours_vs_cli": all(r["ratio_ours_vs_cli"] >= 1.5 for r in rows),
        },
        "environment": {
            "cpus": os.cpu_count(),
            "load_avg_1m_at_row_starts_and_end": loads,
            "python": platform.python_version(),
            "pyav": av.__version__,
            "scenedetect": scenedetect.__version__,
            "pyav_default_threading": _pyav_default_threading(),
            "plain_decode_threading": "fastest of thread_type AUTO and FRAME, thread_count 0",
            "ours": "PyAV thread_type=AUTO in a decode thread; swscale shrink then BGR at 256 px; "
            "embedding from a running frame sum",
            "cli": "scenedetect -i FILE detect-content list-scenes -n (defaults: OpenCV backend, "
            "auto downscale to ~256 px, min-scene-len 0.6 s)",
        },
    }
    result["markdown"] = _markdown(rows, loads)
    return result


def main(argv: list[str] | None = None) -> int:
    from bench_common import standalone_main

    return standalone_main(run, __doc__, argv, quick_help="2-minute synthetic video, fewer repeats")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
