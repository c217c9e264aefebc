"""Reading and writing CT volumes and masks: DICOM series, NIfTI, NRRD, RTSTRUCT.

Every reader returns geometry with the data (see :mod:`mkunet.volume` for the axis
conventions): arrays are (z, y, x), spacing (z, y, x) in mm, origin (x, y, z) in mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mkunet.io import dicom_in
from mkunet.io.dicom_in import DicomSeriesError
from mkunet.volume import Volume, same_grid

__all__ = [
    "Volume",
    "same_grid",
    "read_volume",
    "write_volume",
    "write_mask",
    "read_mask",
    "read_rtstruct",
    "list_rois",
    "DicomSeriesError",
]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_NRRD_SUFFIXES = (".nrrd", ".nhdr")


def _kind(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if name.endswith(_NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(_NRRD_SUFFIXES):
        return "nrrd"
    if name.endswith(".dcm") or _has_dicom_preamble(path):
        return "dicom-file"
    return "unknown"


def _has_dicom_preamble(path: Path) -> bool:
    """True when ``path`` is a file with the DICOM Part 10 marker ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_volume(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read a CT volume in HU from a DICOM folder, a single DICOM file, a NIfTI or an NRRD file.

    Args:
        path: folder holding one CT series (files in any order, any names), a
            ``.dcm`` file, or a ``.nii``/``.nii.gz``/``.nrrd`` file.
        series_uid: which series to read when the folder holds several.

    Returns:
        Volume with float32 HU in (z, y, x) order and its geometry.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DicomSeriesError: the DICOM input is not one consistent CT series.
        ValueError: unknown file type.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file or folder: '{path}'.")
    kind = _kind(path)
    if kind in ("dicom", "dicom-file"):
        return dicom_in.read_dicom_series(path, series_uid=series_uid)
    if kind in ("nifti", "nrrd"):
        import SimpleITK as sitk

        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise ValueError(f"Cannot read '{path}' as {kind.upper()}: {err}".strip()) from err
        volume = Volume.from_sitk(image, source=(path,))
        volume.patient_id = _stem(path)
        return volume
    raise ValueError(
        f"Don't know how to read '{path}': give a DICOM folder, a .dcm file, or a "
        f"{'/'.join(_NIFTI_SUFFIXES + _NRRD_SUFFIXES)} file."
    )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _NIFTI_SUFFIXES + _NRRD_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def write_volume(volume: Volume, path: str | Path, array: np.ndarray | None = None, compression_level: int = 1) -> Path:
    """Write ``volume`` (or ``array`` on its grid) as NIfTI (.nii, .nii.gz) or NRRD (.nrrd).

    Geometry (spacing, origin, direction) is written with the data. Boolean arrays
    are written as uint8 label maps, other arrays keep their dtype.

    Args:
        compression_level: gzip level 1 (fast, the default: CT compresses only a few
            percent better at 9 and takes several times longer) to 9.
    """
    import SimpleITK as sitk

    path = Path(path)
    if _kind(path) not in ("nifti", "nrrd"):
        raise ValueError(f"write_volume writes .nii, .nii.gz or .nrrd files, not '{path.name}'.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not 1 <= int(compression_level) <= 9:
        raise ValueError(f"compression_level must be 1..9, got {compression_level!r}.")
    sitk.WriteImage(volume.to_sitk(array), str(path), useCompression=True, compressionLevel=int(compression_level))
    return path


def write_mask(mask: np.ndarray, reference: Volume, path: str | Path) -> Path:
    """Write a boolean (z, y, x) mask on ``reference``'s grid as a uint8 NIfTI/NRRD label map."""
    return write_volume(reference, path, np.asarray(mask).astype(np.uint8))


def read_mask(path: str | Path, reference: Volume) -> np.ndarray:
    """Read a label map (NIfTI/NRRD; any non-zero label is foreground) on ``reference``'s grid.

    When the file's geometry differs from the reference, it is resampled
    nearest-neighbour onto the reference grid.

    Returns:
        bool array, shape ``reference.shape`` (z, y, x).

    Raises:
        ValueError: the mask does not overlap the reference volume at all.
    """
    import SimpleITK as sitk

    from mkunet.preprocess.resample import resample_mask

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such mask file: '{path}'.")
    if _kind(path) not in ("nifti", "nrrd"):
        raise ValueError(f"read_mask reads NIfTI or NRRD label maps, not '{path.name}'.")
    label = Volume.from_sitk(sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32))
    foreground = label.array != 0
    if same_grid(label, reference):
        return foreground
    mask = resample_mask(foreground, label, reference, method="nearest")
    if foreground.any() and not mask.any():
        raise ValueError(
            f"The mask '{path}' does not overlap the reference volume ({reference!r}): "
            "check that both come from the same scan and frame of reference."
        )
    return mask


def read_rtstruct(path: str | Path, reference: Volume, roi: str | None = None) -> np.ndarray:
    """Rasterise one ROI of a DICOM RTSTRUCT onto ``reference``'s grid (holes handled).

    Args:
        path: the RTSTRUCT file.
        reference: the CT volume the structure set was drawn on.
        roi: ROI name (case-insensitive); may be omitted when the file holds one ROI.

    Returns:
        bool array of shape ``reference.shape`` (z, y, x).
    """
    return dicom_in.read_rtstruct(path, reference, roi=roi)


def list_rois(path: str | Path) -> list[str]:
    """Names of the ROIs in a DICOM RTSTRUCT file, in file order."""
    return dicom_in.list_rois(path)
