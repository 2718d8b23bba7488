"""Build configuration: one dataclass per stage, loaded from YAML, validated before any work.

The resolved config is written into ``OUT/manifest.json`` so every output says how it was made.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scenetg.errors import ConfigError

VIDEO_EXTENSIONS = ("mp4", "mkv", "webm", "mov", "avi")


@dataclass
class ShotsConfig:
    """Shot detection with PySceneDetect on downscaled frames."""

    detector: str = "content"
    """`content` (ContentDetector, default) or `adaptive` (AdaptiveDetector)."""
    threshold: float = 27.0
    """ContentDetector threshold (PySceneDetect's default 27)."""
    adaptive_threshold: float = 3.0
    """AdaptiveDetector threshold (PySceneDetect's default 3)."""
    min_shot_s: float = 0.5
    """Minimum shot length in seconds (PySceneDetect's min_scene_len, converted with the video fps)."""
    process_width: int = 256
    """Frames are scaled to this width (aspect kept) by the decoder before detection."""

    def validate(self) -> None:
        if self.detector not in ("content", "adaptive"):
            raise ConfigError(f"shots.detector must be 'content' or 'adaptive', not {self.detector!r}")
        if self.threshold <= 0 or self.adaptive_threshold <= 0:
            raise ConfigError("shots thresholds must be > 0")
        if self.min_shot_s < 0:
            raise ConfigError("shots.min_shot_s must be >= 0")
        if self.process_width < 16:
            raise ConfigError("shots.process_width must be >= 16")


@dataclass
class ScenesConfig:
    """Scene assembly from shots."""

    min_scene_s: float = 2.0
    """Shots shorter than this join a neighbour."""
    max_scene_s: float = 60.0
    """Scenes longer than this are split into equal parts no longer than this."""
    stitch_similarity: float = 0.98
    """Adjacent shots whose appearance embeddings have cosine >= this are stitched (1.0 disables)."""

    def validate(self) -> None:
        if self.min_scene_s < 0:
            raise ConfigError("scenes.min_scene_s must be >= 0")
        if self.max_scene_s <= self.min_scene_s:
            raise ConfigError("scenes.max_scene_s must be > scenes.min_scene_s")
        if not -1.0 <= self.stitch_similarity <= 1.0:
            raise ConfigError("scenes.stitch_similarity must be in [-1, 1]")


@dataclass
class OpenAIConfig:
    """An OpenAI-compatible chat-completions endpoint (e.g. a vLLM server)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (a dummy key is used when unset)."""
    concurrency: int = 8
    max_retries: int = 5
    timeout_s: float = 120.0
    jpeg_quality: int = 90


@dataclass
class CaptionsConfig:
    """One distinctive caption per scene from an MLLM; the caption becomes the grounding query."""

    backend: str = "transformers"
    """`transformers` (local model, batched) or `openai` (OpenAI-compatible server)."""
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    """Hugging Face id or local folder (transformers); served model name (openai)."""
    frames_per_scene: int = 8
    max_frame_side: int = 448
    """Frames are decoded with their longer side scaled down to this many pixels."""
    dtype: str = "auto"
    device: str = "auto"
    batch_size: int = 4
    max_new_tokens: int = 64
    trust_remote_code: bool = False
    prompt: str = (
        "These frames come from one scene of a longer video. Write one sentence, at most 25 words, "
        "describing what is visible in this scene that makes it different from the rest of the video: "
        "the people, objects, actions, setting and colours. Describe only what is seen. "
        "Answer with the sentence only."
    )
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)

    def validate(self) -> None:
        if self.backend not in ("transformers", "openai"):
            raise ConfigError(f"captions.backend must be 'transformers' or 'openai', not {self.backend!r}")
        if self.frames_per_scene < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("captions.frames_per_scene, batch_size and max_new_tokens must be >= 1")
        if self.openai.concurrency < 1:
            raise ConfigError("captions.openai.concurrency must be >= 1")


@dataclass
class FilterConfig:
    """OpenCLIP ambiguity filter (DESIGN.md, Stages)."""

    clip_model: str = "ViT-L-14:openai"
    """OpenCLIP `arch:pretrained` pair, `hf-hub:ORG/NAME`, or a local folder."""
    min_margin: float = 0.02
    """delta: keep query i iff argmax_j s_ij = i and s_ii - max_{j!=i} s_ij >= delta."""
    frames_per_scene: int = 8
    device: str = "auto"
    batch_size: int = 64

    def validate(self) -> None:
        if self.min_margin < 0:
            raise ConfigError("filter.min_margin must be >= 0")
        if self.frames_per_scene < 1 or self.batch_size < 1:
            raise ConfigError("filter.frames_per_scene and batch_size must be >= 1")


@dataclass
class ExportConfig:
    """Parquet export and split assignment."""

    rows_per_shard: int = 50_000
    splits: dict[str, float] = field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1}
    )
    """Split fractions; a video goes wholly to one split by a hash of its video_id."""
    split_salt: str = "scenetg"

    def validate(self) -> None:
        if self.rows_per_shard < 1:
            raise ConfigError("export.rows_per_shard must be >= 1")
        if not self.splits or any(v < 0 for v in self.splits.values()):
            raise ConfigError("export.splits must be non-empty with fractions >= 0")
        bad = set(self.splits) - {"train", "validation", "test"}
        if bad:
            raise ConfigError(f"export.splits: unknown split(s) {sorted(bad)}")
        if abs(sum(self.splits.values()) - 1.0) > 1e-6:
            raise ConfigError("export.splits fractions must sum to 1")


@dataclass
class EngineConfig:
    """Where stages run; no stage logic lives here."""

    name: str = "local"
    """`local` (in-process) or `ray` (Ray Data)."""
    ray_address: str | None = None
    """`ray.init(address=...)`; None starts a local Ray."""
    num_cpus: int | None = None
    caption_gpus: float = 1.0
    """GPUs per captioning actor under Ray (0 on CPU-only clusters)."""
    clip_gpus: float = 0.0
    caption_actors: int = 1
    clip_actors: int = 1

    def validate(self) -> None:
        if self.name not in ("local", "ray"):
            raise ConfigError(f"engine.name must be 'local' or 'ray', not {self.name!r}")


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

    def validate(self) -> BuildConfig:
        for part in (self.shots, self.scenes, self.captions, self.filter, self.export, self.engine):
            part.validate()
        if not self.extensions:
            raise ConfigError("extensions must not be empty")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from a dict, recursing into nested dataclasses; unknown keys fail."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default) and value is not None:
            kwargs[name] = _from_dict(type(default), value, f"{where}.{name}".lstrip("."))
        else:
            kwargs[name] = value
    return cls(**kwargs)


def load_build_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> BuildConfig:
    """Load a BuildConfig from YAML (else `base`, else defaults), apply dotted overrides, validate.

    `overrides` maps dotted keys to values, e.g. ``{"captions.model": "/models/qwen"}``.
    """
    data: dict[str, Any] = copy.deepcopy(base) if base else {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: invalid YAML ({exc.__class__.__name__})") from exc
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return _from_dict(BuildConfig, data, "").validate()


def build_config_from_dict(data: dict[str, Any]) -> BuildConfig:
    """Inverse of BuildConfig.to_dict (used when resuming from a manifest)."""
    return _from_dict(BuildConfig, data, "").validate()
