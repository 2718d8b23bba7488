"""Peak memory of a whole build on a 60-minute synthetic video against a 10-minute one.

Each build runs in its own subprocess (tiny models, CPU); peak RSS is read from
`getrusage(RUSAGE_CHILDREN)`. Frames are streamed, so the ratio should stay near 1.

The tiny CLIP's 32-px input makes the filter's preprocessed frames small, so a second table
measures what the filter prefetch holds per video with a real 224-px CLIP preprocess
(ViT-L-14's, open_clip; no weights needed): each video's filter frames as decoded, as
`ClipEncoder.pixels` keeps them (uint8) and as the whole float32 preprocess (before uint8).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"
DEMO = ROOT / "pipelines" / "demo" / "build.yaml"


def _video(minutes: int, size: tuple[int, int]) -> Path:
    from scenetg.video.synthetic import write_synthetic_video

    path = CACHE / f"memory_{minutes}min_{size[0]}x{size[1]}.mp4"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        # Scenes of 20-40 s, so scene count grows with length like a real long video.
        durations = [20.0 + 20.0 * ((i * 7) % 11) / 10 for i in range(minutes * 2)]
        total = sum(durations)
        durations = [d * minutes * 60 / total for d in durations]
        tmp = path.with_suffix(".tmp.mp4")
        write_synthetic_video(tmp, durations, 25.0, size=size, seed=minutes)
        tmp.replace(path)
    return path


def _peak_rss_mb(video: Path, models: dict[str, Path], work: Path) -> float:
    """Run one build in a fresh process; return that process's peak RSS in MB."""
    videos = work / "videos"
    videos.mkdir(parents=True)
    (videos / video.name).symlink_to(video)
    code = (
        "import resource, sys\n"
        "from scenetg.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    args = [
        sys.executable, "-c", code, "build", "--videos", str(videos), "--out", str(work / "out"),
        "--config", str(DEMO),
        "--caption-model", str(models["qwen"]), "--clip-model", str(models["clip"]),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return int(proc.stdout.strip().splitlines()[-1]) / 1024


def _filter_hold_mb(video: Path, work: Path, k: int) -> dict[str, float]:
    """MB of one video's filter frames as the prefetch would hold them with a 224-px CLIP."""
    import open_clip

    from scenetg.curate.run import keyframes
    from scenetg.curate.run import video_stages as stages
    from scenetg.models.clip import ClipEncoder

    (shots,) = (work / "out" / "work").glob("*/shots.json")
    result = json.loads(shots.read_text())["result"]
    scenes = result["scenes"]
    preprocess = open_clip.image_transform(224, is_train=False)  # ViT-L-14's inference preprocess
    split = ClipEncoder(None, preprocess, None, "ViT-L-14 preprocess", "cpu")
    whole = ClipEncoder(None, lambda im: preprocess(im), None, "whole preprocess", "cpu")  # not split
    frames, _ = stages.filter_frames(video, scenes, k, keyframes.filter_frame_side(split.image_size, result["video"]))
    byte, full = split.pixels(frames), whole.pixels(frames)
    assert byte.dtype.itemsize == 1 and full.dtype.itemsize == 4
    mb = 1024 * 1024
    h, w = frames[0].shape[:2]
    return {"frames": len(frames), "decoded_size": f"{w}x{h}", "decoded_mb": sum(f.nbytes for f in frames) / mb,
            "uint8_mb": byte.nbytes / mb, "float32_mb": full.nbytes / mb}


def run(quick: bool = False) -> dict:
    from scenetg.config import load_build_config
    from scenetg.models.tiny import make_tiny_models

    short_min, long_min = (2, 12) if quick else (10, 60)
    size = (640, 360)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = make_tiny_models(tmp / "models")
        short = _peak_rss_mb(_video(short_min, size), models, tmp / "short")
        long = _peak_rss_mb(_video(long_min, size), models, tmp / "long")
        k = load_build_config(DEMO).filter.frames_per_scene
        hold = {m: _filter_hold_mb(_video(m, size), tmp / name, k)
                for m, name in ((short_min, "short"), (long_min, "long"))}
    result = {
        "short_minutes": short_min, "long_minutes": long_min,
        "short_peak_mb": round(short, 1), "long_peak_mb": round(long, 1),
        "ratio": round(long / short, 3), "target": "<= 1.2",
        "filter_hold_224px": {m: {key: v if isinstance(v, str) else round(v, 1) for key, v in h.items()}
                              for m, h in hold.items()},
    }
    rows = "".join(
        f"| {m} min | {h['frames']} ({h['decoded_size']}) | {h['decoded_mb']:.1f} | {h['float32_mb']:.1f} | {h['uint8_mb']:.1f} "
        f"| {h['uint8_mb'] / h['float32_mb']:.2f} |\n" for m, h in hold.items()
    )
    result["markdown"] = (
        "| video | peak RSS (MB) |\n| --- | ---: |\n"
        f"| {short_min} min, {size[0]}x{size[1]} | {short:.0f} |\n"
        f"| {long_min} min, {size[0]}x{size[1]} | {long:.0f} |\n\n"
        f"Ratio {long / short:.3f} (target <= 1.2). A whole `scenetg build` (tiny models, CPU,\n"
        "pipelines/demo/build.yaml) of one synthetic video, a fresh process each; peak RSS from\n"
        "`getrusage`. Frames are streamed (shots, captions and CLIP each decode the video once).\n\n"
        "What the filter prefetch holds per video (`FilterFrames`) with a 224-px CLIP preprocess\n"
        "(ViT-L-14's; the tiny CLIP's is 32 px): the video's filter frames as decoded (shorter\n"
        "side at CLIP's 224, `keyframes.filter_frame_side`; before 2026-11-26 the longer side was\n"
        "224, so CLIP enlarged 224x126 frames 1.78x and saw less detail), and after the\n"
        "preprocess (short side resized to 224, centre crop) as float32 (the whole preprocess,\n"
        "before) or as `ClipEncoder.pixels` keeps them (uint8; scaled and normalised at encode\n"
        "time, same embeddings). Peak RSS above uses the tiny CLIP, whose frames stay at 224 px.\n\n"
        "| video | filter frames (decoded size) | decoded (MB) | float32 preprocess (MB) | uint8 `pixels` (MB) "
        "| uint8 / float32 |\n| --- | ---: | ---: | ---: | ---: | ---: |\n" + rows
    )
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    print(json.dumps(run(ap.parse_args().quick), indent=2))
