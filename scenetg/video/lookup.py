"""Finding a record's video file under a root folder (`--videos`, `--video-root`).

Ids come from annotation files and Parquet, which are not trusted: a `video_id` of ``../x`` or
``/abs/x`` must not open a file outside the root. `find_video` resolves symlinks-free path
arithmetic first and refuses ids that leave the root (`VideoError`, which callers turn into an
error row), then looks for ``<video_id><ext>``.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from scenetg.errors import VideoError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")


def inside_root(root: str | Path, relative: str) -> Path:
    """``root / relative`` when it stays inside `root` (lexically: no absolute part, no ``..``
    climbing above it); else `VideoError`. Symlinks inside the root are the user's own choice and
    are followed."""
    text = str(relative)
    if not text or "\x00" in text:
        raise VideoError(f"invalid video id {text!r}")
    if os.path.isabs(text) or text.startswith(("~", "\\")) or (len(text) > 1 and text[1] == ":"):
        raise VideoError(f"video id {text!r} is an absolute path; ids are relative to the videos folder")
    normal = os.path.normpath(text.replace("\\", "/"))
    if normal == ".." or normal.startswith("../") or normal == ".":
        raise VideoError(f"video id {text!r} leaves the videos folder")
    return Path(root) / normal


def find_video(videos_dir: str | Path, video_id: str) -> Path | None:
    """The file of `video_id` under `videos_dir`: ``<video_id><ext>`` for the usual extensions
    (any case; ids may be nested, ``charades/3MSZA``), or `video_id` itself when it already ends
    with one. None when there is none; `VideoError` when the id escapes `videos_dir`."""
    direct = inside_root(videos_dir, video_id)
    if direct.suffix.lower() in VIDEO_EXTENSIONS and direct.is_file():
        return direct
    for ext in VIDEO_EXTENSIONS:
        for e in (ext, ext.upper()):
            candidate = direct.with_name(direct.name + e)
            if candidate.is_file():
                return candidate
    parent = direct.parent
    if parent.is_dir():
        for candidate in sorted(parent.glob(glob.escape(direct.name) + ".*")):
            if candidate.suffix.lower() in VIDEO_EXTENSIONS and candidate.is_file():
                return candidate
    return None


def missing_video_message(videos_dir: str | Path, video_id: str) -> str:
    """One line naming what was looked for."""
    exts = "/".join(e[1:] for e in VIDEO_EXTENSIONS)
    return f"video not found: {Path(videos_dir) / video_id}.* ({exts})"


def video_duration(path: Path, known: Iterable[float | None] = ()) -> float:
    """The first known duration (from the annotations), else the probed one (raises VideoError)."""
    for d in known:
        if d is not None and d > 0:
            return float(d)
    from scenetg.video.probe import probe_video  # deferred: pulls av

    return float(probe_video(path).duration_s)
