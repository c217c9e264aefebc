"""DICOM input: CT image series -> :class:`~mkunet.volume.Volume`, RTSTRUCT -> boolean mask.

Headers are parsed with pydicom, pixels are stacked with NumPy into one
preallocated float32 array; the slice order, the geometry and every
consistency check are done here (not delegated to a reader that might sort by
file name or ``InstanceNumber``).

Geometry (see :mod:`mkunet.volume` for the conventions):

* slices are sorted by their position along the slice normal
  ``n = r x c`` where ``r`` and ``c`` are the row and column direction cosines
  of ``ImageOrientationPatient``;
* ``origin`` (x, y, z) mm = ``ImagePositionPatient`` of the first slice after
  sorting;
* ``direction`` columns = ``r``, ``c``, ``n`` (SimpleITK convention);
* ``spacing`` (z, y, x) mm = (median distance between consecutive slices along
  ``n``, ``PixelSpacing[0]`` (distance between rows), ``PixelSpacing[1]``
  (distance between columns)).

A single-slice volume (one ``.dcm`` file, or a series of one slice) gets
``spacing[0] = SliceThickness``, or 1.0 mm when the file has none.

Tolerances: two slice positions closer than ``_DUPLICATE_TOL_MM`` are
duplicates; consecutive gaps may differ from the median spacing by at most
``max(0.01 mm, 1 % of the spacing)``; slice positions may lie off the line
through the first slice along ``n`` by at most the same amount (otherwise the
series is treated as gantry-tilted).
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mkunet.volume import Volume

__all__ = ["DicomSeriesError", "read_dicom_series", "read_rtstruct", "list_rois", "find_series", "SeriesInfo"]

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_DUPLICATE_TOL_MM = 1e-3
_MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR
_ORIENTATION_TOL = 1e-4
_MAX_LISTED = 8  # files named in one error message before "... and N more"

#: header keywords copied into ``Volume.meta`` (when present and non-empty)
META_KEYWORDS: tuple[str, ...] = (
    "Modality",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "SeriesDate",
    "SeriesNumber",
    "SeriesDescription",
    "AcquisitionDate",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "AccessionNumber",
    "StudyID",
    "BodyPartExamined",
    "Manufacturer",
    "ManufacturerModelName",
    "KVP",
    "SliceThickness",
    "ConvolutionKernel",
)


class DicomSeriesError(ValueError):
    """A DICOM input that cannot be read as one CT volume; the message says why and what to do.

    Also importable as ``mkunet.io.DicomSeriesError``.
    """


def _error(message: str) -> DicomSeriesError:
    return DicomSeriesError(message)


def _list_files(paths: Sequence[Path | str]) -> str:
    names = [f"'{p}'" for p in paths]
    if len(names) > _MAX_LISTED:
        return ", ".join(names[:_MAX_LISTED]) + f" ... and {len(names) - _MAX_LISTED} more"
    return ", ".join(names)


# ---------------------------------------------------------------------------- scanning
@dataclass
class SeriesInfo:
    """One DICOM series found in a folder (headers only)."""

    series_uid: str
    modality: str
    description: str
    files: list[Path]
    is_image: bool
    headers: list = field(default_factory=list, repr=False)  # pydicom datasets without pixel data

    def describe(self) -> str:
        kind = "slices" if self.is_image else "files"
        return (
            f"  {self.series_uid}  modality={self.modality or '?'}  "
            f"description={self.description!r}  {len(self.files)} {kind}"
        )


def _has_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: Path):
    """Header of a DICOM file (no pixel data), or None when it is not a DICOM file.

    Raises:
        DicomSeriesError: the file looks like DICOM (preamble, or ``.dcm`` name) but cannot be parsed.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    looks_dicom = _has_preamble(path)
    if not looks_dicom and path.suffix.lower() != ".dcm":
        return None  # README, DICOMDIR without preamble, thumbnails, ...
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not looks_dicom)
        # touch the elements we need so that lazily-parsed corruption surfaces here
        for keyword in ("SOPClassUID", "Modality", "SeriesInstanceUID", "Rows"):
            ds.get(keyword)
    except (InvalidDicomError, OSError, ValueError, KeyError, EOFError, TypeError, AttributeError) as err:
        raise _error(f"Cannot read the DICOM file '{path}': {type(err).__name__}: {err}") from err
    if not looks_dicom and "SOPClassUID" not in ds and "Modality" not in ds:
        raise _error(
            f"Cannot read the DICOM file '{path}': it has a .dcm name but no DICOM header "
            "(no preamble, no SOP Class UID, no Modality)."
        )
    media_class = str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "") or "")
    if media_class == _MEDIA_DIRECTORY:
        return None  # a DICOMDIR under another name
    if "SOPClassUID" not in ds and "SeriesInstanceUID" not in ds:
        raise _error(
            f"Cannot read the DICOM file '{path}': its header ends before the SOP Class and Series UIDs "
            "(truncated or damaged file)."
        )
    return ds


def find_series(folder: str | Path) -> dict[str, SeriesInfo]:
    """Scan ``folder`` recursively and group its DICOM files by SeriesInstanceUID.

    Files that are not DICOM (no ``DICM`` preamble and no ``.dcm`` suffix) are
    skipped; so is ``DICOMDIR``. Files that look like DICOM but cannot be
    parsed are reported together.

    Returns:
        SeriesInstanceUID -> :class:`SeriesInfo`, in order of first appearance
        (files sorted by path only to make the scan deterministic).

    Raises:
        DicomSeriesError: some ``.dcm`` (or DICOM-preamble) files are unreadable.
    """
    folder = Path(folder)
    series: dict[str, SeriesInfo] = {}
    unreadable: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.upper() == "DICOMDIR":
            continue
        try:
            ds = _read_header(path)
        except ValueError as err:
            unreadable.append(str(err))
            continue
        if ds is None:
            logger.debug("skipping non-DICOM file %s", path)
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not uid:
            logger.debug("skipping DICOM file without SeriesInstanceUID: %s", path)
            continue
        info = series.get(uid)
        if info is None:
            info = series[uid] = SeriesInfo(
                series_uid=uid,
                modality=str(ds.get("Modality", "") or ""),
                description=str(ds.get("SeriesDescription", "") or ""),
                files=[],
                is_image=False,
            )
        info.files.append(path)
        info.headers.append(ds)
        info.is_image = info.is_image or ("Rows" in ds and "Columns" in ds)
    if unreadable:
        raise _error(
            f"{len(unreadable)} DICOM file(s) in '{folder}' cannot be read; remove or replace them "
            "(they may be truncated or not DICOM at all):\n  "
            + "\n  ".join(unreadable[:_MAX_LISTED])
            + (f"\n  ... and {len(unreadable) - _MAX_LISTED} more" if len(unreadable) > _MAX_LISTED else "")
        )
    return series


def _choose_series(folder: Path, series: dict[str, SeriesInfo], series_uid: str | None) -> SeriesInfo:
    listing = "\n".join(info.describe() for info in series.values())
    if series_uid is not None:
        info = series.get(series_uid)
        if info is None:
            raise _error(f"No series with SeriesInstanceUID {series_uid!r} in '{folder}'. Series found:\n{listing}")
        if info.modality.upper() != "CT" or not info.is_image:
            raise _error(
                f"Series {series_uid!r} in '{folder}' has modality {info.modality or 'unknown'!r}"
                f"{'' if info.is_image else ' and holds no images'}; mkunet reads CT image series only."
            )
        return info
    ct = [s for s in series.values() if s.modality.upper() == "CT" and s.is_image]
    if not series:
        raise _error(f"No DICOM files found in '{folder}' (searched recursively).")
    if not ct:
        modalities = sorted({s.modality or "unknown" for s in series.values()})
        raise _error(
            f"No CT image series in '{folder}': found modality {', '.join(modalities)} only; "
            f"mkunet reads CT (Modality 'CT') image series. Series found:\n{listing}"
        )
    if len(ct) > 1:
        choices = "\n".join(s.describe() for s in ct)
        raise _error(
            f"'{folder}' holds {len(ct)} CT series; pass series_uid=... (CLI: --series-uid) to choose one:\n{choices}"
        )
    return ct[0]


# ---------------------------------------------------------------------------- geometry
def _float_list(value: Any, n: int, keyword: str, path: Path) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise _error(f"'{path}': {keyword} is not numeric ({value!r}).") from err
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise _error(f"'{path}': {keyword} must have {n} finite values, got {value!r}.")
    return arr


def _orientation_frame(iop: np.ndarray, path: Path) -> np.ndarray:
    """3x3 direction matrix with columns row cosine, column cosine, slice normal (orthonormalised)."""
    r, c = iop[:3], iop[3:]
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    if nr < 1e-6 or nc < 1e-6 or abs(np.dot(r, c)) / (nr * nc) > 1e-3:
        raise _error(f"'{path}': ImageOrientationPatient {iop.tolist()} does not hold two orthogonal unit vectors.")
    r = r / nr
    n = np.cross(r, c / nc)
    n /= np.linalg.norm(n)
    c = np.cross(n, r)
    return np.column_stack([r, c, n])


def _meta_value(value: Any) -> Any:
    from pydicom.multival import MultiValue
    from pydicom.valuerep import IS, DSfloat, PersonName

    if isinstance(value, MultiValue) or isinstance(value, (list, tuple)):
        return [_meta_value(v) for v in value]
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, (DSfloat, float)):
        return float(value)
    if isinstance(value, (IS, int)):
        return int(value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    return str(value)


def _meta(ds) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for keyword in META_KEYWORDS:
        value = ds.get(keyword)
        if value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0):
            continue
        try:
            meta[keyword] = _meta_value(value)
        except (TypeError, ValueError):
            continue
    return meta


def _describe_position(d: float) -> str:
    return f"{d:.3f} mm"


def _check_sizes(headers: list, files: list[Path]) -> None:
    """Every file is an image, and all have the same Rows x Columns."""
    sizes: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for ds, path in zip(headers, files):
        if "Rows" not in ds or "Columns" not in ds:
            raise _error(f"'{path}' has no Rows/Columns: it is not an image; remove it from the series folder.")
        sizes[(int(ds.Rows), int(ds.Columns))].append(path)
    if len(sizes) > 1:
        parts = "; ".join(f"{r}x{c} (rows x columns): {_list_files(p)}" for (r, c), p in sizes.items())
        raise _error(
            f"The series mixes image sizes: {parts}. A volume needs one size; remove the odd files "
            "(e.g. a localizer) or choose another series."
        )


def _check_single_frame_greyscale(headers: list, files: list[Path]) -> None:
    """One frame and one sample per pixel in every file."""
    for ds, path in zip(headers, files):
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames != 1:
            raise _error(
                f"'{path}' is a multi-frame image ({frames} frames); mkunet reads single-frame CT series "
                "(one slice per file). Convert it first, e.g. with dcm2niix to NIfTI."
            )
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise _error(f"'{path}' has SamplesPerPixel {ds.SamplesPerPixel}; a CT slice must be greyscale.")


def _check_pixel_spacing(headers: list, files: list[Path]) -> None:
    """Every file has a positive PixelSpacing, the same in all (to 1e-4 mm)."""
    spacings: dict[tuple[float, float], list[Path]] = defaultdict(list)
    for ds, path in zip(headers, files):
        if "PixelSpacing" not in ds or ds.PixelSpacing is None:
            raise _error(f"'{path}' has no PixelSpacing; cannot build the volume geometry.")
        ps = _float_list(ds.PixelSpacing, 2, "PixelSpacing", path)
        if np.any(ps <= 0):
            raise _error(f"'{path}': PixelSpacing must be > 0, got {ps.tolist()}.")
        spacings[(round(ps[0], 4), round(ps[1], 4))].append(path)
    if len(spacings) > 1:
        parts = "; ".join(f"{list(k)} mm: {_list_files(p)}" for k, p in spacings.items())
        raise _error(f"The series mixes pixel spacings (row, column): {parts}. Remove the odd files.")


def _common_direction(headers: list, files: list[Path]) -> np.ndarray:
    """The direction matrix (3, 3) of the one slice orientation all files share."""
    iops = []
    for ds, path in zip(headers, files):
        if "ImageOrientationPatient" not in ds or "ImagePositionPatient" not in ds:
            raise _error(
                f"'{path}' lacks ImageOrientationPatient/ImagePositionPatient; cannot place the slice in space."
            )
        iops.append(_float_list(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", path))
    iops_arr = np.stack(iops)
    deviates = np.any(np.abs(iops_arr - iops_arr[0]) > _ORIENTATION_TOL, axis=1)
    if deviates.any():
        odd = [files[i] for i in np.flatnonzero(deviates)]
        raise _error(
            f"The series mixes slice orientations: {_list_files(odd)} differ from '{files[0]}' "
            f"(ImageOrientationPatient {iops_arr[0].round(5).tolist()}). Remove the odd files "
            "(often a localizer/scout) or choose another series."
        )
    return _orientation_frame(iops_arr[0], files[0])


def _check_no_tilt_tag(headers: list, files: list[Path]) -> None:
    """No file declares a GantryDetectorTilt (a tilted acquisition is not a rectangular grid)."""
    tilted = [
        (path, float(ds.GantryDetectorTilt))
        for ds, path in zip(headers, files)
        if ds.get("GantryDetectorTilt") not in (None, "") and abs(float(ds.GantryDetectorTilt)) > 1e-6
    ]
    if tilted:
        raise _error(
            f"Gantry tilt {tilted[0][1]} degrees in {_list_files([p for p, _ in tilted])}: slices of a tilted "
            "acquisition are sheared, not a rectangular grid. Correct the tilt first (e.g. 3D Slicer's "
            "'Gantry tilt correction' on import, or re-reconstruct on the scanner) and read the corrected series."
        )


def _check_no_duplicates(gaps: np.ndarray, along: np.ndarray, sorted_files: list[Path]) -> None:
    """No two slices at the same position along the normal (``gaps``, ``along`` in mm, sorted)."""
    dup = np.flatnonzero(gaps < _DUPLICATE_TOL_MM)
    if dup.size:
        pairs = "; ".join(
            f"'{sorted_files[i]}' and '{sorted_files[i + 1]}' at {_describe_position(along[i])}"
            for i in dup[:_MAX_LISTED]
        )
        raise _error(
            f"{dup.size} duplicate slice position(s) along the slice normal: {pairs}. The folder probably "
            "holds two acquisitions or copies of the same series; keep one file per position."
        )


def _check_on_the_normal(positions: np.ndarray, normal: np.ndarray, tol: float, sorted_files: list[Path]) -> None:
    """The sorted slice positions (n, 3) mm lie on the line through the first along ``normal`` (within ``tol`` mm)."""
    # gantry tilt shows as positions drifting off the line through the first slice along the normal
    offsets = positions - positions[0]
    off_line = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)
    if off_line.max() > tol:
        worst = int(np.argmax(off_line))
        raise _error(
            "Slice positions do not lie along the slice normal (gantry tilt or sheared series): "
            f"'{sorted_files[worst]}' is {off_line[worst]:.3f} mm off the line through '{sorted_files[0]}' "
            f"(tolerance {tol:.3f} mm). Correct the tilt first (e.g. 3D Slicer's gantry tilt correction) "
            "and read the corrected series."
        )


def _check_regular_spacing(
    gaps: np.ndarray, spacing: float, tol: float, along: np.ndarray, sorted_files: list[Path]
) -> None:
    """Every gap equals ``spacing`` within ``tol`` (mm); the error names missing slices or odd gaps."""
    bad = np.flatnonzero(np.abs(gaps - spacing) > tol)
    if bad.size:
        details = []
        missing = False
        for i in bad[:_MAX_LISTED]:
            ratio = gaps[i] / spacing
            if ratio > 1.5 and abs(ratio - round(ratio)) * spacing <= tol:
                missing = True
                what = f"{int(round(ratio)) - 1} missing slice(s)"
            else:
                what = f"gap {gaps[i]:.3f} mm"
            details.append(
                f"{what} between {_describe_position(along[i])} ('{sorted_files[i]}') and "
                f"{_describe_position(along[i + 1])} ('{sorted_files[i + 1]}')"
            )
        more = f"; ... and {bad.size - _MAX_LISTED} more" if bad.size > _MAX_LISTED else ""
        kind = "missing slices" if missing else "irregular slice spacing"
        raise _error(
            f"The series has {kind}: the usual spacing is {spacing:.3f} mm (tolerance {tol:.3f} mm) but there is "
            + "; ".join(details)
            + more
            + ". Re-export the complete series (or resample it to a regular grid) before reading it."
        )


def _check_and_sort(headers: list, files: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Consistency checks; returns (order, direction, positions (n, 3), slice spacing mm)."""
    _check_sizes(headers, files)
    _check_single_frame_greyscale(headers, files)
    _check_pixel_spacing(headers, files)
    direction = _common_direction(headers, files)
    normal = direction[:, 2]
    _check_no_tilt_tag(headers, files)
    # --- positions along the normal
    positions = np.stack(
        [_float_list(ds.ImagePositionPatient, 3, "ImagePositionPatient", p) for ds, p in zip(headers, files)]
    )
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    positions = positions[order]
    sorted_files = [files[i] for i in order]
    if len(files) == 1:
        return order, direction, positions, float("nan")
    gaps = np.diff(along)
    _check_no_duplicates(gaps, along, sorted_files)
    spacing = float(np.median(gaps))
    tol = max(0.01, 0.01 * spacing)
    _check_on_the_normal(positions, normal, tol, sorted_files)
    _check_regular_spacing(gaps, spacing, tol, along, sorted_files)
    return order, direction, positions, spacing


# ---------------------------------------------------------------------------- pixels
def _decode_error(path: Path, ds, err: Exception) -> str:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None and ts.is_compressed:
        return (
            f"'{path}': cannot decode compressed pixel data ({ts.name}, {ts}): {err}. Install a decoder "
            "(e.g. pylibjpeg with pylibjpeg-libjpeg/-openjpeg, or python-gdcm) or decompress the files "
            "first (e.g. `gdcmconv --raw` or `dcmdjpeg`)."
        )
    return f"'{path}': cannot read the pixel data ({type(err).__name__}: {err}); the file may be truncated."


def _read_pixels(files: Sequence[Path], rows: int, cols: int) -> np.ndarray:
    """Stack the slices of ``files`` (already in array order) into float32 HU (z, y, x)."""
    import pydicom

    out = np.empty((len(files), rows, cols), dtype=np.float32)
    failures: list[str] = []
    for k, path in enumerate(files):
        ds = None
        try:
            ds = pydicom.dcmread(path)
            if "PixelData" not in ds:
                failures.append(f"'{path}': no pixel data.")
                continue
            pixels = ds.pixel_array
        except Exception as err:  # noqa: BLE001 - decoders raise many types; report them all by file
            failures.append(_decode_error(path, ds, err))
            continue
        if pixels.shape != (rows, cols):
            failures.append(f"'{path}': pixel array shape {pixels.shape} != Rows x Columns {(rows, cols)}.")
            continue
        slope_value, intercept_value = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        slope = float(slope_value) if slope_value not in (None, "") else 1.0
        intercept = float(intercept_value) if intercept_value not in (None, "") else 0.0
        plane = out[k]
        plane[...] = pixels
        if slope != 1.0:
            plane *= np.float32(slope)
        if intercept != 0.0:
            plane += np.float32(intercept)
        del ds, pixels
    if failures:
        raise _error(
            f"{len(failures)} slice(s) could not be decoded:\n  "
            + "\n  ".join(failures[:_MAX_LISTED])
            + (f"\n  ... and {len(failures) - _MAX_LISTED} more" if len(failures) > _MAX_LISTED else "")
        )
    return out


def _identity(ds) -> dict[str, Any]:
    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        return str(value) if value not in (None, "") else None

    return {
        "patient_id": text("PatientID"),
        "study_uid": text("StudyInstanceUID"),
        "series_uid": text("SeriesInstanceUID"),
        "frame_of_reference_uid": text("FrameOfReferenceUID"),
        "meta": _meta(ds),
    }


def _volume_from_files(files: list[Path], headers: list) -> Volume:
    for ds, path in zip(headers, files):
        modality = str(ds.get("Modality", "") or "")
        if modality.upper() != "CT":
            raise _error(
                f"'{path}' has modality {modality or 'unknown'!r}; mkunet reads CT (Modality 'CT') images only."
            )
    order, direction, positions, spacing_z = _check_and_sort(headers, files)
    sorted_files = [files[i] for i in order]
    first = headers[int(order[0])]
    if len(files) == 1:
        thickness = first.get("SliceThickness")
        spacing_z = float(thickness) if thickness not in (None, "") and float(thickness) > 0 else 1.0
        logger.info("single-slice volume '%s': z spacing = %.3f mm (SliceThickness or 1.0)", files[0], spacing_z)
    rows, cols = int(first.Rows), int(first.Columns)
    ps = _float_list(first.PixelSpacing, 2, "PixelSpacing", sorted_files[0])
    array = _read_pixels(sorted_files, rows, cols)
    ident = _identity(first)
    return Volume(
        array=array,
        spacing=(spacing_z, float(ps[0]), float(ps[1])),
        origin=tuple(positions[0]),
        direction=direction,
        source=tuple(sorted_files),
        **ident,
    )


def read_dicom_series(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read one CT series (a folder, searched recursively, or a single ``.dcm`` file) as a Volume.

    Slices are sorted by their position along the slice normal (never by file
    name or ``InstanceNumber``); ``RescaleSlope``/``RescaleIntercept`` are
    applied per slice, giving float32 HU. Non-DICOM files (README, DICOMDIR,
    ...) are skipped; RTSTRUCT, SEG and other non-image or non-CT series in the
    folder are ignored when one CT series is present.

    Args:
        path: folder holding the series (any file names, with or without
            extension) or one DICOM file (a one-slice volume whose z spacing is
            ``SliceThickness``, or 1.0 mm when absent).
        series_uid: SeriesInstanceUID to read when the folder holds several
            CT series.

    Returns:
        Volume: ``array`` float32 HU of shape (z, y, x); ``spacing`` (z, y, x)
        mm = (median slice distance, PixelSpacing[0], PixelSpacing[1]);
        ``origin`` (x, y, z) mm = ImagePositionPatient of the first slice;
        ``direction`` columns = row cosine, column cosine, slice normal;
        ``source[k]`` = file of slice ``k``; identity fields and ``meta`` filled
        from the first slice's header.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DicomSeriesError: (a ``ValueError``) several CT series and no
            ``series_uid``; no CT series; unreadable files; mixed sizes, pixel
            spacings or orientations; duplicate positions; missing or
            irregularly spaced slices; gantry tilt; undecodable pixel data. The
            message names the files and says what to do.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such DICOM file or folder: '{path}'.")
    if path.is_file():
        ds = _read_header(path)
        if ds is None:
            ds = _read_header_forced(path)
        if series_uid is not None and str(ds.get("SeriesInstanceUID", "")) != series_uid:
            raise _error(
                f"'{path}' belongs to series {ds.get('SeriesInstanceUID')!r}, not the requested {series_uid!r}."
            )
        return _volume_from_files([path], [ds])
    series = find_series(path)
    info = _choose_series(path, series, series_uid)
    return _volume_from_files(list(info.files), list(info.headers))


def _read_header_forced(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as err:  # noqa: BLE001
        raise _error(f"Cannot read '{path}' as DICOM: {type(err).__name__}: {err}") from err
    if "SOPClassUID" not in ds and "Modality" not in ds:
        raise _error(f"'{path}' is not a DICOM file (no preamble, no SOP Class UID, no Modality).")
    return ds


# ---------------------------------------------------------------------------- RTSTRUCT
def _read_rtstruct_file(path: str | Path):
    import pydicom

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such RTSTRUCT file: '{path}'.")
    if path.is_dir():
        raise ValueError(f"'{path}' is a folder; give the RTSTRUCT file itself.")
    try:
        ds = pydicom.dcmread(path, force=path.suffix.lower() == ".dcm")
    except Exception as err:  # noqa: BLE001
        raise _error(f"Cannot read the RTSTRUCT file '{path}': {type(err).__name__}: {err}") from err
    if "StructureSetROISequence" not in ds:
        raise _error(
            f"'{path}' is not an RT Structure Set (Modality {ds.get('Modality', 'unknown')!r}, "
            "no StructureSetROISequence)."
        )
    return ds


def list_rois(path: str | Path) -> list[str]:
    """Names of the ROIs in a DICOM RTSTRUCT file, in file order.

    Raises:
        FileNotFoundError: no such file.
        DicomSeriesError: the file is not a readable RT Structure Set.
    """
    ds = _read_rtstruct_file(path)
    return [str(item.get("ROIName", "") or "") for item in ds.StructureSetROISequence]


def _select_roi(path: Path, items: list, roi: str | None):
    names = [str(item.get("ROIName", "") or "") for item in items]
    available = ", ".join(repr(n) for n in names) or "none"
    if not items:
        raise _error(f"The RTSTRUCT '{path}' holds no ROI.")
    if roi is None:
        if len(items) == 1:
            return items[0]
        raise _error(f"The RTSTRUCT '{path}' holds {len(items)} ROIs; pass roi=... (one of {available}).")
    wanted = roi.strip().casefold()
    matches = [item for item, name in zip(items, names) if name.strip().casefold() == wanted]
    if not matches:
        raise _error(f"No ROI named {roi!r} in the RTSTRUCT '{path}'; available ROIs: {available}.")
    if len(matches) > 1:
        numbers = ", ".join(str(m.get("ROINumber")) for m in matches)
        raise _error(
            f"ROI name {roi!r} is ambiguous in the RTSTRUCT '{path}' (ROI numbers {numbers}, names compared "
            f"case-insensitively); available ROIs: {available}. Rename one of them in the file."
        )
    return matches[0]


def read_rtstruct(path: str | Path, reference: Volume, roi: str | None = None) -> np.ndarray:
    """Rasterise one ROI of a DICOM RTSTRUCT onto ``reference``'s grid.

    Each ``CLOSED_PLANAR`` contour's points (x, y, z) mm are mapped to
    continuous array indices (z, y, x) with ``reference.physical_to_index``;
    the contour goes to the nearest slice, and its polygon is filled on that
    slice (a voxel is inside when its centre is inside the polygon,
    ``skimage.draw.polygon``). Contours on the same slice are combined with
    XOR (even-odd rule), so a contour drawn inside another one is a hole.
    ``POINT`` and ``OPEN_*`` contours carry no area and are ignored (warning).

    Args:
        path: the RTSTRUCT file.
        reference: CT volume the structure set was drawn on (its
            ``frame_of_reference_uid``, when known, must match the ROI's).
        roi: ROI name, matched case-insensitively; may be omitted when the
            file holds one ROI.

    Returns:
        bool array of shape ``reference.shape`` (z, y, x). An ROI without
        contours gives an all-False mask and a warning.

    Raises:
        DicomSeriesError: unknown/ambiguous ROI (the message lists the
            available ROIs), frame-of-reference mismatch, contours not lying in
            the reference's slice planes, or no contour inside the volume.
    """
    from skimage.draw import polygon

    path = Path(path)
    ds = _read_rtstruct_file(path)
    item = _select_roi(path, list(ds.StructureSetROISequence), roi)
    name = str(item.get("ROIName", ""))
    number = item.get("ROINumber")
    ref_for = reference.frame_of_reference_uid
    roi_for = str(item.get("ReferencedFrameOfReferenceUID", "") or "")
    if ref_for and roi_for and roi_for != ref_for:
        raise _error(
            f"ROI {name!r} of '{path}' is drawn in frame of reference {roi_for}, but the reference CT is in "
            f"{ref_for}: the structure set belongs to another scan. Read it with the CT it was drawn on."
        )
    mask = np.zeros(reference.shape, dtype=bool)
    contours = []
    for rc in ds.get("ROIContourSequence", []):
        if rc.get("ReferencedROINumber") == number:
            contours = list(rc.get("ContourSequence", []))
            break
    if not contours:
        warnings.warn(f"ROI {name!r} in '{path}' has no contours: returning an empty mask.", stacklevel=2)
        return mask
    nz, ny, nx = reference.shape
    skipped_open = 0
    outside = 0
    between = 0
    drawn = 0
    for index, contour in enumerate(contours):
        kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).upper()
        if kind not in ("CLOSED_PLANAR", "CLOSED_PLANAR_XOR"):
            skipped_open += 1
            continue
        data = contour.get("ContourData")
        if data is None or len(data) < 9 or len(data) % 3:
            skipped_open += 1
            continue
        points = np.asarray(data, dtype=np.float64).reshape(-1, 3)
        idx = reference.physical_to_index(points)  # (n, 3) ordered (z, y, x)
        kz = idx[:, 0]
        if np.ptp(kz) > 0.5:
            raise _error(
                f"Contour {index} of ROI {name!r} in '{path}' is not parallel to the reference CT's slices "
                f"(spans {np.ptp(kz):.2f} slices): it was drawn on another orientation; give the CT it was drawn on."
            )
        kc = float(kz.mean())
        k = int(np.rint(kc))
        if k < 0 or k >= nz:
            outside += 1
            continue
        if abs(kc - k) > 0.25:
            between += 1
        rr, cc = polygon(idx[:, 1], idx[:, 2], shape=(ny, nx))
        plane = mask[k]
        plane[rr, cc] = ~plane[rr, cc]
        drawn += 1
    if skipped_open:
        warnings.warn(
            f"ROI {name!r} in '{path}': {skipped_open} POINT/OPEN or empty contour(s) ignored (no area).",
            stacklevel=2,
        )
    if outside:
        if drawn == 0:
            raise _error(
                f"None of the {outside} contour(s) of ROI {name!r} in '{path}' lies inside the reference CT "
                f"({reference!r}): check that the structure set belongs to this scan."
            )
        warnings.warn(
            f"ROI {name!r} in '{path}': {outside} contour(s) lie more than half a slice outside the reference "
            "volume and were ignored.",
            stacklevel=2,
        )
    if between:
        warnings.warn(
            f"ROI {name!r} in '{path}': {between} contour(s) lie between the reference CT's slices "
            "(more than a quarter slice off); each was assigned to the nearest slice.",
            stacklevel=2,
        )
    return mask
