"""When sampling frames far apart, where to seek instead of decoding everything in between.

A sparse request (128 frames of a one-hour video) decoded by streaming pays for every frame up to
the last requested time. Seeking to the keyframe before a requested time and decoding forward
pays for at most one GOP per time. Which of the two is cheaper depends on the gap between
requested times and the stream's keyframe spacing, both *measured*: the spacing from the keyframe
flags of the first packets (demuxed, not decoded), and the keyframe a time would seek to from a
seek probe on a separate container (an index lookup plus one packet read). A time is sought to
only when that keyframe lies ahead of where streaming would already be; otherwise streaming
decodes no more than the seek would.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.error

from scenetg.video.probe import open_video, stream_start_pts

MIN_SKIP_S = 0.5
"""A seek must skip at least this much video: a seek flushes the decoder (and restarts its frame
threads), which costs a few frames' worth of decoding."""

SEEK_GAP_GOPS = 0.6
"""Seek for a time when the gap since the previous one exceeds this many keyframe spacings.
Measured (docs/BENCHMARKS.md, crossover table: 720p, 2 s GOP, 2 cores): seeking wherever a
keyframe lies ahead beat streaming 1.7x at a 0.67-GOP gap and lost 1.3x at a 0.5-GOP gap (each
seek restarts the decoder's frame threads); the break-even lies between the two."""

SPACING_PACKETS = 3000
"""Demux at most this many packets from the start to measure keyframe spacing (100 s at 30 fps)."""

SPACING_KEYFRAMES = 6
"""...or stop after this many keyframes (5 intervals; the median is used)."""


@dataclass
class DecodeStats:
    """Work done by frame sampling: decode passes (containers opened), seeks, frames decoded."""

    passes: int = 0
    seeks: int = 0
    frames: int = 0

    def reset(self) -> None:
        self.passes = self.seeks = self.frames = 0


DECODE_STATS = DecodeStats()
"""Process-wide totals of `scenetg.video.frames` sampling (benchmarks and tests read them)."""


@dataclass(frozen=True)
class SamplingPlan:
    """How `iter_frames_at` serves ascending times: ``seek_to[i]`` is the keyframe time (s, from
    the stream start) to seek to before serving ``times[i]``, or None to keep streaming."""

    keyframe_spacing_s: float | None
    seek_to: list[float | None] = field(default_factory=list)

    @property
    def n_seeks(self) -> int:
        return sum(s is not None for s in self.seek_to)


class KeyframeIndex:
    """Keyframe times of a video stream, read through a container of its own (seek probes)."""

    def __init__(self, path: str | os.PathLike):
        self.container, self.stream = open_video(path)
        self.start = stream_start_pts(self.stream)
        tb = self.stream.time_base
        self.tb = Fraction(tb.numerator, tb.denominator) if tb else Fraction(1, 90000)

    def close(self) -> None:
        self.container.close()

    def spacing_s(self) -> float | None:
        """Median time between keyframes among the first packets; None when the stream seems to
        have a single keyframe (seeking cannot help) or no keyframe flags at all."""
        keys: list[int] = []
        last_pts: int | None = None
        n = 0
        try:
            for n, packet in enumerate(self.container.demux(self.stream)):
                if packet.pts is None:
                    continue
                last_pts = packet.pts
                if packet.is_keyframe:
                    keys.append(packet.pts)
                    if len(keys) >= SPACING_KEYFRAMES:
                        break
                if n >= SPACING_PACKETS:
                    break
        except av.error.FFmpegError:
            pass
        keys = sorted(set(keys))
        if len(keys) >= 2:
            return float(statistics.median(b - a for a, b in zip(keys, keys[1:], strict=False)) * self.tb)
        if len(keys) == 1 and last_pts is not None and n >= SPACING_PACKETS:
            # One keyframe in SPACING_PACKETS packets: the GOP is at least that long.
            return float((last_pts - keys[0]) * self.tb)
        return None

    def keyframe_before(self, t: float) -> float | None:
        """Time (s) of the keyframe a backward seek to `t` lands on, or None if it cannot tell."""
        try:
            self.container.seek(
                self.start + round(Fraction(t) / self.tb), stream=self.stream, backward=True,
                any_frame=False,
            )
            for packet in self.container.demux(self.stream):
                if packet.pts is None:
                    continue
                return float((packet.pts - self.start) * self.tb) if packet.is_keyframe else None
        except av.error.FFmpegError:
            return None
        return None


def plan_sampling(
    path: str | os.PathLike, times_s: list[float], index: KeyframeIndex | None = None
) -> SamplingPlan:
    """Decide, for ascending `times_s`, which times to seek to (see the module docstring)."""
    own = index is None
    idx = index or KeyframeIndex(path)
    try:
        spacing = idx.spacing_s()
        seek_to: list[float | None] = []
        pos = 0.0  # how far streaming would have decoded when the next time is served
        for t in times_s:
            target = None
            if spacing is not None and t - pos > max(SEEK_GAP_GOPS * spacing, MIN_SKIP_S):
                k = idx.keyframe_before(t)
                if k is not None and k > pos + MIN_SKIP_S:
                    target = k
            seek_to.append(target)
            pos = max(pos, t)
        return SamplingPlan(spacing, seek_to)
    finally:
        if own:
            idx.close()
