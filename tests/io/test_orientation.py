"""Non-identity orientations: head-first prone, feet-first, descending slices, coronal, sagittal, oblique.

Every other test writes head-first-supine axial images (identity direction). Here the
geometry is checked against references that do not go through ``mkunet``'s own
index <-> mm mapping: the DICOM headers themselves, SimpleITK's
``TransformContinuousIndexToPhysicalPoint``, and a NIfTI affine written by hand. This file checks
geometry only; that segmentation gives the same result in every orientation is checked in
tests/segmentation/test_orientation_segmentation.py.

Conventions: arrays (z, y, x); spacings (z, y, x) mm; physical points (x, y, z) mm, DICOM LPS;
``Volume.direction`` column j = image index axis j (x, y, z), as in SimpleITK.
"""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest

from mkunet.io import read_rtstruct, read_volume, write_volume
from mkunet.io.dicom_out import write_rtstruct, write_seg
from mkunet.segmentation.infer import Box, Seed, roi_crop_box
from mkunet.volume import Volume
from tests.io.test_dicom_out import dice, rasterise, read_seg, write_ct_series

SHAPE = (12, 28, 26)  # (z, y, x)
SPACING = (2.0, 0.9, 0.8)  # (z, y, x) mm
ORIGIN = (-20.0, 35.0, -110.0)  # (x, y, z) mm
_C, _S = math.cos(math.radians(30)), math.sin(math.radians(30))

# ImageOrientationPatient (row cosine, column cosine) of DICOM series; the slice normal n = row x column
DICOM_CASES = {
    "head-first-supine": (1, 0, 0, 0, 1, 0),
    "head-first-prone": (-1, 0, 0, 0, -1, 0),  # x and y flipped
    "feet-first-supine": (-1, 0, 0, 0, 1, 0),  # n = -z: slice positions decrease along the array
    "coronal": (1, 0, 0, 0, 0, -1),  # rows run down the patient (-z), slices go posterior (+y)
    "sagittal": (0, 1, 0, 0, 0, -1),  # columns run posterior, rows down, slices to the patient's right (-x)
    "oblique-30deg": (_C, _S, 0, -_S, _C, 0),
}

# direction matrices (columns = image axes x, y, z in physical x, y, z) for volumes built in memory:
# these include left-handed ones (a single flip), which NIfTI can hold but a DICOM series cannot
DIRECTIONS = {
    "identity": np.eye(3),
    "head-first-prone": np.diag([-1.0, -1.0, 1.0]),
    "z-flipped": np.diag([1.0, 1.0, -1.0]),
    "feet-first-supine": np.diag([-1.0, 1.0, -1.0]),
    "coronal": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
    "sagittal": np.array([[0.0, 0, -1], [1, 0, 0], [0, -1, 0]]),
    "permuted-left-handed": np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]]),
    "oblique-30deg": np.array([[_C, -_S, 0], [_S, _C, 0], [0, 0, 1]]),
}


def _direction_from_iop(iop) -> np.ndarray:
    row, column = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    return np.column_stack([row, column, np.cross(row, column)])


def _sitk_reference(direction: np.ndarray, spacing=SPACING, origin=ORIGIN, shape=SHAPE):
    """A SimpleITK image with this geometry, built without ``mkunet`` (index order x, y, z)."""
    import SimpleITK as sitk

    image = sitk.Image([int(n) for n in reversed(shape)], sitk.sitkUInt8)
    image.SetSpacing([float(s) for s in reversed(spacing)])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    return image


def _sitk_physical(image, index_zyx) -> np.ndarray:
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in index_zyx[::-1]]))


def _volume(direction: np.ndarray) -> Volume:
    return Volume(np.zeros(SHAPE, np.float32), SPACING, ORIGIN, direction=direction)


def _ball_mm(volume: Volume, centre_xyz, radius_mm: float) -> np.ndarray:
    """Voxels whose centre (physical, mm) lies within ``radius_mm`` of ``centre_xyz``."""
    physical = volume.index_to_physical(np.indices(volume.shape).reshape(3, -1).T)
    return (np.linalg.norm(physical - np.asarray(centre_xyz), axis=1) <= radius_mm).reshape(volume.shape)


# ---------------------------------------------------------------------------- (a) DICOM SEG / RTSTRUCT
@pytest.fixture(scope="module", params=[*DICOM_CASES, "descending-instances"])
def dicom_ct(request, tmp_path_factory) -> tuple[str, Volume]:
    name = request.param
    iop = DICOM_CASES.get(name, DICOM_CASES["head-first-supine"])
    folder = write_ct_series(
        tmp_path_factory.mktemp("ct") / name,
        shape=SHAPE,
        spacing=SPACING,
        orientation=iop,
        origin=ORIGIN,
        descending=name == "descending-instances",
        patient_position="FFS" if "feet" in name else "HFS",
    )
    return name, read_volume(folder)


def test_dicom_series_geometry_is_read_from_the_headers(dicom_ct):
    """Voxel [k, j, i] lies where the header of its slice file says (PS3.3 C.7.6.2.1.1)."""
    name, ct = dicom_ct
    iop = DICOM_CASES.get(name, DICOM_CASES["head-first-supine"])
    np.testing.assert_allclose(ct.direction, _direction_from_iop(iop), atol=1e-6)
    for k in (0, ct.shape[0] - 1):
        header = pydicom.dcmread(ct.source[k], stop_before_pixels=True)
        position = np.asarray(header.ImagePositionPatient, float)
        iop_k = np.asarray(header.ImageOrientationPatient, float)
        row, column = iop_k[:3], iop_k[3:]
        row_spacing, column_spacing = (float(v) for v in header.PixelSpacing)
        for j, i in ((0, 0), (5, 3), (ct.shape[1] - 1, ct.shape[2] - 1)):
            expected = position + i * column_spacing * row + j * row_spacing * column
            np.testing.assert_allclose(ct.index_to_physical((k, j, i)), expected, atol=1e-4)
    if name == "descending-instances":  # instance 1 is the last slice along the normal
        assert int(pydicom.dcmread(ct.source[-1], stop_before_pixels=True).InstanceNumber) == 1


def test_seg_and_rtstruct_round_trip(dicom_ct, tmp_path):
    """An off-centre ball (placed in mm) comes back voxel for voxel, at the same place in mm."""
    name, ct = dicom_ct
    centre_xyz = ct.index_to_physical((7.3, 10.6, 15.2))  # off-centre on every axis: a flip moves it
    mask = _ball_mm(ct, centre_xyz, radius_mm=4.5)
    assert 100 < mask.sum() < 0.2 * mask.size
    seg_path = write_seg(mask, ct, tmp_path / "seg.dcm")
    rt_path = write_rtstruct(mask, ct, tmp_path / "rt.dcm")

    np.testing.assert_array_equal(read_seg(seg_path, ct), mask)  # highdicom, by source SOP instance
    np.testing.assert_array_equal(rasterise(rt_path, ct), mask)  # the test's own header-based rasteriser
    assert dice(read_rtstruct(rt_path, ct, roi="GTV"), mask) > 0.95

    # in mm, independently of any array: the contours surround the ball's centre
    points = np.concatenate(
        [
            np.asarray(item.ContourData, float).reshape(-1, 3)
            for item in pydicom.dcmread(rt_path).ROIContourSequence[0].ContourSequence
        ]
    )
    voxel_centroid = ct.index_to_physical(np.argwhere(mask).mean(0))
    assert np.linalg.norm(points.mean(0) - voxel_centroid) < 1.0
    assert np.linalg.norm(voxel_centroid - centre_xyz) < 0.5
    # the SEG frames sit on the planes of the CT slices they reference (PlanePositionSequence)
    seg = pydicom.dcmread(seg_path)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in ct.source]
    positions = {str(h.SOPInstanceUID): np.asarray(h.ImagePositionPatient, float) for h in headers}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source_uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        frame_position = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        np.testing.assert_allclose(frame_position, positions[source_uid], atol=1e-3)


# ---------------------------------------------------------------------------- (b) ROI crops in mm
@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_index_mm_mapping_matches_simpleitk(name):
    direction = DIRECTIONS[name]
    volume, reference = _volume(direction), _sitk_reference(direction)
    for index in ((0, 0, 0), (3, 7, 11), (11.5, 0.25, 25), (-1, 30, 2.5)):
        expected = _sitk_physical(reference, index)
        np.testing.assert_allclose(volume.index_to_physical(index), expected, atol=1e-9)
        np.testing.assert_allclose(volume.physical_to_index(expected), index, atol=1e-9)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_seed_in_mm_crops_around_the_point(name):
    direction = DIRECTIONS[name]
    volume, reference = _volume(direction), _sitk_reference(direction)
    index = np.array([4.3, 17.8, 8.6])  # (z, y, x), away from the centre on every axis
    point = _sitk_physical(reference, index)
    size_mm = 9.0
    box, prev = roi_crop_box(volume, Seed(point=tuple(point), units="mm", size_mm=size_mm))
    assert prev is None
    nearest = np.rint(volume.physical_to_index(point)).astype(int)
    np.testing.assert_array_equal(nearest, np.rint(index).astype(int))
    for axis, (lo, hi) in enumerate(box):
        assert lo <= nearest[axis] < hi, (axis, box, nearest)
        # every voxel within size_mm / 2 of the point along this array axis is in the crop, which is
        # at most 3 voxels wider than that
        reach = 0.5 * size_mm / SPACING[axis]
        first, last = math.ceil(index[axis] - reach), math.floor(index[axis] + reach)
        assert lo <= first and hi > last, (axis, box, index)
        assert (hi - lo) - (last + 1 - first) <= 3, (axis, box)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_box_in_mm_crops_the_voxels_inside_it(name):
    direction = DIRECTIONS[name]
    volume, reference = _volume(direction), _sitk_reference(direction)
    centre = _sitk_physical(reference, (5.6, 12.3, 17.1))
    half = np.array([3.0, 2.5, 4.0])  # (x, y, z) mm: a physical, axis-aligned box
    lo_xyz, hi_xyz = centre - half, centre + half
    roi = Box(z=(lo_xyz[2], hi_xyz[2]), y=(lo_xyz[1], hi_xyz[1]), x=(lo_xyz[0], hi_xyz[0]), units="mm")
    box, _ = roi_crop_box(volume, roi)
    # every voxel whose centre (by SimpleITK) lies inside the physical box is inside the crop
    indices = np.indices(SHAPE).reshape(3, -1).T
    physical = np.array([_sitk_physical(reference, idx) for idx in indices])
    inside = np.all((physical >= lo_xyz) & (physical <= hi_xyz), axis=1)
    assert inside.any()
    expected_lo, expected_hi = indices[inside].min(0), indices[inside].max(0) + 1
    for axis, (lo, hi) in enumerate(box):
        assert lo <= expected_lo[axis] and hi >= expected_hi[axis], (axis, box, expected_lo, expected_hi)
        assert (expected_lo[axis] - lo) + (hi - expected_hi[axis]) <= 2, (axis, box, expected_lo, expected_hi)
    assert volume.array[tuple(slice(a, b) for a, b in box)].size < volume.array.size / 4


# ---------------------------------------------------------------------------- (c) NIfTI
NIFTI_CASES = ["head-first-prone", "z-flipped", "feet-first-supine", "coronal", "permuted-left-handed"]


@pytest.mark.parametrize("name", NIFTI_CASES)
def test_nifti_marked_voxel_keeps_its_physical_position(name, tmp_path):
    """A NIfTI written with nibabel (RAS affine by hand) reads back with the marked voxel at the same mm."""
    import nibabel as nib

    direction = DIRECTIONS[name]
    sz, sy, sx = SPACING
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag([sx, sy, sz])  # image index (i, j, k) = (x, y, z) -> LPS mm
    lps[:3, 3] = ORIGIN
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # NIfTI stores RAS+
    data = np.full(SHAPE[::-1], -1000, np.int16)  # nibabel arrays are indexed (i, j, k)
    marked_ijk = (17, 6, 9)
    data[marked_ijk] = 900
    path = tmp_path / f"{name}.nii.gz"
    image = nib.Nifti1Image(data, ras)
    image.set_qform(ras, code=1)
    image.set_sform(ras, code=1)
    nib.save(image, path)
    expected_lps = (lps @ np.array([*marked_ijk, 1.0]))[:3]

    volume = read_volume(path)
    found = np.argwhere(volume.array > 0)
    assert len(found) == 1
    np.testing.assert_allclose(volume.index_to_physical(found[0]), expected_lps, atol=1e-3)
    np.testing.assert_allclose(sorted(volume.spacing), sorted(SPACING), atol=1e-5)

    # and back: write_volume keeps the point where nibabel finds it
    out = write_volume(volume, tmp_path / "again.nii.gz")
    again = nib.load(out)
    ijk = np.argwhere(np.asarray(again.dataobj) > 0)[0]
    ras_point = (again.affine @ np.array([*ijk, 1.0]))[:3]
    np.testing.assert_allclose(ras_point * [-1.0, -1.0, 1.0], expected_lps, atol=1e-3)
