"""The ``mkunet`` command-line tool: a thin typer layer over the Python API.

Each command lives in its own module of this package, which defines
``register(app)``; this module only assembles them.
"""

from __future__ import annotations

import typer

from mkunet.cli import analyse, demo, evaluate, preprocess, run, segment, synth, train

app = typer.Typer(
    name="mkunet",
    help="Lung-tumour segmentation, growth kinetics and immune-evasion score on serial chest CT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Lung-tumour segmentation, growth kinetics and immune-evasion score on serial chest CT."""


for _module in (synth, preprocess, train, evaluate, segment, analyse, run, demo):
    _module.register(app)


@app.command("version")
def version() -> None:
    """Print the package version."""
    from mkunet import __version__

    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
