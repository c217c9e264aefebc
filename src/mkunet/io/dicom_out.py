"""DICOM outputs of a segmentation: DICOM SEG (highdicom) and RT Structure Set (pydicom).

Both writers take a boolean mask indexed ``(z, y, x)`` on the grid of a CT volume that
was read from a DICOM series (``mkunet.io.read_volume(<DICOM folder>)``), so that
``reference.source[k]`` is the file of slice ``array[k]``. The outputs

* keep the source's patient and study identity (Patient and General Study modules
  only: no other header value of the CT is copied),
* start a new series (new SeriesInstanceUID and SOPInstanceUID) in the same study,
* reference every image of the source series and its frame of reference,
* pass ``dciodvfy`` (dicom3tools) with 0 errors: every decimal string is formatted
  here and kept to at most 16 characters.

Contours of the RTSTRUCT are traced per axial slice at the 0.5 iso-line of the 0/1
mask (marching squares), i.e. half-way between foreground and background voxel
centres, so a point-in-polygon rasterisation at the voxel centres gives the mask back.
Holes are written as separate closed contours on the same slice; planning systems
(and :func:`mkunet.io.read_rtstruct`) combine the contours of a slice with the
even-odd (XOR) rule, which turns them back into holes.

An empty mask (no tumour found) is valid: ``write_seg`` writes a SEG whose frames
are all empty, ``write_rtstruct`` a structure set that declares the ROI with no
contour; both warn.
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import mkunet
from mkunet.volume import Volume

__all__ = ["write_seg", "write_rtstruct", "mask_to_contours", "format_ds"]

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
#: SOP Class UID the standard asks for in RTReferencedStudySequence (Study Component Management).
_STUDY_COMPONENT_MANAGEMENT = "1.2.840.10008.3.1.2.3.2"

# Patient and General Study module attributes copied from the source (nothing else is).
_PATIENT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
_PATIENT_OPTIONAL = ("IssuerOfPatientID",)
_STUDY_KEYWORDS = ("StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
_STUDY_OPTIONAL = ("StudyDescription",)

_READ_HINT = "read the CT with `mkunet.io.read_volume(<DICOM folder>)` and pass that Volume as `reference`"


# ---------------------------------------------------------------------------- helpers
def format_ds(values: np.ndarray | Sequence[float], decimals: int = 3) -> list[str]:
    """Format numbers as DICOM decimal strings (DS) of at most 16 characters.

    Values are rounded to ``decimals`` places (fewer when needed to fit 16
    characters), trailing zeros are dropped and ``-0`` is written as ``0``.

    Args:
        values: finite numbers, any shape (flattened).
        decimals: decimal places to keep (3 = micrometre precision for mm).

    Returns:
        list of strings, one per value.

    Raises:
        ValueError: a value is not finite or cannot be written in 16 characters.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"Cannot write non-finite numbers as DICOM decimal strings: {flat[~np.isfinite(flat)][:5]}.")
    out: list[str] = []
    for v in (np.round(flat, decimals) + 0.0).tolist():
        for d in range(decimals, -1, -1):
            text = f"{round(v, d) + 0.0:.{d}f}"
            if d:
                text = text.rstrip("0").rstrip(".")
            if text == "-0":
                text = "0"
            if len(text) <= 16:
                break
        else:  # pragma: no cover - needs |v| >= 1e16
            raise ValueError(f"The value {v!r} does not fit a 16-character DICOM decimal string.")
        out.append(text)
    return out


def _as_mask(mask: np.ndarray, reference: Volume, writer: str) -> np.ndarray:
    array = np.asarray(mask)
    if array.dtype != bool:
        if array.dtype.kind in "iuf" and array.size and np.isin(array, (0, 1)).all():
            array = array.astype(bool)
        elif array.dtype.kind in "iuf" and array.size == 0:
            array = array.astype(bool)
        else:
            raise ValueError(
                f"{writer}: `mask` must be a boolean (z, y, x) array (or 0/1 integers); got dtype "
                f"{array.dtype} with values {np.unique(array)[:5].tolist()}. Threshold it first "
                "(e.g. `probability >= 0.5`)."
            )
    if array.shape != reference.shape:
        raise ValueError(
            f"{writer}: `mask` shape (z, y, x) {array.shape} differs from the reference volume's "
            f"{reference.shape}: the mask must lie on the grid of the DICOM series it annotates "
            "(resample it with mkunet.preprocess.resample_mask first)."
        )
    return array


def _source_headers(reference: Volume, writer: str, *, with_pixel_attributes: bool = True) -> list:
    """Read (without pixel data) the DICOM header of every slice of ``reference``, checking the geometry."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = tuple(reference.source)
    n_slices = reference.shape[0]
    if not files:
        raise ValueError(
            f"{writer}: the reference volume ({reference!r}) has no DICOM source files, so there is no "
            f"series to reference: {_READ_HINT}."
        )
    if len(files) != n_slices:
        names = ", ".join(f"'{f}'" for f in files[:2])
        raise ValueError(
            f"{writer}: the reference volume has {n_slices} slices but {len(files)} source file(s) ({names}"
            f"{', ...' if len(files) > 2 else ''}); a DICOM output needs one DICOM file per slice: {_READ_HINT}."
        )
    headers = []
    for k, f in enumerate(files):
        if not Path(f).is_file():
            raise FileNotFoundError(f"{writer}: source file of slice {k} not found: '{f}'.")
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (InvalidDicomError, OSError) as err:
            raise ValueError(
                f"{writer}: the source file '{f}' of the reference volume is not a DICOM file ({err}). "
                f"DICOM outputs need the CT as a DICOM series: {_READ_HINT}."
            ) from err
        missing = [
            kw
            for kw in (
                "SOPInstanceUID",
                "SOPClassUID",
                "StudyInstanceUID",
                "SeriesInstanceUID",
                "FrameOfReferenceUID",
                "ImagePositionPatient",
                "ImageOrientationPatient",
                "PixelSpacing",
                "Rows",
                "Columns",
            )
            if kw not in ds or ds[kw].value in (None, "")
        ]
        if missing:
            raise ValueError(f"{writer}: the DICOM file '{f}' lacks {', '.join(missing)}; it is not a CT image slice.")
        headers.append(ds)
    _check_geometry(headers, files, reference, writer)
    return headers


def _check_geometry(headers: list, files: Sequence[Path], reference: Volume, writer: str) -> None:
    """The headers must describe exactly the reference grid, slice ``k`` = file ``k``, no flips."""
    first = headers[0]
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = {str(ds[key].value) for ds in headers}
        if len(values) != 1:
            raise ValueError(
                f"{writer}: the source files of the reference mix several {key}s ({sorted(values)[:3]}); {_READ_HINT}."
            )
    _, n_rows, n_cols = reference.shape
    if int(first.Rows) != n_rows or int(first.Columns) != n_cols:
        raise ValueError(
            f"{writer}: '{files[0]}' has {first.Rows} rows x {first.Columns} columns but the reference volume's "
            f"slices are {n_rows} x {n_cols} (y, x): the volume was changed (resampled or cropped) after reading; "
            f"{_READ_HINT}."
        )
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in headers])
    expected = reference.index_to_physical(
        np.stack([np.arange(len(headers)), np.zeros(len(headers)), np.zeros(len(headers))], axis=1)
    )
    tolerance = max(0.05, 0.1 * min(reference.spacing))
    error = np.linalg.norm(positions - expected, axis=1)
    orientation = np.array([float(v) for v in first.ImageOrientationPatient])
    spacing = [float(v) for v in first.PixelSpacing]  # (row spacing = y, column spacing = x)
    if (
        error.max() > tolerance
        or not np.allclose(orientation[:3], reference.direction[:, 0], atol=1e-3)
        or not np.allclose(orientation[3:], reference.direction[:, 1], atol=1e-3)
        or not np.allclose(spacing, reference.spacing[1:], atol=1e-3)
    ):
        k = int(np.argmax(error))
        raise ValueError(
            f"{writer}: the DICOM headers do not match the reference grid (slice {k}, '{files[k]}': "
            f"ImagePositionPatient {positions[k].round(3).tolist()} vs {expected[k].round(3).tolist()} mm from the "
            f"volume; ImageOrientationPatient {orientation.tolist()}, PixelSpacing {spacing}): the volume was "
            f"resampled, flipped or re-ordered after reading; {_READ_HINT}."
        )


def _copy_identity(target, source) -> None:
    """Copy the Patient and General Study module attributes (and the character set) of ``source``."""
    if "SpecificCharacterSet" in source:
        target.SpecificCharacterSet = source.SpecificCharacterSet
    for kw in _PATIENT_KEYWORDS + _STUDY_KEYWORDS:
        setattr(target, kw, source.get(kw, "") or "")  # Type 2: present, possibly empty
    for kw in _PATIENT_OPTIONAL + _STUDY_OPTIONAL:
        if source.get(kw, None) not in (None, ""):
            setattr(target, kw, source.get(kw))


def _check_text(value: str, name: str, max_len: int) -> str:
    value = str(value)
    if len(value) > max_len or "\\" in value:
        raise ValueError(f"`{name}` must be at most {max_len} characters without backslashes, got {value!r}.")
    return value


def _code_string(value: str) -> str:
    """A DICOM code string (CS): upper case, digits, space, underscore; at most 16 characters."""
    text = re.sub(r"[^A-Z0-9_ ]", "_", str(value).upper()).strip()[:16]
    return text or "SEGMENTATION"


# ---------------------------------------------------------------------------- contours
def _drop_collinear(points: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """Remove the vertices of a closed polygon (n, 2) that lie on the straight line through their neighbours.

    Lossless: the polygon keeps its exact shape. Marching-squares contours of a
    binary image run along straight runs of many vertices, so this removes most
    of them.
    """
    before = np.roll(points, 1, axis=0)
    after = np.roll(points, -1, axis=0)
    d1 = points - before
    d2 = after - points
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    dot = (d1 * d2).sum(axis=1)
    keep = (np.abs(cross) > atol) | (dot <= 0)
    return points[keep]


def mask_to_contours(mask: np.ndarray, reference: Volume, simplify: bool = True) -> list[tuple[int, np.ndarray]]:
    """Closed planar contours of a boolean mask, slice by slice, in physical coordinates.

    Each contour is the 0.5 iso-line (marching squares, ``skimage.measure.find_contours``)
    of one axial slice of the 0/1 mask padded by one background voxel, so it passes
    half-way between foreground and background voxel centres: rasterising it at the
    voxel centres gives the slice back. Outer boundaries and holes are separate
    contours (combine them with the even-odd rule); diagonally touching voxels give
    separate contours.

    Args:
        mask: bool, shape ``reference.shape`` (z, y, x).
        reference: the volume whose grid the mask lies on.
        simplify: drop vertices lying on the straight line through their neighbours
            (lossless; makes files about 3 times smaller).

    Returns:
        list of ``(k, points)`` with ``k`` the slice index and ``points`` (n, 3)
        physical (x, y, z) mm, the polygon not repeating its first point.
    """
    from scipy import ndimage
    from skimage.measure import find_contours

    mask = np.asarray(mask, dtype=bool)
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    if slices.size == 0:
        return []
    _, rows, cols = ndimage.find_objects(mask.view(np.uint8))[0]  # bounding box of the foreground
    y0, y1, x0, x1 = rows.start, rows.stop, cols.start, cols.stop
    offset = np.array([y0 - 1, x0 - 1], dtype=np.float64)
    contours: list[tuple[int, np.ndarray]] = []
    for k in slices.tolist():  # marching squares is a 2-D algorithm: one call per slice with foreground
        crop = np.pad(mask[k, y0:y1, x0:x1], 1).astype(np.float32)
        for line in find_contours(crop, 0.5):
            if len(line) > 1 and np.allclose(line[0], line[-1]):
                line = line[:-1]
            if simplify:
                line = _drop_collinear(line)
            if len(line) < 3:
                continue
            index = np.column_stack([np.full(len(line), float(k)), line + offset])
            contours.append((k, reference.index_to_physical(index)))
    return contours


# ---------------------------------------------------------------------------- SEG
def write_seg(
    mask: np.ndarray,
    reference: Volume,
    path: str | Path,
    *,
    segment_label: str = "GTV",
    description: str = "mkunet automatic tumour segmentation",
    algorithm_name: str = "mkunet",
    algorithm_version: str = mkunet.__version__,
    manufacturer: str = "mkunet",
    series_number: int = 901,
) -> Path:
    """Write a boolean mask as a BINARY DICOM Segmentation (one segment) with highdicom.

    The segment is coded as category "Morphologically Abnormal Structure"
    (SCT 49755003), type "Neoplasm, Primary" (SCT 372087000), algorithm type
    AUTOMATIC. Only frames (slices) with foreground are stored; an empty mask
    writes every frame, all empty (highdicom cannot omit them all), and warns.
    Frame ``k`` references ``reference.source[k]``.

    Args:
        mask: bool (or 0/1) array, shape ``reference.shape`` (z, y, x).
        reference: CT volume read from a DICOM series (``mkunet.io.read_volume``):
            ``reference.source[k]`` is the DICOM file of slice ``k``.
        path: output file (parent folders are created).
        segment_label: segment label (also the content label, as a code string).
        description: series and content description (at most 64 characters).
        algorithm_name: name of the algorithm that made the mask.
        algorithm_version: its version.
        manufacturer: equipment manufacturer written in the SEG.
        series_number: SeriesNumber of the new series.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: wrong mask shape or type, or ``reference`` is not a DICOM series
            whose headers match its grid.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    writer = "write_seg"
    array = _as_mask(mask, reference, writer)
    segment_label = _check_text(segment_label, "segment_label", 64)
    description = _check_text(description, "description", 64)
    headers = _source_headers(reference, writer)
    if not array.any():
        warnings.warn(
            f"write_seg: the mask is empty (no tumour found); writing '{path}' with all {array.shape[0]} frames empty.",
            stacklevel=2,
        )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment_label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.cid7151.NeoplasmPrimary,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=_check_text(algorithm_name, "algorithm_name", 64),
            family=codes.cid7162.ArtificialIntelligence,
            version=_check_text(algorithm_version, "algorithm_version", 64),
        ),
    )
    with warnings.catch_warnings():
        # highdicom warns about single-component person names copied verbatim from the source.
        warnings.filterwarnings("ignore", message=r"The string .* is unlikely to represent", category=UserWarning)
        seg = hd.seg.Segmentation(
            source_images=headers,
            pixel_array=array.astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment],
            series_instance_uid=hd.UID(),
            series_number=int(series_number),
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=_check_text(manufacturer, "manufacturer", 64),
            manufacturer_model_name=_check_text(algorithm_name, "algorithm_name", 64),
            software_versions=algorithm_version,
            device_serial_number="0",
            content_description=description,
            content_label=_code_string(segment_label),
            series_description=description,
            omit_empty_frames=bool(array.any()),  # all-empty: keep every frame (we warned above)
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, seg, enforce_file_format=True)
    return path


# ---------------------------------------------------------------------------- RTSTRUCT
def _check_roi_display(roi_interpreted_type: str, color, decimals: int) -> tuple[str, tuple[int, ...]]:
    """Check the ROI's interpreted type, colour and coordinate decimals -> (type as a code string, (R, G, B))."""
    interpreted = str(roi_interpreted_type).upper()
    if not re.fullmatch(r"[A-Z0-9_ ]{1,16}", interpreted):
        raise ValueError(
            f"`roi_interpreted_type` must be a DICOM code string such as 'GTV', got {roi_interpreted_type!r}."
        )
    rgb = tuple(int(c) for c in color)
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"`color` must be three integers in 0..255 (R, G, B), got {color!r}.")
    if not 0 <= decimals <= 6:
        raise ValueError(f"`decimals` must be in 0..6, got {decimals!r}.")
    return interpreted, rgb


def _rtstruct_header(
    first,
    date: str,
    time: str,
    series_number: int,
    roi_description: str,
    manufacturer: str,
    algorithm_name: str,
    algorithm_version: str,
):
    """A new RTSTRUCT dataset: file meta, SOP Common, the source's patient and study, RT Series, equipment.

    ``first`` is a header of the source series (identity and frame of reference are copied from it).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_instance_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta

    # SOP Common
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.InstanceNumber = 1
    # Patient + General Study: the source's identity, nothing else
    _copy_identity(ds, first)
    # RT Series
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = int(series_number)
    ds.SeriesDate = date
    ds.SeriesTime = time
    ds.SeriesDescription = roi_description
    ds.OperatorsName = ""
    # Frame of Reference (the source's: contours are in its patient coordinates)
    ds.FrameOfReferenceUID = first.FrameOfReferenceUID
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "") or ""
    # General Equipment
    ds.Manufacturer = _check_text(manufacturer, "manufacturer", 64)
    ds.ManufacturerModelName = _check_text(algorithm_name, "algorithm_name", 64)
    ds.SoftwareVersions = _check_text(algorithm_version, "algorithm_version", 64)
    return ds


def _image_ref(header):
    """A Referenced SOP Class / Instance item pointing at the image ``header``."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    return item


def _referenced_frame_of_reference(headers: list):
    """Referenced Frame of Reference -> RT Referenced Study -> RT Referenced Series -> every image of ``headers``."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    first = headers[0]
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = DicomSequence([_image_ref(h) for h in headers])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = _STUDY_COMPONENT_MANAGEMENT
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = DicomSequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame_ref.RTReferencedStudySequence = DicomSequence([study_ref])
    return frame_ref


def _structure_set_roi(first, roi_name: str, roi_description: str, algorithm_name: str, algorithm_version: str):
    """The Structure Set ROI item (ROI 1, automatic, in the source's frame of reference)."""
    from pydicom.dataset import Dataset

    roi = Dataset()
    roi.ROINumber = 1
    roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
    roi.ROIName = roi_name
    roi.ROIDescription = roi_description
    roi.ROIGenerationAlgorithm = "AUTOMATIC"
    roi.ROIGenerationDescription = _check_text(f"{algorithm_name} {algorithm_version}", "algorithm_name", 64)
    return roi


def _roi_contour(contours: list[tuple[int, np.ndarray]], headers: list, rgb: tuple[int, ...], decimals: int):
    """The ROI Contour item: one CLOSED_PLANAR contour per (slice, points in mm), each referencing its image."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 1
    roi_contour.ROIDisplayColor = list(rgb)
    if contours:
        items = []
        for number, (k, points) in enumerate(contours, start=1):
            item = Dataset()
            item.ContourNumber = number
            item.ContourImageSequence = DicomSequence([_image_ref(headers[k])])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(points)
            item.ContourData = format_ds(points, decimals)
            items.append(item)
        roi_contour.ContourSequence = DicomSequence(items)
    return roi_contour


def _roi_observation(interpreted: str):
    """The RT ROI Observations item of ROI 1 with its interpreted type (GTV, CTV, ...)."""
    from pydicom.dataset import Dataset

    observation = Dataset()
    observation.ObservationNumber = 1
    observation.ReferencedROINumber = 1
    observation.RTROIInterpretedType = interpreted
    observation.ROIInterpreter = ""
    return observation


def write_rtstruct(
    mask: np.ndarray,
    reference: Volume,
    path: str | Path,
    *,
    roi_name: str = "GTV",
    roi_description: str = "mkunet automatic tumour segmentation",
    roi_interpreted_type: str = "GTV",
    color: tuple[int, int, int] = (255, 0, 0),
    structure_set_label: str = "mkunet",
    algorithm_name: str = "mkunet",
    algorithm_version: str = mkunet.__version__,
    manufacturer: str = "mkunet",
    series_number: int = 902,
    simplify: bool = True,
    decimals: int = 3,
) -> Path:
    """Write a boolean mask as one ROI of a DICOM RT Structure Set (pydicom, no rt-utils).

    Contours: see :func:`mask_to_contours` (CLOSED_PLANAR, one per boundary per
    axial slice, holes as separate contours to combine with the even-odd rule),
    each referencing its CT image; coordinates in mm rounded to ``decimals``
    places, every decimal string at most 16 characters. The structure set
    references every image of the source series (Referenced Frame of Reference
    -> RT Referenced Study -> RT Referenced Series -> Contour Image Sequence).
    An empty mask writes the ROI with no contour and warns.

    Args:
        mask: bool (or 0/1) array, shape ``reference.shape`` (z, y, x).
        reference: CT volume read from a DICOM series (``mkunet.io.read_volume``):
            ``reference.source[k]`` is the DICOM file of slice ``k``.
        path: output file (parent folders are created).
        roi_name: ROI name (at most 64 characters).
        roi_description: ROI generation description (at most 64 characters).
        roi_interpreted_type: RTROIInterpretedType (GTV, CTV, PTV, ORGAN, ...).
        color: ROI display colour (R, G, B), each 0-255.
        structure_set_label: StructureSetLabel (at most 16 characters).
        algorithm_name: name of the algorithm (equipment model name).
        algorithm_version: its version (software versions).
        manufacturer: equipment manufacturer written in the file.
        series_number: SeriesNumber of the new series.
        simplify: drop collinear contour vertices (lossless), see :func:`mask_to_contours`.
        decimals: decimal places of contour coordinates in mm.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: wrong mask shape or type, bad parameter, or ``reference`` is not
            a DICOM series whose headers match its grid.
    """
    import pydicom
    from pydicom.sequence import Sequence as DicomSequence

    writer = "write_rtstruct"
    array = _as_mask(mask, reference, writer)
    roi_name = _check_text(roi_name, "roi_name", 64)
    roi_description = _check_text(roi_description, "roi_description", 64)
    structure_set_label = _check_text(structure_set_label, "structure_set_label", 16)
    interpreted, rgb = _check_roi_display(roi_interpreted_type, color, decimals)
    headers = _source_headers(reference, writer)
    first = headers[0]
    contours = mask_to_contours(array, reference, simplify=bool(simplify))
    if not contours:
        warnings.warn(
            f"write_rtstruct: the mask is empty (no tumour found); writing '{path}' with ROI "
            f"'{roi_name}' declared but no contour.",
            stacklevel=2,
        )

    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds = _rtstruct_header(
        first, date, time, series_number, roi_description, manufacturer, algorithm_name, algorithm_version
    )
    # Structure Set
    ds.StructureSetLabel = structure_set_label
    ds.StructureSetName = roi_name
    ds.StructureSetDescription = roi_description
    ds.StructureSetDate = date
    ds.StructureSetTime = time
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame_of_reference(headers)])
    roi = _structure_set_roi(first, roi_name, roi_description, algorithm_name, algorithm_version)
    ds.StructureSetROISequence = DicomSequence([roi])
    ds.ROIContourSequence = DicomSequence([_roi_contour(contours, headers, rgb, decimals)])
    ds.RTROIObservationsSequence = DicomSequence([_roi_observation(interpreted)])

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path
