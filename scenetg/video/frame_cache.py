"""A disk cache of sampled frames (uint8), so GRPO's G rollouts and later epochs never re-decode.

Key: the video's resolved path, size and mtime, plus the sampling (frame times, max side). One
``.npy`` per (video, sampling) holding a (k, H, W, 3) uint8 array, written atomically, so a
killed run leaves no half-written entry and concurrent workers at worst write the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scenetg.atomic_files import write_bytes_atomic

CACHE_FORMAT = 2
"""Bump when the stored layout or the decoder's output changes, so old entries are not read."""


def frame_cache_key(path: str | os.PathLike, times_s: Sequence[float], max_side: int | None) -> str:
    """A hex digest naming one video's frames at `times_s`, decoded at `max_side`."""
    p = Path(path).resolve()
    st = p.stat()
    payload = {
        "format": CACHE_FORMAT,
        "path": str(p),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "times_s": [round(float(t), 6) for t in times_s],
        "max_side": max_side,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


class FrameCache:
    """Frames of sampled videos under `root` (created on first write). ``hits``/``misses``
    count lookups, for logging and tests."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def frames(
        self, path: str | os.PathLike, times_s: Sequence[float], max_side: int | None
    ) -> list[np.ndarray]:
        """The frames shown at `times_s`, from the cache or decoded once and stored."""
        key = frame_cache_key(path, times_s, max_side)
        file = self._file(key)
        if file.is_file():
            try:
                arr = np.load(file, allow_pickle=False)
                if arr.ndim == 4 and arr.shape[0] == len(times_s) and arr.dtype == np.uint8:
                    self.hits += 1
                    return list(arr)
            except (OSError, ValueError):
                pass  # a damaged entry is decoded again and overwritten
        self.misses += 1
        from scenetg.video.frames import read_frames_at  # PyAV only when decoding

        frames = read_frames_at(path, times_s, max_side=max_side)
        arr = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])

        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        write_bytes_atomic(file, buf.getvalue())
        return list(arr)
