"""The training frame cache: decode once per (video, sampling); a changed file is decoded again."""

from __future__ import annotations

import os

import numpy as np

from scenetg.grounding.samples import FrameSampling, sample_video
from scenetg.video.frame_cache import FrameCache
from scenetg.video.frames import read_frames_at
from scenetg.video.synthetic import write_synthetic_video


def test_cache_decodes_once_and_returns_the_same_frames(tmp_path, monkeypatch):
    video = tmp_path / "v.mp4"
    write_synthetic_video(video, [1.0, 1.0, 1.0], 10.0, size=(64, 36))
    cache = FrameCache(tmp_path / "cache")
    sampling = FrameSampling(fps=2.0, max_frames=4, max_side=64)
    first = sample_video(video, 3.0, sampling, cache)
    assert (cache.hits, cache.misses) == (0, 1)
    decoded = []
    from scenetg.video import frames as frames_mod

    real = frames_mod.read_frames_at
    monkeypatch.setattr(frames_mod, "read_frames_at", lambda *a, **k: decoded.append(a) or real(*a, **k))
    for _ in range(3):  # G rollouts, later epochs
        again = sample_video(video, 3.0, sampling, cache)
        assert all(np.array_equal(a, b) for a, b in zip(first.frames, again.frames, strict=True))
    assert decoded == [] and cache.hits == 3
    expected = read_frames_at(video, first.times_s, max_side=64)
    assert all(np.array_equal(a, b) for a, b in zip(first.frames, expected, strict=True))
    assert all(f.dtype == np.uint8 for f in first.frames)

    # another sampling is another entry; a rewritten file (new mtime) is decoded again
    sample_video(video, 3.0, FrameSampling(fps=2.0, max_frames=4, max_side=32), cache)
    assert cache.misses == 2
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    sample_video(video, 3.0, sampling, cache)
    assert cache.misses == 3


def test_a_damaged_entry_is_decoded_again(tmp_path):
    video = tmp_path / "v.mp4"
    write_synthetic_video(video, [1.0, 1.0], 10.0, size=(64, 36))
    cache = FrameCache(tmp_path / "cache")
    sampling = FrameSampling(fps=2.0, max_frames=2, max_side=64)
    good = sample_video(video, 2.0, sampling, cache)
    for entry in (tmp_path / "cache").rglob("*.npy"):
        entry.write_bytes(b"torn")
    again = sample_video(video, 2.0, sampling, cache)
    assert cache.misses == 2
    assert all(np.array_equal(a, b) for a, b in zip(good.frames, again.frames, strict=True))


def test_two_videos_of_one_duration_are_two_entries(tmp_path):
    """The cache key is the file (and sampling), not the duration: same-length videos differ."""
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_synthetic_video(a, [1.0, 1.0], 10.0, size=(64, 36), seed=1)
    write_synthetic_video(b, [0.5, 1.5], 10.0, size=(64, 36), seed=2)
    cache = FrameCache(tmp_path / "cache")
    sampling = FrameSampling(fps=2.0, max_frames=4, max_side=64)
    first_a = sample_video(a, 2.0, sampling, cache)
    from_b = sample_video(b, 2.0, sampling, cache)
    assert cache.misses == 2
    expected_b = read_frames_at(b, from_b.times_s, max_side=64)
    assert all(np.array_equal(x, y) for x, y in zip(from_b.frames, expected_b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(first_a.frames, from_b.frames, strict=True))
    again_a = sample_video(a, 2.0, sampling, cache)
    assert cache.hits == 1
    assert all(np.array_equal(x, y) for x, y in zip(first_a.frames, again_a.frames, strict=True))
