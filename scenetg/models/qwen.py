"""Qwen2.5-VL-class MLLMs: fail-fast availability check, loading, and video chat inputs.

Frames are always decoded by us (PyAV, RGB uint8 HxWx3) and handed to the processor with
``video_metadata`` carrying the real sampled fps: without it the processor assumes 24 fps and
``second_per_grid_ts`` (hence every time the model sees) is wrong (DESIGN.md, Known pitfalls).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.errors import ModelError
from scenetg.models.rope_positions import reference_positions_or_stock
from scenetg.models.vision_windows import install_window_batching

CAPTION_MODEL_FLAG = "--caption-model"
HUB_CHECK_TIMEOUT_S = 10.0


def hub_offline() -> bool:
    """True when Hugging Face Hub access is switched off (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    from huggingface_hub import constants

    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


def hub_file_problem(
    repo_id: str, filenames: Sequence[str], timeout_s: float = HUB_CHECK_TIMEOUT_S
) -> str | None:
    """Why none of `filenames` of Hub repo `repo_id` can be had, or None when one can.

    Cheap: a local cache lookup first; a single metadata request (HEAD) only when online.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return "not a valid Hugging Face repo id"
    for name in filenames:
        if isinstance(try_to_load_from_cache(repo_id, name), str):
            return None
    if hub_offline():
        return "not in the Hugging Face cache (offline: HF_HUB_OFFLINE is set)"
    last = ""
    for name in filenames:
        try:
            get_hf_file_metadata(hf_hub_url(repo_id, name), timeout=timeout_s)
            return None
        except Exception as exc:  # noqa: BLE001 - any failure means "not available", reported in one line
            last = type(exc).__name__
    return f"not in the Hugging Face cache and not reachable on the Hub ({last})"


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else is meant as a filesystem path."""
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def check_qwen_available(model_id_or_path: str | Path, flag: str = CAPTION_MODEL_FLAG) -> None:
    """Raise ModelError (one line, naming `flag`, the option of the command that was run)
    unless the model can be loaded.

    A local folder must hold ``config.json``; a Hub id must be in the local cache or, when online,
    exist on the Hub. Run this before any video work so a typo fails in a second, not an hour in.
    """
    name = str(model_id_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model {name!r}: folder has no config.json; fix {flag}"
            )
        return
    if path.exists() or _looks_like_path(name):
        raise ModelError(f"model {name!r}: no such model folder; fix {flag}")
    problem = hub_file_problem(name, ["config.json"])
    if problem:
        raise ModelError(
            f"model {name!r}: not a local folder and {problem}; download it or set {flag}"
        )


def resolve_device(device: str = "auto") -> str:
    """`auto` -> `cuda` when a GPU is visible, else `cpu`; anything else is passed through."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def resolve_dtype(dtype: str = "auto", device: str = "cpu"):
    """`auto` -> bfloat16 on CUDA, float32 elsewhere; also accepts bf16/fp16/fp32 and torch names."""
    import torch

    if not isinstance(dtype, str):
        return dtype
    key = dtype.lower().removeprefix("torch.")
    if key == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    table = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "half": torch.float16,
        "fp32": torch.float32,
        "float32": torch.float32,
        "float": torch.float32,
    }
    if key not in table:
        raise ModelError(f"unknown dtype {dtype!r} (use auto, bfloat16, float16 or float32)")
    return table[key]


def load_qwen(
    model_id_or_path: str | Path,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    flag: str = CAPTION_MODEL_FLAG,
    share_video_encoding: bool = True,
    batch_vision_windows: bool = True,
) -> tuple[Any, Any]:
    """Load an image/video-text-to-text model and its processor with the transformers Auto classes.

    Returns ``(model, processor)``, the model in eval mode on the resolved device. The tokenizer is
    set to left padding (batched generation). A Qwen2.5-VL model encodes each distinct video of a
    batch once (`scenetg.models.shared_video_encoding`; exact) unless `share_video_encoding` is
    False. With `batch_vision_windows` (and unless ``SCENETG_VISION_WINDOWS=0``), a Qwen-VL vision
    tower on SDPA or eager attention makes one attention call per window length instead of one per
    window (`scenetg.models.vision_windows`). A Qwen2.5-VL model gets the M-RoPE positions it was
    trained with after a video (`scenetg.models.rope_positions`; ``SCENETG_ROPE_POSITIONS=0``
    keeps transformers' own).
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor


    check_qwen_available(model_id_or_path, flag)
    src = model_source(model_id_or_path)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    with model_load_errors(model_id_or_path, flag):
        processor = AutoProcessor.from_pretrained(src, trust_remote_code=trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            src, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
    # Both are speed-ups with the same results as transformers' own code, written against its
    # 5.24 source: on another version a guard refuses them, and the model runs the stock way.
    if batch_vision_windows:
        speedup_or_stock(install_window_batching, model)
    reference_positions_or_stock(model)  # a fix, not a speed-up: transformers >= 5.3 differ
    model.to(dev).eval()
    from scenetg.models import shared_video_encoding as shared  # deferred: pulls torch

    speedup_or_stock(shared.share_video_encoding, model, enabled=share_video_encoding)
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.padding_side = "left"
    return model, processor


def model_source(model_id_or_path: str | Path) -> str:
    """What `from_pretrained` (or vLLM) is given: a local folder with ``~`` expanded, else the id."""
    name = str(model_id_or_path)
    folder = Path(name).expanduser()
    return str(folder) if folder.is_dir() else name


@contextlib.contextmanager
def model_load_errors(model_id_or_path: str | Path, flag: str):
    """Loading errors of a checked model (a broken folder, an unknown architecture) as one-line
    ModelErrors naming the flag to fix."""
    try:
        yield
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"model {str(model_id_or_path)!r} cannot be loaded: {first}; fix {flag}"
        ) from exc


def speedup_or_stock(install: Any, model: Any, **kwargs: Any) -> None:
    """Run `install`; when its guard finds other transformers code, warn once and go on stock."""
    import warnings

    try:
        install(model, **kwargs)
    except (ModelError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        warnings.warn(f"{first} (using transformers' own code instead: same results, slower)",
                      RuntimeWarning, stacklevel=3)


def sampled_fps(times_s: Sequence[float], duration_s: float | None = None) -> float:
    """Frames per second of a sampled clip: K / duration, or from the frame spacing.

    With K frames at the centres of K equal parts of a span of length D, the spacing is D/K, so
    both give K/D. One frame with no duration counts as 1 fps.
    """
    k = len(times_s)
    if k == 0:
        raise ValueError("no frames")
    if duration_s is not None and duration_s > 0:
        return k / float(duration_s)
    if k >= 2:
        span = float(times_s[-1]) - float(times_s[0])
        if span > 0:
            return (k - 1) / span
    return 1.0


def video_metadata(
    times_s: Sequence[float], fps: float | None = None, duration_s: float | None = None
):
    """``VideoMetadata`` for already-sampled frames at absolute times `times_s` (seconds).

    The sampled frames are described as a clip at the sampled fps (so ``sampled_fps`` is exact and
    ``second_per_grid_ts = temporal_patch_size / fps``), with ``frames_indices = t * fps`` so that
    ``metadata.timestamps`` (which Qwen3-VL writes into the prompt) are the absolute times.
    """
    from transformers.video_utils import VideoMetadata

    rate = float(fps) if fps else sampled_fps(times_s, duration_s)
    k = len(times_s)
    return VideoMetadata(
        total_num_frames=k,
        fps=rate,
        duration=k / rate,
        frames_indices=[float(t) * rate for t in times_s],
    )


def video_messages(prompt: str, system: str | None = None) -> list[dict]:
    """Chat messages: an optional system turn, then one user turn with a video block and the prompt."""
    messages: list[dict] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append(
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}
    )
    return messages


def clean_messages(messages: Sequence[dict]) -> list[dict]:
    """Chat messages with None-valued keys dropped from every content block.

    Rows read back through `datasets` give every block every key (``{"type": "text", "text": ...,
    "video": None}``); the real Qwen2.5-VL template tests key presence (``'image' in content``),
    so such blocks would render stray ``<|image_pad|>`` tokens (DESIGN.md, Known pitfalls)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [
                {k: v for k, v in block.items() if v is not None} if isinstance(block, dict) else block
                for block in content
            ]
        out.append({k: v for k, v in {**message, "content": content}.items() if v is not None})
    return out


def render_chat(processor: Any, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
    """The chat template applied to `messages` (cleaned by `clean_messages`), as text."""
    return processor.apply_chat_template(
        clean_messages(messages), tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _require_video_processor(processor: Any) -> None:
    """ModelError (one line) for a processor that cannot take video, before any other use of it."""
    if getattr(processor, "video_processor", None) is None:
        raise ModelError(
            f"{type(processor).__name__} has no video processor; this model cannot take video input"
        )


def processor_video_inputs(
    processor: Any,
    texts: Sequence[str],
    videos: Sequence[Sequence[np.ndarray]],
    times_s: Sequence[Sequence[float]],
    *,
    fps: Sequence[float | None] | None = None,
    durations_s: Sequence[float | None] | None = None,
    padding_side: str = "left",
    return_tensors: str = "pt",
):
    """The processor run on rendered chat `texts` (one video placeholder each) and their videos.

    Each video is a list of RGB uint8 HxWx3 frames sampled at absolute times ``times_s[i]``; its
    ``video_metadata`` carries the sampled fps (``fps[i]``, else K / ``durations_s[i]``, else the
    frame spacing), so ``second_per_grid_ts = temporal_patch_size / fps``. Frames are ours
    (``do_sample_frames=False``): the processor never decodes a file.
    """
    _require_video_processor(processor)
    n = len(videos)
    if len(times_s) != n or len(texts) != n:
        raise ValueError(f"{n} videos but {len(times_s)} lists of frame times and {len(texts)} texts")
    fps_list = list(fps) if fps is not None else [None] * n
    dur_list = list(durations_s) if durations_s is not None else [None] * n
    clips, metadata = [], []
    for frames, times, rate, dur in zip(videos, times_s, fps_list, dur_list, strict=True):
        if len(frames) == 0 or len(frames) != len(times):
            raise ValueError(f"a video has {len(frames)} frames but {len(times)} times")
        clips.append([np.ascontiguousarray(f, dtype=np.uint8) for f in frames])
        metadata.append(video_metadata(times, fps=rate, duration_s=dur))
    return processor(
        text=list(texts),
        videos=clips,
        video_metadata=metadata,
        padding=True,
        padding_side=padding_side,
        return_tensors=return_tensors,
        **video_processor_kwargs(processor),
    )


def video_processor_kwargs(processor: Any) -> dict[str, Any]:
    """Video kwargs of every processor call on our frames (here and in vLLM rollouts): frames are
    used as given (no re-sampling), each frame's pixels capped as the reference does."""
    kwargs: dict[str, Any] = {"do_sample_frames": False}
    if hasattr(processor.video_processor, "cap_pixels_per_frame"):
        kwargs["cap_pixels_per_frame"] = True  # the reference (qwen-vl-utils) behaviour
    return kwargs


def video_prompt_texts(
    processor: Any, prompts: str | Sequence[str], n: int, system: str | None = None,
    add_generation_prompt: bool = True,
) -> list[str]:
    """`n` chat-rendered texts, one video placeholder each (`video_messages`); a single prompt
    string is shared by all."""
    prompt_list = [prompts] * n if isinstance(prompts, str) else list(prompts)
    if len(prompt_list) != n:
        raise ValueError(f"{n} videos but {len(prompt_list)} prompts")
    return [render_chat(processor, video_messages(p, system), add_generation_prompt)
            for p in prompt_list]


def batch_video_inputs(
    processor: Any,
    videos: Sequence[Sequence[np.ndarray]],
    times_s: Sequence[Sequence[float]],
    prompts: str | Sequence[str],
    *,
    fps: Sequence[float | None] | None = None,
    durations_s: Sequence[float | None] | None = None,
    system: str | None = None,
    add_generation_prompt: bool = True,
    padding_side: str = "left",
    return_tensors: str = "pt",
):
    """Model inputs for a batch of videos, one prompt each (a single string is shared): each
    prompt becomes a user turn with one video block (`video_messages`), rendered by the chat
    template, then `processor_video_inputs`. Returns the processor's BatchFeature
    (``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``pixel_values_videos``,
    ``video_grid_thw``, ``second_per_grid_ts``).
    """
    _require_video_processor(processor)
    texts = video_prompt_texts(processor, prompts, len(videos), system, add_generation_prompt)
    return processor_video_inputs(
        processor, texts, videos, times_s, fps=fps, durations_s=durations_s,
        padding_side=padding_side, return_tensors=return_tensors,
    )


def video_inputs(
    processor: Any,
    frames: Sequence[np.ndarray],
    times_s: Sequence[float],
    prompt: str,
    *,
    fps: float | None = None,
    duration_s: float | None = None,
    system: str | None = None,
    add_generation_prompt: bool = True,
    return_tensors: str = "pt",
):
    """Model inputs for one video (frames at absolute `times_s`) and a prompt; see batch_video_inputs."""
    return batch_video_inputs(
        processor,
        [frames],
        [times_s],
        [prompt],
        fps=[fps],
        durations_s=[duration_s],
        system=system,
        add_generation_prompt=add_generation_prompt,
        return_tensors=return_tensors,
    )


def greedy_generation_config(model: Any, max_new_tokens: int):
    """The model's generation config made deterministic: greedy, one beam, no sampling knobs."""
    import copy

    gen = copy.deepcopy(model.generation_config)
    gen.do_sample, gen.num_beams = False, 1
    gen.temperature = gen.top_p = gen.top_k = None
    gen.max_new_tokens = int(max_new_tokens)
    return gen
