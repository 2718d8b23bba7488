"""Ground-then-Answer (`scenetg answer`): multiple-choice long-video QA through a grounded span.

For each question, stage 1 grounds the question in the video (an MLLM with the training prompt, or
the CLIP sliding-window grounder of `scenetg.eval.grounding`); stage 2 shows the answerer N frames
sampled inside the grounded span widened by some context. The baseline shows the same answerer N
frames sampled uniformly over the whole video. Same answerer, prompt (`mcq_prompt`), greedy
decoding and parser (`parse_choice`) for both, so the only difference is where the frames are from.

Loaders read Video-MME, LongVideoBench and MLVU files (JSON, JSONL or Parquet) into `QARecord`s.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenetg.atomic_files import write_bytes_atomic
from scenetg.config_fields import coerce_batch_size, coerce_float, coerce_int
from scenetg.errors import ConfigError, VideoError
from scenetg.eval.answer_summary import format_answer_summary, summarize_answers  # noqa: F401
from scenetg.eval.baselines import (
    CLIP_SCALES,
    CLIP_STRIDE,
    clip_frame_embeddings,
    clip_frame_times,
    clip_ground_video,
)
from scenetg.eval.grounding import ERROR_PREFIX, by_visual_size, group_by_video, read_done_rows
from scenetg.eval.producer import describe_model, prepare_output, prompt_version, with_fingerprint
from scenetg.eval.qa_loaders import (  # noqa: F401 - re-exported: `answer` callers load QA here
    DURATION_GROUPS,
    QA_FORMATS,
    QARecord,
    duration_group,
    load_qa,
)
from scenetg.eval.sharding import EvalEngineConfig, run_on_ray
from scenetg.grounding.parsing import parse_answer, parse_choice
from scenetg.grounding.prompts import (
    DEFAULT_FPS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_SIDE,
    mcq_prompt,
    span_times,
)
from scenetg.grounding.samples import (
    FrameSampling,
    GroundingInput,
    SampledVideo,
    generate_grounding,
    generate_texts,
)
from scenetg.models.batch_size import runner_batch_size
from scenetg.models.runner import (
    BACKENDS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    VLLM_MEMORY_KEY,
    as_clip,
    as_runner,
    coerce_vllm_memory,
)
from scenetg.prefetch import Prefetch
from scenetg.progress import Reporter
from scenetg.video.frames import read_frames_at
from scenetg.video.lookup import find_video, missing_video_message
from scenetg.video.probe import probe_video

GROUNDERS = ("model", "clip")

DEFAULT_N_FRAMES = 16
DEFAULT_CONTEXT_FRACTION = 0.5
"""The grounded span is widened on each side by this fraction of its own length..."""
DEFAULT_CONTEXT_S = 0.0
"""...plus this many seconds, then clipped to the video."""
DEFAULT_ANSWER_TOKENS = 32


# ---------------------------------------------------------------------------------- windows


def answer_window(
    span: tuple[float, float] | None,
    duration_s: float,
    context_fraction: float = DEFAULT_CONTEXT_FRACTION,
    context_s: float = DEFAULT_CONTEXT_S,
) -> tuple[float, float] | None:
    """The span the answerer's frames come from, or None when the grounding is unusable.

    The span is clipped to ``[0, D]``; when empty after that (unparsable, ``start >= end``, all
    outside the video) the result is None and the caller falls back to the whole video. Else it
    is widened on each side by ``context_fraction · length + context_s`` and clipped again.
    """
    if span is None:
        return None
    s, e = (min(max(float(x), 0.0), duration_s) for x in span)
    if not (math.isfinite(s) and math.isfinite(e)) or e <= s:
        return None
    pad = context_fraction * (e - s) + context_s
    return max(0.0, s - pad), min(duration_s, e + pad)


# ------------------------------------------------------------------------------------ answer


def answer(
    records: Sequence[QARecord],
    videos_dir: str | Path,
    out_path: str | Path,
    answerer: Any,
    grounder: str = "model",
    grounder_model: Any = None,
    n_frames: int = DEFAULT_N_FRAMES,
    context_fraction: float = DEFAULT_CONTEXT_FRACTION,
    context_s: float = DEFAULT_CONTEXT_S,
    fps: float = DEFAULT_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    batch_size: int | str = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    reporter: Reporter | None = None,
    *,
    dtype: str = "auto",
    device: str = "auto",
    max_new_tokens_ground: int = DEFAULT_MAX_NEW_TOKENS,
    max_new_tokens_answer: int = DEFAULT_ANSWER_TOKENS,
    max_side: int | None = DEFAULT_MAX_SIDE,
    clip_scales: Sequence[float] = CLIP_SCALES,
    clip_stride: float = CLIP_STRIDE,
    summary_path: str | Path | None = None,
    backend: str = "transformers",
    overwrite: bool = False,
    engine: EvalEngineConfig | None = None,
    vllm_memory: float | str = "auto",
) -> dict:
    """Run Ground-then-Answer and the uniform baseline on `records` (the first `limit`).

    `answerer` is an MLLM id/path (or a loaded `QwenRunner`). `grounder` is ``model`` (the
    MLLM `grounder_model`, default the answerer, with the grounding prompt at `fps` /
    `max_frames`) or ``clip`` (`grounder_model` an OpenCLIP name/path, frames at `fps`). Both
    arms see `n_frames` frames. Appends one row per question to `out_path` (resumable like
    `ground`: done qids skipped, error rows retried) and writes the summary JSON to
    `summary_path` (default ``<out_path stem>.summary.json``); returns the summary. `backend`
    runs the MLLMs on ``transformers`` or ``vllm`` (`scenetg.models.runner.load_runner`). The
    producer (`answer_producer`) is recorded beside `out_path` as `ground` does; resuming rows of
    another producer is a ConfigError unless `overwrite`. `engine` ``ray`` (model grounder
    only) decodes each video's frames in a CPU task and runs both stages in model actors. Two vLLM engines split `vllm_memory` (``--vllm-memory``).
    """
    if grounder not in GROUNDERS:
        raise ConfigError(f"unknown grounder {grounder!r}; use one of {', '.join(GROUNDERS)}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    batch_size = coerce_batch_size("batch_size", batch_size)
    vllm_memory = coerce_vllm_memory(VLLM_MEMORY_KEY, vllm_memory)
    n_frames = coerce_int("n_frames", n_frames, min=1)
    fps = coerce_float("fps", fps, min=0.0, min_open=True)
    max_frames = coerce_int("max_frames", max_frames, min=1)
    context_fraction = coerce_float("context_fraction", context_fraction, min=0.0)
    context_s = coerce_float("context_s", context_s, min=0.0)
    limit = None if limit is None else coerce_int("limit", limit, min=0)
    t0 = time.perf_counter()
    reporter = reporter or Reporter()
    todo = list(records)[: limit if limit is not None else None]
    out = Path(out_path)
    prepare_output(out, answer_producer(
        answerer, grounder, grounder_model, n_frames=n_frames, context_fraction=context_fraction,
        context_s=context_s, fps=fps, max_frames=max_frames, max_side=max_side, backend=backend,
        dtype=dtype, max_new_tokens_ground=max_new_tokens_ground,
        max_new_tokens_answer=max_new_tokens_answer, clip_scales=clip_scales,
        clip_stride=clip_stride,
    ), overwrite)
    done = {q for q, row in read_done_rows(out).items() if not row.get("error")}
    pending = [r for r in todo if str(r.qid) not in done]

    settings = {
        "grounder": grounder,
        "n_frames": int(n_frames),
        "context_fraction": float(context_fraction),
        "context_s": float(context_s),
        "fps": float(fps),
        "max_frames": int(max_frames),
    }
    on_ray = engine is not None and engine.name == "ray"
    if on_ray and grounder != "model":
        raise ConfigError("--engine ray runs --grounder model; run --grounder clip with --engine local")
    if on_ray and pending:
        settings = dict(grounder=grounder, n_frames=n_frames, context_fraction=context_fraction,
                        context_s=context_s, fps=fps, max_frames=max_frames, batch_size=batch_size,
                        max_side=max_side, max_new_tokens_ground=int(max_new_tokens_ground),
                        max_new_tokens_answer=int(max_new_tokens_answer),
                        clip_scales=tuple(clip_scales), clip_stride=float(clip_stride))
        _answer_on_ray(pending, videos_dir, out, settings, answerer, grounder_model, dtype,
                       device, backend, engine, reporter, vllm_memory)
    elif pending:
        two_mllms = grounder == "model" and grounder_model not in (None, answerer)
        engines = 2 if two_mllms else 1
        runner = as_runner(answerer, dtype, device, max_new_tokens_ground, "--answerer",
                           backend=backend, vllm_memory=vllm_memory, vllm_engines=engines)
        if grounder == "clip":
            ground_engine = as_clip(grounder_model, device, "--grounder-model")
        elif not two_mllms:
            ground_engine = runner
        else:
            ground_engine = as_runner(grounder_model, dtype, device, max_new_tokens_ground,
                                      "--grounder-model", backend=backend,
                                      vllm_memory=vllm_memory, vllm_engines=engines)
        job = _Job(
            runner=runner,
            ground_engine=ground_engine,
            grounder=grounder,
            n_frames=int(n_frames),
            context_fraction=float(context_fraction),
            context_s=float(context_s),
            fps=float(fps),
            max_frames=int(max_frames),
            batch_size=batch_size,
            max_side=max_side,
            max_new_tokens_ground=int(max_new_tokens_ground),
            max_new_tokens_answer=int(max_new_tokens_answer),
            clip_scales=tuple(clip_scales),
            clip_stride=float(clip_stride),
        )
        reporter.start("answer", len(pending))
        sampling = FrameSampling(float(fps), int(max_frames), max_side)
        order = by_visual_size(group_by_video(pending), sampling)
        chunks = _chunks(job, videos_dir, order)
        # The model grounder's frames decode in a thread while the model runs (a CLIP grounder
        # runs its model while preparing, so it stays in this thread).
        ahead = Prefetch(chunks, 1) if grounder == "model" else contextlib.nullcontext(chunks)
        with out.open("a", encoding="utf-8") as fh, ahead as chunks:
            for chunk in chunks:
                rows = chunk if chunk and isinstance(chunk[0], dict) else job.chunk_rows(chunk)
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    reporter.advance("answer")
                fh.flush()
    rows = read_done_rows(out)
    summary = summarize_answers(todo, rows)
    summary.update(settings)
    summary["skipped"] = len(todo) - len(pending)
    summary["seconds"] = time.perf_counter() - t0
    target = (
        Path(summary_path)
        if summary_path is not None
        else out.with_name(out.stem + ".summary.json")
    )
    write_bytes_atomic(target, (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
    summary["summary_path"] = str(target)
    return summary


def answer_producer(
    answerer: Any, grounder: str, grounder_model: Any, *, n_frames: int, context_fraction: float,
    context_s: float, fps: float, max_frames: int, max_side: int | None, backend: str, dtype: str,
    max_new_tokens_ground: int, max_new_tokens_answer: int, clip_scales: Sequence[float],
    clip_stride: float,
) -> dict[str, Any]:
    """What an `answer` run's rows depend on (its sidecar, `scenetg.eval.producer`)."""
    ground_ref = grounder_model if grounder_model is not None else answerer
    grounder_desc = describe_model(ground_ref)
    producer: dict[str, Any] = {
        "task": "answer",
        "answerer": describe_model(answerer),
        "grounder": grounder,
        "grounder_model": grounder_desc,
        "n_frames": n_frames, "context_fraction": context_fraction, "context_s": context_s,
        "fps": fps, "max_frames": max_frames, "max_side": max_side,
        "backend": backend, "dtype": dtype,
        "prompt_version": {"ground": prompt_version("ground"), "answer": prompt_version("answer")},
        "decoding": {"greedy": True, "max_new_tokens_ground": int(max_new_tokens_ground),
                     "max_new_tokens_answer": int(max_new_tokens_answer)},
    }
    if grounder == "clip":
        producer.update(clip_scales=[float(x) for x in clip_scales], clip_stride=float(clip_stride))
    return with_fingerprint(producer)


def _answer_on_ray(pending, videos_dir, out: Path, settings: dict, answerer, grounder_model,
                   dtype: str, device: str, backend: str, engine, reporter: Reporter,
                   vllm_memory: float | str = "auto") -> None:
    """`answer`'s loop on Ray (`scenetg.eval.sharding`): rows appended as results arrive."""
    for name, model in (("--answerer", answerer), ("--grounder-model", grounder_model)):
        if model is not None and not isinstance(model, (str, Path)):
            raise ConfigError(f"--engine ray loads the models in each actor: give {name} as an "
                              "id or folder, not a loaded runner")
    job = _Job(runner=None, ground_engine=None, **settings)
    sampling = FrameSampling(job.fps, job.max_frames, job.max_side)
    order = by_visual_size(group_by_video(pending), sampling)
    items = [{"group": i, "video_id": vid, "recs": recs} for i, (vid, recs) in enumerate(order)]
    prepare = functools.partial(_prepare_on_ray, job=job, videos_dir=str(videos_dir))
    make_worker = functools.partial(
        AnswerWorker, job, str(answerer), None if grounder_model is None else str(grounder_model),
        dtype, device, backend, vllm_memory)
    reporter.start("answer", len(pending))
    with out.open("a", encoding="utf-8") as fh:
        for result in run_on_ray(items, prepare, make_worker, engine):
            for row in result["rows"]:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                reporter.advance("answer")
            fh.flush()


def _prepare_on_ray(item: dict, job: _Job, videos_dir: str) -> dict:
    """A Ray CPU task: the video's grounding and uniform frames (or its error rows)."""
    return {**item, "video": job.prepare(videos_dir, item["video_id"], item["recs"])}


class AnswerWorker:
    """A Ray actor's work: loads the answerer (and a separate grounder) once; each call runs both
    stages on prepared videos, batched across them (`_Job.chunk_rows`), one result per video."""

    def __init__(self, job: _Job, answerer: str, grounder_model: str | None, dtype: str,
                 device: str, backend: str, vllm_memory: float | str = "auto"):
        two = grounder_model not in (None, answerer)
        engines = 2 if two else 1  # two vLLM engines in one actor split the memory setting
        self.job = job
        job.runner = as_runner(answerer, dtype, device, job.max_new_tokens_ground, "--answerer",
                               backend=backend, vllm_memory=vllm_memory, vllm_engines=engines)
        job.ground_engine = job.runner if not two else as_runner(
            grounder_model, dtype, device, job.max_new_tokens_ground, "--grounder-model",
            backend=backend, vllm_memory=vllm_memory, vllm_engines=engines)

    def __call__(self, items: list[dict]) -> list[dict]:
        videos = [it["video"] for it in items if not isinstance(it["video"], list)]
        rows = self.job.chunk_rows(videos) if videos else []
        results = []
        for it in items:
            if isinstance(it["video"], list):
                results.append({"group": it["group"], "rows": it["video"]})
            else:
                n = len(it["video"].recs)
                results.append({"group": it["group"], "rows": rows[:n]})
                rows = rows[n:]
        return results


ANSWER_CHUNK_ITEMS = 32
"""Questions gathered (over consecutive videos) before their batches run: batches span videos
while the frames held stay bounded (one chunk's videos)."""


@dataclass
class _Video:
    """One video's questions with the frames both stages need (decoded once)."""

    path: Path
    recs: Sequence[QARecord]
    duration: float
    uniform: SampledVideo
    ground_video: SampledVideo | None = None
    spans: list | None = None
    raw_ground: list[str] | None = None


@dataclass
class _Job:
    """One `answer` run's settings and loaded models; `chunk_rows` does consecutive videos,
    batching their grounding and answering items across videos."""

    runner: Any
    ground_engine: Any
    grounder: str
    n_frames: int
    context_fraction: float
    context_s: float
    fps: float
    max_frames: int
    batch_size: int | str
    max_side: int | None
    max_new_tokens_ground: int
    max_new_tokens_answer: int
    clip_scales: tuple[float, ...]
    clip_stride: float

    def prepare(self, videos_dir, video_id: str, recs: Sequence[QARecord]) -> _Video | list[dict]:
        """The video's frames (and its CLIP grounding), or one error row per question."""
        try:
            path = find_video(videos_dir, video_id)
            if path is None:
                message = f"{ERROR_PREFIX} {missing_video_message(videos_dir, video_id)}"
                return [_error_row(r, message) for r in recs]
            return self._decode(path, recs)
        except VideoError as exc:
            return [_error_row(r, f"{ERROR_PREFIX} {exc}") for r in recs]

    def _batched(self, items: list, frames_of, fn) -> list:
        """`fn` over `items` in batches (``auto``: sized by each batch's first item's frames)."""
        out: list = []
        i = 0
        while i < len(items):
            size = runner_batch_size(self.runner, self.batch_size, frames_of(items[i]))
            out.extend(fn(items[i : i + size]))
            i += size
        return out

    def _decode(self, path: Path, recs: Sequence[QARecord]) -> _Video:

        duration = float(probe_video(path).duration_s)
        # Frames for the model start at each span's start (`span_times`), as grounding's do.
        uniform_times = span_times(0.0, duration, self.n_frames)
        if self.grounder == "clip":
            emb = clip_frame_embeddings(
                self.ground_engine, path, clip_frame_times(duration, self.fps, self.max_frames)
            )
            found = clip_ground_video(
                self.ground_engine, emb, duration, [r.question for r in recs],
                self.clip_scales, self.clip_stride,
            )
            uniform_frames = read_frames_at(path, uniform_times, max_side=self.max_side)
            return _Video(
                path, recs, duration, SampledVideo(uniform_frames, uniform_times, duration),
                spans=[(s, e) for s, e, _ in found],
                raw_ground=[f"clip window score={score:.4f}" for _, _, score in found],
            )
        times_g = FrameSampling(self.fps, self.max_frames, self.max_side).times(duration)
        frames = read_frames_at(path, list(times_g) + list(uniform_times), self.max_side)
        return _Video(
            path, recs, duration,
            SampledVideo(frames[len(times_g) :], uniform_times, duration),
            ground_video=SampledVideo(frames[: len(times_g)], times_g, duration),
        )

    def chunk_rows(self, videos: list[_Video]) -> list[dict]:
        """Rows for every question of `videos` (in their order); items batched across videos."""
        # Stage 1: ground every question (model grounder; CLIP grounded at decode time).
        items = [(v, GroundingInput(v.ground_video, r.question))
                 for v in videos if v.spans is None for r in v.recs]
        raw = self._batched(
            items, lambda it: it[1].video.frames,
            lambda b: generate_grounding(
                self.ground_engine, [g for _, g in b], self.max_new_tokens_ground),
        )
        for v in videos:
            if v.spans is None:
                v.raw_ground = raw[: len(v.recs)]
                raw = raw[len(v.recs) :]
                v.spans = [parse_answer(t) for t in v.raw_ground]
                v.ground_video = None  # its frames are no longer needed
        # Stage 2: frames inside each widened span (whole video when grounding is unusable).
        answer_items: list[tuple[SampledVideo, str]] = []
        windows_of = []
        for v in videos:
            windows = [answer_window(s, v.duration, self.context_fraction, self.context_s)
                       for s in v.spans]
            used = [w if w is not None else (0.0, v.duration) for w in windows]
            times_q = [span_times(a, b, self.n_frames) for a, b in used]
            flat = read_frames_at(v.path, [t for ts in times_q for t in ts], self.max_side)
            n = self.n_frames
            for k, (rec, (a, b)) in enumerate(zip(v.recs, used, strict=True)):
                prompt = mcq_prompt(rec.question, rec.options)
                answer_items.append((SampledVideo(flat[k * n : (k + 1) * n], times_q[k], b - a), prompt))
                answer_items.append((v.uniform, prompt))
            windows_of.append((windows, used))
        texts = self._batched(
            answer_items, lambda it: it[0].frames,
            lambda b: generate_texts(
                self.runner, [v for v, _ in b], [p for _, p in b], self.max_new_tokens_answer
            ),
        )
        rows = []
        for v, (windows, used) in zip(videos, windows_of, strict=True):
            for k, rec in enumerate(v.recs):
                raw_gta, raw_uni = texts[0], texts[1]
                texts = texts[2:]
                rows.append(_row(rec, v, k, windows, used, raw_gta, raw_uni))
        return rows


def _row(rec: QARecord, v: _Video, k: int, windows, used, raw_gta: str, raw_uni: str) -> dict:
    n_opt = len(rec.options)
    choice_gta = parse_choice(raw_gta, n_opt, rec.options)
    choice_uni = parse_choice(raw_uni, n_opt, rec.options)
    span = v.spans[k]
    return {
        "qid": rec.qid,
        "video_id": rec.video_id,
        "duration_group": rec.duration_group,
        "answer_index": rec.answer_index,
        "duration_s": v.duration,
        "span": None if span is None else [float(span[0]), float(span[1])],
        "window": [float(used[k][0]), float(used[k][1])],
        "fallback": windows[k] is None,
        "choice_gta": choice_gta,
        "correct_gta": choice_gta == rec.answer_index,
        "choice_uniform": choice_uni,
        "correct_uniform": choice_uni == rec.answer_index,
        "raw_ground": v.raw_ground[k],
        "raw_gta": raw_gta,
        "raw_uniform": raw_uni,
        "error": None,
    }


def _chunks(job: _Job, videos_dir, order) -> Iterator[list[dict] | list[_Video]]:
    """Error rows of a bad video at once; else prepared videos in chunks of about
    `ANSWER_CHUNK_ITEMS` questions."""
    chunk: list[_Video] = []
    for video_id, recs in order:
        prepared = job.prepare(videos_dir, video_id, recs)
        if isinstance(prepared, list):
            yield prepared
            continue
        chunk.append(prepared)
        if sum(len(v.recs) for v in chunk) >= ANSWER_CHUNK_ITEMS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _error_row(rec: QARecord, message: str) -> dict:
    return {
        "qid": rec.qid,
        "video_id": rec.video_id,
        "duration_group": rec.duration_group,
        "answer_index": rec.answer_index,
        "duration_s": None,
        "span": None,
        "window": None,
        "fallback": False,
        "choice_gta": None,
        "correct_gta": False,
        "choice_uniform": None,
        "correct_uniform": False,
        "raw_ground": None,
        "raw_gta": None,
        "raw_uniform": None,
        "error": message,
    }


