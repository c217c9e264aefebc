"""Reading the real CT data of ../shared/data (skipped when absent): DICOM = NIfTI, RTSTRUCT = mask, volumes."""

from __future__ import annotations

import numpy as np
import pytest

from mkunet.io import list_rois, read_mask, read_rtstruct, read_volume


@pytest.fixture(scope="module")
def ibsi_dicom(shared_data):
    return read_volume(shared_data / "ibsi" / "ct_phantom" / "dicom" / "image")


def test_ibsi_dicom_series_equals_nifti(shared_data, ibsi_dicom):
    nifti = read_volume(shared_data / "ibsi" / "ct_phantom" / "image.nii.gz")
    dcm = ibsi_dicom
    assert dcm.shape == nifti.shape == (60, 201, 204)
    np.testing.assert_allclose(dcm.array, nifti.array, atol=0.5)  # same HU (up to rounding)
    np.testing.assert_allclose(dcm.spacing, nifti.spacing, rtol=1e-6)
    np.testing.assert_allclose(dcm.spacing, (3.0, 0.977, 0.977), atol=1e-5)
    np.testing.assert_allclose(dcm.origin, nifti.origin, atol=1e-3)
    np.testing.assert_allclose(dcm.direction, nifti.direction, atol=1e-6)
    assert len(dcm.source) == 60 and len(set(dcm.source)) == 60
    assert dcm.meta["Modality"] == "CT" and dcm.patient_id == "1"
    assert dcm.series_uid and dcm.study_uid and dcm.frame_of_reference_uid


def test_ibsi_rtstruct_equals_mask(shared_data, ibsi_dicom):
    rtstruct = shared_data / "ibsi" / "ct_phantom" / "dicom" / "rtstruct.dcm"
    assert "GTV-1" in list_rois(rtstruct)
    mask = read_rtstruct(rtstruct, ibsi_dicom, roi="GTV-1")
    truth = read_mask(shared_data / "ibsi" / "ct_phantom" / "mask.nii.gz", ibsi_dicom)
    assert truth.sum() == 125_256  # the README's voxel count
    dice = 2.0 * np.count_nonzero(mask & truth) / (mask.sum() + truth.sum())
    assert dice >= 0.995, dice  # measured: 1.0 (identical voxel for voxel)


@pytest.mark.parametrize("case, expected_cm3", [("lung1", 1.361), ("lung2", 48.43)])
def test_pyradiomics_label_volumes(shared_data, case, expected_cm3):
    image = read_volume(shared_data / "pyradiomics" / f"{case}_image.nrrd")
    mask = read_mask(shared_data / "pyradiomics" / f"{case}_label.nrrd", image)
    volume_cm3 = mask.sum() * image.voxel_volume_mm3 / 1000.0
    assert float(f"{volume_cm3:.4g}") == pytest.approx(expected_cm3, rel=1e-3)
    assert f"{volume_cm3:.3g}" == f"{expected_cm3:.3g}"


def test_ct_small_single_file(shared_data):
    vol = read_volume(shared_data / "pydicom" / "CT_small.dcm")
    assert vol.shape == (1, 128, 128)
    assert vol.spacing[0] == pytest.approx(5.0)  # SliceThickness of the file
    assert vol.meta["Modality"] == "CT"
    # a real CT slice: air around -1000..-800 HU, tissue and bone above 0 HU
    assert vol.array.min() < -800 and vol.array.max() > 500


def test_totalsegmentator_example(shared_data):
    vol = read_volume(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")
    assert vol.shape == (30, 101, 122)  # README: 122 x 101 x 30 (x, y, z)
    np.testing.assert_allclose(vol.spacing, (3.0, 3.0, 3.0), atol=1e-3)
