"""Frame sampling: the frames shown at given times, by streaming or by seeking (`seek.py`).

Times follow the project convention (docs/ARCHITECTURE.md): seconds from the stream's start,
``(pts - stream.start_time) * time_base``, so the first presented frame is at 0.0 whatever the
file's edit list or start offset.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from scenetg.errors import VideoError
from scenetg.video.probe import open_video, stream_start_pts
from scenetg.video.seek import DECODE_STATS, MIN_SKIP_S, plan_sampling

MAX_CONSECUTIVE_DECODE_FAILURES = 8
"""Isolated corrupt packets are skipped; this many in a row means the file is unusable."""

SCALE_FLAGS = Interpolation.AREA | Interpolation.FULL_CHR_H_INT
"""swscale flags for the returned frames: area averaging when shrinking (no aliasing in what the
captioner sees) and full chroma interpolation (the fast path tints near-black pixels)."""

_TIME_EPS_S = 1e-6
"""Slack when comparing a requested time with a frame time (absorbs float rounding only)."""


def sample_times(start_s: float, end_s: float, k: int) -> list[float]:
    """Centres of `k` equal parts of ``[start_s, end_s)``: the usual way to pick k keyframes."""
    if k < 1:
        raise ValueError("k must be >= 1")
    if end_s < start_s:
        raise ValueError("end_s must be >= start_s")
    step = (end_s - start_s) / k
    return [start_s + (i + 0.5) * step for i in range(k)]


def jpeg_data_url(frame: np.ndarray, quality: int = 90) -> str:
    """An RGB uint8 frame as a `data:image/jpeg;base64,...` URL (chat APIs, HTML reports)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("RGB").save(
        buf, format="JPEG", quality=int(quality)
    )
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled so the longer side is at most `max_side` (never upscaled)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    if max_side < 1:
        raise ValueError("max_side must be >= 1")
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def decoded_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    name: str,
) -> Iterator[tuple[av.VideoFrame, int]]:
    """Decode `stream` in presentation order, yielding ``(frame, pts relative to stream start)``.

    A packet that fails to decode is skipped (as PySceneDetect's PyAV backend does); after
    MAX_CONSECUTIVE_DECODE_FAILURES in a row the file is reported as corrupt. A frame without a
    pts gets the previous one plus the nominal frame duration.
    """
    start = stream_start_pts(stream)
    rate = stream.average_rate or stream.guessed_rate
    tick = int(1 / (rate * stream.time_base)) if rate and stream.time_base else 1
    failures = 0
    prev_rel: int | None = None
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            failures += 1
            if failures >= MAX_CONSECUTIVE_DECODE_FAILURES:
                at = 0.0 if prev_rel is None else float(prev_rel * stream.time_base)
                raise VideoError(
                    f"{name}: corrupt video data (decoding fails after {at:.2f} s)"
                ) from exc
            continue
        failures = 0
        for frame in frames:
            if frame.pts is not None:
                rel = frame.pts - start
            elif prev_rel is not None:
                rel = prev_rel + tick
            else:
                rel = 0
            # Frames before the stream start (rare: edit-list preroll) are clamped to 0.
            rel = max(rel, 0 if prev_rel is None else prev_rel)
            prev_rel = rel
            yield frame, rel


def upright(img: np.ndarray, rotation: int | float | None) -> np.ndarray:
    """`img` turned as the stream's display matrix says (`rotation`: degrees counter-clockwise,
    PyAV's ``VideoFrame.rotation``), so a phone video's frames come out upright."""
    quarter = round((rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(img, k=quarter)) if quarter else img


def _seek_and_decode(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    name: str,
    keyframe_s: float,
    first_time_s: float,
    back_s: float,
) -> Iterator[tuple[av.VideoFrame, int]] | None:
    """Seek to the keyframe at `keyframe_s` and decode from there, re-seeking earlier (by
    `back_s`, doubling) while the seek lands after `first_time_s` (inexact seeks in some
    containers). None when the landing cannot be trusted: the caller then streams from the start.
    """
    start = stream_start_pts(stream)
    tb = Fraction(stream.time_base.numerator, stream.time_base.denominator)
    # Rounded, not floored, to the stream's ticks: the keyframe's own pts must be the target, or
    # a backward seek lands on the keyframe before it.
    at = keyframe_s
    while True:
        DECODE_STATS.seeks += 1
        try:
            container.seek(
                start + round(Fraction(max(at, 0.0)) / tb), stream=stream, backward=True,
                any_frame=False,
            )
        except av.error.FFmpegError:
            return None  # not seekable (e.g. a pipe): stream instead
        frames = decoded_frames(container, stream, name)
        first = next(frames, None)
        if first is None or first[0].pts is None:
            return None  # nothing after the seek, or no timestamps to place the frames by
        if float(first[1] * tb) <= first_time_s + _TIME_EPS_S:
            return itertools.chain([first], frames)
        if at <= 0:
            return None
        at, back_s = at - back_s, back_s * 2


def iter_frames_at(
    path: str | os.PathLike,
    times_s: Sequence[float],
    max_side: int | None = None,
    seek: bool = True,
) -> Iterator[np.ndarray]:
    """Yield the frame shown at each time of `times_s` (ascending); see `iter_frames_sized`."""
    for (frame,) in iter_frames_sized(path, times_s, (max_side,), seek=seek):
        yield frame


def iter_frames_sized(
    path: str | os.PathLike,
    times_s: Sequence[float],
    max_sides: Sequence[int | None],
    seek: bool = True,
) -> Iterator[tuple[np.ndarray, ...]]:
    """Yield the frame shown at each time of `times_s` (ascending), once per size of `max_sides`
    (a tuple per time), from one decode: two stages needing the same frames at two sizes share it.

    "Shown at t" is the last frame whose time is <= t (the first frame for t before it; the
    last frame for t past the end). Times far apart (more than a GOP) are reached by seeking to
    the keyframe before them and decoding forward; dense times by streaming (`plan_sampling`;
    ``seek=False`` always streams). Decoding stops after the last requested time, and only the
    previous frame is held, so callers can stream long videos scene by scene. Frames are RGB
    uint8 HxWx3, upright (display matrix applied), scaled by swscale while converting so the
    longer side is <= its `max_sides` entry (each size converted from the decoded frame itself,
    so a frame is byte-identical whichever other sizes are asked for).
    """
    times = [float(t) for t in times_s]
    if any(b < a for a, b in zip(times, times[1:], strict=False)):
        raise ValueError("times_s must be ascending")
    if not times:
        return
    plan = plan_sampling(path, times) if seek and times[-1] > MIN_SKIP_S else None
    steps = plan.seek_to if plan else [None] * len(times)
    back_s = max(plan.keyframe_spacing_s or 1.0, 1.0) if plan else 1.0
    container, stream = open_video(path)
    DECODE_STATS.passes += 1
    name = Path(path).name
    stream.thread_type = "AUTO"
    cw, ch = stream.codec_context.width, stream.codec_context.height
    outs = [(scaled_size(cw, ch, side), VideoReformatter()) for side in max_sides]
    tb = Fraction(stream.time_base.numerator, stream.time_base.denominator)

    def convert(frame: av.VideoFrame) -> tuple[np.ndarray, ...]:
        return tuple(
            upright(
                fmt.reformat(
                    frame, width=w, height=h, format="rgb24", interpolation=SCALE_FLAGS
                ).to_ndarray(),
                frame.rotation,
            )
            for (w, h), fmt in outs
        )

    pos = 0  # next request to serve
    prev: av.VideoFrame | None = None
    prev_img: tuple[np.ndarray, ...] | None = None
    frames: Iterator[tuple[av.VideoFrame, int]] | None = None
    try:
        while pos < len(times):
            # One run: from a seek (or the start) up to the next time that is sought to.
            if steps[pos] is not None:
                frames = _seek_and_decode(container, stream, name, steps[pos], times[pos], back_s)
                if frames is None:  # untrustworthy landing: stream everything from the start
                    container.close()
                    container, stream = open_video(path)
                    stream.thread_type = "AUTO"
                    DECODE_STATS.passes += 1
                    steps = [None] * len(times)
                prev, prev_img = None, None
            if frames is None:
                frames = decoded_frames(container, stream, name)
            run_end = next((j for j in range(pos + 1, len(times)) if steps[j] is not None), len(times))
            for frame, rel in frames:
                DECODE_STATS.frames += 1
                t = float(rel * tb)
                # Requests before this frame's time are served by the previous frame (or by this
                # one when it is the first frame).
                while pos < run_end and times[pos] + _TIME_EPS_S < t:
                    if prev is None:
                        prev = frame
                    if prev_img is None:
                        prev_img = convert(prev)
                    yield prev_img
                    pos += 1
                if pos == run_end:
                    break
                prev, prev_img = frame, None
            else:
                # The stream ended: every remaining time is past its last frame.
                if prev is None:
                    raise VideoError(f"{name}: no decodable video frames (truncated or corrupt file)")
                last_img = prev_img if prev_img is not None else convert(prev)
                while pos < len(times):
                    yield last_img
                    pos += 1
    finally:
        container.close()


def read_frames_at(
    path: str | os.PathLike,
    times_s: Sequence[float],
    max_side: int | None = None,
    seek: bool = True,
) -> list[np.ndarray]:
    """The frames shown at `times_s` (any order), as a list in the given order.

    See `iter_frames_at`; requests that land on the same frame share one array.
    """
    order = sorted(range(len(times_s)), key=lambda i: float(times_s[i]))
    frames = iter_frames_at(path, [times_s[i] for i in order], max_side, seek=seek)
    results: list[np.ndarray] = [None] * len(times_s)  # type: ignore[list-item]
    for i, frame in zip(order, frames, strict=True):
        results[i] = frame
    return results
