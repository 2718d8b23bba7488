"""Per-video stage functions: shots+scenes, captions, ambiguity filter.

Each takes one video and the models it needs, and returns JSON-able results; engines decide where
they run, `pipeline.py` decides what is cached. Each decodes the video at most once, and the
filter not at all when the captions pass kept its frames (`keyframes.py`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.config import BuildConfig
from scenetg.curate.run.keyframes import (
    caption_groups_keeping_filter_frames,
    filter_frame_side,
    filter_times,
)
from scenetg.curate.run.workdir import fingerprint, one_line, symlink_loop
from scenetg.curate.stages.ambiguity import filter_queries, scene_embedding
from scenetg.curate.stages.scenes import assemble_scenes
from scenetg.errors import VideoError
from scenetg.models.batch_size import CPU_BATCH_SIZE, is_auto

ProgressFn = Callable[[int], None]


def shots_fingerprint(cfg: BuildConfig) -> str:
    return fingerprint(
        {"shots": dataclasses.asdict(cfg.shots), "scenes": dataclasses.asdict(cfg.scenes),
         "k": cfg.captions.frames_per_scene}
    )


def captions_fingerprint(cfg: BuildConfig) -> str:
    c = cfg.captions
    return fingerprint(
        {"shots": shots_fingerprint(cfg), "backend": c.backend, "model": c.model, "prompt": c.prompt,
         "max_new_tokens": c.max_new_tokens, "k": c.frames_per_scene, "side": c.max_frame_side}
    )


FILTER_FRAMES_VERSION = 2
"""Bump when the filter's frames change for the same config, so `--resume` recomputes figures made
from the old ones (2: decoded with the shorter side at CLIP's input size, not the longer)."""


def filter_fingerprint(cfg: BuildConfig) -> str:
    f = cfg.filter
    return fingerprint(
        {"captions": captions_fingerprint(cfg), "clip": f.clip_model, "margin": f.min_margin,
         "k": f.frames_per_scene, "frames": FILTER_FRAMES_VERSION}
    )


def run_shots(path: Path, cfg: BuildConfig) -> dict[str, Any]:
    """Probe, detect shots and assemble scenes for one video (raises VideoError on bad input)."""
    from scenetg.curate.stages.shots import detect_shots  # deferred: pulls av, cv2, scenedetect
    from scenetg.video.probe import probe_video  # deferred: pulls av

    if symlink_loop(path):  # else it would read as a dangling symlink
        raise VideoError(f"{one_line(Path(path).name)}: symlink loop (its target leads back to itself)")
    info = probe_video(path)
    shots = detect_shots(path, cfg.shots, info)
    scenes = assemble_scenes(shots, info.duration_s, cfg.scenes, cfg.captions.frames_per_scene)
    video = {k: getattr(info, k) for k in ("duration_s", "fps", "width", "height", "n_frames")}
    return {
        "video": video,
        "n_shots": len(shots),
        "scenes": [dataclasses.asdict(s) for s in scenes],
    }


def _scene_frame_groups(
    path: Path, times_per_scene: list[list[float]], max_side: int | None
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yield (scene position, its frames) in time order from one decode pass of the video."""
    from scenetg.video.frames import iter_frames_at  # deferred: pulls av

    flat = [t for times in times_per_scene for t in times]
    owner = [i for i, times in enumerate(times_per_scene) for _ in times]
    current: list[np.ndarray] = []
    for n, frame in enumerate(iter_frames_at(path, flat, max_side=max_side)):
        current.append(frame)
        if n + 1 == len(flat) or owner[n + 1] != owner[n]:
            yield owner[n], current
            current = []


class CaptionCache:
    """Append-only per-video caption cache (`captions.jsonl`): a killed run never re-captions.

    Each line is keyed by the caption config and the scene's bounds, so a changed model, prompt
    or scene re-captions only what changed. A torn last line (crash mid-write) is ignored.
    """

    def __init__(self, path: Path, config_fp: str):
        self.path = Path(path)
        self.config_fp = config_fp
        self.entries: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.entries[row["key"]] = row["caption"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def key(self, scene: dict[str, Any]) -> str:
        return fingerprint([self.config_fp, scene["start_s"], scene["end_s"], scene["keyframe_times"]])

    def get(self, scene: dict[str, Any]) -> str | None:
        return self.entries.get(self.key(scene))

    def put_many(self, scenes: list[dict[str, Any]], captions: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for scene, caption in zip(scenes, captions, strict=True):
            k = self.key(scene)
            self.entries[k] = caption
            lines.append(json.dumps({"key": k, "scene_index": scene["scene_index"], "caption": caption}))
        with open(self.path, "a", encoding="utf-8") as fh:
            # A torn previous line must not swallow this one.
            if fh.tell() > 0:
                fh.write("\n")
            fh.write("\n".join(lines))
            fh.flush()
            os.fsync(fh.fileno())


def caption_batch_size(captioner: Any, scene: Any, cfg: BuildConfig) -> int:
    """Scenes per caption call: the captioner's choice for this scene's size (``auto``), else
    the configured number (4 for ``auto`` with a backend that cannot tell)."""
    choose = getattr(captioner, "batch_size", None)
    if callable(choose):
        return max(1, int(choose(scene)))

    value = cfg.captions.batch_size
    return CPU_BATCH_SIZE if is_auto(value) else max(1, int(value))


def caption_items(
    path: Path,
    scenes: list[dict[str, Any]],
    cfg: BuildConfig,
    cache: CaptionCache,
    keep_filter_frames: tuple[list[float], int, list[np.ndarray]] | None = None,
) -> Iterator[tuple[dict[str, Any], Any]]:
    """(scene, SceneFrames) for each scene not in `cache`, from one decode pass of the video.

    `keep_filter_frames` = (times, side, out): the same decode pass also appends the filter's
    frames at those times and size to `out` (`keyframes.py`: one keyframe pass per video).
    """
    from scenetg.curate.stages.captions import SceneFrames  # deferred: pulls av

    todo = [s for s in scenes if cache.get(s) is None]
    if not todo:
        return
    caption_times = [s["keyframe_times"] for s in todo]
    if keep_filter_frames is not None:

        groups = caption_groups_keeping_filter_frames(
            path, caption_times, cfg.captions.max_frame_side, *keep_filter_frames
        )
    else:
        groups = _scene_frame_groups(path, caption_times, cfg.captions.max_frame_side)
    for pos, frames in groups:
        scene = todo[pos]
        yield scene, SceneFrames(
            frames=frames, times_s=list(scene["keyframe_times"]),
            duration_s=scene["end_s"] - scene["start_s"])


def run_captions(
    path: Path,
    scenes: list[dict[str, Any]],
    captioner: Any,
    cfg: BuildConfig,
    cache: CaptionCache,
    on_scenes_done: ProgressFn | None = None,
    keep_filter_frames: tuple[list[float], int, list[np.ndarray]] | None = None,
) -> list[str]:
    """One caption per scene of one video; cached scenes are not decoded or captioned again.

    The per-video path (Ray workers, `process_video`); the local engine batches across videos
    (`caption_batches.py`). `keep_filter_frames` as in `caption_items`.
    """
    n_cached = sum(cache.get(s) is not None for s in scenes)
    if on_scenes_done and n_cached:
        on_scenes_done(n_cached)
    batch: list[tuple[dict[str, Any], Any]] = []
    size = 0

    def flush() -> None:
        if not batch:
            return
        texts = captioner.caption_scenes([sf for _, sf in batch])
        cache.put_many([s for s, _ in batch], texts)
        if on_scenes_done:
            on_scenes_done(len(batch))
        batch.clear()

    for scene, frames in caption_items(path, scenes, cfg, cache, keep_filter_frames):
        size = size or caption_batch_size(captioner, frames, cfg)
        batch.append((scene, frames))
        if len(batch) >= size:
            flush()
    flush()
    return [cache.get(s) or "" for s in scenes]


def filter_frames(
    path: Path, scenes: list[dict[str, Any]], k: int, side: int,
    stored_frames: list[np.ndarray] | None = None,
) -> tuple[list[np.ndarray], list[int]]:
    """The filter's frames of one video in time order, and how many belong to each scene.

    `stored_frames`: those the captions pass kept (`keyframes.py`); without them the video is
    decoded here, with its longer side at `side` (`keyframes.filter_frame_side`).
    """

    if stored_frames is not None:
        groups = ((i, stored_frames[i * k : (i + 1) * k]) for i in range(len(scenes)))
    else:
        groups = _scene_frame_groups(path, filter_times(scenes, k), side)
    counts = [0] * len(scenes)
    frames: list[np.ndarray] = []
    for pos, group in groups:
        counts[pos] = len(group)
        frames.extend(group)
    return frames, counts


def clip_texts(captions: list[str]) -> list[str]:
    """The texts CLIP encodes for `captions` (an empty caption is encoded as one space)."""
    return [c if c.strip() else " " for c in captions]


def filter_figures(
    image_emb: np.ndarray, counts: list[int], text_emb: np.ndarray, captions: list[str],
    cfg: BuildConfig,
) -> list[dict[str, Any]]:
    """One video's figures from its frame embeddings (`counts` per scene, in order) and its
    caption embeddings: the same whichever calls computed them (`ClipEncoder` fixed shapes)."""

    offsets = np.cumsum([0, *counts])
    scene_embs = [scene_embedding(image_emb[offsets[i] : offsets[i + 1]]) for i in range(len(counts))]
    return filter_queries(
        text_emb, np.stack(scene_embs), cfg.filter.min_margin, empty=[not c.strip() for c in captions]
    )


def run_filter(
    path: Path,
    scenes: list[dict[str, Any]],
    captions: list[str],
    clip: Any,
    cfg: BuildConfig,
    stored_frames: list[np.ndarray] | None = None,
    video: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """CLIP ambiguity filter for one video's queries: one figure set per scene's query.

    The per-video path (Ray workers, `process_video`); the local engine batches CLIP calls across
    videos (`clip_batches.py`). `stored_frames` as in `filter_frames`; `video`: the shots
    stage's video record (its dimensions set the decode size, `keyframes.filter_frame_side`).
    """

    side = filter_frame_side(getattr(clip, "image_size", 224), video)
    frames, counts = filter_frames(path, scenes, cfg.filter.frames_per_scene, side, stored_frames)
    # One encode over all of the video's frames, in `clip.batch_size` chunks.
    image_emb = clip.encode_images(frames)
    text_emb = clip.encode_text(clip_texts(captions))
    return filter_figures(image_emb, counts, text_emb, captions, cfg)
