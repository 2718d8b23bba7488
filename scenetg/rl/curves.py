"""Training logs a user reads: ``metrics.jsonl`` (one line per TRL log event) and ``curves.png``
(GRPO: reward, IoU, KL on timestamp vs other tokens, completion length per step; SFT: loss, token
accuracy, entropy, learning rate)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from scenetg.atomic_files import save_png

PLOTTED = (
    ("reward", ("reward",), "total reward"),
    ("IoU reward", ("rewards/iou_reward/mean",), "IoU"),
    ("KL", ("kl_timestamp", "kl_other"), "KL (k3)"),
    ("completion length", ("completions/mean_length",), "tokens"),
)

SFT_PLOTTED = (
    ("loss", ("loss",), "NLL per answer token"),
    ("token accuracy", ("mean_token_accuracy",), "share of answer tokens top-1"),
    ("entropy", ("entropy",), "nats"),
    ("learning rate", ("learning_rate",), "lr"),
)
PANELS = {"grpo": PLOTTED, "sft": SFT_PLOTTED}


class MetricsLogCallback(TrainerCallback):
    """Appends each log event (with its step) to `path` as one JSON line. On resume, lines past
    the checkpoint's step are dropped first, so the file matches the run it continues. Only the
    world's process zero writes (`accelerate launch` runs one callback per process)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.path.is_file():  # one writer: rank 0
            keep = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and _step_of(line) <= state.global_step
            ]
            self.path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, **{k: _plain(v) for k, v in logs.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


class StepProgressCallback(TrainerCallback):
    """Training steps on the command's own progress bar (a `Reporter`), in place of the Trainer's
    tqdm bar and its per-step dict printed to stdout: those numbers are in ``metrics.jsonl``."""

    TASK = "GRPO steps"

    def __init__(self, reporter: Any, task: str = TASK):
        self.reporter = reporter
        self.TASK = task

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:  # `accelerate launch`: one bar, rank 0's
            return
        self.reporter.start(self.TASK, state.max_steps or None)
        if state.global_step:  # resumed: the bar starts where the checkpoint left off
            self.reporter.advance(self.TASK, state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.reporter.advance(self.TASK)


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn line is dropped


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def plot_curves(metrics_path: str | Path, out_png: str | Path, algo: str = "grpo") -> Path:
    """A 2×2 PNG of the training curves in `metrics_path` (`PANELS` of `algo`); panels with no
    data say so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics_path) if "loss" in r or "reward" in r]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (title, keys, ylabel) in zip(axes.flat, PANELS[algo], strict=True):
        drawn = False
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=key)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        elif len(keys) > 1:
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)

    fig.set_dpi(100)
    return save_png(fig, Path(out_png))
