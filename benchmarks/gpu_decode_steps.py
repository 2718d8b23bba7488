"""Grounding decode on a lent GPU: ms per decode step by `--decode` mode against the bandwidth
bound, prefill time, and grounding queries/s at 128 frames (issue 9, item 5).

The real-size (randomly initialised) Qwen2.5-VL-7B of `gpu_grpo_step.py`; one grounding prompt
over 128 frames at 448x252 (~9.2k visual tokens). Each step's end is stamped by a stopping
criterion after a CUDA synchronize, so the first interval is the prefill and the rest are decode
steps. Per mode, a "cold" call meets KV lengths this process has not seen (2 frames fewer than
any earlier call: 144 visual tokens, more than the 64 new tokens) and a "warm" call repeats it.
Prints JSON and writes it to --out. On a CPU it runs the tiny model to check the script itself.

    python benchmarks/gpu_decode_steps.py --out result.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

PEAK_BANDWIDTH_TB_S = {"H200": 4.8, "H100": 3.35, "A100": 2.0}
"""HBM bandwidth of the cards we are lent (vendor figures, SXM parts)."""


class StepClock:
    """A stopping criterion that never stops: it stamps the time each generation step ends."""

    def __init__(self, sync):
        self.sync, self.stamps = sync, []

    def __call__(self, input_ids, scores, **kwargs):
        self.sync()
        self.stamps.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--queries", type=int, default=16, help="for the queries/s figure")
    ap.add_argument("--answer-tokens", type=int, default=256, help="for the queries/s figure")
    ap.add_argument("--modes", default="plain,no-cudnn,static")
    args = ap.parse_args()
    smoke = not torch.cuda.is_available()

    from gpu_grpo_step import real_size_model
    from transformers import StoppingCriteriaList

    from scenetg.grounding.prompts import grounding_prompt, sample_video_times
    from scenetg.models.qwen import batch_video_inputs
    from scenetg.models.runner import QwenRunner, decode_attention
    from scenetg.models.tiny import make_tiny_qwen

    def sync():
        if not smoke:
            torch.cuda.synchronize()

    work = Path(tempfile.mkdtemp())
    model, processor = real_size_model(make_tiny_qwen(work / "tiny"), smoke)
    model.eval()
    size = (64, 36) if smoke else (448, 252)
    rng = np.random.default_rng(0)
    duration = 2.0 * args.frames  # 0.5 fps: 128 frames over a 256 s video
    all_frames = rng.integers(0, 255, (args.frames, size[1], size[0], 3), dtype=np.uint8)
    prompt = grounding_prompt("the person opens the fridge and takes out a bottle of milk", duration)
    params_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    text = model.config.text_config
    kv_bytes_per_token = (text.num_hidden_layers * 2 * text.num_key_value_heads
                          * (text.hidden_size // text.num_attention_heads) * 2)
    name = "cpu (smoke test, tiny model)" if smoke else torch.cuda.get_device_name(0)
    bandwidth = next((v for k, v in PEAK_BANDWIDTH_TB_S.items() if k in name), None)
    result = {"device": name, "torch": torch.__version__, "frames": args.frames,
              "new_tokens": args.new_tokens, "weights_gb": round(params_bytes / 1e9, 2),
              "peak_bandwidth_tb_s": bandwidth}
    calls = [0]

    def inputs_for(n_frames: int, batch: int = 1):
        times = sample_video_times(duration, n_frames / duration, n_frames)
        frames = list(all_frames[:n_frames])
        return batch_video_inputs(processor, [frames] * batch, [times] * batch, [prompt] * batch,
                                  durations_s=[duration] * batch, padding_side="left").to(model.device)

    def timed_generate(runner: QwenRunner, inputs, new_tokens: int) -> dict:
        gen = runner.generation_config
        gen.max_new_tokens = new_tokens
        clock = StepClock(sync)
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode(), decode_attention(runner.decode):
            model.generate(**inputs, generation_config=gen, stopping_criteria=StoppingCriteriaList([clock]))
        steps = np.diff([t0, *clock.stamps])
        prompt_tokens = int(inputs["input_ids"].shape[1])
        decode_ms = 1000 * statistics.median(steps[1:])
        out = {"prompt_tokens": prompt_tokens, "total_s": round(clock.stamps[-1] - t0, 3),
               "prefill_s": round(float(steps[0]), 3), "decode_ms_per_step": round(decode_ms, 2),
               "decode_ms_max": round(1000 * float(steps[1:].max()), 1)}
        if bandwidth:
            bound_ms = (params_bytes + kv_bytes_per_token * (prompt_tokens + new_tokens)
                        * inputs["input_ids"].shape[0]) / (bandwidth * 1e12) * 1000
            out["bound_ms_per_step"] = round(bound_ms, 2)
            out["share_of_bound"] = round(bound_ms / decode_ms, 3)
        return out

    modes = args.modes.split(",")
    result["modes"] = {}
    for mode in modes:
        runner = QwenRunner(model, processor, max_new_tokens=args.new_tokens, decode=mode)
        calls[0] += 1
        cold = inputs_for(args.frames - 2 * calls[0])  # KV lengths no earlier call met
        result["modes"][mode] = {
            "cold": timed_generate(runner, cold, args.new_tokens),
            "warm": timed_generate(runner, cold, args.new_tokens),
        }
        if not smoke:
            torch._dynamo.reset()
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(mode, json.dumps(result["modes"][mode]), flush=True)

    # Grounding throughput: --queries answers of --answer-tokens tokens at the auto batch size.
    runner = QwenRunner(model, processor, max_new_tokens=args.answer_tokens, decode="auto")
    from scenetg.models.batch_size import visual_tokens

    batch = runner.batch_size("auto", visual_tokens(args.frames, size[1], size[0]))
    batch = max(1, min(batch, args.queries))
    inputs = inputs_for(args.frames, batch)
    timed_generate(runner, inputs, 4)  # warm the batch shape's kernels
    if not smoke:
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    done = 0
    step = None
    while done < args.queries:
        step = timed_generate(runner, inputs, args.answer_tokens)
        done += batch
    dt = time.perf_counter() - t
    result["grounding"] = {
        "decode": runner.decode, "auto_batch_size": batch, "queries": done,
        "answer_tokens": args.answer_tokens, "queries_per_s": round(done / dt, 3),
        "last_batch": step,
        "peak_gib": None if smoke else round(torch.cuda.max_memory_allocated() / 2**30, 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
