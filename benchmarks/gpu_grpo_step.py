"""One real-size GRPO step on a lent GPU (never required; see docs/BENCHMARKS.md).

A randomly initialised Qwen2.5-VL-7B built from its published dimensions (no download: the tiny
model's config and processor with the real sizes and pixel budget), LoRA, bf16, gradient
checkpointing; 2 prompts × 4 generations × 64 frames at 448 px, `max_completion_length` new tokens
(the end-token LM-head rows are zeroed so every rollout runs to the limit). Frames come from a
pre-filled `FrameCache` (no PyAV on the GPU machine). Reports per-step wall time, the share spent
generating rollouts, and peak GPU memory, as JSON.

    python benchmarks/gpu_grpo_step.py --out result.json [--steps 3] [--new-tokens 128] [--no-share-video]

`--no-share-video` runs the stock per-rollout vision encoding (``share_video_encoding: false``)
instead of one encoding per distinct video, for a side-by-side comparison on the same machine.

The GPU machine lacks trl, datasets and a recent transformers: bring this venv's versions as
cp312 wheels (no torch), e.g. `pip download --no-deps --python-version 3.12 --only-binary=:all:
--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d
.cache/gpu_wheels transformers==X trl==1.16.0 datasets==X peft==X accelerate==X ...` (the full
list: every dependency of those not already on the machine), then `pip install --no-deps
--target /tmp/site .cache/gpu_wheels/*.whl` there and put /tmp/site first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

QWEN25_VL_7B = {
    "text": {
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
        "max_position_embeddings": 128000, "max_window_layers": 28,
    },
    "rope_theta": 1e6,
    "mrope_section": [16, 24, 24],
    "vision": {
        "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
        "out_hidden_size": 3584, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
    },
}
MIN_PIXELS, MAX_PIXELS = 3136, 12845056  # the real checkpoint's processor budget


def real_size_model(tiny_dir: Path, smoke: bool = False, device: str = "cuda"):
    """The 7B-size model on the GPU (`smoke`: the tiny model on the CPU, to test this script)."""
    from transformers import AutoConfig, AutoProcessor, Qwen2_5_VLForConditionalGeneration

    if smoke:
        from scenetg.models.qwen import load_qwen

        return load_qwen(tiny_dir, dtype="float32", device="cpu")
    cfg = AutoConfig.from_pretrained(tiny_dir)
    for k, v in QWEN25_VL_7B["text"].items():
        setattr(cfg.text_config, k, v)
    cfg.text_config.rope_parameters = {
        "rope_type": "default", "rope_theta": QWEN25_VL_7B["rope_theta"],
        "mrope_section": QWEN25_VL_7B["mrope_section"],
    }
    cfg.text_config.layer_types = ["full_attention"] * cfg.text_config.num_hidden_layers
    for k, v in QWEN25_VL_7B["vision"].items():
        setattr(cfg.vision_config, k, v)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
    processor = AutoProcessor.from_pretrained(tiny_dir)
    for proc in (processor.image_processor, processor.video_processor):
        proc.min_pixels, proc.max_pixels = MIN_PIXELS, MAX_PIXELS
        proc.size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    tok = processor.tokenizer
    with torch.no_grad():
        for t in ("<|im_end|>", "<|endoftext|>"):
            model.lm_head.weight[tok.convert_tokens_to_ids(t)].zero_()
    model.config._name_or_path = str(tiny_dir)
    from scenetg.models.vision_windows import install_window_batching

    install_window_batching(model)  # what load_qwen does: one vision attention call per window length
    return model, processor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--loss-reps", type=int, default=2, help="token-aware vs stock loss, each")
    ap.add_argument("--no-share-video", action="store_true",
                    help="encode every rollout's video (stock) instead of each distinct video once")
    ap.add_argument("--decode", default="plain", choices=["auto", "no-cudnn", "plain"],
                    help="how rollouts run attention (train key `decode`; plain: torch picks cuDNN)")
    args = ap.parse_args()
    smoke = not torch.cuda.is_available()  # CPU: the tiny model, to check the script itself

    from scenetg.grounding.prompts import sample_video_times
    from scenetg.models.tiny import make_tiny_qwen
    from scenetg.rl.config import train_config_from_dict
    from scenetg.rl.train import build_trainer
    from scenetg.video.frame_cache import FrameCache

    work = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    model, processor = real_size_model(make_tiny_qwen(work / "tiny"), smoke)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())

    # Two "videos" of 128 s whose 64 frames (448x252) are already in the frame cache.
    duration, fps = 2.0 * args.frames, 0.5
    videos, cache = work / "videos", FrameCache(work / "frame_cache")
    videos.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(2):
        path = videos / f"v{i}.mp4"
        path.write_bytes(b"stand-in: frames are served by the cache")
        times = sample_video_times(duration, fps, args.frames)
        from scenetg.video.frame_cache import frame_cache_key

        key = frame_cache_key(path, times, 448)
        target = cache.root / key[:2] / f"{key}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, rng.integers(0, 255, (len(times), 252, 448, 3), dtype=np.uint8))
        lines.append(json.dumps({"qid": f"q{i}", "vid": f"v{i}", "duration": duration,
                                 "query": f"the person opens door {i}", "relevant_windows": [[10.0, 20.0]]}))
    (work / "train.jsonl").write_text("\n".join(lines) + "\n")
    cfg = train_config_from_dict({
        "model": str(work / "tiny"), "device": "cpu" if smoke else "cuda", "output_dir": str(work / "run"), "frame_cache": str(cache.root),
        "data": {"dataset": str(work / "train.jsonl"), "video_root": str(videos)},
        "sampling": {"fps": fps, "max_frames": args.frames, "max_side": 448},
        "lora": {"enabled": True, "r": 64, "alpha": 128},
        "share_video_encoding": not args.no_share_video,
        "decode": args.decode,
        "grpo": {"num_generations": 4, "per_device_train_batch_size": 8,
                 "max_completion_length": args.new_tokens, "max_steps": args.steps, "bf16": not smoke,
                 "gradient_checkpointing": not smoke, "logging_steps": 1, "report_to": "none",
                 "save_strategy": "no", "learning_rate": 1e-5, "seed": 0},
    })
    model.train()
    trainer, _, _ = build_trainer(cfg, model=model, processor=processor)

    def sync():
        if not smoke:
            torch.cuda.synchronize()

    timings: dict[str, list[float]] = {"step": [], "generate": [], "rollout_and_score": []}

    def timed(name, fn):
        def wrapper(*a, **k):
            sync()
            t = time.perf_counter()
            out = fn(*a, **k)
            sync()
            timings[name].append(time.perf_counter() - t)
            return out
        return wrapper

    trainer._generate_single_turn = timed("generate", trainer._generate_single_turn)
    trainer._generate_and_score_completions = timed("rollout_and_score", trainer._generate_and_score_completions)
    trainer.training_step = timed("step", trainer.training_step)
    visual_tokens = []
    real_tokenize = trainer._tokenize_prompts

    def count_tokens(prompts):
        ids, images, fields = real_tokenize(prompts)
        visual_tokens.append(int(fields["video_grid_thw"].prod(-1).sum()) // 4 // len(prompts))
        return ids, images, fields

    trainer._tokenize_prompts = count_tokens
    videos_encoded = [0]  # policy and reference (LoRA: the same tower, adapter off) passes
    visual = next(m for m in trainer.model.modules()
                  if type(m).__name__ == "Qwen2_5_VisionTransformerPretrainedModel")
    visual.register_forward_pre_hook(
        lambda m, a, kw: videos_encoded.__setitem__(0, videos_encoded[0] + int(kw["grid_thw"].shape[0])),
        with_kwargs=True,
    )
    if not smoke:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    peak = 0.0 if smoke else torch.cuda.max_memory_allocated() / 2**30
    steady = slice(1, None) if len(timings["step"]) > 1 else slice(None)
    step_s = float(np.mean(timings["step"][steady]))
    gen_s = float(np.mean(timings["generate"][steady]))
    result = {
        "device": "cpu (smoke test, tiny model)" if smoke else torch.cuda.get_device_name(0),
        "parameters_b": round(n_params / 1e9, 2),
        "model_build_s": round(build_s, 1),
        "frames": args.frames, "prompts": 2, "generations": 4, "new_tokens": args.new_tokens,
        "share_video_encoding": not args.no_share_video,
        "rollout_decode": trainer.rollout_decode,
        "videos_encoded_per_step": round(videos_encoded[0] / max(len(timings["step"]), 1), 1),
        "visual_tokens_per_prompt": visual_tokens[0] if visual_tokens else None,
        "step_s_each": [round(x, 2) for x in timings["step"]],
        "steady_step_s": round(step_s, 2),
        "generate_s": round(gen_s, 2),
        "generate_share": round(gen_s / step_s, 3),
        "rollout_and_score_s": round(float(np.mean(timings["rollout_and_score"][steady])), 2),
        "peak_gib": round(peak, 1),
        "torch": torch.__version__,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.loss_reps:
        result.update(compare_losses(trainer, args.loss_reps, sync))
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def compare_losses(trainer, reps: int, sync) -> dict:
    """Loss forward + backward on the last generated batch: our token-aware `_compute_loss`
    against TRL's own (`GRPOTrainer._compute_loss`, video injected the same way), interleaved;
    plus the timestamp mask's cost on that batch's completions."""
    from trl import GRPOTrainer

    from scenetg.rl.kl import timestamp_token_mask
    from scenetg.rl.trainer import VideoBatch

    inputs = trainer._buffered_inputs[0]
    model = trainer.model

    def stock():
        trainer._video = VideoBatch(
            list(inputs["pixel_values_videos"]), inputs["video_grid_thw"], inputs["second_per_grid_ts"]
        )
        try:
            return GRPOTrainer._compute_loss(trainer, model, inputs)
        finally:
            trainer._video = None

    def ours():
        return trainer._compute_loss(model, inputs)

    times: dict[str, list[float]] = {"token_aware": [], "stock": []}
    order = [("token_aware", ours), ("stock", stock)]
    for rep in range(reps):
        for name, fn in order if rep % 2 == 0 else order[::-1]:  # alternate who runs first
            model.zero_grad(set_to_none=True)
            sync()
            t = time.perf_counter()
            fn().backward()
            sync()
            times[name].append(time.perf_counter() - t)
    model.zero_grad(set_to_none=True)
    t = time.perf_counter()
    timestamp_token_mask(trainer._tokenizer, inputs["completion_ids"])
    mask_s = time.perf_counter() - t
    ours_s, stock_s = min(times["token_aware"]), min(times["stock"])
    return {
        "loss_fwd_bwd_token_aware_s": round(ours_s, 3),
        "loss_fwd_bwd_stock_s": round(stock_s, 3),
        "token_aware_over_stock": round(ours_s / stock_s, 3),
        "timestamp_mask_s_per_micro_batch": round(mask_s, 4),
    }


if __name__ == "__main__":
    main()
