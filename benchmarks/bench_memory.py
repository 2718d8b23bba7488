"""Peak memory of a whole build on a 60-minute synthetic video against a 10-minute one.

Each build runs in its own subprocess (tiny models, CPU); peak RSS is read from
`getrusage(RUSAGE_CHILDREN)`. Frames are streamed, so the ratio should stay near 1.
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
        "--config", str(ROOT / "pipelines" / "demo" / "build.yaml"),
        "--caption-model", str(models["qwen"]), "--clip-model", str(models["clip"]),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return int(proc.stdout.strip().splitlines()[-1]) / 1024


def run(quick: bool = False) -> dict:
    from scenetg.models.tiny import make_tiny_models

    short_min, long_min = (2, 12) if quick else (10, 60)
    size = (640, 360)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = make_tiny_models(tmp / "models")
        short = _peak_rss_mb(_video(short_min, size), models, tmp / "short")
        long = _peak_rss_mb(_video(long_min, size), models, tmp / "long")
    result = {
        "short_minutes": short_min, "long_minutes": long_min,
        "short_peak_mb": round(short, 1), "long_peak_mb": round(long, 1),
        "ratio": round(long / short, 3), "target": "<= 1.2",
    }
    result["markdown"] = (
        "| video | peak RSS (MB) |\n| --- | ---: |\n"
        f"| {short_min} min, {size[0]}x{size[1]} | {short:.0f} |\n"
        f"| {long_min} min, {size[0]}x{size[1]} | {long:.0f} |\n\n"
        f"Ratio {long / short:.3f} (target <= 1.2). A whole `scenetg build` (tiny models, CPU,\n"
        "pipelines/demo/build.yaml) of one synthetic video, a fresh process each; peak RSS from\n"
        "`getrusage`. Frames are streamed (shots, captions and CLIP each decode the video once).\n"
    )
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    print(json.dumps(run(ap.parse_args().quick), indent=2))
