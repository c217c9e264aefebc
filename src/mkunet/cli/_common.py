"""Helpers shared by the CLI modules: error reporting, progress bars, help panels."""

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

# rich help panels: long option lists are grouped so that ``--help`` stays readable at 100 columns
PANEL_ROI = "Region of interest (x y z, mm)"
PANEL_OUTPUTS = "Outputs"
PANEL_NETWORK = "Network (--method network, --attention)"
PANEL_PACS = "PACS (DICOMweb)"
PANEL_INPUTS = "Inputs"
PANEL_TRAINING = "Training"
PANEL_SAMPLING = "Patches and real anatomy"
PANEL_ABLATION = "Model and ablation"
PANEL_HARDWARE = "Hardware"

PACS_CREDENTIALS = (
    "Credentials are never command-line arguments: set MKUNET_DICOMWEB_TOKEN (bearer), or "
    "MKUNET_DICOMWEB_USER and MKUNET_DICOMWEB_PASSWORD (basic), in the environment; or "
    "MKUNET_DICOMWEB_CONFIG=file.toml (token = ..., or username = ... and password = ...; chmod 600). "
    "MKUNET_DICOMWEB_CA_BUNDLE names a CA certificate for the PACS."
)


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


def unwrap_help(text: str | None) -> str | None:
    """A docstring with each paragraph on one line, so that rich wraps it to the terminal's width.

    Typer keeps the single line breaks of every paragraph after the first, which leaves short
    lines and, where a line is longer than the terminal, odd breaks. Paragraphs (blank-line
    separated) are kept.
    """
    if text is None:
        return None
    import inspect

    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines() if line.strip()) for p in paragraphs)
