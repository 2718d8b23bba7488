"""Evaluation report: one Markdown file with every run's metrics (95 % bootstrap intervals, the R@k
table where the protocol names one, paired sign tests between the methods of a benchmark) and a
PNG of IoU distributions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from scenetg.atomic_files import save_png, write_bytes_atomic
from scenetg.eval.metrics import BUCKET_EDGES, THRESHOLDS, UNKNOWN_BUCKET
from scenetg.eval.uncertainty import paired_comparison


@dataclass
class EvalResult:
    """One (benchmark, method) evaluation: its metrics dict and per-query IoUs."""

    benchmark: str
    method: str
    metrics: dict
    ious: np.ndarray
    predictions: Path
    counted: np.ndarray | None = None
    """(N,) the queries in the metrics' denominator (None: all)."""
    failed: int = 0
    """Queries written as error rows in this run (video missing or unreadable)."""

    def hits(self, m: float) -> np.ndarray:
        """(N,) per-query R1 hit at threshold `m`, as the protocol counts it (>= or >, in the
        dtype of its IoUs)."""
        rules = self.metrics.get("protocol_rules", {})
        t = self.ious.dtype.type(m)
        return self.ious > t if rules.get("threshold") == ">" else self.ious >= t


def paired_tests(results: Sequence[EvalResult], thresholds: Sequence[float] = THRESHOLDS) -> list[dict]:
    """Every two methods of a benchmark (config order) on the queries both are scored on: at each
    threshold, the R1 hits B gained and lost against A and the exact sign (McNemar) p-value."""
    by_bench: dict[str, list[EvalResult]] = {}
    for r in results:
        by_bench.setdefault(r.benchmark, []).append(r)
    rows = []
    for bench, runs in by_bench.items():
        for a, b in combinations(runs, 2):
            if len(a.ious) != len(b.ious):
                continue  # not the same queries
            both = np.ones(len(a.ious), dtype=bool)
            for r in (a, b):
                if r.counted is not None:
                    both &= r.counted
            tests = {}
            for m in thresholds:
                tests[f"R1@{m}"] = paired_comparison(a.hits(m)[both], b.hits(m)[both])
            rows.append({"benchmark": bench, "a": a.method, "b": b.method,
                         "n": int(np.count_nonzero(both)), "tests": tests})
    return rows


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
    return save_png(fig, path)


def write_eval_report(results: Sequence[EvalResult], out_dir: Path, title: str = "SceneTG evaluation") -> Path:
    """OUT/report.md (metrics table per run, length breakdown) + OUT/iou_distribution.png."""
    out = Path(out_dir)
    png = plot_iou_distribution(results, out / "iou_distribution.png")
    keys = [f"R1@{m:g}" for m in THRESHOLDS]
    lines = [f"# {title}", "",
             "Each R1 / mIoU cell: the score and its 95% bootstrap interval over queries.", "",
             "| benchmark | method | protocol | n | " + " | ".join(keys) + " | mIoU | invalid | missing |",
             "| --- | --- | --- | ---: | " + " | ".join("---:" for _ in keys) + " | ---: | ---: | ---: |"]
    for r in results:
        m = r.metrics
        lines.append(f"| {r.benchmark} | {r.method} | {m.get('protocol', 'default')} | {m['n']} | "
                     + " | ".join(_with_ci(m, k) for k in keys)
                     + f" | {_with_ci(m, 'mIoU')} | {m['invalid']} | {m.get('missing', 0)} |")
    lines += _paired_lines(paired_tests(results))
    lines += ["", f"![IoU distribution]({png.name})", ""]
    for r in results:
        rules = r.metrics.get("protocol_rules")
        lines += [f"## {r.benchmark} / {r.method}", "", f"Predictions: `{r.predictions}`", ""]
        if rules:
            lines += [f"Protocol: {rules['name']} (R1 counts IoU {rules['threshold']} m; GT clipped: "
                      f"{rules['clip_gt']}; predictions clipped: {'yes' if rules['clip_pred'] else 'no'}; "
                      f"denominator: {rules['denominator']}; as {rules['source']}).", ""]
        lines += ["| GT length / video | n | " + " | ".join(keys) + " | mIoU |",
                  "| --- | ---: | " + " | ".join("---:" for _ in keys) + " | ---: |"]
        for bucket, b in r.metrics.get("breakdown", {}).items():
            if not b or not b.get("n"):
                continue
            lines.append(f"| {bucket} | {b['n']} | " + " | ".join(_pct(b[k]) for k in keys) + f" | {_pct(b['mIoU'])} |")
        lines += _recall_lines(r.metrics)
        lines.append("")
    path = out / "report.md"
    write_bytes_atomic(path, "\n".join(lines).encode())
    return path


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _with_ci(metrics: dict, key: str) -> str:
    bounds = metrics.get("ci95", {}).get(key)
    text = _pct(metrics[key])
    return text if bounds is None else f"{text} [{bounds[0]:.1f}, {bounds[1]:.1f}]"


def _paired_lines(rows: list[dict]) -> list[str]:
    """The paired comparisons as a table: hits gained / lost by B against A, and p."""
    if not rows:
        return []
    keys = list(rows[0]["tests"])
    lines = ["", "## Paired comparisons", "",
             "Methods scored on the same queries: R1 hits B gains / loses against A at each "
             "threshold, and the exact two-sided sign (McNemar) test p-value.", "",
             "| benchmark | A | B | n | " + " | ".join(keys) + " |",
             "| --- | --- | --- | ---: | " + " | ".join("---" for _ in keys) + " |"]
    for row in rows:
        cells = [f"+{t['gained']} / −{t['lost']} (p={t['p']:.3g})" for t in row["tests"].values()]
        lines.append(f"| {row['benchmark']} | {row['a']} | {row['b']} | {row['n']} | " + " | ".join(cells) + " |")
    return lines


def format_markdown(metrics: dict) -> str:
    """The metrics as a Markdown table: one row for all queries, one per length bucket; then a
    line naming the protocol and the missing / extra prediction counts."""
    per_bucket = next(iter(metrics.get("breakdown", {}).values()), metrics)
    keys = [k for k in metrics if k.startswith("R1@") and k in per_bucket]
    head = ["subset", "n", *keys, "mIoU", "invalid"]
    edges = metrics.get("bucket_edges", list(BUCKET_EDGES))
    labels = {
        "short": f"short (GT < {edges[0]:g}·D)",
        "medium": f"medium ({edges[0]:g}–{edges[1]:g}·D)",
        "long": f"long (GT ≥ {edges[1]:g}·D)",
        UNKNOWN_BUCKET: "unknown D",
    }

    def row(label: str, m: dict) -> str:
        cells = [label, str(m["n"])]
        cells += ["–" if m[k] is None else f"{m[k]:.2f}" for k in (*keys, "mIoU")]
        cells.append(str(m["invalid"]))
        return "| " + " | ".join(cells) + " |"

    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
        row("all", metrics),
    ]
    for name, sub in metrics.get("breakdown", {}).items():
        lines.append(row(labels.get(name, name), sub))
    lines += _interval_lines(metrics) + _recall_lines(metrics)
    notes = []
    if "protocol" in metrics:
        rules = metrics.get("protocol_rules", {})
        notes.append(
            f"protocol: {metrics['protocol']} (IoU {rules.get('threshold', '>=')} m, "
            f"denominator: {rules.get('denominator', 'annotations')})"
        )
    if "missing" in metrics:
        notes.append(f"missing predictions: {metrics['missing']}")
        notes.append(f"extra predictions (qid in no annotation): {metrics['extra']}")
    if metrics.get("degenerate_gt"):
        notes.append(f"GT windows of zero length (kept, IoU 0): {metrics['degenerate_gt']}")
    if notes:
        lines += ["", "; ".join(notes)]
    return "\n".join(lines)


def _interval_lines(metrics: dict) -> list[str]:
    """One line: each R1 / mIoU 95 % bootstrap interval, and how it was drawn."""
    ci, how = metrics.get("ci95"), metrics.get("bootstrap")
    if not ci or not how:
        return []
    cells = [f"{k} {_interval(v)}" for k, v in ci.items()]
    return ["", f"95% bootstrap intervals over queries ({how['resamples']} resamples, seed "
                f"{how['seed']}): " + "; ".join(cells)]


def _interval(bounds) -> str:
    return "–" if bounds is None else f"[{bounds[0]:.2f}, {bounds[1]:.2f}]"


def recall_keys(metrics: dict) -> list[str]:
    """The R@k keys of the protocol's table, in its order (k within m)."""
    rules = metrics.get("protocol_rules", {})
    return [f"R{k}@{m}" for m in rules.get("recall_thresholds", []) for k in rules.get("recall_ks", [])
            if f"R{k}@{m}" in metrics]


def _recall_lines(metrics: dict) -> list[str]:
    """The protocol's R@k table (ranked windows), with how many windows the queries carried."""
    keys = recall_keys(metrics)
    if not keys:
        return []
    windows = metrics.get("ranked_windows", {})
    return [
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "|".join(["---:"] * len(keys)) + "|",
        "| " + " | ".join(_pct(metrics[k]) for k in keys) + " |",
        "",
        f"ranked windows per query: mean {windows.get('mean', 0):.2f}, max {windows.get('max', 0)}",
    ]
