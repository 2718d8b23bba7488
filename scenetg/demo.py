"""`scenetg demo`: the whole system offline on a CPU in minutes.

Makes a small corpus (synthetic multi-scene videos, plus the real sample clips when the shared
assets folder is there), makes the tiny models, and runs the build with the demo config shipped in
the package (`scenetg/demo_configs/`, linked from `pipelines/demo/` in a checkout), so it runs
from any working directory and from a wheel install. The toy-grounding leg (GRPO from a shipped
SFT checkpoint, so the trained model grounds) is `scenetg.demo_toy`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from scenetg.config import load_build_config
from scenetg.eval.suite import load_eval_config, run_eval_suite
from scenetg.progress import Reporter
from scenetg.rl.config import load_train_config
from scenetg.rl.train import train

# (name, scene durations in seconds, fps, variable frame rate)
SYNTHETIC_VIDEOS = [
    ("synthetic/kitchen_25fps.mp4", [3.0, 2.5, 4.0, 3.0, 2.0], 25.0, False),
    ("synthetic/street_29.97fps.mp4", [2.0, 3.5, 3.0, 2.5], 30000 / 1001, False),
    ("synthetic/garden vfr ü.mp4", [3.0, 3.0, 2.0, 4.0], 24.0, True),
]
REAL_CLIPS = [
    "charades/3MSZA.mp4",
    "pyscenedetect/testvideo.mp4",
    "pyscenedetect/goldeneye-vfr-drop3.mp4",
]


@dataclass
class DemoPaths:
    videos: Path
    models: Path
    dataset: Path


DEMO_BUILD_CONFIG = resources.files("scenetg") / "demo_configs" / "build.yaml"
DEMO_EVAL_CONFIG = resources.files("scenetg") / "demo_configs" / "eval.yaml"
DEMO_TRAIN_CONFIG = resources.files("scenetg") / "demo_configs" / "train.yaml"


@contextmanager
def one_torch_thread():
    """Torch on one thread while the demo runs (restored after). The tiny models' ops are too
    small to gain from threads, and on a busy CPU threaded ops stall: the toy leg's 12 GRPO steps
    took 256 s with torch's default threads and 21 s with one, on this 2-core machine shared with
    other jobs (same results)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_assets_dir() -> Path | None:
    """`../shared/assets/videos` beside the project checkout this module runs from, when present.

    Only a checkout (a folder with pyproject.toml above the package) has one; an installed
    package has none, and the demo then uses its synthetic videos alone.
    """
    checkout = Path(__file__).resolve().parents[1]
    cand = checkout.parent / "shared" / "assets" / "videos"
    if (checkout / "pyproject.toml").is_file() and cand.is_dir():
        return cand
    return None


def make_corpus(videos_dir: Path, assets_dir: Path | None) -> list[Path]:
    """Write the synthetic videos (skipping existing ones) and link the real clips."""
    from scenetg.video.synthetic import write_synthetic_video  # deferred: pulls av

    made = []
    for i, (name, durations, fps, vfr) in enumerate(SYNTHETIC_VIDEOS):
        path = videos_dir / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(".tmp-" + path.name)
            write_synthetic_video(tmp, durations, fps, size=(320, 180), vfr=vfr, seed=i)
            os.replace(tmp, path)
        made.append(path)
    if assets_dir is not None:
        for rel in REAL_CLIPS:
            src = assets_dir / rel
            dst = videos_dir / "real" / rel
            if src.is_file() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(src.resolve(), dst)
            if dst.exists():
                made.append(dst)
    return made


def check_demo_configs(build: Path | None = None, train: Path | None = None, eval_: Path | None = None,
                       toy_train: Path | None = None, toy_eval: Path | None = None) -> None:
    """Read and check every config file the user named before any work, so a bad one is a
    one-line error now rather than after the build and training. The model keys the demo fills
    in itself get stand-ins here (their values are not checked when a config loads)."""

    stand_in = "demo-model"
    if build is not None:
        load_build_config(build, {"captions.model": stand_in, "filter.clip_model": stand_in})
    for path in (train, toy_train):
        if path is not None:
            load_train_config(path, {"model": stand_in})
    if eval_ is not None:
        load_eval_config(eval_, {"model": stand_in, "clip_model": stand_in})
    if toy_eval is not None:
        load_eval_config(toy_eval, {"clip_model": stand_in, "models.trained": stand_in,
                                    "models.sft_start": stand_in})


def run_demo(out: Path, config: Path | None, assets_dir: Path | None, reporter: Reporter | None = None):
    """Corpus -> tiny models -> build. Returns (paths, build summary)."""
    from scenetg.curate.run.pipeline import build  # deferred: pulls pyarrow
    from scenetg.models.tiny import make_tiny_models  # deferred: pulls torch

    out = Path(out)
    paths = DemoPaths(out / "videos", out / "models", out / "dataset")
    make_corpus(paths.videos, assets_dir)
    models = make_tiny_models(paths.models)
    cfg = load_build_config(config or DEMO_BUILD_CONFIG, {"captions.model": str(models["qwen"]), "filter.clip_model": str(models["clip"])})
    summary = build(paths.videos, paths.dataset, cfg, resume=True, reporter=reporter)
    return paths, summary


def run_demo_train(paths: DemoPaths, out: Path, config: Path | None, reporter: Reporter | None = None,
                   start_model: Path | None = None):
    """A few GRPO steps on the demo dataset's train split (every split when the tiny corpus gave
    it none), from `start_model` (default: the random tiny MLLM). Returns the trained model
    folder; a finished one is re-used.

    `scenetg demo` starts it from the shipped toy SFT checkpoint: a model that writes the answer
    template, so the format reward varies across rollouts and the curves show a signal. From the
    random tiny model every reward, the loss and the KL stay 0 (nothing to compare)."""

    run = Path(out) / "train"
    if (run / "final" / "config.json").is_file():
        return run / "final"
    has_train = any((paths.dataset / "data").glob("train-*.parquet"))
    cfg = load_train_config(config or DEMO_TRAIN_CONFIG, {
        "model": str(start_model or paths.models / "qwen"), "output_dir": str(run),
        "data.dataset": str(paths.dataset), "data.video_root": str(paths.videos),
        "data.split": "train" if has_train else None,
    })
    return train(cfg, reporter=reporter, overwrite=True).final_dir  # an unfinished leg starts over


def run_demo_eval(paths: DemoPaths, out: Path, config: Path | None, reporter: Reporter | None = None,
                  trained: Path | None = None):
    """Ground the demo dataset's test split (tiny MLLM, the trained one, the two baselines),
    score, report."""

    models = {"model": str(paths.models / "qwen"), "clip_model": str(paths.models / "clip")}
    cfg = load_eval_config(config or DEMO_EVAL_CONFIG, {"out": str(Path(out) / "eval"), **models})
    if trained is not None:
        cfg.models["trained"] = str(trained)
        cfg.methods.insert(1, "trained")
        cfg.validate()
    # The test split can be empty on a tiny corpus (splits hash video ids): then use every split.
    has_test = any((paths.dataset / "data").glob("test-*.parquet"))
    for spec in cfg.benchmarks:
        spec.annotations, spec.videos = str(paths.dataset), str(paths.videos)
        spec.split = "test" if has_test else None
    return run_eval_suite(cfg, reporter)
