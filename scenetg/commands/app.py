"""The Typer app every command module registers on, the consoles commands print to, and the
build summary that `build`, the stage commands and `demo` print.

Commands live in modules named for their job (`dataset`, `evaluation`, `train_and_demo`);
`scenetg.cli` imports them all and runs the app (`scenetg.cli.main`). The app lives here, not in
`scenetg.cli`, so `python -m scenetg.cli` (which loads that file as `__main__`) registers the
commands on the same app object it runs.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from scenetg.curate.run.workdir import one_line

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
state: dict = {"debug": False, "interrupt_hint": None}
"""``debug``: the root `--debug` option (`scenetg.cli.main` shows tracebacks when it is on);
``interrupt_hint``: what a command tells the user after Ctrl-C (how to continue), if not the
build's ``--resume``."""


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    state["debug"] = debug
    state["interrupt_hint"] = None


def print_summary(summary, title: str) -> None:
    """A build's summary table on stdout, then one line per failed video on stderr."""
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
        failed_line(vid, err)


def failed_line(video_id: str, error: str | None) -> None:
    """One line per failed video, whatever its name holds (newlines, rich markup)."""
    from rich.markup import escape


    console.print(f"[red]failed[/] {escape(one_line(video_id))}: {escape(one_line(error or ''))}", highlight=False)


def finish(summary, title: str) -> None:
    """`print_summary`, then exit 3 when some videos failed."""
    print_summary(summary, title)
    if summary.exit_code:
        console.print(f"finished; {summary.videos_failed} video(s) failed (see videos.parquet)")
        raise typer.Exit(summary.exit_code)
