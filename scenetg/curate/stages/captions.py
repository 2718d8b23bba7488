"""Scene captions from an MLLM: the caption becomes the grounding query (DESIGN.md, Captions).

Three backends behind one interface, ``caption_scenes(scenes) -> captions`` (same order):
``transformers`` runs a local Qwen2.5-VL-class model, batched, greedy; ``vllm`` runs the same
calls on an in-process vLLM engine (`scenetg.models.vllm_runner`); ``openai`` talks to any
OpenAI-compatible server (e.g. vLLM) with bounded concurrency and retries. Each scene's frames go
in with their absolute times, so the model is told the real sampled fps (K / scene duration).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from scenetg.config import CaptionsConfig
from scenetg.errors import ConfigError, ModelError
from scenetg.extras import require_extra
from scenetg.models.batch_size import frames_tokens, is_auto
from scenetg.models.qwen import CAPTION_MODEL_FLAG, check_qwen_available, load_qwen
from scenetg.models.runner import QwenRunner
from scenetg.models.vllm_runner import VLLMRunner, check_vllm_device
from scenetg.video.frames import jpeg_data_url

MODELS_CHECK_TIMEOUT_S = 5.0
PROMPT_TOKENS = 128
"""Text tokens of the caption prompt and chat template, rounded up (for batch sizing only)."""


@dataclass
class SceneFrames:
    """The K frames sampled from one scene: RGB uint8 HxWx3 arrays at absolute times (seconds)."""

    frames: list[np.ndarray]
    times_s: list[float]
    duration_s: float | None = None
    """Scene length; the sampled fps is K / duration_s (from the frame spacing when None)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Caller's bookkeeping (video_id, scene_index, ...); ignored by the backends."""

    def __post_init__(self) -> None:
        if len(self.frames) == 0:
            raise ValueError("a scene needs at least one frame")
        if len(self.frames) != len(self.times_s):
            raise ValueError(f"{len(self.frames)} frames but {len(self.times_s)} times")


@runtime_checkable
class CaptionBackend(Protocol):
    """What the captions stage needs from a backend."""

    model_name: str
    """Recorded in the Parquet's caption_model column (stable across machines)."""

    def caption_scenes(self, scenes: Sequence[SceneFrames]) -> list[str]:
        """One caption per scene, in the same order."""
        ...


_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


def clean_caption(text: str) -> str:
    """One line of caption text: `<think>` blocks and control characters removed, whitespace collapsed."""
    text = _THINK_BLOCK.sub(" ", text or "")
    if "</think>" in text:  # the opening tag was in the prompt: keep what follows the reasoning
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:  # reasoning cut off by max_new_tokens: no answer was given
        text = text.split("<think>", 1)[0]
    text = "".join(ch if ch.isprintable() or ch.isspace() else " " for ch in text)
    return " ".join(text.split())


def _check_scenes(scenes: Sequence[SceneFrames]) -> list[SceneFrames]:
    scenes = list(scenes)
    for scene in scenes:
        if not isinstance(scene, SceneFrames):
            raise TypeError(
                "caption_scenes takes SceneFrames (frames + times_s), not bare frame lists: "
                "the sampled fps must reach the model"
            )
    return scenes


def _local_model_name(model: str) -> str:
    """The model id, or a local folder's name (never an absolute path)."""
    path = Path(model).expanduser()
    return path.resolve().name if path.is_dir() else model


class TransformersCaptioner:
    """Local Qwen2.5-VL-class captioner: `batch_size` scenes per greedy, left-padded generate call
    (the one generation path, `QwenRunner`; or a `VLLMRunner` for ``backend: vllm``)."""

    def __init__(self, cfg: CaptionsConfig, model: Any = None, processor: Any = None,
                 runner: Any = None):

        self.cfg = cfg
        if runner is None:  # `runner`: another engine with QwenRunner's calls (`vllm`)
            if model is None or processor is None:
                model, processor = load_qwen(cfg.model, cfg.dtype, cfg.device, cfg.trust_remote_code)
            runner = QwenRunner(model, processor, cfg.max_new_tokens)
        self.runner = runner
        self.model, self.processor = model, processor
        self.model_name = _local_model_name(cfg.model)

    def batch_size(self, scene: SceneFrames) -> int:
        """Scenes per generate call for scenes like `scene`: `captions.batch_size`, or for
        ``auto`` by free GPU memory and the scene's tokens (`scenetg.models.batch_size`)."""

        tokens = frames_tokens(scene.frames) + PROMPT_TOKENS + int(self.cfg.max_new_tokens)
        return self.runner.batch_size(self.cfg.batch_size, tokens)

    def caption_scenes(self, scenes: Sequence[SceneFrames]) -> list[str]:
        """One caption per scene (same order), deterministic."""
        scenes = _check_scenes(scenes)
        captions: list[str] = []
        if not scenes:
            return captions
        step = self.batch_size(scenes[0])
        for i in range(0, len(scenes), step):
            batch = scenes[i : i + step]
            texts = self.runner.generate(
                [s.frames for s in batch],
                [s.times_s for s in batch],
                self.cfg.prompt,
                [s.duration_s for s in batch],
            )
            captions.extend(clean_caption(t) for t in texts)
        return captions


class OpenAICaptioner:
    """Captioner over an OpenAI-compatible chat-completions server (vLLM, ...).

    Frames go as base64 JPEG ``image_url`` parts; temperature 0; at most ``openai.concurrency``
    requests in flight; the client retries connection errors, 408/409/429 and 5xx with
    exponential backoff (``openai.max_retries``).
    """

    def __init__(self, cfg: CaptionsConfig, client: Any = None):
        require_extra("openai", "openai", "captions.backend: openai")
        from openai import OpenAI

        self.cfg = cfg
        self.model_name = cfg.model
        self.client = client or OpenAI(
            base_url=cfg.openai.base_url,
            api_key=os.environ.get(cfg.openai.api_key_env) or "EMPTY",
            timeout=cfg.openai.timeout_s,
            max_retries=cfg.openai.max_retries,
        )

    def _messages(self, scene: SceneFrames) -> list[dict]:
        parts: list[dict] = [
            {
                "type": "image_url",
                "image_url": {"url": jpeg_data_url(f, self.cfg.openai.jpeg_quality)},
            }
            for f in scene.frames
        ]
        parts.append({"type": "text", "text": self.cfg.prompt})
        return [{"role": "user", "content": parts}]

    def _caption_one(self, scene: SceneFrames) -> str:
        import openai

        try:
            response = self.client.chat.completions.create(
                model=self.cfg.model,
                messages=self._messages(scene),
                temperature=0,
                max_tokens=self.cfg.max_new_tokens,
                n=1,
            )
        except openai.APIStatusError as exc:
            raise ModelError(
                f"caption server {self.cfg.openai.base_url} answered HTTP {exc.status_code} "
                f"for model {self.cfg.model!r} (after retries)"
            ) from exc
        except openai.APIError as exc:
            raise ModelError(
                f"caption server {self.cfg.openai.base_url} failed ({type(exc).__name__}, after retries)"
            ) from exc
        choice = response.choices[0] if response.choices else None
        return clean_caption(choice.message.content if choice and choice.message else "")

    def batch_size(self, scene: SceneFrames) -> int:
        """Scenes handed over per call: ``auto`` keeps every concurrent request slot busy."""

        value = self.cfg.batch_size
        return max(1, int(self.cfg.openai.concurrency)) if is_auto(value) else int(value)

    def caption_scenes(self, scenes: Sequence[SceneFrames]) -> list[str]:
        """One caption per scene (same order); requests run concurrently, bounded by the config."""
        scenes = _check_scenes(scenes)
        if not scenes:
            return []
        workers = min(max(1, int(self.cfg.openai.concurrency)), len(scenes))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scenetg-caption") as pool:
            return list(pool.map(self._caption_one, scenes))


def check_openai_available(cfg: CaptionsConfig, timeout_s: float = MODELS_CHECK_TIMEOUT_S) -> None:
    """One GET {base_url}/models with a short timeout; ModelError unless the server serves cfg.model."""
    require_extra("openai", "openai", "captions.backend: openai")
    import openai

    base_url = cfg.openai.base_url
    client = openai.OpenAI(
        base_url=base_url,
        api_key=os.environ.get(cfg.openai.api_key_env) or "EMPTY",
        timeout=timeout_s,
        max_retries=0,
    )
    try:
        served = [m.id for m in client.models.list()]
    except openai.APIStatusError as exc:
        raise ModelError(
            f"caption server {base_url}: GET /models answered HTTP {exc.status_code}"
        ) from exc
    except openai.APIError as exc:
        raise ModelError(
            f"caption server {base_url} is not reachable ({type(exc).__name__}); "
            "start it or fix captions.openai.base_url"
        ) from exc
    finally:
        client.close()
    if served and cfg.model not in served:
        raise ModelError(
            f"caption server {base_url} does not serve {cfg.model!r} (serves: {', '.join(served[:5])}); "
            f"set {CAPTION_MODEL_FLAG}"
        )


def check_caption_model(cfg: CaptionsConfig) -> None:
    """The fail-fast check run before any video work: local/cached model, or a live server."""
    if cfg.backend in ("transformers", "vllm"):
        check_qwen_available(cfg.model)
    elif cfg.backend == "openai":
        check_openai_available(cfg)
    else:
        raise ConfigError(
            f"captions.backend must be 'transformers', 'vllm' or 'openai', not {cfg.backend!r}"
        )


check_model_available = check_caption_model


def make_caption_backend(cfg: CaptionsConfig) -> CaptionBackend:
    """Check the model is available, then build the configured backend."""
    check_caption_model(cfg)
    if cfg.backend == "transformers":
        return TransformersCaptioner(cfg)
    if cfg.backend == "vllm":

        check_vllm_device(cfg.device, "captions.device:", "captions.backend:")
        runner = VLLMRunner.load(cfg.model, dtype=cfg.dtype, max_new_tokens=cfg.max_new_tokens,
                                 trust_remote_code=cfg.trust_remote_code, flag=CAPTION_MODEL_FLAG,
                                 memory=cfg.vllm_memory, memory_key="captions.vllm_memory:")
        return TransformersCaptioner(cfg, runner=runner)
    return OpenAICaptioner(cfg)
