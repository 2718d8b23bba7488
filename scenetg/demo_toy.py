"""`scenetg demo`'s toy-grounding leg: a model that grounds, trained further with GRPO, beside the
baselines.

The build leg's tiny model starts from random weights and its queries come from a random
captioner, so no few-step training can make it beat the baselines. This leg starts instead from a
checkpoint shipped in the package (``scenetg/demo_assets/toy_sft``: the tiny Qwen2.5-VL after
the toy benchmark's 12,500 SFT steps, 35 min on a 2-core CPU; ``provenance.json`` says how it was
made), writes toy videos it never saw (`scenetg.toy_task`, seeds the benchmark does not use), runs
a few GRPO steps on a small train set (`scenetg.rl.train.train`) and grounds a held-out set with
the trained model, its SFT start and the center and clip baselines (`run_eval_suite`).

Each stage is reused on a rerun: the copied checkpoint (weights checked against provenance),
the toy sets (their JSONL is written last), the trained model (``final/``) and the predictions.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from scenetg.errors import ScenetgError
from scenetg.eval.suite import load_eval_config, run_eval_suite
from scenetg.progress import Reporter
from scenetg.rl.config import load_train_config
from scenetg.rl.train import train
from scenetg.toy_task import make_split

TOY_SFT = resources.files("scenetg") / "demo_assets" / "toy_sft"
"""The shipped SFT checkpoint (package data)."""
DEMO_TOY_TRAIN_CONFIG = resources.files("scenetg") / "demo_configs" / "toy_train.yaml"
DEMO_TOY_EVAL_CONFIG = resources.files("scenetg") / "demo_configs" / "toy_eval.yaml"


@dataclass(frozen=True)
class ToySetSpec:
    """One toy split the demo writes with `scenetg.toy_task.make_split`."""

    name: str
    videos: int
    per_video: int
    seed: int


TOY_TRAIN = ToySetSpec("demo_train", videos=24, per_video=2, seed=20_001)
"""GRPO prompts: 48 queries, one epoch of 12 steps × 4 prompts. The benchmark's SFT used the
seeds 0 (train) and 10,000 (held-out) and other video names. Layouts do repeat across seeds (a
few in 1,800), so the seeds here are ones whose videos share no layout (duration, cuts, colours)
with the benchmark's 1,800 or each other; tests/test_demo_toy.py checks it."""
TOY_HELDOUT = ToySetSpec("demo_heldout", videos=200, per_video=1, seed=30_004)
"""200 queries: the standard error of R1@0.5 is ≈ 0.035; the SFT start leads clip by ≈ 0.2 and
center by ≈ 0.45 here."""


@dataclass
class ToyPaths:
    root: Path
    sft_start: Path
    data: Path
    train: Path
    eval: Path


def toy_paths(out: Path) -> ToyPaths:
    root = Path(out) / "toy"
    return ToyPaths(root, root / "sft_start", root / "data", root / "train", root / "eval")


def provenance() -> dict:
    """How the shipped checkpoint was made (command, seeds, data sizes, held-out metrics, sha256)."""
    return json.loads((TOY_SFT / "provenance.json").read_text(encoding="utf-8"))


def copy_toy_sft(dst: Path) -> Path:
    """The shipped checkpoint copied to `dst` (a plain folder training and `scenetg ground` read,
    whatever the package is installed as); an existing copy is reused. The files are checked
    against provenance.json's sha256 first: a damaged install fails here, in one line."""
    dst = Path(dst)
    if (dst / "config.json").is_file():
        return dst
    expected = provenance()["sha256"]
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, digest in expected.items():
        data = (TOY_SFT / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ScenetgError(f"{TOY_SFT / name}: sha256 differs from provenance.json; reinstall scenetg")
        (tmp / name).write_bytes(data)
    (tmp / "provenance.json").write_bytes((TOY_SFT / "provenance.json").read_bytes())
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst


def write_toy_sets(data_dir: Path):
    """The demo's toy train and held-out splits (`ToySplit`s); existing ones are read back."""

    return tuple(make_split(data_dir, s.name, s.videos, s.per_video, s.seed)
                 for s in (TOY_TRAIN, TOY_HELDOUT))


def run_toy_train(paths: ToyPaths, train_split, config: Path | None = None,
                  reporter: Reporter | None = None) -> tuple[Path, bool]:
    """A few GRPO steps from the SFT start on the toy train split: ``(final dir, trained now)``;
    a finished run is reused (``trained now`` False)."""

    final = paths.train / "final"
    if (final / "config.json").is_file():
        return final, False
    cfg = load_train_config(config or DEMO_TOY_TRAIN_CONFIG, {
        "model": str(paths.sft_start), "output_dir": str(paths.train),
        "data.dataset": str(train_split.jsonl), "data.video_root": str(train_split.videos),
    })
    return train(cfg, reporter=reporter, overwrite=True).final_dir, True  # an unfinished run starts over


def run_toy_eval(paths: ToyPaths, heldout_split, clip_model: Path, trained: Path,
                 config: Path | None = None, reporter: Reporter | None = None):
    """Ground and score the held-out split with the trained model, the SFT start, center and
    clip; returns ``(results, report path)`` of `run_eval_suite`."""

    cfg = load_eval_config(config or DEMO_TOY_EVAL_CONFIG, {
        "out": str(paths.eval), "clip_model": str(clip_model),
        "models.trained": str(trained), "models.sft_start": str(paths.sft_start),
    })
    for spec in cfg.benchmarks:
        spec.annotations, spec.videos, spec.split = str(heldout_split.jsonl), str(heldout_split.videos), None
    return run_eval_suite(cfg, reporter)


def run_toy_leg(out: Path, clip_model: Path, train_config: Path | None = None,
                eval_config: Path | None = None, reporter: Reporter | None = None):
    """SFT start -> toy sets -> GRPO -> held-out eval. Returns ``(paths, trained dir, results,
    report)``. Predictions of a model trained in this call replace any earlier ones."""
    paths = toy_paths(out)
    copy_toy_sft(paths.sft_start)
    train_split, heldout_split = write_toy_sets(paths.data)
    trained, fresh = run_toy_train(paths, train_split, train_config, reporter)
    if fresh:  # predictions resume by query id: drop those of an earlier trained model
        for stale in paths.eval.glob("*/trained.*"):
            stale.unlink()
    results, report = run_toy_eval(paths, heldout_split, clip_model, trained, eval_config, reporter)
    return paths, trained, results, report
