"""Build configuration: one dataclass per stage, loaded from YAML, validated before any work.

The resolved config is written into ``OUT/manifest.json`` so every output says how it was made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenetg.config_fields import (
    coerce_fields,
    coerce_float,
    coerce_value,
    dataclass_from_mapping,
    read_config_mapping,
)
from scenetg.errors import ConfigError

VIDEO_EXTENSIONS = ("mp4", "mkv", "webm", "mov", "avi")


@dataclass
class ShotsConfig:
    """Shot detection with PySceneDetect on downscaled frames."""

    detector: str = field(default="content", metadata={"choices": ("content", "adaptive")})
    """`content` (ContentDetector, default) or `adaptive` (AdaptiveDetector)."""
    threshold: float = field(default=27.0, metadata={"min": 0.0, "min_open": True})
    """ContentDetector threshold (PySceneDetect's default 27)."""
    adaptive_threshold: float = field(default=3.0, metadata={"min": 0.0, "min_open": True})
    """AdaptiveDetector threshold (PySceneDetect's default 3)."""
    min_shot_s: float = field(default=0.5, metadata={"min": 0.0})
    """Minimum shot length in seconds (PySceneDetect's min_scene_len, converted with the video fps)."""
    process_width: int = field(default=256, metadata={"min": 16})
    """Frames are scaled to this width (aspect kept) by the decoder before detection."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce every field to its type and range (one line naming the key on failure)."""
        coerce_fields(self, "shots")


@dataclass
class ScenesConfig:
    """Scene assembly from shots."""

    min_scene_s: float = field(default=2.0, metadata={"min": 0.0})
    """Shots shorter than this join a neighbour."""
    max_scene_s: float = field(default=60.0, metadata={"min": 0.0, "min_open": True})
    """Scenes longer than this are split into equal parts no longer than this."""
    stitch_similarity: float = field(default=0.98, metadata={"min": -1.0, "max": 1.0})
    """Adjacent shots whose appearance embeddings have cosine >= this are stitched (1.0 disables)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce every field to its type and range (one line naming the key on failure)."""
        coerce_fields(self, "scenes")
        if self.max_scene_s <= self.min_scene_s:
            raise ConfigError("scenes.max_scene_s must be > scenes.min_scene_s")


@dataclass
class OpenAIConfig:
    """An OpenAI-compatible chat-completions endpoint (e.g. a vLLM server)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (a dummy key is used when unset)."""
    concurrency: int = field(default=8, metadata={"min": 1})
    max_retries: int = field(default=5, metadata={"min": 0})
    timeout_s: float = field(default=120.0, metadata={"min": 0.0, "min_open": True})
    jpeg_quality: int = field(default=90, metadata={"min": 1, "max": 100})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce every field to its type and range (one line naming the key on failure)."""
        coerce_fields(self, "captions.openai")


@dataclass
class CaptionsConfig:
    """One distinctive caption per scene from an MLLM; the caption becomes the grounding query."""

    backend: str = field(default="transformers",
                         metadata={"choices": ("transformers", "vllm", "openai")})
    """`transformers` (local model, batched), `vllm` (in-process vLLM engine, one GPU; the
    [vllm] extra) or `openai` (OpenAI-compatible server)."""
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    """Hugging Face id or local folder (transformers, vllm); served model name (openai)."""
    frames_per_scene: int = field(default=8, metadata={"min": 1})
    max_frame_side: int = field(default=448, metadata={"min": 16})
    """Frames are decoded with their longer side scaled down to this many pixels."""
    dtype: str = "auto"
    device: str = "auto"
    batch_size: int | str = field(default="auto", metadata={"batch_size": True})
    """Scenes per generate call, across videos: ``auto`` (4 on a CPU, by free memory on CUDA:
    `scenetg.models.batch_size`) or a number."""
    max_new_tokens: int = field(default=64, metadata={"min": 1})
    trust_remote_code: bool = False
    vllm_memory: float | str = field(default="auto", metadata={"vllm_memory": True})
    """With ``backend: vllm``: the share of the GPU's memory (of host RAM on vLLM's CPU build)
    the engine takes, or ``auto`` (0.9 on a GPU, a 1 GiB KV cache on the CPU build)."""
    prompt: str = (
        "These frames come from one scene of a longer video. Write one sentence, at most 25 words, "
        "describing what is visible in this scene that makes it different from the rest of the video: "
        "the people, objects, actions, setting and colours. Describe only what is seen. "
        "Answer with the sentence only."
    )
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce every field to its type and range (one line naming the key on failure)."""
        coerce_fields(self, "captions")
        if dataclasses.is_dataclass(self.openai):
            self.openai.validate()


@dataclass
class FilterConfig:
    """OpenCLIP ambiguity filter (DESIGN.md, Stages)."""

    clip_model: str = "ViT-L-14:openai"
    """OpenCLIP `arch:pretrained` pair, `hf-hub:ORG/NAME`, or a local folder."""
    min_margin: float = field(default=0.02, metadata={"min": 0.0})
    """delta: keep query i iff argmax_j s_ij = i and s_ii - max_{j!=i} s_ij >= delta."""
    frames_per_scene: int = field(default=8, metadata={"min": 1})
    device: str = "auto"
    batch_size: int | str = field(default="auto", metadata={"batch_size": True})
    """CLIP images per encode call, across a video's scenes: ``auto`` (64 on a CPU, by free
    memory on CUDA) or a number."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce every field to its type and range (one line naming the key on failure)."""
        coerce_fields(self, "filter")


@dataclass
class ExportConfig:
    """Parquet export and split assignment."""

    rows_per_shard: int = field(default=50_000, metadata={"min": 1})
    splits: dict[str, float] = field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1}, metadata={"min": 0.0, "max": 1.0}
    )
    """Split fractions; a video goes wholly to one split by a hash of its video_id."""
    split_salt: str = "scenetg"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce every field to its type and range (one line naming the key on failure)."""
        coerce_fields(self, "export")
        if not self.splits:
            raise ConfigError("export.splits: expected at least one split")
        bad = set(self.splits) - {"train", "validation", "test"}
        if bad:
            raise ConfigError(f"export.splits: unknown split(s) {sorted(bad)}")
        if abs(sum(self.splits.values()) - 1.0) > 1e-6:
            raise ConfigError(f"export.splits: fractions must sum to 1, got {sum(self.splits.values()):g}")


@dataclass
class EngineConfig:
    """Where stages run; no stage logic lives here."""

    name: str = field(default="local", metadata={"choices": ("local", "ray")})
    """`local` (in-process) or `ray` (Ray Data)."""
    ray_address: str | None = None
    """`ray.init(address=...)`; None starts a local Ray."""
    num_cpus: int | None = field(default=None, metadata={"min": 1})
    caption_gpus: float | str = field(default="auto", metadata={"custom": True})
    """GPUs per captioning actor under Ray; `auto`: 1 when the cluster has GPUs, else 0."""
    clip_gpus: float | str = field(default="auto", metadata={"custom": True})
    """GPUs per CLIP actor under Ray; `auto`: 1 when the cluster has GPUs, else 0."""
    caption_actors: int = field(default=1, metadata={"min": 1})
    clip_actors: int = field(default=1, metadata={"min": 1})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce every field to its type and range (one line naming the key on failure)."""
        coerce_fields(self, "engine")
        for key in ("caption_gpus", "clip_gpus"):
            value = getattr(self, key)
            if isinstance(value, str) and value.strip().lower() == "auto":
                setattr(self, key, "auto")
            else:
                setattr(self, key, coerce_float(f"engine.{key}", value, min=0.0))


@dataclass
class BuildConfig:
    """The whole `scenetg build` configuration."""

    extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))
    shots: ShotsConfig = field(default_factory=ShotsConfig)
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    captions: CaptionsConfig = field(default_factory=CaptionsConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> BuildConfig:
        for part in (self.shots, self.scenes, self.captions, self.filter, self.export, self.engine):
            part.validate()
        self.extensions = coerce_value("extensions", self.extensions, list[str])
        if not self.extensions:
            raise ConfigError("extensions: expected at least one file extension")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_build_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> BuildConfig:
    """Load a BuildConfig from YAML (else `base`, else defaults), apply dotted overrides, validate.

    `overrides` maps dotted keys to values, e.g. ``{"captions.model": "/models/qwen"}``.
    """
    data = read_config_mapping(path, overrides, base)
    return dataclass_from_mapping(BuildConfig, data).validate()


def build_config_from_dict(data: dict[str, Any]) -> BuildConfig:
    """Inverse of BuildConfig.to_dict (used when resuming from a manifest)."""
    return dataclass_from_mapping(BuildConfig, data).validate()
