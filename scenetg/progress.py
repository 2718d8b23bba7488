"""Progress reporting that stage code can call without knowing about the terminal.

Stage code calls `reporter.start(task, total)` / `reporter.advance(task)`; the CLI passes a rich
progress display, tests and library users get the silent default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Reporter:
    """Silent reporter; subclasses draw progress."""

    def start(self, task: str, total: int | None) -> None:
        pass

    def advance(self, task: str, n: int = 1) -> None:
        pass

    def grow(self, task: str, n: int) -> None:
        """Add `n` to a task's total (work discovered on the way, e.g. scenes after shots)."""

    def log(self, message: str) -> None:
        pass


class RichReporter(Reporter):
    """One rich progress bar per task name."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def start(self, task: str, total: int | None) -> None:
        if task in self.tasks:
            self.progress.update(self.tasks[task], total=total, completed=0)
        else:
            self.tasks[task] = self.progress.add_task(task, total=total)

    def advance(self, task: str, n: int = 1) -> None:
        if task not in self.tasks:
            self.start(task, None)
        self.progress.advance(self.tasks[task], n)

    def grow(self, task: str, n: int) -> None:
        if task not in self.tasks:
            self.start(task, 0)
        current = self.progress.tasks[self.tasks[task]].total or 0
        self.progress.update(self.tasks[task], total=current + n)

    def log(self, message: str) -> None:
        self.progress.console.print(message, highlight=False)


@contextmanager
def rich_reporter(console: Console | None = None) -> Iterator[RichReporter]:
    progress = Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )
    with progress:
        yield RichReporter(progress)
