"""DICOM CT series and cohort layout written by mkunet.synth."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pydicom
import pytest

from mkunet.io import read_mask, read_volume
from mkunet.synth import make_cohort
from mkunet.synth.writers import synthesise, write_cohort


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    cohort = make_cohort(2, seed=4, shape=(12, 48, 48), timepoints=(2, 2))
    out = write_cohort(cohort, tmp_path_factory.mktemp("cohort"))
    return cohort, out


def test_layout_and_tables(written):
    cohort, out = written
    clinical = pd.read_csv(out / "clinical.csv")
    scans = pd.read_csv(out / "scans.csv")
    outcomes = pd.read_csv(out / "outcomes.csv")
    assert list(clinical.columns[:6]) == ["patient_id", "age", "sex", "smoking", "grade", "stage"]
    assert list(scans.columns) == [
        "patient_id",
        "timepoint",
        "scan_date",
        "days",
        "image",
        "mask",
        "dicom",
        "series_uid",
    ]
    assert list(outcomes.columns) == [
        "patient_id",
        "os_days",
        "event",
        "pdl1_tps",
        "pdl1_positive",
        "pdl1_area_ratio",
        "cd8_density",
        "response",
    ]
    assert len(clinical) == 2 and len(scans) == 4 and len(outcomes) == 2
    assert scans["series_uid"].is_unique
    import json

    truth = json.loads((out / "truth.json").read_text())
    assert truth["outcome_model"]["beta"]["lvcr_z"] == 0.5
    assert len(truth["patients"]) == 2 and "lvcr_per_day" in truth["patients"][0]


def test_dicom_series_reads_back_identical_hu_and_geometry(written):
    cohort, out = written
    for p in cohort.patients:
        for s in p.scans:
            back = read_volume(out / p.patient_id / f"T{s.timepoint}" / "dicom")
            assert back.shape == s.volume.shape
            np.testing.assert_allclose(back.array, s.volume.array, atol=0.5)
            np.testing.assert_allclose(back.spacing, s.volume.spacing, atol=1e-4)
            np.testing.assert_allclose(back.origin, s.volume.origin, atol=1e-3)
            assert back.patient_id == p.patient_id
            nii = read_volume(out / p.patient_id / f"T{s.timepoint}" / "image.nii.gz")
            np.testing.assert_array_equal(nii.array, s.volume.array)
            mask = read_mask(out / p.patient_id / f"T{s.timepoint}" / "mask.nii.gz", back)
            np.testing.assert_array_equal(mask, s.mask)


def test_dicom_identity_uids_unique_and_deterministic(written, tmp_path):
    cohort, out = written
    files = sorted((out / "SYN0001" / "T0" / "dicom").glob("*.dcm"))
    ds = [pydicom.dcmread(f) for f in files]
    assert len({d.SOPInstanceUID for d in ds}) == len(ds)
    d0 = ds[0]
    assert d0.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert d0.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert d0.PatientID == "SYN0001" and d0.Modality == "CT" and d0.PixelRepresentation == 1
    assert d0.StudyDate == cohort.patients[0].scans[0].study_date
    t1 = pydicom.dcmread(sorted((out / "SYN0001" / "T1" / "dicom").glob("*.dcm"))[0])
    assert t1.StudyInstanceUID != d0.StudyInstanceUID and t1.FrameOfReferenceUID != d0.FrameOfReferenceUID
    # same seed -> same UIDs and pixels, written streaming
    synthesise(tmp_path, 1, seed=4, shape=(12, 48, 48), timepoints=(2, 2), formats=("dicom",))
    again = pydicom.dcmread(tmp_path / "SYN0001" / "T0" / "dicom" / files[0].name)
    assert again.SOPInstanceUID == d0.SOPInstanceUID and again.PixelData == d0.PixelData


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_dciodvfy_reports_no_errors(written):
    _, out = written
    f = sorted((out / "SYN0002" / "T1" / "dicom").glob("*.dcm"))[3]
    res = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
    text = res.stdout + res.stderr
    assert "Error" not in text, text


def test_parallel_workers_write_identical_files(tmp_path):
    a = synthesise(
        tmp_path / "a", 2, seed=9, shape=(12, 40, 40), timepoints=(2, 2), formats=("nifti", "dicom"), workers=1
    )
    b = synthesise(
        tmp_path / "b", 2, seed=9, shape=(12, 40, 40), timepoints=(2, 2), formats=("nifti", "dicom"), workers=2
    )
    assert [p.lvcr for p in a.patients] == [p.lvcr for p in b.patients]
    for rel in ("SYN0002/T1/dicom/CT_0005.dcm", "SYN0001/T0/mask.nii.gz", "scans.csv", "outcomes.csv", "truth.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
