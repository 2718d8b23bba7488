"""Captions on a lent GPU: `captions.batch_size: auto` against the old default 4 (issue 9, item 3).

The real-size (randomly initialised) Qwen2.5-VL-7B of `gpu_grpo_step.py`, 32 scenes × 8 frames
at 448×252, 64 new tokens (end tokens' LM-head rows zeroed, so every caption runs to the limit).
Each batch shape is warmed up once before timing. Prints JSON and writes it to --out.

    python benchmarks/gpu_captions_auto.py --out result.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scenes", type=int, default=32)
    args = ap.parse_args()

    from gpu_grpo_step import real_size_model

    from scenetg.config import CaptionsConfig
    from scenetg.curate.stages.captions import SceneFrames, TransformersCaptioner
    from scenetg.models.tiny import make_tiny_qwen

    work = Path(tempfile.mkdtemp())
    model, processor = real_size_model(make_tiny_qwen(work / "tiny"))
    model.eval()
    rng = np.random.default_rng(0)
    scenes = [
        SceneFrames(frames=list(rng.integers(0, 255, (8, 252, 448, 3), dtype=np.uint8)),
                    times_s=[i * 0.5 + t * 0.25 for t in range(8)], duration_s=2.0)
        for i in range(args.scenes)
    ]
    result = {"device": torch.cuda.get_device_name(0), "scenes": args.scenes, "frames": 8,
              "new_tokens": 64, "torch": torch.__version__}
    for label, value in (("batch_4", 4), ("auto", "auto")):
        cap = TransformersCaptioner(CaptionsConfig(model=str(work / "tiny"), batch_size=value,
                                                   max_new_tokens=64), model, processor)
        size = cap.batch_size(scenes[0])
        cap.caption_scenes(scenes[:size])  # warm the batch shape
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        cap.caption_scenes(scenes)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        result[label] = {"batch_size": size, "scenes_per_s": round(args.scenes / dt, 2),
                         "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    result["auto_over_4"] = round(result["auto"]["scenes_per_s"] / result["batch_4"]["scenes_per_s"], 2)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
