"""DICOM CT series and RTSTRUCT input on tiny synthetic files written with pydicom."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from mkunet.io import DicomSeriesError, dicom_in, list_rois, read_rtstruct, read_volume
from mkunet.volume import Volume

ROWS, COLS = 6, 7
PIXEL_SPACING = (0.5, 0.8)  # (row spacing = y, column spacing = x) mm


def _stored(k: int, rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """Stored (raw) pixel values of slice k: unique per slice and voxel."""
    return (np.arange(rows * cols, dtype=np.int16).reshape(rows, cols) + 100 * k).astype(np.int16)


def write_ct_series(
    folder: Path,
    positions: Sequence[Sequence[float]],
    *,
    iop: Sequence[float] = (1, 0, 0, 0, 1, 0),
    slope: float = 2.0,
    intercept: float = -1024.0,
    names: Sequence[str] | None = None,
    modality: str = "CT",
    series_uid: str | None = None,
    frame_uid: str | None = None,
    study_uid: str | None = None,
    rows: int | Sequence[int] = ROWS,
    cols: int = COLS,
    tilt: float | None = None,
    description: str = "tiny",
) -> tuple[list[Path], str]:
    """Write one slice per position; slice k holds ``_stored(k)`` (the k of ``positions``, not of sorting)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    frame_uid = frame_uid or "1.2.826.0.1.3680043.8.498.1"
    study_uid = study_uid or "1.2.826.0.1.3680043.8.498.2"
    paths = []
    for k, position in enumerate(positions):
        r = rows[k] if isinstance(rows, (list, tuple)) else rows
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = dicom_in.CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = dicom_in.CT_IMAGE_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.PatientID = "P001"
        ds.PatientName = "Doe^Jane"
        ds.PatientSex = "F"
        ds.StudyDate = "20240102"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = description
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = len(positions) - k  # deliberately reversed: must not be used
        ds.KVP = "120"
        ds.SliceThickness = "2.5"
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.PixelSpacing = [str(v) for v in PIXEL_SPACING]
        if tilt is not None:
            ds.GantryDetectorTilt = str(tilt)
        ds.Rows, ds.Columns = r, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope = str(slope)
        ds.RescaleIntercept = str(intercept)
        ds.PixelData = _stored(k, r, cols).tobytes()
        name = names[k] if names is not None else f"slice{k:03d}.dcm"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths, series_uid


def z_positions(zs: Sequence[float], x: float = -10.0, y: float = 20.0) -> list[tuple[float, float, float]]:
    return [(x, y, z) for z in zs]


# ---------------------------------------------------------------------------- reading
def test_shuffled_names_sort_by_position_and_rescale(tmp_path):
    zs = [30.0, 10.0, 40.0, 20.0, 0.0]  # written order != spatial order
    names = ["b", "zz.dcm", "a1", "IM0009", "c.DCM"]  # names without/with extension, any order
    paths, uid = write_ct_series(tmp_path / "ct", z_positions(zs), names=names, slope=2.0, intercept=-1024.0)
    (tmp_path / "ct" / "README").write_text("not dicom")
    (tmp_path / "ct" / "DICOMDIR").write_bytes(b"\x00" * 200)
    vol = read_volume(tmp_path / "ct")
    order = np.argsort(zs)
    assert vol.shape == (5, ROWS, COLS)
    assert vol.array.dtype == np.float32
    expected = np.stack([_stored(int(k)) for k in order]).astype(np.float32) * 2.0 - 1024.0
    np.testing.assert_array_equal(vol.array, expected)
    assert [p.name for p in vol.source] == [names[int(k)] for k in order]
    assert vol.spacing == (10.0, 0.5, 0.8)
    assert vol.origin == (-10.0, 20.0, 0.0)
    np.testing.assert_allclose(vol.direction, np.eye(3))
    assert vol.series_uid == uid and vol.patient_id == "P001"
    assert vol.frame_of_reference_uid == "1.2.826.0.1.3680043.8.498.1"
    assert vol.meta["PatientName"] == "Doe^Jane" and vol.meta["KVP"] == 120.0
    assert vol.meta["Modality"] == "CT" and vol.meta["SliceThickness"] == 2.5
    import json

    json.dumps(vol.meta)  # serialisable


def test_oblique_geometry_matches_hand_computation(tmp_path):
    # rows along (cos a, sin a, 0), columns along (0, 0, -1): a coronal-ish oblique plane
    a = np.deg2rad(30.0)
    r = np.array([np.cos(a), np.sin(a), 0.0])
    c = np.array([0.0, 0.0, -1.0])
    n = np.cross(r, c)  # (sin a * -1, cos a, 0)... computed by hand below
    np.testing.assert_allclose(n, [-np.sin(a), np.cos(a), 0.0], atol=1e-12)
    p0 = np.array([5.0, -3.0, 12.0])
    steps = [2, 0, 3, 1]
    positions = [p0 + 1.5 * s * n for s in steps]
    write_ct_series(tmp_path, positions, iop=tuple(r) + tuple(c))
    vol = read_volume(tmp_path)
    np.testing.assert_allclose(vol.origin, p0, atol=1e-5)
    np.testing.assert_allclose(vol.spacing, (1.5, 0.5, 0.8), atol=1e-5)
    np.testing.assert_allclose(vol.direction, np.column_stack([r, c, n]), atol=1e-6)
    # slice k of the volume is the file written at step k
    for k in range(4):
        np.testing.assert_array_equal(vol.array[k], _stored(steps.index(k)) * 2.0 - 1024.0)
    # voxel (k, j, i) lies at p0 + i*0.8*r + j*0.5*c + k*1.5*n
    k, j, i = 3, 4, 5
    np.testing.assert_allclose(
        vol.index_to_physical([k, j, i]), p0 + i * 0.8 * r + j * 0.5 * c + k * 1.5 * n, atol=1e-5
    )


def test_per_slice_rescale(tmp_path):
    write_ct_series(tmp_path, z_positions([0.0]), slope=1.0, intercept=0.0, names=["a"])
    write_ct_series(
        tmp_path,
        z_positions([2.0]),
        slope=0.5,
        intercept=-100.0,
        names=["b"],
        series_uid=pydicom.dcmread(tmp_path / "a").SeriesInstanceUID,
    )
    # second call wrote slice index 0 again with other rescale
    vol = read_volume(tmp_path)
    np.testing.assert_array_equal(vol.array[0], _stored(0))
    np.testing.assert_array_equal(vol.array[1], _stored(0) * 0.5 - 100.0)


def test_single_file_and_single_slice_spacing(tmp_path):
    paths, _ = write_ct_series(tmp_path, z_positions([7.0]))
    vol = read_volume(paths[0])
    assert vol.shape == (1, ROWS, COLS)
    assert vol.spacing == (2.5, 0.5, 0.8)  # SliceThickness
    assert vol.source == (paths[0],)


# ---------------------------------------------------------------------------- errors
def _raises(folder: Path, *fragments: str, **kwargs) -> str:
    with pytest.raises(DicomSeriesError) as info:
        read_volume(folder, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_mixed_sizes(tmp_path):
    write_ct_series(tmp_path, z_positions([0, 1, 2]), rows=[ROWS, ROWS, ROWS + 2])
    _raises(tmp_path, "mixes image sizes", "slice002.dcm", f"{ROWS + 2}x{COLS}")


def test_mixed_orientation(tmp_path):
    paths, uid = write_ct_series(tmp_path, z_positions([0, 1]))
    write_ct_series(tmp_path, z_positions([2]), iop=(1, 0, 0, 0, 0, -1), series_uid=uid, names=["scout.dcm"])
    _raises(tmp_path, "mixes slice orientations", "scout.dcm")


def test_duplicate_positions(tmp_path):
    write_ct_series(tmp_path, z_positions([0, 1, 1, 2]))
    _raises(tmp_path, "duplicate slice position", "slice001.dcm", "slice002.dcm")


def test_missing_slice(tmp_path):
    write_ct_series(tmp_path, z_positions([0, 2, 4, 8, 10]))
    _raises(tmp_path, "missing slice", "1 missing slice(s)", "4.000 mm", "8.000 mm", "slice002.dcm", "slice003.dcm")


def test_irregular_spacing(tmp_path):
    write_ct_series(tmp_path, z_positions([0, 2, 4, 6.5, 8.5, 10.5]))
    _raises(tmp_path, "irregular slice spacing", "gap 2.500 mm", "slice002.dcm", "slice003.dcm")


def test_small_jitter_within_tolerance_is_accepted(tmp_path):
    write_ct_series(tmp_path, z_positions([0, 2.005, 4, 5.996, 8]))
    assert read_volume(tmp_path).spacing[0] == pytest.approx(2.0, abs=0.01)


def test_gantry_tilt_tag(tmp_path):
    write_ct_series(tmp_path, z_positions([0, 1, 2]), tilt=15.0)
    _raises(tmp_path, "Gantry tilt", "15.0", "slice000.dcm")


def test_positions_off_the_normal(tmp_path):
    # same axial orientation but y drifts with z: a sheared (tilted) stack without the tag
    write_ct_series(tmp_path, [(0.0, 0.3 * k, 2.0 * k) for k in range(4)])
    _raises(tmp_path, "do not lie along the slice normal", "slice003.dcm")


def test_unreadable_dcm_is_named(tmp_path):
    write_ct_series(tmp_path, z_positions([0, 1, 2]))
    good = (tmp_path / "slice000.dcm").read_bytes()
    (tmp_path / "broken.dcm").write_bytes(good[:300])  # truncated inside the header
    (tmp_path / "garbage.dcm").write_bytes(b"this is not dicom at all")
    (tmp_path / "notes.txt").write_text("ignored")
    _raises(tmp_path, "cannot be read", "broken.dcm", "garbage.dcm")


def test_truncated_pixel_data_is_named(tmp_path):
    paths, _ = write_ct_series(tmp_path, z_positions([0, 1, 2]))
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:-20])
    _raises(tmp_path, "could not be decoded", "slice001.dcm")


def test_undecodable_compressed_pixels(tmp_path):
    paths, _ = write_ct_series(tmp_path, z_positions([0, 1]))
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\xff\xd8not-a-real-jpeg-ls-stream\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(paths[0], enforce_file_format=True)
    _raises(tmp_path, "slice000.dcm", "compressed pixel data", "JPEG-LS")


def test_non_ct_only(tmp_path):
    write_ct_series(tmp_path, z_positions([0, 1]), modality="MR")
    _raises(tmp_path, "No CT image series", "MR")


def test_multiple_series_listed_and_selectable(tmp_path):
    _, uid_a = write_ct_series(tmp_path / "a", z_positions([0, 1, 2]), description="lung")
    _, uid_b = write_ct_series(tmp_path / "b", z_positions([0, 2]), description="soft")
    message = _raises(tmp_path, uid_a, uid_b, "series_uid=", "'lung'", "'soft'", "3 slices", "2 slices")
    assert "modality=CT" in message
    vol = read_volume(tmp_path, series_uid=uid_b)
    assert vol.shape[0] == 2 and vol.series_uid == uid_b
    _raises(tmp_path, "No series with SeriesInstanceUID", uid_a, series_uid="1.2.3.4")


def test_ct_with_rtstruct_in_same_folder(tmp_path):
    _, uid = write_ct_series(tmp_path, z_positions([0, 1, 2]))
    ref = read_volume(tmp_path)
    write_rtstruct(tmp_path / "rs.dcm", {"A": []}, frame_uid=ref.frame_of_reference_uid)
    vol = read_volume(tmp_path)
    assert vol.series_uid == uid and vol.shape[0] == 3


# ---------------------------------------------------------------------------- RTSTRUCT
def write_rtstruct(
    path: Path,
    rois: dict[str, list[np.ndarray]],
    frame_uid: str | None,
    geometric_type: str = "CLOSED_PLANAR",
) -> Path:
    """Minimal RT Structure Set: one ROI per name, each with closed-planar contours (n, 3) in mm."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.StructureSetLabel = "test"
    ssroi, roic = [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        item = Dataset()
        item.ROINumber = number
        item.ROIName = name
        item.ReferencedFrameOfReferenceUID = frame_uid
        ssroi.append(item)
        rc = Dataset()
        rc.ReferencedROINumber = number
        seq = []
        for points in contours:
            c = Dataset()
            c.ContourGeometricType = geometric_type
            c.NumberOfContourPoints = len(points)
            c.ContourData = [f"{v:.4f}" for v in np.asarray(points, float).ravel()]
            seq.append(c)
        rc.ContourSequence = DicomSequence(seq)
        roic.append(rc)
    ds.StructureSetROISequence = DicomSequence(ssroi)
    ds.ROIContourSequence = DicomSequence(roic)
    ds.save_as(path, enforce_file_format=True)
    return path


def _square(x0: float, x1: float, y0: float, y1: float, z: float) -> np.ndarray:
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)


@pytest.fixture()
def grid() -> Volume:
    # 3 slices of 20 x 20 voxels, 1 mm in-plane, 2 mm slices; voxel (k, j, i) centre at (i, j, 2k) mm
    return Volume(
        np.zeros((3, 20, 20), np.float32),
        spacing=(2.0, 1.0, 1.0),
        origin=(0.0, 0.0, 0.0),
        frame_of_reference_uid="1.2.3.4",
    )


def test_square_with_hole_is_a_ring(tmp_path, grid):
    outer = _square(2.5, 15.5, 3.5, 16.5, 2.0)  # centres i = 3..15, j = 4..16 -> slice k = 1
    inner = _square(6.5, 10.5, 8.5, 12.5, 2.0)  # hole i = 7..10, j = 9..12
    path = write_rtstruct(tmp_path / "rs.dcm", {"Lung": [], "GTV": [outer, inner]}, frame_uid="1.2.3.4")
    mask = read_rtstruct(path, grid, roi="gtv")  # case-insensitive
    expected = np.zeros(grid.shape, bool)
    expected[1, 4:17, 3:16] = True
    expected[1, 9:13, 7:11] = False
    np.testing.assert_array_equal(mask, expected)
    assert mask.sum() == 13 * 13 - 16
    assert list_rois(path) == ["Lung", "GTV"]


def test_contour_goes_to_nearest_slice(tmp_path, grid):
    sq = _square(2.5, 5.5, 2.5, 5.5, 3.8)  # z = 3.8 mm -> k = 1.9 -> slice 2
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": [sq]}, frame_uid="1.2.3.4")
    mask = read_rtstruct(path, grid)  # single ROI: roi may be omitted
    assert mask[2].sum() == 9 and mask.sum() == 9


def test_unknown_and_missing_roi_list_available(tmp_path, grid):
    path = write_rtstruct(tmp_path / "rs.dcm", {"Lung": [], "GTV": []}, frame_uid="1.2.3.4")
    with pytest.raises(ValueError, match=r"No ROI named 'tumour'.*'Lung', 'GTV'"):
        read_rtstruct(path, grid, roi="tumour")
    with pytest.raises(ValueError, match=r"2 ROIs; pass roi=.*'Lung', 'GTV'"):
        read_rtstruct(path, grid)
    dup = write_rtstruct(tmp_path / "dup.dcm", {"GTV": [], "gtv ": []}, frame_uid="1.2.3.4")
    with pytest.raises(ValueError, match="ambiguous"):
        read_rtstruct(dup, grid, roi="GTV")


def test_frame_of_reference_mismatch(tmp_path, grid):
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": [_square(1, 4, 1, 4, 0)]}, frame_uid="9.9.9")
    with pytest.raises(ValueError, match="frame of reference 9.9.9"):
        read_rtstruct(path, grid, roi="GTV")


def test_contours_outside_volume(tmp_path, grid):
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": [_square(1, 4, 1, 4, 50.0)]}, frame_uid="1.2.3.4")
    with pytest.raises(ValueError, match="inside the reference CT"):
        read_rtstruct(path, grid, roi="GTV")


def test_empty_roi_warns(tmp_path, grid):
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": []}, frame_uid="1.2.3.4")
    with pytest.warns(UserWarning, match="no contours"):
        mask = read_rtstruct(path, grid)
    assert mask.shape == grid.shape and not mask.any()


def test_not_an_rtstruct(tmp_path):
    paths, _ = write_ct_series(tmp_path, z_positions([0]))
    with pytest.raises(ValueError, match="not an RT Structure Set"):
        list_rois(paths[0])


def test_rtstruct_on_read_series_roundtrip(tmp_path):
    """Contours drawn in mm on a synthetic series land on the voxels a hand computation predicts."""
    write_ct_series(tmp_path / "ct", [(-10.0, 20.0, z) for z in (4.0, 0.0, 2.0)])
    ref = read_volume(tmp_path / "ct")  # origin (-10, 20, 0), spacing (2, 0.5, 0.8)
    # x in [-10 + 0.8*1.5, -10 + 0.8*4.5] -> i = 2..4; y in [20 + 0.5*0.5, 20 + 0.5*3.5] -> j = 1..3; z=2 -> k=1
    sq = _square(-10 + 0.8 * 1.5, -10 + 0.8 * 4.5, 20 + 0.5 * 0.5, 20 + 0.5 * 3.5, 2.0)
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": [sq]}, frame_uid=ref.frame_of_reference_uid)
    mask = read_rtstruct(path, ref, roi="GTV")
    expected = np.zeros(ref.shape, bool)
    expected[1, 1:4, 2:5] = True
    np.testing.assert_array_equal(mask, expected)


def test_non_ct_single_file_and_non_ct_series_uid(tmp_path):
    paths, uid_mr = write_ct_series(tmp_path / "mr", z_positions([0, 1]), modality="MR")
    with pytest.raises(DicomSeriesError, match=r"modality 'MR'.*CT"):
        read_volume(paths[0])
    write_ct_series(tmp_path / "ct", z_positions([0, 1]))
    _raises(tmp_path, uid_mr, "'MR'", series_uid=uid_mr)
    assert read_volume(tmp_path).shape[0] == 2  # the MR series is ignored when one CT series exists
