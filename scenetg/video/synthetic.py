"""Synthetic test videos with known cut times (tests, `make demo`, benchmarks).

Each scene is a flat colour with a faint gradient, a little luma noise and a moving box, so a
scene is not a still image but stays far below ContentDetector's threshold inside a scene.
Adjacent scenes differ in brightness as well as hue, and no scene is red: red sits on the hue
wrap-around, where noise flips hue between ~0 and ~179 and ContentDetector sees a cut on
every frame (DESIGN.md, Known pitfalls).

Frames are built directly as YUV planes (no RGB conversion) and encoded with libx264
``ultrafast`` (MPEG-4 Part 2 when PyAV has no libx264), so a 10-minute 720p video writes in
well under a minute.
"""

from __future__ import annotations

import colorsys
import math
import os
from fractions import Fraction

import av
import numpy as np

_NOISE_VARIANTS = 4
_NOISE_AMPLITUDE = 3
_GRADIENT_AMPLITUDE = 8


def _fraction_fps(fps: float | Fraction) -> Fraction:
    """Exact frame rate: 29.97 -> 30000/1001, 23.976 -> 24000/1001, 25.0 -> 25."""
    if isinstance(fps, Fraction):
        return fps
    if float(fps).is_integer():
        return Fraction(int(fps))
    base = round(fps * 1001 / 1000)
    if abs(base * 1000 / 1001 - fps) < 1e-3:
        return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(10_000)


def scene_colours(n_scenes: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """The RGB base colour of each scene as written by :func:`write_synthetic_video`.

    Hues avoid red (45-300 degrees) and are at least 60 degrees from the previous scene's;
    brightness alternates between dark (V 0.30-0.42) and bright (V 0.78-0.92).
    """
    rng = np.random.default_rng(seed)
    colours: list[tuple[int, int, int]] = []
    prev_hue = None
    bright_first = bool(rng.integers(0, 2))
    for i in range(n_scenes):
        while True:
            hue = float(rng.uniform(45.0, 300.0))
            if prev_hue is None or abs(hue - prev_hue) >= 60.0:
                break
        prev_hue = hue
        bright = (i % 2 == 0) == bright_first
        value = float(rng.uniform(0.78, 0.92) if bright else rng.uniform(0.30, 0.42))
        sat = float(rng.uniform(0.55, 0.85))
        r, g, b = colorsys.hsv_to_rgb(hue / 360.0, sat, value)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def _rgb_to_yuv601(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """BT.601 limited-range Y'CbCr of an 8-bit RGB colour (what decoders assume for SD/untagged)."""
    r, g, b = (c / 255.0 for c in rgb)
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return y, u, v


def _frame_pts(
    scene_durations_s: list[float], fps: Fraction, vfr: bool
) -> tuple[list[int], list[int]]:
    """Presentation indices (in units of 1/fps) of the frames written, and each frame's scene.

    CFR writes every tick ``n`` with ``n / fps < total``. VFR drops every 3rd tick, so frame
    durations alternate 1/fps and 2/fps, like PySceneDetect's goldeneye-vfr-drop3.mp4.
    """
    bounds = [Fraction(0)]
    for d in scene_durations_s:
        bounds.append(bounds[-1] + Fraction(repr(float(d))))
    total = bounds[-1]
    n_ticks = math.ceil(total * fps)
    ticks = [n for n in range(n_ticks) if not (vfr and n % 3 == 2)]
    scene_of: list[int] = []
    s = 0
    for n in ticks:
        t = Fraction(n) / fps
        while s + 1 < len(scene_durations_s) and t >= bounds[s + 1]:
            s += 1
        scene_of.append(s)
    return ticks, scene_of


def write_synthetic_video(
    path: str | os.PathLike,
    scene_durations_s: list[float],
    fps: float | Fraction,
    size: tuple[int, int] = (320, 180),
    vfr: bool = False,
    seed: int = 0,
) -> list[float]:
    """Write an MP4 of scenes lasting `scene_durations_s` and return the exact cut times (s).

    A cut time is the presentation time of the first frame of each scene after the first,
    ``pts * time_base`` of the written file, so a frame-accurate detector finds exactly these.
    `fps` may be fractional (29.97 is written as 30000/1001). `vfr=True` drops every 3rd frame
    (durations alternate 1/fps and 2/fps, timestamps set explicitly). `size` is (width, height);
    odd sizes are written as 4:4:4, since 4:2:0 needs even dimensions.
    """
    if not scene_durations_s or any(d <= 0 for d in scene_durations_s):
        raise ValueError("scene_durations_s must be a non-empty list of positive durations")
    width, height = int(size[0]), int(size[1])
    if width < 2 or height < 2:
        raise ValueError("size must be at least 2x2")
    rate = _fraction_fps(fps)
    ticks, scene_of = _frame_pts(list(scene_durations_s), rate, vfr)
    if not ticks:
        raise ValueError("the scenes are shorter than one frame")

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    even = width % 2 == 0 and height % 2 == 0
    pix_fmt = "yuv420p" if even or codec != "libx264" else "yuv444p"
    if not even and codec != "libx264":
        raise ValueError("odd frame sizes need libx264 (yuv444p)")

    colours = scene_colours(len(scene_durations_s), seed)
    rng = np.random.default_rng(seed + 1)
    gradient = np.linspace(-_GRADIENT_AMPLITUDE, _GRADIENT_AMPLITUDE, width, dtype=np.float32)
    noise = [
        rng.integers(-_NOISE_AMPLITUDE, _NOISE_AMPLITUDE + 1, size=(height, width), dtype=np.int16)
        for _ in range(_NOISE_VARIANTS)
    ]
    box_h = max(1, height // 5)
    box_w = max(1, width // 8)
    box_y = (height - box_h) // 2

    cut_times: list[float] = []
    time_base = 1 / rate
    container = av.open(str(path), mode="w", format="mp4")
    try:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "23", "bframes": "0"}
            # Frame threads, not PyAV's default slice threads: one slice per frame, like most
            # real files, so decoders (and benchmarks) see a typical stream.
            stream.codec_context.thread_type = "FRAME"
        else:
            stream.bit_rate = 2_000_000
        # Per scene: the luma planes (one per noise variant) and the constant chroma values.
        planes: dict[int, tuple[list[np.ndarray], int, int, int]] = {}
        n_u = (width // 2) * (height // 2)
        prev_scene = -1
        for i, (tick, scene) in enumerate(zip(ticks, scene_of, strict=True)):
            if scene not in planes:
                planes.clear()
                y, u, v = _rgb_to_yuv601(colours[scene])
                base = np.clip(y + gradient, 0, 255)[None, :]
                lumas = [np.clip(base + n, 16, 235).astype(np.uint8) for n in noise]
                box_luma = int(np.clip(y - 45 if y > 120 else y + 45, 16, 235))
                planes[scene] = (lumas, round(u), round(v), box_luma)
            lumas, u8, v8, box_luma = planes[scene]
            if scene != prev_scene:
                if prev_scene >= 0:
                    cut_times.append(float(Fraction(tick) / rate))
                scene_start_i = i
                prev_scene = scene
            luma = lumas[i % _NOISE_VARIANTS]
            # The box moves across the frame during the scene (a few pixels per frame).
            x = ((i - scene_start_i) * max(1, width // 96)) % max(1, width - box_w)
            if pix_fmt == "yuv420p":
                buf = np.empty((height * 3 // 2, width), dtype=np.uint8)
                buf[:height] = luma
                buf[box_y : box_y + box_h, x : x + box_w] = box_luma
                chroma = buf[height:].reshape(-1)
                chroma[:n_u] = u8
                chroma[n_u:] = v8
                frame = av.VideoFrame.from_ndarray(buf, format="yuv420p")
            else:
                buf = np.empty((3, height, width), dtype=np.uint8)
                buf[0] = luma
                buf[0, box_y : box_y + box_h, x : x + box_w] = box_luma
                buf[1] = u8
                buf[2] = v8
                frame = av.VideoFrame.from_ndarray(buf, format="yuv444p", channel_last=False)
            frame.pts = tick
            frame.time_base = time_base
            next_tick = (
                ticks[i + 1] if i + 1 < len(ticks) else tick + (2 if vfr and tick % 3 == 1 else 1)
            )
            frame.duration = next_tick - tick
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    return cut_times
