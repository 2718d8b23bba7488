"""`scenetg` command line: the entry point (`main`): exit codes, one-line errors, `--debug`.

The commands are in `scenetg/commands/` (`dataset`, `evaluation`, `train_and_demo`); they parse
arguments and call the library; no stage logic lives there.

Exit codes: 0 success; 1 unexpected failure; 2 bad input or usage; 3 finished, but some videos
failed (their rows in videos.parquet say why).
"""

from __future__ import annotations

import os
import sys
import traceback

import click
import typer

from scenetg.commands import dataset, evaluation, train_and_demo  # noqa: F401  (register the commands)
from scenetg.commands.app import app, state
from scenetg.errors import ScenetgError

__all__ = ["app", "main"]


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
    """Exit 130 with the command's own hint (`state["interrupt_hint"]`; `train` resumes with
    --resume-from-checkpoint, the build with --resume)."""
    hint = state.get("interrupt_hint") or "interrupted; finished work is kept — re-run with --resume"
    sys.stderr.write(f"\n{hint}\n")
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
        if state["debug"]:
            traceback.print_exc()
        for problem in getattr(exc, "problems", None) or [str(exc)]:
            _error_line(problem)
        return 2
    except Exception as exc:
        if state["debug"]:
            traceback.print_exc()
        _error_line(f"{type(exc).__name__}: {exc} (re-run with --debug for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
