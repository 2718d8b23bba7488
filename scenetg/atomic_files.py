"""Atomic file writes every layer uses: temp file in the same folder, fsync, rename, fsync the
folder, so a crash or SIGKILL leaves the old file or the new one, never half of one. New files get
the mode a plain `open` gives (0666 & ~umask), not mkstemp's 0600.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from scenetg.errors import ConfigError


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (no race with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(fd: int) -> None:
    """Give a temp file (mkstemp makes it 0600) the mode a plain `open` would: 0666 & ~umask,
    so a dataset on shared storage is readable by those the user's umask allows."""
    os.fchmod(fd, 0o666 & ~current_umask())


def honour_umask_tree(folder: Path) -> None:
    """Every file under `folder` gets 0666 & ~umask: libraries that save through a temp file
    (safetensors' model files, `save_pretrained`) leave them 0600, unreadable to a group the
    user's umask would let read them."""
    mode = 0o666 & ~current_umask()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder, fsync, rename, fsync the folder.

    On failure the temp file is removed and an existing `path` is untouched. Temp files are
    named `.NAME.*.tmp` (export cleans up strays of that shape).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        honour_umask(fd)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def swap_in(staging: Path, out: Path, names: list[str], marker: Path) -> None:
    """Move `names` (files or folders) from `staging` into `out`, replacing what is there.

    Several renames cannot be one atomic step, so `marker` is written first and removed last:
    while it exists (a kill mid-swap), `OUT` says its export is incomplete. The replaced entries
    go to a sibling folder and are deleted only after the swap. Entries of `names` missing from
    `staging` are removed from `out` (a split with no rows any more).
    """
    write_bytes_atomic(marker, b"export in progress; re-run `scenetg build --resume` or `scenetg export`\n")
    old = out / ".export-old"
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir()
    for name in names:
        if (out / name).exists() or (out / name).is_symlink():
            os.rename(out / name, old / name)
        if (staging / name).exists():
            os.rename(staging / name, out / name)
    fsync_dir(out)
    marker.unlink()
    fsync_dir(out)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_png(fig, path: Path) -> Path:
    """Write `fig` to `path` as a reproducible PNG (no software version in it), atomically, and
    close it. The one way SceneTG saves a plot (`inspect`'s plots, the eval report's histogram, training curves)."""
    import matplotlib.pyplot as plt  # deferred: heavy, and only plotting commands need it

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return path


def check_output_file(path: Path, flag: str) -> None:
    """A one-line ConfigError unless `path` can be written as a regular file: not a folder, not
    a device or pipe, and not below a file (``out.jsonl/x``). `flag` names the option to fix."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; give a file path")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{flag} {path}: not a regular file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder")
            break
