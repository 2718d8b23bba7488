"""`scenetg` command line: parses arguments and calls the library; no stage logic lives here.

Exit codes: 0 success; 1 unexpected failure; 2 bad input or usage; 3 finished, but some videos
failed (their rows in videos.parquet say why).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from scenetg.config_fields import coerce_batch_size
from scenetg.errors import ScenetgError
from scenetg.eval.answering import (
    DEFAULT_CONTEXT_FRACTION,
    DEFAULT_CONTEXT_S,
    DEFAULT_N_FRAMES,
)
from scenetg.eval.baselines import DEFAULT_CENTER_FRACTION
from scenetg.eval.protocols import PROTOCOLS
from scenetg.models.runner import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS
from scenetg.rl.prompts import DEFAULT_FPS, DEFAULT_MAX_FRAMES

PROTOCOL_NAMES = tuple(PROTOCOLS)

app = typer.Typer(
    help="SceneTG: long-video temporal grounding — build datasets, train with GRPO, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="Model utilities (tiny offline models).", no_args_is_help=True)
app.add_typer(models_app, name="models")

console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)
_state = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


# ----- shared options --------------------------------------------------------------------------
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Build config YAML (default: built-in defaults).")]
CaptionModelOpt = Annotated[str | None, typer.Option("--caption-model", help="Captioner: HF id or local folder (overrides captions.model).")]
ClipModelOpt = Annotated[str | None, typer.Option("--clip-model", help="OpenCLIP `arch:pretrained`, hf-hub:ID or local folder (overrides filter.clip_model).")]


def _load_config(config: Path | None, caption_model: str | None = None, clip_model: str | None = None,
                 engine: str | None = None, base: dict | None = None):
    from scenetg.config import load_build_config

    overrides = {}
    if caption_model:
        overrides["captions.model"] = caption_model
    if clip_model:
        overrides["filter.clip_model"] = clip_model
    if engine:
        overrides["engine.name"] = engine
    return load_build_config(config, overrides, base=base)


def _print_summary(summary, title: str) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("output", str(summary.out_dir))
    table.add_row("videos ok / failed", f"{summary.videos_ok} / {summary.videos_failed}")
    table.add_row("scenes", str(summary.scenes))
    table.add_row("queries generated / kept", f"{summary.queries_generated} / {summary.queries_kept}")
    if summary.split_counts:
        table.add_row("kept per split", ", ".join(f"{k} {v}" for k, v in sorted(summary.split_counts.items())))
    for stage, secs in summary.stage_seconds.items():
        table.add_row(f"time {stage}", f"{secs:.1f} s")
    out_console.print(table)
    for vid, err in sorted(summary.errors.items()):
        _failed_line(vid, err)


def _failed_line(video_id: str, error: str | None) -> None:
    """One line per failed video, whatever its name holds (newlines, rich markup)."""
    from rich.markup import escape

    from scenetg.curate.workdir import one_line

    console.print(f"[red]failed[/] {escape(one_line(video_id))}: {escape(one_line(error or ''))}", highlight=False)


def _finish(summary, title: str) -> None:
    _print_summary(summary, title)
    if summary.exit_code:
        console.print(f"finished; {summary.videos_failed} video(s) failed (see videos.parquet)")
        raise typer.Exit(summary.exit_code)


# ----- build -----------------------------------------------------------------------------------
@app.command()
def build(
    videos: Annotated[Path, typer.Option("--videos", help="Folder of videos (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="Output dataset folder.")],
    config: ConfigOpt = None,
    engine: Annotated[str | None, typer.Option("--engine", help="local or ray (overrides engine.name).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip finished videos and cached stages.")] = False,
    caption_model: CaptionModelOpt = None,
    clip_model: ClipModelOpt = None,
) -> None:
    """Build a grounding dataset: shots -> scenes -> captions -> CLIP filter -> Parquet + card."""
    from scenetg.curate.pipeline import build as run_build
    from scenetg.progress import rich_reporter

    cfg = _load_config(config, caption_model, clip_model, engine)
    with rich_reporter(console) as reporter:
        summary = run_build(videos, out, cfg, resume=resume, reporter=reporter)
    _finish(summary, "scenetg build")


@app.command()
def shots(
    videos: Annotated[Path, typer.Option("--videos", help="Folder of videos (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="Output dataset folder.")],
    config: ConfigOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip videos already done.")] = False,
) -> None:
    """Stage 1 alone: probe videos, detect shots, assemble scenes (OUT/work/*/shots.json)."""
    from scenetg.curate.pipeline import run_stage
    from scenetg.progress import rich_reporter

    cfg = _load_config(config)
    with rich_reporter(console) as reporter:
        b = run_stage(out, "shots", cfg, videos_dir=videos, resume=resume, reporter=reporter)
    _stage_report(b, "shots")


def _stage_report(b, stage: str) -> None:
    videos = b.manifest["videos"]
    failed = {k: v["error"] for k, v in videos.items() if v["status"] == "error"}
    out_console.print(f"{stage}: {len(videos) - len(failed)} video(s) done, {len(failed)} failed -> {b.work.out}")
    for vid, err in sorted(failed.items()):
        _failed_line(vid, err)
    if failed:
        raise typer.Exit(3)


def _stage_command(out: Path, stage: str, config: Path | None, caption_model: str | None,
                   clip_model: str | None) -> None:
    from scenetg.curate.pipeline import run_stage
    from scenetg.curate.workdir import WorkDir
    from scenetg.progress import rich_reporter

    manifest = WorkDir(out).require_manifest()
    cfg = _load_config(config, caption_model, clip_model, base=manifest["config"])
    with rich_reporter(console) as reporter:
        b = run_stage(out, stage, cfg, reporter=reporter)
    _stage_report(b, stage)


@app.command()
def captions(
    out: Annotated[Path, typer.Argument(help="Dataset folder made by `scenetg shots`.")],
    config: ConfigOpt = None,
    caption_model: CaptionModelOpt = None,
) -> None:
    """Stage 2 alone: caption every scene (cached per scene; a re-run never re-captions)."""
    _stage_command(out, "captions", config, caption_model, None)


@app.command("filter")
def filter_(
    out: Annotated[Path, typer.Argument(help="Dataset folder with captions.")],
    config: ConfigOpt = None,
    clip_model: ClipModelOpt = None,
) -> None:
    """Stage 3 alone: the CLIP ambiguity filter on every video's queries."""
    _stage_command(out, "filter", config, None, clip_model)


@app.command()
def export(out: Annotated[Path, typer.Argument(help="Dataset folder with filtered queries.")]) -> None:
    """Stage 4 alone: write videos/scenes/data/audit Parquet and the dataset card."""
    from scenetg.curate.pipeline import export_folder

    _finish(export_folder(out), "scenetg export")


@app.command()
def inspect(
    out: Annotated[Path, typer.Argument(help="Built dataset folder.")],
    html_report: Annotated[bool, typer.Option("--html/--no-html", help="Also write OUT/report/index.html with plots.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the headline statistics as one JSON object.")] = False,
) -> None:
    """Dataset statistics (tables), consistency checks, and an HTML report with plots and thumbnails."""
    import json

    from scenetg.curate.publish import dataset_problems
    from scenetg.curate.report import dataset_stats, load_tables, stats_tables, write_report
    from scenetg.curate.workdir import WorkDir

    if json_out:
        print(json.dumps(dataset_stats(out), sort_keys=True))
    else:
        tables = stats_tables(*load_tables(out))
        for key in ("summary", "splits", "drop_reasons", "distributions"):
            _print_frame(tables[key], f"{key.replace('_', ' ')}")
    problems = dataset_problems(out)
    for problem in problems:
        console.print(f"problem: {problem}", highlight=False, markup=False)
    if html_report:
        manifest = WorkDir(out).require_manifest()
        with console.status("writing report"):
            path = write_report(out, Path(manifest["videos_dir"]), problems=problems)
        console.print(f"report: {path}", highlight=False, markup=False)
    if problems:
        raise ScenetgError(f"{out}: {len(problems)} consistency problem(s), listed above; "
                           "re-run `scenetg export` or the build with --resume")


def _print_frame(df, title: str) -> None:
    """A pandas table as a rich table on stdout (numbers right-aligned, 3 decimals)."""
    import pandas as pd

    table = Table(title=title, title_justify="left")
    for col in df.columns:
        table.add_column(str(col), justify="left" if df[col].dtype == object else "right")
    for row in df.itertuples(index=False):
        table.add_row(*("–" if v is None or (not isinstance(v, str) and pd.isna(v))
                        else f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    out_console.print(table)


@app.command()
def publish(
    out: Annotated[Path, typer.Argument(help="Built dataset folder.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="Hub dataset repo, USER/NAME.")] = "",
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only validate the folder.")] = False,
) -> None:
    """Push Parquet shards + dataset card to the Hugging Face Hub (huggingface_hub)."""
    from scenetg.curate.publish import publish as run_publish

    if not dry_run and "/" not in repo_id:
        raise ScenetgError("--repo-id must be USER/NAME")
    files = run_publish(out, repo_id, private=private, dry_run=dry_run)
    if dry_run:
        out_console.print(f"would upload {len(files)} file(s) from {out}")
    else:
        out_console.print(f"uploaded {len(files)} file(s) from {out} to the dataset {repo_id} in one commit")


# ----- evaluation ------------------------------------------------------------------------------
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
) -> None:
    """Temporal grounding metrics: R1@0.3/0.5/0.7 and mIoU, by GT length too."""
    import json

    from scenetg.curate.workdir import write_json_atomic
    from scenetg.eval.loaders import load_annotations
    from scenetg.eval.metrics import compute_metrics, match_warnings
    from scenetg.eval.predictions import read_predictions
    from scenetg.eval.protocols import get_protocol
    from scenetg.eval.report import format_markdown

    chosen = get_protocol(protocol, strict)  # a bad name fails before any file is read
    records, report = load_annotations(annotations, format, metadata_csv=durations_csv,
                                       videos_dir=videos, split=split)
    if report.has_issues:
        console.print(report.summary(), highlight=False)
    metrics = compute_metrics(records, read_predictions(predictions), protocol=chosen)
    target = out or predictions.with_suffix(".metrics.json")
    write_json_atomic(target, metrics)
    if json_out:
        print(json.dumps(metrics, sort_keys=True))
    else:
        out_console.print(format_markdown(metrics), highlight=False)
        console.print(f"metrics: {target}")
    warnings, nothing_matched = match_warnings(metrics, predictions)
    for line in warnings:
        sys.stderr.write(f"warning: {line}\n")
    if nothing_matched:
        raise ScenetgError(nothing_matched)


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
) -> None:
    """Grounding inference: one predicted \\[start, end] per query, raw model text kept."""
    from scenetg.eval.grounding import ground as run_ground
    from scenetg.eval.loaders import load_annotations
    from scenetg.progress import rich_reporter

    records, report = load_annotations(annotations, format, metadata_csv=durations_csv,
                                       videos_dir=videos, split=split)
    if report.has_issues:
        console.print(report.summary(), highlight=False)
    if method in ("model", "clip") and not model:
        raise ScenetgError(f"--method {method} needs --model")
    fraction: float | str = center_fraction if center_fraction == "auto" else float(center_fraction)
    batch = coerce_batch_size("--batch-size", batch_size)
    with rich_reporter(console) as reporter:
        stats = run_ground(records, videos, out, method=method, model=model, fps=fps,
                           max_frames=max_frames, batch_size=batch, limit=limit,
                           reporter=reporter, dtype=dtype, device=device,
                           max_new_tokens=max_new_tokens, center_fraction=fraction, decode=decode)
    out_console.print(stats.summary(), highlight=False)


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
) -> None:
    """Ground-then-Answer QA and the uniform-sampling baseline with the same frame budget."""
    from scenetg.eval.answering import answer as run_answer
    from scenetg.eval.answering import format_answer_summary
    from scenetg.eval.qa_loaders import load_qa_report
    from scenetg.progress import rich_reporter

    batch = coerce_batch_size("--batch-size", batch_size)
    records, qa_report = load_qa_report(qa, qa_format)
    if qa_report.no_answer:
        sys.stderr.write(f"warning: {qa_report.summary()}\n")
    with rich_reporter(console) as reporter:
        result = run_answer(records, videos, out, answerer, grounder=grounder,
                            grounder_model=grounder_model, n_frames=frames,
                            context_fraction=context_fraction, context_s=context_s,
                            batch_size=batch, limit=limit, reporter=reporter,
                            dtype=dtype, device=device,
                            summary_path=summary or out.with_suffix(".summary.json"))
    out_console.print(format_answer_summary(result), highlight=False)


@app.command("eval-suite")
def eval_suite(
    config: Annotated[Path, typer.Option("--config", "-c", help="Evaluation config (pipelines/eval.yaml).")],
    out: Annotated[str | None, typer.Option("--out", help="Output folder (overrides out).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Grounding MLLM (overrides model).")] = None,
) -> None:
    """Ground and score every benchmark x method in a config; writes report.md + IoU PNG."""
    from scenetg.eval.suite import load_eval_config, run_eval_suite
    from scenetg.progress import rich_reporter

    cfg = load_eval_config(config, {"out": out, "model": model})
    with rich_reporter(console) as reporter:
        _, report = run_eval_suite(cfg, reporter)
    out_console.print(report.read_text(), highlight=False)
    console.print(f"report: {report}")


# ----- train -----------------------------------------------------------------------------------
@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training config (pipelines/train.yaml).")],
    model: Annotated[str | None, typer.Option("--model", help="Policy: HF id or folder (overrides model).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Build folder, hub:ORG/NAME or annotation file (overrides data.dataset).")] = None,
    video_root: Annotated[str | None, typer.Option("--video-root", help="Folder the videos are under (overrides data.video_root).")] = None,
    output_dir: Annotated[str | None, typer.Option("--output-dir", "-o", help="Run folder (overrides output_dir).")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps (overrides grpo.max_steps).")] = None,
    resume_from_checkpoint: Annotated[str | None, typer.Option("--resume-from-checkpoint", help="A checkpoint-N folder, or 'last'.")] = None,
) -> None:
    """GRPO training with token-aware KL and the Center Distance reward (TRL GRPOTrainer)."""
    from scenetg.progress import rich_reporter
    from scenetg.rl.config import load_train_config
    from scenetg.rl.train import train as run_train

    overrides = {"model": model, "data.dataset": dataset, "data.video_root": video_root,
                 "output_dir": output_dir, "grpo.max_steps": max_steps}
    cfg = load_train_config(config, {k: v for k, v in overrides.items() if v is not None})
    with rich_reporter(console) as reporter:
        result = run_train(cfg, resume_from_checkpoint=resume_from_checkpoint, reporter=reporter)
    out_console.print(result.summary(), highlight=False)
    out_console.print(f"metrics: {result.metrics_path}  curves: {result.curves_path}")


# ----- models ----------------------------------------------------------------------------------
@models_app.command("make-tiny")
def make_tiny(out_dir: Annotated[Path, typer.Argument(help="Folder to write qwen/ and clip/ into.")]) -> None:
    """Write a tiny random Qwen2.5-VL and a tiny OpenCLIP, saved like real checkpoints."""
    from scenetg.models.tiny import make_tiny_models

    paths = make_tiny_models(out_dir)
    for name, path in paths.items():
        out_console.print(f"{name}: {path}")
    out_console.print(f"use: --caption-model {paths['qwen']} --clip-model {paths['clip']}")


# ----- demo ------------------------------------------------------------------------------------
@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's videos, models and dataset.")] = Path("demo_out"),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Demo build config (default: the packaged pipelines/demo/build.yaml).")] = None,
    eval_config: Annotated[Path | None, typer.Option("--eval-config", help="Demo evaluation config (default: the packaged pipelines/demo/eval.yaml).")] = None,
    assets: Annotated[Path | None, typer.Option("--assets", help="Folder of real sample clips (default: ../shared/assets/videos when present).")] = None,
    train_config: Annotated[Path | None, typer.Option("--train-config", help="Demo training config (default: the packaged pipelines/demo/train.yaml).")] = None,
) -> None:
    """End-to-end offline run: sample videos + tiny models -> build -> train -> ground -> eval -> report."""
    from scenetg.demo import default_assets_dir, run_demo, run_demo_eval, run_demo_train
    from scenetg.progress import rich_reporter

    with rich_reporter(console) as reporter:
        paths, summary = run_demo(out, config, assets or default_assets_dir(), reporter)
        trained = run_demo_train(paths, out, train_config, reporter)
        results, report = run_demo_eval(paths, out, eval_config, reporter, trained=trained)
    _print_summary(summary, "scenetg demo: build")
    out_console.print(f"\nTrained (GRPO, tiny model): {trained}  curves: {trained.parent / 'curves.png'}")
    out_console.print("\n" + report.read_text().split("\n\n![")[0], highlight=False)
    out_console.print(f"\nEvaluation report: {report} (IoU histogram: {report.parent / 'iou_distribution.png'})")
    out_console.print(f"\nDataset: {paths.dataset}")
    out_console.print(f"  card:    {paths.dataset / 'README.md'}")
    out_console.print(f"  queries: {paths.dataset / 'data'}   audit: {paths.dataset / 'audit'}")
    out_console.print(f"  load:    python -c \"import datasets; print(datasets.load_dataset('{paths.dataset}'))\"")
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def _error_line(message: str) -> None:
    """One plain line on stderr (no wrapping: users grep and scripts parse it)."""
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")


def _click_errors() -> tuple[type[Exception], ...]:
    """click's ClickException and typer's vendored copy (typer >= 0.26 bundles click)."""
    try:
        from typer._click.exceptions import ClickException as TyperClickException
    except ImportError:
        return (click.ClickException,)
    return (click.ClickException, TyperClickException)


_CLICK_ERRORS = _click_errors()


def _interrupted() -> int:
    sys.stderr.write("\ninterrupted; finished work is kept — re-run with --resume\n")
    return 130


# ----- entry point -----------------------------------------------------------------------------
def _no_progress_bars_off_terminal() -> None:
    """Hugging Face's tqdm bars (weights loading, downloads) only on a terminal: in logs and CI
    they are hundreds of carriage-return lines. `HF_HUB_DISABLE_PROGRESS_BARS=0` keeps them."""
    if sys.stderr.isatty() or os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "0":
        return
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub is imported
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils.logging import disable_progress_bar

        disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    _no_progress_bars_off_terminal()
    command = typer.main.get_command(app)
    try:
        code = int(command.main(args=argv, prog_name="scenetg", standalone_mode=False) or 0)
        # typer turns Ctrl-C into exit code 130 before any handler of ours sees it
        return _interrupted() if code == 130 else code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except _CLICK_ERRORS as exc:  # usage errors (missing or bad option): exit 2
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        return _interrupted()
    except ScenetgError as exc:
        if _state["debug"]:
            traceback.print_exc()
        for problem in getattr(exc, "problems", None) or [str(exc)]:
            _error_line(problem)
        return 2
    except Exception as exc:
        if _state["debug"]:
            traceback.print_exc()
        _error_line(f"{type(exc).__name__}: {exc} (re-run with --debug for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
