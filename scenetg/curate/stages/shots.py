"""Shot detection: PySceneDetect's detectors fed with frames PyAV decodes at reduced size.

We use PySceneDetect's own ``ContentDetector`` / ``AdaptiveDetector`` unchanged and only replace
its video reading: a worker thread decodes with PyAV (frame+slice threading), swscale shrinks
each frame to ``process_width`` in the decoder's pixel format and converts the small frame to
the BGR the detectors expect (never a full-size BGR copy), and every frame is handed over with
its PTS-based ``FrameTimecode``, as ``scenedetect.backends.pyav.VideoStreamAv`` does, so
variable frame rate is timed correctly.

Each shot also gets an appearance embedding (the mean 16x9 RGB thumbnail of its frames,
centred and L2-normalised) that scene assembly uses to stitch near-identical adjacent shots.
The video is streamed: memory is bounded by the detector's look-behind, not the video length.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from importlib import metadata
from pathlib import Path

import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from scenetg.config import ShotsConfig
from scenetg.errors import ScenetgError, VideoError
from scenetg.video.frames import decoded_frames
from scenetg.video.probe import VideoInfo, open_video, probe_video


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def check_opencv_install() -> None:
    """Refuse opencv-python-headless beside opencv-python, before cv2 is first imported.

    Both wheels unpack into the same ``cv2`` folder, so with both installed the files of
    whichever came last win one by one and cv2 fails later in ways that never name the cause.
    """
    if _installed("opencv-python") and _installed("opencv-python-headless"):
        raise ScenetgError(
            "opencv-python-headless is installed beside opencv-python (both own the cv2 module, "
            "which breaks it); fix: pip uninstall -y opencv-python-headless opencv-python && "
            "pip install opencv-python"
        )


check_opencv_install()

import cv2  # noqa: E402  (after the check above; scenedetect imports cv2 too)
from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, SceneDetector  # noqa: E402
from scenedetect.common import Timecode, framerate_to_fraction  # noqa: E402

THUMB_SIZE = (16, 9)
"""(width, height) of the per-frame thumbnail averaged into a shot's embedding."""

EMBEDDING_DIM = THUMB_SIZE[0] * THUMB_SIZE[1] * 3

SCALE_FLAGS = Interpolation.FAST_BILINEAR
"""Stage 1 (shrink, in the decoder's own pixel format): 2-tap bilinear, like the cv2.resize
INTER_LINEAR PySceneDetect applies to its frames."""

COLOUR_FLAGS = Interpolation.POINT | Interpolation.FULL_CHR_H_INT
"""Stage 2 (YUV -> BGR at detection size). Full chroma interpolation matters: swscale's fast
YUV->BGR path tints near-black pixels, their hue turns to noise and ContentDetector reports
cuts inside fades to black (testvideo.mp4: 9 cuts instead of 3). With it the frame scores match
PySceneDetect's own pipeline (full-size decode + cv2.resize) and so do the cuts. Shrinking
first and converting the small frame costs ~40% less than converting while shrinking."""

DECODE_QUEUE_FRAMES = 16
"""Decoded, shrunk frames buffered between the decode thread and the detector (bounded)."""

DECODE_BATCH_FRAMES = 4
"""Frames handed from the decode thread to the detector per queue transfer."""


@dataclass
class Shot:
    """One shot on the stream-start timeline: ``[start_s, end_s)``, frames ``[start_frame, end_frame)``.

    `embedding` is the shot's appearance vector (float32, length EMBEDDING_DIM, unit L2 norm;
    all zeros only for a perfectly uniform mid-grey shot): the mean of its frames' 16x9 RGB
    thumbnails, centred by ``(x - 128) / 128``.
    """

    start_s: float
    end_s: float
    start_frame: int
    end_frame: int
    embedding: np.ndarray


class _FastScoreMixin:
    """ContentDetector's frame score, computed with one absdiff + per-channel sum over the HSV
    image instead of three int32 NumPy round trips: the same integers summed, so the same
    float scores (tested for equality against upstream), at about a third of the cost.

    Only the default path is replaced (edges weight 0, no stats manager); any other
    configuration runs upstream's own `_calculate_frame_score`.
    """

    _last_hsv: np.ndarray | None = None

    def _calculate_frame_score(self, timecode, frame_img: np.ndarray) -> float:
        if self._weights.delta_edges > 0.0 or self.stats_manager is not None:
            return super()._calculate_frame_score(timecode, frame_img)
        hsv = cv2.cvtColor(frame_img, cv2.COLOR_BGR2HSV)
        last, self._last_hsv = self._last_hsv, hsv
        if last is None:
            return 0.0
        n_pixels = float(hsv.shape[0] * hsv.shape[1])
        sums = cv2.sumElems(cv2.absdiff(hsv, last))
        components = (sums[0] / n_pixels, sums[1] / n_pixels, sums[2] / n_pixels, 0.0)
        return sum(c * w for c, w in zip(components, self._weights, strict=True)) / sum(
            abs(w) for w in self._weights
        )


class FastContentDetector(_FastScoreMixin, ContentDetector):
    """PySceneDetect's ContentDetector with the faster, identical frame score."""


class FastAdaptiveDetector(_FastScoreMixin, AdaptiveDetector):
    """PySceneDetect's AdaptiveDetector with the faster, identical frame score."""


def make_detector(cfg: ShotsConfig) -> SceneDetector:
    """The PySceneDetect detector the config asks for.

    ``min_shot_s`` is passed to ``min_scene_len`` as float seconds, which scenedetect >= 0.7
    measures on the frames' PTS, so the minimum length is right for variable frame rate too.
    """
    if cfg.detector == "adaptive":
        return FastAdaptiveDetector(
            adaptive_threshold=cfg.adaptive_threshold, min_scene_len=float(cfg.min_shot_s)
        )
    return FastContentDetector(threshold=cfg.threshold, min_scene_len=float(cfg.min_shot_s))


def process_size(width: int, height: int, process_width: int) -> tuple[int, int]:
    """Detection frame size: `process_width` wide (never upscaled), aspect ratio kept."""
    w = min(process_width, width)
    return w, max(1, round(height * w / width))


@dataclass
class _Segment:
    start: Fraction  # seconds, exact
    start_frame: int
    thumb_sum: np.ndarray  # sum over the segment's frames of their (unrounded) thumbnails
    n: int


FRAME_SUM_FOLD = 257
"""Frames a uint16 running sum holds before it could overflow (257 * 255 = 65535)."""


class _FrameSum:
    """The running sum of the open segment's detection frames, folded into thumbnail space.

    Adding a whole frame to a uint16 sum is one vectorised add (~7 us at 256x144) where an
    INTER_AREA thumbnail per frame cost ~25 us; area resizing is linear, so the thumbnail of
    the sum is the sum of the (unrounded) thumbnails. The sum is folded into a 16x9 float64
    thumbnail sum every FRAME_SUM_FOLD frames and when the segment closes.
    """

    def __init__(self) -> None:
        self._sum: np.ndarray | None = None
        self._n = 0

    def add(self, frame: np.ndarray, into: _Segment) -> None:
        if self._sum is None:
            self._sum = np.zeros(frame.shape, np.uint16)
        np.add(self._sum, frame, out=self._sum)
        self._n += 1
        into.n += 1
        if self._n == FRAME_SUM_FOLD:
            self.fold(into)

    def fold(self, into: _Segment) -> None:
        if self._sum is None or self._n == 0:
            return
        thumb = cv2.resize(self._sum.astype(np.float32), THUMB_SIZE, interpolation=cv2.INTER_AREA)
        into.thumb_sum += thumb.reshape(-1)
        self._sum.fill(0)
        self._n = 0


class _ShotBuilder:
    """Turns the detector's cuts and per-frame images into shot segments, online.

    Detectors may report a cut some frames after they saw it (``event_buffer_length``), so the
    last `lag` frames stay in a small ring until no later cut can precede them; older frames
    are summed into the open segment. Memory: the ring (references to the detection-size
    frames the detector already had) plus one frame-size sum and a small sum per shot.
    """

    def __init__(self, lag_frames: int):
        self._lag = max(lag_frames, 1) + 2
        self._ring: deque[tuple[int, int, np.ndarray]] = deque()  # (index, pts, frame)
        self._sum = _FrameSum()
        self.segments: list[_Segment] = [_Segment(Fraction(0), 0, np.zeros(EMBEDDING_DIM), 0)]

    def add_frame(self, index: int, pts: int, frame: np.ndarray) -> None:
        self._ring.append((index, pts, frame))
        if len(self._ring) > self._lag:
            self._absorb_oldest()

    def _absorb_oldest(self) -> None:
        self._sum.add(self._ring.popleft()[2], self.segments[-1])

    def add_cut(self, t: Fraction, time_base: Fraction, fallback_frame: int) -> None:
        """A cut at `t` seconds; frames before it close the open segment."""
        if t <= self.segments[-1].start:
            return  # duplicate or out-of-order cut: nothing new
        ticks = t / time_base
        while self._ring and self._ring[0][1] < ticks:
            self._absorb_oldest()
        if self._ring and self._ring[0][1] == ticks:
            start_frame = self._ring[0][0]
        else:
            start_frame = max(fallback_frame, self.segments[-1].start_frame + 1)
        self._sum.fold(self.segments[-1])
        self.segments.append(_Segment(t, start_frame, np.zeros(EMBEDDING_DIM), 0))

    def finish(self) -> list[_Segment]:
        while self._ring:
            self._absorb_oldest()
        self._sum.fold(self.segments[-1])
        return self.segments


def _cut_time(tc: FrameTimecode) -> Fraction:
    """A cut's exact time in seconds (PTS x time base for PTS-backed timecodes)."""
    return Fraction(tc.pts) * Fraction(tc.time_base)


@dataclass
class _Detection:
    segments: list[_Segment]
    n_frames: int


def _detection_frames(
    container, stream, name: str, out_w: int, out_h: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(pts relative to stream start, BGR out_w x out_h frame)``."""
    shrink, to_bgr = VideoReformatter(), VideoReformatter()
    cc = stream.codec_context
    scale = (out_w, out_h) != (cc.width, cc.height)
    for frame, rel in decoded_frames(container, stream, name):
        if scale:
            frame = shrink.reformat(frame, out_w, out_h, interpolation=SCALE_FLAGS, threads=1)
        bgr = to_bgr.reformat(
            frame, format="bgr24", interpolation=COLOUR_FLAGS, threads=1
        ).to_ndarray()
        yield rel, bgr


_END = object()


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _in_background(items: Iterator, depth: int, batch: int = 1) -> Iterator:
    """Iterate `items` in a worker thread, up to `depth` items ahead of the consumer.

    PyAV decodes and swscale converts without holding the GIL, so decoding the next frames
    overlaps with the detector working on this one. Items cross the queue in lists of up to
    `batch` (one lock round trip and thread wake-up per list, not per item). Exceptions reach
    the consumer; when the consumer stops early the worker stops too.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth // batch))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        chunk: list = []
        try:
            for item in items:
                chunk.append(item)
                if len(chunk) == batch:
                    if not put(chunk):
                        return
                    chunk = []
            if chunk and not put(chunk):
                return
            put(_END)
        except BaseException as exc:  # handed to the consumer, re-raised there
            if not chunk or put(chunk):
                put(_Raised(exc))

    worker = threading.Thread(target=work, name="scenetg-decode", daemon=True)
    worker.start()
    try:
        while True:
            chunk = q.get()
            if chunk is _END:
                return
            if isinstance(chunk, _Raised):
                raise chunk.exc
            yield from chunk
    finally:
        stop.set()
        worker.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _detect_with(
    path: str | os.PathLike, detector: SceneDetector, process_width: int
) -> _Detection:
    """Decode `path` once and run `detector` on every frame; the engine behind detect_shots.

    A worker thread decodes (PyAV frame+slice threading), shrinks each frame to
    `process_width` in its own pixel format and converts the small frame to BGR, the colour
    order PySceneDetect's detectors are written for. The detector gets each frame with a
    ``FrameTimecode`` built from its PTS, the way scenedetect's PyAV backend builds it.
    """
    name = Path(path).name
    container, stream = open_video(path)
    try:
        stream.thread_type = "AUTO"
        # More frame threads than cores keeps the decoder's pipeline full while the detector
        # thread competes for the CPU (measured: +10% on 2 cores; docs/BENCHMARKS.md).
        stream.codec_context.thread_count = max(4, (os.cpu_count() or 1) + 1)
        cc = stream.codec_context
        out_w, out_h = process_size(cc.width, cc.height, process_width)
        tb = Fraction(stream.time_base.numerator, stream.time_base.denominator)
        rate_src = stream.guessed_rate or stream.average_rate
        rate = framerate_to_fraction(rate_src) if rate_src else Fraction(25)
        builder = _ShotBuilder(detector.event_buffer_length)
        index = -1
        tc: FrameTimecode | None = None
        frames = _in_background(
            _detection_frames(container, stream, name, out_w, out_h), DECODE_QUEUE_FRAMES,
            DECODE_BATCH_FRAMES,
        )
        try:
            for rel, bgr in frames:
                index += 1
                builder.add_frame(index, rel, bgr)
                tc = FrameTimecode(Timecode(pts=rel, time_base=tb), fps=rate)
                for cut in detector.process_frame(tc, bgr):
                    builder.add_cut(_cut_time(cut), tb, cut.frame_num)
        finally:
            frames.close()  # stops and joins the decode thread before the container closes
        if tc is None:
            raise VideoError(f"{name}: no decodable video frames (truncated or corrupt file)")
        for cut in detector.post_process(tc):
            builder.add_cut(_cut_time(cut), tb, cut.frame_num)
        return _Detection(builder.finish(), index + 1)
    finally:
        container.close()


def _embedding(thumb_sum: np.ndarray, n: int) -> np.ndarray:
    """Mean thumbnail (BGR-interleaved sums) -> centred, L2-normalised RGB vector, float32."""
    if n == 0:
        return np.zeros(EMBEDDING_DIM, dtype=np.float32)
    mean = (thumb_sum / n).reshape(THUMB_SIZE[1], THUMB_SIZE[0], 3)[:, :, ::-1]
    vec = ((mean - 128.0) / 128.0).reshape(-1)
    norm = float(np.linalg.norm(vec))
    return (vec / norm if norm > 0 else vec).astype(np.float32)


def detect_shots(
    path: str | os.PathLike, cfg: ShotsConfig, info: VideoInfo | None = None
) -> list[Shot]:
    """Shots of the video at `path`, contiguous over ``[0, info.duration_s)``.

    One streaming decode pass at ``cfg.process_width``; the detector is ContentDetector or
    AdaptiveDetector per `cfg`. A video without cuts is one shot. Raises VideoError for an
    unusable video (probing it first when `info` is not given).
    """
    cfg.validate()
    if info is None:
        info = probe_video(path)
    det = _detect_with(path, make_detector(cfg), cfg.process_width)
    duration = Fraction(info.duration_s)
    segments = [det.segments[0]]
    for seg in det.segments[1:]:
        if seg.start < duration:
            segments.append(seg)
        else:  # a cut at/after the declared end (metadata shorter than the stream)
            segments[-1].thumb_sum += seg.thumb_sum
            segments[-1].n += seg.n
    shots: list[Shot] = []
    for i, seg in enumerate(segments):
        last = i + 1 == len(segments)
        shots.append(
            Shot(
                start_s=float(seg.start),
                end_s=info.duration_s if last else float(segments[i + 1].start),
                start_frame=seg.start_frame,
                end_frame=det.n_frames if last else segments[i + 1].start_frame,
                embedding=_embedding(seg.thumb_sum, seg.n),
            )
        )
    return shots
