"""Video metadata with PyAV, and the checks that turn a bad input into one actionable line.

Every failure is a :class:`~scenetg.errors.VideoError` whose message reads
``"<file name>: <reason>"`` (e.g. ``"clip.mp4: no video stream (audio only)"``), so the build can
record it per video and go on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error

from scenetg.errors import VideoError

_TAIL_WINDOW_S = 2.0
"""The truncation check demuxes (does not decode) the last this-many seconds of the stream."""


@dataclass(frozen=True)
class VideoInfo:
    """What the build needs to know about one video, on the stream-start timeline.

    ``duration_s`` is the video stream's own length (audio may run longer); ``fps`` the average
    frame rate (for variable-frame-rate video an average only: use timestamps, not
    ``index / fps``); ``n_frames`` the stream's frame count from the container index when it
    has one (MP4/MOV), otherwise ``round(duration_s * fps)``, an estimate (MKV, WebM, AVI);
    ``start_offset_s`` the stream's start time in the file (edit lists, delayed starts), which
    every SceneTG time is measured from. ``width``/``height`` are the displayed size: a stream
    with a quarter-turn display matrix (phone videos) has them swapped from the coded size, as
    its frames come out upright (`scenetg.video.frames`).
    """

    path: str
    duration_s: float
    fps: float
    width: int
    height: int
    n_frames: int
    start_offset_s: float


def _fail(path: Path, reason: str) -> VideoError:
    return VideoError(f"{path.name}: {reason}")


def _looks_like_isobmff(path: Path) -> bool:
    """True when the file starts like an MP4/MOV (an ``ftyp``/``moov``/``mdat``/... box)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def check_readable_file(path: str | os.PathLike) -> Path:
    """Fail with a clear reason when `path` is missing, a dangling symlink, a folder or empty."""
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise _fail(p, f"dangling symlink (its target {os.readlink(p)} does not exist)")
        raise _fail(p, "file not found")
    if p.is_dir():
        raise _fail(p, "is a folder, not a video file")
    if p.stat().st_size == 0:
        raise _fail(p, "empty file (0 bytes)")
    if not os.access(p, os.R_OK):
        raise _fail(p, "permission denied")
    return p


def open_video(
    path: str | os.PathLike,
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open `path` with PyAV and return ``(container, first video stream)``, or raise VideoError.

    The caller closes the container.
    """
    p = check_readable_file(path)
    try:
        container = av.open(str(p), mode="r")
    except PermissionError as exc:
        raise _fail(p, "permission denied") from exc
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        if _looks_like_isobmff(p):
            raise _fail(
                p,
                "truncated or corrupt MP4/MOV (its index cannot be read; re-download or re-encode it)",
            ) from exc
        raise _fail(p, "not a media file (format not recognised)") from exc
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        if "audio" in kinds:
            raise _fail(p, "no video stream (audio only)")
        raise _fail(p, f"no video stream ({', '.join(kinds) or 'no streams'})")
    return container, container.streams.video[0]


def stream_start_pts(stream: av.video.stream.VideoStream) -> int:
    """The stream's start time in its own time base (0 when the container does not say)."""
    return stream.start_time if stream.start_time is not None else 0


def frame_rate_fraction(stream: av.video.stream.VideoStream) -> Fraction | None:
    """The stream's average frame rate as a Fraction, falling back to the guessed/base rate."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return Fraction(rate.numerator, rate.denominator)
    return None


def _tail_end_s(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, from_s: float
) -> float | None:
    """End time (s, stream-relative) of the last video packet, demuxing from about `from_s` on.

    Demuxing reads packets without decoding them, so this costs a seek and a few reads.
    Returns None when no packet with a timestamp could be read there.
    """
    tb = stream.time_base
    start = stream_start_pts(stream)
    try:
        container.seek(start + int(from_s / tb), stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError:
        return None
    end: Fraction | None = None
    try:
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            pkt_end = Fraction(packet.pts - start + max(packet.duration or 0, 0)) * tb
            if end is None or pkt_end > end:
                end = pkt_end
    except av.error.FFmpegError:
        pass
    return None if end is None else float(end)


def _count_decodable_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, limit: int
) -> tuple[int, int]:
    """Decode from the start (of a freshly opened container) until `limit` frames came out.

    Returns the count and the first frame's display rotation (degrees counter-clockwise, from
    its display matrix; 0 without one).
    """
    n, rotation = 0, 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            continue
        if frames and n == 0:
            rotation = int(round(frames[0].rotation or 0))
        n += len(frames)
        if n >= limit:
            break
    return n, rotation


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's metadata and check it can be used; raise VideoError with a reason if not.

    Checks, in order: the file exists (and is not a dangling symlink), is not empty, is a media
    file PyAV can open, has a video stream, decodes at least 2 frames from the start, and (when
    the stream declares its length) its packets reach that length, so a cut-off download is
    reported rather than silently yielding a short video. A one-frame video is rejected: it
    has no cut to detect and no interval to ground a query in ("only 1 frame, too short to
    ground"). Odd resolutions are fine.
    """
    container, stream = open_video(path)
    p = Path(path)
    try:
        cc = stream.codec_context
        width, height = int(cc.width or stream.width or 0), int(cc.height or stream.height or 0)
        if width <= 0 or height <= 0:
            raise _fail(p, f"video stream has no picture size (corrupt {cc.name} stream)")
        tb = stream.time_base
        start_pts = stream_start_pts(stream)
        rate = frame_rate_fraction(stream)

        declared_s: float | None = None
        if stream.duration and stream.duration > 0 and tb:
            declared_s = float(stream.duration * tb)

        n_decoded, rotation = _count_decodable_frames(container, stream, limit=2)
        if round(rotation / 90) % 2:  # a quarter turn: the displayed picture is portrait
            width, height = height, width
        if n_decoded == 0:
            raise _fail(p, "no decodable video frames (truncated or corrupt file)")
        if n_decoded == 1:
            raise _fail(p, "only 1 frame, too short to ground")

        if declared_s is not None:
            tail_end = _tail_end_s(container, stream, max(0.0, declared_s - _TAIL_WINDOW_S))
            min_frame_s = float(1 / rate) if rate else 0.0
            tolerance_s = max(1.0, 2 * min_frame_s)
            if tail_end is None or tail_end < declared_s - tolerance_s:
                got = "no data" if tail_end is None else f"video data ends at {tail_end:.2f} s"
                raise _fail(p, f"truncated file ({got} of {declared_s:.2f} s)")
            duration_s = declared_s
        else:
            # No per-stream length (MKV, WebM, raw streams): measure the video's own end, since
            # the container's duration may be the audio's.
            hint = float(container.duration / av.time_base) if container.duration else 0.0
            tail_end = _tail_end_s(container, stream, max(0.0, hint - _TAIL_WINDOW_S))
            if tail_end is None and hint > 0:
                tail_end = _tail_end_s(container, stream, 0.0)
            if tail_end is None:
                raise _fail(p, "cannot determine the video's duration (no timestamps)")
            duration_s = tail_end

        if rate is None:
            rate = (
                Fraction(stream.frames, 1) / Fraction(duration_s) if stream.frames else Fraction(25)
            )
        n_frames = (
            int(stream.frames) if stream.frames and stream.frames > 0 else round(duration_s * rate)
        )
        if n_frames < 2:
            raise _fail(p, f"only {n_frames} frame(s) by its header, too short to ground")
        return VideoInfo(
            path=str(path),
            duration_s=duration_s,
            fps=float(rate),
            width=width,
            height=height,
            n_frames=n_frames,
            start_offset_s=float(start_pts * tb) if tb else 0.0,
        )
    finally:
        container.close()
