"""The one image type of the pipeline: a CT volume with its geometry and identity.

Axis conventions (used everywhere in ``mkunet``):

* ``Volume.array`` is indexed ``(z, y, x)`` (slice, row, column), float32, in HU.
* ``Volume.spacing`` is ``(z, y, x)`` in mm, in the same order as the array axes.
* ``Volume.origin`` is the physical position (x, y, z) in mm (DICOM patient
  coordinates, LPS) of the centre of voxel ``array[0, 0, 0]``.
* ``Volume.direction`` is a 3x3 matrix in the SimpleITK / DICOM convention: column
  ``j`` is the unit vector, in physical (x, y, z) coordinates, of the *image* index
  axis ``j`` where image index axes are ordered (x, y, z) = (column, row, slice).

A voxel ``array[k, j, i]`` therefore lies at
``origin + direction @ (i * sx, j * sy, k * sz)`` (see :meth:`Volume.index_to_physical`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Volume", "same_grid"]


def _as_triplet(value: Sequence[float], name: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"`{name}` must have 3 values, got {len(values)}: {value!r}.")
    if not all(np.isfinite(values)):
        raise ValueError(f"`{name}` must be finite, got {value!r}.")
    return values  # type: ignore[return-value]


@dataclass(eq=False)
class Volume:
    """A 3-D CT image in HU with its physical geometry and DICOM identity.

    Args:
        array: image, shape (z, y, x), converted to float32 HU.
        spacing: voxel size (z, y, x) in mm, each > 0.
        origin: centre of voxel [0, 0, 0], physical (x, y, z) in mm (LPS).
        direction: 3x3 direction cosines, SimpleITK convention (column j = image
            index axis j, ordered x, y, z). Identity when omitted.
        patient_id: DICOM PatientID, or a user-supplied identifier.
        study_uid: StudyInstanceUID when known.
        series_uid: SeriesInstanceUID when known.
        frame_of_reference_uid: FrameOfReferenceUID when known.
        source: the files the volume was read from; for a DICOM series, one file
            per slice in array order (``source[k]`` is slice ``array[k]``).
        meta: further header values worth keeping (e.g. ``StudyDate``,
            ``PatientName``, ``Modality``), str -> JSON-serialisable.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    patient_id: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    frame_of_reference_uid: str | None = None
    source: tuple[Path, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim != 3:
            raise ValueError(
                f"Volume.array must be 3-D (z, y, x), got shape {array.shape}. "
                "Squeeze or select a single channel/time point first."
            )
        if array.dtype != np.float32:
            array = array.astype(np.float32)
        self.array = array
        self.spacing = _as_triplet(self.spacing, "spacing")
        if min(self.spacing) <= 0:
            raise ValueError(f"`spacing` (z, y, x) in mm must be > 0, got {self.spacing}.")
        self.origin = _as_triplet(self.origin, "origin")
        direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise ValueError(f"`direction` must be orthonormal, got {direction.tolist()}.")
        self.direction = direction
        self.source = tuple(Path(p) for p in self.source)

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (z, y, x) in voxels."""
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm^3."""
        return float(np.prod(self.spacing))

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping array indices (k, j, i) = (z, y, x) to physical (x, y, z) mm."""
        sz, sy, sx = self.spacing
        m = np.eye(4)
        # columns: index axes in array order (z, y, x) -> direction columns (2, 1, 0)
        m[:3, 0] = self.direction[:, 2] * sz
        m[:3, 1] = self.direction[:, 1] * sy
        m[:3, 2] = self.direction[:, 0] * sx
        m[:3, 3] = self.origin
        return m

    def index_to_physical(self, index_zyx: np.ndarray | Sequence[float]) -> np.ndarray:
        """Array indices (..., 3) ordered (z, y, x) -> physical points (..., 3) ordered (x, y, z) mm."""
        idx = np.asarray(index_zyx, dtype=np.float64)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def physical_to_index(self, point_xyz: np.ndarray | Sequence[float]) -> np.ndarray:
        """Physical points (..., 3) (x, y, z) mm -> continuous array indices (..., 3) ordered (z, y, x)."""
        pts = np.asarray(point_xyz, dtype=np.float64)
        inv = np.linalg.inv(self.affine[:3, :3])
        return (pts - self.affine[:3, 3]) @ inv.T

    def with_array(self, array: np.ndarray, **changes: Any) -> Volume:
        """A new Volume on the same grid and identity with another array (same shape).

        The array is not forced to HU semantics: use it for probability maps too
        (they are stored as float32).
        """
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"with_array: shape {array.shape} differs from the volume's {self.array.shape}.")
        return replace(self, array=array, **changes)

    # ------------------------------------------------------------------ SimpleITK
    def to_sitk(self, array: np.ndarray | None = None):  # -> SimpleITK.Image
        """This volume (or ``array`` of the same shape on its grid) as a SimpleITK image."""
        import SimpleITK as sitk

        data = self.array if array is None else np.asarray(array)
        if data.shape != self.array.shape:
            raise ValueError(f"to_sitk: shape {data.shape} differs from {self.array.shape}.")
        if data.dtype == bool:
            data = data.astype(np.uint8)
        image = sitk.GetImageFromArray(np.ascontiguousarray(data))
        image.SetSpacing(tuple(reversed(self.spacing)))
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(self.direction.ravel()))
        return image

    @classmethod
    def from_sitk(cls, image, **identity: Any) -> Volume:
        """Build a Volume from a 3-D SimpleITK image; ``identity`` sets the id fields."""
        if image.GetDimension() != 3:
            raise ValueError(f"Expected a 3-D image, got {image.GetDimension()}-D.")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"Expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components per voxel."
            )
        import SimpleITK as sitk

        array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
        return cls(
            array=array,
            spacing=tuple(reversed(image.GetSpacing())),
            origin=image.GetOrigin(),
            direction=np.asarray(image.GetDirection()).reshape(3, 3),
            **identity,
        )

    def __repr__(self) -> str:  # short: never print the array
        return (
            f"Volume(shape(z,y,x)={self.shape}, spacing(z,y,x)mm={tuple(round(s, 4) for s in self.spacing)}, "
            f"origin(x,y,z)mm={tuple(round(o, 2) for o in self.origin)}, patient_id={self.patient_id!r}, "
            f"series_uid={self.series_uid!r})"
        )


def same_grid(a: Volume, b: Volume, atol: float = 1e-3) -> bool:
    """True when two volumes share shape, spacing, origin and direction (within ``atol`` mm)."""
    return (
        a.shape == b.shape
        and np.allclose(a.spacing, b.spacing, atol=atol)
        and np.allclose(a.origin, b.origin, atol=atol)
        and np.allclose(a.direction, b.direction, atol=1e-4)
    )
