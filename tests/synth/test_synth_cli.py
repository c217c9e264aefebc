"""`mkunet synth` command."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from mkunet.cli import app


def test_synth_cli_writes_cohort_and_prints_summary(tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "synth",
            "--patients",
            "2",
            "--out",
            str(tmp_path),
            "--seed",
            "1",
            "--shape",
            "12",
            "40",
            "40",
            "--formats",
            "nifti",
            "--timepoints",
            "2",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    scans = pd.read_csv(tmp_path / "scans.csv")
    assert 4 <= len(scans) <= 6
    assert (tmp_path / scans["image"][0]).exists() and (tmp_path / scans["mask"][0]).exists()
    assert not (tmp_path / "SYN0001" / "T0" / "dicom").exists()
    # lesions.csv: one target lesion per patient, the click inside its baseline (first-scan) mask
    from mkunet.io import read_volume
    from mkunet.run.pipeline import discover_scans, read_lesions

    lesions = pd.read_csv(tmp_path / "lesions.csv", dtype={"patient_id": str, "lesion_id": str})
    assert list(lesions.columns) == ["patient_id", "lesion_id", "x_mm", "y_mm", "z_mm"]
    assert sorted(lesions.patient_id) == sorted(scans.patient_id.unique()) and set(lesions.lesion_id) == {"1"}
    for r in lesions.itertuples():
        first = scans[(scans.patient_id == r.patient_id) & (scans.timepoint == 0)].iloc[0]
        mask = read_volume(tmp_path / first["mask"])  # the label map's geometry is the scan's
        idx = tuple(np.rint(mask.physical_to_index([r.x_mm, r.y_mm, r.z_mm])).astype(int))
        assert mask.array[idx] > 0, (r.patient_id, idx)
    assert len(read_lesions(tmp_path / "lesions.csv", discover_scans(tmp_path))) == len(lesions)


def test_synth_cli_bad_format_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(app, ["synth", "--patients", "1", "--out", str(tmp_path), "--formats", "png"])
    assert res.exit_code == 2
    assert "formats" in res.output
