"""Seek-based sparse sampling (scenetg.video.seek) returns exactly the frames streaming returns."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from scenetg.video.frames import read_frames_at
from scenetg.video.seek import DECODE_STATS, plan_sampling

W, H = 160, 96


def _write(
    path: Path,
    n_frames: int = 300,
    fps: int = 25,
    gop: int = 25,
    bframes: int = 0,
    open_gop: bool = False,
    vfr: bool = False,
    fmt: str = "mp4",
    start_pts: int = 0,
) -> list[float]:
    """A small H.264 file whose every frame differs (a moving bar over noise); returns frame times.

    `vfr` gives frames alternating 1 and 2 ticks long; `start_pts` delays the stream start.
    """
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 255, size=(4, H, W, 3), dtype=np.uint8)
    rate = Fraction(fps)
    times = []
    with av.open(str(path), mode="w", format=fmt) as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.time_base = 1 / rate
        s.codec_context.time_base = 1 / rate
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
        if open_gop:
            params += ":open-gop=1"
        s.options = {"preset": "ultrafast", "crf": "28", "x264-params": params}
        tick = start_pts
        for i in range(n_frames):
            img = noise[i % 4].copy()
            x = (i * 3) % (W - 8)
            img[:, x : x + 8] = (i * 37) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = tick
            frame.time_base = 1 / rate
            times.append(float((tick - start_pts) / rate))
            tick += 2 if vfr and i % 3 == 1 else 1
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return times


def _sparse_times(times: list[float], n: int = 14, seed: int = 0) -> list[float]:
    """Far-apart requests: exact frame times, times just before a frame, times between frames,
    before the start and past the end."""
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(times), size=n, replace=False).tolist())
    out = [-1.0]
    for j, i in enumerate(picks):
        t = times[i]
        out.append([t, t - 1e-4, t + 0.013][j % 3])
    return [*out, times[-1] + 5.0]


def _assert_same_frames(path: Path, times: list[float], expect_seeks: bool = True) -> None:
    DECODE_STATS.reset()
    streamed = read_frames_at(path, times, seek=False)
    streamed_frames = DECODE_STATS.frames
    DECODE_STATS.reset()
    sought = read_frames_at(path, times)
    plan = plan_sampling(path, sorted(times))
    for t, a, b in zip(times, streamed, sought, strict=True):
        assert np.array_equal(a, b), f"{path.name}: frame at {t} differs between the two paths"
    if expect_seeks:
        assert plan.n_seeks > 0 and DECODE_STATS.seeks >= plan.n_seeks
        assert DECODE_STATS.frames < streamed_frames
    else:
        assert plan.n_seeks == 0 and DECODE_STATS.seeks == 0


@pytest.mark.parametrize(
    "kind",
    ["cfr", "vfr", "bframes", "open_gop", "mkv_bframes", "delayed_start"],
)
def test_seek_path_matches_streaming(tmp_path, kind):
    opts = {
        "cfr": {},
        "vfr": {"vfr": True},
        "bframes": {"bframes": 3},
        "open_gop": {"bframes": 3, "open_gop": True},
        "mkv_bframes": {"bframes": 2, "fmt": "matroska"},
        "delayed_start": {"bframes": 2, "start_pts": 40},
    }[kind]
    path = tmp_path / f"{kind}.{'mkv' if opts.get('fmt') else 'mp4'}"
    times = _write(path, **opts)
    _assert_same_frames(path, _sparse_times(times))


def test_dense_times_stream(tmp_path):
    """Scene keyframes a few frames apart never seek: streaming decodes no more."""
    path = tmp_path / "dense.mp4"
    times = _write(path, n_frames=200)
    _assert_same_frames(path, [t + 0.01 for t in times[::7]], expect_seeks=False)


def test_plan_measures_keyframe_spacing(tmp_path):
    path = tmp_path / "gop.mp4"
    _write(path, n_frames=200, gop=50)
    plan = plan_sampling(path, [0.5, 3.1, 3.2, 7.5])
    assert plan.keyframe_spacing_s == pytest.approx(2.0)
    # 3.1 s: keyframe at 2.0 is past where streaming would be (0.5 s) -> seek; 3.2: stream on;
    # 7.5: keyframe at 6.0 -> seek.
    assert plan.seek_to == [None, pytest.approx(2.0), None, pytest.approx(6.0)]


def test_seek_that_lands_late_reseeks_earlier(tmp_path, monkeypatch):
    """A seek that lands after the requested time (inexact containers) is retried earlier."""
    from scenetg.video import frames as frames_mod

    path = tmp_path / "late.mp4"
    times = _write(path, n_frames=250, gop=25)
    wanted = [times[130] + 0.01]  # keyframes at 4.0 and 5.0; the frame is at 5.2
    late = frames_mod.plan_sampling(path, wanted)
    # Pretend the index pointed one GOP too far (as an inexact seek would land).
    monkeypatch.setattr(
        frames_mod, "plan_sampling",
        lambda p, t: type(late)(late.keyframe_spacing_s, [s + 1.0 if s else s for s in late.seek_to]),
    )
    DECODE_STATS.reset()
    (got,) = read_frames_at(path, wanted)
    assert DECODE_STATS.seeks >= 2
    (want,) = read_frames_at(path, wanted, seek=False)
    assert np.array_equal(got, want)


ASSET_VIDEOS = [
    "pyscenedetect/testvideo.mp4",
    "pyscenedetect/goldeneye-vfr-drop3.mp4",
    "pyscenedetect/fades.mp4",
    "pyscenedetect/delayed_start.mp4",
    "pyscenedetect/counter.mp4",
    "charades/3MSZA.mp4",
]


@pytest.mark.parametrize("name", ASSET_VIDEOS)
def test_seek_path_matches_streaming_on_real_videos(assets, name):
    """Times further apart than the file's keyframe spacing, so the seek path is taken (except
    on counter.mp4, a single GOP), plus times before the start and past the end."""
    from scenetg.video.probe import probe_video

    path = assets / "videos" / name
    info = probe_video(path)
    spacing = plan_sampling(path, [0.0]).keyframe_spacing_s
    step = 1.3 * max(spacing or 1.0, 0.6)
    times = [-0.5, *np.arange(0.37, info.duration_s, step).tolist(), info.duration_s + 1]
    _assert_same_frames(path, times, expect_seeks=spacing is not None)
