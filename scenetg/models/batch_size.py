"""`batch_size: auto`: how many items one generate (or CLIP encode) call takes.

An explicit number always wins. ``auto`` is 4 on a CPU (no memory to fill, and bigger batches
only add padding) and on CUDA the largest size whose activations fit in the free memory, from a
measured cost per token of the batch (prompt + visual + generated tokens).

Measured on one H200 with a real-size (random) Qwen2.5-VL-7B in bf16, weights 16.6 GB
(DESIGN.md, "Real-size checks on a lent GPU"):

    job                        tokens/item   batch   peak GB   over weights   MB per token
    captions 8 frames 448x252        ~700      32      21.8        5.2           0.23
    grounding 128 frames           ~9,400      16      52         35.4           0.24

Both give ~0.24 MB per batch token (KV cache, prefill activations, the vision tower's
activations); it scales with the LM's layers x hidden size, so other sizes are scaled from it.
Throughput grew with the batch up to the largest measured (captions 2.6 -> 6.1 -> 8.6 scenes/s at
4 -> 16 -> 32), so `auto` takes the largest size that fits, capped at `AUTO_MAX` where nothing was
measured, with `MEMORY_HEADROOM` of the free memory kept back for the allocator's fragmentation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scenetg.config_fields import coerce_batch_size

AUTO = "auto"
CPU_BATCH_SIZE = 4
AUTO_MAX = 32
"""The largest batch measured to still gain (captions at 32: 8.6 scenes/s, 21.8 GB)."""
MB_PER_TOKEN_7B = 0.24
"""Measured activation + KV memory per batch token of Qwen2.5-VL-7B (table above)."""
_LAYERS_X_HIDDEN_7B = 28 * 3584
MEMORY_HEADROOM = 0.8
"""Use at most this share of the free GPU memory."""
CLIP_AUTO_MAX = 256
"""CLIP images per encode call on CUDA: ViT-L/14 at 224 px needs ~0.1 GB of activations per 64."""
CLIP_CPU_BATCH_SIZE = 64
"""CLIP images per call on a CPU: encoding is not generation (no padding, no KV cache), so the
earlier fixed default stays."""
CLIP_MB_PER_IMAGE = 2.0
TEMPORAL_PATCH = 2
PATCH_AFTER_MERGE = 28
"""Qwen2.5-VL: 14 px patches merged 2x2, two frames per temporal patch: one visual token per
28x28 pixels per frame pair."""


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def visual_tokens(n_frames: int, height: int, width: int) -> int:
    """Visual tokens Qwen2.5-VL makes of `n_frames` frames of height x width (after its resize
    to multiples of 28; close enough for sizing and for grouping similar items)."""
    h = max(1, round(height / PATCH_AFTER_MERGE))
    w = max(1, round(width / PATCH_AFTER_MERGE))
    return math.ceil(n_frames / TEMPORAL_PATCH) * h * w


def frames_tokens(frames: Sequence[Any]) -> int:
    """`visual_tokens` of a list of HxWx3 frames (the first frame's size)."""
    if not len(frames):
        return 0
    h, w = frames[0].shape[:2]
    return visual_tokens(len(frames), int(h), int(w))


def _cuda_free_bytes(device: Any) -> int | None:
    try:
        import torch

        dev = torch.device(device)
        if dev.type != "cuda" or not torch.cuda.is_available():
            return None
        # What PyTorch's caching allocator holds but does not use is free to the next batch.
        cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        return int(torch.cuda.mem_get_info(dev)[0]) + max(0, int(cached))
    except (ImportError, RuntimeError, TypeError, ValueError):
        return None


def _mb_per_token(model: Any) -> float:
    cfg = getattr(model, "config", None)
    text = getattr(cfg, "text_config", None) or cfg
    layers = getattr(text, "num_hidden_layers", None)
    hidden = getattr(text, "hidden_size", None)
    if not (isinstance(layers, int) and isinstance(hidden, int)):
        return MB_PER_TOKEN_7B
    return MB_PER_TOKEN_7B * layers * hidden / _LAYERS_X_HIDDEN_7B


def model_device(model: Any) -> Any:
    return getattr(model, "device", "cpu")


def resolve_batch_size(
    value: int | str, model: Any, tokens_per_item: int, free_bytes: int | None = None
) -> int:
    """The batch size for `value` (an int, or ``auto``): `model` is the loaded MLLM (its device
    and size), `tokens_per_item` the prompt + visual + new tokens of one item."""
    if not is_auto(value):
        return max(1, int(value))
    if free_bytes is None:
        free_bytes = _cuda_free_bytes(model_device(model))
    if free_bytes is None:
        return CPU_BATCH_SIZE
    per_item = max(1, tokens_per_item) * _mb_per_token(model) * 1e6
    return max(1, min(AUTO_MAX, int(free_bytes * MEMORY_HEADROOM // per_item)))


def resolve_clip_batch_size(value: int | str, device: Any, free_bytes: int | None = None) -> int:
    """CLIP images per encode call: `value`, or for ``auto`` 64 on a CPU and up to
    `CLIP_AUTO_MAX` on CUDA (by free memory)."""
    if not is_auto(value):
        return max(1, int(value))
    if free_bytes is None:
        free_bytes = _cuda_free_bytes(device)
    if free_bytes is None:
        return CLIP_CPU_BATCH_SIZE
    return max(1, min(CLIP_AUTO_MAX, int(free_bytes * MEMORY_HEADROOM // (CLIP_MB_PER_IMAGE * 1e6))))


def batch_size_text(value: int | str, key: str) -> int | str:
    """A batch size from a command line or config: ``auto`` or an integer >= 1 (one-line
    `ConfigError` naming `key` otherwise)."""

    return coerce_batch_size(key, value)


PROMPT_TOKENS = 160
"""Text tokens of a grounding / QA prompt with its chat template, rounded up (sizing only)."""


def runner_batch_size(runner: Any, value: int | str, frames: Sequence[Any]) -> int:
    """Items per generate call for items showing `frames`: the runner's choice for ``auto``
    (a stand-in runner without one gets 4), else `value`."""
    if not is_auto(value):
        return max(1, int(value))
    choose = getattr(runner, "batch_size", None)
    if not callable(choose):
        return CPU_BATCH_SIZE
    gen = getattr(runner, "generation_config", None)
    new_tokens = int(getattr(gen, "max_new_tokens", 0) or 0)
    return max(1, int(choose(value, frames_tokens(frames) + PROMPT_TOKENS + new_tokens)))


def expected_frames(duration_s: float | None, times_for: Any, max_frames: int) -> int:
    """Frames a video of `duration_s` will show (`times_for(duration)`), the budget when unknown:
    the sort key that puts items of similar visual token count in one batch."""
    if not duration_s or duration_s <= 0:
        return int(max_frames)
    try:
        return len(times_for(float(duration_s)))
    except ValueError:
        return int(max_frames)
