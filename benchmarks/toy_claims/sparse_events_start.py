"""The sparse_events follow-up's start (issue 16, claim 1): a short `scenetg train --algo sft`
stage from the shipped toy SFT on a sparse TRAINING split of its own (seed `SFT_SEED`: other
videos than the GRPO prompts and the held-out split; the same 32 frames at 64 px), sized so the
start is weak but not blind. `probe` measures a few step counts (held-out scores and T=1 rollout
overlap) and `CHOSEN_STEPS` records the one picked by the rule in `RULE`; `sparse_events.run`
then runs the same GRPO comparison from it (``start="sparse_sft"``).
"""

from __future__ import annotations

import json
from pathlib import Path

from scenetg.toy_task import ToySplit
from toy_claims.common import SHIPPED_SFT, write_json

SFT_SEED = 50_000
"""Seed of the SFT training split (GRPO prompts: 30000, held-out: 40000)."""
SFT_VIDEOS, SFT_PER_VIDEO = 300, 3
"""Training videos and queries per video (every event of a video: 1–3)."""
SFT_BATCH, SFT_LR = 16, 1e-3
"""Batch and peak lr (cosine to 0 after steps/50 of warm-up, as the toy SFT recipe; lr as the
forgetting regime's SFT stage)."""
PROBE_STEPS = (25, 75, 200)
"""SFT step counts measured before choosing (each a separate run from the shipped SFT)."""
CHOSEN_STEPS = 25
"""The step count picked from the probes: none met `RULE`'s R1@0.3 range, so (fallback decided
after the probes) the one closest to it: the highest held-out R1@0.3 with rollout overlap under
half (25 steps: R1@0.3 0.031, 17.7 % of rollouts overlap; 75: 0.013, 5.2 %; 200: 0.013, 13.5 %)."""
RULE = ("the start should be weak but not blind: held-out R1@0.3 roughly 0.05–0.25 and T=1 rollout overlap "
        "well under half (the brief's rule). None of the probes met the R1@0.3 range (none reads the colour: "
        "centre correlation within ±0.1 for all), so the pick, decided after the probes, is the one closest to "
        "it: the highest held-out R1@0.3 among those with rollout overlap under half, which is also the highest "
        "overlap")
SEEDS = (0, 1, 2, 3, 4)
"""GRPO seeds of the follow-up (the main runs'; a seed missing at the deadline is dropped here)."""
EXPECTED_DATE = "2026-12-06, committed in d9bc7b1 at 20:29 UTC, before any follow-up GRPO run"
EXPECTED = """\
From the 25-step sparse-SFT start (held-out R1@0.3 0.031, the same as the frame-blind 2-s answer
at the middle of the video; centre correlation 0.06, so it does not yet read the colour; 17.7 % of
its T=1 rollouts overlap the target and 46 % of 8-rollout groups hold one, against 4.7 % and 21 %
for the shipped start), IoU-only groups should have zero advantage less often than in the main
runs (0.52) but still clearly more often than IoU+CenDist (paired by step, as above). Because the
start does not read the colour, we expect the main runs' outcome again: CenDist pulls answers
towards the middle of the video and keeps them narrow, IoU only widens them; IoU+CenDist may
gain R1@0.3 hits over IoU only pooled, but we do not expect it to end above the blind middle
answer (R1@0.3 0.031) or its centres to follow the event (correlation below 0.2). So we expect
claim 1 not to show from this start either; it shows only if IoU+CenDist beats IoU only (pooled
paired p < 0.05, more seeds ahead than behind) and the blind middle answer."""
"""The follow-up's expected outcome, written before its GRPO runs (kept verbatim in the doc)."""
START_NAME = "sparse_sft"
QUICK_STEPS = 2


def sft_split(root: Path, quick: bool = False) -> ToySplit:
    """The SFT training split (cached under ``root/sft_s<seed>_<n>``)."""
    from toy_claims.sparse_events import make_sparse_split

    n = 4 if quick else SFT_VIDEOS
    return make_sparse_split(root, f"sft_s{SFT_SEED}_{n}", n, SFT_PER_VIDEO, SFT_SEED)


def sft_stage(split: ToySplit, out: Path, steps: int, frame_cache: Path, seed: int = 0) -> Path:
    """One `scenetg train --algo sft` run from the shipped SFT (full fine-tuning, fp32, CPU,
    whole-second targets, the regime's 32-frame sampling); its ``final/`` (cached) with
    ``sft_log.json``."""
    from scenetg.rl.config import train_config_from_dict
    from scenetg.rl.curves import read_metrics
    from scenetg.rl.train import train
    from toy_claims.sparse_events import SAMPLING

    final = out / "final"
    if (final / "sft_log.json").is_file():
        return final
    cfg = train_config_from_dict({
        "algo": "sft", "model": str(SHIPPED_SFT), "output_dir": str(out), "device": "cpu", "dtype": "float32",
        "freeze_vision": False, "lora": {"enabled": False}, "frame_cache": str(frame_cache),
        "data": {"dataset": str(split.jsonl), "video_root": str(split.videos), "split": None},
        "sampling": SAMPLING,
        "sft": {"answer_decimals": 0, "per_device_train_batch_size": SFT_BATCH, "learning_rate": SFT_LR,
                "weight_decay": 0.0, "lr_scheduler_type": "cosine", "warmup_steps": max(1, steps // 50),
                "max_grad_norm": 1.0, "max_steps": steps, "logging_steps": min(5, steps),
                "save_strategy": "no", "report_to": "none", "seed": seed, "data_seed": seed},
    })
    summary = train(cfg, overwrite=True)
    log = [{"step": r["step"], "loss": r["loss"]} for r in read_metrics(summary.metrics_path) if "loss" in r]
    (summary.final_dir / "sft_log.json").write_text(json.dumps(
        {"steps": steps, "batch_size": SFT_BATCH, "lr": SFT_LR, "seed": seed, "seconds": round(summary.seconds, 1),
         "train_queries": len(split.rows), "trainer": "scenetg train --algo sft", "log": log}, indent=1))
    return summary.final_dir


def start_dir(root: Path, steps: int) -> Path:
    return root / "starts" / f"sft_s{SFT_SEED}_n{steps}_lr{SFT_LR:g}"


def probe(root: Path, held: ToySplit, grpo: ToySplit, regime: str, rollout_prompts: int,
          steps_list=PROBE_STEPS, quick: bool = False) -> dict:
    """For each SFT step count: the stage's seconds and final loss, held-out greedy scores and
    answer stats, and T=1 rollout overlap on the first `rollout_prompts` GRPO prompts (as
    `sparse_events` measures the shipped start); cached in ``root/probe_sft.json``."""
    from toy_claims.common import ground_ious, scores
    from toy_claims.sparse_events import SAMPLING, answer_stats, rollout_overlap

    path = root / ("probe_sft_quick.json" if quick else "probe_sft.json")
    out = json.loads(path.read_text()) if path.is_file() else {}
    split = sft_split(root / "data", quick)
    for steps in steps_list:
        if str(steps) in out:
            continue
        model = sft_stage(split, start_dir(root, steps), steps, root / "frames")
        log = json.loads((model / "sft_log.json").read_text())
        tag = f"start_sft{steps}_h{len(held.rows)}"
        ious = ground_ious(held, model, tag, SAMPLING, regime)
        out[str(steps)] = {"sft_seconds": log["seconds"], "loss_first": log["log"][0]["loss"] if log["log"] else None,
                           "loss_last": log["log"][-1]["loss"] if log["log"] else None,
                           "heldout": scores(ious) | answer_stats(regime, tag, held),
                           "rollouts": rollout_overlap(model, grpo, rollout_prompts)}
        write_json(path, out)
        print(f"probe sft {steps}: {out[str(steps)]}", flush=True)
    return out


def start_model(root: Path, quick: bool = False) -> tuple[Path, dict]:
    """The chosen start (trained if not cached) and its record for the results JSON."""
    steps = QUICK_STEPS if quick else CHOSEN_STEPS
    split = sft_split(root / "data", quick)
    model = sft_stage(split, start_dir(root, steps), steps, root / "frames")
    log = json.loads((model / "sft_log.json").read_text())
    return model, {"name": START_NAME, "sft_steps": steps, "sft_seed": SFT_SEED, "sft_videos": len({
        r["vid"] for r in split.rows}), "sft_queries": len(split.rows), "sft_lr": SFT_LR, "sft_batch": SFT_BATCH,
        "sft_seconds": log["seconds"], "rule": RULE, "model": str(model.relative_to(root.parents[2]))
        if root.parents[2] in model.parents else str(model)}


def probe_results(root: Path, quick: bool = False) -> dict:
    """The probes' JSON (empty when none ran: the quick run trains its start without probes)."""
    path = root / ("probe_sft_quick.json" if quick else "probe_sft.json")
    return json.loads(path.read_text()) if path.is_file() else {}
