"""R@k over ranked windows and bootstrap intervals at MAD's size: what `--protocol mad` and
`--bootstrap` add to `scenetg eval`.

Synthetic MAD-like test split: 72,000 queries (quick: 7,200) on 2-hour movies, GT windows of
2-20 s, 100 ranked windows per query (one in five queries has a window near its GT at a random
rank). Rows (best of `repeats`):
- R@k table, vectorised: `compute_metrics(gt, predictions, protocol="mad")` (R1, mIoU and the
  15 R@{1,5,10,50,100}@{0.1,0.3,0.5}) on all queries.
- the same, plain loop (`reference_metrics_loop`) on the first 2,000 queries, against the
  vectorised path on the same 2,000: the ratio is per query, same inputs, same answers (checked).
- bootstrap: the extra time of `bootstrap=1000` (95 % intervals of R1@0.3/0.5/0.7 and mIoU).
"""

from __future__ import annotations

import argparse

import numpy as np
from bench_common import best_time

from scenetg.eval.metrics import GroundTruth, compute_metrics
from scenetg.eval.metrics_loop import reference_metrics_loop
from scenetg.eval.predictions import PredictionSet
from scenetg.grounding.records import GroundingRecord

WINDOWS = 100
LOOP_QUERIES = 2_000


def synthetic(n: int, seed: int = 0):
    """`n` MAD-like records and a PredictionSet with 100 ranked windows each (arrays built
    directly: building 7.2M tuples would time Python, not the metrics)."""
    rng = np.random.default_rng(seed)
    durations = rng.uniform(5400, 9000, n)
    starts = rng.uniform(0, durations - 30)
    lengths = rng.uniform(2, 20, n)
    records = [GroundingRecord(f"q{i:06d}", f"m{i % 160}", float(d), "x", [(float(s), float(s + w))])
               for i, (d, s, w) in enumerate(zip(durations, starts, lengths, strict=True))]
    ws = rng.uniform(0, durations[:, None] - 30, (n, WINDOWS))
    we = ws + rng.uniform(2, 30, (n, WINDOWS))
    near = rng.random(n) < 0.2
    rank = rng.integers(0, WINDOWS, n)
    jitter = rng.uniform(-3, 3, n)
    ws[near, rank[near]] = starts[near] + jitter[near]
    we[near, rank[near]] = starts[near] + lengths[near] + jitter[near]
    windows = np.stack([ws, we], axis=2).reshape(-1, 2)
    offsets = np.arange(0, n * WINDOWS + 1, WINDOWS, dtype=np.int64)
    index = {r.qid: i for i, r in enumerate(records)}
    return records, PredictionSet(index, windows[offsets[:-1]].copy(), (windows, offsets))


def run(quick: bool = False) -> dict:
    n = 7_200 if quick else 72_000
    repeats = 1 if quick else 3
    records, preds = synthetic(n)
    gt = GroundTruth.from_records(records, "mad")
    vec_s, vec = best_time(lambda: compute_metrics(gt, preds, protocol="mad"), repeats)
    boot_s, boot = best_time(lambda: compute_metrics(gt, preds, protocol="mad", bootstrap=1000), repeats)

    sub = records[:LOOP_QUERIES]
    gt_sub = GroundTruth.from_records(sub, "mad")
    sub_vec_s, sub_vec = best_time(lambda: compute_metrics(gt_sub, preds, protocol="mad"), repeats)
    loop_s, loop = best_time(lambda: reference_metrics_loop(sub, preds, protocol="mad"), 1)
    keys = [k for k in sub_vec if k.startswith("R")]
    assert {k: sub_vec[k] for k in keys} == {k: loop[k] for k in keys}  # same answers
    assert all(boot[k] == vec[k] for k in keys)

    lines = [
        f"MAD-sized R@k: {n:,} queries x {WINDOWS} ranked windows (best of {repeats}).",
        "",
        "| path | queries | time (s) | windows/s |",
        "|---|---:|---:|---:|",
        f"| `compute_metrics(..., protocol=\"mad\")` (R1, mIoU, 15 R@k) | {n:,} | {vec_s:.3f} | "
        f"{n * WINDOWS / vec_s:,.0f} |",
        f"| the same, plain loop (`reference_metrics_loop`) | {LOOP_QUERIES:,} | {loop_s:.3f} | "
        f"{LOOP_QUERIES * WINDOWS / loop_s:,.0f} |",
        f"| the same, vectorised | {LOOP_QUERIES:,} | {sub_vec_s:.3f} | "
        f"{LOOP_QUERIES * WINDOWS / sub_vec_s:,.0f} |",
        f"| + `bootstrap=1000` (95 % intervals of R1 x 3 and mIoU) | {n:,} | {boot_s:.3f} | – |",
        "",
        f"Vectorised R@k is {loop_s / sub_vec_s:.0f}x the per-query loop on the same "
        f"{LOOP_QUERIES:,} queries (identical R@k). 1,000 bootstrap resamples of {n:,} queries add "
        f"{boot_s - vec_s:.2f} s ({boot_s / vec_s:.1f}x the scoring itself). On this data: "
        f"R1@0.5 {vec['R1@0.5']:.2f}, R100@0.5 {vec['R100@0.5']:.2f}.",
    ]
    return {
        "name": "recall_at_k",
        "n": n,
        "windows": WINDOWS,
        "vectorised_s": vec_s,
        "loop_queries": LOOP_QUERIES,
        "loop_s": loop_s,
        "vectorised_same_queries_s": sub_vec_s,
        "ratio": loop_s / sub_vec_s,
        "bootstrap_s": boot_s,
        "markdown": "\n".join(lines),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="7,200 queries, one run")
    print(run(quick=parser.parse_args().quick)["markdown"])


if __name__ == "__main__":
    main()
