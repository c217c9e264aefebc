"""Prompts of :func:`mkunet.segmentation.infer.segment`: where to look for the tumour.

* :class:`Seed` (a click), :class:`Box` and :class:`PreviousMask` (the previous timepoint's mask),
  together :data:`Roi`;
* :func:`roi_crop_box`: the voxel box a prompt asks the network to run on; :func:`body_box`: the
  patient's in-plane bounding box (whole-volume runs skip the air around the body);
  :func:`crop_volume`: a box of a volume as a volume;
* :func:`seed_in_box` and :func:`seed_in_mask`: where the image lesion model starts from a box or a
  previous mask (the deepest soft-tissue voxel).

Axis conventions: arrays (z, y, x); spacings (z, y, x) in mm; physical points (x, y, z) in mm
(DICOM LPS), see :mod:`mkunet.volume`. Voxel boxes are ((z0, z1), (y0, y1), (x0, x1)), half-open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mkunet.constants import BODY_HU, BONE_HU, LUNG_HU
from mkunet.segmentation.lesion import SeedError, check_seed
from mkunet.volume import Volume, same_grid

__all__ = [
    "Box",
    "Seed",
    "PreviousMask",
    "Roi",
    "BoxIdx",
    "NETWORK_SEED_CUBE_MM",
    "roi_crop_box",
    "body_box",
    "crop_volume",
    "describe_voxel_box",
    "seed_in_box",
    "seed_in_mask",
]

NETWORK_SEED_CUBE_MM = 100.0
"""First cube edge (mm) the network runs around a seed; it grows while the tumour touches a face."""


@dataclass(frozen=True)
class Box:
    """A box region of interest: ranges along (z, y, x).

    Args:
        z: (start, stop) along the slice axis.
        y: (start, stop) along the row axis.
        x: (start, stop) along the column axis.
        units: ``"voxel"``: array indices, half-open ``[start, stop)``;
            ``"mm"``: physical coordinates (patient LPS) in mm of the box's
            corners, i.e. ``z`` is the range of the physical z coordinate, etc.
            (the crop is the index-space bounding box of the 8 corners).
    """

    z: tuple[float, float]
    y: tuple[float, float]
    x: tuple[float, float]
    units: Literal["voxel", "mm"] = "voxel"

    def describe(self) -> str:
        """``"box x=(x0, x1) y=(y0, y1) z=(z0, z1) (units)"``: x y z order, as points are given."""
        return f"box x={tuple(self.x)} y={tuple(self.y)} z={tuple(self.z)} ({self.units})"


@dataclass(frozen=True)
class Seed:
    """A point inside the lesion (a click); no size is needed.

    Args:
        point: the point, ordered **(x, y, z)**: physical patient coordinates (LPS)
            in mm when ``units="mm"``, or voxel indices (column, row, slice) when
            ``units="voxel"`` (the order viewers such as ITK-SNAP display).
        units: ``"mm"`` or ``"voxel"``.
        size_mm: only for ``method="network"``: edge of the first cube run around the
            seed (mm; None = :data:`NETWORK_SEED_CUBE_MM`). The cube grows by 1.6x
            whenever the kept tumour touches one of its faces, so a 10 cm mass is not
            cut. The image-driven model sizes its own crop from the lesion, so
            :func:`mkunet.segmentation.infer.segment` refuses a size with ``method="auto"``.
    """

    point: tuple[float, float, float]
    units: Literal["mm", "voxel"] = "mm"
    size_mm: float | None = None

    def index_zyx(self, volume: Volume) -> np.ndarray:
        """The seed as continuous array indices (z, y, x) on ``volume``."""
        p = np.asarray(self.point, dtype=np.float64)
        if self.units == "mm":
            return volume.physical_to_index(p)
        return p[::-1].copy()

    def describe(self) -> str:
        size = "" if self.size_mm is None else f", cube {self.size_mm:g} mm"
        return f"seed {tuple(round(float(v), 2) for v in self.point)} ({self.units}, x y z){size}"


@dataclass(frozen=True, eq=False)
class PreviousMask:
    """The previous timepoint's tumour mask as region of interest.

    The mask is resampled (nearest neighbour) onto the current grid; the crop is
    its bounding box grown by ``margin_mm`` on every side (the box of the mask
    dilated by the margin), and the kept component is the one overlapping it most.

    Args:
        mask: bool (z, y, x) on ``reference``'s grid, or a :class:`Volume` label map
            (non-zero = tumour; then ``reference`` may be omitted).
        reference: the volume the mask was drawn on (its geometry is what matters).
        margin_mm: growth margin (mm), default 15.
    """

    mask: Any
    reference: Volume | None = None
    margin_mm: float = 15.0

    def on_grid(self, volume: Volume) -> np.ndarray:
        """The previous mask as bool (z, y, x) on ``volume``'s grid."""
        if isinstance(self.mask, Volume):
            ref, arr = self.mask, self.mask.array != 0
        else:
            if self.reference is None:
                raise ValueError(
                    "PreviousMask: an array mask needs `reference` (the Volume it was drawn on) "
                    "to know its geometry; pass reference=<previous Volume> or a Volume label map."
                )
            ref, arr = self.reference, np.asarray(self.mask) != 0
            if arr.shape != ref.shape:
                raise ValueError(
                    f"PreviousMask: mask shape {arr.shape} differs from its reference volume's {ref.shape}."
                )
        if same_grid(ref, volume):
            return arr
        from mkunet.preprocess.resample import resample_mask

        return resample_mask(arr, ref, volume, method="nearest")  # outside the previous scan: False

    def describe(self) -> str:
        return f"previous mask + {self.margin_mm:g} mm"


Roi = Box | Seed | PreviousMask


# ----------------------------------------------------------------------------- ROI geometry

BoxIdx = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def roi_crop_box(volume: Volume, roi: Roi | None) -> tuple[BoxIdx, np.ndarray | None]:
    """The crop (voxel index box, half-open, (z, y, x)) a ROI asks for, clipped to the volume.

    Returns:
        (box, previous mask on this grid or None).

    Raises:
        ValueError: the ROI lies outside the volume or is malformed.
    """
    shape = np.asarray(volume.shape)
    prev = None
    if roi is None:
        lo, hi = np.zeros(3, int), shape.copy()
    elif isinstance(roi, Box):
        ranges = np.asarray([roi.z, roi.y, roi.x], dtype=np.float64)
        if ranges.shape != (3, 2) or not np.all(np.isfinite(ranges)):
            raise ValueError(f"Box ranges must be three (start, stop) pairs, got {roi!r}.")
        if roi.units == "voxel":
            lo, hi = np.floor(ranges[:, 0]).astype(int), np.ceil(ranges[:, 1]).astype(int)
        elif roi.units == "mm":
            corners_xyz = np.array(
                [[x, y, z] for z in ranges[0] for y in ranges[1] for x in ranges[2]], dtype=np.float64
            )
            idx = volume.physical_to_index(corners_xyz)
            lo, hi = np.floor(idx.min(0)).astype(int), np.floor(idx.max(0)).astype(int) + 1
        else:
            raise ValueError(f"Box units must be 'voxel' or 'mm', got {roi.units!r}.")
        if np.any(hi <= lo):
            raise ValueError(f"Empty box {roi.describe()}: each stop must exceed its start.")
    elif isinstance(roi, Seed):
        if roi.units not in ("mm", "voxel"):
            raise ValueError(f"Seed units must be 'mm' or 'voxel', got {roi.units!r}.")
        if len(roi.point) != 3 or not np.all(np.isfinite(roi.point)):
            raise ValueError(f"Seed point must be 3 finite numbers (x, y, z), got {roi.point!r}.")
        size = NETWORK_SEED_CUBE_MM if roi.size_mm is None else roi.size_mm
        if not size > 0:
            raise ValueError(f"Seed size_mm must be > 0 (or None), got {roi.size_mm!r}.")
        centre = roi.index_zyx(volume)
        check_seed(volume, centre, roi.describe())
        half = 0.5 * size / np.asarray(volume.spacing)
        lo = np.floor(centre - half).astype(int)
        hi = np.ceil(centre + half).astype(int) + 1
    elif isinstance(roi, PreviousMask):
        prev = roi.on_grid(volume)
        if not prev.any():
            lo, hi = np.zeros(3, int), shape.copy()
        else:
            nz = [np.flatnonzero(prev.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
            margin = np.ceil(roi.margin_mm / np.asarray(volume.spacing)).astype(int)
            lo = np.array([n[0] for n in nz]) - margin
            hi = np.array([n[-1] + 1 for n in nz]) + margin
    else:
        raise ValueError(f"`roi` must be None, Box, Seed or PreviousMask, got {type(roi).__name__}: {roi!r}.")
    lo = np.clip(lo, 0, shape)
    hi = np.clip(hi, 0, shape)
    if np.any(hi <= lo):
        raise ValueError(
            f"The region of interest ({roi.describe() if roi is not None else ''}) does not overlap the volume "
            f"(size x, y, z = {tuple(int(n) for n in shape[::-1])} voxels)."
        )
    return tuple((int(a), int(b)) for a, b in zip(lo, hi)), prev  # type: ignore[return-value]


def body_box(
    volume: Volume, threshold_hu: float = BODY_HU, margin_mm: float = 10.0, min_fraction: float = 0.1
) -> BoxIdx:
    """The patient's in-plane bounding box (all slices), to skip the air around the body.

    The body is the union of the connected components (8-connectivity) of the axial
    projection of ``array > threshold_hu`` (default :data:`mkunet.constants.BODY_HU`) whose area
    is at least ``min_fraction`` of the largest one (small debris and thin lines are dropped; a large couch may stay);
    its (y, x) bounding box grows by ``margin_mm``. Without any voxel above the
    threshold the whole volume is returned.

    Returns:
        ((0, nz), (y0, y1), (x0, x1)) voxel indices, half-open.
    """
    from scipy import ndimage

    nz, ny, nx = volume.shape
    projection = (volume.array > threshold_hu).any(axis=0)
    labels, n = ndimage.label(projection, structure=np.ones((3, 3), bool))
    if n == 0:
        return ((0, nz), (0, ny), (0, nx))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    big = sizes >= min_fraction * sizes.max()
    big[0] = False
    ys, xs = np.nonzero(big[labels])
    my = int(math.ceil(margin_mm / volume.spacing[1]))
    mx = int(math.ceil(margin_mm / volume.spacing[2]))
    return (
        (0, nz),
        (max(0, int(ys.min()) - my), min(ny, int(ys.max()) + 1 + my)),
        (max(0, int(xs.min()) - mx), min(nx, int(xs.max()) + 1 + mx)),
    )


def describe_voxel_box(box: BoxIdx) -> str:
    """A voxel box ((z0, z1), (y0, y1), (x0, x1)) for a message, in x y z order like points:
    ``"x=[x0, x1) y=[y0, y1) z=[z0, z1) voxels"``."""
    (z0, z1), (y0, y1), (x0, x1) = box
    return f"x=[{x0}, {x1}) y=[{y0}, {y1}) z=[{z0}, {z1}) voxels"


def crop_volume(volume: Volume, box: BoxIdx) -> Volume:
    """The voxels of ``box`` (half-open (z, y, x) indices) as a Volume placed where they were (``volume``
    itself for the whole box)."""
    (z0, z1), (y0, y1), (x0, x1) = box
    if box == tuple((0, n) for n in volume.shape):
        return volume
    origin = volume.index_to_physical((z0, y0, x0))
    return Volume(
        np.ascontiguousarray(volume.array[z0:z1, y0:y1, x0:x1]),
        spacing=volume.spacing,
        origin=tuple(origin),
        direction=volume.direction,
        patient_id=volume.patient_id,
        study_uid=volume.study_uid,
        series_uid=volume.series_uid,
        frame_of_reference_uid=volume.frame_of_reference_uid,
    )


def seed_in_box(volume: Volume, box: BoxIdx, soft_hu: float = LUNG_HU, bone_hu: float = BONE_HU) -> np.ndarray:
    """A seed for "the lesion is inside this box": the deepest soft-tissue voxel (``soft_hu`` to
    ``bone_hu``, defaults :data:`mkunet.constants.LUNG_HU` and :data:`mkunet.constants.BONE_HU`) of the
    box's central part (inner 60 % of each side), depth measured inside the box so that tissue
    entering through a face (chest wall, mediastinum) is shallow. Returns (z, y, x) indices."""
    from scipy import ndimage

    sl = tuple(slice(a, b) for a, b in box)
    sub = volume.array[sl]
    dense = (sub >= soft_hu) & (sub <= bone_hu)
    padded = np.pad(dense, 1, constant_values=False)
    depth = ndimage.distance_transform_edt(padded, sampling=volume.spacing)[1:-1, 1:-1, 1:-1]
    central = np.zeros_like(dense)
    inner = tuple(
        slice(int(np.floor(0.2 * n)), max(int(np.floor(0.2 * n)) + 1, int(np.ceil(0.8 * n)))) for n in sub.shape
    )
    central[inner] = True
    score = np.where(central, depth, 0.0)
    if not score.any():
        raise SeedError(
            f"No soft tissue (>= {soft_hu:g} HU) in the central part of the box {describe_voxel_box(box)}: the box "
            "should surround the lesion; enlarge or move it."
        )
    k = np.asarray(np.unravel_index(int(np.argmax(score)), sub.shape))
    return (k + np.array([a for a, _ in box])).astype(np.float64)


def seed_in_mask(volume: Volume, mask: np.ndarray, soft_hu: float = LUNG_HU) -> np.ndarray | None:
    """The deepest voxel of ``mask`` that is still soft tissue (>= ``soft_hu``, default
    :data:`mkunet.constants.LUNG_HU`) on ``volume``; None when none is."""
    from scipy import ndimage

    sl = ndimage.find_objects(mask.astype(np.uint8))[0] if mask.any() else None
    if sl is None:
        return None
    region = mask[sl] & (volume.array[sl] >= soft_hu)
    if not region.any():
        return None
    depth = ndimage.distance_transform_edt(region, sampling=volume.spacing)
    k = np.asarray(np.unravel_index(int(np.argmax(depth)), region.shape))
    return (k + np.array([s.start for s in sl])).astype(np.float64)
