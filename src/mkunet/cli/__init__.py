"""The ``mkunet`` command-line tool: a thin typer layer over the Python API.

Each command lives in its own module of this package, which defines
``register(app)``; this module only assembles them. Every ``--help`` fits 100 columns
(``tests/cli/test_help.py``): long option lists go into rich help panels (``_common.PANEL_*``).
"""

from __future__ import annotations

import typer

from mkunet.cli import analyse, demo, evaluate, preprocess, run, segment, synth, train
from mkunet.cli._common import unwrap_help

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


for _info in app.registered_commands:  # one line per paragraph: rich wraps it to the terminal (see --help)
    _info.help = unwrap_help(_info.help or (_info.callback.__doc__ if _info.callback else None))


def main() -> None:
    """Console-script entry point."""
    app()
