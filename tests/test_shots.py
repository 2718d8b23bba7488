"""scenetg.curate.stages.shots: cut times on synthetic videos with known cuts and on PySceneDetect's clips."""

from __future__ import annotations

import itertools
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from scenedetect import AdaptiveDetector, ContentDetector, ThresholdDetector, detect

from scenetg.config import ShotsConfig
from scenetg.curate.stages.shots import EMBEDDING_DIM, Shot, _detect_with, detect_shots
from scenetg.errors import VideoError
from scenetg.video.probe import probe_video
from scenetg.video.synthetic import scene_colours, write_synthetic_video

SCENES_S = [1.0, 2.3, 0.7, 1.5, 3.0, 0.6]


def _pysd(assets: Path, name: str) -> Path:
    return assets / "videos" / "pyscenedetect" / name


def _cut_frames(path: Path, detector, lo: int = 0, hi: int | None = None) -> list[int]:
    """Frame indices where our decode path + `detector` puts a cut, within (lo, hi)."""
    det = _detect_with(path, detector, 256)
    frames = [seg.start_frame for seg in det.segments[1:]]
    return [f for f in frames if f > lo and (hi is None or f < hi)]


def _check_contiguous(shots: list[Shot], duration_s: float) -> None:
    assert shots[0].start_s == 0.0 and shots[0].start_frame == 0
    assert shots[-1].end_s == duration_s
    for a, b in itertools.pairwise(shots):
        assert a.end_s == b.start_s and a.end_frame == b.start_frame
    for s in shots:
        assert s.start_s < s.end_s and s.start_frame < s.end_frame


# --- synthetic videos with known cuts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fps", "vfr"),
    [(24, False), (25, False), (29.97, False), (24, True), (29.97, True)],
    ids=["24", "25", "29.97", "vfr24", "vfr29.97"],
)
@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_exact_cut_times_on_synthetic(tmp_path, fps, vfr, detector):
    path = tmp_path / "v.mp4"
    cuts = write_synthetic_video(path, SCENES_S, fps, vfr=vfr, seed=11)
    info = probe_video(path)
    shots = detect_shots(path, ShotsConfig(detector=detector), info)
    got = [s.start_s for s in shots[1:]]
    assert len(got) == len(cuts)
    assert np.allclose(got, cuts, rtol=0, atol=1e-6), (got, cuts)
    _check_contiguous(shots, info.duration_s)
    assert shots[-1].end_frame == info.n_frames
    if not vfr:
        rate = 30000 / 1001 if fps == 29.97 else fps
        assert [s.start_frame for s in shots[1:]] == [round(c * rate) for c in cuts]


def test_embeddings_describe_each_shot(tmp_path):
    path = tmp_path / "v.mp4"
    write_synthetic_video(path, SCENES_S, 25, seed=4)
    shots = detect_shots(path, ShotsConfig())
    assert len(shots) == len(SCENES_S)
    for shot, colour in zip(shots, scene_colours(len(SCENES_S), seed=4), strict=True):
        emb = shot.embedding
        assert emb.dtype == np.float32 and emb.shape == (EMBEDDING_DIM,)
        assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
        flat = (np.tile(np.array(colour, dtype=np.float64), 16 * 9) - 128) / 128
        assert float(emb @ (flat / np.linalg.norm(flat))) > 0.99  # RGB order, the scene's colour
    for a, b in itertools.pairwise(shots):
        assert float(a.embedding @ b.embedding) < 0.9  # different scenes are not near-identical


def test_video_without_cuts_is_one_shot(tmp_path):
    path = tmp_path / "still.mp4"
    write_synthetic_video(path, [3.0], 25)
    shots = detect_shots(path, ShotsConfig())
    assert [(s.start_s, s.end_s, s.start_frame, s.end_frame) for s in shots] == [(0.0, 3.0, 0, 75)]


def test_min_shot_length_in_seconds(tmp_path):
    """A 0.3 s scene is shorter than min_shot_s=0.5: its cut is merged away."""
    path = tmp_path / "v.mp4"
    cuts = write_synthetic_video(path, [1.0, 0.3, 1.5], 25)
    assert len(detect_shots(path, ShotsConfig(min_shot_s=0.5))) < 3
    got = [s.start_s for s in detect_shots(path, ShotsConfig(min_shot_s=0.2))[1:]]
    assert np.allclose(got, cuts, atol=1e-6)


def test_bad_video_raises_video_error(tmp_path):
    (tmp_path / "notes.mp4").write_text("hello\n" * 50)
    with pytest.raises(VideoError, match=r"^notes\.mp4: not a media file"):
        detect_shots(tmp_path / "notes.mp4", ShotsConfig())


def test_corrupt_data_raises_video_error(tmp_path):
    """Garbage over the middle of the stream: the decode thread's error reaches the caller."""
    path = tmp_path / "corrupt.mp4"
    write_synthetic_video(path, [2.0, 2.0, 2.0], 25)
    data = bytearray(path.read_bytes())
    start, length = int(len(data) * 0.3), int(len(data) * 0.2)
    data[start : start + length] = (
        np.random.default_rng(0).integers(0, 256, length, np.uint8).tobytes()
    )
    path.write_bytes(bytes(data))
    with pytest.raises(
        VideoError, match=r"^corrupt\.mp4: corrupt video data \(decoding fails after"
    ):
        detect_shots(path, ShotsConfig())


def test_detector_error_stops_decode_thread(tmp_path):
    path = tmp_path / "v.mp4"
    write_synthetic_video(path, [2.0, 2.0], 25)

    class Boom(ContentDetector):
        def process_frame(self, timecode, frame_img):
            if timecode.seconds > 1.0:
                raise RuntimeError("boom")
            return super().process_frame(timecode, frame_img)

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="boom"):
        _detect_with(path, Boom(), 256)
    assert threading.active_count() == before


def test_memory_does_not_grow_with_length(tmp_path):
    """Python-side allocations while detecting: a 4x longer video needs no more memory."""
    peaks = []
    for seconds in (8.0, 32.0):
        path = tmp_path / f"v{seconds}.mp4"
        write_synthetic_video(path, [seconds / 4] * 4, 25, size=(320, 180))
        info = probe_video(path)
        tracemalloc.start()
        detect_shots(path, ShotsConfig(), info)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.25 + 256 * 1024, peaks


# --- PySceneDetect's own clips: reproduce what upstream asserts --------------------------------


def test_goldeneye_vfr_drop3(assets):
    """Upstream tests/test_vfr.py: ContentDetector() scenes 0.000-3.754 s and 3.754-8.759 s."""
    path = _pysd(assets, "goldeneye-vfr-drop3.mp4")
    det = _detect_with(path, ContentDetector(), 256)
    starts = [float(s.start) for s in det.segments]
    assert [round(t, 3) for t in starts[:3]] == [0.0, 3.754, 8.759]
    assert starts[1] == 90090 / 24000 and starts[2] == 210210 / 24000  # exact frame PTS
    assert det.n_frames == 160
    # Our pipeline agrees with scenedetect's own PyAV pipeline, and detect_shots with defaults.
    own = detect(str(path), ContentDetector(), backend="pyav")
    assert [a.seconds for a, _ in own][1:] == starts[1:]
    shots = detect_shots(path, ShotsConfig())
    assert [s.start_s for s in shots] == starts
    assert shots[-1].end_s == pytest.approx(239239 / 24000)


@pytest.mark.parametrize("detector_type", [ContentDetector, AdaptiveDetector])
def test_testvideo_fast_cuts(assets, detector_type):
    """Upstream tests/test_scene_manager.py: frames 150-450 of testvideo.mp4 start scenes at
    [150, 180, 394] with ContentDetector and AdaptiveDetector (cuts at 180 and 394)."""
    path = _pysd(assets, "testvideo.mp4")
    assert _cut_frames(path, detector_type(), 150, 450) == [180, 394]


@pytest.mark.parametrize(
    ("detector_type", "expected"),
    [(ContentDetector, [30, 180, 394]), (AdaptiveDetector, [30, 180, 394, 691])],
)
def test_testvideo_matches_scenedetect(assets, detector_type, expected):
    """Whole video: the same cuts as scenedetect.detect() with its default (OpenCV) backend."""
    path = _pysd(assets, "testvideo.mp4")
    own = [a.frame_num for a, _ in detect(str(path), detector_type())][1:]
    assert own == expected
    assert _cut_frames(path, detector_type()) == own


def test_testvideo_detect_shots(assets):
    path = _pysd(assets, "testvideo.mp4")
    shots = detect_shots(path, ShotsConfig(min_shot_s=15 * 1001 / 30000))
    assert [s.start_frame for s in shots[1:]] == [30, 180, 394]
    assert [s.start_s for s in shots[1:]] == [f * 1001 / 30000 for f in (30, 180, 394)]
    _check_contiguous(shots, probe_video(path).duration_s)


def test_testvideo_threshold(assets):
    """Upstream tests/test_detectors.py: ThresholdDetector() on frames 0-500 -> [0, 15, 198, 376].

    scenedetect 0.7.2 (installed) puts the fade split at round((355 + 398) / 2) = 377 where the
    older upstream code truncated to 376; we match the installed library's own pipeline.
    """
    path = _pysd(assets, "testvideo.mp4")
    own = [a.frame_num for a, _ in detect(str(path), ThresholdDetector(), end_time=500)][1:]
    assert own == [15, 198, 377]
    assert _cut_frames(path, ThresholdDetector(), 0, 500) == own


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: ThresholdDetector(), [84, 167]),
        (
            lambda: ThresholdDetector(
                threshold=11.0, method=ThresholdDetector.Method.FLOOR, add_final_scene=True
            ),
            [84, 167, 245],
        ),
    ],
    ids=["default", "floor11_final"],
)
def test_fades(assets, make, expected):
    """Upstream tests/test_detectors.py: fades.mp4 frames 0-250 -> [0, 84, 167] / [0, 84, 167, 245]."""
    assert _cut_frames(_pysd(assets, "fades.mp4"), make()) == expected


def test_delayed_start_shots_on_stream_timeline(assets):
    """delayed_start.mp4 (1.075 s edit-list start): shots start at 0.0 and end at 0.96 s."""
    path = _pysd(assets, "delayed_start.mp4")
    shots = detect_shots(path, ShotsConfig())
    assert shots[0].start_s == 0.0
    assert shots[-1].end_s == pytest.approx(0.96)
    assert shots[-1].end_frame == 24


@pytest.mark.parametrize("clip", ["testvideo.mp4", "goldeneye-vfr-drop3.mp4", "fades.mp4"])
def test_fast_frame_score_equals_pyscenedetects_own(assets, clip):
    """Our faster ContentDetector score is the same float, frame by frame, as upstream's."""
    import av
    from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode

    from scenetg.curate.stages.shots import FastAdaptiveDetector, FastContentDetector

    pairs = [(ContentDetector(), FastContentDetector()), (AdaptiveDetector(), FastAdaptiveDetector())]
    with av.open(str(assets / "videos" / "pyscenedetect" / clip)) as container:
        for n, frame in enumerate(container.decode(video=0)):
            img = frame.to_ndarray(width=256, height=144, format="bgr24")
            tc = FrameTimecode(n, fps=30.0)
            for upstream, fast in pairs:
                assert fast._calculate_frame_score(tc, img) == upstream._calculate_frame_score(tc, img)


def test_embedding_is_the_mean_of_unrounded_frame_thumbnails(assets):
    """Each shot's embedding is the mean 16x9 INTER_AREA thumbnail of its detection frames
    (summed unrounded, so a frame-size running sum can stand in for per-frame thumbnails),
    including shots longer than the running sum's fold length."""
    import cv2

    from scenetg.curate.stages.shots import (
        FRAME_SUM_FOLD,
        THUMB_SIZE,
        _detection_frames,
        _embedding,
    )
    from scenetg.video.probe import open_video

    path = _pysd(assets, "testvideo.mp4")
    shots = detect_shots(path, ShotsConfig())
    assert max(s.end_frame - s.start_frame for s in shots) > FRAME_SUM_FOLD
    sums = [np.zeros(EMBEDDING_DIM) for _ in shots]
    container, stream = open_video(path)
    with container:
        frames = _detection_frames(container, stream, path.name, 256, 144)
        for index, (_, bgr) in enumerate(frames):
            k = max(i for i, s in enumerate(shots) if s.start_frame <= index)
            thumb = cv2.resize(bgr.astype(np.float32), THUMB_SIZE, interpolation=cv2.INTER_AREA)
            sums[k] += thumb.reshape(-1)
    for shot, total in zip(shots, sums, strict=True):
        want = _embedding(total, shot.end_frame - shot.start_frame)
        assert np.allclose(shot.embedding, want, rtol=0, atol=1e-6)
