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

import json
import math
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scenetg.config_fields import coerce_batch_size
from scenetg.errors import ConfigError, ScenetgError, VideoError
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
from scenetg.eval.predictions import append_prediction
from scenetg.grounding.candidates import DEFAULT_NMS_IOU, DEFAULT_TEMPERATURE, rank_candidates
from scenetg.grounding.parsing import parse_answer
from scenetg.grounding.prompts import DEFAULT_FPS, DEFAULT_MAX_FRAMES, DEFAULT_MAX_SIDE
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
    BACKENDS,
    DECODE_MODES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    as_clip,
    as_runner,
)
from scenetg.prefetch import Prefetch
from scenetg.progress import Reporter
from scenetg.video.lookup import find_video, missing_video_message, video_duration

METHODS = ("model", "center", "clip")
ERROR_PREFIX = "error:"


@dataclass
class GroundStats:
    """Counts of one `ground` run (the CLI prints `summary()`)."""

    method: str
    total: int = 0
    """Records considered (after `limit`)."""
    skipped: int = 0
    """Already in the predictions file (resume)."""
    written: int = 0
    parsed: int = 0
    """Rows written with a prediction."""
    invalid: int = 0
    """Rows written with pred null because the output could not be parsed."""
    missing_videos: int = 0
    """Queries whose video file was not found (pred null, raw "error: ...")."""
    video_errors: int = 0
    """Queries whose video could not be read (pred null, raw "error: ...")."""
    videos: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        line = (
            f"{self.method}: {self.written} predictions written ({self.parsed} parsed, "
            f"{self.invalid} unparsable) from {self.videos} videos in {self.seconds:.1f} s"
        )
        if self.skipped:
            line += f"; {self.skipped} already done"
        if self.missing_videos:
            line += f"; {self.missing_videos} queries with no video file"
        if self.video_errors:
            line += f"; {self.video_errors} queries with an unreadable video"
        return line


def group_by_video(records: Iterable[Any]) -> dict[str, list[Any]]:
    """Records grouped by ``video_id``, videos in order of first appearance."""
    groups: dict[str, list[Any]] = {}
    for rec in records:
        groups.setdefault(rec.video_id, []).append(rec)
    return groups


# ------------------------------------------------------------------------------ output file


def read_done_rows(path: str | Path) -> dict[str, dict]:
    """qid (as a string) -> last row of an existing JSONL output, for resuming.

    A last line that is not valid JSON (a write torn by a kill) is cut from the file so the next
    append starts on a fresh line; a bad line elsewhere raises `ScenetgError("FILE:LINE: ...")`.
    A missing file gives ``{}``.
    """
    p = Path(path)
    if not p.is_file():
        return {}
    data = p.read_bytes()
    lines = data.split(b"\n")
    # Offsets of each line's start, to cut a torn tail.
    starts, pos = [], 0
    for raw in lines:
        starts.append(pos)
        pos += len(raw) + 1
    rows: dict[str, dict] = {}
    last_content = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or obj.get("qid") is None:
            if i == last_content:
                with p.open("r+b") as fh:
                    fh.truncate(starts[i])
                break
            raise ScenetgError(
                f"{p}:{i + 1}: not a JSON object with a 'qid'; fix the line or delete the file to start over"
            )
        rows[str(obj["qid"])] = obj
    if data and not data.endswith(b"\n") and p.stat().st_size == len(data):
        with p.open("ab") as fh:  # a complete last row that lost only its newline
            fh.write(b"\n")
    return rows


def is_error_row(row: dict, key: str = "raw") -> bool:
    value = row.get(key)
    return isinstance(value, str) and value.startswith(ERROR_PREFIX)


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
) -> GroundStats:
    """Ground `records` (the first `limit` of them) and append predictions to `out_path`.

    `model` is what the method needs: an MLLM id/path (or a loaded `QwenRunner`) for ``model``,
    an OpenCLIP name/path (or a `ClipEncoder`) for ``clip``; ``center`` needs none. `fps` and
    `max_frames` set the frames sampled per video for both ``model`` and ``clip``. A query
    whose video is missing or unreadable gets ``pred: null`` and ``raw: "error: ..."``, is
    counted, and the run goes on. `decode`: how decode steps run attention
    (`scenetg.models.runner.DECODE_MODES`). `backend`: ``transformers`` or ``vllm`` (an
    in-process vLLM engine, `scenetg.models.vllm_runner`) for method ``model``.
    `candidates` K > 1: ranked windows per query (module docstring); `seed` seeds the samples
    (each batch from `seed` and its first qid, so the same inputs and batch size give the
    same candidates).
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise ConfigError(f"unknown grounding method {method!r}; use one of {', '.join(METHODS)}")
    batch_size = coerce_batch_size("batch_size", batch_size)
    if decode not in DECODE_MODES:
        raise ConfigError(f"decode must be one of {', '.join(DECODE_MODES)}, not {decode!r}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if fps <= 0 or max_frames < 1:
        raise ConfigError("fps must be > 0, max_frames >= 1")
    if limit is not None and limit < 0:
        raise ConfigError("limit must be >= 0")
    _check_candidates(method, candidates, temperature, nms_iou)
    fraction = _center_fraction(center_fraction, records) if method == "center" else None
    reporter = reporter or Reporter()
    todo = list(records)[: limit if limit is not None else None]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {q for q, row in read_done_rows(out).items() if not is_error_row(row)}
    pending = [r for r in todo if str(r.qid) not in done]
    stats = GroundStats(method=method, total=len(todo), skipped=len(todo) - len(pending))
    if not pending:
        stats.seconds = time.perf_counter() - t0
        return stats

    engine: Any = None
    if method == "model":
        engine = as_runner(model, dtype, device, max_new_tokens, decode=decode, backend=backend)
        if candidates > 1 and not hasattr(engine, "sample_scored"):
            raise ConfigError(
                f"--candidates {candidates} samples from the model with the transformers "
                f"backend; backend {backend!r} has no scored sampling"
            )
    elif method == "clip":
        engine = as_clip(model, device)

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
                groups, videos_dir, engine, fps, max_frames, clip_scales, clip_stride, emit, stats,
                candidates, nms_iou,
            )
        else:
            ranked = None if candidates <= 1 else (candidates, temperature, nms_iou, seed)
            _run_model(
                groups, videos_dir, engine, fps, max_frames, max_side, batch_size, emit, stats,
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


Emit = Callable[..., None]


def _open_video(
    videos_dir: str | Path, video_id: str, recs: Sequence[GroundingRecord], emit: Emit
) -> Path | None:
    """The video's path, or None after writing an error row for each of its queries."""
    try:
        path = find_video(videos_dir, video_id)
    except VideoError as exc:
        for rec in recs:
            emit(rec, None, f"{ERROR_PREFIX} {exc}", "error")
        return None
    if path is None:
        message = f"{ERROR_PREFIX} {missing_video_message(videos_dir, video_id)}"
        for rec in recs:
            emit(rec, None, message, "missing")
    return path


def _video_failed(recs: Sequence[GroundingRecord], exc: Exception, emit: Emit) -> None:
    for rec in recs:
        emit(rec, None, f"{ERROR_PREFIX} {exc}", "error")


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
        path = _open_video(videos_dir, video_id, unknown, emit)
        if path is None:
            continue
        try:
            duration = video_duration(path)
        except VideoError as exc:
            _video_failed(unknown, exc, emit)
            continue
        for rec in unknown:
            emit(rec, center_window(duration, fraction), raw)


def _run_clip(
    groups, videos_dir, encoder, fps, max_frames, scales, stride, emit, stats,
    candidates: int = 1, nms_iou: float = DEFAULT_NMS_IOU,
) -> None:
    for video_id, recs in groups.items():
        stats.videos += 1
        path = _open_video(videos_dir, video_id, recs, emit)
        if path is None:
            continue
        try:
            duration = video_duration(path, (r.duration_s for r in recs))
            times = clip_frame_times(duration, fps, max_frames)
            frame_emb = clip_frame_embeddings(encoder, path, times)
        except (VideoError, ValueError) as exc:
            _video_failed(recs, exc, emit)
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


PREFETCH_VIDEOS = 2
"""Decoded videos kept ready while the model runs (bounded: each holds up to max_frames frames)."""


def _decoded_videos(order, videos_dir, sampling: FrameSampling):
    """(video_id, recs, outcome) per video: a `SampledVideo`, or an error row's text and kind.
    Runs in the prefetch thread, so it writes nothing (the consumer emits)."""
    for video_id, recs in order:
        try:
            path = find_video(videos_dir, video_id)
        except VideoError as exc:
            yield video_id, recs, (f"{ERROR_PREFIX} {exc}", "error")
            continue
        if path is None:
            yield video_id, recs, (f"{ERROR_PREFIX} {missing_video_message(videos_dir, video_id)}", "missing")
            continue
        try:
            duration = video_duration(path, (r.duration_s for r in recs))
            yield video_id, recs, sample_video(path, duration, sampling)
        except (VideoError, ValueError) as exc:
            yield video_id, recs, (f"{ERROR_PREFIX} {exc}", "error")


def by_visual_size(groups: dict[str, list], sampling: FrameSampling) -> list[tuple[str, list]]:
    """Videos with the most frames first (stable): a batch holds items of similar visual token
    count, so it pads little, and ``auto`` sizes each batch by its largest item."""
    def frames(item: tuple[str, list]) -> int:
        known = [r.duration_s for r in item[1] if r.duration_s]
        return expected_frames(known[0] if known else None, sampling.times, sampling.max_frames)

    return sorted(groups.items(), key=lambda kv: -frames(kv))


def _run_model(
    groups, videos_dir, runner, fps, max_frames, max_side, batch_size, emit, stats, ranked=None
) -> None:
    """Batches across videos, frames decoded in a prefetch thread while the model generates;
    rows are keyed by qid (written in the order batches finish). `ranked`: None (greedy, one
    window) or (K, temperature, nms_iou, seed) for ranked candidates."""
    sampling = FrameSampling(fps=fps, max_frames=max_frames, max_side=max_side)
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
