"""`scenetg train`: GRPO with token-aware KL and the CenDist reward, on TRL.

`train(cfg)` checks everything cheap first (config, data, videos, the model's video processor),
then builds the policy (LoRA through PEFT or full fine-tuning, the vision tower frozen by
default), TRL's `GRPOConfig` from ``cfg.grpo`` and `VideoGRPOTrainer`, and trains. The run folder
ends with ``final/`` (a plain checkpoint `scenetg ground --model RUN/final` loads; LoRA merged),
``config.yaml`` (the resolved config), ``metrics.jsonl`` and ``curves.png``; TRL writes
``checkpoint-N/`` folders that ``resume_from_checkpoint`` continues from. The folder belongs to
one run (`rl.run_folder`): locked while training, and nothing is written in it before every
check has passed.
"""

from __future__ import annotations

import dataclasses
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenetg.atomic_files import honour_umask_tree
from scenetg.errors import ConfigError, ModelError
from scenetg.extras import require_extra
from scenetg.folder_lock import lock_folder
from scenetg.grounding.samples import FrameSampling
from scenetg.models.qwen import load_qwen, resolve_device, resolve_dtype
from scenetg.models.rope_positions import refuse_stock_positions_on_vllm
from scenetg.progress import Reporter
from scenetg.rl.config import TrainConfig
from scenetg.rl.rewards import REWARD_FUNCTIONS, REWARD_NAMES
from scenetg.rl.run_folder import (
    OUTPUT_FLAG,
    check_output_dir,
    checkpoint_step,
    claim_run_folder,
    is_main_process,
    resume_point,
    write_run_config,
)
from scenetg.rl.sft_config import answer_decimals
from scenetg.rl.train_data import TrainingData, load_training_data
from scenetg.rl.vllm_video import check_vllm_for_video, vision_logit_bias
from scenetg.video.frame_cache import FrameCache

MODEL_KEY = "model (--model)"
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "luspo", "sapo", "vespo")
"""TRL 1.16's `loss_type` values (`GRPOTrainer._compute_loss`; a test reads them from its source)."""


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
        key = "reward" if "reward" in self.last_log else "loss"  # GRPO / SFT
        value = self.last_log.get(key)
        tail = f", last {key} {value:.3f}" if isinstance(value, (int, float)) else ""
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
    grpo = checkpointing_names(dict(cfg.grpo), GRPOConfig)
    defaults = checkpointing_names(defaults, GRPOConfig)
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


CHECKPOINTING_NAMES = (
    ("gradient_checkpointing", "activation_checkpointing"),
    ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"),
)
"""transformers' old and new names of the option: 5.17 (what the ``[vllm]`` extra resolves to)
knows only the old one; 5.25 has the new one and keeps the old one as a deprecated alias."""


def checkpointing_names(options: dict[str, Any], config_cls: Any) -> dict[str, Any]:
    """`options` with the checkpointing keys under the name `config_cls` (TRL's GRPOConfig on the
    installed transformers) defines: either spelling works in ``grpo:`` on either version, and
    a user's old-name value is never overridden by our default under the new one."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    out = dict(options)
    for old, new in CHECKPOINTING_NAMES:
        src, dst = (old, new) if new in fields else (new, old)
        if src in out:
            out.setdefault(dst, out.pop(src))
    return out


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
    would be taken for a video slot in the log-prob passes (placeholder count != features).
    vLLM's bias reaches its reported log-probs, so the trainer's passes add it too (`rl.logit_bias`)."""
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
    honour_umask_tree(tmp)  # safetensors writes through a 0600 temp file
    if final_dir.exists():
        import shutil

        shutil.rmtree(final_dir)
    tmp.rename(final_dir)
    return final_dir


@dataclass
class CheckedRun:
    """What `check_run` found valid: the training rows, the device and TRL's GRPOConfig."""

    data: TrainingData
    device: str
    args: Any


def check_run(cfg: TrainConfig, reporter: Reporter | None = None) -> CheckedRun:
    """Every check that needs no model: extras, TRL's internals, data and videos, device, dtype,
    TRL's config and the keys it only reads later (``loss_type``), the output folder's path.
    ConfigError naming the key."""
    for module in ("trl", "peft"):
        require_extra(module, "train", "scenetg train")
    from scenetg.rl.trainer import check_trl_internals  # deferred: pulls torch, trl

    check_trl_internals()
    check_output_dir(Path(cfg.output_dir))
    device = checked_device(cfg.device)
    try:
        resolve_dtype(cfg.dtype, device)
    except ModelError as exc:
        raise ConfigError(f"dtype: {exc}") from None
    data = load_training_data(cfg.data)
    (reporter or Reporter()).log(data.load_summary)
    if cfg.algo == "sft":  # TRL's SFTConfig from ``sft:``, checked here too
        from scenetg.rl.sft import (  # deferred: pulls torch, trl
            question_rows,
            sft_args,
            with_question_rows,
        )

        sft = sft_args(cfg, device)
        if cfg.sft.get("questions"):  # a second task's rows on the training videos
            data.rows = with_question_rows(data.rows, question_rows(cfg.sft["questions"], data.video_root))
        check_launch(sft)
        return CheckedRun(data, device, sft)
    args = grpo_args(cfg, device)
    check_launch(args)
    if args.num_generations < 2:
        raise ConfigError("grpo.num_generations must be >= 2 (GRPO compares rollouts of a prompt)")
    if args.loss_type not in LOSS_TYPES:
        raise ConfigError(f"grpo.loss_type: must be one of {', '.join(LOSS_TYPES)}, got {args.loss_type!r}")
    if args.use_vllm:  # vLLM present, recent enough, colocate mode: before any model loads
        check_vllm_for_video(args.vllm_mode)
        refuse_stock_positions_on_vllm(cfg.model, "grpo.use_vllm")
    return CheckedRun(data, device, args)


def checked_device(device: str) -> str:
    """`resolve_device`, and ConfigError naming ``device`` when it is not one torch knows or
    names a GPU this machine does not have."""
    import torch  # deferred: pulls torch

    resolved = resolve_device(device)
    try:
        kind = torch.device(resolved).type
    except (RuntimeError, ValueError):
        raise ConfigError(f"device: {device!r} is not a device (use auto, cpu or cuda)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r}, but no CUDA GPU is visible here (use auto or cpu)")
    return resolved


def build_trainer(
    cfg: TrainConfig, reporter: Reporter | None = None, model: Any = None, processor: Any = None,
    checked: CheckedRun | None = None,
) -> tuple[Any, Any, int]:
    """``(trainer, processor, n_rows)`` for `cfg`, after every cheap check (`check_run`, unless
    `checked` is its result) and the model's video processor. `model`/`processor` skip loading
    (tests, notebooks). Writes nothing in the run folder (`train` does)."""

    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from scenetg.rl.curves import (  # deferred: pulls transformers
        MetricsLogCallback,
        StepProgressCallback,
    )
    from scenetg.rl.file_modes import CheckpointModesCallback  # deferred: pulls transformers
    from scenetg.rl.trainer import VideoGRPOTrainer  # deferred: pulls torch, trl

    reporter = reporter or Reporter()
    checked = checked or check_run(cfg, reporter)
    data, device, args = checked.data, checked.device, checked.args
    if cfg.algo == "sft":  # the supervised baseline: same rows, frames, policy, run folder
        trainer = build_sft_trainer(cfg, data.rows, device, reporter, model, processor, args)
        return trainer, trainer.processing_class, len(data.rows)
    out = Path(cfg.output_dir)
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
        callbacks=[MetricsLogCallback(out / "metrics.jsonl"), CheckpointModesCallback()],
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


def build_sft_trainer(
    cfg: TrainConfig, rows: list[dict], device: str, reporter: Reporter, model: Any, processor: Any,
    args: Any = None,
) -> Any:
    """`rl.sft.VideoSFTTrainer` for ``algo: sft``: TRL's SFTConfig from ``cfg.sft`` (`args`, as
    `check_run` made it before the model loads), then the policy and callbacks as for GRPO."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from scenetg.rl.curves import (  # deferred: pulls transformers
        MetricsLogCallback,
        StepProgressCallback,
    )
    from scenetg.rl.file_modes import CheckpointModesCallback  # deferred: pulls transformers
    from scenetg.rl.sft import VideoSFTTrainer, sft_args  # deferred: pulls torch, trl

    args = args or sft_args(cfg, device)
    out = Path(cfg.output_dir)
    if model is None or processor is None:
        model, processor = load_policy(cfg, device)
    import datasets

    trainer = VideoSFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=processor,
        peft_config=peft_config(cfg),
        callbacks=[MetricsLogCallback(out / "metrics.jsonl"), CheckpointModesCallback()],
        sampling=FrameSampling(cfg.sampling.fps, cfg.sampling.max_frames, cfg.sampling.max_side),
        frame_cache=FrameCache(cfg.frame_cache or out / "frame_cache"),
        answer_decimals=answer_decimals(cfg.sft),
    )
    for printer in (ProgressCallback, PrinterCallback):  # per-step dicts go to metrics.jsonl
        trainer.remove_callback(printer)
    trainer.add_callback(StepProgressCallback(reporter, task="SFT steps"))
    return trainer


def train(
    cfg: TrainConfig,
    resume_from_checkpoint: str | bool | None = None,
    reporter: Reporter | None = None,
    model: Any = None,
    processor: Any = None,
    overwrite: bool = False,
) -> TrainSummary:
    """Run GRPO (or SFT, ``algo: sft``) as `cfg` says; see the module docstring for what the run
    folder holds.

    `resume_from_checkpoint`: a ``checkpoint-N`` folder or ``last``; its run must have had this
    config (`rl.run_folder.RESUME_FREE_KEYS` may differ). `overwrite`: replace a run already in
    ``output_dir`` (refused otherwise)."""
    from scenetg.rl.curves import plot_curves, read_metrics  # deferred: pulls transformers

    t0 = time.perf_counter()
    checked = check_run(cfg, reporter)
    out = Path(cfg.output_dir)
    checkpoint = resume_point(out, resume_from_checkpoint)
    max_steps = (cfg.sft if cfg.algo == "sft" else cfg.grpo).get("max_steps")
    if checkpoint is not None and max_steps and checkpoint_step(checkpoint) >= max_steps:
        # transformers would train one more step past max_steps when resuming mid-epoch
        raise ConfigError(
            f"{cfg.algo}.max_steps: {max_steps}, but {checkpoint} is at step {checkpoint_step(checkpoint)} "
            f"already; set a larger max_steps (--max-steps) to train on from it"
        )
    main = is_main_process()  # other ranks of `accelerate launch` share the main one's folder
    with lock_folder(out, OUTPUT_FLAG) if main else nullcontext():
        if main:
            claim_run_folder(out, cfg.to_dict(), checkpoint, overwrite)
        trainer, processor, n_rows = build_trainer(cfg, reporter, model, processor, checked)
        if main:  # the model loaded and the trainer accepted its settings: now the run is this one
            write_run_config(out, cfg.to_dict())
        metrics_path = out / "metrics.jsonl"
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        final_dir = save_final(trainer, processor, out / "final") if main else out / "final"
        curves = plot_curves(metrics_path, out / "curves.png", algo=cfg.algo) if main else out / "curves.png"
        trainer.accelerator.wait_for_everyone()  # no rank reports before final/ is in place
    key = "loss" if cfg.algo == "sft" else "reward"
    logs = [r for r in read_metrics(metrics_path) if key in r] if metrics_path.is_file() else []
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

