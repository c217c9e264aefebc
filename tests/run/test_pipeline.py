"""Tests of mkunet.run.pipeline: discovery, results table and provenance, resume, bad cases.

The cohort is written here (not by mkunet.synth): balls of soft tissue (40 HU) in
lung (-850 HU) that grow with a known LVCR, as DICOM series (with StudyDate) and
NIfTI, plus scans.csv / clinical.csv / outcomes.csv. The model is an "oracle" bundle
(a torch module thresholding HU) so the expected masks and volumes are analytic.
Helpers here are reused by tests/test_report.py and tests/test_report_browser.py.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mkunet.io import read_volume, write_mask, write_volume
from mkunet.run.cache import model_identity
from mkunet.run.inputs import discover_scans
from mkunet.run.pipeline import run_cohort
from mkunet.run.store import load_run
from mkunet.synth.writers import write_ct_series as write_series
from mkunet.volume import Volume
from tests.bundle_stubs import ClinicalVectorMixin, HUOracle, hu_preprocessor

SHAPE = (16, 40, 40)  # (z, y, x)
SPACING = (2.5, 1.25, 1.25)  # (z, y, x) mm
COLUMNS = ("age", "sex", "smoking", "grade", "stage", "lvcr")


# ============================================================================ oracle bundle


class OracleNet(HUOracle):
    """The HU oracle with this file's default threshold (-400 HU); ignores the clinical vector."""

    def __init__(self, thr_hu: float = -400.0, gain: float = 0.05) -> None:
        super().__init__(thr_hu, gain)


class StubEncoder:
    """Clinical encoder stub: LVCR (per day, raw) in column 5; missing LVCR -> 0."""

    COLUMNS = COLUMNS

    def encode_one(self, mapping):
        lv = mapping.get("lvcr")
        return np.array([0, 0, 0, 0, 0, 0.0 if lv is None else float(lv)], np.float32)

    def transform(self, df, impute=None):
        return np.stack([self.encode_one(r) for r in df.to_dict("records")])

    def to_dict(self):
        return {"stub": True}


@dataclass
class OracleBundle(ClinicalVectorMixin):
    model: Any = field(default_factory=OracleNet)
    preprocessor: Any = hu_preprocessor
    clinical_encoder: Any = field(default_factory=StubEncoder)
    target_spacing: tuple = SPACING
    patch_size: tuple = (16, 32, 32)
    threshold: float = 0.5
    default_clinical: Any = None
    model_name: str = "oracle"
    metadata: dict = field(default_factory=lambda: {"label": "oracle-test"})


# ============================================================================ tiny cohort


def ball(shape, spacing, centre_zyx, radius_mm) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip((zz, yy, xx), centre_zyx, spacing))
    return d2 <= radius_mm**2


def write_ct_series(
    folder: Path, array: np.ndarray, spacing, *, patient_id: str, study_date: str, series_uid: str | None = None
) -> str:
    """A CT series (one file per slice, int16 HU) in ``folder``; returns its SeriesInstanceUID."""
    volume = Volume(array.astype(np.float32), spacing=spacing, origin=(-25.0, -25.0, 10.0))
    write_series(
        volume,
        folder,
        patient_id=patient_id,
        patient_name="Test^" + patient_id,
        study_date=study_date,
        series_uid=series_uid,
        uid_entropy=(patient_id, study_date, str(folder)),
    )
    return series_uid or read_volume(folder).series_uid


@dataclass
class TinyCohort:
    root: Path
    lvcr: dict[str, float]
    radii: dict[str, list[float]]
    series: dict[tuple[str, int], str]
    days: dict[str, list[int]]


def make_tiny_cohort(
    root: Path,
    n_patients: int = 3,
    n_timepoints: int = 3,
    *,
    dicom: bool = True,
    seed: int = 0,
    shape=SHAPE,
    spacing=SPACING,
    constant_clinical: bool = False,
) -> TinyCohort:
    """Balls growing with a known LVCR; DICOM (optional) + NIfTI + masks + the three CSV tables."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    scan_rows, clin_rows, out_rows = [], [], []
    lvcrs, radii, series, days_all = {}, {}, {}, {}
    for i in range(n_patients):
        pid = f"P{i:02d}"
        lv = float(rng.uniform(-0.004, 0.012))
        r0 = float(rng.uniform(5.0, 7.0))
        days = [0] + sorted(int(d) for d in np.cumsum(rng.integers(50, 80, size=n_timepoints - 1)))
        centre = (shape[0] / 2 - 0.3, shape[1] / 2 + rng.uniform(-2, 2), shape[2] / 2 + rng.uniform(-2, 2))
        base = dt.date(2024, 1, 10) + dt.timedelta(days=int(rng.integers(0, 60)))
        rs = []
        for k, d in enumerate(days):
            r = r0 * math.exp(lv * d / 3.0)  # V ~ r^3 -> ln V grows at lv per day
            rs.append(r)
            m = ball(shape, spacing, centre, r)
            arr = np.full(shape, -850.0, np.float32)
            arr[m] = 40.0
            vol = Volume(arr, spacing=spacing, origin=(-25.0, -25.0, 10.0))
            tdir = root / pid / f"T{k}"
            write_volume(vol, tdir / "image.nii.gz")
            write_mask(m, vol, tdir / "mask.nii.gz")
            date = base + dt.timedelta(days=d)
            row = {
                "patient_id": pid,
                "timepoint": k,
                "scan_date": date.isoformat(),
                "days": d,
                "image": f"{pid}/T{k}/image.nii.gz",
                "mask": f"{pid}/T{k}/mask.nii.gz",
            }
            if dicom:
                series[(pid, k)] = write_ct_series(
                    tdir / "dicom", arr, spacing, patient_id=pid, study_date=date.strftime("%Y%m%d")
                )
                row["dicom"] = f"{pid}/T{k}/dicom"
            scan_rows.append(row)
        lvcrs[pid], radii[pid], days_all[pid] = lv, rs, days
        if constant_clinical:  # few covariates: a Cox model a 10-patient cohort can fit
            clin_rows.append({"patient_id": pid, "age": 60, "sex": "F", "smoking": "never", "grade": 2, "stage": "II"})
        else:
            clin_rows.append(
                {
                    "patient_id": pid,
                    "age": int(rng.integers(45, 80)),
                    "sex": "MF"[i % 2],
                    "smoking": ("never", "former", "current")[i % 3],
                    "grade": 1 + i % 3,
                    "stage": ("I", "II", "III", "IV")[i % 4],
                }
            )
        hazard = math.exp(150 * lv)
        out_rows.append(
            {
                "patient_id": pid,
                "os_days": float(200 + rng.exponential(600 / hazard)),
                "event": int(rng.random() < 0.75),
                "pdl1_tps": float(rng.uniform(0, 80)),
                "pdl1_positive": int(i % 2 == 0),
                "pdl1_area_ratio": float(rng.uniform(0, 0.6)),
                "cd8_density": float(rng.uniform(50, 400)),
                "response": "responder" if lv < 0 else "non-responder",
            }
        )
    pd.DataFrame(scan_rows).to_csv(root / "scans.csv", index=False)
    pd.DataFrame(clin_rows).to_csv(root / "clinical.csv", index=False)
    pd.DataFrame(out_rows).to_csv(root / "outcomes.csv", index=False)
    return TinyCohort(root, lvcrs, radii, series, days_all)


def run(cohort: TinyCohort, out: Path, bundle: Any, **kwargs):
    """run_cohort with the oracle network on the whole volume (these tests check the pipeline's mechanics)."""
    import warnings

    kwargs.setdefault("method", "network")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_cohort(cohort.root, cohort.root / "clinical.csv", out, model=bundle, **kwargs)


# ============================================================================ tests


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> TinyCohort:
    return make_tiny_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def first_run(cohort, tmp_path_factory):
    bundle = OracleBundle()
    out = tmp_path_factory.mktemp("run")
    result = run(cohort, out, bundle)
    return result, bundle, out


def test_results_table_rows_columns_provenance(cohort, first_run):
    result, bundle, out = first_run
    res = pd.read_csv(out / "results.csv", dtype={"patient_id": str})
    assert len(res) == 9 and sorted(res.patient_id.unique()) == ["P00", "P01", "P02"]
    assert list(res.groupby("patient_id").timepoint.apply(list)) == [[0, 1, 2]] * 3
    assert (res.status == "ok").all(), res[["patient_id", "timepoint", "status", "notes"]]
    for col in (
        "series_uid",
        "input_path",
        "input_sha256",
        "model_name",
        "model_version",
        "model_weights_sha256",
        "parameters",
        "mkunet_version",
        "volume_cm3",
        "sphericity",
        "mean_hu",
        "days",
        "response",
        "dice_vs_reference",
    ):
        assert col in res.columns, col
    ident = model_identity(bundle)
    assert (res.model_weights_sha256 == ident["weights_sha256"]).all()
    assert (res.model_name == "oracle").all() and (res.model_version == "oracle-test").all()
    params = json.loads(res.parameters[0])
    assert params["roi"] == "previous-mask" and params["formats"] == ["nifti", "rtstruct", "seg"]
    # provenance: the series read is the DICOM series written (DICOM preferred over NIfTI)
    for r in res.itertuples():
        assert r.series_uid == cohort.series[(r.patient_id, r.timepoint)]
        assert r.input_path.endswith(f"{r.patient_id}/T{r.timepoint}/dicom")
    # analytic volumes (oracle): mesh volume of a ball within 8 %, Dice vs the reference mask ~ 1
    expected = np.array(
        [4 / 3 * math.pi * cohort.radii[p][k] ** 3 / 1000 for p, k in zip(res.patient_id, res.timepoint)]
    )
    np.testing.assert_allclose(res.volume_cm3, expected, rtol=0.08)
    assert res.dice_vs_reference.min() > 0.97
    assert (res.mean_hu.round() == 40).all()
    # parquet holds the same table
    pq = pd.read_parquet(out / "results.parquet")
    assert len(pq) == len(res) and list(pq.columns) == list(res.columns)
    # per-patient table: LVCR close to the truth, CI around it, VDT = ln 2 / LVCR
    pts = pd.read_csv(out / "patients.csv", dtype={"patient_id": str}).set_index("patient_id")
    for pid, lv in cohort.lvcr.items():
        assert abs(pts.loc[pid, "lvcr_per_day"] - lv) < 1.5e-3, (pid, pts.loc[pid, "lvcr_per_day"], lv)
        assert pts.loc[pid, "lvcr_ci_low"] < pts.loc[pid, "lvcr_per_day"] < pts.loc[pid, "lvcr_ci_high"]
        assert pts.loc[pid, "vdt_days"] == pytest.approx(math.log(2) / pts.loc[pid, "lvcr_per_day"], rel=1e-9)
        assert pts.loc[pid, "lvcr_source"] == "fixed-point estimate"
    assert pts["ies"].notna().all()
    # per-scan files
    for pid in cohort.lvcr:
        for k in range(3):
            d = out / "patients" / pid / f"T{k}"
            for name in ("mask.nii.gz", "probability.nii.gz", "attention.nii.gz", "seg.dcm", "rtstruct.dcm"):
                assert (d / name).is_file(), d / name
        assert (out / "patients" / pid / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pd.read_csv(out / "errors.csv").empty
    assert result.processed == ["P00", "P01", "P02"] and result.resumed == []


def test_resume_skips_finished_and_reruns_changed(cohort, first_run, tmp_path):
    result, bundle, out = first_run
    before = (out / "results.csv").read_text()
    calls = bundle.model.calls
    again = run(cohort, out, bundle)
    assert bundle.model.calls == calls, "a rerun with unchanged inputs must not segment anything"
    assert again.resumed == ["P00", "P01", "P02"] and again.processed == []
    assert (out / "results.csv").read_text() == before
    # a changed model reruns everything: same class, other weights (into a copy: the fixture's run stays as it is)
    other = OracleBundle(model=OracleNet(thr_hu=-390.0))
    assert model_identity(other)["weights_sha256"] != model_identity(bundle)["weights_sha256"]
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    rerun = run(cohort, copy, other)
    assert rerun.processed == ["P00", "P01", "P02"] and rerun.resumed == []
    assert other.model.calls > 0 and bundle.model.calls == calls
    res = pd.read_csv(copy / "results.csv", dtype={"patient_id": str})
    assert (res.model_weights_sha256 == model_identity(other)["weights_sha256"]).all()
    # and the original model, run again on that copy, reruns everything back
    back = run(cohort, copy, bundle)
    assert back.processed == ["P00", "P01", "P02"] and back.resumed == []
    assert bundle.model.calls > calls


def test_changed_input_reruns_only_that_patient(tmp_path):
    cohort = make_tiny_cohort(tmp_path / "c", n_patients=2, n_timepoints=2, dicom=False)
    bundle = OracleBundle()
    out = tmp_path / "out"
    first = run(cohort, out, bundle)
    assert first.processed == ["P00", "P01"]
    # change one voxel of P01 T1
    from mkunet.io import read_volume

    path = cohort.root / "P01" / "T1" / "image.nii.gz"
    vol = read_volume(path)
    arr = vol.array.copy()
    arr[0, 0, 0] = -900.0
    write_volume(vol, path, arr)
    calls = bundle.model.calls
    second = run(cohort, out, bundle)
    assert second.processed == ["P01"] and second.resumed == ["P00"]
    assert bundle.model.calls > calls
    # NIfTI inputs: no DICOM outputs, and the row says so
    res = pd.read_csv(out / "results.csv")
    assert set(res.formats_written) == {"mask,attention"}
    assert not (out / "patients" / "P00" / "T0" / "seg.dcm").exists()
    # a changed parameter reruns every patient
    third = run(cohort, out, bundle, margin_mm=20.0)
    assert third.processed == ["P00", "P01"]


def test_corrupt_case_reported_others_complete(tmp_path):
    cohort = make_tiny_cohort(tmp_path / "c", n_patients=3, n_timepoints=3)
    # P01 T1: truncate one DICOM file (corrupt pixel data)
    victim = sorted((cohort.root / "P01" / "T1" / "dicom").glob("*.dcm"))[5]
    victim.write_bytes(victim.read_bytes()[:400])
    # P02: only its first scan remains readable -> measurements kept, no LVCR
    for k in (1, 2):
        for f in (cohort.root / "P02" / f"T{k}" / "dicom").glob("*.dcm"):
            f.write_bytes(b"not a dicom file")
    # a patient with scans but no clinical row, and a clinical row without scans
    clin = pd.read_csv(cohort.root / "clinical.csv")
    clin = clin[clin.patient_id != "P00"]
    clin = pd.concat(
        [
            clin,
            pd.DataFrame([{"patient_id": "P99", "age": 60, "sex": "M", "smoking": "never", "grade": 1, "stage": "I"}]),
        ]
    )
    clin.to_csv(cohort.root / "clinical.csv", index=False)
    bundle = OracleBundle()
    out = tmp_path / "out"
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_cohort(cohort.root, cohort.root / "clinical.csv", out, model=bundle)
    assert any("patient P01 T1 (read)" in str(w.message) for w in caught)  # a console warning per problem
    err = pd.read_csv(out / "errors.csv", dtype={"patient_id": str})
    by = {(r.patient_id, None if pd.isna(r.timepoint) else int(r.timepoint), r.stage) for r in err.itertuples()}
    assert ("P01", 1, "read") in by
    assert ("P02", 1, "read") in by and ("P02", 2, "read") in by and ("P02", None, "kinetics") in by
    assert ("P00", None, "clinical") in by and ("P99", None, "discover") in by
    # the read error of P01 T1 names the damaged file (and its folder)
    read_error = err[(err.patient_id == "P01") & (err.timepoint == 1) & (err.stage == "read")].error.iloc[0]
    assert str(victim) in read_error and str(victim.parent) in read_error
    res = pd.read_csv(out / "results.csv", dtype={"patient_id": str})
    assert sorted(res.patient_id.unique()) == ["P01", "P02"]
    p1 = res[res.patient_id == "P01"].set_index("timepoint")
    assert list(p1.status) == ["ok", "error", "ok"]
    pts = pd.read_csv(out / "patients.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert abs(pts.loc["P01", "lvcr_per_day"] - cohort.lvcr["P01"]) < 1.5e-3  # from T0 and T2
    assert pts.loc["P01", "status"] == "partial"
    assert pd.isna(pts.loc["P02", "lvcr_per_day"]) and pts.loc["P02", "baseline_volume_cm3"] > 0
    assert result.processed == ["P01", "P02"]


def test_empty_segmentation_is_kept_and_reported(tmp_path):
    cohort = make_tiny_cohort(tmp_path / "c", n_patients=1, n_timepoints=2, dicom=False)
    bundle = OracleBundle(model=OracleNet(thr_hu=100.0))  # nothing above 100 HU: every mask empty
    out = tmp_path / "out"
    result = run(cohort, out, bundle)
    res = pd.read_csv(out / "results.csv")
    assert list(res.status) == ["empty", "empty"]
    err = pd.read_csv(out / "errors.csv")
    assert (err.stage == "segment").sum() == 2 and (err.stage == "kinetics").sum() == 1
    assert result.patients.loc[0, "status"] == "partial"


def test_folder_discovery_dates_from_dicom(tmp_path):
    root = tmp_path / "cohort"
    arr = np.full((4, 16, 16), -850.0, np.float32)
    for pid, dates in {"A": ["20240301", "20240105"], "B": ["20240110"]}.items():
        for j, d in enumerate(dates):
            write_ct_series(root / pid / f"scan{j}", arr, SPACING, patient_id=pid, study_date=d)
    scans = discover_scans(root)
    assert list(scans) == ["A", "B"]
    assert [s.days for s in scans["A"]] == [0.0, float((dt.date(2024, 3, 1) - dt.date(2024, 1, 5)).days)]
    assert scans["A"][0].path.name == "scan1" and scans["A"][0].scan_date == "2024-01-05"
    # a NIfTI without a date: clear error naming the file and asking for scans.csv
    write_volume(Volume(arr, spacing=SPACING), root / "B" / "extra.nii.gz")
    with pytest.raises(ValueError, match=r"extra\.nii\.gz.*scans\.csv"):
        discover_scans(root)


def test_bad_user_input(tmp_path):
    cohort = make_tiny_cohort(tmp_path / "c", n_patients=1, n_timepoints=2, dicom=False)
    with pytest.raises(ValueError, match="--roi"):
        run_cohort(cohort.root, cohort.root / "clinical.csv", tmp_path / "o", model=OracleBundle(), roi="box")
    with pytest.raises(ValueError, match="format"):
        run_cohort(cohort.root, cohort.root / "clinical.csv", tmp_path / "o", model=OracleBundle(), formats=["png"])
    with pytest.raises(FileNotFoundError, match="nope"):
        run_cohort(tmp_path / "nope", cohort.root / "clinical.csv", tmp_path / "o", model=OracleBundle())
    dup = pd.read_csv(cohort.root / "clinical.csv")
    pd.concat([dup, dup]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ValueError, match="P00.*more than once"):
        run_cohort(cohort.root, tmp_path / "dup.csv", tmp_path / "o", model=OracleBundle())


def test_load_run_round_trip(first_run):
    result, _, out = first_run
    loaded = load_run(out)
    assert len(loaded.results) == len(result.results) and len(loaded.patients) == 3
    assert loaded.meta["model"]["model_name"] == "oracle"


def test_cli_run_reports_bad_input(tmp_path):
    from typer.testing import CliRunner

    from mkunet.cli import app

    cohort = make_tiny_cohort(tmp_path / "c", n_patients=1, n_timepoints=2, dicom=False, shape=(12, 32, 32))
    res = CliRunner().invoke(
        app,
        [
            "run",
            str(tmp_path / "missing"),
            "--clinical",
            str(cohort.root / "clinical.csv"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "missing" in res.output
    res = CliRunner().invoke(
        app,
        [
            "run",
            str(cohort.root),
            "--clinical",
            str(cohort.root / "clinical.csv"),
            "--out",
            str(tmp_path / "o"),
            "--roi",
            "box",
        ],
    )
    assert res.exit_code == 2 and "--roi" in res.output
