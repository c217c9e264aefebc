"""Helpers shared by the CLI modules: error reporting and progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def progress() -> Progress:
    """A rich progress display with bar, count, elapsed and remaining time (to stderr)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected input errors into a one-line message and exit status 2 (no traceback)."""
    try:
        yield
    except (ValueError, FileNotFoundError, KeyError) as err:
        # soft_wrap: a long path stays on one line (copyable); escape: "[...]" in the message is text, not markup
        console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
        raise typer.Exit(code=2) from err
