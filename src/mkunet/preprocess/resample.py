"""Resampling volumes and masks between grids (SimpleITK), keeping physical geometry.

Spacing tuples are (z, y, x) in mm; origins (x, y, z) in mm (see :mod:`mkunet.volume`).
Used by training (to the model's spacing) and inference (back onto the input grid).

:func:`resample_array` is the package's one call of ``SimpleITK.Resample``: any array on a
grid (a :class:`mkunet.volume.Volume`, a :class:`Grid`, or a crop of either), onto another
grid, optionally through a transform (a registration's). :func:`resample`,
:func:`resample_to` and :func:`resample_mask` are built on it, and so are the registration's
mask mapping (:mod:`mkunet.segmentation.register`), the viewer's crop
(:mod:`mkunet.report.viewer`) and the IBSI resampling of :mod:`mkunet.analysis.shape`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from mkunet.volume import Volume

__all__ = ["INTERPOLATORS", "OUTPUT_DTYPES", "Grid", "resample_array", "resample", "resample_to", "resample_mask"]

#: interpolator names -> SimpleITK enum names
INTERPOLATORS = {
    "nearest": "sitkNearestNeighbor",
    "linear": "sitkLinear",
    "bspline": "sitkBSpline",
    "lanczos": "sitkLanczosWindowedSinc",
}

Interpolator = Literal["nearest", "linear", "bspline", "lanczos"]

#: output dtype names of :func:`resample_array` -> SimpleITK pixel-type names
OUTPUT_DTYPES = {"float32": "sitkFloat32", "uint8": "sitkUInt8"}


class GridLike(Protocol):
    """What :func:`resample_array` reads of a grid (a :class:`Grid` or a :class:`mkunet.volume.Volume`)."""

    @property
    def shape(self) -> tuple[int, int, int]: ...
    @property
    def spacing(self) -> tuple[float, float, float]: ...
    @property
    def origin(self) -> tuple[float, float, float]: ...
    @property
    def direction(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Grid:
    """A voxel grid without an image: where :func:`resample_array` samples.

    Attributes:
        shape: voxels (z, y, x).
        spacing: voxel size (z, y, x) in mm.
        origin: centre of voxel [0, 0, 0], physical (x, y, z) in mm (LPS).
        direction: 3x3 direction cosines, SimpleITK convention (column j = index axis j,
            ordered x, y, z).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray

    @classmethod
    def from_sitk(cls, image: Any) -> Grid:
        """The grid of a 3-D SimpleITK image."""
        return cls(
            tuple(int(n) for n in reversed(image.GetSize())),  # type: ignore[arg-type]
            tuple(float(s) for s in reversed(image.GetSpacing())),  # type: ignore[arg-type]
            tuple(float(o) for o in image.GetOrigin()),  # type: ignore[arg-type]
            np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3),
        )

    def index_to_physical(self, index_zyx: np.ndarray | Sequence[float]) -> np.ndarray:
        """Indices (..., 3) ordered (z, y, x) -> physical points (..., 3) ordered (x, y, z) mm."""
        idx = np.asarray(index_zyx, dtype=np.float64)
        scaled = idx[..., ::-1] * np.asarray(self.spacing[::-1])
        return scaled @ np.asarray(self.direction).T + np.asarray(self.origin)


def _interpolator(name: str):
    import SimpleITK as sitk

    if name not in INTERPOLATORS:
        raise ValueError(f"`interpolator` must be one of {sorted(INTERPOLATORS)}, got {name!r}.")
    return getattr(sitk, INTERPOLATORS[name])


def _spacing(spacing_zyx: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in spacing_zyx)
    except (TypeError, ValueError):
        raise ValueError(f"`spacing_zyx` must be 3 numbers (z, y, x) in mm, got {spacing_zyx!r}.") from None
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"`spacing_zyx` must be 3 positive numbers (z, y, x) in mm, got {spacing_zyx!r}.")
    return values  # type: ignore[return-value]


def resample_array(
    array: np.ndarray,
    source: GridLike,
    target: GridLike,
    *,
    transform: Any = None,
    interpolator: Interpolator = "linear",
    default_value: float = 0.0,
    dtype: str = "float32",
) -> np.ndarray:
    """Resample ``array``, which lies on ``source``, onto ``target`` (SimpleITK ``Resample``).

    Each ``target`` voxel centre :math:`p` (physical, mm) takes the ``source`` value at
    :math:`T(p)`, with :math:`T` = ``transform`` (ITK convention: it maps *target* points to
    *source* points, as a registration with the target as fixed image gives it) or the
    identity. Samples up to half a voxel beyond the last source voxel centre take the
    border value (ITK); further out they get ``default_value``.

    Args:
        array: (z, y, x) values on ``source`` (bool becomes uint8; other dtypes are kept, the
            interpolation runs in double precision).
        source: ``array``'s grid (a :class:`Grid` or a :class:`mkunet.volume.Volume`; for a
            crop, a :class:`Grid` whose origin is the crop's first voxel).
        target: the output grid.
        transform: a ``SimpleITK.Transform`` (target -> source points), or None (identity).
        interpolator: ``"linear"`` (default), ``"nearest"``, ``"bspline"`` or ``"lanczos"``.
        default_value: the value where ``T(p)`` falls outside ``source`` (may be NaN).
        dtype: output dtype, one of :data:`OUTPUT_DTYPES` (``"float32"`` default,
            ``"uint8"`` for labels with ``"nearest"``).

    Returns:
        array of ``target.shape`` (z, y, x) and ``dtype``.

    Raises:
        ValueError: ``array``'s shape is not ``source.shape``, or an unknown interpolator or dtype.
    """
    import SimpleITK as sitk

    data = np.asarray(array)
    if data.shape != tuple(source.shape):
        raise ValueError(
            f"resample_array: array shape {data.shape} differs from the source grid {tuple(source.shape)}."
        )
    if dtype not in OUTPUT_DTYPES:
        raise ValueError(f"`dtype` must be one of {sorted(OUTPUT_DTYPES)}, got {dtype!r}.")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data))
    image.SetSpacing(tuple(float(s) for s in reversed(source.spacing)))
    image.SetOrigin(tuple(float(v) for v in source.origin))
    image.SetDirection(tuple(float(v) for v in np.asarray(source.direction).ravel()))
    nz, ny, nx = (int(n) for n in target.shape)
    out = sitk.Resample(
        image,
        [nx, ny, nz],
        sitk.Transform() if transform is None else transform,
        _interpolator(interpolator),
        tuple(float(v) for v in target.origin),
        tuple(float(s) for s in reversed(target.spacing)),
        tuple(float(v) for v in np.asarray(target.direction).ravel()),
        float(default_value),
        getattr(sitk, OUTPUT_DTYPES[dtype]),
    )
    return sitk.GetArrayFromImage(out)


def resample(
    volume: Volume,
    spacing_zyx: Sequence[float],
    interpolator: Interpolator = "linear",
    default_value: float | None = None,
) -> Volume:
    """Resample ``volume`` to a new voxel spacing over the same field of view.

    The output keeps origin (centre of voxel [0, 0, 0]) and direction; its size along
    each axis is :math:`\\lceil n \\cdot s_{old} / s_{new} \\rceil` (the extent
    :math:`n s_{old}` covered by voxels of the new size). Samples that fall up to half an
    input voxel beyond the last input voxel centre take the border value (ITK);
    further out they get ``default_value``.

    Args:
        volume: the input.
        spacing_zyx: new spacing (z, y, x) in mm.
        interpolator: ``"linear"`` (default), ``"nearest"``, ``"bspline"`` or ``"lanczos"``.
        default_value: value outside the input; ``None`` = the input's minimum (air for CT).

    Returns:
        A float32 Volume with the same identity fields.
    """
    spacing = _spacing(spacing_zyx)
    size_zyx = tuple(
        max(1, math.ceil(n * s_old / s_new - 1e-6)) for n, s_old, s_new in zip(volume.shape, volume.spacing, spacing)
    )
    grid = Grid(size_zyx, spacing, volume.origin, volume.direction)  # type: ignore[arg-type]
    if default_value is None:
        default_value = float(volume.array.min()) if volume.array.size else 0.0
    out = resample_array(volume.array, volume, grid, interpolator=interpolator, default_value=default_value)
    result = Volume(array=out, spacing=grid.spacing, origin=grid.origin, direction=grid.direction)
    return _with_identity(volume, result)


def _with_identity(identity: Volume, geometry: Volume) -> Volume:
    return Volume(
        array=geometry.array,
        spacing=geometry.spacing,
        origin=geometry.origin,
        direction=geometry.direction,
        patient_id=identity.patient_id,
        study_uid=identity.study_uid,
        series_uid=identity.series_uid,
        frame_of_reference_uid=identity.frame_of_reference_uid,
        source=identity.source if geometry.shape == identity.shape else (),
        meta=dict(identity.meta),
    )


def resample_to(
    image: Volume | np.ndarray,
    target: Volume,
    *,
    source: Volume | None = None,
    interpolator: Interpolator = "linear",
    default_value: float | None = None,
) -> Volume:
    """Resample an image onto ``target``'s grid (shape, spacing, origin, direction).

    Args:
        image: a Volume, or a (z, y, x) array (e.g. a probability map) living on
            ``source``'s grid.
        target: the grid to resample onto (its array is not used).
        source: the grid of ``image`` when it is an array (required then; ignored for a Volume).
        interpolator: ``"linear"``, ``"nearest"``, ``"bspline"`` or ``"lanczos"``.
        default_value: value outside the input; ``None`` = the input's minimum.

    Returns:
        float32 Volume on ``target``'s grid with ``target``'s identity fields.
    """
    if isinstance(image, Volume):
        source_volume = image
        data = image.array
    else:
        if source is None:
            raise ValueError("resample_to: `image` is an array, so give `source=` (the Volume whose grid it lives on).")
        data = np.asarray(image)
        if data.shape != source.shape:
            raise ValueError(f"resample_to: array shape {data.shape} differs from the source grid {source.shape}.")
        source_volume = source
    if data.dtype == bool:
        data = data.astype(np.float32)
    if default_value is None:
        default_value = float(data.min()) if data.size else 0.0
    out = resample_array(
        data.astype(np.float32, copy=False),
        source_volume,
        target,
        interpolator=interpolator,
        default_value=default_value,
    )
    return target.with_array(out)


def resample_mask(
    mask: np.ndarray,
    source: Volume,
    target: Volume,
    method: Literal["nearest", "linear"] = "nearest",
) -> np.ndarray:
    """Resample a bool (z, y, x) mask from ``source``'s grid onto ``target``'s grid.

    Args:
        mask: bool (z, y, x) on ``source``'s grid.
        source: grid of the mask.
        target: grid to resample onto.
        method: ``"nearest"`` (default: label of the nearest source voxel) or
            ``"linear"`` (linear interpolation of the 0/1 mask, then >= 0.5: smoother
            outlines when going to a coarser or finer grid).

    Returns:
        bool array of shape ``target.shape``; outside the source grid: False.
    """
    mask = np.asarray(mask)
    if mask.shape != source.shape:
        raise ValueError(f"resample_mask: mask shape {mask.shape} differs from the source grid {source.shape}.")
    if method not in ("nearest", "linear"):
        raise ValueError(f"resample_mask: `method` must be 'nearest' or 'linear', got {method!r}.")
    out = resample_to(mask.astype(np.float32), target, source=source, interpolator=method, default_value=0.0)
    return out.array >= 0.5
