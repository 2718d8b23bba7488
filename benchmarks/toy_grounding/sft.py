"""Supervised warm start for the toy task: a plain PyTorch loop on the tiny Qwen2.5-VL.

Inputs are built exactly as grounding and GRPO build them: frames from `sample_video` (the same
`FrameSampling`, through a `FrameCache`), the prompt from `GroundingInput.prompt`, the chat from
`render_chat(video_messages(...))`, tensors from `processor_video_inputs`. The target answer plus
the end-of-turn token is appended after the generation prompt; the loss covers those tokens only.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scenetg.grounding.samples import FrameSampling, GroundingInput, SampledVideo, sample_video

SAMPLING = FrameSampling(fps=1.0, max_frames=16, max_side=64)
"""16 frames at i·D/16 (2 per cell), frames at their native 64 px: used by SFT, GRPO and eval."""

IGNORE = -100


def load_videos(rows: Sequence[dict], videos_dir: Path, cache: Any) -> dict[str, SampledVideo]:
    """Each row's video sampled once (uint8 frames through `cache`), keyed by video id."""
    out: dict[str, SampledVideo] = {}
    for r in rows:
        if r["vid"] not in out:
            out[r["vid"]] = sample_video(videos_dir / f"{r['vid']}.mp4", r["duration"], SAMPLING, cache)
    return out


def sft_batch(processor: Any, items: Sequence[GroundingInput], answers: Sequence[str]) -> dict:
    """Model inputs (right-padded) and labels for `items` with target `answers`: labels are -100
    everywhere but the answer tokens and the closing end-of-turn token."""
    from scenetg.models.qwen import processor_video_inputs, render_chat, video_messages

    tok = processor.tokenizer
    eos = tok.eos_token
    prompts = [render_chat(processor, video_messages(it.prompt)) for it in items]
    texts = [p + a + eos for p, a in zip(prompts, answers, strict=True)]
    inputs = processor_video_inputs(
        processor, texts, [it.video.frames for it in items], [it.video.times_s for it in items],
        durations_s=[it.video.duration_s for it in items], padding_side="right",
    )
    labels = torch.full_like(inputs["input_ids"], IGNORE)
    lengths = inputs["attention_mask"].sum(1).tolist()
    for i, a in enumerate(answers):
        target = tok(a + eos, add_special_tokens=False)["input_ids"]
        end = int(lengths[i])
        labels[i, end - len(target):end] = inputs["input_ids"][i, end - len(target):end]
    inputs["labels"] = labels
    return dict(inputs)


def train_sft(model_dir: Path, out_dir: Path, rows: Sequence[dict], videos: dict[str, SampledVideo],
              steps: int, batch_size: int = 16, lr: float = 2.5e-3, seed: int = 0,
              log_every: int = 50, prior: dict | None = None) -> Path:
    """Fine-tune the model in `model_dir` on `rows` for `steps` steps (AdamW, cosine with a short
    warm-up) and save it with its processor in `out_dir`; an existing `out_dir` is reused.
    `prior`: the sft_log of the checkpoint in `model_dir` when this is a further cycle; its steps
    and seconds are added to the saved log (``steps`` is then the total)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from scenetg.toy_task import answer_text

    if (out_dir / "sft_log.json").is_file():
        return out_dir
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(model_dir)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 50)

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    items = [GroundingInput(videos[r["vid"]], r["query"]) for r in rows]
    answers = [answer_text(*r["relevant_windows"][0]) for r in rows]
    order = np.concatenate([rng.permutation(len(rows)) for _ in range(steps * batch_size // len(rows) + 1)])
    log, t0, running = [], time.perf_counter(), []
    for step in range(steps):
        idx = order[step * batch_size:(step + 1) * batch_size]
        batch = sft_batch(processor, [items[i] for i in idx], [answers[i] for i in idx])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running.append(float(loss))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log.append({"step": step + 1, "loss": float(np.mean(running)),
                        "seconds": round(time.perf_counter() - t0, 1)})
            running = []
            print(json.dumps(log[-1]), flush=True)
    model.eval()
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    record = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "log": log}
    if prior is not None:
        before, secs = prior["steps"], prior["log"][-1]["seconds"]
        record = {**record, "steps": before + steps, "cycles": [*prior.get("cycles", [before]), steps],
                  "log": [*prior["log"], *({**e, "step": e["step"] + before, "seconds": round(e["seconds"] + secs, 1)}
                                           for e in log)]}
    (tmp / "sft_log.json").write_text(json.dumps(record, indent=1))
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir
