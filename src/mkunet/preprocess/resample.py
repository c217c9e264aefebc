"""Resampling volumes and masks between grids (SimpleITK), keeping physical geometry.

Spacing tuples are (z, y, x) in mm; origins (x, y, z) in mm (see :mod:`mkunet.volume`).
Used by training (to the model's spacing) and inference (back onto the input grid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from mkunet.volume import Volume

__all__ = ["INTERPOLATORS", "resample", "resample_to", "resample_mask"]

#: interpolator names -> SimpleITK enum names
INTERPOLATORS = {
    "nearest": "sitkNearestNeighbor",
    "linear": "sitkLinear",
    "bspline": "sitkBSpline",
    "lanczos": "sitkLanczosWindowedSinc",
}

Interpolator = Literal["nearest", "linear", "bspline", "lanczos"]


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


def _run(image, reference, interpolator: str, default_value: float):
    import SimpleITK as sitk

    return sitk.Resample(
        image, reference, sitk.Transform(), _interpolator(interpolator), float(default_value), sitk.sitkFloat32
    )


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
    import SimpleITK as sitk

    size_zyx = [
        max(1, math.ceil(n * s_old / s_new - 1e-6)) for n, s_old, s_new in zip(volume.shape, volume.spacing, spacing)
    ]
    reference = sitk.Image([int(s) for s in reversed(size_zyx)], sitk.sitkUInt8)
    reference.SetSpacing(tuple(reversed(spacing)))
    reference.SetOrigin(volume.origin)
    reference.SetDirection(tuple(volume.direction.ravel()))
    if default_value is None:
        default_value = float(volume.array.min()) if volume.array.size else 0.0
    out = _run(volume.to_sitk(), reference, interpolator, default_value)
    result = Volume.from_sitk(out)
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
    out = _run(
        source_volume.to_sitk(data.astype(np.float32, copy=False)),
        target.to_sitk(np.zeros(target.shape, np.uint8)),
        interpolator,
        default_value,
    )
    import SimpleITK as sitk

    return target.with_array(sitk.GetArrayFromImage(out).astype(np.float32, copy=False))


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
