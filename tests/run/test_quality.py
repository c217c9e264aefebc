"""Quality control in a cohort run: flagged series left out of the statistics, overrides, reruns from the cache.

The cohort is the oracle pipeline's 10-patient NIfTI cohort of tests/report/test_report.py; patient
P03's second scan is replaced by a ball of twice the radius taken 10 days after the first (8 times the
volume: a doubling time of 3.3 days, beyond biology), so its series is flagged.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mkunet.cli import app
from mkunet.io import read_volume, write_volume
from mkunet.run.overrides import read_overrides
from tests.run.test_pipeline import OracleBundle, ball, make_tiny_cohort, run

FLAGGED = "P03"
SHAPE = (12, 32, 32)


def make_flagged_cohort(root: Path):
    cohort = make_tiny_cohort(
        root, n_patients=10, n_timepoints=2, dicom=False, seed=3, shape=SHAPE, constant_clinical=True
    )
    scans = pd.read_csv(root / "scans.csv", dtype={"patient_id": str})
    scans.loc[(scans.patient_id == FLAGGED) & (scans.timepoint == 1), "days"] = 10
    scans.to_csv(root / "scans.csv", index=False)
    path = root / FLAGGED / "T1" / "image.nii.gz"
    vol = read_volume(path)
    centre = np.argwhere(vol.array > -400).mean(axis=0)
    arr = np.full(vol.shape, -850.0, np.float32)
    arr[ball(vol.shape, vol.spacing, centre, 2.0 * cohort.radii[FLAGGED][0])] = 40.0
    write_volume(vol.with_array(arr), path)
    return cohort


def run_flagged(cohort, out: Path, **kwargs):
    return run(
        cohort, out, OracleBundle(), outcomes=cohort.root / "outcomes.csv", n_boot=20, cohort_figures=False, **kwargs
    )


@pytest.fixture(scope="module")
def flagged(tmp_path_factory):
    root = tmp_path_factory.mktemp("qc")
    cohort = make_flagged_cohort(root / "cohort")
    return cohort, run_flagged(cohort, root / "run"), root / "run"


def test_flagged_series_has_reasons_in_results(flagged):
    _, result, out = flagged
    res = pd.read_csv(out / "results.csv", dtype={"patient_id": str})
    assert {"qc", "qc_reasons", "qc_codes", "qc_decision"} <= set(res.columns)
    mine = res[res.patient_id == FLAGGED]
    assert (mine.qc == "review").all(), mine[["timepoint", "qc", "qc_reasons"]]
    assert mine.qc_codes.str.contains("growth_beyond_biology").all()
    assert "doubles every" in mine.qc_reasons.iloc[1]
    others = res[res.patient_id != FLAGGED]
    assert (others.qc == "ok").all(), others.loc[others.qc != "ok", ["patient_id", "timepoint", "qc_reasons"]]
    pat = result.patients.set_index("patient_id")
    assert pat.loc[FLAGGED, "qc"] == "review" and pat.loc["P00", "qc"] == "ok"


def test_flagged_series_left_out_of_statistics(flagged):
    _, result, out = flagged
    excluded = pd.read_csv(out / "excluded.csv", dtype={"patient_id": str})
    assert list(excluded.patient_id) == [FLAGGED]
    assert excluded.qc_decision[0] == "review" and "doubles every" in excluded.qc_reasons[0]
    assert excluded.scans[0] == "T0, T1"
    pat = result.patients.set_index("patient_id")
    assert not pat.loc[FLAGGED, "in_statistics"] and pat.drop(FLAGGED).in_statistics.all()
    assert math.isnan(pat.loc[FLAGGED, "ies"]) and pat.drop(FLAGGED).ies.notna().all()
    # the cohort analysis (IES, Cox, KM, ROC) never saw the patient
    analysed = result.cohort.tables["patients"]
    assert FLAGGED not in set(analysed.dropna(subset=["ies"]).index.astype(str))
    assert "1 patient(s) left out of the statistics (--qc exclude" in result.summary()
    assert any("quality control: 1 patient(s) left out" in n for n in result.notes)


def test_include_and_overrides_rerun_from_the_cache(flagged, tmp_path, monkeypatch):
    cohort, _, out = flagged
    import mkunet.run.pipeline as pipeline

    def must_not_segment(*args, **kwargs):
        raise AssertionError("a rerun with other QC settings must not segment again")

    monkeypatch.setattr(pipeline, "segment_step", must_not_segment)
    monkeypatch.setattr(pipeline, "segment_lesions_step", must_not_segment)
    included = run_flagged(cohort, out, qc="include")
    assert included.processed == [] and len(included.resumed) == 10
    pat = included.patients.set_index("patient_id")
    assert pat.in_statistics.all() and np.isfinite(pat.loc[FLAGGED, "ies"])
    assert included.excluded.empty and "--qc include" in included.summary()
    # accept the flagged patient, reject another: the rejected one is left out even with --qc include
    overrides = tmp_path / "qc_overrides.csv"
    overrides.write_text(
        "patient_id,lesion_id,timepoint,decision,note\n"
        f"{FLAGGED},,,accept,looked: a true fast growth\n"
        "P05,,1,reject,motion artefact\n"
    )
    decided = run_flagged(cohort, out, qc="include", qc_overrides=overrides)
    assert decided.processed == []
    pat = decided.patients.set_index("patient_id")
    assert pat.loc[FLAGGED, "qc_decision"] == "accepted" and pat.loc[FLAGGED, "in_statistics"]
    assert pat.loc["P05", "qc_decision"] == "rejected" and not pat.loc["P05", "in_statistics"]
    assert list(decided.excluded.patient_id) == ["P05"] and decided.excluded.qc_note[0] == "motion artefact"
    res = decided.results.set_index(["patient_id", "timepoint"])
    assert res.loc[(FLAGGED, 1), "qc_note"] == "looked: a true fast growth"
    assert res.loc[(FLAGGED, 1), "qc"] == "review"  # the automatic result is kept
    # the default (exclude) with the same decisions: the accepted patient counts as ok
    default = run_flagged(cohort, out, qc_overrides=overrides)
    assert list(default.excluded.patient_id) == ["P05"]


@pytest.mark.parametrize(
    "row, field",
    [
        ("P99,,,accept,x", "patient_id"),
        ("P00,,,maybe,x", "decision"),
        ("P00,L1,,accept,x", "lesion_id"),
        ("P00,,7,reject,x", "timepoint"),
    ],
)
def test_bad_override_rows_name_file_line_field(tmp_path, row, field):
    cohort = make_tiny_cohort(tmp_path / "c", n_patients=1, n_timepoints=2, dicom=False, shape=SHAPE)
    path = tmp_path / "qc_overrides.csv"
    path.write_text("patient_id,lesion_id,timepoint,decision,note\n" + row + "\n")
    from mkunet.run.inputs import discover_scans

    with pytest.raises(ValueError, match=rf"qc_overrides.csv', line 2, field '{field}'"):
        read_overrides(path, discover_scans(cohort.root))
    # through the CLI: one line, exit 2, before any work
    res = CliRunner().invoke(
        app,
        [
            "run",
            str(cohort.root),
            "--clinical",
            str(cohort.root / "clinical.csv"),
            "-o",
            str(tmp_path / "o"),
            "--qc-overrides",
            str(path),
            "--no-report",
        ],
    )
    assert res.exit_code == 2, res.output
    assert "line 2" in res.output and field in res.output
    assert not (tmp_path / "o" / "results.csv").exists()


def test_qc_mode_is_checked(tmp_path):
    cohort = make_tiny_cohort(tmp_path / "c", n_patients=1, n_timepoints=2, dicom=False, shape=SHAPE)
    with pytest.raises(ValueError, match="'maybe'"):
        run(cohort, tmp_path / "o", OracleBundle(), qc="maybe")
