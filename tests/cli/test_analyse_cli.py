"""`mkunet analyse` on a cohort folder: measurements.csv, or scans.csv with NIfTI masks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mkunet import io
from mkunet.cli import app
from mkunet.volume import Volume
from tests.analysis.test_cohort import synthetic_cohort


def _write_scans_cohort(root, n=8, seed=0):
    """Tiny NIfTI balls growing at a known rate, in the synth layout (scans.csv with image/mask columns)."""
    meas, clin, out = synthetic_cohort(n, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    truth = {}
    spacing = (2.0, 1.0, 1.0)
    for pid, g in meas.groupby("patient_id"):
        r0 = rng.uniform(4, 6)
        rate = rng.uniform(-0.002, 0.006)  # per day, on the volume
        truth[pid] = rate
        for tp, d in enumerate(g["days"]):
            r = r0 * math.exp(rate * d / 3)
            shape = (16, 24, 24)
            grid = np.ogrid[tuple(slice(0, s) for s in shape)]
            mask = sum(((gi - (s - 1) / 2) * sp) ** 2 for gi, s, sp in zip(grid, shape, spacing)) <= r * r
            vol = Volume(np.where(mask, 40.0, -850.0).astype(np.float32), spacing=spacing, patient_id=pid)
            d_img = root / pid / f"T{tp}"
            io.write_volume(vol, d_img / "image.nii.gz")
            io.write_mask(mask, vol, d_img / "mask.nii.gz")
            rows.append(
                {
                    "patient_id": pid,
                    "timepoint": tp,
                    "days": d,
                    "image": f"{pid}/T{tp}/image.nii.gz",
                    "mask": f"{pid}/T{tp}/mask.nii.gz",
                }
            )
    pd.DataFrame(rows).to_csv(root / "scans.csv", index=False)
    clin.to_csv(root / "clinical.csv", index=False)
    out.to_csv(root / "outcomes.csv", index=False)
    return truth


def test_analyse_measurements_csv(tmp_path):
    meas, clin, out = synthetic_cohort(20, seed=2)
    cohort_dir = tmp_path / "cohort"
    cohort_dir.mkdir()
    meas.to_csv(cohort_dir / "measurements.csv", index=False)
    clin.to_csv(cohort_dir / "clinical.csv", index=False)
    out.to_csv(cohort_dir / "outcomes.csv", index=False)
    res = CliRunner().invoke(
        app,
        [
            "analyse",
            "--cohort",
            str(cohort_dir),
            "--out",
            str(tmp_path / "out"),
            "--n-boot",
            "50",
            "--no-figures",
            "--ies-mode",
            "paper",
            "--cutoff",
            "median",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "HR high vs low" in res.output
    assert (tmp_path / "out" / "cox.md").exists()
    assert len(pd.read_csv(tmp_path / "out" / "patients.csv")) == 20


def test_analyse_scans_csv_measures_masks(tmp_path):
    cohort_dir = tmp_path / "cohort"
    truth = _write_scans_cohort(cohort_dir)
    res = CliRunner().invoke(
        app, ["analyse", "--cohort", str(cohort_dir), "--out", str(tmp_path / "out"), "--n-boot", "20", "--no-figures"]
    )
    assert res.exit_code == 0, res.output
    measured = pd.read_csv(tmp_path / "out" / "measurements.csv")
    assert {"volume_cm3", "sphericity", "longest_axial_diameter_mm"} <= set(measured.columns)
    patients = pd.read_csv(tmp_path / "out" / "patients.csv", index_col=0)
    est = patients["lvcr"]
    true = pd.Series(truth)[est.index]
    # voxelised balls of radius 4-8 mm: the measured rate follows the true one
    assert np.corrcoef(est, true)[0, 1] > 0.9


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cutoff", "best"], "--cutoff"),
        (["--ies-mode", "magic"], "--ies-mode"),
        (["--landmark-days", "soon"], "--landmark-days"),
    ],
)
def test_analyse_bad_options(tmp_path, args, message):
    meas, clin, out = synthetic_cohort(6)
    meas.to_csv(tmp_path / "measurements.csv", index=False)
    clin.to_csv(tmp_path / "clinical.csv", index=False)
    out.to_csv(tmp_path / "outcomes.csv", index=False)
    res = CliRunner().invoke(app, ["analyse", "--cohort", str(tmp_path), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2
    assert message in res.output


def test_analyse_missing_files(tmp_path):
    res = CliRunner().invoke(app, ["analyse", "--cohort", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "clinical.csv" in res.output
