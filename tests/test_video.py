"""scenetg.video: probing (and its errors), frame sampling, synthetic videos."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import av
import numpy as np
import pytest

from scenetg.errors import VideoError
from scenetg.video.frames import read_frames_at, sample_times
from scenetg.video.probe import VideoInfo, probe_video
from scenetg.video.synthetic import scene_colours, write_synthetic_video

SCENES_S = [1.0, 2.3, 0.7, 1.5]


def _pysd(assets: Path, name: str) -> Path:
    return assets / "videos" / "pyscenedetect" / name


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, list[float]]:
    path = tmp_path_factory.mktemp("video") / "scenes.mp4"
    return path, write_synthetic_video(path, SCENES_S, 25, size=(320, 180), seed=3)


# --- synthetic videos --------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [24, 25, 29.97])
def test_synthetic_cfr_timestamps_match_returned_cuts(tmp_path, fps):
    path = tmp_path / "v.mp4"
    cuts = write_synthetic_video(path, SCENES_S, fps)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times = [float((f.pts - (s.start_time or 0)) * s.time_base) for f in c.decode(s)]
        assert s.codec_context.name in ("h264", "mpeg4")
    steps = np.diff(times)
    assert np.allclose(steps, steps[0], atol=1e-9)  # constant frame rate
    expected_step = 1001 / 30000 if fps == 29.97 else 1 / fps
    assert steps[0] == pytest.approx(expected_step, abs=1e-9)
    # Every returned cut is the time of an actual frame, and scene boundaries sit right there.
    assert all(any(abs(t - c) < 1e-9 for t in times) for c in cuts)
    bounds = np.cumsum(SCENES_S)[:-1]
    assert len(cuts) == len(bounds)
    for cut, bound in zip(cuts, bounds, strict=True):
        assert bound - 1e-9 <= cut < bound + expected_step


def test_synthetic_vfr_has_variable_frame_durations(tmp_path):
    path = tmp_path / "vfr.mp4"
    cuts = write_synthetic_video(path, SCENES_S, 24, vfr=True)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times = [float(f.pts * s.time_base) for f in c.decode(s)]
    steps = np.round(np.diff(times) * 24).astype(int)
    assert set(steps.tolist()) == {1, 2}  # every 3rd frame dropped: 1/24 and 2/24 s
    assert all(any(abs(t - c) < 1e-9 for t in times) for c in cuts)
    info = probe_video(path)
    assert info.fps == pytest.approx(16.0, abs=0.3)  # average, not nominal, rate


def test_scene_colours_alternate_brightness_and_avoid_red():
    import colorsys

    cols = scene_colours(12, seed=5)
    values = [max(c) / 255 for c in cols]
    for a, b in itertools.pairwise(values):
        assert abs(a - b) > 0.3
    for r, g, b in cols:
        h, _, _ = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        assert 40 / 360 <= h <= 305 / 360


# --- probe ---------------------------------------------------------------------------------------


def test_probe_synthetic(synthetic):
    path, _ = synthetic
    info = probe_video(path)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height) == (320, 180)
    assert info.fps == 25.0
    n = math.ceil(sum(SCENES_S) * 25)  # frames start at k/25 for every k/25 < 5.5 s
    assert info.n_frames == n
    assert info.duration_s == pytest.approx(n / 25)
    assert info.start_offset_s == 0.0


def test_probe_real_clips(assets):
    tv = probe_video(_pysd(assets, "testvideo.mp4"))
    assert (tv.width, tv.height, tv.n_frames) == (1280, 720, 720)
    assert tv.fps == pytest.approx(29.97, abs=1e-3)
    assert tv.duration_s == pytest.approx(720700 / 30000)  # the stream header says so
    vfr = probe_video(_pysd(assets, "goldeneye-vfr-drop3.mp4"))
    assert vfr.n_frames == 160
    assert vfr.duration_s == pytest.approx(239239 / 24000)
    assert vfr.fps == pytest.approx(160 / vfr.duration_s)


def test_probe_delayed_start(assets):
    """The 1.075 s edit-list start is reported, and the timeline starts at the first frame."""
    info = probe_video(_pysd(assets, "delayed_start.mp4"))
    assert info.start_offset_s == pytest.approx(1.075)
    assert info.duration_s == pytest.approx(0.96)
    assert info.n_frames == 24


def _expect_error(path: Path, text: str) -> None:
    with pytest.raises(VideoError) as err:
        probe_video(path)
    msg = str(err.value)
    assert msg.startswith(f"{path.name}: "), msg
    assert text in msg, msg
    assert "\n" not in msg


def test_probe_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.mp4", "file not found")


def test_probe_dangling_symlink(tmp_path):
    link = tmp_path / "link.mp4"
    os.symlink(tmp_path / "gone.mp4", link)
    _expect_error(link, "dangling symlink")


def test_probe_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    _expect_error(tmp_path / "empty.mp4", "empty file (0 bytes)")


def test_probe_text_file_named_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video\n" * 100)
    _expect_error(tmp_path / "notes.mp4", "not a media file")


def test_probe_folder(tmp_path):
    (tmp_path / "dir.mp4").mkdir()
    _expect_error(tmp_path / "dir.mp4", "is a folder")


def test_probe_truncated_mp4_index_at_end(assets, tmp_path):
    """First 30% of a real MP4 whose moov (index) is at the end: unreadable."""
    data = _pysd(assets, "testvideo.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.3)])
    _expect_error(tmp_path / "cut.mp4", "truncated or corrupt MP4/MOV")


def test_probe_truncated_faststart_mp4(synthetic, tmp_path):
    """Index at the front (faststart), data cut off: opens, but the frames stop early."""
    src, _ = synthetic
    fast = tmp_path / "fast.mp4"
    with (
        av.open(str(src)) as inp,
        av.open(str(fast), "w", options={"movflags": "faststart"}) as out,
    ):
        ost = out.add_stream_from_template(inp.streams.video[0])
        for pkt in inp.demux(inp.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = ost
                out.mux(pkt)
    assert probe_video(fast).n_frames == math.ceil(sum(SCENES_S) * 25)
    data = fast.read_bytes()
    assert data[4:8] == b"ftyp"
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.3)])
    _expect_error(tmp_path / "cut.mp4", "truncated file (video data ends at")


def test_probe_audio_only(tmp_path):
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    with pytest.raises(VideoError, match=r"^clip\.mp4: no video stream \(audio only\)$"):
        probe_video(path)


def test_probe_one_frame_video(tmp_path):
    path = tmp_path / "one.mp4"
    write_synthetic_video(path, [0.04], 25)
    _expect_error(path, "only 1 frame, too short to ground")
    path2 = tmp_path / "two.mp4"
    write_synthetic_video(path2, [0.08], 25)
    assert probe_video(path2).n_frames == 2


def test_odd_resolution_and_unicode_name(tmp_path):
    path = tmp_path / "odd vidéo clip.mp4"
    write_synthetic_video(path, [1.0, 1.0], 25, size=(97, 61))
    info = probe_video(path)
    assert (info.width, info.height) == (97, 61)
    full, small = read_frames_at(path, [0.5, 1.5]), read_frames_at(path, [0.5], max_side=40)
    assert full[0].shape == (61, 97, 3) and full[1].shape == (61, 97, 3)
    assert small[0].shape == (25, 40, 3)


# --- frames ----------------------------------------------------------------------------------------


def test_sample_times():
    assert sample_times(0.0, 10.0, 4) == [1.25, 3.75, 6.25, 8.75]
    assert sample_times(2.0, 3.0, 1) == [2.5]
    with pytest.raises(ValueError):
        sample_times(0.0, 1.0, 0)


def test_read_frames_scene_colours(synthetic):
    path, cuts = synthetic
    bounds = [0.0, *cuts, sum(SCENES_S)]
    mids = [(a + b) / 2 for a, b in itertools.pairwise(bounds)]
    frames = read_frames_at(path, mids)
    for frame, colour in zip(frames, scene_colours(len(SCENES_S), seed=3), strict=True):
        assert frame.dtype == np.uint8 and frame.shape == (180, 320, 3)
        median = np.median(frame.reshape(-1, 3), axis=0)
        assert np.abs(median - np.array(colour)).max() <= 10, (median, colour)


def test_read_frames_at_cut_boundaries(synthetic):
    """At a cut time the new scene shows; just before it, the previous one."""
    path, cuts = synthetic
    times = []
    for c in cuts:
        times += [c - 0.001, c]
    frames = read_frames_at(path, times)
    colours = np.array(scene_colours(len(SCENES_S), seed=3))
    for i, frame in enumerate(frames):
        median = np.median(frame.reshape(-1, 3), axis=0)
        scene = i // 2 + i % 2
        assert np.abs(median - colours[scene]).max() <= 10, (i, median, colours[scene])


def test_read_frames_order_duplicates_and_bounds(synthetic):
    path, _ = synthetic
    times = [3.0, -5.0, 0.0, 3.0, 99.0, 0.5]
    frames = read_frames_at(path, times)
    assert len(frames) == len(times)
    single = {t: read_frames_at(path, [t])[0] for t in set(times)}
    for t, f in zip(times, frames, strict=True):
        assert np.array_equal(f, single[t])
    assert np.array_equal(frames[1], frames[2])  # before the start -> first frame
    assert read_frames_at(path, []) == []


def test_read_frames_max_side(synthetic):
    path, _ = synthetic
    (f,) = read_frames_at(path, [1.0], max_side=64)
    assert f.shape == (36, 64, 3)
    (g,) = read_frames_at(path, [1.0], max_side=1000)  # never upscaled
    assert g.shape == (180, 320, 3)


def _units_glyph(frame: np.ndarray) -> np.ndarray:
    """Binary crop of the rightmost digit of the "Frame = N" label in counter.mp4."""
    h = frame.shape[0]
    white = frame[int(h * 0.70) : int(h * 0.85)].min(axis=2) > 200
    right = int(np.where(white.any(axis=0))[0].max())
    return white[:, right - 60 : right + 1]


def _label_width(frame: np.ndarray) -> int:
    h = frame.shape[0]
    cols = np.where((frame[int(h * 0.70) : int(h * 0.85)].min(axis=2) > 200).any(axis=0))[0]
    return int(cols.max() - cols.min())


def _glyph_distance(a: np.ndarray, b: np.ndarray) -> float:
    return min(
        float((a ^ np.roll(np.roll(b, dx, 1), dy, 0)).mean())
        for dx in range(-3, 4)
        for dy in range(-3, 4)
    )


def test_counter_frame_accurate(assets):
    """counter.mp4: frame #n (stamped, from 1) has PTS (n-1)/10 s; read_frames_at returns it.

    The stamped number is read back from the pixels: the label is wider from #10 on (absolute
    anchor), and the units digit of every frame matches the glyph of frames #1-#9.
    """
    path = _pysd(assets, "counter.mp4")
    info = probe_video(path)
    assert (info.n_frames, info.fps, info.duration_s) == (30, 10.0, 3.0)
    mid = read_frames_at(path, [k / 10 + 0.05 for k in range(30)])
    starts = read_frames_at(path, [k / 10 for k in range(30)])
    before = read_frames_at(path, [k / 10 - 0.001 for k in range(1, 30)])
    for k in range(30):
        assert np.array_equal(starts[k], mid[k])
    for k in range(1, 30):
        assert np.array_equal(before[k - 1], mid[k - 1])
        assert not np.array_equal(mid[k], mid[k - 1])
    widths = [_label_width(f) for f in mid]
    assert max(widths[:9]) + 10 < min(widths[9:])  # '#9' -> '#10' happens at index 9
    templates = {d: _units_glyph(mid[d - 1]) for d in range(1, 10)}
    for k, frame in enumerate(mid):
        units = (k + 1) % 10
        if units == 0:
            continue
        glyph = _units_glyph(frame)
        best = min(templates, key=lambda d: _glyph_distance(glyph, templates[d]))
        assert best == units, (k + 1, best)


def test_delayed_start_times_from_stream_start(assets):
    """delayed_start.mp4 is fades.mp4's first 24 frames behind a 1.075 s edit-list offset.

    SceneTG times are measured from the stream start, so the same time gives the same picture
    in both files (the first frame is at 0.0, not at 1.075).
    """
    times = [0.0, 0.02, 0.3, 0.5, 0.9, 0.95]
    delayed = read_frames_at(_pysd(assets, "delayed_start.mp4"), times)
    fades = read_frames_at(_pysd(assets, "fades.mp4"), times)
    for a, b in zip(delayed, fades, strict=True):
        assert np.array_equal(a, b)
    shifted = read_frames_at(_pysd(assets, "fades.mp4"), [t + 1.075 for t in times])
    assert not np.array_equal(delayed[2], shifted[2])


# --- rotation (display matrix) ----------------------------------------------------------------


def _write_rotated(path: Path, rotation: int) -> None:
    """64x32 frames with a white top-left corner, written with a display matrix that turns them
    `rotation` degrees counter-clockwise (-90 = a phone's ``rotate=90``, shown turned clockwise)."""
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(rotation)
        for i in range(5):
            img = np.full((32, 64, 3), 40, np.uint8)
            img[:8, :8] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


@pytest.mark.parametrize(
    ("rotation", "shape", "corner"),
    [
        (-90, (64, 32), "top_right"),  # phone rotate=90: turned clockwise
        (90, (64, 32), "bottom_left"),  # turned counter-clockwise
        (180, (32, 64), "bottom_right"),
        (0, (32, 64), "top_left"),
    ],
)
def test_display_matrix_applied(tmp_path, rotation, shape, corner):
    """Frames come out upright (as players show them) and probe reports the displayed size."""
    path = tmp_path / f"rot{rotation}.mp4"
    _write_rotated(path, rotation)
    with av.open(str(path)) as c:  # the fixture really carries the display matrix
        assert next(c.decode(video=0)).rotation % 360 == rotation % 360
    info = probe_video(path)
    assert (info.height, info.width) == shape
    for seek in (True, False):
        (frame,) = read_frames_at(path, [0.25], seek=seek)
        assert frame.shape == (*shape, 3)
        h, w = shape
        corners = {
            "top_left": frame[:4, :4], "top_right": frame[:4, w - 4 :],
            "bottom_left": frame[h - 4 :, :4], "bottom_right": frame[h - 4 :, w - 4 :],
        }
        bright = {k for k, v in corners.items() if v.mean() > 200}
        assert bright == {corner}
    (small,) = read_frames_at(path, [0.25], max_side=32)
    assert small.shape == (shape[0] // 2, shape[1] // 2, 3)
