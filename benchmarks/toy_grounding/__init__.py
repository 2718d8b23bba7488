"""Toy grounding: GRPO variants from one SFT start, on a synthetic task the tiny model can learn.

`run(quick=False)` (what benchmarks/run_all.py calls) builds the task (scenetg.toy_task: the SFT's
training split, a held-out split and GRPO's own split of fresh videos, each from its own seed), SFTs
the tiny Qwen2.5-VL once (toy_grounding.sft), runs GRPO from that checkpoint on GRPO's split for
each variant and seed (`scenetg.rl.train.train`), grounds the held-out split with each model and the
baselines (`scenetg.eval.grounding.ground`) and scores it (`compute_metrics`). Every stage is cached
under .cache/toy_grounding/, so a rerun only does what is missing. `python -m toy_grounding
[--seeds N]` (from benchmarks/) runs it and saves the result JSON to docs/toy_grounding/results.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

from .pipeline import (
    BETA,
    CACHE,
    GRPO_LR,
    QUICK,
    ROOT,
    VARIANTS,
    Sizes,
    evaluate,
    grpo_done,
    grpo_run,
    grpo_run_dir,
    heldout_scenes,
    prepare_data,
    publish_sft,
    random_scene_expectation,
    sft_checkpoint,
    split_overlap,
)

DOCS = ROOT / "docs" / "toy_grounding"
RESULTS = DOCS / "results.json"
READING = DOCS / "reading.md"


def _baselines(held, quick: bool, scenes: dict) -> dict:
    from scenetg.models.tiny import make_tiny_clip

    clip_dir = make_tiny_clip(CACHE / "tiny_clip")
    tag = "quick_" if quick else ""
    return {
        "center baseline": evaluate(held, "center", None, f"{tag}center", scenes),
        "clip baseline (tiny random CLIP)": evaluate(held, "clip", f"local-dir:{clip_dir}",
                                                     f"{tag}clip", scenes),
        "a random scene of the video, exact cuts (expected)": random_scene_expectation(held, scenes),
    }


def run(quick: bool = False, seeds: int = 3, finished_only: bool = False) -> dict:
    """The whole benchmark; `finished_only`: report the GRPO runs already finished (cached) and
    list the others as missing instead of training them (a report while a long run goes on)."""
    import torch

    from scenetg.grounding.loaders import load_annotations
    from scenetg.rl.curves import read_metrics

    from .report import changed_answers, curve_summary, plot_variant_curves

    torch.set_num_threads(1)  # 2 cores shared with other agents: one thread stalls least
    sizes = QUICK if quick else Sizes()
    t0 = time.perf_counter()
    train, held, grpo_split = prepare_data(sizes)
    sft_dir = sft_checkpoint(sizes, train)
    if not quick:
        publish_sft(sft_dir)
    sft_log = json.loads((sft_dir / "sft_log.json").read_text())
    tag = sizes.sft_key
    evals: dict[str, list[dict]] = {}
    curves: dict[str, list[list[dict]]] = {}
    scenes = heldout_scenes(sizes)
    evals.update({k: [v] for k, v in _baselines(held, quick, scenes).items()})
    if sizes.sft_more_steps:  # the first cycle's checkpoint, for comparison (cached predictions)
        first = replace(sizes, sft_more_steps=0)
        evals[f"SFT after the first cycle ({first.sft_steps} steps)"] = [
            evaluate(held, "model", str(CACHE / first.sft_key), f"{first.sft_key}_sft", scenes)]
    evals["SFT start"] = [evaluate(held, "model", str(sft_dir), f"{tag}_sft", scenes)]
    grpo_seconds = []
    records, _ = load_annotations(held.jsonl, videos_dir=held.videos)
    missing = []
    for seed in range(1 if quick else seeds):  # one seed of every variant first
        for v in VARIANTS:
            if finished_only and not grpo_done(grpo_run_dir(sizes, v, seed)):
                missing.append(f"{v.name}, seed {seed}")
                continue
            out = grpo_run(sizes, grpo_split, sft_dir, v, seed)
            logged = read_metrics(out / "metrics.jsonl")
            grpo_seconds += [r["train_runtime"] for r in logged if "train_runtime" in r][-1:]
            curves.setdefault(v.name, []).append([r for r in logged if "reward" in r])
            pred_tag = f"{out.parent.name}_{out.name}"
            ev = evaluate(held, "model", str(out / "final"), pred_tag, scenes)
            ev["vs_sft_start"] = changed_answers(
                records, CACHE / "preds" / f"{tag}_sft.jsonl", CACHE / "preds" / f"{pred_tag}.jsonl")
            evals.setdefault(f"GRPO {v.name}", []).append(ev)
    pngs = plot_variant_curves(curves, DOCS if not quick else CACHE / "quick_docs")
    extra = {"grpo_split": split_overlap(sizes), "curve_summary": curve_summary(curves),
             "grpo_runs_missing": missing}
    return _result(sizes, sft_log, evals, curves, pngs, quick, time.perf_counter() - t0, grpo_seconds,
                   extra)


def _cycles(sft_log: dict) -> str:
    cycles = sft_log.get("cycles")
    if not cycles:
        return "cosine"
    return (f"{len(cycles)} cosine cycles of " + " then ".join(f"{c:,}" for c in cycles)
            + " steps, the later ones warm restarts from the previous checkpoint")


def _result(sizes, sft_log, evals, curves, pngs, quick, seconds, grpo_seconds, extra) -> dict:
    import statistics
    from dataclasses import asdict

    from .report import results_table

    last = {name: [r[-1]["step"] if r else 0 for r in runs] for name, runs in curves.items()}
    fresh = extra["grpo_split"]
    md = [
        f"Synthetic task (benchmarks/toy_grounding): videos of 24–48 s (64×36 px, 4 fps), 8 equal "
        f"cells, 4–6 flat scenes in a fixed bright palette; the query names a colour (\"the green "
        f"scene\"), the answer is the scene in whole seconds. Three splits, each from its own seed: "
        f"SFT trains on {sizes.train_videos * sizes.per_video} queries from {sizes.train_videos} "
        f"videos; GRPO samples its prompts from a split of its own, {fresh['grpo_queries']} queries "
        f"from {fresh['grpo_videos']} fresh videos ({sizes.grpo_steps} steps × {sizes.grpo_prompts} "
        f"prompts: each prompt once); {sizes.heldout_videos} held-out queries come from other "
        f"videos again. Random layouts repeat rarely: {fresh['same_layout_videos_train']} GRPO "
        f"videos have the layout of an SFT video ({fresh['same_query_train']} GRPO queries are "
        f"the very same question), {fresh['same_layout_videos_heldout']} that of a held-out video "
        f"({fresh['same_query_heldout']} queries). 16 frames per video at i·D/16. Tiny Qwen2.5-VL (~240k parameters), SFT "
        f"{sft_log['steps']} steps (batch {sft_log['batch_size']}, AdamW lr {sft_log['lr']}, "
        f"{_cycles(sft_log)}), then GRPO ({sizes.grpo_steps} steps, {sizes.grpo_prompts} prompts × 8 "
        f"generations, at most 24 new tokens at T = 1, full fine-tune, lr {GRPO_LR}, β = {BETA}; "
        f"{statistics.median(grpo_seconds or [0]):.0f} s of training per run, median) from that one "
        f"checkpoint per variant and seed. Held-out R1@m as fractions (± = sd over seeds; standard "
        f"error of one R1@0.5 on {sizes.heldout_videos} queries ≈ 0.03). Sized for a 2-core machine shared with other "
        f"jobs (one torch thread): the SFT took {sft_log['log'][-1]['seconds'] / 60:.0f} min in all "
        f"(DESIGN's probe used 4,800 steps); GRPO uses {sizes.grpo_prompts} prompts per step "
        f"rather than 8. Each seed "
        f"reseeds GRPO's prompt order and sampling; the SFT start is the same checkpoint for all. "
        f"\"answer is exactly some scene\": the share of answers equal to one of the video's "
        f"scenes, named or not (reads the cuts from the frames).",
        "",
        *results_table(list(evals.items())),
        "",
        *([f"Not run yet (the table has the finished runs only): {'; '.join(extra['grpo_runs_missing'])}.", ""]
          if extra["grpo_runs_missing"] else []),
        "Curves (one line per variant and seed; same seed, same prompts in the same order, so "
        "lines of one seed move together; the total reward is not comparable across reward sets, "
        "the IoU reward is):",
        "",
        *(f"![{p.stem}](toy_grounding/{p.name})" for p in pngs),
        "",
    ]
    if READING.is_file() and not quick:
        md += ["**Reading** (written by hand for the recorded results.json):", "",
               READING.read_text().strip()]
    return {"sizes": asdict(sizes), "quick": quick, "sft": sft_log, "evals": evals, **extra,
            "grpo_steps_done": last, "grpo_run_seconds": [round(x, 1) for x in grpo_seconds],
            "wall_seconds_this_call": round(seconds, 1), "markdown": "\n".join(md)}


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--finished-only", action="store_true",
                    help="report the finished GRPO runs, list the rest as missing (trains nothing)")
    args = ap.parse_args(argv)
    result = run(quick=args.quick, seeds=args.seeds, finished_only=args.finished_only)
    if not args.quick:
        DOCS.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(result["markdown"])

