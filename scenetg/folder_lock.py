"""One writer per output folder: the build's ``OUT`` and the training run folder.

`lock_folder` holds an exclusive `flock` on ``FOLDER/.scenetg.lock`` for a block. A second
run on the same folder fails at once, naming the holder's pid and host. The kernel drops an
`flock` when its holder dies, so a killed run leaves no stale lock; the file's pid/host only
name the holder. Where the filesystem has no `flock`, a lock file of a dead pid on this host is
taken over. Re-entrant within a process (build -> export).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scenetg.errors import ScenetgError

LOCK = ".scenetg.lock"

_held: dict[Path, tuple[int, int]] = {}
"""Locks this process holds: resolved folder -> (fd, depth)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(lock_path: Path) -> dict[str, Any]:
    try:
        return json.loads(lock_path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def ensure_folder(folder: Path, flag: str = "--out") -> Path:
    """Create `folder` (and parents); an existing file there is a usage error naming `flag`."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise ScenetgError(f"{out}: exists and is not a folder ({flag})")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ScenetgError(f"{out}: a parent exists and is not a folder ({flag})") from None
    return out


@contextmanager
def lock_folder(folder: Path, flag: str = "--out") -> Iterator[None]:
    """Hold the exclusive lock on `folder` (created if missing) for the block."""
    out = ensure_folder(folder, flag).resolve()
    if out in _held:
        fd, depth = _held[out]
        _held[out] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[out]
            _held[out] = (fd, depth - 1)
        return
    lock_path = out / LOCK
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    host = socket.gethostname()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        held_by = _holder(lock_path)
        # EAGAIN: a live process holds it. Otherwise flock is unsupported here: trust the pid
        # file, except one left by a dead process of this host.
        stale = held_by.get("host") == host and not _pid_alive(int(held_by.get("pid") or 0))
        if exc.errno in (errno.EAGAIN, errno.EACCES) or (held_by and not stale):
            os.close(fd)
            raise ScenetgError(
                f"{out}: in use by another scenetg run (pid {held_by.get('pid', '?')} on host "
                f"{held_by.get('host', '?')}); wait for it to finish, or remove {lock_path} if it is gone"
            ) from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": host}).encode())
    _held[out] = (fd, 1)
    try:
        yield
    finally:
        _, depth = _held[out]
        if depth <= 1:
            del _held[out]
            os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the flock
        else:
            _held[out] = (fd, depth - 1)
