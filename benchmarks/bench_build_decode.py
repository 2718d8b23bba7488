"""Decode work of a whole build: frames decoded summed over the stages, before and after
keyframes-once and seek-based sampling.

One `scenetg build` (demo config, tiny offline models, CPU) of the 10-minute 1280x720 30 fps
textured video of bench_sampling (2 s GOP), run in a subprocess once with the code of
`BASE_COMMIT` (the main branch before these changes, extracted with `git archive`) and once
with this tree. Frames decoded are counted by wrapping `scenetg.video.frames.decoded_frames`,
which shot detection and every frame-sampling pass decode through in both versions. Same output is checked (the Parquet files are compared byte for byte).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"
BASE_COMMIT = "7a80f23"

_RUNNER = r"""
import json, sys, time
root, videos, out, config, qwen, clip = sys.argv[1:]
sys.path.insert(0, root)
from scenetg.video import frames
counted = {"shots": [0, 0], "keyframes": [0, 0]}
real = frames.decoded_frames
def counting(*args, **kwargs):
    # Shot detection (shots.py) decodes through the same function, imported by name.
    c = counted["shots" if sys._getframe(1).f_code.co_name == "_detection_frames" else "keyframes"]
    c[1] += 1
    for item in real(*args, **kwargs):
        c[0] += 1
        yield item
frames.decoded_frames = counting
from scenetg.cli import main
t0 = time.perf_counter()
code = main(["build", "--videos", videos, "--out", out, "--config", config,
             "--caption-model", qwen, "--clip-model", clip])
print("RESULT " + json.dumps({"exit": code, "wall_s": time.perf_counter() - t0,
                              "counted": counted}))
"""


def _base_tree() -> Path:
    dest = CACHE / f"src_{BASE_COMMIT}"
    if not (dest / "scenetg").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BASE_COMMIT, "scenetg", "pipelines"],
            check=True, capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def _build(src: Path, video: Path, out: Path, models: dict[str, Path]) -> dict:
    import shutil

    videos = out.parent / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    link = videos / video.name
    if not link.exists():
        link.symlink_to(video)
    shutil.rmtree(out, ignore_errors=True)
    config = ROOT / "pipelines" / "demo" / "build.yaml"
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(src), str(videos), str(out), str(config),
         str(models["qwen"]), str(models["clip"])],
        capture_output=True, text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"build failed: {proc.stderr[-2000:]}")
    return json.loads(line[len("RESULT "):])


def run(quick: bool = False) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_sampling import long_video

    from scenetg.models.tiny import make_tiny_models
    from scenetg.video.probe import probe_video

    minutes = 2 if quick else 10
    video = long_video(minutes, 2) if not quick else CACHE / "sampling_segment_120s_gop2s_1280x720_30fps_v1.mp4"
    models_dir = CACHE / "tiny_models"
    models = make_tiny_models(models_dir)
    n_frames = probe_video(video).n_frames
    work = CACHE / "build_decode"
    t0 = time.perf_counter()
    before = _build(_base_tree(), video, work / "before", models)
    after = _build(ROOT, video, work / "after", models)
    # Same stage results (scenes, captions, CLIP figures) and the same Parquet files where both
    # wrote one (the base's export writes no audit shard when every query is dropped).
    same = all(
        json.loads(p.read_text())["result"]
        == json.loads((work / "before" / p.relative_to(work / "after")).read_text())["result"]
        for p in (work / "after" / "work").rglob("*.json")
    ) and all(
        (work / "before" / p.relative_to(work / "after")).read_bytes() == p.read_bytes()
        for p in (work / "after").rglob("*.parquet")
        if (work / "before" / p.relative_to(work / "after")).exists()
    )
    rows = []
    for label, r in (("before (" + BASE_COMMIT + ")", before), ("after", after)):
        shots, keys = r["counted"]["shots"], r["counted"]["keyframes"]
        rows.append({
            "version": label, "wall_s": round(r["wall_s"], 1),
            "frames_shots": shots[0] or n_frames, "frames_keyframe_stages": keys[0],
            "keyframe_passes": keys[1], "frames_total": (shots[0] or n_frames) + keys[0],
        })
    md = (
        f"Whole `scenetg build` of a {minutes}-minute 1280x720 30 fps textured video (GOP 2 s), demo "
        "config (4 frames per scene), tiny models on CPU.\n\n"
        "| version | frames decoded: shots | keyframe stages | decode runs in keyframe stages "
        "(passes + seeks) | total | wall (s) |\n|---|---:|---:|---:|---:|---:|\n"
    )
    for r in rows:
        md += (
            f"| {r['version']} | {r['frames_shots']} | {r['frames_keyframe_stages']} | "
            f"{r['keyframe_passes']} | {r['frames_total']} | {r['wall_s']} |\n"
        )
    md += (
        f"\nSame scenes, captions and CLIP figures before and after: {'yes' if same else 'NO'}.\n"
    )
    return {
        "benchmark": "build decode work", "rows": rows, "identical_output": same,
        "seconds": round(time.perf_counter() - t0, 1), "markdown": md,
    }


def main(argv: list[str] | None = None) -> int:
    from bench_common import standalone_main

    return standalone_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
