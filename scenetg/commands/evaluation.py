"""Evaluation commands: `eval` (metrics), `ground` (grounding inference), `answer`
(Ground-then-Answer QA) and `eval-suite` (every benchmark x method in a config)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from scenetg.atomic_files import check_output_file, write_json_atomic
from scenetg.commands.app import app, console, out_console
from scenetg.config_fields import coerce_batch_size, coerce_float, coerce_int, coerce_vllm_memory
from scenetg.errors import ScenetgError
from scenetg.eval.answering import (
    DEFAULT_CONTEXT_FRACTION,
    DEFAULT_CONTEXT_S,
    DEFAULT_N_FRAMES,
    format_answer_summary,
)
from scenetg.eval.answering import answer as run_answer
from scenetg.eval.baselines import DEFAULT_CENTER_FRACTION
from scenetg.eval.grounding import ground as run_ground
from scenetg.eval.metrics import compute_metrics, match_warnings, resolve_protocol
from scenetg.eval.predictions import read_predictions
from scenetg.eval.protocols import PROTOCOLS, get_protocol
from scenetg.eval.qa_loaders import load_qa_report
from scenetg.eval.report import format_markdown
from scenetg.eval.sharding import ENGINES, EvalEngineConfig
from scenetg.eval.suite import load_eval_config, run_eval_suite
from scenetg.eval.uncertainty import DEFAULT_RESAMPLES, DEFAULT_SEED
from scenetg.grounding.candidates import DEFAULT_NMS_IOU, DEFAULT_TEMPERATURE
from scenetg.grounding.loaders import load_annotations
from scenetg.grounding.prompts import DEFAULT_FPS, DEFAULT_MAX_FRAMES
from scenetg.models.runner import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS
from scenetg.progress import rich_reporter

PROTOCOL_NAMES = tuple(PROTOCOLS)
ENGINE_HELP = ("local, or ray: videos decoded in Ray CPU tasks, queries batched in model actors "
               "(one model each, a GPU each when the cluster has them); same rows as local.")
ACTORS_HELP = "--engine ray: model actors (one per GPU to use)."
RAY_ADDRESS_HELP = "--engine ray: cluster address (auto, ray://host:10001); default: start a local Ray."


def engine_config(name: str, actors: int, ray_address: str | None) -> EvalEngineConfig:
    """The engine of `ground` / `answer` from their options (errors name the option)."""
    if name not in ENGINES:
        raise ScenetgError(f"--engine: expected one of {', '.join(ENGINES)}, got {name!r}")
    return EvalEngineConfig(name=name, ray_address=ray_address,
                            model_actors=coerce_int("--actors", actors, min=1))
VLLM_MEMORY_HELP = ("With --backend vllm: the share of the GPU's memory the engine takes (of host RAM on "
                    "vLLM's CPU build), or auto (0.9 on a GPU, a 1 GiB KV cache on the CPU build).")


@app.command("eval")
def eval_(
    predictions: Annotated[Path, typer.Option("--predictions", "-p", help="Predictions JSONL: {qid, pred, raw} per line.")],
    annotations: Annotated[Path, typer.Option("--annotations", "-a", help="Benchmark annotation file or SceneTG folder.")],
    format: Annotated[str, typer.Option("--format", "-f", help="auto, charades, jsonl, activitynet, ego4d_nlq, mad, scenetg.")] = "auto",
    protocol: Annotated[str, typer.Option("--protocol", help=f"Score as a benchmark's official script does: {', '.join(PROTOCOL_NAMES)} (threshold, GT/prediction clipping, denominator; see docs/CHOICES.md).")] = "default",
    strict: Annotated[bool, typer.Option("--strict", help="R1@m counts IoU > m (as the Ego4D-NLQ, Time-R1 and 2D-TAN scripts do) instead of >= m, on top of --protocol.")] = False,
    durations_csv: Annotated[Path | None, typer.Option("--durations", help="Metadata CSV with video lengths (e.g. Charades_v1_test.csv).")] = None,
    videos: Annotated[Path | None, typer.Option("--videos", help="Videos folder, to probe durations a file lacks.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Split of a SceneTG dataset.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the metrics JSON here (default: next to the predictions).")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Resamples of the 95% bootstrap interval over queries of each R1 and mIoU (0: none).")] = DEFAULT_RESAMPLES,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resamples.")] = DEFAULT_SEED,
) -> None:
    """Temporal grounding metrics: R1@0.3/0.5/0.7 and mIoU (with 95% bootstrap intervals), by GT
    length too; R@k over ranked windows where the protocol names it (ego4d_nlq, mad)."""
    import json


    chosen = get_protocol(protocol, strict)  # a bad name fails before any file is read
    resamples = coerce_int("--bootstrap", bootstrap, min=0)
    target = out or predictions.with_suffix(".metrics.json")
    check_output_file(target, "--out")
    if target.resolve() == predictions.resolve():
        raise ScenetgError(f"--out {target}: is the predictions file; give another path")
    records, report = load_annotations(annotations, format, metadata_csv=durations_csv,
                                       videos_dir=videos, split=split,
                                       keep_no_text=chosen.keep_no_text)
    chosen = resolve_protocol(chosen, report.format, records)
    if report.has_issues:
        console.print(report.summary(), highlight=False)
    preds = read_predictions(predictions)
    metrics = compute_metrics(records, preds, protocol=chosen, bootstrap=resamples, seed=seed)
    warnings, nothing_matched = match_warnings(metrics, predictions)
    if preds.duplicates:
        warnings.append(f"{predictions}: {preds.duplicates} line(s) repeat a qid with the same "
                        "prediction (counted once)")
    if nothing_matched:  # a failed eval writes no metrics file (an old one stays as it was)
        raise ScenetgError(nothing_matched)
    write_json_atomic(target, metrics)
    if json_out:
        print(json.dumps(metrics, sort_keys=True))
    else:
        out_console.print(format_markdown(metrics), highlight=False)
        console.print(f"metrics: {target}")
    for line in warnings:
        sys.stderr.write(f"warning: {line}\n")


@app.command()
def ground(
    annotations: Annotated[Path, typer.Option("--annotations", "-a", help="Benchmark annotation file or SceneTG folder.")],
    videos: Annotated[Path, typer.Option("--videos", help="Folder with the videos (VIDEO_ID.ext).")],
    out: Annotated[Path, typer.Option("--out", help="Predictions JSONL (appended; finished qids are skipped).")],
    model: Annotated[str | None, typer.Option("--model", help="MLLM id/folder (method model) or OpenCLIP name/folder (method clip).")] = None,
    method: Annotated[str, typer.Option("--method", help="model | center | clip.")] = "model",
    format: Annotated[str, typer.Option("--format", "-f", help="Annotation format (auto-detected by default).")] = "auto",
    split: Annotated[str | None, typer.Option("--split", help="Split of a SceneTG dataset.")] = None,
    durations_csv: Annotated[Path | None, typer.Option("--durations", help="Metadata CSV with video lengths.")] = None,
    fps: Annotated[float, typer.Option("--fps", help="Frames per second sampled (as in training).")] = DEFAULT_FPS,
    max_frames: Annotated[int, typer.Option("--max-frames", help="At most this many frames per video.")] = DEFAULT_MAX_FRAMES,
    batch_size: Annotated[str, typer.Option("--batch-size", help="Queries per generate call, across videos: auto (4 on CPU, by free GPU memory) or N.")] = DEFAULT_BATCH_SIZE,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N queries.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto, bfloat16, float16, float32.")] = "auto",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = DEFAULT_MAX_NEW_TOKENS,
    center_fraction: Annotated[str, typer.Option("--center-fraction", help="center baseline: window length / duration, or auto.")] = str(DEFAULT_CENTER_FRACTION),
    decode: Annotated[str, typer.Option("--decode", help="Decode attention: auto (no-cudnn on CUDA), no-cudnn, static (static KV cache), plain.")] = "auto",
    backend: Annotated[str, typer.Option("--backend", help="MLLM engine: transformers, or vllm (in-process vLLM engine for large evals; pip install 'scenetg\\[vllm]').")] = "transformers",
    candidates: Annotated[int, typer.Option("--candidates", help="K ranked windows per query (for R@k): method model samples K answers at --temperature, adds the greedy one, ranks them by sequence log-prob and drops overlaps above --nms-iou; method clip ranks its sliding windows. 1: one window.")] = 1,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature of --candidates.")] = DEFAULT_TEMPERATURE,
    nms_iou: Annotated[float, typer.Option("--nms-iou", help="Candidates overlapping a better one by more than this IoU are dropped.")] = DEFAULT_NMS_IOU,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --candidates samples.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an --out made by another producer (model, method, settings) instead of refusing.")] = False,
    engine: Annotated[str, typer.Option("--engine", help=ENGINE_HELP)] = "local",
    actors: Annotated[int, typer.Option("--actors", help=ACTORS_HELP)] = 1,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help=RAY_ADDRESS_HELP)] = None,
    vllm_memory: Annotated[str, typer.Option("--vllm-memory", help=VLLM_MEMORY_HELP)] = "auto",
) -> None:
    """Grounding inference: one predicted \\[start, end] per query, raw model text kept (with
    --candidates K, also K ranked windows).

    Exit 3 when some queries failed (video missing or unreadable; their rows say why)."""

    records, report = load_annotations(annotations, format, metadata_csv=durations_csv,
                                       videos_dir=videos, split=split)
    if report.has_issues:
        console.print(report.summary(), highlight=False)
    if method in ("model", "clip") and not model:
        raise ScenetgError(f"--method {method} needs --model")
    fraction: float | str = "auto" if center_fraction.strip().lower() == "auto" else coerce_float(
        "--center-fraction", center_fraction, min=0.0, max=1.0, min_open=True)
    fps = coerce_float("--fps", fps, min=0.0, min_open=True)
    limit = None if limit is None else coerce_int("--limit", limit, min=0)
    batch = coerce_batch_size("--batch-size", batch_size)
    memory = coerce_vllm_memory("--vllm-memory", vllm_memory)
    with rich_reporter(console) as reporter:
        stats = run_ground(records, videos, out, method=method, model=model, fps=fps,
                           max_frames=max_frames, batch_size=batch, limit=limit,
                           reporter=reporter, dtype=dtype, device=device,
                           max_new_tokens=max_new_tokens, center_fraction=fraction, decode=decode,
                           backend=backend, candidates=coerce_int("--candidates", candidates, min=1),
                           temperature=coerce_float("--temperature", temperature, min=0.0, min_open=True),
                           nms_iou=coerce_float("--nms-iou", nms_iou, min=0.0, max=1.0), seed=seed,
                           overwrite=overwrite, engine=engine_config(engine, actors, ray_address),
                           vllm_memory=memory)
    out_console.print(stats.summary(), highlight=False)
    if stats.failed:
        console.print(f"finished; {stats.failed} of {stats.written} queries failed "
                      f"(video missing or unreadable; see their rows in {out})", highlight=False)
        raise typer.Exit(3)


@app.command()
def answer(
    qa: Annotated[Path, typer.Option("--qa", help="Multiple-choice QA file (Video-MME, LongVideoBench, MLVU).")],
    videos: Annotated[Path, typer.Option("--videos", help="Folder with the videos.")],
    out: Annotated[Path, typer.Option("--out", help="Per-question rows JSONL (resumable).")],
    answerer: Annotated[str, typer.Option("--answerer", help="MLLM id/folder that answers.")],
    qa_format: Annotated[str, typer.Option("--qa-format", help="auto, videomme, longvideobench, mlvu.")] = "auto",
    grounder: Annotated[str, typer.Option("--grounder", help="model | clip.")] = "model",
    grounder_model: Annotated[str | None, typer.Option("--grounder-model", help="Grounding MLLM or OpenCLIP (default: the answerer).")] = None,
    frames: Annotated[int, typer.Option("--frames", help="N frames for both arms.")] = DEFAULT_N_FRAMES,
    context_fraction: Annotated[float, typer.Option("--context-fraction", help="Widen the span by this fraction of its length per side.")] = DEFAULT_CONTEXT_FRACTION,
    context_s: Annotated[float, typer.Option("--context-s", help="...and by this many seconds per side.")] = DEFAULT_CONTEXT_S,
    batch_size: Annotated[str, typer.Option("--batch-size", help="Items per generate call, across videos: auto (4 on CPU, by free GPU memory) or N.")] = DEFAULT_BATCH_SIZE,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N questions.")] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype")] = "auto",
    summary: Annotated[Path | None, typer.Option("--summary", help="Summary JSON path (default: next to --out).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="MLLM engine: transformers, or vllm (in-process vLLM engine; pip install 'scenetg\\[vllm]').")] = "transformers",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an --out made by another producer (models, settings) instead of refusing.")] = False,
    engine: Annotated[str, typer.Option("--engine", help=ENGINE_HELP)] = "local",
    actors: Annotated[int, typer.Option("--actors", help=ACTORS_HELP)] = 1,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help=RAY_ADDRESS_HELP)] = None,
    vllm_memory: Annotated[str, typer.Option("--vllm-memory", help=VLLM_MEMORY_HELP + " Two engines (a separate --grounder-model) split it.")] = "auto",
) -> None:
    """Ground-then-Answer QA and the uniform-sampling baseline with the same frame budget.

    Exit 3 when some questions failed (video missing or unreadable)."""

    batch = coerce_batch_size("--batch-size", batch_size)
    context_fraction = coerce_float("--context-fraction", context_fraction, min=0.0)
    context_s = coerce_float("--context-s", context_s, min=0.0)
    frames = coerce_int("--frames", frames, min=1)
    limit = None if limit is None else coerce_int("--limit", limit, min=0)
    summary_target = summary or out.with_suffix(".summary.json")
    check_output_file(summary_target, "--summary")
    memory = coerce_vllm_memory("--vllm-memory", vllm_memory)
    records, qa_report = load_qa_report(qa, qa_format)
    if qa_report.no_answer:
        sys.stderr.write(f"warning: {qa_report.summary()}\n")
    with rich_reporter(console) as reporter:
        result = run_answer(records, videos, out, answerer, grounder=grounder,
                            grounder_model=grounder_model, n_frames=frames,
                            context_fraction=context_fraction, context_s=context_s,
                            batch_size=batch, limit=limit, reporter=reporter,
                            dtype=dtype, device=device,
                            summary_path=summary_target, backend=backend,
                            overwrite=overwrite,
                            engine=engine_config(engine, actors, ray_address),
                            vllm_memory=memory)
    out_console.print(format_answer_summary(result), highlight=False)
    if result.get("errors"):
        console.print(f"finished; {result['errors']} of {result['n']} questions failed "
                      f"(video missing or unreadable; see their rows in {out})", highlight=False)
        raise typer.Exit(3)


@app.command("eval-suite")
def eval_suite(
    config: Annotated[Path, typer.Option("--config", "-c", help="Evaluation config (pipelines/eval.yaml).")],
    out: Annotated[str | None, typer.Option("--out", help="Output folder (overrides out).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Grounding MLLM (overrides model).")] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="local or ray (overrides engine.name; engine.model_actors etc. in the config).")] = None,
) -> None:
    """Ground and score every benchmark x method in a config; writes report.md + IoU PNG.

    Exit 3 when some queries failed (video missing or unreadable; they score as misses and their
    prediction rows say why; a rerun retries them)."""

    cfg = load_eval_config(config, {"out": out, "model": model, "engine.name": engine})
    with rich_reporter(console) as reporter:
        results, report = run_eval_suite(cfg, reporter)
    out_console.print(report.read_text(), highlight=False)
    console.print(f"report: {report}")
    failed = [f"{r.benchmark}/{r.method}: {r.failed}" for r in results if r.failed]
    if failed:
        console.print(f"finished; queries failed ({', '.join(failed)}); see the rows starting "
                      f"'error:' in the predictions files")
        raise typer.Exit(3)
