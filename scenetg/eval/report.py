"""Evaluation report: one Markdown file with every run's metrics and a PNG of IoU distributions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenetg.curate.workdir import write_bytes_atomic
from scenetg.eval.metrics import THRESHOLDS


@dataclass
class EvalResult:
    """One (benchmark, method) evaluation: its metrics dict and per-query IoUs."""

    benchmark: str
    method: str
    metrics: dict
    ious: np.ndarray
    predictions: Path


def plot_iou_distribution(results: Sequence[EvalResult], path: Path) -> Path:
    """Histogram of per-query IoU, one series per run, with the R1 thresholds marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    bins = np.linspace(0.0, 1.0, 21)
    for r in results:
        ax.hist(r.ious, bins=bins, histtype="step", linewidth=1.8, label=f"{r.benchmark} / {r.method} (n={len(r.ious)})")
    for m in THRESHOLDS:
        ax.axvline(m, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("IoU of the top-1 prediction")
    ax.set_ylabel("queries")
    ax.set_title("IoU distribution")
    ax.legend(fontsize=8)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return path


def write_eval_report(results: Sequence[EvalResult], out_dir: Path, title: str = "SceneTG evaluation") -> Path:
    """OUT/report.md (metrics table per run, length breakdown) + OUT/iou_distribution.png."""
    out = Path(out_dir)
    png = plot_iou_distribution(results, out / "iou_distribution.png")
    keys = [f"R1@{m:g}" for m in THRESHOLDS]
    lines = [f"# {title}", "", "| benchmark | method | n | " + " | ".join(keys) + " | mIoU | invalid |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in keys) + " | ---: | ---: |"]
    for r in results:
        m = r.metrics
        lines.append(f"| {r.benchmark} | {r.method} | {m['n']} | "
                     + " | ".join(f"{m[k]:.2f}" for k in keys) + f" | {m['mIoU']:.2f} | {m['invalid']} |")
    lines += ["", f"![IoU distribution]({png.name})", ""]
    for r in results:
        lines += [f"## {r.benchmark} / {r.method}", "", f"Predictions: `{r.predictions}`", ""]
        lines += ["| GT length / video | n | " + " | ".join(keys) + " | mIoU |",
                  "| --- | ---: | " + " | ".join("---:" for _ in keys) + " | ---: |"]
        for bucket, b in r.metrics.get("breakdown", {}).items():
            if not b or not b.get("n"):
                continue
            lines.append(f"| {bucket} | {b['n']} | " + " | ".join(f"{b[k]:.2f}" for k in keys) + f" | {b['mIoU']:.2f} |")
        lines.append("")
    path = out / "report.md"
    write_bytes_atomic(path, "\n".join(lines).encode())
    return path
