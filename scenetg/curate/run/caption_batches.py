"""The local engine's video loop: captions and CLIP batched across videos, frames decoded ahead.

A prefetch thread (`scenetg.prefetch`) runs shots and decodes each video's scene keyframes,
handing over one scene at a time, then the video with the filter's frames (kept by the same
decode pass, or read from the keyframe store, or decoded there). The main thread gathers scenes
from consecutive videos into caption batches of `captions.batch_size` (``auto``: sized by the
model, `batch_size.py`), and the finished videos' frames and captions into CLIP calls of
`filter.batch_size` (`clip_batches.py`; both through `cross_video.VideoBatches`), so a corpus of
short clips (3-5 scenes each) still fills a batch, and the GPU never waits for a decode. Resume
is per video as before: each batch's captions go to its videos' `captions.jsonl` caches at once;
a video's captions stage file and kept keyframes are written when its last scene is captioned,
its filter result when its last embedding is in. Captions are the same as the per-video path's
(greedy, left-padded: a scene's caption does not depend on its batch-mates), and so are the
figures (`ClipEncoder` runs every call at one fixed shape).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape

from scenetg.curate.run import keyframes, video_stages
from scenetg.curate.run.clip_batches import CrossVideoFilter, FilterFrames
from scenetg.curate.run.cross_video import VideoBatches
from scenetg.curate.run.workdir import VideoJob, one_line
from scenetg.errors import ScenetgError, VideoError
from scenetg.prefetch import Prefetch

FIRST_CAPACITY = 4
"""Scenes decoded ahead before the batch size is known (it is set from the first scene)."""
BATCHES_AHEAD = 2
"""Decoded scenes kept ready: this many batches (the one being filled and the next)."""


@dataclass
class _Scene:
    job: VideoJob
    cache: video_stages.CaptionCache
    scene: dict[str, Any]
    frames: Any
    """`SceneFrames`."""


@dataclass
class _VideoDecoded:
    """All of a video's scenes were handed over (or it needed no captioning)."""

    job: VideoJob
    shots: dict[str, Any]
    captions: dict[str, Any] | None = None
    """The stored captions stage result when it was current (nothing to caption)."""
    cache: video_stages.CaptionCache | None = None
    request: tuple | None = None
    kept: list = field(default_factory=list)
    filter_frames: FilterFrames | None = None
    """The filter's frames, when the prefetch thread has them (see `_filter_frames`)."""


@dataclass
class _VideoFailed:
    job: VideoJob
    exc: Exception


def _filter_frames(
    b: Any, job: VideoJob, shots: dict[str, Any], request: tuple | None, kept: list
) -> FilterFrames | None:
    """The filter's frames of one video, got in the prefetch thread: those the captions pass
    kept, else the keyframe store's, else decoded here; preprocessed for CLIP here too once it
    is loaded. None when CLIP's input size is not known without loading it (the filter then
    decodes for itself)."""
    if request is None:
        return None
    scenes, video = shots["scenes"], shots.get("video")
    times, side = request
    frames = kept if len(kept) == len(times) else None
    if frames is None:
        frames = keyframes.KeyframeStore(b._keyframes_dir(job)).load(job.path, times, side)
    if frames is None:
        frames, _ = video_stages.filter_frames(job.path, scenes, b.cfg.filter.frames_per_scene, side)
    return FilterFrames.of(frames, side, b.models._clip, video)


def _produce(b: Any, jobs: list[VideoJob], upto: str, resume: bool) -> Iterator[Any]:
    """Runs in the prefetch thread: shots, then each uncaptioned scene's frames, then the
    filter's frames, per video."""
    for job in jobs:
        try:
            shots = b.shots(job, resume)
            if upto == "shots":
                yield _VideoDecoded(job, shots)
                continue
            scenes = shots["scenes"]
            b.reporter.grow("captions", len(scenes))
            fp = b.stage_fp(job, "captions", scenes)
            cached = b.work.read_stage(job.key, "captions", fp) if resume else None
            request = keyframes.filter_request(
                shots, b.cfg.filter.frames_per_scene, b.cfg.filter.clip_model, b.models._clip
            )
            if cached is not None:
                b.reporter.advance("captions", len(cached["captions"]))
                done = _VideoDecoded(job, shots, captions=cached)
                filter_fp = b.stage_fp(job, "filter", scenes, cached["captions"])
                if upto == "filter" and b.work.read_stage(job.key, "filter", filter_fp) is None:
                    done.filter_frames = _filter_frames(b, job, shots, request, [])
                yield done
                continue
            cache = video_stages.CaptionCache(
                b.work.video_dir(job.key) / "captions.jsonl", b.stage_fp(job, "captions")
            )
            n_cached = sum(cache.get(s) is not None for s in scenes)
            if n_cached:
                b.reporter.advance("captions", n_cached)
            done = _VideoDecoded(job, shots, cache=cache, request=request)
            keep = (*request, done.kept) if request else None
            for scene, frames in video_stages.caption_items(job.path, scenes, b.cfg, cache, keep):
                yield _Scene(job, cache, scene, frames)
            if upto == "filter":
                done.filter_frames = _filter_frames(b, job, shots, request, done.kept)
            yield done
        except (ScenetgError, KeyboardInterrupt) as exc:
            if isinstance(exc, VideoError):
                yield _VideoFailed(job, exc)
                continue
            raise
        except Exception as exc:  # one broken video must not stop the build
            yield _VideoFailed(job, exc)


class CrossVideoCaptions:
    """The consumer side: caption batches, per-video completion, the filter, statuses."""

    def __init__(self, b: Any, upto: str, resume: bool):
        self.b, self.upto, self.resume = b, upto, resume
        self.waiting: list[_VideoDecoded] = []
        self.failed: set[str] = set()
        self.captions = VideoBatches(self._caption, self.fail, self.failed)
        self.filters = CrossVideoFilter(b, self.failed, self.fail, self.done)

    def run(self, jobs: list[VideoJob]) -> None:
        if self.upto == "filter" and jobs:
            # Loaded before the prefetch thread starts, so it preprocesses every video's frames
            # (`FilterFrames.of`); resume has already left out the videos that are done.
            _ = self.b.models.clip
        with Prefetch(_produce(self.b, jobs, self.upto, self.resume), FIRST_CAPACITY) as items:
            for item in items:
                if isinstance(item, _Scene):
                    if item.job.video_id in self.failed:
                        continue
                    if not self.captions.size:
                        self.captions.size = video_stages.caption_batch_size(
                            self.b.models.captioner, item.frames, self.b.cfg
                        )
                        items.capacity = BATCHES_AHEAD * self.captions.size
                    self.captions.add(item)
                elif isinstance(item, _VideoFailed):
                    self.fail(item.job, item.exc)
                else:
                    self.waiting.append(item)
                self.finish_ready()
            self.captions.flush()
            self.finish_ready()
            self.filters.flush()

    def _caption(self, batch: list[_Scene]) -> None:
        """Caption the gathered scenes (one call), store each video's share in its cache."""
        b = self.b
        texts = b._timed(
            "captions", lambda: b.models.captioner.caption_scenes([s.frames for s in batch])
        )
        by_cache: dict[int, tuple[video_stages.CaptionCache, list, list]] = {}
        for s, text in zip(batch, texts, strict=True):
            entry = by_cache.setdefault(id(s.cache), (s.cache, [], []))
            entry[1].append(s.scene)
            entry[2].append(text)
        for cache, scenes, video_texts in by_cache.values():
            cache.put_many(scenes, video_texts)
        b.reporter.advance("captions", len(batch))

    def finish_ready(self) -> None:
        """Finish, in arrival order, each decoded video with no scene left in the batch."""
        pending = self.captions.pending_videos()
        still = []
        for done in self.waiting:
            vid = done.job.video_id
            if vid in self.failed:
                continue
            if vid in pending:
                still.append(done)
            else:
                self.finish(done)
        self.waiting = still

    def finish(self, done: _VideoDecoded) -> None:
        """A video's captions are all in: store them, then queue its filter (or finish it)."""
        job = done.job
        try:
            if self.upto != "shots":
                captions = done.captions or self._store_captions(done)
                if self.upto == "filter":
                    # The raw frames are in the keyframe store now; only their pixels are needed.
                    frames, done.filter_frames, done.kept = done.filter_frames, None, []
                    # Finished (`done`) once its figures are written, after its CLIP batches.
                    self.filters.add(job, done.shots, captions, frames, self.resume)
                    return
        except (ScenetgError, KeyboardInterrupt) as exc:
            if not isinstance(exc, VideoError):
                raise
            self.fail(job, exc)
            return
        except Exception as exc:
            self.fail(job, exc)
            return
        self.done(job)

    def done(self, job: VideoJob) -> None:
        self.b.set_status(job, "ok" if self.upto == "filter" else "partial", None)
        self.b.reporter.advance("videos")

    def _store_captions(self, done: _VideoDecoded) -> dict[str, Any]:
        b, job = self.b, done.job
        scenes = done.shots["scenes"]
        texts = [done.cache.get(s) or "" for s in scenes]
        result = {"model": b.models.captioner.model_name, "captions": texts}
        if done.request and done.kept and len(done.kept) == len(done.request[0]):
            keyframes.KeyframeStore(b._keyframes_dir(job)).save(job.path, *done.request, done.kept)
        b.work.write_stage(job.key, "captions", b.stage_fp(job, "captions", scenes), result)
        return result

    def fail(self, job: VideoJob, exc: Exception) -> None:
        """Record a failed video (as `process_video` does); its other scenes, frames and texts
        are dropped."""
        if job.video_id in self.failed:
            return
        self.failed.add(job.video_id)
        self.filters.drop(job.video_id)
        b = self.b
        if isinstance(exc, VideoError):
            b.set_status(job, "error", str(exc))
            b.reporter.log(f"[yellow]skipped[/] {escape(one_line(str(exc)))}")
        else:
            msg = f"{one_line(job.rel_path)}: {type(exc).__name__}: {exc}".splitlines()[0]
            b.set_status(job, "error", msg)
            b.reporter.log(f"[red]failed[/] {escape(msg)}")
        b.reporter.advance("videos")


def run_local(b: Any, jobs: list[VideoJob], upto: str, resume: bool) -> None:
    """Every video of `jobs` up to stage `upto` on this machine, captions and CLIP batched
    across videos."""
    b.reporter.start("videos", len(jobs))
    b.reporter.start("captions", 0)
    CrossVideoCaptions(b, upto, resume).run(jobs)
