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

``run(quick)`` runs everything (cached under ``.cache/toy_claims/forgetting``) and writes
docs/toy_grounding/forgetting.md with its JSON and PNGs.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scenetg.eval.uncertainty import paired_comparison
from scenetg.toy_task import PALETTE, ToySplit, ToyVideo, make_split, split_specs

from .common import (
    CACHE,
    DOCS,
    SHIPPED_SFT,
    ground_ious,
    grpo_run,
    logged_steps,
    paired,
    pooled,
    scores,
)

REGIME = "forgetting"
SAMPLING = {"fps": 1.0, "max_frames": 16, "max_side": 64}
REWARDS = {"iou": 1.0, "cendist": 1.0, "format": 0.5}
BETA = 0.04
GRPO_LR = 3e-4
GENERATIONS = 8
SFT_BATCH = 16
TRAIN_SEED, HELDOUT_SEED, QUESTION_SEED_OFFSET = 20000, 30000, 1
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

# ------------------------------------------------------------------------------ the second skill


def question_text(t_s: int) -> str:
    return f"What colour is the scene at {t_s} s?"


def question_time(spec: ToyVideo, scene: int, rng: np.random.Generator) -> int:
    """A whole second strictly inside scene `scene` (never on a cut: scenes are >= 3 s)."""
    start, end = spec.bounds_s[scene], spec.bounds_s[scene + 1]
    return int(rng.integers(start + 1, end))


def colour_at(spec: ToyVideo, t_s: float) -> str:
    """The colour shown at `t_s` (scenes are half-open [start, end))."""
    return spec.colours[int(np.searchsorted(spec.bounds_s, t_s, side="right")) - 1]


_WORD = re.compile(r"[a-z]+")


def colour_words(text: str) -> set[str]:
    """The palette colour names in `text` (whole words, any case)."""
    return {w for w in _WORD.findall(text.lower()) if w in PALETTE}


def qa_correct(text: str, colour: str) -> bool:
    """Right when the answer names `colour` and no other palette colour."""
    return colour_words(text) == {colour}


def question_rows(name: str, n_videos: int, per_video: int, seed: int) -> list[dict]:
    """`per_video` colour questions (distinct scenes) on each video of the toy split `name` made
    with `seed` (the same videos `make_split` writes): ``sft.questions`` rows with ``colour``."""
    rng = np.random.default_rng(seed + QUESTION_SEED_OFFSET)
    rows = []
    for spec, _ in split_specs(name, n_videos, per_video, seed):
        for scene in sorted(rng.choice(len(spec.colours), size=per_video, replace=False).tolist()):
            t = question_time(spec, scene, rng)
            rows.append({"qid": f"{spec.vid}_q{t}", "vid": spec.vid, "duration": float(spec.duration_s),
                         "question": question_text(t), "answer": spec.colours[scene],
                         "colour": spec.colours[scene], "t_s": t})
    return rows


ORDER = tuple(PALETTE)
"""The palette's order (red, orange, yellow, green, cyan, blue, purple, pink), read as a circle."""


def order_answer(colour: str, relation: str) -> str:
    """The colour after / before `colour` in `ORDER` (circular)."""
    step = {"after": 1, "before": -1}[relation]
    return ORDER[(ORDER.index(colour) + step) % len(ORDER)]


def fact_rows(name: str, n_videos: int, grounding_per_video: int, per_video: int, seed: int) -> list[dict]:
    """`per_video` palette-order questions ("Which colour comes after green?" -> ``cyan``) asked
    with each video of the toy split `name` that `make_split` made with `grounding_per_video` and
    `seed`; ``sft.questions`` rows with ``colour`` (the answer). 16 facts (8 colours x after /
    before), drawn uniformly."""
    rng = np.random.default_rng(seed + 9)
    rows = []
    for spec, _ in split_specs(name, n_videos, grounding_per_video, seed):
        for k in range(per_video):
            colour, relation = ORDER[int(rng.integers(len(ORDER)))], ("after", "before")[int(rng.integers(2))]
            answer = order_answer(colour, relation)
            rows.append({"qid": f"{spec.vid}_{relation}_{colour}_{k}", "vid": spec.vid,
                         "duration": float(spec.duration_s), "question": f"Which colour comes {relation} {colour}?",
                         "answer": answer, "colour": answer, "fact": f"{relation} {colour}"})
    return rows


@dataclass(frozen=True)
class Data:
    train: ToySplit
    train_facts: Path
    heldout: ToySplit
    heldout_facts: list[dict]
    train_at_time: Path
    heldout_at_time: list[dict]


def _jsonl(path: Path, make) -> list[dict]:
    if not path.is_file():
        path.write_text("".join(json.dumps(r) + "\n" for r in make()))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def make_data(root: Path, sizes: Sizes) -> Data:
    train = make_split(root, "fg_train", sizes.train_videos, sizes.per_video, TRAIN_SEED)
    held = make_split(root, "fg_heldout", sizes.heldout_videos, 1, HELDOUT_SEED)
    at_train = train.jsonl.with_name("fg_train_questions.jsonl")
    _jsonl(at_train, lambda: question_rows("fg_train", sizes.train_videos, sizes.per_video, TRAIN_SEED))
    at_held = _jsonl(held.jsonl.with_name("fg_heldout_questions.jsonl"),
                     lambda: question_rows("fg_heldout", sizes.heldout_videos, 1, HELDOUT_SEED))
    facts_train = train.jsonl.with_name(f"fg_train_facts{sizes.facts_per_video}.jsonl")
    _jsonl(facts_train, lambda: fact_rows("fg_train", sizes.train_videos, sizes.per_video, sizes.facts_per_video, TRAIN_SEED))
    facts_held = _jsonl(held.jsonl.with_name("fg_heldout_facts.jsonl"),
                        lambda: fact_rows("fg_heldout", sizes.heldout_videos, 1, 1, HELDOUT_SEED))
    return Data(train, facts_train, held, facts_held, at_train, at_held)


# ------------------------------------------------------------------------------ training


def sft_run(start: Path, split: ToySplit, out: Path, *, steps: int, lr: float, seed: int,
            questions: Path | None = None, schedule: str = "constant") -> Path:
    """One `scenetg train --algo sft` run (full fine-tuning, fp32, CPU, whole-second targets), on
    `split`'s grounding rows plus `questions` when given; its run folder, cached."""
    from scenetg.rl.config import train_config_from_dict
    from scenetg.rl.train import train

    if (out / "final" / "config.json").is_file():
        return out
    cfg = train_config_from_dict({
        "algo": "sft", "model": str(start), "output_dir": str(out), "device": "cpu", "dtype": "float32",
        "freeze_vision": False, "lora": {"enabled": False}, "frame_cache": str(out.parent / "frames"),
        "data": {"dataset": str(split.jsonl), "video_root": str(split.videos), "split": None},
        "sampling": SAMPLING,
        "sft": {"answer_decimals": 0, "per_device_train_batch_size": SFT_BATCH, "learning_rate": lr,
                "weight_decay": 0.0, "lr_scheduler_type": schedule, "warmup_steps": max(1, steps // 50),
                "max_grad_norm": 1.0, "max_steps": steps, "logging_steps": min(10, steps),
                "save_strategy": "no", "report_to": "none", "seed": seed, "data_seed": seed,
                **({"questions": str(questions)} if questions else {})},
    })
    train(cfg, overwrite=True)
    return out


def timed(log: Path, name: str, fn, *args, **kwargs):
    """`fn(...)`, recording its CPU and wall seconds in `log` under `name` the first time it does
    work (a cached stage returns in well under a second and is not recorded again)."""
    done = json.loads(log.read_text()) if log.is_file() else {}
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if name not in done and wall > 1.0:
        done[name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
        log.write_text(json.dumps(done, indent=1))
    return result


# ------------------------------------------------------------------------------ evaluation


def qa_answers(questions: list[dict], videos: Path, model: Path, tag: str, regime: str) -> dict[str, str]:
    """qid -> the model's greedy answer to each colour question (cached JSONL)."""
    out = CACHE / regime / "qa" / f"{tag}.jsonl"
    if out.is_file():
        got = {r["qid"]: r["raw"] for r in map(json.loads, out.read_text().splitlines())}
        if set(got) == {q["qid"] for q in questions}:
            return got
    from scenetg.grounding.samples import FrameSampling, sample_video
    from scenetg.models.runner import QwenRunner
    from scenetg.video.frame_cache import FrameCache

    runner = QwenRunner.load(model, dtype="float32", device="cpu", max_new_tokens=8)
    cache, sampling = FrameCache(CACHE / regime / "frames"), FrameSampling(**SAMPLING)
    got = {}
    for i in range(0, len(questions), 16):
        batch = questions[i:i + 16]
        vids = [sample_video(videos / f"{q['vid']}.mp4", q["duration"], sampling, cache) for q in batch]
        texts = runner.generate([v.frames for v in vids], [v.times_s for v in vids],
                                [q["question"] for q in batch], [v.duration_s for v in vids])
        got.update({q["qid"]: t for q, t in zip(batch, texts, strict=True)})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps({"qid": q, "raw": t}) + "\n" for q, t in got.items()))
    return got


def kl_to_start(model: Path, start: Path, split: ToySplit, tag: str, regime: str, n: int) -> dict:
    """Exact per-token KL(model ‖ start), summed over the vocabulary, on the model's own greedy
    answers to the first `n` held-out grounding queries (``preds/<tag>.jsonl``), averaged over
    timestamp tokens (`timestamp_token_mask`) and over the other answer tokens (end-of-turn
    included). The same measure for SFT and GRPO models; GRPO's logged ``kl_timestamp`` /
    ``kl_other`` are k3 estimates on its training rollouts instead."""
    import torch

    from scenetg.grounding.samples import FrameSampling
    from scenetg.models.qwen import load_qwen
    from scenetg.rl.kl import timestamp_token_mask
    from scenetg.rl.sft import VideoSFTCollator
    from scenetg.rl.train_data import grounding_messages
    from scenetg.video.frame_cache import FrameCache

    preds = {r["qid"]: r["raw"] for r in map(json.loads, (CACHE / regime / "preds" / f"{tag}.jsonl")
                                                 .read_text().splitlines())}
    policy, processor = load_qwen(model, dtype="float32", device="cpu")
    ref, _ = load_qwen(start, dtype="float32", device="cpu")
    collator = VideoSFTCollator(processor, FrameSampling(**SAMPLING), FrameCache(CACHE / regime / "frames"))
    rows = [{"prompt": grounding_messages(r["query"], r["duration"]), "target": preds.get(str(r["qid"])) or "",
             "video_path": str(split.videos / f"{r['vid']}.mp4"), "duration_s": r["duration"]}
            for r in split.rows[:n]]
    sums, counts = {"ts": 0.0, "other": 0.0}, {"ts": 0, "other": 0}
    for i in range(0, len(rows), 16):
        batch = collator(rows[i:i + 16])
        labels = batch.pop("labels")
        with torch.no_grad():
            lp = torch.log_softmax(policy(**batch).logits[:, :-1].float(), -1)
            lq = torch.log_softmax(ref(**batch).logits[:, :-1].float(), -1)
        kl = (lp.exp() * (lp - lq)).sum(-1)  # (B, T-1): position t predicts token t+1
        keep = labels[:, 1:] != -100
        for b in range(kl.shape[0]):
            ids = labels[b, 1:][keep[b]]
            ts = timestamp_token_mask(processor.tokenizer, [ids.tolist()])[0]
            vals = kl[b][keep[b]]
            sums["ts"] += float(vals[ts].sum())
            sums["other"] += float(vals[~ts].sum())
            counts["ts"] += int(ts.sum())
            counts["other"] += int((~ts).sum())
    return {"kl_timestamp": sums["ts"] / max(1, counts["ts"]), "kl_other": sums["other"] / max(1, counts["other"]),
            "tokens_timestamp": counts["ts"], "tokens_other": counts["other"], "queries": len(rows)}


def evaluate(model: Path, tag: str, data: Data, regime: str, start: Path | None, sizes: Sizes,
             questions: list[dict] | None = None) -> dict:
    """Held-out grounding IoUs and second-skill answers (`questions`, default the palette-order
    ones) of `model`, and its KL to `start`."""
    log = CACHE / regime / "evals" / f"{tag}.json"
    if log.is_file():
        return json.loads(log.read_text())
    questions = data.heldout_facts if questions is None else questions
    ious = ground_ious(data.heldout, model, tag, SAMPLING, regime)
    answers = qa_answers(questions, data.heldout.videos, model, tag, regime)
    correct = {q["qid"]: qa_correct(answers[q["qid"]], q["colour"]) for q in questions}
    out = {"ious": ious, "qa_correct": correct,
           "qa_raw_sample": [answers[q["qid"]] for q in questions[:5]],
           "kl": kl_to_start(model, start, data.heldout, tag, regime, sizes.kl_queries) if start else None}
    from .common import write_json

    write_json(log, out)
    return out


def summary(ev: dict) -> dict:
    s = scores(ev["ious"])
    qa = np.asarray(list(ev["qa_correct"].values()), dtype=float)
    return {"R1@0.5": s["R1@0.5"], "R1@0.3": s["R1@0.3"], "mIoU": s["mIoU"], "qa_acc": float(qa.mean()),
            "n_ground": s["n"], "n_qa": int(qa.size), **({k: ev["kl"][k] for k in ("kl_timestamp", "kl_other")}
                                                          if ev.get("kl") else {})}


def qa_paired(before: dict, after: dict) -> dict:
    qids = sorted(before)
    return paired_comparison(np.asarray([before[q] for q in qids]), np.asarray([after[q] for q in qids]))


# ------------------------------------------------------------------------------ the regime

COMPARISONS = (("b", "c"), ("b", "a"), ("b", "d"), ("c", "a"))
"""Paired comparisons between variants (first = the one the claim favours), seed k against seed k."""


def train_stats(run_dir: Path, algo: str) -> dict:
    """From a run's metrics.jsonl: GRPO reward and logged KL (k3 on rollouts) over the first and
    last 10 steps; SFT loss first and last."""
    from scenetg.rl.curves import read_metrics

    from .common import window_mean

    if algo == "sft":
        losses = [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]
        return {"loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}
    rows = logged_steps(run_dir)
    return {f"{k}_{w}": window_mean(rows, k, **{w: 10}) for k in ("reward", "kl_timestamp", "kl_other",
                                                                  "frac_reward_zero_std")
            for w in ("first", "last")}


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
                 "answers": dict(sorted(_counts(qa_answers(data.heldout_at_time, data.heldout.videos, at / "final",
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


def _counts(answers: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in answers.values():
        out[a] = out.get(a, 0) + 1
    return out


def fact_accuracy(questions: list[dict], evals: dict) -> dict:
    """Per model: how many of the 16 facts are answered right on at least half of their held-out
    questions (the held-out questions repeat the same 16 facts with other videos)."""
    facts = sorted({q["fact"] for q in questions})
    out = {}
    for name, ev in evals.items():
        kept = 0
        for fact in facts:
            hits = [ev["qa_correct"][q["qid"]] for q in questions if q["fact"] == fact]
            kept += bool(hits) and sum(hits) * 2 >= len(hits)
        out[name] = kept
    return {"n_facts": len(facts), "kept": out}


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
