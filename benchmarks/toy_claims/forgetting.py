"""Forgetting regime of issue 16 (claims 2 and 3): does GRPO learn grounding without the
forgetting of SFT, and does token-aware KL (β_ts = 0) let timestamps move while the rest stays?

The start model knows two skills on the standard toy videos (`scenetg.toy_task`): grounding
("the green scene" -> ``<answer>S - E</answer>``) and a second one, palette-order knowledge asked
with the video in the prompt ("Which colour comes after green?" -> ``cyan``: 16 facts, the toy
stand-in for the text knowledge a pretrained MLLM has and grounding does not use), trained into it
by an SFT stage (`scenetg train --algo sft` with ``sft.questions``) from the shipped toy SFT
checkpoint on a mix of both. A video question ("What colour is the scene at 12 s?") was tried first
as the second skill: 400 mixed SFT steps did not teach it (the start answered one colour to
everything); that stage is kept and reported (``TRIED_AT_TIME``). From that start,
four variants train on grounding rows only, at equal training compute (the same number of
sequences through the training loss: a GRPO step of P prompts x G rollouts counts P·G, an SFT
step its batch): (a) more SFT, (b) GRPO β = 0.04, β_ts = 0 (token-aware), (c) GRPO β_ts = β,
(d) GRPO β = 0. Held-out grounding and held-out palette-question accuracy are scored against the
start with paired sign tests, per seed and pooled; the KL to the start is measured on timestamp
and on other tokens for every variant (SFT included) on the same held-out completions.

The parts: `forgetting_data` (splits, questions, the answer rule), `forgetting_runs` (training,
evaluation, KL to the start), `forgetting_report` (JSON, PNGs, doc); this module holds the settings
and the regime's runs.

``run(quick)`` runs everything (cached under ``.cache/toy_claims/forgetting``) and writes
docs/toy_grounding/forgetting.md with its JSON and PNGs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .common import CACHE, DOCS, SHIPPED_SFT, grpo_run, paired, pooled
from .forgetting_data import Data, make_data
from .forgetting_runs import (
    SAMPLING,
    SFT_BATCH,
    answer_counts,
    evaluate,
    fact_accuracy,
    qa_answers,
    qa_paired,
    sft_run,
    summary,
    timed,
    train_stats,
)

REGIME = "forgetting"
REWARDS = {"iou": 1.0, "cendist": 1.0, "format": 0.5}
BETA = 0.04
GRPO_LR = 3e-4
GENERATIONS = 8
EXPECTED = DOCS / "forgetting" / "expected.md"
"""The expected outcome, written and committed before the full runs; the doc quotes it verbatim."""


@dataclass(frozen=True)
class Sizes:
    train_videos: int = 400
    per_video: int = 2
    """Grounding queries (and tried colour-at-time questions) per training video."""
    facts_per_video: int = 6
    """Palette-order questions per training video in the SFT stage (3 to 1 against grounding
    rows: the questions' answers are 2–3 tokens against ~19 of a grounding answer)."""
    heldout_videos: int = 200
    """One grounding query and one palette-order question per held-out video."""
    stage_steps: int = 500
    stage_lr: float = 3e-3
    grpo_steps: int = 30
    prompts: int = 4
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    kl_queries: int = 64
    sft_lr: float = 1e-3
    tried_at_time: bool = True
    """Evaluate the kept stage that tried colour-at-time questions as the second skill."""
    followup_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Seeds of the follow-up at `FOLLOWUP_MULT` times the compute: (a) SFT and (b) GRPO with
    `FOLLOWUP_MULT` times the steps each (SFT seeds 0, 1 were run first, after the main runs; the
    rest and the GRPO side after the follow-up's expected outcome was committed)."""

    @property
    def sft_steps(self) -> int:
        """SFT steps of variant (a): as many sequences through the loss as a GRPO run."""
        return max(1, self.grpo_steps * self.prompts * GENERATIONS // SFT_BATCH)

    @property
    def key(self) -> str:
        return (f"facts{self.facts_per_video}_t{self.train_videos}x{self.per_video}_h{self.heldout_videos}"
                f"_st{self.stage_steps}lr{self.stage_lr:g}")


FULL = Sizes()
QUICK = Sizes(train_videos=8, facts_per_video=2, heldout_videos=6, stage_steps=3, grpo_steps=1, prompts=2,
              seeds=(0, 1), kl_queries=4, tried_at_time=False, followup_seeds=(0,))
FOLLOWUP_MULT = 4
"""The follow-up at 4x compute (decided after the main runs; its expected outcome was written
before its GRPO runs): does SFT on grounding rows forget the facts with 4x the equal-compute steps,
and does GRPO (b) with 4x its steps (the same sequences through the loss) gain grounding without?"""
FOLLOWUP_VARIANT = "b"
"""The GRPO variant of the follow-up: (b) β = 0.04, β_ts = 0."""
TRIED_AT_TIME = {"steps": 400, "lr": 1e-3, "key": "t400x2_h200_st400lr0.001"}
"""The first attempt at a second skill (colour-at-time questions, 2 per video beside 2 grounding
queries, SFT lr 1e-3 cosine, seed 0): its stage folder and eval tag under the regime's cache."""


@dataclass(frozen=True)
class Variant:
    key: str
    name: str
    algo: str
    beta: float = 0.0
    beta_timestamp: float = 0.0


VARIANTS = (
    Variant("a", "(a) SFT", "sft"),
    Variant("b", "(b) GRPO β_ts=0", "grpo", BETA, 0.0),
    Variant("c", "(c) GRPO β_ts=β", "grpo", BETA, BETA),
    Variant("d", "(d) GRPO β=0", "grpo", 0.0, 0.0),
)


# ------------------------------------------------------------------------------ the regime

COMPARISONS = (("b", "c"), ("b", "a"), ("b", "d"), ("c", "a"))
"""Paired comparisons between variants (first = the one the claim favours), seed k against seed k."""


def verdict(pool: dict, want: str) -> str:
    """``yes`` / ``mixed`` / ``no`` for a pooled paired comparison (b against a): ``higher`` shows
    when b gains more than it loses with p < 0.05 (mixed: the right sign, p >= 0.05); ``lower``
    the mirror; ``not lower`` shows unless b loses significantly (p < 0.05)."""
    g, lost, p = pool["gained"], pool["lost"], pool["p"]
    if want == "not lower":
        return "no" if lost > g and p < 0.05 else "yes"
    up = g > lost if want == "higher" else lost > g
    return ("yes" if p < 0.05 else "mixed") if up else "no"


def run(quick: bool = False) -> dict:
    """Every stage of the regime (cached), then the JSON, PNGs and doc; the README rows."""
    import torch

    torch.set_num_threads(1)
    sizes = QUICK if quick else FULL
    regime = REGIME + ("_quick" if quick else "")
    root = CACHE / regime
    work = root / sizes.key
    work.mkdir(parents=True, exist_ok=True)
    times = root / "timings.json"
    data = timed(times, "data", make_data, root / "data" / f"t{sizes.train_videos}_h{sizes.heldout_videos}", sizes)
    tried = None
    if sizes.tried_at_time:  # the first attempt at a second skill, kept and reported
        key = TRIED_AT_TIME["key"]
        at = timed(times, "tried: colour-at-time SFT stage", sft_run, SHIPPED_SFT, data.train, root / key / "start",
                   steps=TRIED_AT_TIME["steps"], lr=TRIED_AT_TIME["lr"], seed=0, questions=data.train_at_time,
                   schedule="cosine")
        shipped_at = timed(times, "tried: eval shipped", evaluate, SHIPPED_SFT, f"{key}_shipped", data, regime, None,
                           sizes, data.heldout_at_time)
        at_ev = timed(times, "tried: eval stage", evaluate, at / "final", f"{key}_start", data, regime, None, sizes,
                      data.heldout_at_time)
        tried = {"steps": TRIED_AT_TIME["steps"], "lr": TRIED_AT_TIME["lr"], "shipped": summary(shipped_at),
                 "stage": summary(at_ev), "stage_sample": at_ev["qa_raw_sample"],
                 "answers": dict(sorted(answer_counts(qa_answers(data.heldout_at_time, data.heldout.videos, at / "final",
                                                           f"{key}_start", regime)).items(), key=lambda kv: -kv[1])[:5])}
    stage = timed(times, f"{sizes.key}: start (SFT stage)", sft_run, SHIPPED_SFT, data.train, work / "start",
                  steps=sizes.stage_steps, lr=sizes.stage_lr, seed=0, questions=data.train_facts,
                  schedule="cosine")
    start = stage / "final"
    evals = {"shipped": timed(times, f"{sizes.key}: eval shipped", evaluate, SHIPPED_SFT, f"{sizes.key}_shipped", data, regime,
                              None, sizes),
             "start": timed(times, f"{sizes.key}: eval start", evaluate, start, f"{sizes.key}_start", data, regime, None, sizes)}
    runs: dict[str, dict[int, dict]] = {}
    curves: dict[str, dict] = {}
    for v in VARIANTS:
        runs[v.key] = {}
        for seed in sizes.seeds:
            if v.algo == "sft":
                out = work / f"a_s{seed}_n{sizes.sft_steps}_lr{sizes.sft_lr:g}"
                timed(times, f"{sizes.key}: {out.name}", sft_run, start, data.train, out, steps=sizes.sft_steps, lr=sizes.sft_lr,
                      seed=seed)
            else:
                out = work / f"{v.key}_s{seed}_n{sizes.grpo_steps}x{sizes.prompts}"
                timed(times, f"{sizes.key}: {out.name}", grpo_run, start, data.train, out, SAMPLING, rewards=REWARDS, beta=v.beta,
                      beta_timestamp=v.beta_timestamp, steps=sizes.grpo_steps, prompts=sizes.prompts, seed=seed,
                      generations=GENERATIONS, lr=GRPO_LR, frame_cache=root / "frames")
            tag = f"{sizes.key}_{out.name}"
            ev = timed(times, f"{sizes.key}: eval {out.name}", evaluate, out / "final", tag, data, regime, start, sizes)
            runs[v.key][seed] = {**summary(ev), **train_stats(out, v.algo)}
            evals[f"{v.key}{seed}"] = ev
            curves[f"{v.key}{seed}"] = {"dir": out, "algo": v.algo}
    followup = run_followup(sizes, data, work, start, evals, times, regime)
    timings = json.loads(times.read_text()) if times.is_file() else {}
    results = assemble(sizes, evals, runs, {k: v for k, v in timings.items() if k == "data" or k.startswith(sizes.key)})
    tried_s = [v for k, v in timings.items() if k.startswith("tried:")]
    results["compute"]["tried_cpu_s"] = round(sum(v["cpu_s"] for v in tried_s), 1)
    results["tried_at_time"] = tried
    results["facts"] = fact_accuracy(data.heldout_facts, evals)
    results["b_equals_d_per_item"] = all(evals[f"b{s}"]["ious"] == evals[f"d{s}"]["ious"]
                                         and evals[f"b{s}"]["qa_correct"] == evals[f"d{s}"]["qa_correct"]
                                         for s in sizes.seeds)
    results["followup"] = followup
    docs = CACHE / "quick_docs" if quick else DOCS
    from .forgetting_report import write_report

    return write_report(results, curves, docs, EXPECTED)


def run_followup(sizes: Sizes, data: Data, work: Path, start: Path, evals: dict, times: Path,
                 regime: str) -> dict:
    """The follow-up at `FOLLOWUP_MULT` times the compute, seed by seed: (a) SFT with that many
    times the steps, then GRPO `FOLLOWUP_VARIANT` likewise; scores, KL to the start, facts kept and
    the paired tests (each against the start, GRPO against SFT; per seed and pooled)."""
    v = next(x for x in VARIANTS if x.key == FOLLOWUP_VARIANT)
    sft_steps, grpo_steps = sizes.sft_steps * FOLLOWUP_MULT, sizes.grpo_steps * FOLLOWUP_MULT
    runs: dict[str, dict[str, dict]] = {"a": {}, "b": {}}
    fevals: dict[str, dict] = {}
    for seed in sizes.followup_seeds:
        out = work / f"ax{FOLLOWUP_MULT}_s{seed}_n{sft_steps}_lr{sizes.sft_lr:g}"
        timed(times, f"{sizes.key}: {out.name}", sft_run, start, data.train, out, steps=sft_steps, lr=sizes.sft_lr,
              seed=seed)
        ev = timed(times, f"{sizes.key}: eval {out.name}", evaluate, out / "final", f"{sizes.key}_{out.name}", data,
                   regime, start, sizes)
        runs["a"][str(seed)] = {**summary(ev), **train_stats(out, "sft")}
        fevals[f"a{seed}"] = ev
        out = work / f"{v.key}x{FOLLOWUP_MULT}_s{seed}_n{grpo_steps}x{sizes.prompts}"
        timed(times, f"{sizes.key}: {out.name}", grpo_run, start, data.train, out, SAMPLING, rewards=REWARDS,
              beta=v.beta, beta_timestamp=v.beta_timestamp, steps=grpo_steps, prompts=sizes.prompts, seed=seed,
              generations=GENERATIONS, lr=GRPO_LR, frame_cache=work.parent / "frames")
        ev = timed(times, f"{sizes.key}: eval {out.name}", evaluate, out / "final", f"{sizes.key}_{out.name}", data,
                   regime, start, sizes)
        runs["b"][str(seed)] = {**summary(ev), **train_stats(out, "grpo")}
        fevals[f"b{seed}"] = ev
    kept = fact_accuracy(data.heldout_facts, fevals)["kept"]
    for key, rs in runs.items():
        for seed, r in rs.items():
            r["facts_kept"] = kept[f"{key}{seed}"]
    st = evals["start"]
    paired_tests = {}
    for comp in ("a vs start", "b vs start", "b vs a"):
        fav, other = comp.split(" vs ")
        for metric in ("grounding", "qa"):
            per_seed = []
            for s in map(str, sizes.followup_seeds):
                before = st if other == "start" else fevals[f"{other}{s}"]
                after = fevals[f"{fav}{s}"]
                per_seed.append(paired(before["ious"], after["ious"]) if metric == "grounding"
                                else qa_paired(before["qa_correct"], after["qa_correct"]))
            paired_tests[f"{comp}|{metric}"] = {"per_seed": per_seed, "pooled": pooled(per_seed)}
    keys = ("R1@0.5", "R1@0.3", "mIoU", "qa_acc", "kl_timestamp", "kl_other", "kl_timestamp_last", "kl_other_last",
            "reward_first", "reward_last", "loss_first", "loss_last", "facts_kept")
    means = {k: {m: float(np.mean([r[m] for r in rs.values()])) for m in keys
                 if rs and all(r.get(m) is not None for r in rs.values())} for k, rs in runs.items()}
    return {"mult": FOLLOWUP_MULT, "sft_steps": sft_steps, "grpo_steps": grpo_steps,
            "sequences_per_run": grpo_steps * sizes.prompts * GENERATIONS, "seeds": list(sizes.followup_seeds),
            "variants": {"a": f"(a) SFT {FOLLOWUP_MULT}×", "b": f"{v.name} {FOLLOWUP_MULT}×"},
            "runs": runs, "means": means, "paired": paired_tests}



def assemble(sizes: Sizes, evals: dict, runs: dict, timings: dict) -> dict:
    """The regime's JSON: sizes, per-run scores, means, paired tests and compute."""
    start = evals["start"]
    paired_tests = {}
    for v in VARIANTS:
        for metric in ("grounding", "qa"):
            per_seed = [paired(start["ious"], evals[f"{v.key}{s}"]["ious"]) if metric == "grounding"
                        else qa_paired(start["qa_correct"], evals[f"{v.key}{s}"]["qa_correct"])
                        for s in sizes.seeds]
            paired_tests[f"{v.key} vs start|{metric}"] = {"per_seed": per_seed, "pooled": pooled(per_seed)}
    for fav, other in COMPARISONS:
        for metric in ("grounding", "qa"):
            per_seed = [paired(evals[f"{other}{s}"]["ious"], evals[f"{fav}{s}"]["ious"]) if metric == "grounding"
                        else qa_paired(evals[f"{other}{s}"]["qa_correct"], evals[f"{fav}{s}"]["qa_correct"])
                        for s in sizes.seeds]
            paired_tests[f"{fav} vs {other}|{metric}"] = {"per_seed": per_seed, "pooled": pooled(per_seed)}
    keys = ("R1@0.5", "R1@0.3", "mIoU", "qa_acc", "kl_timestamp", "kl_other", "kl_timestamp_last", "kl_other_last",
            "reward_first", "reward_last", "frac_reward_zero_std_last", "loss_first", "loss_last")
    means = {v: {k: float(np.mean([r[k] for r in rs.values()])) for k in keys
                 if all(r.get(k) is not None for r in rs.values())} for v, rs in runs.items()}
    cpu = sum(t["cpu_s"] for t in timings.values())
    wall = sum(t["wall_s"] for t in timings.values())
    parts = {"grpo": lambda k: k.split(": ")[-1][:2] in ("b_", "c_", "d_"), "sft": lambda k: ": a_s" in k,
             "eval": lambda k: ": eval" in k, "stage": lambda k: "start (SFT stage)" in k,
             "followup_sft": lambda k: f": ax{FOLLOWUP_MULT}_" in k,
             "followup_grpo": lambda k: f": {FOLLOWUP_VARIANT}x{FOLLOWUP_MULT}_" in k}
    by_part = {f"{name}_cpu_s": round(sum(t["cpu_s"] for k, t in timings.items() if match(k)), 1)
               for name, match in parts.items()}
    return {"regime": REGIME, "sizes": {**asdict(sizes), "sft_steps": sizes.sft_steps,
                                        "sequences_per_run": sizes.grpo_steps * sizes.prompts * GENERATIONS},
            "settings": {"sampling": SAMPLING, "rewards": REWARDS, "beta": BETA, "grpo_lr": GRPO_LR,
                         "generations": GENERATIONS, "sft_batch": SFT_BATCH},
            "variants": {v.key: v.name for v in VARIANTS},
            "shipped": summary(evals["shipped"]), "start": summary(start),
            "start_qa_sample": start["qa_raw_sample"],
            "runs": {v: {str(s): r for s, r in rs.items()} for v, rs in runs.items()}, "means": means,
            "paired": paired_tests, "compute": {"cpu_s": round(cpu, 1), "wall_s": round(wall, 1), **by_part, "stages": timings},
            "sign_test": "exact two-sided sign test (McNemar) on discordant queries; pooled = sums over seeds"}
