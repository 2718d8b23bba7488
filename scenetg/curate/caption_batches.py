"""The local engine's video loop: captions batched across videos, frames decoded ahead.

A prefetch thread (`scenetg.prefetch`) runs shots and decodes each video's scene keyframes,
handing over one scene at a time; the main thread gathers scenes from consecutive videos into
caption batches of `captions.batch_size` (``auto``: sized by the model, `batch_size.py`), so a
corpus of short clips (3-5 scenes each) still fills a batch, and the GPU never waits for a
decode. Resume is per video as before: each batch's captions go to its videos' `captions.jsonl`
caches at once, and a video's captions stage file, kept keyframes and filter result are written
when its last scene is captioned. Captions are the same as the per-video path's (greedy, left-padded:
a scene's caption does not depend on its batch-mates).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape

from scenetg.curate import keyframes, stages
from scenetg.curate.workdir import VideoJob, one_line
from scenetg.errors import ScenetgError, VideoError
from scenetg.prefetch import Prefetch

FIRST_CAPACITY = 4
"""Scenes decoded ahead before the batch size is known (it is set from the first scene)."""
BATCHES_AHEAD = 2
"""Decoded scenes kept ready: this many batches (the one being filled and the next)."""


@dataclass
class _Scene:
    job: VideoJob
    cache: stages.CaptionCache
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
    cache: stages.CaptionCache | None = None
    request: tuple | None = None
    kept: list = field(default_factory=list)


@dataclass
class _VideoFailed:
    job: VideoJob
    exc: Exception


def _produce(b: Any, jobs: list[VideoJob], upto: str, resume: bool) -> Iterator[Any]:
    """Runs in the prefetch thread: shots, then each uncaptioned scene's frames, per video."""
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
            if cached is not None:
                b.reporter.advance("captions", len(cached["captions"]))
                yield _VideoDecoded(job, shots, captions=cached)
                continue
            cache = stages.CaptionCache(
                b.work.video_dir(job.key) / "captions.jsonl", b.stage_fp(job, "captions")
            )
            n_cached = sum(cache.get(s) is not None for s in scenes)
            if n_cached:
                b.reporter.advance("captions", n_cached)
            request = keyframes.filter_request(
                scenes, b.cfg.filter.frames_per_scene, b.cfg.filter.clip_model, b.models._clip
            )
            done = _VideoDecoded(job, shots, cache=cache, request=request)
            keep = (*request, done.kept) if request else None
            for scene, frames in stages.caption_items(job.path, scenes, b.cfg, cache, keep):
                yield _Scene(job, cache, scene, frames)
            yield done
        except (ScenetgError, KeyboardInterrupt) as exc:
            if isinstance(exc, VideoError):
                yield _VideoFailed(job, exc)
                continue
            raise
        except Exception as exc:  # one broken video must not stop the build
            yield _VideoFailed(job, exc)


class CrossVideoCaptions:
    """The consumer side: batches, per-video completion, the filter, statuses."""

    def __init__(self, b: Any, upto: str, resume: bool):
        self.b, self.upto, self.resume = b, upto, resume
        self.batch: list[_Scene] = []
        self.waiting: list[_VideoDecoded] = []
        self.failed: set[str] = set()
        self.size = 0

    def run(self, jobs: list[VideoJob]) -> None:
        with Prefetch(_produce(self.b, jobs, self.upto, self.resume), FIRST_CAPACITY) as items:
            for item in items:
                if isinstance(item, _Scene):
                    if item.job.video_id in self.failed:
                        continue
                    if not self.size:
                        self.size = stages.caption_batch_size(
                            self.b.models.captioner, item.frames, self.b.cfg
                        )
                        items.capacity = BATCHES_AHEAD * self.size
                    self.batch.append(item)
                    if len(self.batch) >= self.size:
                        self.flush()
                elif isinstance(item, _VideoFailed):
                    self.fail(item.job, item.exc)
                else:
                    self.waiting.append(item)
                self.finish_ready()
            self.flush()
            self.finish_ready()

    def flush(self) -> None:
        """Caption the gathered scenes (one call), store each video's share in its cache."""
        batch = [s for s in self.batch if s.job.video_id not in self.failed]
        self.batch = []
        if not batch:
            return
        try:
            self._caption(batch)
        except (ScenetgError, KeyboardInterrupt):
            raise
        except Exception:
            # Which video broke the batch? Caption each video's share alone: only it fails.
            by_video: dict[str, list[_Scene]] = {}
            for s in batch:
                by_video.setdefault(s.job.video_id, []).append(s)
            for scenes in by_video.values():
                try:
                    self._caption(scenes)
                except (ScenetgError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # one broken video must not stop the build
                    self.fail(scenes[0].job, exc)

    def _caption(self, batch: list[_Scene]) -> None:
        b = self.b
        texts = b._timed(
            "captions", lambda: b.models.captioner.caption_scenes([s.frames for s in batch])
        )
        by_cache: dict[int, tuple[stages.CaptionCache, list, list]] = {}
        for s, text in zip(batch, texts, strict=True):
            entry = by_cache.setdefault(id(s.cache), (s.cache, [], []))
            entry[1].append(s.scene)
            entry[2].append(text)
        for cache, scenes, video_texts in by_cache.values():
            cache.put_many(scenes, video_texts)
        b.reporter.advance("captions", len(batch))

    def finish_ready(self) -> None:
        """Finish, in arrival order, each decoded video with no scene left in the batch."""
        pending = {s.job.video_id for s in self.batch}
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
        b, job = self.b, done.job
        try:
            if self.upto != "shots":
                captions = done.captions or self._store_captions(done)
                if self.upto == "filter":
                    b.filter(job, done.shots, captions, self.resume)
        except (ScenetgError, KeyboardInterrupt) as exc:
            if not isinstance(exc, VideoError):
                raise
            self.fail(job, exc)
            return
        except Exception as exc:
            self.fail(job, exc)
            return
        b.set_status(job, "ok" if self.upto == "filter" else "partial", None)
        b.reporter.advance("videos")

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
        """Record a failed video (as `process_video` does); its other scenes are dropped."""
        if job.video_id in self.failed:
            return
        self.failed.add(job.video_id)
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
    """Every video of `jobs` up to stage `upto` on this machine, captions batched across videos."""
    b.reporter.start("videos", len(jobs))
    b.reporter.start("captions", 0)
    CrossVideoCaptions(b, upto, resume).run(jobs)
