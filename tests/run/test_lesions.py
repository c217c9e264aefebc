"""Target lesions: lesions.csv parsing and checks, the per-lesion cohort run (sum of target
lesions, per-lesion LVCR, resume), the CLI option, and the synthetic cohort's baseline clicks.

The cohort is written here: patient P00 has two balls of soft tissue (40 HU) in lung
(-850 HU) far apart, lesion "1" growing and lesion "2" shrinking until it is gone at the
last scan; P01 has one ball and no row in lesions.csv (whole-volume path). The model is the
HU oracle of tests/test_pipeline.py, so the masks and volumes are analytic.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mkunet.analysis import kinetics
from mkunet.io import read_mask, read_volume, write_mask, write_volume
from mkunet.run.inputs import TargetLesion, discover_scans, read_lesions
from mkunet.run.pipeline import run_cohort
from mkunet.volume import Volume
from tests.run.test_pipeline import OracleBundle, ball, write_ct_series

SHAPE = (16, 48, 64)  # (z, y, x): 40 x 60 x 80 mm
SPACING = (2.5, 1.25, 1.25)  # (z, y, x) mm
ORIGIN = (-25.0, -25.0, 10.0)  # (x, y, z) mm, as write_ct_series in test_pipeline
DAYS = [0, 60, 130]
#: P00's target lesions: centre (z, y, x) voxels, radius at day 0 (mm), true LVCR (per day), last scan present
LESIONS = {
    "1": {"centre": (7.7, 24.3, 14.2), "r0": 6.0, "lvcr": 0.008, "last": 2},
    "2": {"centre": (8.2, 23.6, 50.4), "r0": 5.0, "lvcr": -0.006, "last": 1},
}
P01 = {"centre": (7.6, 23.8, 31.7), "r0": 5.5, "lvcr": 0.004, "last": 2}


def radius(spec, day):
    return spec["r0"] * math.exp(spec["lvcr"] * day / 3.0)  # V ~ r^3: ln V grows at lvcr per day


def click_mm(centre_zyx):
    return tuple(float(v) for v in Volume(np.zeros(SHAPE, np.float32), SPACING, ORIGIN).index_to_physical(centre_zyx))


def make_two_lesion_cohort(root: Path) -> Path:
    """P00 (two lesions, DICOM + NIfTI) and P01 (one ball, NIfTI), three scans each; writes lesions.csv."""
    root.mkdir(parents=True, exist_ok=True)
    scan_rows, clin_rows = [], []
    for pid, specs in (("P00", list(LESIONS.values())), ("P01", [P01])):
        for k, day in enumerate(DAYS):
            m = np.zeros(SHAPE, bool)
            for spec in specs:
                if k <= spec["last"]:
                    m |= ball(SHAPE, SPACING, spec["centre"], radius(spec, day))
            arr = np.full(SHAPE, -850.0, np.float32)
            arr[m] = 40.0
            vol = Volume(arr, spacing=SPACING, origin=ORIGIN)
            tdir = root / pid / f"T{k}"
            write_volume(vol, tdir / "image.nii.gz")
            write_mask(m, vol, tdir / "mask.nii.gz")
            row = {
                "patient_id": pid,
                "timepoint": k,
                "days": day,
                "image": f"{pid}/T{k}/image.nii.gz",
                "mask": f"{pid}/T{k}/mask.nii.gz",
            }
            if pid == "P00":
                write_ct_series(tdir / "dicom", arr, SPACING, patient_id=pid, study_date=f"2024{1 + 2 * k:02d}10")
                row["dicom"] = f"{pid}/T{k}/dicom"
            scan_rows.append(row)
        clin_rows.append({"patient_id": pid, "age": 61, "sex": "F", "smoking": "former", "grade": 2, "stage": "III"})
    pd.DataFrame(scan_rows).to_csv(root / "scans.csv", index=False)
    pd.DataFrame(clin_rows).to_csv(root / "clinical.csv", index=False)
    rows = []
    for lid, spec in LESIONS.items():
        x, y, z = click_mm(spec["centre"])
        rows.append({"patient_id": "P00", "lesion_id": lid, "x_mm": x, "y_mm": y, "z_mm": z})
    pd.DataFrame(rows).to_csv(root / "lesions.csv", index=False)
    return root


def run(root: Path, out: Path, bundle, **kwargs):
    # the bookkeeping is checked against the HU-oracle network's exact voxels; the image
    # lesion model itself is tested in test_lesion.py and test_tracking.py
    kwargs.setdefault("method", "network")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_cohort(
            root, root / "clinical.csv", out, model=bundle, lvcr_max_iter=1, n_boot=10, cohort_figures=False, **kwargs
        )


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


# ============================================================================ read_lesions

HEADER = "patient_id,lesion_id,x_mm,y_mm,z_mm"


def test_read_lesions_parses_optional_columns(tmp_path):
    path = write_csv(
        tmp_path / "l.csv",
        """
patient_id,lesion_id,x_mm,y_mm,z_mm,timepoint,roi
P00,01,-10.5,2,30,,
P00,b,20,-3.25,40,1,10 30 -13 7 30 50

P01,1,0,0,0,0,
""",
    )
    got = read_lesions(path)
    assert [(les.patient_id, les.lesion_id, les.timepoint, les.line) for les in got] == [
        ("P00", "01", 0, 2),
        ("P00", "b", 1, 3),
        ("P01", "1", 0, 5),
    ]
    assert got[0].point_xyz_mm == (-10.5, 2.0, 30.0) and got[0].box_mm is None
    assert got[1].box_mm == ((30.0, 50.0), (-13.0, 7.0), (10.0, 30.0))  # stored (z, y, x) like infer.Box
    assert got[1].box_text == "10 30 -13 7 30 50"
    box = got[1].roi()
    assert (box.x, box.y, box.z, box.units) == ((10.0, 30.0), (-13.0, 7.0), (30.0, 50.0), "mm")
    assert got[0].roi().point == (-10.5, 2.0, 30.0) and got[0].roi().units == "mm"
    # an unknown column is not silently ignored
    write_csv(tmp_path / "x.csv", HEADER + ",organ\nP00,1,0,0,0,lung")
    with pytest.warns(UserWarning, match=r"\['organ'\].*not used"):
        assert len(read_lesions(tmp_path / "x.csv")) == 1


@pytest.mark.parametrize(
    "text, pattern",
    [
        (
            "patient_id,lesion_id,x_mm,y_mm\nP00,1,0,0",
            r"l\.csv.*lacks column\(s\) \['z_mm'\].*patient_id, lesion_id, x_mm, y_mm, z_mm",
        ),
        (
            HEADER + "\nP00,1,0,0,0\nP00,2,0,abc,0",
            r"l\.csv.*line 3 \(patient 'P00', lesion '2'\): y_mm is 'abc', not a finite number",
        ),
        (HEADER + "\nP00,1,0,0,", r"line 2 \(patient 'P00', lesion '1'\): z_mm is empty"),
        (HEADER + "\nP00,1,0,0,nan", r"line 2 .*z_mm is 'nan'"),
        (HEADER + "\nP00,1,0,0,0\nP01,1,0,0,0\nP00,1,5,5,5", r"line 4, patient 'P00', lesion '1'.*duplicate.*line 2"),
        (
            HEADER + "\n" + "\n".join(f"P07,{i},0,0,0" for i in range(6)),
            r"patient 'P07' has 6 target lesions.*at most 5",
        ),
        (HEADER + "\n,1,0,0,0", r"line 2 .*patient_id is empty"),
        (HEADER + ",timepoint\nP00,1,0,0,0,1.5", r"line 2 .*timepoint '1.5' is not a scan index"),
        (HEADER + ",timepoint\nP00,1,0,0,0,-1", r"timepoint '-1'"),
        (HEADER + ",roi\nP00,1,0,0,0,1 2 3", r"line 2 .*roi '1 2 3' is not a box.*x0 x1 y0 y1 z0 z1"),
        (HEADER + ",roi\nP00,1,0,0,0,-5 5 5 -5 -5 5", r"roi '-5 5 5 -5 -5 5' has start >= stop along y"),
        (HEADER + ",roi\nP00,1,0,0,9,-5 5 -5 5 -5 5", r"the click \(0, 0, 9\) mm lies outside its roi box"),
        (HEADER + "\n", r"l\.csv.* has a header .* but no rows"),
        ("", r"l\.csv.* is empty"),
    ],
)
def test_read_lesions_errors_name_file_row_and_column(tmp_path, text, pattern):
    path = tmp_path / "l.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=pattern):
        read_lesions(path)


def test_read_lesions_checks_patients_and_timepoints_against_the_cohort(tmp_path):
    root = make_two_lesion_cohort(tmp_path / "c")
    scans = discover_scans(root)
    write_csv(tmp_path / "l.csv", HEADER + ",timepoint\nP00,1,0,0,20,\nP09,1,0,0,20,\nP10,1,0,0,20,")
    with pytest.raises(ValueError, match=r"\['P09', 'P10'\] have no scans in the cohort.*\['P00', 'P01'\]"):
        read_lesions(tmp_path / "l.csv", scans)
    write_csv(tmp_path / "l.csv", HEADER + ",timepoint\nP00,1,0,0,20,3")
    with pytest.raises(ValueError, match=r"line 2, patient 'P00', lesion '1': timepoint 3 but the patient has 3 scan"):
        read_lesions(tmp_path / "l.csv", scans)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_lesions(tmp_path / "nope.csv")
    # run_cohort refuses before doing anything (no output folder written)
    with pytest.raises(ValueError, match="P09"):
        write_csv(tmp_path / "l.csv", HEADER + "\nP09,1,0,0,20")
        run_cohort(root, root / "clinical.csv", tmp_path / "o", model=OracleBundle(), lesions=tmp_path / "l.csv")
    with pytest.raises(ValueError, match="--roi none cannot be combined with --lesions"):
        run_cohort(
            root, root / "clinical.csv", tmp_path / "o", model=OracleBundle(), lesions=root / "lesions.csv", roi="none"
        )
    assert not (tmp_path / "o").exists()


# ============================================================================ the cohort run


@pytest.fixture(scope="module")
def lesion_run(tmp_path_factory):
    root = make_two_lesion_cohort(tmp_path_factory.mktemp("cohort"))
    out = tmp_path_factory.mktemp("run")
    bundle = OracleBundle()
    result = run(root, out, bundle, lesions=root / "lesions.csv")
    return root, out, bundle, result


def test_each_lesion_is_measured_and_the_patient_is_their_sum(lesion_run):
    root, out, bundle, result = lesion_run
    les = pd.read_csv(out / "lesion_results.csv", dtype={"patient_id": str, "lesion_id": str})
    assert list(zip(les.patient_id, les.lesion_id, les.timepoint)) == [
        ("P00", lid, k) for lid in ("1", "2") for k in range(3)
    ]  # nothing for P01 (no row)
    by = les.set_index(["lesion_id", "timepoint"])
    assert list(by.loc["1", "status"]) == ["ok", "ok", "ok"] and list(by.loc["2", "status"]) == ["ok", "ok", "empty"]
    assert by.loc[("2", 2), "volume_cm3"] == 0.0  # gone: 0, not NaN
    voxel_cm3 = float(np.prod(SPACING)) / 1000
    for lid, spec in LESIONS.items():  # each lesion is its own ball (the two are told apart), exactly
        for k in range(spec["last"] + 1):
            n = int(ball(SHAPE, SPACING, spec["centre"], radius(spec, DAYS[k])).sum())
            assert by.loc[(lid, k), "volume_voxels_cm3"] == pytest.approx(n * voxel_cm3, rel=1e-9), (lid, k)
            expected = 4 / 3 * math.pi * radius(spec, DAYS[k]) ** 3 / 1000  # mesh volume: small balls, coarse z
            assert by.loc[(lid, k), "volume_cm3"] == pytest.approx(expected, rel=0.15), (lid, k)
    assert by.loc[("1", 0), "click_in_mask"] and by.loc[("2", 0), "click_in_mask"]
    # per-lesion LVCR: kinetics.lvcr on the scans where the lesion is present
    for lid, spec in LESIONS.items():
        rows = by.loc[lid]
        present = rows[rows.status == "ok"]
        ref = kinetics.lvcr(present.days.tolist(), present.volume_cm3.tolist())
        np.testing.assert_allclose(rows.lesion_lvcr_per_day, ref.lvcr_per_day, rtol=1e-9)
        np.testing.assert_allclose(rows.lesion_vdt_days, math.log(2) / ref.lvcr_per_day, rtol=1e-9)
        assert (rows.lesion_lvcr_n_scans == spec["last"] + 1).all()
        assert abs(ref.lvcr_per_day - spec["lvcr"]) < 2e-3, (lid, ref.lvcr_per_day)
    assert by.loc[("2", 2), "lesion_response"] in ("CR", "iCR")
    # the patient's volume per scan is the sum of its target lesions; its LVCR is kinetics.lvcr on the sums
    res = pd.read_csv(out / "results.csv", dtype={"patient_id": str, "features_from_lesion": str})
    p0 = res[res.patient_id == "P00"].set_index("timepoint")
    sums = les[les.patient_id == "P00"].groupby("timepoint").volume_cm3.sum()
    np.testing.assert_allclose(p0.volume_cm3.to_numpy(), sums.to_numpy(), rtol=1e-12)
    assert list(p0.status) == ["ok", "ok", "ok"] and list(p0.n_lesions_empty) == [0, 0, 1]
    assert (p0.features_from_lesion == "1").all()  # lesion 1 is the larger throughout
    assert p0.loc[0, "sphericity"] == pytest.approx(by.loc[("1", 0), "sphericity"])
    assert p0.loc[0, "sum_longest_axial_diameter_mm"] == pytest.approx(
        by.loc[("1", 0), "longest_axial_diameter_mm"] + by.loc[("2", 0), "longest_axial_diameter_mm"]
    )
    pts = pd.read_csv(out / "patients.csv", dtype={"patient_id": str, "target_lesions": str}).set_index("patient_id")
    ref = kinetics.lvcr(DAYS, sums.tolist(), weights="interval")
    assert pts.loc["P00", "lvcr_per_day"] == pytest.approx(ref.lvcr_per_day, rel=1e-9)
    assert pts.loc["P00", "lvcr_ci_low"] == pytest.approx(ref.ci_low, rel=1e-9)
    assert pts.loc["P00", "volume_definition"].startswith("sum of 2 target lesion")
    assert pts.loc["P00", "target_lesions"] == "1;2" and "T0', 'T1', 'T2" in pts.loc["P00", "lvcr_notes"]
    assert pts.loc["P01", "volume_definition"].startswith("whole-volume")
    assert abs(pts.loc["P01", "lvcr_per_day"] - P01["lvcr"]) < 1.5e-3  # whole-volume path as before
    # problems are reported, not dropped
    err = pd.read_csv(out / "errors.csv", dtype={"patient_id": str})
    keys = {(r.patient_id, None if pd.isna(r.timepoint) else int(r.timepoint), r.stage) for r in err.itertuples()}
    assert {("P00", 2, "segment"), ("P01", None, "lesions")} <= keys, keys
    assert err.error.str.contains("lesion '2'").any() and not err.error.str.contains("overlap").any()
    assert len(result.lesions) == 6 and "target lesions: 2 in 1 patient" in result.summary()


def test_lesion_outputs_per_scan(lesion_run):
    root, out, _, _ = lesion_run
    pdir = out / "patients" / "P00"
    for k in range(3):
        ref = read_volume(root / "P00" / f"T{k}" / "image.nii.gz")
        union = read_mask(pdir / f"T{k}" / "mask.nii.gz", ref)
        parts = [read_mask(pdir / f"T{k}" / f"lesion_{lid}" / "mask.nii.gz", ref) for lid in LESIONS]
        assert np.array_equal(union, parts[0] | parts[1])
        assert not (parts[0] & parts[1]).any()
        for lid in LESIONS:  # DICOM input: SEG and RTSTRUCT per lesion and for the union
            assert (pdir / f"T{k}" / f"lesion_{lid}" / "seg.dcm").is_file()
        assert (pdir / f"T{k}" / "seg.dcm").is_file() and (pdir / f"T{k}" / "rtstruct.dcm").is_file()
    assert not read_mask(pdir / "T2" / "lesion_2" / "mask.nii.gz", ref).any()
    res = pd.read_csv(out / "results.csv", dtype={"patient_id": str})
    assert res[res.patient_id == "P00"].dice_vs_reference.min() > 0.97  # union vs the reference mask
    assert (out / "lesion_results.parquet").is_file()


def test_resume_reruns_only_the_patient_whose_lesions_changed(lesion_run, tmp_path):
    import shutil

    root, done, bundle, first = lesion_run
    out = tmp_path / "run"
    shutil.copytree(done, out)  # the other tests read the fixture's folder: work on a copy
    calls = bundle.model.calls
    again = run(root, out, bundle, lesions=root / "lesions.csv")
    assert bundle.model.calls == calls and again.resumed == ["P00", "P01"]
    assert len(again.lesions) == 6
    table = pd.read_csv(root / "lesions.csv")
    table.loc[0, "x_mm"] += 1.0  # move lesion 1's click by 1 mm
    table.to_csv(tmp_path / "moved.csv", index=False)
    moved = run(root, out, bundle, lesions=tmp_path / "moved.csv")
    assert moved.processed == ["P00"] and moved.resumed == ["P01"]
    # without --lesions: the whole-volume path, and no stale lesion table
    plain = run(root, out, bundle)
    assert plain.processed == ["P00"] and plain.resumed == ["P01"]
    assert not (out / "lesion_results.csv").exists() and plain.lesions.empty
    assert "volume_definition" not in pd.read_csv(out / "patients.csv").columns


def test_lesions_given_in_python_and_a_failing_lesion(tmp_path):
    """A click outside the volume costs that lesion only (errors row naming it); the sum uses the others."""
    root = make_two_lesion_cohort(tmp_path / "c")
    good = TargetLesion("P00", "1", click_mm(LESIONS["1"]["centre"]))
    bad = TargetLesion("P00", "far", (500.0, 0.0, 0.0))
    result = run(root, tmp_path / "o", OracleBundle(), lesions=[good, bad])
    les = result.lesions
    assert set(les[les.lesion_id == "far"].status) == {"error"}
    p0 = result.results[result.results.patient_id == "P00"]
    np.testing.assert_allclose(p0.volume_cm3, les[les.lesion_id == "1"].volume_cm3, rtol=1e-12)
    err = result.errors
    row = err[(err.stage == "lesions") & (err.patient_id == "P00")]
    assert len(row) == 1 and "lesion 'far'" in row.error.iloc[0] and "outside the image" in row.error.iloc[0]
    assert result.patients.set_index("patient_id").loc["P00", "n_target_lesions_failed"] == 1


def test_cli_run_lesions_option(tmp_path):
    from typer.testing import CliRunner

    from mkunet.cli import app

    root = make_two_lesion_cohort(tmp_path / "c")
    bad = write_csv(tmp_path / "bad.csv", "patient_id,lesion,x_mm,y_mm,z_mm\nP00,1,0,0,0")
    args = ["run", str(root), "--clinical", str(root / "clinical.csv"), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(app, [*args, "--lesions", str(bad)])
    assert res.exit_code == 2, res.output
    assert "bad.csv" in res.output and "lesion_id" in res.output
    res = CliRunner().invoke(app, [*args, "--lesions", str(root / "lesions.csv"), "--roi", "none"])
    assert res.exit_code == 2 and "--lesions" in res.output
    assert "--lesions" in CliRunner().invoke(app, ["run", "--help"]).output


# ============================================================================ synthetic cohorts


def test_baseline_click_is_inside_a_crescent():
    from mkunet.synth.writers import baseline_lesion

    shape, spacing = (9, 30, 30), (2.0, 1.0, 1.0)
    outer = ball(shape, spacing, (4, 15, 15), 10.0)
    crescent = outer & ~ball(shape, spacing, (4, 15, 19), 9.0)  # centroid falls in the hole
    centroid = np.argwhere(crescent).mean(axis=0)
    assert not crescent[tuple(np.rint(centroid).astype(int))]
    vol = Volume(np.zeros(shape, np.float32), spacing, origin=(-7.0, 3.0, -40.0))
    p = SimpleNamespace(patient_id="S1", scans=[SimpleNamespace(mask=crescent, volume=vol)])
    row = baseline_lesion(p)
    idx = np.rint(vol.physical_to_index([row["x_mm"], row["y_mm"], row["z_mm"]])).astype(int)
    assert crescent[tuple(idx)] and row["lesion_id"] == "1" and row["patient_id"] == "S1"
    p.scans[0].mask = np.zeros(shape, bool)
    assert baseline_lesion(p) is None


def test_demo_passes_the_synthetic_lesions_to_the_run(tmp_path, monkeypatch):
    import mkunet.run.demo as demo

    seen = {}

    def fake_run_cohort(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(demo, "run_cohort", fake_run_cohort)
    with pytest.raises(RuntimeError, match="stop here"):
        demo.run_demo(tmp_path, n_patients=2, shape=(12, 40, 40), timepoints=(2, 2))
    assert seen["lesions"] == tmp_path / "cohort" / "lesions.csv" and seen["lesions"].is_file()
    assert len(read_lesions(seen["lesions"], discover_scans(tmp_path / "cohort"))) == 2


def test_segmentation_uncertainty_columns_and_the_interval_they_give(lesion_run):
    """Each measured scan carries its segmentation SE; the sum's SE adds the lesions' in quadrature; the
    patient's interval is kinetics.lvcr with those sigmas (se_method "auto", as the pipeline); growth call."""
    _, out, _, _ = lesion_run
    les = pd.read_csv(out / "lesion_results.csv", dtype={"patient_id": str, "lesion_id": str})
    ok = les[les.status == "ok"]
    assert ok.volume_se_cm3.notna().all() and (ok.sigma_log_volume_seg >= 0).all()
    np.testing.assert_allclose(ok.volume_se_cm3, ok.sigma_log_volume_seg * ok.volume_cm3, rtol=1e-9)
    res = pd.read_csv(out / "results.csv", dtype={"patient_id": str}).set_index(["patient_id", "timepoint"])
    for k in range(3):
        parts = ok[(ok.patient_id == "P00") & (ok.timepoint == k)]
        assert res.loc[("P00", k), "volume_se_cm3"] == pytest.approx(
            math.sqrt((parts.volume_se_cm3**2).sum()), rel=1e-9
        )
    p0 = res.loc["P00"]
    ref = kinetics.lvcr(
        p0.days.tolist(), p0.volume_cm3.tolist(), se_method="auto", sigma_segmentation=p0.sigma_log_volume_seg.tolist()
    )
    pts = pd.read_csv(out / "patients.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert pts.loc["P00", "lvcr_ci_high"] == pytest.approx(ref.ci_high, rel=1e-9)
    assert pts.loc["P00", "growth"] == kinetics.growth_call(ref.ci_low, ref.ci_high)
    assert set(pts.growth.dropna()) <= set(kinetics.GROWTH_CALLS)
    # the scan's sidecar (union of the lesions) carries the sum's SE, the lesions' in quadrature
    import json

    for k in range(3):
        side = json.loads((out / "patients" / "P00" / f"T{k}" / "mask.json").read_text())
        parts = [
            json.loads(p.read_text())
            for p in sorted((out / "patients" / "P00" / f"T{k}").glob("lesion_*/mask.json"))
            if not json.loads(p.read_text())["empty"]
        ]
        assert len(parts) == (2 if k < 2 else 1) and side["volume_se_cm3"] is not None
        assert side["volume_se_cm3"] == pytest.approx(math.sqrt(sum(p["volume_se_cm3"] ** 2 for p in parts)), abs=1e-12)


def test_lesion_qc_per_lesion_and_on_the_patient_rows(lesion_run):
    """Lesion 2 vanishes at T2 (a complete response): its T2 is flagged (empty mask, lost on a follow-up, which
    also names the baseline), the patient's rows carry the lesion's reasons; lesion 1 is ok throughout."""
    _, out, _, result = lesion_run
    les = pd.read_csv(out / "lesion_results.csv", dtype={"patient_id": str, "lesion_id": str})
    by = les.set_index(["lesion_id", "timepoint"])
    assert list(by.loc["1", "qc"]) == ["ok", "ok", "ok"], by.loc["1", "qc_reasons"]
    assert list(by.loc["2", "qc"]) == ["review", "ok", "review"]
    assert set(by.loc[("2", 2), "qc_codes"].split(",")) == {"empty", "lost_follow_up"}
    res = pd.read_csv(out / "results.csv", dtype={"patient_id": str}).set_index(["patient_id", "timepoint"])
    assert res.loc[("P00", 2), "qc"] == "review" and res.loc[("P00", 2), "qc_reasons"].startswith("lesion 2: ")
    assert res.loc[("P00", 1), "qc"] == "ok"
    pts = result.patients.set_index("patient_id")
    assert pts.loc["P00", "qc"] == "review" and not pts.loc["P00", "in_statistics"]
    assert "P00" in set(result.excluded.patient_id)
