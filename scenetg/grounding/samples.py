"""The seam shared by `scenetg ground`, `scenetg answer` and `scenetg train`: a grounding sample
(video path, duration, query) → frame times, frames and prompt → model inputs / generations.

One path, so training and inference show the model the same frames at the same times with the
same words: frame times from `FrameSampling.times` (from 0, ``i · D/k``), frames decoded no larger
than ``max_side`` (optionally through a `FrameCache`), the prompt from `grounding_prompt`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.grounding.prompts import (
    DEFAULT_FPS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_SIDE,
    grounding_prompt,
    sample_video_times,
)


@dataclass(frozen=True)
class FrameSampling:
    """How frames are taken from a whole video for the model (grounding and training)."""

    fps: float = DEFAULT_FPS
    """Frames per second sampled (long videos hit `max_frames` instead)."""
    max_frames: int = DEFAULT_MAX_FRAMES
    """Frame budget per video (even: Qwen2.5-VL merges frame pairs)."""
    max_side: int | None = DEFAULT_MAX_SIDE
    """Frames are decoded with their longer side at most this many pixels."""

    def times(self, duration_s: float) -> list[float]:
        """Frame times for a video of `duration_s` (`sample_video_times`)."""
        return sample_video_times(duration_s, self.fps, self.max_frames)


@dataclass
class SampledVideo:
    """A video as the model sees it: RGB uint8 frames at absolute `times_s` of a `duration_s` video."""

    frames: list[np.ndarray]
    times_s: list[float]
    duration_s: float


def sample_video(
    path: str | Path, duration_s: float, sampling: FrameSampling, cache: Any = None
) -> SampledVideo:
    """Decode the frames `sampling` picks from `path` (through `cache`, a `FrameCache`, when given).

    Raises `VideoError` for an unreadable file and ValueError for a bad duration."""
    times = sampling.times(duration_s)
    if cache is not None:
        frames = cache.frames(path, times, sampling.max_side)
    else:
        from scenetg.video.frames import read_frames_at  # deferred: pulls av

        frames = read_frames_at(path, times, max_side=sampling.max_side)
    return SampledVideo(frames=list(frames), times_s=times, duration_s=float(duration_s))


@dataclass
class GroundingInput:
    """One query on one sampled video, with the prompt the model gets."""

    video: SampledVideo
    query: str

    @property
    def prompt(self) -> str:
        return grounding_prompt(self.query, self.video.duration_s)


def generate_texts(
    runner: Any,
    videos: Sequence[SampledVideo],
    prompts: Sequence[str],
    max_new_tokens: int | None = None,
) -> list[str]:
    """Greedy completions for (video, prompt) pairs in one batched generate (`QwenRunner`)."""
    return runner.generate(
        [v.frames for v in videos],
        [v.times_s for v in videos],
        list(prompts),
        [v.duration_s for v in videos],
        max_new_tokens=max_new_tokens,
    )


def generate_grounding(
    runner: Any, items: Sequence[GroundingInput], max_new_tokens: int | None = None
) -> list[str]:
    """Raw grounding outputs (``<think>…</think><answer>S - E</answer>``) for `items`."""
    return generate_texts(
        runner, [it.video for it in items], [it.prompt for it in items], max_new_tokens
    )


def sample_grounding(
    runner: Any,
    items: Sequence[GroundingInput],
    n: int,
    temperature: float,
    seed: int,
    max_new_tokens: int | None = None,
) -> list[list[tuple[str, float]]]:
    """Per item: the greedy output and `n` samples at `temperature`, each with its sequence
    log-prob (`QwenRunner.sample_scored`), for ranked candidates."""
    return runner.sample_scored(
        [it.video.frames for it in items],
        [it.video.times_s for it in items],
        [it.prompt for it in items],
        [it.video.duration_s for it in items],
        n=n,
        temperature=temperature,
        seed=seed,
        max_new_tokens=max_new_tokens,
    )
