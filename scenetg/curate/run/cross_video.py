"""Model calls whose batches span videos: the local engine's one batching mechanism.

The captions (scenes) and the CLIP filter (keyframe images, query texts) both gather work items
from consecutive videos into calls of `size` items, so a corpus of short clips (3-5 scenes each)
still fills a batch. Each item belongs to one video (`item.job`); a call that raises anything but
a `ScenetgError` (or Ctrl-C) is retried one video's share at a time, so only the video that broke
it fails. Results go back through the call itself (it stores them per video); callers decide when
a video is complete (none of its items left in `pending_videos`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scenetg.errors import ScenetgError


class VideoBatches:
    """Items of many videos, flushed as calls of `size` items (`size` 0: not known yet)."""

    def __init__(
        self,
        call: Callable[[list[Any]], None],
        on_error: Callable[[Any, Exception], None],
        failed: set[str],
        size: int = 0,
    ):
        self.call = call
        """Runs the model on a batch and stores each item's result."""
        self.on_error = on_error
        """(job, exception) of a video whose share failed alone."""
        self.failed = failed
        """Video ids given up on (shared with the caller): their items are dropped."""
        self.size = size
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        self.items.append(item)
        if self.size and len(self.items) >= self.size:
            self.flush()

    def pending_videos(self) -> set[str]:
        return {it.job.video_id for it in self.items}

    def flush(self) -> None:
        """One call on the gathered items (those of failed videos dropped)."""
        batch = [it for it in self.items if it.job.video_id not in self.failed]
        self.items = []
        if not batch:
            return
        try:
            self.call(batch)
        except (ScenetgError, KeyboardInterrupt):
            raise
        except Exception:
            # Which video broke the batch? Run each video's share alone: only it fails.
            by_video: dict[str, list[Any]] = {}
            for it in batch:
                by_video.setdefault(it.job.video_id, []).append(it)
            for share in by_video.values():
                try:
                    self.call(share)
                except (ScenetgError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # one broken video must not stop the build
                    self.on_error(share[0].job, exc)
