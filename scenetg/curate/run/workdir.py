"""The build folder `OUT/`: video discovery, per-video stage files, and the manifest.

Every write here is atomic (temp file + fsync + rename), so a crash or SIGKILL leaves either the
old or the new file, never half of one. Per-video stage results live in `OUT/work/<key>/`; a
video whose stage file exists (with the same stage fingerprint) is not recomputed on `--resume`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenetg.atomic_files import read_json, write_json_atomic
from scenetg.errors import ScenetgError
from scenetg.folder_lock import LOCK, ensure_folder, lock_folder  # noqa: F401  (LOCK: public here too)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class VideoJob:
    """One input video: its id (relative path without extension), absolute path and work key."""

    video_id: str
    rel_path: str
    path: Path
    key: str


def video_key(video_id: str) -> str:
    """A filesystem-safe, collision-free folder name for a video_id (readable prefix + hash)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", video_id)[-48:].strip("_.") or "video"
    return f"{safe}-{hashlib.sha1(video_id.encode()).hexdigest()[:10]}"


def one_line(text: str) -> str:
    """`text` with line breaks escaped: a file name may contain one, an error row may not."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def symlink_loop(path: Path) -> bool:
    """True when resolving `path` runs into a symlink loop (it then looks like a dangling link)."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def discover_videos(
    videos_dir: Path, extensions: list[str], warn: Callable[[str], None] | None = None
) -> list[VideoJob]:
    """All files under `videos_dir` (recursively) whose extension is one of `extensions`.

    Symlinked subfolders are followed, each real folder once: a link back to a folder already
    searched (a loop, or a second link to one folder) is skipped with a warning, as are symlink
    loops and folders named like videos (``x.mp4/``). Dangling and looping symlinks with a video
    extension are included on purpose: they become per-video error rows, not silence.
    Sorted by relative path so every run sees the same order.
    """
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise ScenetgError(f"{videos_dir}: not a folder (--videos)")
    warn = warn or (lambda message: None)
    exts = {"." + e.lower().lstrip(".") for e in extensions}
    seen: dict[tuple[int, int], str] = {}
    jobs = []
    for root, dirs, files in os.walk(videos_dir, followlinks=True):
        st = os.stat(root)
        rel_root = Path(root).relative_to(videos_dir).as_posix()
        if (st.st_dev, st.st_ino) in seen:
            first = seen[(st.st_dev, st.st_ino)]
            warn(f"skipped symlinked folder {one_line(rel_root)}: it leads to {one_line(first)}, "
                 "already searched (a symlink loop or a second link)")
            dirs.clear()
            continue
        seen[(st.st_dev, st.st_ino)] = rel_root
        dirs.sort(key=lambda d: (os.path.islink(os.path.join(root, d)), d))  # real folders first
        for name in dirs:
            if Path(name).suffix.lower() in exts:
                warn(f"{one_line(Path(rel_root, name).as_posix())}: a folder, not a video (searched inside it)")
        for name in files:
            path = Path(root) / name
            rel = path.relative_to(videos_dir).as_posix()
            if path.suffix.lower() not in exts:
                if symlink_loop(path):
                    warn(f"skipped {one_line(rel)}: symlink loop")
                continue
            video_id = rel[: -len(path.suffix)]
            jobs.append(VideoJob(video_id, rel, path.absolute(), video_key(video_id)))
    jobs.sort(key=lambda j: j.rel_path)
    counts = Counter(j.video_id for j in jobs)
    dupes = sorted(i for i, n in counts.items() if n > 1)
    if dupes:
        raise ScenetgError(
            f"{videos_dir}: several files share the video_id {dupes[0]!r} (same name, other extension)"
        )
    return jobs


def fingerprint(obj: Any) -> str:
    """Stable short hash of a JSON-able object (a stage's config), to tell stale stage files."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


SAMPLE_BYTES = 64 << 10
"""Bytes hashed at each of the head, middle and tail of a video for its content fingerprint."""
_signatures: dict[tuple, list] = {}


def file_signature(path: Path) -> list | None:
    """(size, mtime, hash of head + middle + tail) of a file: tells a replaced video from the
    one a stage result was made of, also when a rewrite in place kept its size and mtime. Three
    64 KiB reads cost little next to decoding; cached per (path, size, mtime, inode)."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    if key not in _signatures:
        digest = hashlib.blake2b(digest_size=8)
        try:
            with open(path, "rb") as fh:
                for offset in sorted({0, max(0, st.st_size // 2 - SAMPLE_BYTES // 2),
                                      max(0, st.st_size - SAMPLE_BYTES)}):
                    fh.seek(offset)
                    digest.update(fh.read(SAMPLE_BYTES))
        except OSError:
            return None
        _signatures[key] = [st.st_size, st.st_mtime_ns, digest.hexdigest()]
    return _signatures[key]


class WorkDir:
    """Paths and manifest of one build folder."""

    def __init__(self, out_dir: Path):
        self.out = Path(out_dir)

    @property
    def manifest_path(self) -> Path:
        return self.out / MANIFEST

    def video_dir(self, key: str) -> Path:
        return self.out / "work" / key

    def stage_path(self, key: str, stage: str) -> Path:
        return self.video_dir(key) / f"{stage}.json"

    def read_stage(self, key: str, stage: str, stage_fp: str) -> Any | None:
        """The stage's stored result, or None if missing or made with another config."""
        path = self.stage_path(key, stage)
        if not path.is_file():
            return None
        try:
            doc = read_json(path)
        except (OSError, json.JSONDecodeError):
            return None
        if doc.get("fingerprint") != stage_fp:
            return None
        return doc["result"]

    def write_stage(self, key: str, stage: str, stage_fp: str, result: Any) -> None:
        write_json_atomic(self.stage_path(key, stage), {"fingerprint": stage_fp, "result": result})

    def load_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.is_file():
            return None
        try:
            return read_json(self.manifest_path)
        except json.JSONDecodeError as exc:
            raise ScenetgError(f"{self.manifest_path}: corrupt manifest ({exc.msg})") from exc

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def require_manifest(self) -> dict[str, Any]:
        manifest = self.load_manifest()
        if manifest is None:
            raise ScenetgError(f"{self.out}: no {MANIFEST}; run `scenetg shots --videos DIR --out {self.out}` first")
        return manifest


# ----- one writer per OUT (`scenetg.folder_lock`, shared with the training run folder) ---------
def ensure_out_dir(out_dir: Path) -> Path:
    """Create `out_dir` (and parents); an existing file there is a usage error."""
    return ensure_folder(out_dir, "--out")


def lock_out(out_dir: Path) -> AbstractContextManager[None]:
    """Hold the exclusive lock on `OUT` (`OUT/.scenetg.lock`) for the block: two builds or stage
    commands on one OUT would overwrite each other's stage files (`folder_lock.lock_folder`)."""
    return lock_folder(out_dir, "--out")
