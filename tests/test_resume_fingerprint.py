"""`--resume` notices a video rewritten in place even when its size and mtime were kept."""

from __future__ import annotations

import os
from pathlib import Path

from scenetg.cli import main
from scenetg.curate.run import video_stages as stages
from scenetg.curate.run.workdir import file_signature
from scenetg.video.synthetic import write_synthetic_video

CONFIG = str(Path(__file__).parents[1] / "pipelines" / "demo" / "build.yaml")


def _rewrite_keeping_size_and_mtime(path: Path, offset_fraction: float) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    i = int(len(data) * offset_fraction)
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_signature_sees_head_middle_and_tail(tmp_path):
    path = tmp_path / "v.bin"
    path.write_bytes(os.urandom(1 << 20))
    for where in (0.0, 0.5, 0.9999):
        before = file_signature(path)
        _rewrite_keeping_size_and_mtime(path, where)
        assert file_signature(path) != before, where


def test_shots_resume_redoes_a_video_rewritten_in_place(tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        write_synthetic_video(videos / name, [1.5, 1.5], 10.0, size=(64, 48))
    out = tmp_path / "out"
    assert main(["shots", "--videos", str(videos), "--out", str(out), "-c", CONFIG]) == 0

    runs: list[str] = []
    real = stages.run_shots
    monkeypatch.setattr(stages, "run_shots", lambda path, cfg: runs.append(Path(path).name) or real(path, cfg))
    assert main(["shots", "--videos", str(videos), "--out", str(out), "-c", CONFIG, "--resume"]) == 0
    assert runs == []
    _rewrite_keeping_size_and_mtime(videos / "b.mp4", 0.5)
    main(["shots", "--videos", str(videos), "--out", str(out), "-c", CONFIG, "--resume"])
    assert runs == ["b.mp4"]
