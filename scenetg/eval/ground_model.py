"""Method ``model`` of `scenetg ground`: an MLLM grounds each video's queries, batched across
videos (longest first, frames decoded once per video in a prefetch thread), locally or on Ray
model actors (`scenetg.eval.sharding`); greedy, or ranked candidates (`--candidates`)."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scenetg.errors import ConfigError, VideoError
from scenetg.eval.ground_rows import ERROR_PREFIX
from scenetg.eval.sharding import run_on_ray
from scenetg.grounding.candidates import rank_candidates
from scenetg.grounding.parsing import parse_answer
from scenetg.grounding.records import GroundingRecord
from scenetg.grounding.samples import (
    FrameSampling,
    GroundingInput,
    generate_grounding,
    sample_grounding,
    sample_video,
)
from scenetg.models.batch_size import expected_frames, runner_batch_size
from scenetg.models.runner import (
    as_runner,
)
from scenetg.prefetch import Prefetch
from scenetg.video.lookup import find_video, missing_video_message, video_duration

PREFETCH_VIDEOS = 2
"""Decoded videos kept ready while the model runs (bounded: each holds up to max_frames frames)."""


def decode_video(videos_dir, video_id: str, durations: Iterable[float | None], sampling: FrameSampling):
    """A video's frames for grounding (`SampledVideo`), or ``(error text, kind)`` when its file
    is missing or unreadable: what the local prefetch thread and Ray's CPU tasks both run."""
    try:
        path = find_video(videos_dir, video_id)
    except VideoError as exc:
        return f"{ERROR_PREFIX} {exc}", "error"
    if path is None:
        return f"{ERROR_PREFIX} {missing_video_message(videos_dir, video_id)}", "missing"
    try:
        return sample_video(path, video_duration(path, durations), sampling)
    except (VideoError, ValueError) as exc:
        return f"{ERROR_PREFIX} {exc}", "error"


def _decoded_videos(order, videos_dir, sampling: FrameSampling):
    """(video_id, recs, outcome) per video (`decode_video`). Runs in the prefetch thread, so it
    writes nothing (the consumer emits)."""
    for video_id, recs in order:
        yield video_id, recs, decode_video(videos_dir, video_id, [r.duration_s for r in recs], sampling)


def batched_grounding(runner, batch_size, entries: Iterable[tuple[Any, GroundingInput]]):
    """(key, text) per entry, generated in batches that span videos: a batch's size is set by
    its first item's frames (``auto``), it runs when full and at the end. The one batching of
    both engines, so they put the same items in one ``generate`` call."""
    batch: list[tuple[Any, GroundingInput]] = []
    size = 0
    for key, item in entries:
        if not batch:
            size = runner_batch_size(runner, batch_size, item.video.frames)
        batch.append((key, item))
        if len(batch) >= size:
            yield from zip([k for k, _ in batch], generate_grounding(runner, [i for _, i in batch]), strict=True)
            batch = []
    if batch:
        yield from zip([k for k, _ in batch], generate_grounding(runner, [i for _, i in batch]), strict=True)


def by_visual_size(groups: dict[str, list], sampling: FrameSampling) -> list[tuple[str, list]]:
    """Videos with the most frames first (stable): a batch holds items of similar visual token
    count, so it pads little, and ``auto`` sizes each batch by its largest item."""
    def frames(item: tuple[str, list]) -> int:
        known = [r.duration_s for r in item[1] if r.duration_s]
        return expected_frames(known[0] if known else None, sampling.times, sampling.max_frames)

    return sorted(groups.items(), key=lambda kv: -frames(kv))


def run_model(
    groups, videos_dir, runner, fps, max_frames, max_side, batch_size, emit, stats, ranked=None
) -> None:
    """Batches across videos, frames decoded in a prefetch thread while the model generates;
    rows are keyed by qid (written in the order batches finish). `ranked`: None (greedy, one
    window) or (K, temperature, nms_iou, seed) for ranked candidates."""
    sampling = FrameSampling(fps=fps, max_frames=max_frames, max_side=max_side)
    if ranked is None:
        _run_greedy(groups, videos_dir, runner, sampling, batch_size, emit, stats)
        return
    batch: list[tuple[GroundingRecord, GroundingInput]] = []
    size = 0

    def flush() -> None:
        if not batch:
            return
        if ranked is not None:
            _emit_ranked(runner, batch, ranked, emit)
            batch.clear()
            return
        texts = generate_grounding(runner, [item for _, item in batch])
        for (rec, _), text in zip(batch, texts, strict=True):
            emit(rec, parse_answer(text), text)
        batch.clear()

    order = by_visual_size(groups, sampling)
    with Prefetch(_decoded_videos(order, videos_dir, sampling), PREFETCH_VIDEOS) as videos:
        for _video_id, recs, video in videos:
            stats.videos += 1
            if isinstance(video, tuple):
                message, kind = video
                for rec in recs:
                    emit(rec, None, message, kind)
                continue
            for rec in recs:
                if not batch:
                    size = runner_batch_size(runner, batch_size, video.frames)
                    if ranked is not None and batch_size == "auto":  # K + 1 sequences a query
                        size = max(1, size // (ranked[0] + 1))
                batch.append((rec, GroundingInput(video, rec.query)))
                if len(batch) >= size:
                    flush()
        flush()


def _emit_ranked(runner, batch, ranked, emit) -> None:
    """Ranked candidates for one batch: greedy + K samples per query, ranked and NMS'd."""
    k, temperature, nms_iou, seed = ranked
    batch_seed = (int(seed) + zlib.crc32(str(batch[0][0].qid).encode())) % (1 << 31)
    outputs = sample_grounding(runner, [item for _, item in batch], k, temperature, batch_seed)
    for (rec, _), scored in zip(batch, outputs, strict=True):
        kept = rank_candidates(scored, k, nms_iou)
        if kept:
            emit(rec, kept[0].window, kept[0].text, ranked=[c.window for c in kept],
                 scores=[c.score for c in kept])
        else:  # nothing parsable: the greedy text explains why
            emit(rec, None, scored[0][0] if scored else "", ranked=[], scores=[])


def _run_greedy(groups, videos_dir, runner, sampling: FrameSampling, batch_size, emit, stats) -> None:
    """Greedy answers, batched across videos by `batched_grounding` (as Ray's actors batch)."""
    order = by_visual_size(groups, sampling)

    def entries(videos):
        for _video_id, recs, video in videos:
            stats.videos += 1
            if isinstance(video, tuple):
                for rec in recs:
                    emit(rec, None, *video)
                continue
            for rec in recs:
                yield rec, GroundingInput(video, rec.query)

    with Prefetch(_decoded_videos(order, videos_dir, sampling), PREFETCH_VIDEOS) as videos:
        for rec, text in batched_grounding(runner, batch_size, entries(videos)):
            emit(rec, parse_answer(text), text)


class GroundingWorker:
    """A Ray actor's work (`scenetg.eval.sharding`): it loads the MLLM once; each call takes
    prepared videos (`prepare_video`) and returns, per video, its texts or its error."""

    def __init__(self, model: str, dtype: str, device: str, max_new_tokens: int, decode: str,
                 backend: str, batch_size: int | str, vllm_memory: float | str = "auto",
                 vllm_engines: int = 1):
        self.runner = as_runner(model, dtype, device, max_new_tokens, decode=decode, backend=backend,
                                vllm_memory=vllm_memory, vllm_engines=vllm_engines)
        self.batch_size = batch_size

    def __call__(self, items: list[dict]) -> list[dict]:
        results = [{"group": it["group"]} for it in items]
        entries = []
        for n, it in enumerate(items):
            if isinstance(it["video"], tuple):
                results[n]["error"] = it["video"]
            else:
                results[n]["texts"] = [None] * len(it["queries"])
                entries += [((n, k), GroundingInput(it["video"], q)) for k, q in enumerate(it["queries"])]
        for (n, k), text in batched_grounding(self.runner, self.batch_size, entries):
            results[n]["texts"][k] = text
        return results


def prepare_video(item: dict, videos_dir: str, sampling: FrameSampling) -> dict:
    """A Ray CPU task: the item's video decoded (`decode_video`)."""
    return {**item, "video": decode_video(videos_dir, item["video_id"], item["durations"], sampling)}


def run_model_ray(groups, videos_dir, model, settings: dict, batch_size, emit, stats, engine) -> None:
    """`run_model` on Ray: videos decoded in CPU tasks, queries batched in model actors."""
    if not isinstance(model, (str, Path)):
        raise ConfigError("--engine ray loads the model in each actor: give a model id or folder, "
                          "not a loaded runner")
    sampling = FrameSampling(fps=settings["fps"], max_frames=settings["max_frames"],
                             max_side=settings["max_side"])
    order = by_visual_size(groups, sampling)
    items = [{"group": i, "video_id": vid, "durations": [r.duration_s for r in recs],
              "queries": [r.query for r in recs]} for i, (vid, recs) in enumerate(order)]
    prepare = functools.partial(prepare_video, videos_dir=str(videos_dir), sampling=sampling)
    make_worker = functools.partial(
        GroundingWorker, str(model), settings["dtype"], settings["device"],
        settings["max_new_tokens"], settings["decode"], settings["backend"], batch_size,
        settings["vllm_memory"], settings["vllm_engines"])
    for result in run_on_ray(items, prepare, make_worker, engine):
        recs = order[result["group"]][1]
        stats.videos += 1
        if "error" in result:
            for rec in recs:
                emit(rec, None, *result["error"])
            continue
        for rec, text in zip(recs, result["texts"], strict=True):
            emit(rec, parse_answer(text), text)
