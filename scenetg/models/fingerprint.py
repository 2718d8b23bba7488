"""A content fingerprint of a model folder (or a Hub id's cached snapshot), so a predictions file
can say which weights made it: a retrained model saved to the same path gets a new fingerprint.

Files up to `FULL_HASH_BYTES` are hashed whole (configs, tokenizer, a tiny model's weights);
larger ones by their size and `SAMPLE_BYTES` from their start, middle and end, so a 16 GB
checkpoint costs a few milliseconds instead of a minute of reading. Two different trainings of
the same architecture differ in every sampled block (weights are dense floats); the sample
would miss only an edit confined to bytes it never reads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

FULL_HASH_BYTES = 64 << 20
SAMPLE_BYTES = 1 << 20


def file_digest(path: Path, hasher: Any) -> None:
    """Feed `path`'s size and content (whole, or three sampled blocks when large) to `hasher`."""
    size = path.stat().st_size
    hasher.update(f"{size}\n".encode())
    with path.open("rb") as fh:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: fh.read(SAMPLE_BYTES), b""):
                hasher.update(block)
            return
        for offset in (0, size // 2 - SAMPLE_BYTES // 2, size - SAMPLE_BYTES):
            fh.seek(offset)
            hasher.update(fh.read(SAMPLE_BYTES))


def folder_fingerprint(folder: str | Path) -> str:
    """16 hex digits over every file under `folder` (relative names and content; hidden files
    and folders skipped, symlinks followed)."""
    root = Path(folder)
    hasher = hashlib.sha256()
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    for path in files:
        hasher.update(path.relative_to(root).as_posix().encode() + b"\0")
        file_digest(path, hasher)
    return hasher.hexdigest()[:16]


def model_fingerprint(model_id_or_path: str | Path) -> str | None:
    """The fingerprint of a local model folder, or of a Hub id's snapshot in the local cache;
    None when neither is found (the id alone then names the model)."""
    folder = Path(str(model_id_or_path)).expanduser()
    if folder.is_dir():
        return folder_fingerprint(folder)
    try:
        from huggingface_hub import snapshot_download  # deferred: pulls huggingface_hub

        snapshot = snapshot_download(str(model_id_or_path), local_files_only=True)
    except Exception:  # not cached, not a valid id: nothing to fingerprint
        return None
    return folder_fingerprint(snapshot)
