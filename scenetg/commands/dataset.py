"""Dataset commands: `build`, the stage commands (`shots`, `captions`, `filter`, `export`),
`inspect` and `publish`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from scenetg.commands.app import app, console, failed_line, finish, out_console
from scenetg.config import load_build_config
from scenetg.curate.run.workdir import WorkDir
from scenetg.errors import ScenetgError
from scenetg.progress import rich_reporter

# ----- shared options --------------------------------------------------------------------------
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Build config YAML (default: built-in defaults).")]
CaptionModelOpt = Annotated[str | None, typer.Option("--caption-model", help="Captioner: HF id or local folder (overrides captions.model).")]
ClipModelOpt = Annotated[str | None, typer.Option("--clip-model", help="OpenCLIP `arch:pretrained`, hf-hub:ID or local folder (overrides filter.clip_model).")]


def _load_config(config: Path | None, caption_model: str | None = None, clip_model: str | None = None,
                 engine: str | None = None, base: dict | None = None):

    overrides = {}
    if caption_model:
        overrides["captions.model"] = caption_model
    if clip_model:
        overrides["filter.clip_model"] = clip_model
    if engine:
        overrides["engine.name"] = engine
    return load_build_config(config, overrides, base=base)


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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Build again from scratch into an OUT that holds a finished dataset, replacing its data (refused otherwise).")] = False,
) -> None:
    """Build a grounding dataset: shots -> scenes -> captions -> CLIP filter -> Parquet + card."""
    from scenetg.curate.run.pipeline import build as run_build  # deferred: pulls pyarrow

    cfg = _load_config(config, caption_model, clip_model, engine)
    with rich_reporter(console) as reporter:
        summary = run_build(videos, out, cfg, resume=resume, reporter=reporter, overwrite=overwrite)
    finish(summary, "scenetg build")


@app.command()
def shots(
    videos: Annotated[Path, typer.Option("--videos", help="Folder of videos (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="Output dataset folder.")],
    config: ConfigOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip videos already done.")] = False,
) -> None:
    """Stage 1 alone: probe videos, detect shots, assemble scenes (OUT/work/*/shots.json)."""
    from scenetg.curate.run.pipeline import run_stage  # deferred: pulls pyarrow

    cfg = _load_config(config)
    with rich_reporter(console) as reporter:
        b = run_stage(out, "shots", cfg, videos_dir=videos, resume=resume, reporter=reporter)
    _stage_report(b, "shots")


def _stage_report(b, stage: str) -> None:
    videos = b.manifest["videos"]
    failed = {k: v["error"] for k, v in videos.items() if v["status"] == "error"}
    out_console.print(f"{stage}: {len(videos) - len(failed)} video(s) done, {len(failed)} failed -> {b.work.out}")
    for vid, err in sorted(failed.items()):
        failed_line(vid, err)
    if failed:
        raise typer.Exit(3)


def _stage_command(out: Path, stage: str, config: Path | None, caption_model: str | None,
                   clip_model: str | None) -> None:
    from scenetg.curate.run.pipeline import run_stage  # deferred: pulls pyarrow

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
    from scenetg.curate.run.pipeline import export_folder  # deferred: pulls pyarrow

    finish(export_folder(out), "scenetg export")


@app.command()
def inspect(
    out: Annotated[Path, typer.Argument(help="Built dataset folder.")],
    html_report: Annotated[bool, typer.Option("--html/--no-html", help="Also write OUT/report/index.html with plots.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the headline statistics as one JSON object.")] = False,
) -> None:
    """Dataset statistics (tables), consistency checks, and an HTML report with plots and thumbnails."""
    import json

    from scenetg.curate.dataset.checks import dataset_problems  # deferred: pulls pyarrow
    from scenetg.curate.dataset.report import (  # deferred: pulls pandas
        dataset_stats,
        load_tables,
        stats_tables,
        write_report,
    )

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
    from scenetg.curate.dataset.publish import publish as run_publish  # deferred: pulls pyarrow

    if not dry_run and "/" not in repo_id:
        raise ScenetgError("--repo-id must be USER/NAME")
    files = run_publish(out, repo_id, private=private, dry_run=dry_run)
    if dry_run:
        out_console.print(f"would upload {len(files)} file(s) from {out}")
    else:
        out_console.print(f"uploaded {len(files)} file(s) from {out} to the dataset {repo_id} in one commit")

