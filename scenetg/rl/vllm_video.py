"""vLLM rollouts with video (TRL's ``use_vllm``, colocate mode).

TRL 1.16 hands vLLM ``multi_modal_data={"image": ...}`` only (`VLLMGeneration.generate`), so video
prompts would be generated blind. `VideoLLM` wraps the ``LLM`` TRL builds and attaches to each
prompt the video our sampler decoded: ``multi_modal_data={"video": (frames, metadata)}`` with the
same uint8 frames (T, H, W, 3) and the `VideoMetadata` fields our processor call uses
(`models.qwen.video_metadata`: the real sampled fps, so vLLM's HF processor computes the same
``second_per_grid_ts``), ``do_sample_frames: False`` (no re-sampling) and our processor kwargs.
TRL's prompt ids already hold the expanded ``<|video_pad|>`` run of our grid; vLLM 0.31 expands
the first pad of that run again to the grid's length and reads the rest as text (measured: 23
pads for a 12-token video, the rollouts' log-probs 0.14-0.3 off the trainer's). So `VideoLLM`
gives vLLM each run collapsed to one pad (`collapse_video_pads`), vLLM expands it to the same
grid, and the outputs carry TRL's own prompt ids back.

vLLM behaviour followed: a pre-decoded video given as a ``(frames, metadata)`` tuple, metadata
forwarded to the HF processor as ``video_metadata`` (the Qwen3-VL pattern; for Qwen2.5-VL since
vllm-project/vllm#47736, merged 2026-09-20..24, after v0.29.0 of 2026-09-09). Older vLLM drops the
metadata for Qwen2.5-VL and the HF processor falls back to 24 fps: a silently wrong time axis, so
`check_vllm_for_video` refuses vLLM below `VLLM_MIN_VERSION`.

Server mode (``trl vllm-serve``) is refused: its API takes token ids plus image features only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scenetg.errors import ConfigError
from scenetg.models.vllm_runner import VLLM_MIN_VERSION, check_vllm_version, vllm_video

__all__ = ["VLLM_MIN_VERSION", "VideoLLM", "check_vllm_for_video", "vllm_video_item"]

SERVER_MODE_ERROR = (
    "grpo.vllm_mode: server is not supported for video: TRL's `trl vllm-serve` API takes token "
    "ids and image features only, so rollouts would be generated without the video; use "
    "vllm_mode: colocate (or use_vllm: false)"
)


def check_vllm_for_video(mode: str) -> None:
    """ConfigError (one line) unless vLLM can take our videos in `mode`: colocate mode with vLLM
    installed at `VLLM_MIN_VERSION` or later."""
    if mode == "server":
        raise ConfigError(SERVER_MODE_ERROR)
    check_vllm_version("grpo.use_vllm", "set use_vllm: false")


def vllm_video_item(video: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """One `SampledVideo` as vLLM's video input (`models.vllm_runner.vllm_video`)."""
    return vllm_video(video.frames, video.times_s, video.duration_s)


class VideoLLM:
    """The ``LLM`` TRL built, with each prompt's video attached at `generate`.

    `videos` is set (one item per prompt, in TRL's prompt order) right before TRL's generation
    call; every other attribute (``llm_engine``, ``sleep``, ``wake_up``, ``reset_prefix_cache``,
    ...) is the wrapped object's."""

    def __init__(self, llm: Any, processor_kwargs: dict[str, Any], video_pad_id: int | None = None):
        self.llm = llm
        self.processor_kwargs = dict(processor_kwargs)
        self.video_pad_id = video_pad_id
        self.videos: list[tuple[np.ndarray, dict]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["llm"], name)

    def generate(self, prompts: Sequence[dict], *args: Any, **kwargs: Any) -> Any:
        videos, self.videos = self.videos, None
        if videos is None or len(videos) != len(prompts):
            got = "none" if videos is None else len(videos)
            raise RuntimeError(f"vLLM rollouts: {len(prompts)} prompts but {got} videos")
        rows = []
        for prompt, video in zip(prompts, videos, strict=True):
            if "multi_modal_data" in prompt:  # an image path of TRL's: never mixed with ours
                raise RuntimeError("vLLM rollouts: a prompt already carries multi-modal data")
            row = {**prompt, "multi_modal_data": {"video": video},
                   "mm_processor_kwargs": dict(self.processor_kwargs)}
            if "prompt_token_ids" in prompt and self.video_pad_id is not None:
                row["prompt_token_ids"] = collapse_video_pads(prompt["prompt_token_ids"], self.video_pad_id)
            rows.append(row)
        outputs = self.llm.generate(rows, *args, **kwargs)
        if self.video_pad_id is not None:  # TRL builds the trainer's rows from these ids
            for prompt, out in zip(prompts, outputs, strict=True):
                if "prompt_token_ids" in prompt:
                    out.prompt_token_ids = list(prompt["prompt_token_ids"])
        return outputs


def collapse_video_pads(token_ids: Sequence[int], video_pad_id: int) -> list[int]:
    """`token_ids` with every run of ``<|video_pad|>`` cut to one pad (what vLLM expands)."""
    out: list[int] = []
    for t in token_ids:
        t = int(t)
        if not (t == video_pad_id and out and out[-1] == video_pad_id):
            out.append(t)
    return out


def vision_logit_bias(token_ids: Sequence[int]) -> dict[int, float]:
    """vLLM's spelling of "never sample these" (its SamplingParams has no ``suppress_tokens``;
    vLLM clamps logit biases to ±100)."""
    return {int(i): -100.0 for i in token_ids}
