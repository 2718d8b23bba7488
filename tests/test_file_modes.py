"""Output files get the mode the user's umask gives (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from scenetg.atomic_files import write_json_atomic
from tests.test_export import make_rows, write


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_dataset_files_honour_the_umask(tmp_path, umask_027):
    write(tmp_path, make_rows(6))
    write_json_atomic(tmp_path / "manifest.json", {"a": 1})
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.relative_to(tmp_path).parts[0] for p in files} == {"data", "audit", "README.md", "manifest.json"}
    assert {_mode(p) for p in files} == {umask_027}


def test_default_umask_makes_files_world_readable(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "x.json", {})
    finally:
        os.umask(old)
    assert _mode(tmp_path / "x.json") == 0o644


def test_frame_cache_entries_honour_the_umask(tmp_path, umask_027):
    from scenetg.video.frame_cache import FrameCache
    from scenetg.video.synthetic import write_synthetic_video

    video = tmp_path / "v.mp4"
    write_synthetic_video(video, [1.0], 10.0, size=(32, 32))
    frames = FrameCache(tmp_path / "cache").frames(video, [0.5], None)
    assert np.asarray(frames[0]).dtype == np.uint8
    (entry,) = (tmp_path / "cache").rglob("*.npy")
    assert _mode(entry) == umask_027


def test_tiny_model_files_honour_the_umask(tmp_path, umask_027):
    """safetensors saves through a 0600 temp file; `models make-tiny` folders are 0640 under 027."""
    from scenetg.models.tiny import make_tiny_clip, make_tiny_qwen

    for folder in (make_tiny_qwen(tmp_path / "qwen"), make_tiny_clip(tmp_path / "clip")):
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert any(p.suffix == ".safetensors" for p in files)
        assert {_mode(p) for p in files} == {umask_027}, folder
