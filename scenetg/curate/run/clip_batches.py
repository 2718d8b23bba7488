"""The local engine's CLIP filter: keyframe images and query texts encoded in batches that span
videos.

A video whose captions are done hands over its captions and its filter frames (kept by the
captions pass, or read from the keyframe store or decoded in the prefetch thread:
`caption_batches._produce`), already through CLIP's preprocess there once the model is loaded,
so the main thread only runs the model. Its images join calls of `clip.batch_size` images and its texts
calls of as many texts, across videos (`cross_video.VideoBatches`, the captions' mechanism), so
short clips with 3-5 scenes fill a batch. When the last of a video's embeddings is in, its
figures are computed and its filter stage file written as `Build.filter` writes it: resume stays
per video. The figures equal the per-video path's (Ray workers) because `ClipEncoder` runs every
call at one fixed shape, so a row's embedding does not depend on its batch-mates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scenetg.curate.run import keyframes, video_stages
from scenetg.curate.run.cross_video import VideoBatches
from scenetg.curate.run.workdir import VideoJob
from scenetg.errors import ScenetgError, VideoError


@dataclass
class FilterFrames:
    """A video's filter frames as the prefetch thread hands them over."""

    count: int
    side: int
    """The side they were decoded at (`keyframes.filter_frame_side`)."""
    frames: list[np.ndarray] | None
    pixels: Any = None
    """`ClipEncoder.pixels` of the frames (then `frames` is dropped), when CLIP was loaded: uint8,
    so a buffered video holds a quarter of the float32 preprocess (scaled at encode time)."""

    @classmethod
    def of(cls, frames: list[np.ndarray], side: int, clip: Any, video: dict | None) -> FilterFrames:
        """Preprocessed for `clip` at once when they were decoded at its side for `video`."""
        if clip is not None and keyframes.filter_frame_side(getattr(clip, "image_size", 224), video) == side:
            return cls(len(frames), side, None, clip.pixels(frames))
        return cls(len(frames), side, frames)


@dataclass
class _Pending:
    """One video's filter while its embeddings are computed."""

    job: VideoJob
    captions: list[str]
    fp: str
    counts: list[int]
    """Frames per scene, in order."""
    images: list[np.ndarray | None]
    texts: list[np.ndarray | None]

    def complete(self) -> bool:
        return all(e is not None for e in self.images) and all(e is not None for e in self.texts)


@dataclass
class _Item:
    job: VideoJob
    video: _Pending
    index: int
    payload: Any
    """A preprocessed image (3, S, S; `ClipEncoder.pixels`, uint8) or a text."""


class CrossVideoFilter:
    """Queues videos' filters and encodes their frames and texts in cross-video batches."""

    def __init__(
        self,
        b: Any,
        failed: set[str],
        on_error: Callable[[VideoJob, Exception], None],
        on_done: Callable[[VideoJob], None],
    ):
        self.b = b
        self.failed = failed
        self.on_error, self.on_done = on_error, on_done
        self.pending: dict[str, _Pending] = {}
        self.images = VideoBatches(self._encode_images, on_error, failed)
        self.texts = VideoBatches(self._encode_texts, on_error, failed)
        self.calls = {"images": 0, "texts": 0}

    def add(
        self,
        job: VideoJob,
        shots: dict[str, Any],
        captions: dict[str, Any],
        frames: FilterFrames | None,
        resume: bool,
    ) -> None:
        """Queue one video's filter; `frames`: its filter frames in time order, or None to
        decode them here. A current stored result finishes the video at once."""
        b, scenes = self.b, shots["scenes"]
        fp = b.stage_fp(job, "filter", scenes, captions["captions"])
        if resume and b.work.read_stage(job.key, "filter", fp) is not None:
            self.on_done(job)
            return
        clip = b.models.clip
        self.images.size = self.texts.size = max(1, int(clip.batch_size))
        k = b.cfg.filter.frames_per_scene
        side = keyframes.filter_frame_side(getattr(clip, "image_size", 224), shots.get("video"))
        if frames is not None and (frames.side != side or frames.count != k * len(scenes)):
            frames = None
        if frames is None or frames.pixels is None:
            stored = frames.frames if frames is not None else None
            video_frames, counts = b._timed(
                "filter", lambda: video_stages.filter_frames(job.path, scenes, k, side, stored)
            )
            pixels = b._timed("filter", lambda: clip.pixels(video_frames))
        else:
            pixels, counts = frames.pixels, [k] * len(scenes)
        texts = video_stages.clip_texts(captions["captions"])
        p = _Pending(job, captions["captions"], fp, counts, [None] * len(pixels), [None] * len(texts))
        self.pending[job.video_id] = p
        for i in range(len(pixels)):
            self.images.add(_Item(job, p, i, pixels[i]))
        for i, text in enumerate(texts):
            self.texts.add(_Item(job, p, i, text))
        self._finish_complete()

    def flush(self) -> None:
        """Encode what is queued (the end of the run) and finish every complete video."""
        self.images.flush()
        self.texts.flush()
        self._finish_complete()

    def drop(self, video_id: str) -> None:
        self.pending.pop(video_id, None)

    def _encode_images(self, batch: list[_Item]) -> None:
        import torch

        clip = self.b.models.clip
        pixels = torch.stack([it.payload for it in batch])
        emb = self.b._timed("filter", lambda: clip.encode_pixels(pixels))
        self.calls["images"] += 1
        for it, row in zip(batch, emb, strict=True):
            it.video.images[it.index] = row

    def _encode_texts(self, batch: list[_Item]) -> None:
        clip = self.b.models.clip
        emb = self.b._timed("filter", lambda: clip.encode_text([it.payload for it in batch]))
        self.calls["texts"] += 1
        for it, row in zip(batch, emb, strict=True):
            it.video.texts[it.index] = row

    def _finish_complete(self) -> None:
        """Write the figures of each queued video whose embeddings are all in (arrival order)."""
        for vid, p in list(self.pending.items()):
            if vid in self.failed:
                self.pending.pop(vid)
            elif p.complete():
                self.pending.pop(vid)
                self._finish(p)

    def _finish(self, p: _Pending) -> None:
        b, job = self.b, p.job
        try:
            dim = b.models.clip.dim
            image_emb = np.stack(p.images) if p.images else np.zeros((0, dim), np.float32)
            text_emb = np.stack(p.texts) if p.texts else np.zeros((0, dim), np.float32)
            figures = video_stages.filter_figures(image_emb, p.counts, text_emb, p.captions, b.cfg)
            b.store_filter(job, p.fp, {"clip_model": b.models.clip.name, "figures": figures})
        except (ScenetgError, KeyboardInterrupt) as exc:
            if not isinstance(exc, VideoError):
                raise
            self.on_error(job, exc)
            return
        except Exception as exc:  # one broken video must not stop the build
            self.on_error(job, exc)
            return
        self.on_done(job)
