"""What the three claim regimes share: a cached GRPO (or SFT) run from a start checkpoint on a toy
split, held-out grounding scores per query, paired comparisons with a sign test, and curves.

Every stage is cached under ``.cache/toy_claims/<regime>/`` keyed by its settings, so a rerun of
a finished regime takes seconds; a run folder without ``final/config.json`` did not finish and is
trained again (``overwrite``). The per-regime modules (sparse_events, forgetting, ambiguous)
build their data with `scenetg.toy_task` and call these.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.atomic_files import save_png, write_bytes_atomic
from scenetg.eval.uncertainty import paired_comparison
from scenetg.grounding.iou import temporal_iou

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "toy_claims"
DOCS = ROOT / "docs" / "toy_grounding"
SHIPPED_SFT = ROOT / "scenetg" / "demo_assets" / "toy_sft"
"""The toy SFT checkpoint the demo ships (12,500 SFT steps on the 8-cell toy task; R1@0.5 0.49 on
its held-out split): the start of every regime, or of the regime's own SFT stage."""

THRESHOLDS = (0.3, 0.5, 0.7)


def grpo_run(start: Path, split: Any, out: Path, sampling: dict, *, rewards: dict, beta: float,
             beta_timestamp: float, steps: int, prompts: int, seed: int, generations: int = 8,
             lr: float = 3e-4, save_steps: int | None = None, max_completion_length: int = 24,
             frame_cache: Path | None = None) -> Path:
    """One `scenetg train` GRPO run (full fine-tuning, fp32, CPU) from `start` on `split` (a
    `toy_task.ToySplit`); its run folder, cached. `save_steps`: keep a checkpoint every so many
    steps (``checkpoint-N/``) for learning curves."""
    from scenetg.rl.config import train_config_from_dict
    from scenetg.rl.train import train

    if (out / "final" / "config.json").is_file():
        return out
    save = ({"save_strategy": "steps", "save_steps": save_steps, "save_only_model": True}
            if save_steps else {"save_strategy": "no"})
    cfg = train_config_from_dict({
        "model": str(start), "output_dir": str(out), "device": "cpu", "dtype": "float32",
        "freeze_vision": False, "frame_cache": str(frame_cache or CACHE / "frames"),
        "data": {"dataset": str(split.jsonl), "video_root": str(split.videos), "split": None},
        "sampling": sampling, "rewards": rewards, "lora": {"enabled": False},
        "kl": {"beta": beta, "beta_timestamp": beta_timestamp},
        "grpo": {"num_generations": generations, "per_device_train_batch_size": generations * prompts,
                 "max_completion_length": max_completion_length, "max_steps": steps,
                 "learning_rate": lr, "lr_scheduler_type": "constant", "temperature": 1.0,
                 "report_to": "none", "seed": seed, "data_seed": seed, "logging_steps": 1, **save},
    })
    train(cfg, overwrite=True)
    return out


def ground_ious(split: Any, model: Path | str, tag: str, sampling: dict, regime: str,
                limit: int | None = None) -> dict[str, float]:
    """qid -> IoU of the model's greedy answer on `split` (predictions cached as
    ``<regime>/preds/<tag>.jsonl``; a killed run resumes)."""
    from scenetg.eval.grounding import ground
    from scenetg.eval.predictions import read_predictions
    from scenetg.grounding.loaders import load_annotations

    records, _ = load_annotations(split.jsonl, videos_dir=split.videos)
    records = records[:limit] if limit else records
    out = CACHE / regime / "preds" / f"{tag}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    ground(records, split.videos, out, method="model", model=str(model), fps=sampling["fps"],
           max_frames=sampling["max_frames"], max_side=sampling["max_side"], device="cpu",
           dtype="float32", batch_size=16, max_new_tokens=24)
    preds = read_predictions(out)
    by_qid = {str(r["qid"]): r for r in split.rows}
    return {q: temporal_iou(preds.get(q), tuple(by_qid[q]["relevant_windows"][0]), by_qid[q]["duration"])
            for q in (str(r.qid) for r in records)}


def scores(ious: dict[str, float]) -> dict:
    """R1@0.3/0.5/0.7 and mIoU (fractions) of per-query IoUs."""
    v = np.asarray(list(ious.values()), dtype=np.float64)
    out = {f"R1@{t}": float(np.mean(v >= t)) for t in THRESHOLDS}
    return {**out, "mIoU": float(v.mean()), "n": int(v.size)}


def paired(before: dict[str, float], after: dict[str, float], threshold: float = 0.5) -> dict:
    """Hits at IoU >= `threshold` that `after` gains and loses against `before` on the same
    queries, with the exact two-sided sign test."""
    qids = sorted(before)
    a = np.asarray([before[q] >= threshold for q in qids])
    b = np.asarray([after[q] >= threshold for q in qids])
    return paired_comparison(a, b)


def pooled(pairs: Sequence[dict]) -> dict:
    """Per-seed paired comparisons summed over seeds, with the sign test of the sums."""
    from scenetg.eval.uncertainty import sign_test_p

    g = sum(p["gained"] for p in pairs)
    lost = sum(p["lost"] for p in pairs)
    return {"gained": g, "lost": lost, "p": sign_test_p(g, lost),
            "seeds_ahead": sum(p["gained"] > p["lost"] for p in pairs),
            "seeds_behind": sum(p["gained"] < p["lost"] for p in pairs)}


def logged_steps(run_dir: Path) -> list[dict]:
    """The per-step rows of a run's metrics.jsonl (those with a reward)."""
    from scenetg.rl.curves import read_metrics

    return [r for r in read_metrics(run_dir / "metrics.jsonl") if "reward" in r]


def window_mean(rows: list[dict], key: str, first: int | None = None, last: int | None = None) -> float | None:
    """Mean of `key` over the first or last so many logged steps (None when never logged)."""
    rows = rows[:first] if first else rows[-last:] if last else rows
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def plot_lines(series: dict[str, list[tuple[float, float]]], path: Path, title: str, xlabel: str,
               ylabel: str) -> Path:
    """One PNG: a line per label of (x, y) points (several seeds of one variant share a colour
    when labels read ``variant (seed k)``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    variants = sorted({label.split(" (seed")[0] for label in series})
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, pts in series.items():
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        c = colours[variants.index(label.split(" (seed")[0]) % len(colours)]
        ax.plot(xs, ys, color=c, alpha=0.8, label=label if "(seed" not in label or "(seed 0)" in label else None)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_png(fig, path)


def write_json(path: Path, obj: Any) -> None:
    """`obj` as indented JSON, atomically (numpy scalars as floats)."""
    write_bytes_atomic(path, json.dumps(obj, indent=1, default=float).encode())
