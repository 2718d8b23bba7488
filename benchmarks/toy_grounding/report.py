"""Curves (PNG) and the markdown table of the toy benchmark."""

from __future__ import annotations

import statistics
from pathlib import Path

CURVES = (
    ("reward", "total reward (weighted sum)"),
    ("rewards/iou_reward/mean", "IoU reward"),
)


def smooth(values: list[float], window: int = 25) -> list[float]:
    out = []
    for i in range(len(values)):
        part = values[max(0, i - window + 1): i + 1]
        out.append(sum(part) / len(part))
    return out


def plot_variant_curves(curves: dict[str, list[list[dict]]], out_dir: Path) -> list[Path]:
    """One PNG per logged quantity: a line per (variant, seed), moving average of 25 steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for key, label in CURVES:
        fig, ax = plt.subplots(figsize=(7, 4))
        for c, (variant, runs) in enumerate(curves.items()):
            for s, rows in enumerate(runs):
                pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
                if not pts:
                    continue
                steps, vals = zip(*pts, strict=True)
                ax.plot(steps, smooth(list(vals)), color=colours[c % len(colours)], alpha=0.85,
                        linestyle=("-", "--", ":")[s % 3], label=f"{variant} (seed {s})")
        ax.set_xlabel("GRPO step")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per step (moving average of 25)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{key.replace('/', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _mean(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(sum(vals) / len(vals), 4) if vals else None


def curve_summary(curves: dict[str, list[list[dict]]], window: int = 50) -> dict[str, list[dict]]:
    """Per variant, per seed: the training IoU reward over the first and the last `window` steps,
    and over the last `window` steps the share of groups whose rewards were all equal (no
    learning signal) and the KL on timestamp vs other tokens."""
    out: dict[str, list[dict]] = {}
    for variant, runs in curves.items():
        for rows in runs:
            first, last = rows[:window], rows[-window:]
            out.setdefault(variant, []).append({
                "steps": len(rows),
                "iou_first": _mean(first, "rewards/iou_reward/mean"),
                "iou_last": _mean(last, "rewards/iou_reward/mean"),
                "zero_std_groups_last": _mean(last, "frac_reward_zero_std"),
                "kl_timestamp_last": _mean(last, "kl_timestamp"),
                "kl_other_last": _mean(last, "kl_other"),
            })
    return out


def changed_answers(records, before: Path, after: Path) -> dict:
    """Paired comparison of two prediction files of the same `records`: how many answers differ,
    and how many queries `after` newly gets right at IoU ≥ 0.5 (gained) or no longer does (lost).
    Both models answer the same queries, so gained − lost is the change in R1@0.5 hits without
    the between-query noise of two unpaired scores."""
    from scenetg.eval.metrics import per_query_iou
    from scenetg.eval.predictions import read_predictions

    a, b = read_predictions(before), read_predictions(after)
    a_of, b_of = dict(a.items()), dict(b.items())
    hit_a, hit_b = per_query_iou(records, a) >= 0.5, per_query_iou(records, b) >= 0.5
    return {"changed": sum(a_of.get(q) != b_of.get(q) for q in set(a_of) | set(b_of)),
            "gained": int((hit_b & ~hit_a).sum()), "lost": int((hit_a & ~hit_b).sum())}


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    sd = statistics.stdev(values)
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def results_table(rows: list[tuple[str, list[dict]]]) -> list[str]:
    """Markdown rows: name, seeds, R1@0.5, R1@0.7, mIoU (mean ± sd over seeds), distinct answers,
    and for a trained model the paired R1@0.5 hits gained and lost against the SFT start."""
    lines = ["| method | seeds | R1@0.5 | R1@0.7 | mIoU | answer is exactly some scene | "
             "distinct answers | R1@0.5 hits vs the SFT start (gained / lost, per seed) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, evals in rows:
        cols = [spread([e[k] for e in evals]) for k in ("R1@0.5", "R1@0.7", "mIoU")]
        cols.append(spread([e.get("any_scene_exact", float("nan")) for e in evals]))
        per_seed = " / ".join(f"{e['R1@0.5']:.3f}" for e in evals) if len(evals) > 1 else ""
        if per_seed:
            cols[0] += f" ({per_seed})"
        distinct = "/".join(str(e["distinct_answers"] or "–") for e in evals)
        paired = ", ".join(f"+{e['vs_sft_start']['gained']} −{e['vs_sft_start']['lost']}"
                           for e in evals if "vs_sft_start" in e)
        lines.append(f"| {name} | {len(evals)} | {' | '.join(cols)} | {distinct} | {paired} |")
    return lines
