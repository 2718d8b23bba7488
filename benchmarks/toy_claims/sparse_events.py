"""Claim 1 (CenDist is a denser reward that helps where key events are sparse), on toy videos
where the queried event is ~3 % of the video.

Data: `scenetg.toy_task` videos stretched out. A video lasts D ∈ [60, 64] whole seconds and is
cut into short grey filler scenes (2–6 s; named greys added to the palette, each differing from
its neighbours by ≥ 40 in luma, so cuts are visible) with 1–3 event scenes of EVENT_S = 2 s in
distinct `PALETTE` colours (each colour once per video). A query names one event's colour ("the
green scene"); its answer is that event's span. 32 frames at i·D/32 are ≤ 2 s apart, so every
2-s event holds at least one sampled frame.

Start: the shipped toy SFT checkpoint (8-cell videos of 24–48 s, 16 frames), whose answers on
these long videos rarely overlap a 2-s target. Variants: GRPO with IoU only vs IoU+CenDist (same
format weight, β, β_ts, lr, seeds, prompts). Reported: held-out R1@0.3/0.5 and mIoU at fixed step
counts, the share of zero-advantage groups per step, the training IoU reward, and paired hits
gained/lost at the final step per seed and pooled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from scenetg.toy_task import PALETTE, ToySplit, ToyVideo, luma, write_split
from toy_claims.common import (
    CACHE,
    DOCS,
    SHIPPED_SFT,
    ground_ious,
    grpo_run,
    logged_steps,
    scores,
    write_json,
)
from toy_claims.sparse_events_measures import (
    answer_stats,
    hit_positions,
    middle_baseline,
    rollout_overlap,
)
from toy_claims.sparse_events_report import summarise, write_doc

GREYS: dict[str, tuple[int, int, int]] = {
    "grey30": (30, 30, 30),
    "grey80": (80, 80, 80),
    "grey130": (130, 130, 130),
    "grey180": (180, 180, 180),
    "grey230": (230, 230, 230),
}
"""Filler scene colours: five greys 50 luma apart (never queried)."""
SPARSE_PALETTE = {**PALETTE, **GREYS}

DURATION_S = (60, 64)
"""Video duration range (whole seconds, both ends included): a 2-s event is 3.1–3.3 % of it."""
EVENT_S = 2
EVENTS = (1, 3)
FILLER_S = (2, 6)
MIN_LUMA_STEP = 40.0
SAMPLING = {"fps": 1.0, "max_frames": 32, "max_side": 64}
"""k = min(⌊D⌋, 32) = 32 frames at i·D/32, ≤ 2 s apart: every 2-s event holds a sampled frame.
(64 frames cost ~3 s per GRPO step against ~1.5 s: the compute budget chose 32 and D ≤ 64.)"""


def _fillers(rng: np.random.Generator, total: int) -> list[int]:
    """Whole-second filler lengths in FILLER_S summing to `total` (≥ FILLER_S[0])."""
    out: list[int] = []
    left = total
    while left > FILLER_S[1]:
        d = int(rng.integers(FILLER_S[0], FILLER_S[1] + 1))
        if 0 < left - d < FILLER_S[0]:
            continue
        out.append(d)
        left -= d
    if left:
        out.append(left)
    return out


def make_sparse_spec(rng: np.random.Generator, vid: str) -> ToyVideo:
    """One long video: grey fillers with 1–3 EVENT_S-second events in distinct palette colours,
    never at the very start or end and never adjacent to each other."""
    duration = int(rng.integers(DURATION_S[0], DURATION_S[1] + 1))
    n_events = int(rng.integers(EVENTS[0], EVENTS[1] + 1))
    event_colours = [list(PALETTE)[i] for i in rng.permutation(len(PALETTE))[:n_events]]
    # n_events + 1 filler gaps, each ≥ FILLER_S[0]; the rest of the time spread at random
    free = duration - n_events * EVENT_S - (n_events + 1) * FILLER_S[0]
    cuts = np.sort(rng.integers(0, free + 1, size=n_events))
    gaps = np.diff(np.concatenate([[0], cuts, [free]])) + FILLER_S[0]
    names, lengths = [], []
    for g, gap in enumerate(gaps):
        for d in _fillers(rng, int(gap)):
            names.append(None)
            lengths.append(d)
        if g < n_events:
            names.append(event_colours[g])
            lengths.append(EVENT_S)
    greys = list(GREYS)
    colours: list[str] = []
    for i, name in enumerate(names):
        if name is not None:
            colours.append(name)
            continue
        nxt = names[i + 1] if i + 1 < len(names) else None
        ok = [g for g in greys
              if (not colours or abs(luma(GREYS[g]) - luma(SPARSE_PALETTE[colours[-1]])) >= MIN_LUMA_STEP)
              and (nxt is None or abs(luma(GREYS[g]) - luma(PALETTE[nxt])) >= MIN_LUMA_STEP)]
        colours.append(str(rng.choice(ok)))
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(int).tolist()
    assert bounds[-1] == duration
    return ToyVideo(vid, duration, tuple(colours), tuple(bounds))


def event_colours(spec: ToyVideo) -> list[str]:
    return [c for c in spec.colours if c in PALETTE]


def sparse_specs(name: str, n_videos: int, per_video: int, seed: int):
    """``(ToyVideo, [queried colour, ...])`` per video, in order (up to `per_video` events each)."""
    rng = np.random.default_rng(seed)
    for v in range(n_videos):
        spec = make_sparse_spec(rng, f"{name}{v:05d}")
        events = event_colours(spec)
        picks = rng.permutation(len(events))[:per_video].tolist()
        yield spec, [events[i] for i in picks]


def make_sparse_split(root: Path, name: str, n_videos: int, per_video: int, seed: int) -> ToySplit:
    """`toy_task.make_split` for sparse videos: videos + Moment-DETR JSONL under ``root/name``,
    cached (the JSONL is written last)."""
    return write_split(root, name, lambda: sparse_specs(name, n_videos, per_video, seed), SPARSE_PALETTE)


@dataclass(frozen=True)
class Sizes:
    grpo_videos: int = 240
    """GRPO prompt split: one query per video, so `steps` × `prompts` ≤ this sees each once."""
    heldout_videos: int = 160
    """Held-out split: one query per video (other seed, other videos)."""
    steps: int = 48
    prompts: int = 4
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    save_steps: int = 16
    """Checkpoints every so many steps: held-out curves at 0, 16, 32, 48."""
    lr: float = 1e-3
    rollout_prompts: int = 24
    """GRPO prompts whose 8 T=1 rollouts from the start measure its overlap rate."""

    @property
    def key(self) -> str:
        return (f"g{self.grpo_videos}_h{self.heldout_videos}_s{self.steps}x{self.prompts}"
                f"_lr{self.lr:g}_e{self.save_steps}")


FULL = Sizes()
QUICK = Sizes(grpo_videos=4, heldout_videos=4, steps=2, prompts=2, seeds=(0,), save_steps=1,
              rollout_prompts=2)

BETA, BETA_TS = 0.04, 0.0
VARIANTS = {
    "iou only": {"iou": 1.0, "cendist": 0.0, "format": 0.5},
    "iou+cendist": {"iou": 1.0, "cendist": 1.0, "format": 0.5},
}
"""The two GRPO variants: same format weight, β, β_ts (token-aware KL, the project default), lr,
seeds and prompts; only the CenDist weight differs."""
GRPO_SEED, HELDOUT_SEED = 30_000, 40_000
REGIME = "sparse_events"

EXPECTED = """\
From a start whose answers on these videos almost never overlap a 2-s event (measured below:
held-out R1@0.3 near 0), most 8-rollout groups under IoU only get the same reward for every
rollout (IoU 0 everywhere; only the format reward can differ), so their advantage is zero and
they teach nothing: `frac_reward_zero_std` should stay high for IoU only and low for IoU+CenDist,
whose centre distance ranks every pair of valid answers. We therefore expect IoU+CenDist to move
held-out answers towards the event (mIoU and R1@0.3 up from the start, more than IoU only) and
to gain more hits than it loses against IoU only at the final step, pooled over 5 seeds. The
budget is small (48 steps × 4 prompts per run), so we expect gains of a few points at most; R1@0.5
on a 2-s target needs a ~2-4 s answer at the right place, which may stay out of reach of both
variants in this budget. If the two variants end level, the claim does not show here."""
"""The expected outcome, written before the full runs (kept verbatim in the doc)."""


def data(root: Path, sizes: Sizes) -> tuple[ToySplit, ToySplit]:
    grpo = make_sparse_split(root, f"grpo_s{GRPO_SEED}_{sizes.grpo_videos}", sizes.grpo_videos, 1, GRPO_SEED)
    held = make_sparse_split(root, f"heldout_s{HELDOUT_SEED}_{sizes.heldout_videos}", sizes.heldout_videos, 1,
                             HELDOUT_SEED)
    return grpo, held


def eval_folder(run_dir: Path, step: int, steps: int) -> Path:
    """The model of `run_dir` after `step` steps: ``final/`` at the last step, else
    ``checkpoint-<step>/``'s weights with ``final/``'s config, tokenizer and processor (a
    model-only checkpoint has no processor)."""
    import shutil

    if step == steps:
        return run_dir / "final"
    out = run_dir / f"eval-{step}"
    if (out / "model.safetensors").is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run_dir / "final", tmp, ignore=shutil.ignore_patterns("*.safetensors"))
    shutil.copy2(run_dir / f"checkpoint-{step}" / "model.safetensors", tmp / "model.safetensors")
    tmp.rename(out)
    return out


class _Clock:
    """Seconds of each stage that actually ran, kept in ``compute.json`` beside the cache (a
    cached stage adds nothing; a rerun reports the seconds of the run that made it)."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds = json.loads(path.read_text()) if path.is_file() else {}

    def __call__(self, name: str, fn, done: bool):
        import time

        t = time.perf_counter()
        out = fn()
        if not done:
            self.seconds[name] = round(time.perf_counter() - t, 1)
            write_json(self.path, self.seconds)
        return out


def _train_rows(run_dir: Path) -> list[dict]:
    keys = {"reward": "reward", "iou": "rewards/iou_reward/mean", "cendist": "rewards/cendist_reward/mean",
            "zero_std": "frac_reward_zero_std", "kl_ts": "kl_timestamp", "kl_other": "kl_other",
            "step_time": "step_time"}
    return [{"step": r.get("step", i + 1), **{k: r.get(v) for k, v in keys.items()}}
            for i, r in enumerate(logged_steps(run_dir))]


def run(quick: bool = False) -> dict:
    """Every stage (cached): data, the start's held-out scores and rollout overlap, GRPO runs of
    both variants × seeds with checkpoints, held-out evals along the way, paired tests, first from
    the shipped SFT, then the follow-up from the sparse-SFT start (`sparse_events_start`); writes
    the doc, JSON and PNGs (quick: tiny sizes, written under CACHE/quick_docs) and returns the
    README summary rows (the follow-up's labelled "sparse-SFT start")."""
    import torch

    from toy_claims import sparse_events_start as ss

    torch.set_num_threads(1)
    sizes = QUICK if quick else FULL
    results = regime_results(sizes, quick, "shipped")
    fu = regime_results(sizes, quick, ss.START_NAME)
    results["followup_sparse_sft"] = fu
    results["readme_rows"] = results["readme_rows"] + fu["readme_rows"]
    docs = CACHE / "quick_docs" if quick else DOCS
    write_json(docs / REGIME / "results.json", results)
    write_doc(results, docs)
    return {"regime": REGIME, "claim": results["claim"], "readme_rows": results["readme_rows"]}


def regime_results(sizes: Sizes, quick: bool, start: str = "shipped") -> dict:
    """The regime's results JSON from `start`: "shipped" (the shipped toy SFT, the main runs) or
    "sparse_sft" (the follow-up: `sparse_events_start.start_model`, its runs and evals named with
    a ``sft<steps>_`` prefix in the same cache, on the same prompts and held-out queries)."""
    from toy_claims import sparse_events_start as ss

    regime = REGIME + ("_quick" if quick else "")
    root = CACHE / regime
    grpo, held = data(root / "data", sizes)
    model, prefix, start_info, expected = SHIPPED_SFT, "", None, EXPECTED
    seeds = sizes.seeds
    if start != "shipped":
        model, start_info = ss.start_model(root, quick)
        prefix, expected = f"sft{start_info['sft_steps']}_", ss.EXPECTED
        seeds = tuple(s for s in seeds if s in ss.SEEDS) if not quick else seeds
    clock = _Clock(root / f"compute_{prefix}{sizes.key}.json")
    frames = root / "frames"
    start_tag = f"start_{prefix}h{sizes.heldout_videos}"
    start_ious = clock("eval start", lambda: ground_ious(held, model, start_tag, SAMPLING, regime),
                       done=_preds_done(regime, start_tag, len(held.rows)))
    overlap_path = root / f"overlap_{prefix}{sizes.key}.json"
    if not overlap_path.is_file():
        ov = clock("start rollouts", lambda: rollout_overlap(model, grpo, sizes.rollout_prompts), done=False)
        write_json(overlap_path, ov)
    overlap = json.loads(overlap_path.read_text())
    eval_steps = list(range(sizes.save_steps, sizes.steps + 1, sizes.save_steps))
    if eval_steps[-1] != sizes.steps:
        eval_steps.append(sizes.steps)
    runs: dict = {}
    final_ious: dict = {}
    for seed in seeds:  # seed-major: a killed run leaves whole seeds of both variants
        for name, rewards in VARIANTS.items():
            out = root / "runs" / f"{prefix}{sizes.key}_{name.replace('+', '_').replace(' ', '_')}_seed{seed}"
            clock(f"grpo {name} seed {seed}", lambda out=out, rewards=rewards, seed=seed: grpo_run(
                model, grpo, out, SAMPLING, rewards=rewards, beta=BETA, beta_timestamp=BETA_TS,
                steps=sizes.steps, prompts=sizes.prompts, seed=seed, lr=sizes.lr, save_steps=sizes.save_steps,
                frame_cache=frames), done=(out / "final" / "config.json").is_file())
            curve = {0: scores(start_ious) | answer_stats(regime, start_tag, held)}
            for step in eval_steps:
                tag = f"{out.name}_step{step}_h{sizes.heldout_videos}"
                ious = clock(f"eval {name} seed {seed} step {step}", lambda out=out, step=step, tag=tag: ground_ious(
                    held, eval_folder(out, step, sizes.steps), tag, SAMPLING, regime),
                    done=_preds_done(regime, tag, len(held.rows)))
                curve[step] = scores(ious) | answer_stats(regime, tag, held)
            final_ious.setdefault(name, {})[seed] = ious
            runs.setdefault(name, {})[str(seed)] = {"curve": {str(k): v for k, v in curve.items()},
                                                    "train": _train_rows(out)}
    shares = [(r["relevant_windows"][0][1] - r["relevant_windows"][0][0]) / r["duration"] for r in held.rows]
    setup = {"regime": REGIME, "expected": expected, "sampling": SAMPLING, "variants": VARIANTS, "beta": BETA,
             "beta_timestamp": BETA_TS,
             "data": {"grpo_queries": len(grpo.rows), "heldout_queries": len(held.rows),
                      "duration_s": list(DURATION_S), "event_s": EVENT_S,
                      "event_share": {"min": min(shares), "mean": float(np.mean(shares)), "max": max(shares)},
                      "grpo_seed": GRPO_SEED, "heldout_seed": HELDOUT_SEED},
             "middle_baseline": middle_baseline(held), "hits_at_0.3": hit_positions(final_ious, held)}
    sz = sizes if start == "shipped" else replace(sizes, seeds=seeds)
    res = summarise(sz, setup, start_ious, overlap, runs, final_ious, clock.seconds)
    if start_info is not None:
        res["start"] |= {"model": start_info.pop("model"), "sft": start_info}
        res["probe"], res["expected_date"] = ss.probe_results(root, quick), ss.EXPECTED_DATE
        for row in res["readme_rows"]:
            row["comparison"] = f"sparse-SFT start ({start_info['sft_steps']} SFT steps), {row['comparison']}"
    return res


def _preds_done(regime: str, tag: str, n: int) -> bool:
    path = CACHE / regime / "preds" / f"{tag}.jsonl"
    return path.is_file() and sum(1 for line in path.read_text().splitlines() if line.strip()) >= n
