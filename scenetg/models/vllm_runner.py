"""Greedy generation through an in-process vLLM engine (``--backend vllm``), for large evals.

`VLLMRunner.generate` takes what `QwenRunner.generate` takes (videos as decoded frames at
absolute times, prompts, durations) and returns the same kind of texts, so `scenetg ground`,
`scenetg answer` and the eval suite run on either. vLLM brings continuous batching, paged
attention and CUDA graphs for every decode length, which transformers' eager decode loop lacks
(docs/BENCHMARKS.md: decode 5x its bandwidth bound there).

The time encoding is kept because the engine is in-process: each prompt carries our own frames
and their sampled fps as ``multi_modal_data={"video": (frames, metadata)}`` with
``do_sample_frames: False`` and our processor kwargs, so vLLM's Qwen2.5-VL processor computes the
same grid and ``second_per_grid_ts`` as ours (the path vLLM documents for pre-decoded video;
metadata honoured for Qwen2.5-VL since vllm-project/vllm#47736, hence `VLLM_MIN_VERSION`). An
OpenAI-compatible server gives the client no such guarantee (docs/CHOICES.md), so ``ground`` has
no server backend. Greedy decoding with the checkpoint's own repetition penalty and stop tokens,
as `scenetg.models.qwen.greedy_generation_config` sets for transformers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.config_fields import coerce_vllm_memory
from scenetg.errors import ConfigError
from scenetg.extras import require_extra
from scenetg.models.qwen import (
    check_qwen_available,
    model_load_errors,
    model_source,
    resolve_dtype,
    video_metadata,
    video_processor_kwargs,
    video_prompt_texts,
)
from scenetg.models.rope_positions import refuse_stock_positions_on_vllm

VLLM_MIN_VERSION = "0.30.0"
"""First vLLM minor release after vllm-project/vllm#47736 (Qwen2.5-VL keeps video metadata)."""

BACKENDS = ("transformers", "vllm")
"""Generation engines of ``ground`` / ``answer`` / the eval suite (``--backend``)."""

VLLM_AUTO_BATCH = 64
"""Queries handed to vLLM per call with ``batch_size: auto``. vLLM schedules the sequences itself
(continuous batching over a paged KV cache sized by ``gpu_memory_utilization``), so this only
bounds how many decoded videos wait in host memory at once."""


VLLM_MEMORY_KEY = "--vllm-memory"
"""The flag of ground / answer; eval-suite's key is ``vllm_memory``, the build's
``captions.vllm_memory``."""

VLLM_GPU_MEMORY_AUTO = 0.9
"""``vllm_memory: auto`` on a GPU: the share of its memory vLLM takes (vLLM's default)."""

VLLM_CPU_KV_CACHE_AUTO = 1 << 30
"""``vllm_memory: auto`` on vLLM's CPU build: a KV cache of 1 GiB (``kv_cache_memory_bytes``).
There ``gpu_memory_utilization`` is a share of host RAM that must cover the process itself
(the worker's RSS is taken out of it before the KV cache): 0.9 fails at start on a shared machine
and a small share fails in a large process, so no share is right everywhere; a fixed KV size is."""


def vllm_memory_args(memory: float | str, engines: int = 1, on_cpu: bool = False) -> dict[str, Any]:
    """vLLM engine arguments for `memory` (`coerce_vllm_memory`) when `engines` engines of one
    process share the device: each takes ``1/engines`` of the share, or of the CPU auto KV cache."""
    n = max(1, int(engines))
    if memory == "auto" and on_cpu:
        return {"kv_cache_memory_bytes": VLLM_CPU_KV_CACHE_AUTO // n}
    total = VLLM_GPU_MEMORY_AUTO if memory == "auto" else float(memory)
    return {"gpu_memory_utilization": total / n}


def vllm_on_cpu(vllm: Any) -> bool:
    """Whether `vllm` (the imported module) is a CPU build: its platform, else no CUDA here."""
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except (ImportError, AttributeError):  # a stand-in module in tests
        import torch

        return not torch.cuda.is_available()


MEMORY_ERROR_MARKS = ("less than desired", "less than requested memory", "No available memory for the cache")
"""Phrases of vLLM's start-up errors when its memory share (or KV size) cannot be met."""


def _release(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version string such as ``0.30.1+cu129`` or ``0.31.0rc1``."""
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0])[:3])


def check_vllm_version(feature: str, fix: str) -> Any:
    """The imported ``vllm`` module; ScenetgError (one line) when the extra is missing, and
    ConfigError when it is older than `VLLM_MIN_VERSION` (it would drop the video metadata and
    time every frame at 24 fps without a word)."""

    require_extra("vllm", "vllm", feature)
    import vllm

    version = str(getattr(vllm, "__version__", "0"))
    if _release(version) < _release(VLLM_MIN_VERSION):
        raise ConfigError(
            f"{feature}: vLLM {version} drops Qwen2.5-VL video metadata (the model would see "
            f"24 fps time positions); install vllm>={VLLM_MIN_VERSION} or {fix}"
        )
    return vllm


def check_vllm_device(device: str, device_key: str, backend_key: str) -> None:
    """ConfigError unless `device` leaves the GPU to vLLM (``auto`` or ``cuda``): vLLM runs on the
    GPU(s) it sees and cannot be pointed at one, so ``cpu`` or ``cuda:1`` would be ignored."""
    if str(device) not in ("auto", "cuda"):
        raise ConfigError(
            f"{backend_key} vllm runs on the GPU vLLM sees, not on {device_key} {device}; set "
            f"{device_key} auto (CUDA_VISIBLE_DEVICES=N picks GPU N) or {backend_key} transformers"
        )


def vllm_video(
    frames: Sequence[np.ndarray], times_s: Sequence[float], duration_s: float | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Frames sampled at absolute `times_s` as vLLM's video input: uint8 (T, H, W, 3) and the
    metadata dict vLLM turns into the `VideoMetadata` our own processor call gets (same fps,
    duration, frame indices), with ``do_sample_frames: False`` so they are used as given."""

    if len(frames) == 0 or len(frames) != len(times_s):
        raise ValueError(f"a video has {len(frames)} frames but {len(times_s)} times")
    stacked = np.stack([np.ascontiguousarray(f, dtype=np.uint8) for f in frames])
    meta = video_metadata(times_s, duration_s=duration_s)
    metadata = {
        "total_num_frames": meta.total_num_frames,
        "fps": meta.fps,
        "duration": meta.duration,
        "frames_indices": list(meta.frames_indices),
        "do_sample_frames": False,
    }
    return stacked, metadata


def _eos_ids(generation_config: Any) -> list[int]:
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def _vllm_dtype(dtype: str) -> str:
    """Our dtype names (``bf16``, ``torch.float16``, ...) in vLLM's spelling; ``auto`` stays."""

    if str(dtype).lower() == "auto":
        return "auto"
    return str(resolve_dtype(dtype, "cuda")).removeprefix("torch.")


class VLLMRunner:
    """An in-process vLLM engine + the model's HF processor (for the chat template), with the
    greedy settings of `QwenRunner`: batches of videos and prompts in, generated texts out."""

    def __init__(self, llm: Any, processor: Any, generation_config: Any, sampling_params: Any,
                 max_new_tokens: int):

        self.llm, self.processor = llm, processor
        self.max_new_tokens = int(max_new_tokens)
        self.processor_kwargs = video_processor_kwargs(processor)
        self._sampling_params = sampling_params
        self.repetition_penalty = float(getattr(generation_config, "repetition_penalty", None) or 1.0)
        self.stop_token_ids = _eos_ids(generation_config)

    @classmethod
    def load(
        cls,
        model_id_or_path: str | Path,
        dtype: str = "auto",
        max_new_tokens: int = 256,
        trust_remote_code: bool = False,
        flag: str = "--model",
        memory: float | str = "auto",
        engines: int = 1,
        memory_key: str = VLLM_MEMORY_KEY,
        max_model_len: int | None = None,
        seed: int = 0,
    ) -> VLLMRunner:
        """Build the engine for `model_id_or_path` (a folder or a Hub id, checked first as for
        transformers), one video per prompt. `dtype` as vLLM reads it (``auto``: the
        checkpoint's). `memory` (``auto`` or a share, `vllm_memory_args`) is split between the
        `engines` engines of this run; when vLLM cannot meet it, a ConfigError names
        `memory_key`."""
        from transformers import AutoProcessor, GenerationConfig


        vllm = check_vllm_version("--backend vllm", "use --backend transformers")
        check_qwen_available(model_id_or_path, flag)
        refuse_stock_positions_on_vllm(model_id_or_path, f"{flag} with the vLLM backend")
        src = model_source(model_id_or_path)
        with model_load_errors(model_id_or_path, flag):
            processor = AutoProcessor.from_pretrained(src, trust_remote_code=trust_remote_code)
            try:
                generation_config = GenerationConfig.from_pretrained(src)
            except OSError:  # a checkpoint without generation_config.json: vLLM's defaults
                generation_config = None
        engine_args: dict[str, Any] = {
            "model": src,
            "dtype": _vllm_dtype(dtype),
            "seed": seed,
            "trust_remote_code": trust_remote_code,
            "limit_mm_per_prompt": {"video": 1, "image": 0},
        }
        memory = coerce_vllm_memory(memory_key, memory)
        engine_args.update(vllm_memory_args(memory, engines, vllm_on_cpu(vllm)))
        if max_model_len is not None:
            engine_args["max_model_len"] = int(max_model_len)
        try:
            llm = vllm.LLM(**engine_args)
        except (ValueError, RuntimeError) as exc:
            text = str(exc)
            if not any(mark in text for mark in MEMORY_ERROR_MARKS):
                raise
            raise ConfigError(
                f"{memory_key} {memory}: vLLM cannot reserve that memory "
                f"({text.split('. ')[0].strip()}); set {memory_key} to a smaller share"
                + (" or auto" if memory != "auto" else "")
            ) from exc
        return cls(llm, processor, generation_config, vllm.SamplingParams, max_new_tokens)

    def batch_size(self, value: int | str, tokens_per_item: int) -> int:
        """Queries per `generate` call: `value`, or `VLLM_AUTO_BATCH` for ``auto`` (vLLM sizes its
        own running batch from its KV cache)."""
        return VLLM_AUTO_BATCH if value == "auto" else int(value)

    def requests(
        self,
        videos: Sequence[Sequence[np.ndarray]],
        times_s: Sequence[Sequence[float]],
        prompts: str | Sequence[str],
        durations_s: Sequence[float | None],
    ) -> list[dict[str, Any]]:
        """vLLM's prompt rows for (video, prompt) pairs: the chat-rendered text with one video
        placeholder, our frames and their fps (`vllm_video`), our processor kwargs. Queries of
        one video (the same frames list) share one stacked array."""
        texts = video_prompt_texts(self.processor, prompts, len(videos))
        items: dict[tuple, tuple[np.ndarray, dict[str, Any]]] = {}
        rows = []
        for frames, times, duration, text in zip(videos, times_s, durations_s, texts, strict=True):
            key = (id(frames), id(times), duration)  # all alive in `videos`: ids are unique
            if key not in items:
                items[key] = vllm_video(frames, times, duration)
            rows.append({
                "prompt": text,
                "multi_modal_data": {"video": items[key]},
                "mm_processor_kwargs": dict(self.processor_kwargs),
            })
        return rows

    def generate(
        self,
        videos: Sequence[Sequence[np.ndarray]],
        times_s: Sequence[Sequence[float]],
        prompts: str | Sequence[str],
        durations_s: Sequence[float | None],
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """One greedy completion per (video, prompt), special tokens dropped, text stripped."""

        if not videos:
            return []
        rows = self.requests(videos, times_s, prompts, durations_s)
        params = self._sampling_params(
            temperature=0.0,
            max_tokens=int(max_new_tokens or self.max_new_tokens),
            repetition_penalty=self.repetition_penalty,
            stop_token_ids=list(self.stop_token_ids),
            skip_special_tokens=True,
        )
        outputs = self.llm.generate(rows, params, use_tqdm=False)
        return [out.outputs[0].text.strip() for out in outputs]
