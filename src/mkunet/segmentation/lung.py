"""Lung fields from HU alone: the anatomical prior that a lung tumour lies in or on a lung.

A lung tumour is surrounded, at least in part, by aerated lung: inside the parenchyma,
on the pleura or on the mediastinal surface. The whole-volume network still fires on
soft tissue elsewhere (heart, chest wall, liver); :func:`lung_region` gives the region a
tumour can occupy, and :func:`mkunet.segmentation.infer.keep_tumour_component` uses it to choose among
the predicted components.

Algorithm of :func:`lung_mask` (on a grid of about ``grid_mm`` mm, then nearest-neighbour
back to the input grid; arrays (z, y, x), spacings (z, y, x) in mm):

1. air = ``HU < lung_hu`` (default :data:`mkunet.constants.LUNG_HU`, -400 HU: aerated lung
   is -950..-600 HU, fat -120..-50);
2. an air component (6-connectivity) that touches the in-plane (y, x) border of the
   volume and whose median is below ``room_air_hu`` (:data:`mkunet.constants.ROOM_AIR_HU`,
   -950 HU) is the room around the patient
   and is removed. Room air reads -1000 HU; aerated lung -900..-750 HU, so a lung cut by
   a field of view cropped through the chest (the IBSI phantom) is kept. The z faces do
   not count: a chest scan cuts the lungs there;
3. the remaining components of at least ``min_cm3`` cm^3 are the lungs (the trachea and
   main bronchi join them; small bowel gas is dropped).

:func:`lung_region` closes that mask with a ball of ``closing_mm`` and fills holes in each
axial slice, so that a solid tumour inside the lung (a hole in the air mask) and one on
the pleura or the mediastinum (a dent in it) both lie inside the region.

This module is the package's one implementation of "the lungs from HU"; the variants the
callers need, and why:

* :func:`aerated_lung`: the voxel rule (``HU < lung_hu``, optionally ``> room_air_hu``) on which
  every other mask here is built. :mod:`mkunet.segmentation.lesion` uses it alone, on a
  smoothed crop around a seed: a few centimetres of lung need no connectivity analysis, and
  the room-air floor stands in for the room-air rule of :func:`lung_mask`.
* :func:`lung_mask`: aerated lung by connectivity (the rule above, room air removed). Used
  where the scan's shell of air is what matters: the lungs around a candidate
  (:func:`mkunet.segmentation.candidates.detect_lesions`), or the start of the others.
* :func:`lung_region`: the lungs closed by a ball; where a tumour can be (the whole-volume
  prior, the detector, the local registration stage, hard-negative sampling in training).
  ``fill="slice"`` or ``"volume"``: see there.
* :func:`filled_lungs`: the lungs with the holes of each axial slice filled (vessels and
  nodules inside the lung are in, the hilum and mediastinum are not), with a by-value
  fallback for a field of view that cuts the lungs to the room air. Where lesions go in
  :mod:`mkunet.synth.insert`, and the ``lung`` location of
  :func:`mkunet.segmentation.candidates.list_candidates`.
* :func:`fill_slices`: the holes of each axial slice filled, the in-plane idiom the masks
  above share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mkunet.constants import LUNG_HU, ROOM_AIR_HU

__all__ = ["aerated_lung", "fill_slices", "filled_lungs", "lung_mask", "lung_region"]

SMOOTHED_ROOM_AIR_HU = ROOM_AIR_HU - 25.0
"""Room-air floor of the by-value fallback of :func:`filled_lungs`, on a 2 mm-smoothed image (HU).

Below :data:`mkunet.constants.ROOM_AIR_HU`: the fallback has no connectivity to tell lung from
room air, so it cuts only what still reads as room air (about -1000 HU) after the smoothing and
keeps the darkest parenchyma (down to about -950 HU on deep inspiration)."""


def aerated_lung(array: np.ndarray, *, lung_hu: float = LUNG_HU, room_air_hu: float | None = None) -> np.ndarray:
    """The voxel rule of aerated lung: ``HU < lung_hu`` and, with ``room_air_hu``, ``HU > room_air_hu``.

    No connectivity: the room around the patient is in unless ``room_air_hu`` cuts it off by value,
    which works on a smoothed image (room air -1000 HU with noise reads below -950 HU there).

    Args:
        array: CT in HU, any shape (usually (z, y, x)).
        lung_hu: voxels below this HU are air or aerated lung (default
            :data:`mkunet.constants.LUNG_HU`).
        room_air_hu: voxels at or below this HU are room air, not lung (None: no floor).

    Returns:
        bool array of ``array``'s shape.
    """
    array = np.asarray(array)
    air = array < lung_hu
    if room_air_hu is not None:
        air &= array > room_air_hu
    return air


def fill_slices(mask: np.ndarray) -> np.ndarray:
    """``mask`` (bool (z, y, x)) with the holes of each axial slice filled (4-connected in-plane).

    A slice where the lungs ring the heart takes the heart in; a hole open to the slice's
    border stays out.
    """
    from scipy import ndimage

    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_fill_holes(mask, structure=in_plane)


def _check(array: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"Expected a 3-D (z, y, x) HU array, got shape {array.shape}.")
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    if spacing_arr.shape != (3,) or np.any(spacing_arr <= 0):
        raise ValueError(f"`spacing` must be three positive (z, y, x) sizes in mm, got {tuple(spacing)!r}.")
    return array, spacing_arr


def _coarse(array: np.ndarray, spacing: np.ndarray, grid_mm: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    step = tuple(max(1, int(round(grid_mm / s))) for s in spacing)
    return array[:: step[0], :: step[1], :: step[2]], step  # type: ignore[return-value]


def _back(coarse: np.ndarray, step: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a strided mask onto the full grid."""
    idx = [np.minimum(np.arange(n) // s, c - 1) for n, s, c in zip(shape, step, coarse.shape)]
    return coarse[np.ix_(*idx)]


def lung_mask(
    array: np.ndarray,
    spacing: Sequence[float],
    *,
    lung_hu: float = LUNG_HU,
    min_cm3: float = 20.0,
    grid_mm: float = 3.0,
    room_air_hu: float = ROOM_AIR_HU,
) -> np.ndarray:
    """Aerated lung (with trachea and bronchi) as a bool (z, y, x) mask on the input grid.

    Args:
        array: CT in HU, (z, y, x).
        spacing: (z, y, x) voxel size in mm.
        lung_hu: voxels below this HU are air or aerated lung.
        min_cm3: smallest component kept (cm^3), drops bowel gas and noise.
        grid_mm: the work is done on the input subsampled to about this step (mm).
        room_air_hu: air touching the in-plane border with a median below this is room air.

    Returns:
        bool (z, y, x); all False when the volume holds no internal air (e.g. a crop
        inside a tumour), which callers treat as "no lung information".
    """
    from scipy import ndimage

    array, spacing_arr = _check(array, spacing)
    small, step = _coarse(array, spacing_arr, grid_mm)
    air = aerated_lung(small, lung_hu=lung_hu)
    labels, n = ndimage.label(air)
    if n == 0:
        return np.zeros(array.shape, bool)
    border = np.unique(
        np.concatenate(
            [labels[:, 0, :].ravel(), labels[:, -1, :].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]
        )
    )
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    voxel_cm3 = float(np.prod(spacing_arr * np.asarray(step))) / 1000.0
    keep = sizes * voxel_cm3 >= min_cm3
    keep[0] = False
    border = border[border > 0]
    if border.size:
        medians = ndimage.median(small, labels, index=border)
        keep[border[np.asarray(medians) < room_air_hu]] = False
    return _back(keep[labels], step, array.shape)


def lung_region(
    array: np.ndarray,
    spacing: Sequence[float],
    *,
    closing_mm: float = 30.0,
    lung_hu: float = LUNG_HU,
    min_cm3: float = 20.0,
    grid_mm: float = 3.0,
    room_air_hu: float = ROOM_AIR_HU,
    fill: str = "slice",
) -> np.ndarray:
    """Where a lung tumour can be: the lungs closed by a ``closing_mm`` ball, holes filled per slice.

    Args:
        array: CT in HU, (z, y, x).
        spacing: (z, y, x) voxel size in mm.
        closing_mm: radius of the closing ball (mm, default 30: it takes in 88 % of
            pyradiomics lung2's tumour and 54 % of the IBSI phantom's 359 cm^3 GTV, against
            40 % and 27 % at 15 mm); dents in the lung surface shallower
            than about this (a pleural or mediastinal tumour) are filled.
        lung_hu, min_cm3, grid_mm, room_air_hu: see :func:`lung_mask`.
        fill: ``"slice"`` (default) fills the holes of each axial slice, so a slice where the
            closed lungs ring the heart takes the heart in; ``"volume"`` fills only 3-D holes
            (a tumour inside the lung), which keeps the heart and mediastinum out, since they
            open into the neck and abdomen (:func:`mkunet.segmentation.candidates.detect_lesions` uses it).

    Returns:
        bool (z, y, x) on the input grid; all False when no lung is found.
    """
    from scipy import ndimage

    if fill not in ("slice", "volume"):
        raise ValueError(f"`fill` must be 'slice' or 'volume', got {fill!r}.")
    array, spacing_arr = _check(array, spacing)
    small, step = _coarse(array, spacing_arr, grid_mm)
    coarse_spacing = spacing_arr * np.asarray(step)
    lungs = lung_mask(small, coarse_spacing, lung_hu=lung_hu, min_cm3=min_cm3, grid_mm=0.0, room_air_hu=room_air_hu)
    if not lungs.any():
        return np.zeros(array.shape, bool)
    # closing by a ball of closing_mm, exact in mm on an anisotropic grid, via two
    # Euclidean distance transforms; the mask is first extended by edge replication, so
    # lungs cut by the scan's z range stay open there and others close normally
    pad = [int(np.ceil(closing_mm / s)) + 1 for s in coarse_spacing]
    padded = np.pad(lungs, [(p, p) for p in pad], mode="edge")
    grown = ndimage.distance_transform_edt(~padded, sampling=coarse_spacing) <= closing_mm
    if grown.all():
        closed = grown
    else:
        closed = ndimage.distance_transform_edt(grown, sampling=coarse_spacing) > closing_mm
    closed = closed[tuple(slice(p, -p) for p in pad)] | lungs
    if fill == "volume":
        filled = ndimage.binary_fill_holes(closed)
    else:
        filled = fill_slices(closed)
    return _back(filled, step, array.shape)


def filled_lungs(array: np.ndarray, spacing: Sequence[float], min_cm3: float = 50.0) -> np.ndarray:
    """Aerated lung, holes of each axial slice filled (vessels and nodules inside the lung are in).

    First :func:`lung_mask` (air inside the body, by connectivity). When that finds less than
    500 cm^3 (a small field of view cuts the lungs, which then join the room air through the
    image border, as in the pyradiomics crops), the lungs are found by value instead:
    :func:`aerated_lung` between :data:`SMOOTHED_ROOM_AIR_HU` (-975) and ``LUNG_HU`` (-400) HU after a
    2 mm Gaussian smoothing
    (room air, about -1000 HU, is excluded by its value), opened by 2 voxels (the
    partial-volume shell at the skin), components under ``min_cm3`` dropped. The holes of each
    axial slice are then filled (:func:`fill_slices`), so that the hilum and mediastinum,
    outside the lung's outline, stay out.

    Args:
        array: CT in HU (z, y, x).
        spacing: (z, y, x) mm.
        min_cm3: smallest component kept by the by-value fallback (cm^3).

    Returns:
        bool (z, y, x); all False when nothing qualifies.
    """
    from scipy import ndimage

    x = np.asarray(array, np.float32)
    sp = np.asarray(spacing, float)
    by_connectivity = lung_mask(x, tuple(float(v) for v in sp))
    if by_connectivity.sum() * float(np.prod(sp)) / 1000.0 >= 500.0:
        return fill_slices(by_connectivity)
    smooth = ndimage.gaussian_filter(x, [2.0 / s for s in sp])
    cand = aerated_lung(smooth, room_air_hu=SMOOTHED_ROOM_AIR_HU)
    cand = ndimage.binary_opening(cand, structure=ndimage.generate_binary_structure(3, 1), iterations=2)
    labels, n = ndimage.label(cand)
    if n == 0:
        return np.zeros(x.shape, bool)
    sizes = np.bincount(labels.ravel(), minlength=n + 1) * float(np.prod(sp)) / 1000.0
    keep = sizes >= min_cm3
    keep[0] = False
    return fill_slices(keep[labels])
