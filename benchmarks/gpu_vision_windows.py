"""Vision-tower prefill on a lent GPU: transformers' one attention call per window vs ours (issue 9,
item 5).

Qwen2.5-VL-7B's vision tower alone (depth 32, hidden 1280, 16 heads, window 112 px, full attention
in blocks 7/15/23/31; random weights, bf16, SDPA), one 128-frame video at 448×252 (64 × 576
patches, 768 windows per windowed block). Each variant is warmed up (`--warmup` passes, which
also builds any per-shape cuDNN graphs), then timed `--reps` times with `torch.cuda.synchronize`
around each pass, alternating stock and batched; reported: median ms, attention calls per pass,
peak memory, and the largest output difference. Twice: with PyTorch's default SDPA dispatch and
with SDPA limited to the flash / memory-efficient kernels (`ground --decode auto` on CUDA).
Needs only torch, transformers and this checkout on PYTHONPATH; ~1 min on an H200.

    PYTHONPATH=$PWD python benchmarks/gpu_vision_windows.py --out result.json \\
        [--record benchmarks/gpu_results/vision_windows.json]

`--record` appends the run (with the date and this command) to a gpu_results document, the form
`benchmarks/run_all.py` renders into docs/BENCHMARKS.md. `--smoke` runs a narrow tower on the CPU
to test the script.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

TITLE = ("Vision tower prefill: one attention call per window (transformers) vs per window "
         "length (scenetg) (Qwen2.5-VL-7B vision dimensions, random weights, bf16; 128 frames at "
         "448x252)")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _kernels(name: str):
    if name == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def measure(frames: int, warmup: int, reps: int, device: str, dtype, dims: dict) -> dict:
    from bench_vision_windows import grid_for, vision_config
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as q

    from scenetg.models.vision_windows import install_window_batching, remove_window_batching

    torch.manual_seed(0)
    with torch.device(device):
        tower = q.Qwen2_5_VisionTransformerPretrainedModel._from_config(vision_config(dims), dtype=dtype)
    tower.eval()
    grid = grid_for(frames).to(device)
    pixels = torch.randn(int(grid.prod()), 3 * 2 * 14 * 14, device=device, dtype=dtype)

    calls = {"n": 0}
    sdpa = q.ALL_ATTENTION_FUNCTIONS._global_mapping["sdpa"]

    def counting(module, *args, **kwargs):
        calls["n"] += 1
        return sdpa(module, *args, **kwargs)

    def prefill():
        return tower(pixels, grid_thw=grid).pooler_output

    result = {"frames": frames, "visual_tokens": int(grid.prod()) // 4}
    for kernels in ("default", "no_cudnn"):
        times: dict[str, list[float]] = {"stock": [], "batched": []}
        outputs, peaks, n_calls = {}, {}, {}
        with torch.inference_mode(), _kernels(kernels):
            for variant in ("stock", "batched"):
                (install_window_batching if variant == "batched" else remove_window_batching)(tower)
                q.ALL_ATTENTION_FUNCTIONS._global_mapping["sdpa"] = counting
                calls["n"] = 0
                try:
                    outputs[variant] = prefill().float()
                finally:
                    q.ALL_ATTENTION_FUNCTIONS._global_mapping["sdpa"] = sdpa
                n_calls[variant] = calls["n"]
                for _ in range(warmup):
                    prefill()
                if device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                _sync(device)
                prefill()
                _sync(device)
                if device.startswith("cuda"):
                    peaks[variant] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            for _ in range(reps):
                for variant in ("stock", "batched"):
                    (install_window_batching if variant == "batched" else remove_window_batching)(tower)
                    _sync(device)
                    t = time.perf_counter()
                    prefill()
                    _sync(device)
                    times[variant].append(time.perf_counter() - t)
            remove_window_batching(tower)
        stock_ms = statistics.median(times["stock"]) * 1000
        ours_ms = statistics.median(times["batched"]) * 1000
        scale = outputs["stock"].abs().max().item()
        result[kernels] = {
            "stock_ms": round(stock_ms, 1),
            "batched_ms": round(ours_ms, 1),
            "speedup": round(stock_ms / ours_ms, 2),
            "stock_calls": n_calls["stock"],
            "batched_calls": n_calls["batched"],
            "max_abs_diff_over_max_abs": round((outputs["batched"] - outputs["stock"]).abs().max().item() / scale, 5),
            **({"stock_peak_gib": peaks["stock"], "batched_peak_gib": peaks["batched"]} if peaks else {}),
        }
    return result


def record(doc_path: Path, run: dict) -> None:
    """Append `run`, flattened, to the gpu_results document at `doc_path` (created if missing)."""
    doc = json.loads(doc_path.read_text()) if doc_path.is_file() else {"title": TITLE, "runs": []}
    flat = {k: v for k, v in run.items() if not isinstance(v, dict)}
    for kernels in ("default", "no_cudnn"):
        flat.update({f"{kernels}_{k}": v for k, v in run[kernels].items()})
    doc["runs"].append(flat)
    doc.setdefault("notes", (
        "`default`: PyTorch's SDPA dispatch; `no_cudnn`: SDPA limited to flash / memory-efficient "
        "(math as fallback), as `ground --decode auto` runs on CUDA. Calls are attention-function "
        "calls of one prefill; the output difference is bf16 rounding of a different summation "
        "order (CPU fp32 outputs are identical, tests/test_vision_windows.py)."))
    doc_path.write_text(json.dumps(doc, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--record", type=Path, help="gpu_results document to append this run to")
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="narrow tower on the CPU (tests the script)")
    args = ap.parse_args()

    from bench_vision_windows import NARROW, SEVEN_B

    if args.smoke:
        device, dtype, dims, name = "cpu", torch.float32, NARROW, "cpu (smoke: narrow tower)"
    else:
        device, dtype, dims, name = "cuda", torch.bfloat16, SEVEN_B, torch.cuda.get_device_name(0)
    import transformers

    run = {"device": name, "date": dt.date.today().isoformat(), "torch": torch.__version__,
           "transformers": transformers.__version__,
           "command": "PYTHONPATH=$PWD python " + shlex.join(["benchmarks/gpu_vision_windows.py", *sys.argv[1:]])}
    run.update(measure(args.frames, args.warmup, args.reps, device, dtype, dims))
    args.out.write_text(json.dumps(run, indent=2) + "\n")
    if args.record:
        record(args.record, run)
    print(json.dumps(run, indent=2))


if __name__ == "__main__":
    main()
