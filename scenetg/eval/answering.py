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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scenetg.atomic_files import write_bytes_atomic
from scenetg.config_fields import coerce_batch_size, coerce_float, coerce_int
from scenetg.errors import ConfigError
from scenetg.eval.answer_job import (
    DEFAULT_ANSWER_TOKENS,
    DEFAULT_CONTEXT_FRACTION,
    DEFAULT_CONTEXT_S,
    DEFAULT_N_FRAMES,
    GROUNDERS,
    AnswerJob,
    answer_chunks,
    answer_window,  # noqa: F401  (public here too)
)
from scenetg.eval.answer_summary import format_answer_summary, summarize_answers  # noqa: F401
from scenetg.eval.baselines import (
    CLIP_SCALES,
    CLIP_STRIDE,
)
from scenetg.eval.ground_model import by_visual_size
from scenetg.eval.ground_rows import group_by_video, read_done_rows
from scenetg.eval.producer import describe_model, prepare_output, prompt_version, with_fingerprint
from scenetg.eval.qa_loaders import (  # noqa: F401 - re-exported: `answer` callers load QA here
    DURATION_GROUPS,
    QA_FORMATS,
    QARecord,
    duration_group,
    load_qa,
)
from scenetg.eval.sharding import EvalEngineConfig, run_on_ray
from scenetg.grounding.prompts import (
    DEFAULT_FPS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_SIDE,
)
from scenetg.grounding.samples import (
    FrameSampling,
)
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
        job = AnswerJob(
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
        chunks = answer_chunks(job, videos_dir, order)
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
    job = AnswerJob(runner=None, ground_engine=None, **settings)
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


def _prepare_on_ray(item: dict, job: AnswerJob, videos_dir: str) -> dict:
    """A Ray CPU task: the video's grounding and uniform frames (or its error rows)."""
    return {**item, "video": job.prepare(videos_dir, item["video_id"], item["recs"])}


class AnswerWorker:
    """A Ray actor's work: loads the answerer (and a separate grounder) once; each call runs both
    stages on prepared videos, batched across them (`AnswerJob.chunk_rows`), one result per video."""

    def __init__(self, job: AnswerJob, answerer: str, grounder_model: str | None, dtype: str,
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


