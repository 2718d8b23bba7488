"""Scene keyframes decoded once per build: the captions pass also keeps the CLIP filter's frames.

Both stages look at the same scenes (the filter at ``filter.frames_per_scene`` times per scene,
the captioner at the scene keyframes, the same times when both ``frames_per_scene`` agree) at two
sizes. The captions stage decodes the union of both sets of times once and converts each decoded
frame to both sizes (`iter_frames_sized`), so the filter's frames are byte-identical to those it
would decode itself, and stores the filter's in ``OUT/work/<video>/keyframes/`` (uint8 ``.npy``,
keyed by the video file, the times and the size). The filter reads them instead of decoding and
removes them once its result is written. Anything that does not match (another CLIP input size, a
captions run killed before the end, a changed video) simply means the filter decodes as before.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.atomic_files import write_bytes_atomic
from scenetg.curate.run.workdir import file_signature, fingerprint

KEYFRAMES_FORMAT = 1
"""Bump when the stored frames would change (decoder output, layout)."""


FILTER_MIN_SIDE = 224
"""The filter's frames are never decoded with a longer side below this (a tiny test CLIP's 32 px
input included), so their pixels do not depend on how small the model is."""


def filter_frame_side(image_size: int, video: dict[str, Any] | None) -> int:
    """The longer side the filter decodes a video's frames at, for a CLIP with `image_size` input.

    open_clip's preprocess resizes the *shorter* side to `image_size` and centre-crops, so the
    frames' shorter side must reach it, else CLIP sees upscaled frames (a 16:9 video decoded at
    224 x 126 was enlarged 1.78x): `image_size` x the aspect ratio of `video` (the shots stage's
    ``video`` record: ``width``, ``height``), at least `FILTER_MIN_SIDE`. No larger is needed.
    Without usable dimensions, 2 x `image_size` (enough up to 2:1).
    """
    size = int(image_size)
    w, h = (int((video or {}).get("width") or 0), int((video or {}).get("height") or 0))
    side = -(-size * max(w, h) // min(w, h)) if min(w, h) > 0 else 2 * size
    return max(FILTER_MIN_SIDE, side)


def filter_times(scenes: list[dict[str, Any]], k: int) -> list[list[float]]:
    """The filter's `k` frame times per scene (centres of k equal parts)."""
    from scenetg.video.frames import sample_times  # deferred: pulls av

    return [sample_times(s["start_s"], s["end_s"], k) for s in scenes]


def clip_image_size_hint(clip_model: str) -> int | None:
    """A CLIP model's input size from its config alone (no weights loaded), or None when it
    cannot be told cheaply; used only to decide which frames the captions pass keeps."""
    try:
        name = str(clip_model).removeprefix("local-dir:")
        folder = Path(name).expanduser()
        if folder.is_dir():
            cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
        elif ":" in name and not name.startswith("hf-hub:"):
            import open_clip

            cfg = open_clip.get_model_config(name.split(":", 1)[0].replace("/", "-"))
        else:
            return None
        size = cfg["vision_cfg"]["image_size"]
        return int(max(size) if isinstance(size, (list, tuple)) else size)
    except Exception:  # a hint only: any doubt means the filter decodes for itself
        return None


class KeyframeStore:
    """The filter's frames of one video, saved by the captions pass (see the module docstring)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _file(self, video: Path, times: list[float], side: int) -> Path:
        key = fingerprint(
            [KEYFRAMES_FORMAT, file_signature(video), [round(t, 9) for t in times], side]
        )
        return self.folder / f"filter-{key[:24]}.npy"

    def load(self, video: Path, times: list[float], side: int) -> list[np.ndarray] | None:
        file = self._file(video, times, side)
        try:
            arr = np.load(file, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if arr.ndim != 4 or arr.shape[0] != len(times) or arr.dtype != np.uint8:
            return None
        return list(arr)

    def save(self, video: Path, times: list[float], side: int, frames: list[np.ndarray]) -> None:
        buf = io.BytesIO()
        np.save(buf, np.stack(frames), allow_pickle=False)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self._file(video, times, side), buf.getvalue())

    def clear(self) -> None:
        for file in self.folder.glob("filter-*.npy"):
            file.unlink(missing_ok=True)


def caption_groups_keeping_filter_frames(
    path: Path,
    caption_times: list[list[float]],
    caption_side: int | None,
    filter_flat: list[float],
    filter_side: int,
    kept: list[np.ndarray],
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Like `stages._scene_frame_groups` for the captions, from one pass that also appends the
    filter's frames (times `filter_flat`, size `filter_side`) to `kept`."""
    from scenetg.video.frames import iter_frames_sized  # deferred: pulls av

    cap_flat = [t for times in caption_times for t in times]
    owner = [i for i, times in enumerate(caption_times) for _ in times]
    merged = sorted(set(cap_flat) | set(filter_flat))
    ci = fi = 0
    current: list[np.ndarray] = []
    for t, (cap_img, clip_img) in zip(
        merged, iter_frames_sized(path, merged, (caption_side, filter_side)), strict=True
    ):
        while fi < len(filter_flat) and filter_flat[fi] == t:
            kept.append(clip_img)
            fi += 1
        while ci < len(cap_flat) and cap_flat[ci] == t:
            current.append(cap_img)
            ci += 1
            if ci == len(cap_flat) or owner[ci] != owner[ci - 1]:
                yield owner[ci - 1], current
                current = []


def filter_request(
    shots: dict[str, Any], k: int, clip_model: str, loaded_clip: Any = None
) -> tuple[list[float], int] | None:
    """(flat times, side) of the filter's frames of the video of `shots` (the shots stage's
    result) for the captions pass to keep, or None when the CLIP input size cannot be told
    without loading the model."""
    size = getattr(loaded_clip, "image_size", None) or clip_image_size_hint(clip_model)
    if size is None:
        return None
    times = [t for group in filter_times(shots["scenes"], k) for t in group]
    return times, filter_frame_side(size, shots.get("video"))
