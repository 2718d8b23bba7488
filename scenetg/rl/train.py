"""`scenetg train`: GRPO with token-aware KL and the CenDist reward, on TRL.

`train(cfg)` checks everything cheap first (config, data, videos, the model's video processor),
then builds the policy (LoRA through PEFT or full fine-tuning, the vision tower frozen by
default), TRL's `GRPOConfig` from ``cfg.grpo`` and `VideoGRPOTrainer`, and trains. The run folder
ends with ``final/`` (a plain checkpoint `scenetg ground --model RUN/final` loads; LoRA merged),
``config.yaml`` (the resolved config), ``metrics.jsonl`` and ``curves.png``; TRL writes
``checkpoint-N/`` folders that ``resume_from_checkpoint`` continues from.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scenetg.atomic_files import write_bytes_atomic
from scenetg.errors import ConfigError, ModelError
from scenetg.extras import require_extra
from scenetg.grounding.samples import FrameSampling
from scenetg.models.qwen import load_qwen, resolve_device
from scenetg.progress import Reporter
from scenetg.rl.config import TrainConfig
from scenetg.rl.rewards import REWARD_FUNCTIONS, REWARD_NAMES
from scenetg.rl.train_data import load_training_data
from scenetg.rl.vllm_video import check_vllm_for_video, vision_logit_bias
from scenetg.video.frame_cache import FrameCache

MODEL_KEY = "model (--model)"


@dataclass
class TrainSummary:
    output_dir: Path
    final_dir: Path
    steps: int
    rows: int
    seconds: float
    metrics_path: Path
    curves_path: Path
    last_log: dict

    def summary(self) -> str:
        reward = self.last_log.get("reward")
        tail = f", last reward {reward:.3f}" if isinstance(reward, (int, float)) else ""
        return (
            f"trained {self.steps} steps on {self.rows} queries in {self.seconds:.1f} s{tail}; "
            f"model: {self.final_dir}"
        )


def grpo_args(cfg: TrainConfig, device: str) -> Any:
    """TRL's GRPOConfig: our defaults, then ``cfg.grpo`` on top; the keys we own set last."""
    from trl import GRPOConfig

    on_gpu = device.startswith("cuda")
    half = cfg.dtype in ("bf16", "bfloat16") or (cfg.dtype == "auto" and on_gpu)
    defaults: dict[str, Any] = {
        "num_generations": 8,
        "per_device_train_batch_size": 8,
        "max_completion_length": 256,
        "learning_rate": 1e-5 if cfg.lora.enabled else 1e-6,
        "logging_steps": 1,
        "save_steps": 100,
        "report_to": "tensorboard" if _has_tensorboard() else "none",
        "bf16": half,
        "use_cpu": not on_gpu,
        "activation_checkpointing": on_gpu,
        "remove_unused_columns": False,
    }
    weights = [getattr(cfg.rewards, n) for n in REWARD_NAMES if getattr(cfg.rewards, n) > 0]
    grpo = dict(cfg.grpo)
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if old in grpo:  # transformers 5's deprecated alias: our default for `new` would win over it
            grpo.setdefault(new, grpo.pop(old))
    kwargs = {
        **defaults,
        **grpo,
        "output_dir": cfg.output_dir,
        "beta": cfg.kl.beta,
        "reward_weights": weights,
        "use_liger_kernel": False,
    }
    try:
        return GRPOConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"grpo: {first}") from None


def check_launch(args: Any) -> None:
    """Refuse `accelerate launch` with FSDP on the CPU: accelerate (1.16) shards only on
    accelerator devices and, with ``use_cpu``, runs plain DDP instead, so the config the user
    launched would silently not be the one that ran (docs/CHOICES.md, Training)."""
    if args.use_cpu and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        raise ConfigError(
            "accelerate launch with FSDP on the CPU: accelerate shards only on GPUs and would run "
            "plain DDP; launch with pipelines/accelerate/cpu_2proc.yaml, or train on GPUs"
        )


def _has_tensorboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def reward_functions(cfg: TrainConfig) -> list:
    return [REWARD_FUNCTIONS[n] for n in REWARD_NAMES if getattr(cfg.rewards, n) > 0]


def load_policy(cfg: TrainConfig, device: str) -> tuple[Any, Any]:
    """Model and processor; ModelError naming `model` when it has no video processor."""

    model, processor = load_qwen(
        cfg.model, dtype=cfg.dtype, device=device, flag=MODEL_KEY,
        share_video_encoding=cfg.share_video_encoding,
    )
    if getattr(processor, "video_processor", None) is None:
        raise ModelError(
            f"{cfg.model}: {type(processor).__name__} has no video processor; "
            f"train a video model (Qwen2.5-VL class) or fix {MODEL_KEY}"
        )
    if cfg.freeze_vision:
        visual = getattr(getattr(model, "model", model), "visual", None)
        if visual is not None:
            visual.requires_grad_(False)
    model.train()
    return model, processor


VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def suppress_vision_tokens(args: Any, processor: Any) -> None:
    """Rollouts must not emit vision placeholders: a sampled ``<|video_pad|>`` in a completion
    would be taken for a video slot in the log-prob passes (placeholder count != features)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS]
    ids = [i for i in ids if i is not None and i != tokenizer.unk_token_id]
    gen = dict(args.generation_kwargs or {})
    if args.use_vllm:  # generation_kwargs go to vLLM's SamplingParams, which has logit_bias

        gen["logit_bias"] = {**(gen.get("logit_bias") or {}), **vision_logit_bias(ids)}
    else:
        gen["suppress_tokens"] = sorted(set(gen.get("suppress_tokens") or []) | set(ids))
    args.generation_kwargs = gen


def peft_config(cfg: TrainConfig) -> Any:
    if not cfg.lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )


def write_config(cfg: TrainConfig, out_dir: Path) -> Path:

    target = out_dir / "config.yaml"
    write_bytes_atomic(target, yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
    return target


def save_final(trainer: Any, processor: Any, final_dir: Path) -> Path:
    """The trained policy as a plain checkpoint (LoRA merged into the weights), with its processor
    and chat template: what `scenetg ground --model` and `load_qwen` read."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    tmp = final_dir.with_name(final_dir.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    if final_dir.exists():
        import shutil

        shutil.rmtree(final_dir)
    tmp.rename(final_dir)
    return final_dir


def build_trainer(
    cfg: TrainConfig, reporter: Reporter | None = None, model: Any = None, processor: Any = None
) -> tuple[Any, Any, int]:
    """``(trainer, processor, n_rows)`` for `cfg`, after every cheap check (config, data, videos,
    the model's video processor). `model`/`processor` skip loading (tests, notebooks)."""

    for module in ("trl", "peft"):
        require_extra(module, "train", "scenetg train")
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from scenetg.rl.curves import (  # deferred: pulls transformers
        MetricsLogCallback,
        StepProgressCallback,
    )
    from scenetg.rl.trainer import (  # deferred: pulls torch, trl
        VideoGRPOTrainer,
        check_trl_internals,
    )

    reporter = reporter or Reporter()
    check_trl_internals()  # also: trl present (the [train] extra)
    data = load_training_data(cfg.data)
    reporter.log(data.load_summary)
    device = resolve_device(cfg.device)
    args = grpo_args(cfg, device)
    check_launch(args)
    if args.num_generations < 2:
        raise ConfigError("grpo.num_generations must be >= 2 (GRPO compares rollouts of a prompt)")
    if args.use_vllm:  # vLLM present, recent enough, colocate mode: before any model loads

        check_vllm_for_video(args.vllm_mode)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.should_save:  # the main process (accelerate launch: rank 0) writes the run folder
        write_config(cfg, out)
    if model is None or processor is None:
        model, processor = load_policy(cfg, device)
    suppress_vision_tokens(args, processor)
    import datasets

    trainer = VideoGRPOTrainer(
        model=model,
        reward_funcs=reward_functions(cfg),
        args=args,
        train_dataset=datasets.Dataset.from_list(data.rows),
        processing_class=processor,
        peft_config=peft_config(cfg),
        callbacks=[MetricsLogCallback(out / "metrics.jsonl")],
        sampling=FrameSampling(cfg.sampling.fps, cfg.sampling.max_frames, cfg.sampling.max_side),
        beta_timestamp=cfg.kl.beta_timestamp,
        frame_cache=FrameCache(cfg.frame_cache or out / "frame_cache"),
        share_video_encoding=cfg.share_video_encoding,
        decode=cfg.decode,
    )
    for printer in (ProgressCallback, PrinterCallback):  # per-step dicts go to metrics.jsonl
        trainer.remove_callback(printer)
    trainer.add_callback(StepProgressCallback(reporter))
    return trainer, processor, len(data.rows)


def train(
    cfg: TrainConfig,
    resume_from_checkpoint: str | bool | None = None,
    reporter: Reporter | None = None,
    model: Any = None,
    processor: Any = None,
) -> TrainSummary:
    """Run GRPO as `cfg` says; see the module docstring for what the run folder holds."""
    from scenetg.rl.curves import plot_curves, read_metrics  # deferred: pulls transformers

    t0 = time.perf_counter()
    trainer, processor, n_rows = build_trainer(cfg, reporter, model, processor)
    out = Path(cfg.output_dir)
    metrics_path = out / "metrics.jsonl"
    if resume_from_checkpoint in ("last", "latest", True):
        resume_from_checkpoint = _last_checkpoint(out)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    final_dir, curves = out / "final", out / "curves.png"
    if trainer.args.should_save:  # one writer under `accelerate launch`: rank 0
        save_final(trainer, processor, final_dir)
        plot_curves(metrics_path, curves)
    trainer.accelerator.wait_for_everyone()  # no rank reports before final/ is in place
    logs = [r for r in read_metrics(metrics_path) if "reward" in r]
    return TrainSummary(
        output_dir=out,
        final_dir=final_dir,
        steps=int(trainer.state.global_step),
        rows=n_rows,
        seconds=time.perf_counter() - t0,
        metrics_path=metrics_path,
        curves_path=curves,
        last_log=logs[-1] if logs else {},
    )


def _last_checkpoint(out: Path) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if last is None:
        raise ConfigError(f"--resume-from-checkpoint: no checkpoint-N folder in {out}")
    return last
