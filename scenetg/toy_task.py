"""The toy grounding task: seeded synthetic videos of flat-colour scenes, queries naming a colour.

Each video lasts D ∈ {24, 32, 40, 48} s (64×36 px, 4 fps) and is cut into 8 equal cells; 4–6
scenes start on cell boundaries, each a colour from a fixed palette of bright, well-separated
colours (no colour twice in a video, adjacent scenes differ in luma by ≥ 40 so the pixels alone
tell them apart: DESIGN.md's pitfall about synthetic videos). A query names one scene's colour
("the green scene"); its answer is the scene's span in whole seconds (cells are D/8 = 3–6 s).
Annotations are Moment-DETR JSONL, so `scenetg train` / `ground` / `eval` read them as they are.

Used by the toy benchmark (benchmarks/toy_grounding: the SFT checkpoint the demo ships) and by
`scenetg demo`'s toy leg, which writes its own train and held-out videos with other seeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenetg.atomic_files import write_bytes_atomic
from scenetg.grounding.prompts import grounding_answer

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "orange": (255, 150, 20),
    "yellow": (250, 245, 60),
    "green": (40, 200, 50),
    "cyan": (60, 230, 235),
    "blue": (30, 70, 240),
    "purple": (150, 40, 210),
    "pink": (255, 130, 210),
}
"""Colour name -> RGB. Hues ~45° apart; lumas spread from ~70 (blue) to ~230 (yellow)."""

DURATIONS_S = (24, 32, 40, 48)
CELLS = 8
SCENES = (4, 6)
FPS = 4
SIZE = (64, 36)
MIN_LUMA_STEP = 40.0
"""Adjacent scenes differ at least this much in BT.601 luma (0-255)."""


def luma(rgb: tuple[int, int, int]) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


@dataclass(frozen=True)
class ToyVideo:
    vid: str
    duration_s: int
    colours: tuple[str, ...]
    bounds_s: tuple[int, ...]
    """Scene boundaries from 0 to D (len(colours) + 1 values, each a multiple of D/8)."""

    def span(self, colour: str) -> tuple[int, int]:
        i = self.colours.index(colour)
        return self.bounds_s[i], self.bounds_s[i + 1]


def cell_layout(rng: np.random.Generator) -> tuple[int, tuple[int, ...]]:
    """A random duration and 4-6 scene boundaries on its cell grid (0 ... D): the part of a layout
    the toy task's variants share (the claim regimes colour it their own way)."""
    duration = int(rng.choice(DURATIONS_S))
    n = int(rng.integers(SCENES[0], SCENES[1] + 1))
    cuts = sorted(rng.choice(np.arange(1, CELLS), size=n - 1, replace=False).tolist())
    cell = duration // CELLS
    return duration, (0, *(c * cell for c in cuts), duration)


def make_video_spec(rng: np.random.Generator, vid: str) -> ToyVideo:
    """One random video layout: duration, scene cuts on cell boundaries, a colour per scene."""
    duration, bounds = cell_layout(rng)
    n = len(bounds) - 1
    names = list(PALETTE)
    while True:  # rejection: unique colours, adjacent lumas far apart
        pick = [names[i] for i in rng.permutation(len(names))[:n]]
        steps = [abs(luma(PALETTE[a]) - luma(PALETTE[b])) for a, b in zip(pick, pick[1:], strict=False)]
        if min(steps) >= MIN_LUMA_STEP:
            return ToyVideo(vid, duration, tuple(pick), bounds)


def answer_text(start_s: float, end_s: float) -> str:
    """The target completion, in the format the grounding prompt asks for, in whole seconds
    (`grounding_answer` with 0 decimals: what `scenetg train --algo sft` teaches with
    ``sft.answer_decimals: 0``)."""
    return grounding_answer(start_s, end_s, 0)


def query_text(colour: str) -> str:
    return f"the {colour} scene"


def write_toy_video(path: Path, spec: ToyVideo,
                    palette: dict[str, tuple[int, int, int]] | None = None) -> None:
    """An H.264 MP4 of flat-colour scenes (written to a temp name, then renamed); `palette` maps
    the spec's colour names to RGB (default `PALETTE`; the claim regimes add filler greys)."""
    palette = PALETTE if palette is None else palette
    import av

    tmp = path.with_name(path.name + ".tmp.mp4")
    container = av.open(str(tmp), mode="w")
    try:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                      rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        if stream.codec_context.name == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18"}
        frame_rgb = np.empty((SIZE[1], SIZE[0], 3), dtype=np.uint8)
        for i in range(spec.duration_s * FPS):
            t = i / FPS
            scene = int(np.searchsorted(spec.bounds_s, t, side="right")) - 1
            frame_rgb[:] = palette[spec.colours[scene]]
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    tmp.replace(path)


@dataclass(frozen=True)
class ToySplit:
    jsonl: Path
    videos: Path
    rows: list[dict]


def split_specs(name: str, n_videos: int, per_video: int, seed: int):
    """The split's videos and queried colours, in order: ``(ToyVideo, [colour, ...])`` per video
    (the layout `make_split` writes; also how the scene lists are recovered for diagnostics)."""
    rng = np.random.default_rng(seed)
    for v in range(n_videos):
        spec = make_video_spec(rng, f"{name}{v:05d}")
        picks = rng.choice(len(spec.colours), size=per_video, replace=False).tolist()
        yield spec, [spec.colours[c] for c in picks]


def make_split(root: Path, name: str, n_videos: int, per_video: int, seed: int) -> ToySplit:
    """`n_videos` videos with `per_video` queries each (distinct colours) under ``root/name``;
    cached: an existing complete split (its JSONL written last) is read back, not rebuilt."""
    return write_split(root, name, lambda: split_specs(name, n_videos, per_video, seed))


def write_missing_videos(videos: Path, specs: Iterable[ToyVideo],
                         palette: dict[str, tuple[int, int, int]] | None = None) -> Path:
    """Each spec's MP4 under `videos` (those already there are kept: the name is the layout's)."""
    videos.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        path = videos / f"{spec.vid}.mp4"
        if not path.is_file():
            write_toy_video(path, spec, palette)
    return videos


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    """`rows` as JSON lines, atomically."""
    write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    return path


def write_split(root: Path, name: str, layouts: Callable[[], Iterable[tuple[ToyVideo, list[str]]]],
                palette: dict[str, tuple[int, int, int]] | None = None) -> ToySplit:
    """A split of `layouts()` (``(video spec, [queried colour, ...])`` per video: videos and
    Moment-DETR JSONL under ``root/name``), cached: an existing JSONL (written last) is read back
    and `layouts` is not called."""
    videos = root / name / "videos"
    jsonl = root / name / f"{name}.jsonl"
    if jsonl.is_file():
        rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        return ToySplit(jsonl, videos, rows)
    pairs = list(layouts())
    write_missing_videos(videos, [spec for spec, _ in pairs], palette)
    rows = []
    for spec, colours in pairs:
        for colour in colours:
            s, e = spec.span(colour)
            rows.append({"qid": f"{spec.vid}_{colour}", "vid": spec.vid,
                         "duration": float(spec.duration_s), "query": query_text(colour),
                         "relevant_windows": [[float(s), float(e)]]})
    write_jsonl(jsonl, rows)
    return ToySplit(jsonl, videos, rows)
