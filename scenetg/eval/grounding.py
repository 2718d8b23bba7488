"""Grounding inference (`scenetg ground`): annotation records in, a predictions JSONL out.

Methods, all writing the same rows ``{"qid", "pred": [start_s, end_s] | null, "raw"}``:

- ``model`` — an MLLM (Qwen2.5-VL class) sees the frames and prompt training uses
  (`scenetg.grounding.prompts`), answers greedily; ``pred`` is `parse_answer(raw)`.
- ``center`` — a prior with no model: a window centred in the video, its length a fraction of the
  duration (`DEFAULT_CENTER_FRACTION`, or ``"auto"``: the records' mean relative GT length).
- ``clip`` — OpenCLIP sliding windows over frame embeddings (`clip_best_window`).

With ``candidates`` K > 1 (``model`` and ``clip``) each row also carries ``candidates``, at most K
ranked windows (``pred`` is the first), and ``scores``: for ``model`` the greedy output plus K
samples at ``temperature``, ranked by sequence log-prob and de-duplicated by temporal NMS at
``nms_iou`` (`scenetg.grounding.candidates`); for ``clip`` its sliding windows by contrast score,
with the same NMS.

Frames are decoded once per video for all its queries. Rows are appended and flushed as they are
made, so a killed run resumes where it stopped: qids already in the file are skipped, except rows
whose ``raw`` starts with ``"error:"`` (a missing or broken video), which are retried.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scenetg.config_fields import coerce_batch_size, coerce_float, coerce_int
from scenetg.errors import ConfigError, VideoError
from scenetg.eval.baselines import (
    CLIP_SCALES,
    CLIP_STRIDE,
    DEFAULT_CENTER_FRACTION,
    center_window,
    clip_frame_embeddings,
    clip_frame_times,
    clip_ground_video,
    mean_relative_length,
)
from scenetg.eval.ground_model import run_model, run_model_ray
from scenetg.eval.ground_rows import (
    METHODS,
    Emit,
    GroundStats,
    error_rows_for,
    find_video_or_error_rows,
    group_by_video,
    resume_rows,
)
from scenetg.eval.predictions import append_prediction
from scenetg.eval.producer import describe_model, prepare_output, prompt_version, with_fingerprint
from scenetg.eval.sharding import EvalEngineConfig
from scenetg.grounding.candidates import DEFAULT_NMS_IOU, DEFAULT_TEMPERATURE
from scenetg.grounding.prompts import DEFAULT_FPS, DEFAULT_MAX_FRAMES, DEFAULT_MAX_SIDE
from scenetg.grounding.records import GroundingRecord
from scenetg.models.runner import (
    BACKENDS,
    DECODE_MODES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    VLLM_MEMORY_KEY,
    as_clip,
    as_runner,
    coerce_vllm_memory,
)
from scenetg.progress import Reporter
from scenetg.video.lookup import video_duration


def grounding_producer(
    method: str, model: Any = None, *, model_name: str | None = None, fps: float, max_frames: int,
    max_side: int | None, backend: str, dtype: str, max_new_tokens: int,
    center_fraction: float | None = None, clip_scales: Sequence[float] = CLIP_SCALES,
    clip_stride: float = CLIP_STRIDE, candidates: tuple = (1, DEFAULT_TEMPERATURE, DEFAULT_NMS_IOU, 0),
) -> dict[str, Any]:
    """What a `ground` run's predictions depend on (the predictions file's sidecar): the method,
    its model (path or id and content fingerprint) and every setting that changes its output."""
    producer: dict[str, Any] = {"task": "ground", "method": method}
    if method == "center":
        producer["center_fraction"] = center_fraction
    else:
        producer.update(describe_model(model, model_name))
        producer.update(fps=float(fps), max_frames=int(max_frames))
    if method == "clip":
        producer.update(clip_scales=[float(x) for x in clip_scales], clip_stride=float(clip_stride))
    if method == "model":
        producer.update(
            backend=backend, dtype=dtype, max_side=max_side, prompt_version=prompt_version("ground"),
            decoding={"greedy": True, "max_new_tokens": int(max_new_tokens)},
        )
    k, temperature, nms_iou, seed = candidates
    if k > 1:  # ranked windows: how they were drawn changes them (greedy rows do not have these)
        producer["candidates"] = {"k": int(k), "nms_iou": float(nms_iou)}
        if method == "model":
            producer["candidates"].update(temperature=float(temperature), seed=int(seed))
    return with_fingerprint(producer)


# ------------------------------------------------------------------------------------ ground


def ground(
    records: Sequence[GroundingRecord],
    videos_dir: str | Path,
    out_path: str | Path,
    method: str = "model",
    model: Any = None,
    fps: float = DEFAULT_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    batch_size: int | str = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    reporter: Reporter | None = None,
    *,
    dtype: str = "auto",
    device: str = "auto",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    max_side: int | None = DEFAULT_MAX_SIDE,
    center_fraction: float | str = DEFAULT_CENTER_FRACTION,
    clip_scales: Sequence[float] = CLIP_SCALES,
    clip_stride: float = CLIP_STRIDE,
    decode: str = "auto",
    backend: str = "transformers",
    candidates: int = 1,
    temperature: float = DEFAULT_TEMPERATURE,
    nms_iou: float = DEFAULT_NMS_IOU,
    seed: int = 0,
    overwrite: bool = False,
    model_name: str | None = None,
    engine: EvalEngineConfig | None = None,
    vllm_memory: float | str = "auto",
    vllm_engines: int = 1,
) -> GroundStats:
    """Ground `records` (the first `limit` of them) and append predictions to `out_path`.

    `model` is what the method needs: an MLLM id/path (or a loaded `QwenRunner`) for ``model``,
    an OpenCLIP name/path (or a `ClipEncoder`) for ``clip``; ``center`` needs none. `fps` and
    `max_frames` set the frames sampled per video for both ``model`` and ``clip``. A query
    whose video is missing or unreadable gets ``pred: null`` and ``raw: "error: ..."``, is
    counted, and the run goes on. `decode`: how decode steps run attention
    (`scenetg.models.runner.DECODE_MODES`). `backend`: ``transformers`` or ``vllm`` (an
    in-process vLLM engine, `scenetg.models.vllm_runner`) taking `vllm_memory`:
    ``--vllm-memory``, split over `vllm_engines` engines of one process) for method ``model``.
    `candidates` K > 1: ranked windows per query (module docstring); `seed` seeds the samples
    (each batch from `seed` and its first qid, so the same inputs and batch size give the
    same candidates).

    The producer (`grounding_producer`) goes to the sidecar ``<out stem>.producer.json``; resuming
    a file of another producer is a ConfigError unless `overwrite` (`eval.producer`). `model_name`
    records a loaded `model` under its path. `engine` (`scenetg.eval.sharding`): ``local``
    (default) or ``ray``, which shards method ``model`` over model actors (the same rows; greedy
    only).
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise ConfigError(f"unknown grounding method {method!r}; use one of {', '.join(METHODS)}")
    batch_size = coerce_batch_size("batch_size", batch_size)
    vllm_memory = coerce_vllm_memory(VLLM_MEMORY_KEY, vllm_memory)
    if decode not in DECODE_MODES:
        raise ConfigError(f"decode must be one of {', '.join(DECODE_MODES)}, not {decode!r}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    fps = coerce_float("fps", fps, min=0.0, min_open=True)
    max_frames = coerce_int("max_frames", max_frames, min=1)
    max_new_tokens = coerce_int("max_new_tokens", max_new_tokens, min=1)
    limit = None if limit is None else coerce_int("limit", limit, min=0)
    _check_candidates(method, candidates, temperature, nms_iou)
    on_ray = engine is not None and engine.name == "ray"
    if on_ray and (method == "clip" or candidates > 1):
        raise ConfigError("--engine ray runs method model with greedy answers; run method clip "
                          "or --candidates with --engine local")
    fraction = _center_fraction(center_fraction, records) if method == "center" else None
    reporter = reporter or Reporter()
    todo = list(records)[: limit if limit is not None else None]
    out = Path(out_path)
    producer = grounding_producer(
        method, model, model_name=model_name, fps=fps, max_frames=max_frames, max_side=max_side,
        backend=backend, dtype=dtype, max_new_tokens=max_new_tokens, center_fraction=fraction,
        clip_scales=clip_scales, clip_stride=clip_stride,
        candidates=(candidates, temperature, nms_iou, seed),
    )
    prepare_output(out, producer, overwrite)
    done = resume_rows(out)
    pending = [r for r in todo if str(r.qid) not in done]
    stats = GroundStats(method=method, total=len(todo), skipped=len(todo) - len(pending))
    if not pending:
        stats.seconds = time.perf_counter() - t0
        return stats

    loaded: Any = None
    if method == "model" and not on_ray:
        loaded = as_runner(model, dtype, device, max_new_tokens, decode=decode, backend=backend,
                           vllm_memory=vllm_memory, vllm_engines=vllm_engines)
        if candidates > 1 and not hasattr(loaded, "sample_scored"):
            raise ConfigError(
                f"--candidates {candidates} samples from the model with the transformers "
                f"backend; backend {backend!r} has no scored sampling"
            )
    elif method == "clip":
        loaded = as_clip(model, device)

    groups = group_by_video(pending)
    reporter.start("ground", len(pending))
    with out.open("a", encoding="utf-8") as fh:

        def emit(rec: GroundingRecord, pred, raw: str, kind: str = "", ranked=None, scores=None) -> None:
            append_prediction(fh, rec.qid, pred, raw, ranked, scores)
            stats.written += 1
            if kind == "missing":
                stats.missing_videos += 1
            elif kind == "error":
                stats.video_errors += 1
            elif pred is None:
                stats.invalid += 1
            else:
                stats.parsed += 1
            reporter.advance("ground")

        if method == "center":
            _run_center(groups, videos_dir, fraction, emit, stats)
        elif method == "clip":
            _run_clip(
                groups, videos_dir, loaded, fps, max_frames, clip_scales, clip_stride, emit, stats,
                candidates, nms_iou,
            )
        elif on_ray:
            settings = dict(fps=fps, max_frames=max_frames, max_side=max_side, dtype=dtype,
                            device=device, max_new_tokens=max_new_tokens, decode=decode,
                            backend=backend, vllm_memory=vllm_memory, vllm_engines=vllm_engines)
            run_model_ray(groups, videos_dir, model, settings, batch_size, emit, stats, engine)
        else:
            ranked = None if candidates <= 1 else (candidates, temperature, nms_iou, seed)
            run_model(
                groups, videos_dir, loaded, fps, max_frames, max_side, batch_size, emit, stats,
                ranked,
            )
    stats.seconds = time.perf_counter() - t0
    return stats


def _check_candidates(method: str, candidates: int, temperature: float, nms_iou: float) -> None:
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ConfigError(f"candidates must be an integer >= 1, got {candidates!r}")
    if candidates > 1 and method == "center":
        raise ConfigError("--candidates applies to methods model and clip (center has one window)")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not (isinstance(nms_iou, (int, float)) and 0 <= nms_iou <= 1):
        raise ConfigError(f"nms IoU must be a number in [0, 1], got {nms_iou!r}")


def _center_fraction(value: float | str, records: Sequence[GroundingRecord]) -> float:
    if isinstance(value, str):
        if value.strip().lower() != "auto":
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(
                    f"center fraction must be a number in (0, 1] or 'auto', got {value!r}"
                ) from None
        else:
            value = mean_relative_length(records) or DEFAULT_CENTER_FRACTION
    if not 0 < float(value) <= 1:
        raise ConfigError(f"center fraction must be in (0, 1], got {value}")
    return float(value)


def _run_center(groups, videos_dir, fraction: float, emit: Emit, stats: GroundStats) -> None:
    raw = f"center prior (fraction={fraction:.4f})"
    for video_id, recs in groups.items():
        stats.videos += 1
        known = [r for r in recs if r.duration_s]
        for rec in known:
            emit(rec, center_window(rec.duration_s, fraction), raw)
        unknown = [r for r in recs if not r.duration_s]
        if not unknown:
            continue
        path = find_video_or_error_rows(videos_dir, video_id, unknown, emit)
        if path is None:
            continue
        try:
            duration = video_duration(path)
        except VideoError as exc:
            error_rows_for(unknown, exc, emit)
            continue
        for rec in unknown:
            emit(rec, center_window(duration, fraction), raw)


def _run_clip(
    groups, videos_dir, encoder, fps, max_frames, scales, stride, emit, stats,
    candidates: int = 1, nms_iou: float = DEFAULT_NMS_IOU,
) -> None:
    for video_id, recs in groups.items():
        stats.videos += 1
        path = find_video_or_error_rows(videos_dir, video_id, recs, emit)
        if path is None:
            continue
        try:
            duration = video_duration(path, (r.duration_s for r in recs))
            times = clip_frame_times(duration, fps, max_frames)
            frame_emb = clip_frame_embeddings(encoder, path, times)
        except (VideoError, ValueError) as exc:
            error_rows_for(recs, exc, emit)
            continue
        results = clip_ground_video(
            encoder, frame_emb, duration, [r.query for r in recs], scales, stride,
            candidates, nms_iou,
        )
        for rec, result in zip(recs, results, strict=True):
            if candidates > 1:
                s, e, score = result[0]
                emit(rec, (s, e), f"clip window score={score:.4f}",
                     ranked=[(a, b) for a, b, _ in result], scores=[c for _, _, c in result])
                continue
            s, e, score = result
            emit(rec, (s, e), f"clip window score={score:.4f}")
