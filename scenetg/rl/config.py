"""`scenetg train` configuration: dataclasses loaded from YAML, coerced and validated up front.

Each value is converted to its field's declared type (YAML gives ``"27"`` and ``"false"``;
booleans are strict), range-checked (NaN is out of range) and named in the error, before any model
loads. ``grpo:`` is passed to TRL's `GRPOConfig` as is (its own ``__post_init__`` validates it);
the keys this project owns (``beta``, ``reward_weights``, ``output_dir``) live in their sections.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenetg.config_fields import (
    coerce_str,
    coerce_value,
    dataclass_from_mapping,
    read_config_mapping,
)
from scenetg.errors import ConfigError
from scenetg.grounding.prompts import DEFAULT_FPS, DEFAULT_MAX_FRAMES, DEFAULT_MAX_SIDE
from scenetg.rl.rewards import REWARD_NAMES
from scenetg.rl.sft_config import ALGOS, check_sft_section
from scenetg.rl.vllm_video import SERVER_MODE_ERROR

LANGUAGE_LORA_TARGETS = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)
"""LoRA on the language model's attention and MLP projections only (the vision tower stays as
pretrained; Qwen2.5-VL's vision blocks use other names, the regex keeps them out regardless)."""

OWNED_GRPO_KEYS = {
    "beta": "kl.beta",
    "reward_weights": "rewards.*",
    "output_dir": "output_dir",
    "reward_funcs": "rewards.*",
}


ROLLOUT_DECODE_MODES = ("auto", "no-cudnn", "plain")
"""`decode` choices for rollouts (`scenetg.models.runner.DECODE_MODES` less ``static``)."""


@dataclass
class DataConfig:
    """Where training queries and their videos come from."""

    dataset: str = "out/dataset"
    """A SceneTG build folder or Parquet file, ``hub:ORG/NAME`` for a Hub dataset, or a benchmark
    annotation file (Charades-STA, ActivityNet, ... through the eval loaders)."""
    format: str = "auto"
    """Annotation format (`scenetg eval --format` names); auto-detected by default."""
    split: str | None = "train"
    """Split of a SceneTG dataset (ignored for other formats)."""
    video_root: str | None = None
    """Folder the videos are resolved under; default: the build's ``--videos`` (manifest.json)."""
    durations: str | None = None
    """Metadata CSV with video durations, for formats that lack them."""
    limit: int | None = None
    """Only the first N queries (quick runs)."""


@dataclass
class SamplingConfig:
    """Frames shown to the model (the same rule as `scenetg ground`)."""

    fps: float = DEFAULT_FPS
    max_frames: int = DEFAULT_MAX_FRAMES
    max_side: int = DEFAULT_MAX_SIDE

    def check(self) -> None:
        _require(self.fps > 0, "sampling.fps", "must be > 0", self.fps)
        _require(self.max_frames >= 2, "sampling.max_frames", "must be >= 2", self.max_frames)
        _require(self.max_side >= 28, "sampling.max_side", "must be >= 28", self.max_side)


@dataclass
class RewardsConfig:
    """Reward weights; total = Σ weight · reward (DESIGN default iou + cendist + 0.5·format).
    A weight of 0 drops that reward."""

    iou: float = 1.0
    cendist: float = 1.0
    format: float = 0.5

    def check(self) -> None:
        for name in REWARD_NAMES:
            _require(getattr(self, name) >= 0, f"rewards.{name}", "must be >= 0", getattr(self, name))
        _require(any(getattr(self, n) > 0 for n in REWARD_NAMES), "rewards", "need a weight > 0", None)


@dataclass
class KLConfig:
    """Token-aware KL: β on ordinary tokens, β_ts on timestamp tokens inside ``<answer>``."""

    beta: float = 0.04
    beta_timestamp: float = 0.0
    """0 frees the timestamps from the reference; equal to `beta` is plain GRPO."""

    def check(self) -> None:
        _require(self.beta >= 0, "kl.beta", "must be >= 0", self.beta)
        _require(
            0 <= self.beta_timestamp <= self.beta,
            "kl.beta_timestamp",
            f"must be in [0, kl.beta = {self.beta}]",
            self.beta_timestamp,
        )


@dataclass
class LoraSettings:
    """PEFT LoRA on the language model; ``enabled: false`` is full fine-tuning."""

    enabled: bool = True
    r: int = 64
    alpha: int = 128
    dropout: float = 0.05
    target_modules: str = LANGUAGE_LORA_TARGETS

    def check(self) -> None:
        _require(self.r >= 1, "lora.r", "must be >= 1", self.r)
        _require(self.alpha >= 1, "lora.alpha", "must be >= 1", self.alpha)
        _require(0 <= self.dropout < 1, "lora.dropout", "must be in [0, 1)", self.dropout)


@dataclass
class TrainConfig:
    """A training run: model, data, frames, rewards, KL, LoRA and TRL's own settings; ``algo``
    picks GRPO or the supervised baseline (SFT) on the same data, frames, policy and run folder."""

    algo: str = "grpo"
    """grpo (the method) or sft (supervised baseline: `rl.sft`; `scenetg train --algo`)."""

    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    """Policy to train: a Hub id or a local folder (a `scenetg train` output's ``final/`` too)."""
    output_dir: str = "out/train"
    """Run folder: checkpoints, ``final/``, ``config.yaml``, ``metrics.jsonl``, ``curves.png``."""
    dtype: str = "auto"
    """Weights dtype: auto (bf16 on GPU), bfloat16, float16, float32."""
    device: str = "auto"
    """auto, cpu or cuda (multi-GPU placement is accelerate's: `accelerate launch`)."""
    freeze_vision: bool = True
    """Keep the vision tower frozen (full fine-tuning too)."""
    share_video_encoding: bool = True
    """Encode each distinct video of a forward pass once, not once per rollout (exact: same
    outputs and gradients; `scenetg.models.shared_video_encoding`). ``false`` runs the stock
    per-row encoding (A/B timing, or a transformers whose Qwen2.5-VL code differs)."""
    decode: str = "plain"
    """How transformers rollouts run attention, as `scenetg ground --decode`: ``plain`` is torch's
    own choice (cuDNN attention on recent GPUs); ``no-cudnn``/``auto`` keep SDPA off it. Measured
    on an H200 (7B-size, LoRA, 8 rollouts x 128 tokens after 4.6k visual tokens): 9.9 s to
    generate with ``plain``, 11.5 s with ``no-cudnn``, so ``plain`` is the default here while
    `ground` (batches of fresh prompt lengths) defaults to ``no-cudnn``. ``static`` compiles per
    prompt length: not offered for rollouts."""
    frame_cache: str | None = None
    """Folder of decoded frames (uint8), keyed by file and sampling; default OUTPUT_DIR/frame_cache."""
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    grpo: dict[str, Any] = field(default_factory=dict)
    """Passed to trl.GRPOConfig (num_generations, learning_rate, max_steps, loss_type, bf16,
    activation_checkpointing, save_steps, report_to, use_vllm with vllm_mode: colocate and TRL's
    vllm_* options, ...)."""
    sft: dict[str, Any] = field(default_factory=dict)
    """``algo: sft`` only: passed to trl.SFTConfig (learning_rate, max_steps, per_device_train_batch_size,
    ...) except ``answer_decimals``, the target's decimals (`rl.sft_config`)."""

    def check(self) -> TrainConfig:
        for part in (self.sampling, self.rewards, self.kl, self.lora):
            part.check()
        _require(bool(self.model), "model", "must name a model", self.model)
        self.decode = coerce_str("decode", self.decode, ROLLOUT_DECODE_MODES)
        self.algo = coerce_str("algo", self.algo, ALGOS)
        check_sft_section(self.sft)
        for key in self.grpo:
            if key in OWNED_GRPO_KEYS:
                raise ConfigError(f"grpo.{key}: set it as {OWNED_GRPO_KEYS[key]} instead")
        if "max_steps" in self.grpo:  # TRL reads 0 as "no limit set" and trains a step at lr 0
            self.grpo["max_steps"] = coerce_value("grpo.max_steps", self.grpo["max_steps"], int, {"min": 1})
        if "use_vllm" in self.grpo:
            self.grpo["use_vllm"] = coerce_value("grpo.use_vllm", self.grpo["use_vllm"], bool)
        if self.grpo.get("use_vllm"):
            mode = self.grpo.get("vllm_mode", "colocate")
            if mode == "server":

                raise ConfigError(SERVER_MODE_ERROR)
        if self.grpo.get("use_liger_kernel"):
            raise ConfigError("grpo.use_liger_kernel: the token-aware KL loss needs TRL's own loss path")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------ coercion


def _require(ok: bool, key: str, what: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: {what}, got {value!r}")


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return dataclass_from_mapping(TrainConfig, data, scalar=coerce_value).check()


def load_train_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A validated `TrainConfig` from YAML (None: defaults) with dotted-key `overrides` applied."""
    return train_config_from_dict(read_config_mapping(path, overrides))
