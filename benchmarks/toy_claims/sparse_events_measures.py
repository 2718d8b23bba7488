"""Measures of where the sparse_events regime's answers land (split out of `sparse_events`):
T=1 rollout overlap of a start, greedy answers' centre error / correlation / width, the blind
middle-of-the-video baseline and where the hit events sit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scenetg.toy_task import ToySplit
from toy_claims import common
from toy_claims.common import scores


def rollout_overlap(model: Path, split: ToySplit, n_prompts: int, n: int = 8, seed: int = 0) -> dict:
    """The share of T=1 rollouts (`n` per prompt, as GRPO draws them) whose IoU with the target is
    > 0, and of groups with at least one such rollout, on the first `n_prompts` prompts."""
    from scenetg.grounding.iou import temporal_iou
    from scenetg.grounding.parsing import parse_answer
    from scenetg.grounding.samples import (
        FrameSampling,
        GroundingInput,
        sample_grounding,
        sample_video,
    )
    from scenetg.models.runner import load_runner

    runner = load_runner(model, dtype="float32", device="cpu", max_new_tokens=24)
    rows = split.rows[:n_prompts]
    from toy_claims.sparse_events import SAMPLING

    sampling = FrameSampling(**SAMPLING)
    items = [GroundingInput(sample_video(split.videos / f"{r['vid']}.mp4", r["duration"], sampling), r["query"])
             for r in rows]
    ious, valid = [], []
    for i in range(0, len(items), 4):
        outs = sample_grounding(runner, items[i:i + 4], n=n, temperature=1.0, seed=seed + i, max_new_tokens=24)
        for r, cands in zip(rows[i:i + 4], outs, strict=True):
            preds = [parse_answer(text) for text, _ in cands[1:]]
            valid.append([p is not None for p in preds])
            ious.append([temporal_iou(p, tuple(r["relevant_windows"][0]), r["duration"]) for p in preds])
    iou = np.asarray(ious)
    return {"prompts": len(rows), "rollouts_per_prompt": n, "overlap_rate": float(np.mean(iou > 0)),
            "groups_with_overlap": float(np.mean((iou > 0).any(axis=1))),
            "valid_rate": float(np.mean(valid)), "mean_iou": float(iou.mean())}


def answer_stats(regime: str, tag: str, split: ToySplit) -> dict:
    """Where the greedy answers of ``preds/<tag>.jsonl`` sit: mean centre error |c_pred − c_gt| / D
    (1 − CenDist), correlation of answer centres with event centres (relative to D; near 0: the
    answer does not follow the event), mean width in seconds, share of answers that parse."""
    from scenetg.eval.predictions import read_predictions

    preds = read_predictions(common.CACHE / regime / "preds" / f"{tag}.jsonl")
    errs, widths, centres = [], [], []
    for r in split.rows:
        p = preds.get(str(r["qid"]))
        if p is None:
            continue
        gs, ge = r["relevant_windows"][0]
        errs.append(abs((p[0] + p[1]) / 2 - (gs + ge) / 2) / r["duration"])
        widths.append(p[1] - p[0])
        centres.append(((p[0] + p[1]) / 2 / r["duration"], (gs + ge) / 2 / r["duration"]))
    c = np.asarray(centres, dtype=float).reshape(-1, 2)
    corr = float(np.corrcoef(c[:, 0], c[:, 1])[0, 1]) if len(c) > 2 and c[:, 0].std() > 0 else None
    return {"centre_err": float(np.mean(errs)) if errs else None, "centre_corr": corr,
            "width_s": float(np.mean(widths)) if widths else None, "valid": len(errs) / len(split.rows)}


def middle_baseline(split: ToySplit) -> dict:
    """The prior alone: a 2-s answer at the middle of every video (no look at the frames)."""
    from scenetg.grounding.iou import temporal_iou

    ious = {str(r["qid"]): temporal_iou((r["duration"] / 2 - 1, r["duration"] / 2 + 1),
                                        tuple(r["relevant_windows"][0]), r["duration"]) for r in split.rows}
    err = [abs(r["duration"] / 2 - sum(r["relevant_windows"][0]) / 2) / r["duration"] for r in split.rows]
    return {**scores(ious), "centre_err": float(np.mean(err)), "centre_corr": None, "width_s": 2.0}


def hit_positions(final_ious: dict, split: ToySplit, threshold: float = 0.3) -> dict:
    """Where the events sit that each variant's final answers hit (IoU ≥ `threshold`, pooled over
    seeds): mean |c_gt / D − 0.5| of the hit events against that of all held-out events (a hit
    found by moving answers to the middle lands on events near the middle)."""
    offset = {str(r["qid"]): abs(sum(r["relevant_windows"][0]) / 2 / r["duration"] - 0.5) for r in split.rows}
    out = {"all_events_offset": float(np.mean(list(offset.values())))}
    for v, per_seed in final_ious.items():
        hits = [offset[q] for ious in per_seed.values() for q, iou in ious.items() if iou >= threshold]
        out[v] = {"hits": len(hits), "event_offset": float(np.mean(hits)) if hits else None}
    return out
