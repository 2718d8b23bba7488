"""Grounding inference (`scenetg ground`): annotation records in, a predictions JSONL out.

Methods, all writing the same rows ``{"qid", "pred": [start_s, end_s] | null, "raw"}``:

- ``model`` — an MLLM (Qwen2.5-VL class) sees the frames and prompt training uses
  (`scenetg.rl.prompts`), answers greedily; ``pred`` is `parse_answer(raw)`.
- ``center`` — a prior with no model: a window centred in the video, its length a fraction of the
  duration (`DEFAULT_CENTER_FRACTION`, or ``"auto"``: the records' mean relative GT length).
- ``clip`` — OpenCLIP sliding windows over frame embeddings (`clip_best_window`).

Frames are decoded once per video for all its queries. Rows are appended and flushed as they are
made, so a killed run resumes where it stopped: qids already in the file are skipped, except rows
whose ``raw`` starts with ``"error:"`` (a missing or broken video), which are retried.
"""

from __future__ import annotations

import copy
import glob
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.errors import ConfigError, ScenetgError, VideoError
from scenetg.eval.predictions import append_prediction
from scenetg.eval.records import GroundingRecord
from scenetg.progress import Reporter
from scenetg.rl.parsing import parse_answer
from scenetg.rl.prompts import (
    DEFAULT_FPS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_SIDE,
    grounding_prompt,
    sample_video_times,
)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")
METHODS = ("model", "center", "clip")
ERROR_PREFIX = "error:"

DEFAULT_CENTER_FRACTION = 0.3
"""Centre-prior window length as a fraction of the video (no data needed). ``"auto"`` uses the
mean relative GT length of the records being grounded instead: a prior fitted on the test set
itself, so an optimistic baseline."""

CLIP_SCALES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75)
"""Sliding-window lengths tried by the CLIP baseline, as fractions of the video duration."""

CLIP_STRIDE = 0.25
"""Window stride as a fraction of the window's own length."""

DEFAULT_MAX_NEW_TOKENS = 256
"""Room for a short ``<think>`` plus the answer."""

DEFAULT_BATCH_SIZE = 4


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


# ------------------------------------------------------------------------------------ videos


def find_video(videos_dir: str | Path, video_id: str) -> Path | None:
    """The file of `video_id` under `videos_dir`: ``<video_id><ext>`` for the usual extensions
    (any case; ids may be nested, ``charades/3MSZA``), or `video_id` itself when it already ends
    with one. None when there is none."""
    base = Path(videos_dir)
    direct = base / video_id
    if direct.suffix.lower() in VIDEO_EXTENSIONS and direct.is_file():
        return direct
    for ext in VIDEO_EXTENSIONS:
        for e in (ext, ext.upper()):
            candidate = base / f"{video_id}{e}"
            if candidate.is_file():
                return candidate
    parent = direct.parent
    if parent.is_dir():
        for candidate in sorted(parent.glob(glob.escape(direct.name) + ".*")):
            if candidate.suffix.lower() in VIDEO_EXTENSIONS and candidate.is_file():
                return candidate
    return None


def missing_video_message(videos_dir: str | Path, video_id: str) -> str:
    return f"{ERROR_PREFIX} video not found: {Path(videos_dir) / video_id}.* ({'/'.join(e[1:] for e in VIDEO_EXTENSIONS)})"


def video_duration(path: Path, known: Iterable[float | None] = ()) -> float:
    """The first known duration (from the annotations), else the probed one (raises VideoError)."""
    for d in known:
        if d is not None and d > 0:
            return float(d)
    from scenetg.video.probe import probe_video

    return float(probe_video(path).duration_s)


def read_frames(
    path: str | Path, times_s: Sequence[float], max_side: int | None
) -> list[np.ndarray]:
    """RGB frames shown at `times_s`, from one decode pass."""
    from scenetg.video import frames as frames_mod

    return frames_mod.read_frames_at(path, times_s, max_side=max_side)


def iter_frames(
    path: str | Path, times_s: Sequence[float], max_side: int | None
) -> Iterator[np.ndarray]:
    """Like `read_frames` but streaming (ascending `times_s`): only one frame held at a time."""
    from scenetg.video import frames as frames_mod

    yield from frames_mod.iter_frames_at(path, times_s, max_side=max_side)


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


# ----------------------------------------------------------------------------------- models


class QwenRunner:
    """A loaded MLLM + processor with a greedy generation config: batches of videos and prompts
    in, generated texts out. Videos go through `batch_video_inputs` with their real duration, so
    the sampled fps (and every time the model sees) is right."""

    def __init__(self, model: Any, processor: Any, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS):
        self.model, self.processor = model, processor
        from scenetg.models.qwen import greedy_generation_config

        self.generation_config = greedy_generation_config(model, max_new_tokens)

    @classmethod
    def load(
        cls,
        model_id_or_path: str | Path,
        dtype: str = "auto",
        device: str = "auto",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> QwenRunner:
        from scenetg.models.qwen import load_qwen

        model, processor = load_qwen(model_id_or_path, dtype=dtype, device=device)
        return cls(model, processor, max_new_tokens)

    def generate(
        self,
        videos: Sequence[Sequence[np.ndarray]],
        times_s: Sequence[Sequence[float]],
        prompts: Sequence[str],
        durations_s: Sequence[float],
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """One greedy completion per (video, prompt); the special tokens are dropped."""
        import torch

        from scenetg.models.qwen import batch_video_inputs

        if not videos:
            return []
        gen = self.generation_config
        if max_new_tokens is not None and max_new_tokens != gen.max_new_tokens:
            gen = copy.deepcopy(gen)
            gen.max_new_tokens = int(max_new_tokens)
        inputs = batch_video_inputs(
            self.processor, videos, times_s, list(prompts), durations_s=list(durations_s)
        ).to(self.model.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=gen)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return [
            t.strip() for t in self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        ]


def as_runner(
    model: Any, dtype: str, device: str, max_new_tokens: int, what: str = "--model"
) -> Any:
    """A `QwenRunner` from a model id/path, or `model` itself when it already has ``generate``
    (a loaded runner, or a stand-in in tests)."""
    if model is None:
        raise ConfigError(f"an MLLM is needed: set {what}")
    if hasattr(model, "generate") and not isinstance(model, (str, Path)):
        return model
    return QwenRunner.load(model, dtype=dtype, device=device, max_new_tokens=max_new_tokens)


def as_clip(model: Any, device: str, what: str = "--model") -> Any:
    """A `ClipEncoder` from a name/path, or `model` itself when it already encodes."""
    if model is None:
        raise ConfigError(f"a CLIP model is needed: set {what}")
    if hasattr(model, "encode_images") and not isinstance(model, (str, Path)):
        return model
    from scenetg.models.clip import load_clip

    return load_clip(model, device=device)


# -------------------------------------------------------------------------------- baselines


def center_window(duration_s: float, fraction: float) -> tuple[float, float]:
    """The centre prior: ``[D/2 - f·D/2, D/2 + f·D/2]``."""
    half = 0.5 * fraction * duration_s
    return 0.5 * duration_s - half, 0.5 * duration_s + half


def mean_relative_length(records: Iterable[GroundingRecord]) -> float | None:
    """Mean over records with a known duration of (longest GT window / duration); None if none."""
    values = [
        max(e - s for s, e in rec.windows) / rec.duration_s
        for rec in records
        if rec.duration_s and rec.windows
    ]
    return float(np.mean(values)) if values else None


def clip_best_window(
    sims: np.ndarray,
    duration_s: float,
    scales: Sequence[float] = CLIP_SCALES,
    stride: float = CLIP_STRIDE,
) -> tuple[float, float, float]:
    """The best sliding window for one query: ``(start_s, end_s, score)``.

    `sims` (T,) are text–frame cosine similarities of T frames at the centres of T equal parts of
    the video, frame i covering ``[i·D/T, (i+1)·D/T)``. For each scale f, windows of
    ``w = max(1, round(f·T))`` frames start every ``max(1, round(stride·w))`` frames (the last
    start, T - w, always included). Score = mean similarity inside the window minus mean outside
    it (0 when the window covers every frame): a contrast, so the window that stands out from the
    rest of the video wins; a plain inside mean would always pick the shortest window around the
    single best frame. Ties go to the earliest, shortest window.
    """
    sims = np.asarray(sims, dtype=np.float64).reshape(-1)
    t = sims.size
    if t == 0:
        raise ValueError("no frame similarities")
    cum = np.concatenate([[0.0], np.cumsum(sims)])
    total = cum[-1]
    best = (-math.inf, 0, t)
    for w in sorted({max(1, min(t, round(f * t))) for f in scales}):
        step = max(1, round(stride * w))
        starts = np.arange(0, t - w + 1, step)
        if starts[-1] != t - w:
            starts = np.append(starts, t - w)
        inside = cum[starts + w] - cum[starts]
        mean_in = inside / w
        mean_out = (total - inside) / (t - w) if t > w else mean_in
        score = mean_in - mean_out
        i = int(np.argmax(score))
        if score[i] > best[0] + 1e-12:
            best = (float(score[i]), int(starts[i]), w)
    score, start, w = best
    frame_s = duration_s / t
    return start * frame_s, (start + w) * frame_s, score


def clip_frame_embeddings(
    encoder: Any, path: str | Path, times_s: Sequence[float], chunk: int = 64
) -> np.ndarray:
    """(T, d) CLIP embeddings of the frames at `times_s`, decoded just large enough for the
    model's input and encoded in chunks."""
    max_side = 2 * int(getattr(encoder, "image_size", 224))
    parts, buf = [], []
    for frame in iter_frames(path, times_s, max_side):
        buf.append(frame)
        if len(buf) == chunk:
            parts.append(encoder.encode_images(buf))
            buf = []
    if buf:
        parts.append(encoder.encode_images(buf))
    return np.concatenate(parts, axis=0)


def clip_ground_video(
    encoder: Any,
    frame_emb: np.ndarray,
    duration_s: float,
    queries: Sequence[str],
    scales: Sequence[float] = CLIP_SCALES,
    stride: float = CLIP_STRIDE,
) -> list[tuple[float, float, float]]:
    """``(start_s, end_s, score)`` per query, from one video's frame embeddings."""
    text = encoder.encode_text(list(queries))
    sims = text @ frame_emb.T
    return [clip_best_window(row, duration_s, scales, stride) for row in sims]


def model_ground_batch(
    runner: Any,
    items: Sequence[tuple[Sequence[np.ndarray], Sequence[float], float, str]],
    max_new_tokens: int | None = None,
) -> list[str]:
    """Raw grounding outputs for ``(frames, times_s, duration_s, query)`` items, one generate."""
    return runner.generate(
        [it[0] for it in items],
        [it[1] for it in items],
        [grounding_prompt(it[3], it[2]) for it in items],
        [it[2] for it in items],
        max_new_tokens=max_new_tokens,
    )


# ------------------------------------------------------------------------------------ ground


def ground(
    records: Sequence[GroundingRecord],
    videos_dir: str | Path,
    out_path: str | Path,
    method: str = "model",
    model: Any = None,
    fps: float = DEFAULT_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    batch_size: int = DEFAULT_BATCH_SIZE,
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
) -> GroundStats:
    """Ground `records` (the first `limit` of them) and append predictions to `out_path`.

    `model` is what the method needs: an MLLM id/path (or a loaded `QwenRunner`) for ``model``,
    an OpenCLIP name/path (or a `ClipEncoder`) for ``clip``; ``center`` needs none. `fps` and
    `max_frames` set the frames sampled per video for both ``model`` and ``clip``. A query
    whose video is missing or unreadable gets ``pred: null`` and ``raw: "error: ..."``, is
    counted, and the run goes on.
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise ConfigError(f"unknown grounding method {method!r}; use one of {', '.join(METHODS)}")
    if fps <= 0 or max_frames < 1 or batch_size < 1:
        raise ConfigError("fps must be > 0, max_frames and batch_size >= 1")
    if limit is not None and limit < 0:
        raise ConfigError("limit must be >= 0")
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
        engine = as_runner(model, dtype, device, max_new_tokens)
    elif method == "clip":
        engine = as_clip(model, device)

    groups = group_by_video(pending)
    reporter.start("ground", len(pending))
    with out.open("a", encoding="utf-8") as fh:

        def emit(rec: GroundingRecord, pred, raw: str, kind: str = "") -> None:
            append_prediction(fh, rec.qid, pred, raw)
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
                groups, videos_dir, engine, fps, max_frames, clip_scales, clip_stride, emit, stats
            )
        else:
            _run_model(
                groups, videos_dir, engine, fps, max_frames, max_side, batch_size, emit, stats
            )
    stats.seconds = time.perf_counter() - t0
    return stats


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
    path = find_video(videos_dir, video_id)
    if path is None:
        message = missing_video_message(videos_dir, video_id)
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


def _run_clip(groups, videos_dir, encoder, fps, max_frames, scales, stride, emit, stats) -> None:
    for video_id, recs in groups.items():
        stats.videos += 1
        path = _open_video(videos_dir, video_id, recs, emit)
        if path is None:
            continue
        try:
            duration = video_duration(path, (r.duration_s for r in recs))
            times = sample_video_times(duration, fps, max_frames, multiple_of=1)
            frame_emb = clip_frame_embeddings(encoder, path, times)
        except (VideoError, ValueError) as exc:
            _video_failed(recs, exc, emit)
            continue
        results = clip_ground_video(
            encoder, frame_emb, duration, [r.query for r in recs], scales, stride
        )
        for rec, (s, e, score) in zip(recs, results, strict=True):
            emit(rec, (s, e), f"clip window score={score:.4f}")


def _run_model(
    groups, videos_dir, runner, fps, max_frames, max_side, batch_size, emit, stats
) -> None:
    batch: list[tuple[GroundingRecord, tuple]] = []

    def flush() -> None:
        if not batch:
            return
        texts = model_ground_batch(runner, [item for _, item in batch])
        for (rec, _), text in zip(batch, texts, strict=True):
            emit(rec, parse_answer(text), text)
        batch.clear()

    for video_id, recs in groups.items():
        stats.videos += 1
        path = _open_video(videos_dir, video_id, recs, emit)
        if path is None:
            continue
        try:
            duration = video_duration(path, (r.duration_s for r in recs))
            times = sample_video_times(duration, fps, max_frames)
            frames = read_frames(path, times, max_side)
        except (VideoError, ValueError) as exc:
            _video_failed(recs, exc, emit)
            continue
        for rec in recs:
            batch.append((rec, (frames, times, duration, rec.query)))
            if len(batch) >= batch_size:
                flush()
    flush()
