"""Prompts and frame sampling shared by GRPO training and inference.

Training and evaluation must show the model the same thing: the same frames (times from
`sample_video_times`, decoded no larger than `DEFAULT_MAX_SIDE`) and the same words
(`grounding_prompt`). Changing either here changes both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DEFAULT_FPS = 2.0
"""Frames per second sampled from a video for grounding (long videos hit `DEFAULT_MAX_FRAMES`)."""

DEFAULT_MAX_FRAMES = 128
"""Frame budget per video; past it, frames are spread evenly over the whole video."""

DEFAULT_MAX_SIDE = 448
"""Frames are decoded with their longer side at most this many pixels (the processor's own
pixel budget may shrink them further); keeps memory bounded on long videos."""

FRAME_MULTIPLE = 2
"""Qwen2.5-VL merges frames in pairs (temporal_patch_size 2); an even count avoids the padded,
duplicated last frame (qwen-vl-utils rounds to 2 as well)."""

GROUNDING_TEMPLATE = (
    "The video is {duration:.1f} seconds long. "
    'Find the moment in the video that matches this description: "{query}"\n'
    "First think step by step inside <think> </think>. Then give the start and end time of the "
    "moment in seconds inside <answer> </answer>, in the form <answer>START - END</answer>, "
    "for example <answer>12.5 - 17.8</answer>."
)

ANSWER_TEMPLATE = "<think></think><answer>{start} - {end}</answer>"
"""The supervised target of a grounding sample: the prompt's template with an empty reasoning, so
`format_ok` accepts it and `parse_answer` reads the span (SFT and GRPO models, one parser)."""

ANSWER_DECIMALS = 1
"""Decimals of the times in `grounding_answer` (``12.0 - 17.5``), as the prompt's example."""

MCQ_TEMPLATE = (
    "{question}\n{options}\nAnswer with the option's letter from the given choices directly."
)


def grounding_prompt(query: str, duration_s: float) -> str:
    """The grounding instruction: find `query`, answer ``<think>…</think><answer>S - E</answer>``
    in seconds. The duration is stated so the model knows the range of valid times."""
    return GROUNDING_TEMPLATE.format(query=" ".join(str(query).split()), duration=float(duration_s))


def grounding_answer(start_s: float, end_s: float, decimals: int = ANSWER_DECIMALS) -> str:
    """``<think></think><answer>START - END</answer>`` with each time in seconds, fixed-point with
    `decimals` places (Python's ``f"{x:.{decimals}f}"``: round half to even on the binary value;
    0 gives whole seconds, ``12 - 18``)."""
    if decimals < 0:
        raise ValueError("decimals must be >= 0")
    return ANSWER_TEMPLATE.format(start=f"{float(start_s):.{decimals}f}", end=f"{float(end_s):.{decimals}f}")


def frame_count(
    duration_s: float,
    fps: float = DEFAULT_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    multiple_of: int = FRAME_MULTIPLE,
) -> int:
    """``k = min(floor(duration_s * fps), max_frames)`` rounded down to a multiple of
    `multiple_of` (at least `multiple_of`, or `max_frames` when smaller)."""
    if not duration_s or duration_s <= 0 or not math.isfinite(duration_s):
        raise ValueError(f"duration_s must be a positive number, got {duration_s!r}")
    if not fps > 0 or not math.isfinite(fps):
        raise ValueError("fps must be > 0")
    if max_frames < 1 or multiple_of < 1:
        raise ValueError("max_frames and multiple_of must be >= 1")
    k = min(int(math.floor(duration_s * fps + 1e-9)), int(max_frames))
    return max(min(multiple_of, int(max_frames)), k - k % multiple_of)


def span_times(start_s: float, end_s: float, k: int) -> list[float]:
    """k frame times from the span's start: ``start + i·(end − start)/k``, i = 0..k−1.

    The sampled fps is exactly ``k / (end − start)`` and the first frame is at the span's start,
    which is where Qwen2.5-VL puts temporal grid 0: it reads grid t as time
    ``t · second_per_grid_ts`` from the first frame (qwen-vl-utils samples from the first frame
    too). Frames at part centres would shift every time the model sees by (end − start)/(2k).
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    if end_s < start_s:
        raise ValueError("end_s must be >= start_s")
    step = (float(end_s) - float(start_s)) / k
    return [float(start_s) + i * step for i in range(k)]


def sample_video_times(
    duration_s: float,
    fps: float = DEFAULT_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    multiple_of: int = FRAME_MULTIPLE,
) -> list[float]:
    """Absolute times (s) of the frames shown to the model for a whole video of `duration_s`:
    `frame_count` frames at ``i · D / k`` (`span_times` over ``[0, D)``), so grid t of the model
    is at time ``t · 2 · D / k`` exactly and the fps given to the processor is ``k / D``."""
    return span_times(0.0, float(duration_s), frame_count(duration_s, fps, max_frames, multiple_of))


def option_letter(index: int) -> str:
    """0 -> "A", 1 -> "B", ..."""
    return chr(ord("A") + index)


def mcq_prompt(question: str, options: Sequence[str]) -> str:
    """A multiple-choice question with lettered options (``A. text`` per line), asking for the
    letter only. Options are given as plain text (loaders strip any ``A.`` prefix)."""
    if not 1 <= len(options) <= 26:
        raise ValueError("between 1 and 26 options are needed")
    lines = "\n".join(f"{option_letter(i)}. {str(o).strip()}" for i, o in enumerate(options))
    return MCQ_TEMPLATE.format(question=str(question).strip(), options=lines)
