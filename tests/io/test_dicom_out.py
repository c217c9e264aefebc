"""DICOM SEG and RTSTRUCT writers: round trips, identity, references, dciodvfy, bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from mkunet.io import read_mask, read_rtstruct, read_volume
from mkunet.io.dicom_out import format_ds, mask_to_contours, write_rtstruct, write_seg
from mkunet.volume import Volume

DCIODVFY = shutil.which("dciodvfy")
SHAPE = (8, 32, 30)  # (z, y, x)
SPACING = (2.5, 0.8, 0.75)  # (z, y, x) mm
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "P-0042", "PatientBirthDate": "19600101", "PatientSex": "F"}


# ---------------------------------------------------------------------------- fixtures
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # ImageOrientationPatient of a head-first-supine axial series


def write_ct_series(
    folder: Path,
    *,
    descending: bool = False,
    shape=SHAPE,
    spacing=SPACING,
    orientation=AXIAL,
    origin=(-12.0, -20.5, 40.0),
    patient_position: str = "HFS",
) -> Path:
    """A small CT series (CT Image IOD), one file per slice, files named in shuffled order.

    Slice ``k`` in instance order lies at ``origin + k * sz * n`` (``origin - k * sz * n`` when
    ``descending``), with ``n = row cosine x column cosine`` from ``orientation`` (the
    ImageOrientationPatient, row then column direction cosines, physical (x, y, z) LPS).
    """
    folder.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = shape
    sz, sy, sx = spacing
    iop = np.asarray(orientation, float)
    normal = np.cross(iop[:3], iop[3:])
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    names = rng.permutation(nz)
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        for key, value in PATIENT.items():
            setattr(ds, key, value)
        ds.PatientAddress = "1 Secret Street"  # PHI outside the Patient module: must not be copied
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101500", "S1", "ACC1"
        ds.ReferringPhysicianName = "Who^Doctor"
        ds.StudyDescription = "Chest CT"
        ds.InstitutionName = "Secret Hospital"  # equipment PHI: must not be copied
        ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = "CT", "Test", 3, k + 1
        ds.PositionReferenceIndicator = ""
        ds.KVP, ds.AcquisitionNumber = 120, 1
        ds.PatientPosition = patient_position
        position = np.asarray(origin, float) + (-sz * k if descending else sz * k) * normal
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in iop]
        ds.PixelSpacing = [sy, sx]
        ds.SliceThickness = sz
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        pixels = rng.integers(-1000, 200, size=(ny, nx)).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"ct_{names[k]:03d}.dcm", enforce_file_format=True)
    return folder


def ball(shape=SHAPE, spacing=SPACING, centre=(3.6, 15.2, 14.4), radius_mm=6.0) -> np.ndarray:
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    d2 = sum(((a - c) * s) ** 2 for a, c, s in zip((zz, yy, xx), centre, spacing))
    return d2 <= radius_mm**2


def ring(shape=SHAPE) -> np.ndarray:
    """An annulus on slices 2-5 (a hole on every slice), plus a separate blob on slice 6."""
    yy, xx = np.indices(shape[1:], dtype=np.float32)
    r = np.hypot(yy - 16, xx - 15)
    mask = np.zeros(shape, bool)
    mask[2:6] = (r >= 4) & (r <= 9)
    mask[6, 3:6, 20:26] = True
    return mask


@pytest.fixture(scope="module")
def ct(tmp_path_factory) -> Volume:
    return read_volume(write_ct_series(tmp_path_factory.mktemp("ct") / "series"))


@pytest.fixture(scope="module")
def ibsi(shared_data) -> tuple[Volume, np.ndarray]:
    folder = shared_data / "ibsi" / "ct_phantom"
    reference = read_volume(folder / "dicom" / "image")
    return reference, read_mask(folder / "mask.nii.gz", reference)


# ---------------------------------------------------------------------------- independent readers
def rasterise(path: Path, reference: Volume) -> np.ndarray:
    """Independent RTSTRUCT rasteriser: it shares no step with ``mkunet.io.read_rtstruct``.

    The reader maps contour points with ``Volume.physical_to_index``, assigns each contour to
    the nearest slice and fills it with ``skimage.draw.polygon``. Here each contour goes to
    the slice its ContourImageSequence names (by SOPInstanceUID; without one, the image whose
    plane holds it), its points are projected
    onto that image's own plane from the image's DICOM header (ImagePositionPatient,
    ImageOrientationPatient, PixelSpacing: PS3.3 C.7.6.2.1.1), and voxel centres are
    tested with matplotlib's point-in-path; the contours of a slice are XOR-ed (a
    contour inside another is a hole). ``reference.source`` only gives the file of each
    array slice.
    """
    from matplotlib.path import Path as PolygonPath

    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in reference.source]
    slice_of = {str(h.SOPInstanceUID): k for k, h in enumerate(headers)}
    nz, ny, nx = reference.shape
    rows, cols = np.mgrid[0:ny, 0:nx]
    centres = np.column_stack([cols.ravel(), rows.ravel()]).astype(float)  # (column, row) of every voxel centre
    out = np.zeros(reference.shape, bool)
    ds = pydicom.dcmread(path)
    for item in ds.ROIContourSequence[0].get("ContourSequence", []):
        points = np.asarray(item.ContourData, float).reshape(-1, 3)
        if "ContourImageSequence" in item:
            k = slice_of[str(item.ContourImageSequence[0].ReferencedSOPInstanceUID)]
        else:  # optional attribute (type 3): the image whose plane holds the contour
            k = int(np.argmin([abs(_plane_offset(points, h).mean()) for h in headers]))
        header = headers[k]
        off_plane = _plane_offset(points, header)
        assert np.abs(off_plane).max() < 1e-2, f"contour {off_plane.max():.3f} mm off the plane of its image"
        iop = np.asarray(header.ImageOrientationPatient, float)
        row_cosine, column_cosine = iop[:3], iop[3:]
        row_spacing, column_spacing = (float(v) for v in header.PixelSpacing)
        offsets = points - np.asarray(header.ImagePositionPatient, float)
        polygon = np.column_stack([offsets @ row_cosine / column_spacing, offsets @ column_cosine / row_spacing])
        inside = PolygonPath(polygon, closed=False).contains_points(centres)
        out[k] ^= inside.reshape(ny, nx)
    return out


def _plane_offset(points: np.ndarray, header: Dataset) -> np.ndarray:
    """Signed distances (mm) of physical points (n, 3) from the plane of one image (its header)."""
    iop = np.asarray(header.ImageOrientationPatient, float)
    return (points - np.asarray(header.ImagePositionPatient, float)) @ np.cross(iop[:3], iop[3:])


def read_seg(path: Path, reference: Volume) -> np.ndarray:
    import highdicom as hd

    seg = hd.seg.segread(path)
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in reference.source]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1], combine_segments=True, assert_missing_frames_are_empty=True
    )
    return pixels.astype(bool)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)))


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) lines of dciodvfy; skips the test when dicom3tools is not installed."""
    if DCIODVFY is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


def check_identity(path: Path, reference: Volume, modality: str) -> Dataset:
    out = pydicom.dcmread(path)
    src = pydicom.dcmread(reference.source[0], stop_before_pixels=True)
    assert out.Modality == modality
    for key in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
    ):
        assert str(out.get(key, "")) == str(src.get(key, "")), key
    assert out.SeriesInstanceUID != src.SeriesInstanceUID
    assert out.SOPInstanceUID != src.SOPInstanceUID
    assert out.FrameOfReferenceUID == src.FrameOfReferenceUID
    for key in ("PatientAddress", "InstitutionName", "StationName"):
        assert key not in out, f"{key} copied from the source"
    return out


def referenced_instances(ds: Dataset) -> set[str]:
    if ds.Modality == "SEG":
        series = ds.ReferencedSeriesSequence[0]
        return {item.ReferencedSOPInstanceUID for item in series.ReferencedInstanceSequence}
    series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    return {item.ReferencedSOPInstanceUID for item in series.ContourImageSequence}


# ---------------------------------------------------------------------------- unit tests
def test_format_ds_fits_16_characters():
    values = np.array([-174.39450073242, 0.0, -0.0001, 1e-9, 12345678.123456, -99999.99951, 2.5])
    text = format_ds(values, decimals=3)
    assert text == ["-174.395", "0", "0", "0", "12345678.123", "-100000", "2.5"]
    assert all(len(t) <= 16 for t in format_ds([-123456789012.34567], decimals=6))
    with pytest.raises(ValueError, match="non-finite"):
        format_ds([np.nan])


def test_contours_pass_between_voxel_centres(ct):
    mask = np.zeros(ct.shape, bool)
    mask[4, 10, 12] = True  # one voxel: a diamond through the 4 edge mid-points
    ((k, points),) = mask_to_contours(mask, ct)
    index = ct.physical_to_index(points)
    assert k == 4 and np.allclose(index[:, 0], 4)
    expected = {(9.5, 12.0), (10.0, 11.5), (10.5, 12.0), (10.0, 12.5)}
    assert {tuple(np.round(p, 6)) for p in index[:, 1:]} == expected
    square = np.zeros(ct.shape, bool)
    square[1, 5:15, 5:9] = True  # collinear points dropped: 8 corners of the chamfered square remain
    ((_, points),) = mask_to_contours(square, ct)
    assert len(points) == 8
    assert len(mask_to_contours(square, ct, simplify=False)[0][1]) > 8


# ---------------------------------------------------------------------------- synthetic series
@pytest.mark.parametrize("shape_name", ["ball", "ring", "noise"])
def test_round_trip_synthetic(ct, tmp_path, shape_name):
    if shape_name == "ball":
        mask = ball()
    elif shape_name == "ring":
        mask = ring()
    else:  # speckle: many diagonal-only contacts, the hard case for marching squares
        mask = np.random.default_rng(7).random(ct.shape) < 0.3
    seg_path = write_seg(mask, ct, tmp_path / "out" / "seg.dcm")
    rt_path = write_rtstruct(mask, ct, tmp_path / "out" / "rt.dcm")

    np.testing.assert_array_equal(read_seg(seg_path, ct), mask)
    assert dice(rasterise(rt_path, ct), mask) == 1.0  # contours at the 0.5 iso-line are exact
    assert dice(read_rtstruct(rt_path, ct, roi="GTV"), mask) >= 0.98

    seg, rt = check_identity(seg_path, ct, "SEG"), check_identity(rt_path, ct, "RTSTRUCT")
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in ct.source}
    assert referenced_instances(rt) == uids
    assert referenced_instances(seg) <= uids
    assert seg.SegmentSequence[0].SegmentLabel == "GTV"
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert rt.StructureSetROISequence[0].ROIName == "GTV"
    assert rt.RTROIObservationsSequence[0].RTROIInterpretedType == "GTV"
    for item in rt.ROIContourSequence[0].ContourSequence:
        assert item.ContourGeometricType == "CLOSED_PLANAR"
        assert item.NumberOfContourPoints * 3 == len(item.ContourData)
        k = int(round(ct.physical_to_index(np.asarray(item.ContourData[:3], float))[0]))
        src = pydicom.dcmread(ct.source[k], stop_before_pixels=True)
        assert item.ContourImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    if shape_name == "ring":  # hole written as its own contour on the same slice
        per_slice = [
            int(round(ct.physical_to_index(np.asarray(c.ContourData[:3], float))[0]))
            for c in rt.ROIContourSequence[0].ContourSequence
        ]
        assert per_slice.count(3) == 2 and per_slice.count(6) == 1
    for path in (seg_path, rt_path):
        errors, warnings_ = dciodvfy(path)
        assert errors == [], "\n".join(errors)


def test_descending_slice_order(tmp_path):
    """Slices whose position decreases with the file order: geometry comes from the headers."""
    reference = read_volume(write_ct_series(tmp_path / "ct", descending=True))
    mask = ball(centre=(2.0, 12.0, 18.0), radius_mm=4.0)
    rt_path = write_rtstruct(mask, reference, tmp_path / "rt.dcm")
    seg_path = write_seg(mask, reference, tmp_path / "seg.dcm")
    assert dice(rasterise(rt_path, reference), mask) == 1.0
    np.testing.assert_array_equal(read_seg(seg_path, reference), mask)


def test_empty_mask_is_written_with_a_warning(ct, tmp_path):
    mask = np.zeros(ct.shape, bool)
    with pytest.warns(UserWarning, match="empty"):
        seg_path = write_seg(mask, ct, tmp_path / "seg.dcm")
    with pytest.warns(UserWarning, match="empty"):
        rt_path = write_rtstruct(mask, ct, tmp_path / "rt.dcm")
    assert not read_seg(seg_path, ct).any()
    rt = pydicom.dcmread(rt_path)
    assert rt.StructureSetROISequence[0].ROIName == "GTV"
    assert "ContourSequence" not in rt.ROIContourSequence[0]
    with pytest.warns(UserWarning, match="no contours"):
        assert not read_rtstruct(rt_path, ct, roi="GTV").any()
    for path in (seg_path, rt_path):
        errors, _ = dciodvfy(path)
        assert errors == [], "\n".join(errors)


def test_bad_input_is_explained(ct, tmp_path):
    mask = ball()
    for writer in (write_seg, write_rtstruct):
        with pytest.raises(ValueError, match=r"shape \(z, y, x\) \(7, 32, 30\)"):
            writer(mask[:7], ct, tmp_path / "x.dcm")
        with pytest.raises(ValueError, match="boolean"):
            writer(mask * 0.5, ct, tmp_path / "x.dcm")
        no_source = Volume(ct.array, ct.spacing, ct.origin)
        with pytest.raises(ValueError, match=r"read_volume\(<DICOM folder>\)"):
            writer(mask, no_source, tmp_path / "x.dcm")
        nifti = tmp_path / "ct.nii.gz"
        nifti.write_bytes(b"not dicom")
        with pytest.raises(ValueError, match="read_volume"):
            writer(mask, Volume(ct.array, ct.spacing, ct.origin, source=[nifti] * ct.shape[0]), tmp_path / "x.dcm")
        shifted = Volume(ct.array, ct.spacing, (ct.origin[0] + 5.0, *ct.origin[1:]), source=ct.source)
        with pytest.raises(ValueError, match="do not match the reference grid"):
            writer(mask, shifted, tmp_path / "x.dcm")
        flipped = Volume(ct.array, ct.spacing, ct.origin, source=ct.source[::-1])
        with pytest.raises(ValueError, match="do not match the reference grid"):
            writer(mask, flipped, tmp_path / "x.dcm")
    with pytest.raises(ValueError, match="color"):
        write_rtstruct(mask, ct, tmp_path / "x.dcm", color=(255, 0, 300))
    assert not (tmp_path / "x.dcm").exists()


# ---------------------------------------------------------------------------- real data
def test_ibsi_ct_phantom(ibsi, tmp_path):
    reference, gtv = ibsi
    assert int(gtv.sum()) == 125256
    seg_path = write_seg(gtv, reference, tmp_path / "seg.dcm")
    rt_path = write_rtstruct(gtv, reference, tmp_path / "rt.dcm")
    np.testing.assert_array_equal(read_seg(seg_path, reference), gtv)
    assert dice(read_rtstruct(rt_path, reference, roi="GTV"), gtv) >= 0.98
    assert dice(rasterise(rt_path, reference), gtv) == 1.0
    check_identity(seg_path, reference, "SEG")
    check_identity(rt_path, reference, "RTSTRUCT")
    ds = pydicom.dcmread(rt_path)
    for item in ds.ROIContourSequence[0].ContourSequence:
        assert max(len(str(v)) for v in item.ContourData) <= 16
    for path in (seg_path, rt_path):
        errors, _ = dciodvfy(path)
        assert errors == [], "\n".join(errors)


def test_independent_rasteriser_reproduces_the_ibsi_mask(ibsi, shared_data):
    """The test's own rasteriser, on the IBSI RTSTRUCT (drawn by another program), gives the IBSI mask."""
    reference, gtv = ibsi
    path = shared_data / "ibsi" / "ct_phantom" / "dicom" / "rtstruct.dcm"
    np.testing.assert_array_equal(rasterise(path, reference), gtv)


def test_ibsi_ct_phantom_empty_mask(ibsi, tmp_path):
    reference, _ = ibsi
    empty = np.zeros(reference.shape, bool)
    with pytest.warns(UserWarning, match="empty"):
        seg_path = write_seg(empty, reference, tmp_path / "seg.dcm")
    with pytest.warns(UserWarning, match="empty"):
        rt_path = write_rtstruct(empty, reference, tmp_path / "rt.dcm")
    with pytest.warns(UserWarning, match="no contours"):
        assert not read_rtstruct(rt_path, reference, roi="GTV").any()
    for path in (seg_path, rt_path):
        errors, _ = dciodvfy(path)
        assert errors == [], "\n".join(errors)
