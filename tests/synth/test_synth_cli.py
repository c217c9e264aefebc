"""`mkunet synth` command."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from mkunet.cli import app


def test_synth_cli_writes_cohort_and_prints_summary(tmp_path):
    res = CliRunner().invoke(app, ["synth", "--patients", "2", "--out", str(tmp_path), "--seed", "1", "--shape", "12", "40", "40", "--formats", "nifti", "--timepoints", "2", "3"])
    assert res.exit_code == 0, res.output
    scans = pd.read_csv(tmp_path / "scans.csv")
    assert 4 <= len(scans) <= 6
    assert (tmp_path / scans["image"][0]).exists() and (tmp_path / scans["mask"][0]).exists()
    assert not (tmp_path / "SYN0001" / "T0" / "dicom").exists()


def test_synth_cli_bad_format_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(app, ["synth", "--patients", "1", "--out", str(tmp_path), "--formats", "png"])
    assert res.exit_code == 2
    assert "formats" in res.output
