"""The forgetting regime's training and evaluation steps (`forgetting`): a cached SFT run, the
held-out palette-question answers, the exact KL to the start on timestamp and other tokens, one
model's held-out evaluation, its summary, the paired test on questions and the facts kept.

Cached under ``common.CACHE / <regime>`` (read at call time, so a test can point it elsewhere)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.eval.uncertainty import paired_comparison
from scenetg.toy_task import ToySplit

from . import common
from .common import ground_ious, logged_steps, scores
from .forgetting_data import Data, qa_correct

SAMPLING = {"fps": 1.0, "max_frames": 16, "max_side": 64}
SFT_BATCH = 16

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
    out = common.CACHE / regime / "qa" / f"{tag}.jsonl"
    if out.is_file():
        got = {r["qid"]: r["raw"] for r in map(json.loads, out.read_text().splitlines())}
        if set(got) == {q["qid"] for q in questions}:
            return got
    from scenetg.grounding.samples import FrameSampling, sample_video
    from scenetg.models.runner import QwenRunner
    from scenetg.video.frame_cache import FrameCache

    runner = QwenRunner.load(model, dtype="float32", device="cpu", max_new_tokens=8)
    cache, sampling = FrameCache(common.CACHE / regime / "frames"), FrameSampling(**SAMPLING)
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

    preds = {r["qid"]: r["raw"] for r in map(json.loads, (common.CACHE / regime / "preds" / f"{tag}.jsonl")
                                                 .read_text().splitlines())}
    policy, processor = load_qwen(model, dtype="float32", device="cpu")
    ref, _ = load_qwen(start, dtype="float32", device="cpu")
    collator = VideoSFTCollator(processor, FrameSampling(**SAMPLING), FrameCache(common.CACHE / regime / "frames"))
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


def evaluate(model: Path, tag: str, data: Data, regime: str, start: Path | None, sizes: Any,
             questions: list[dict] | None = None) -> dict:
    """Held-out grounding IoUs and second-skill answers (`questions`, default the palette-order
    ones) of `model`, and its KL to `start`."""
    log = common.CACHE / regime / "evals" / f"{tag}.json"
    if log.is_file():
        return json.loads(log.read_text())
    questions = data.heldout_facts if questions is None else questions
    ious = ground_ious(data.heldout, model, tag, SAMPLING, regime)
    answers = qa_answers(questions, data.heldout.videos, model, tag, regime)
    correct = {q["qid"]: qa_correct(answers[q["qid"]], q["colour"]) for q in questions}
    out = {"ious": ious, "qa_correct": correct,
           "qa_raw_sample": [answers[q["qid"]] for q in questions[:5]],
           "kl": kl_to_start(model, start, data.heldout, tag, regime, sizes.kl_queries) if start else None}
    common.write_json(log, out)
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


def train_stats(run_dir: Path, algo: str) -> dict:
    """From a run's metrics.jsonl: GRPO reward and logged KL (k3 on rollouts) over the first and
    last 10 steps; SFT loss first and last."""
    from scenetg.rl.curves import read_metrics

    if algo == "sft":
        losses = [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]
        return {"loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}
    rows = logged_steps(run_dir)
    return {f"{k}_{w}": common.window_mean(rows, k, **{w: 10}) for k in ("reward", "kl_timestamp", "kl_other",
                                                                  "frac_reward_zero_std")
            for w in ("first", "last")}


def answer_counts(answers: dict[str, str]) -> dict[str, int]:
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
