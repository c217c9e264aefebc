"""Every ``--help`` fits 100 columns: no line longer, no word cut with '…', credential names whole.

Typer renders help with rich. Rich takes the console width from ``COLUMNS`` (read when the console
is made, i.e. at each ``--help``); typer's ``TERMINAL_WIDTH`` (read at import) would override it
when set, so both are given.
"""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from mkunet.cli import app

WIDTH = 100
ENV = {"COLUMNS": str(WIDTH), "TERMINAL_WIDTH": str(WIDTH)}
COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
CREDENTIALS = (
    "MKUNET_DICOMWEB_TOKEN",
    "MKUNET_DICOMWEB_USER",
    "MKUNET_DICOMWEB_PASSWORD",
    "MKUNET_DICOMWEB_CONFIG",
    "MKUNET_DICOMWEB_CA_BUNDLE",
)


def help_text(*command: str) -> str:
    res = CliRunner().invoke(app, [*command, "--help"], env=ENV)
    assert res.exit_code == 0, res.output
    return res.output


def test_every_command_is_checked():
    expected = {"synth", "preprocess", "train", "evaluate", "benchmark-models", "segment", "analyse", "run", "demo"}
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("command", [(), *((c,) for c in COMMANDS)], ids=lambda c: " ".join(c) or "mkunet")
def test_help_fits_100_columns(command):
    text = help_text(*command)
    lines = text.splitlines()
    assert "…" not in text, "\n".join(line for line in lines if "…" in line)
    too_long = [line for line in lines if len(line.rstrip()) > WIDTH]
    assert not too_long, "\n".join(too_long)
    assert "Usage: mkunet" in text


@pytest.mark.parametrize("command", ["segment", "run"])
def test_credential_names_are_whole(command):
    words = set(help_text(command).replace("=", " ").split())
    for name in CREDENTIALS:
        assert name in words, name


def test_segment_help_says_x_y_z():
    text = help_text("segment")
    assert "X0 X1 Y0 Y1 Z0 Z1" in text and "X Y Z" in text
    assert "Z0 Z1 Y0 Y1" not in text


def test_help_is_wider_than_80_columns_when_asked():
    """The width really comes from COLUMNS (else the tests above would check rich's default of 80)."""
    assert max(len(line.rstrip()) for line in help_text("segment").splitlines()) > 80
