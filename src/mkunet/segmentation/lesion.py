"""Image-driven one-click lesion model: a lung lesion from a seed point, no learning.

Given a point inside a lung lesion, :func:`segment_lesion` returns its mask on the
input grid. It needs no model and no size: the crop grows until the lesion fits.

Algorithm (all distances in mm; the work is done on a crop resampled to an isotropic grid of
``grid_mm``, chosen from the window's size; arrays (z, y, x)):

1. **Lesion and lung HU.** ``hu_lesion`` = median HU in a 4 mm ball around the seed
   (smaller for a nodule smaller than that: 0.7 x the seed's distance to aerated lung);
   when most of the 4 mm ball is ground glass (-760..-300 HU), the ground glass's median
   (a vessel through the nodule does not make it solid). ``hu_lung`` = median of the lung
   (< -400 HU, above room air) more than 10 mm from the seed, clipped to [-950, -760]. Both
   are measured once, on the first window. A seed in air or aerated lung (median of its
   3 x 3 x 3 voxels below -800 HU) or in bone (above 500 HU) is refused with an error
   naming the point in mm and as a voxel index, both (x, y, z).
2. **Iso-level.** ``t = hu_lung + iso_fraction * (min(hu_lesion, cap) - hu_lung)`` (default
   halfway: the 50 % partial-volume edge; ``cap = 40`` HU so that contrast or calcium does
   not lift the edge into the lesion). Foreground = ``t <= HU <= bone_hu``; a ground-glass
   lesion is thresholded on a 1 mm-smoothed image, closed and hole-filled.
3. **Local lung hull.** In each axial slice, the convex hull of the aerated lung inside the
   current window (below -400 HU and above room air on a smoothed image, and not within
   ``skin_band_mm`` of that room air: neither room air next to a cropped chest wall nor the
   skin's smoothed edge is lung), intersected with the hull of the slice's bone (inside the
   rib cage). A lesion on the chest wall or mediastinum dents the lung and the hull bridges
   the dent.
4. **Seed component**, **opening** by a ball of ``open_fraction x`` the lesion's own
   inscribed radius (the largest ball reached by climbing the distance map from the seed,
   not the component's: a leak into the mediastinum is thicker), core component kept and its
   surface restored within the radius. Vessels and thin bridges are cut.
5. **Star-shape constraint** from the lesion core: a ray longer than ``star_ratio`` x the
   median of its neighbours, or ``star_global_ratio`` x the median of the rays that end on
   lung, is cut there (leakage into the hilum, mediastinum or diaphragm).
6. **Part-solid lesions.** When ground glass surrounds a solid core (the in-plane shell
   1-4 mm outside it, below ``t``, has its 25th percentile >= lung + 150 HU), the ground
   glass connected to the core is joined at its own iso-level (halfway between lung and the
   shell's median), opened and star-constrained like the core.
7. **Growing window.** The first window is at least ``initial_crop_mm`` and 1.5 x twice the
   seed's distance to lung; while the object (before the star constraint) touches a face
   that is not the scan's border, the window becomes the object's box + ``hull_margin_mm``
   (at most ``max_crop_mm``; around a small nodule at most 12 x its inscribed radius: only
   vessels reach farther). A 10 cm mass is not cut.
8. **Re-seeding.** The whole model runs again from the lesion's core, so that the result
   does not depend on where in the lesion the user clicked.
9. The mask is brought back to the input grid by linear interpolation of the 0/1 mask
   (>= 0.5), intersected with the iso-level on the input voxels, holes filled.

Orientation: the slice hulls, the rib cage and the part-solid shell take array axis 0 as the
cranio-caudal axis, i.e. they assume the canonical orientation of
:mod:`mkunet.segmentation.orientation` (LPS: axis 0 axial slices inferior to superior, axis 1
anterior to posterior, axis 2 right to left), which the entry points :func:`mkunet.segmentation.infer.segment`
and :func:`mkunet.segmentation.infer.segment_timepoints` guarantee. A direct caller of
:func:`segment_lesion` with a coronal, sagittal, prone or feet-first array should reorient it
first (:func:`mkunet.segmentation.orientation.to_canonical`).

Partial volume: the volume follows the HU iso-level ``t`` (halfway between lesion and
lung at the default ``iso_fraction``). Readers outline a little outside it; a lower
``iso_fraction`` (e.g. 0.35) gives larger volumes. Keep it fixed within a study:
LVCR depends on ratios of volumes, which a consistent edge preserves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mkunet.constants import AIR_HU, BONE_HU, GROUND_GLASS, PARENCHYMA_HU, SOLID
from mkunet.segmentation.components import component_at
from mkunet.segmentation.lesion_params import LesionParams
from mkunet.segmentation.lung import aerated_lung
from mkunet.volume import Volume

__all__ = ["LesionParams", "LesionResult", "SeedError", "segment_lesion", "fibonacci_directions"]


class SeedError(ValueError):
    """The seed point cannot be inside a lesion (outside the image, in air or in bone)."""


@dataclass(eq=False)
class LesionResult:
    """The result of :func:`segment_lesion`.

    Attributes:
        mask: bool (z, y, x) on the input grid.
        threshold_hu: the edge iso-level t (HU).
        hu_lesion, hu_lung: the medians the iso-level came from (HU).
        kind: ``"solid"`` or ``"ground-glass"`` (from the seed's HU).
        crop_box: the final crop ((z0, z1), (y0, y1), (x0, x1)), input voxels, half-open.
        grid_mm: the isotropic work grid (mm).
        core_zyx: the lesion core (ray origin), input continuous indices (z, y, x).
        notes: what the user should know.
        timings: seconds per step.
    """

    mask: np.ndarray
    threshold_hu: float
    hu_lesion: float
    hu_lung: float
    kind: str
    crop_box: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    grid_mm: float
    core_zyx: np.ndarray
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- geometry helpers


def fibonacci_directions(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors on the sphere, (n, 3) ordered (z, y, x)."""
    k = np.arange(n, dtype=np.float64) + 0.5
    phi = np.arccos(1.0 - 2.0 * k / n)
    theta = math.pi * (1.0 + 5.0**0.5) * k
    return np.stack([np.cos(phi), np.sin(phi) * np.sin(theta), np.sin(phi) * np.cos(theta)], axis=1)


def _ball_offsets(radius_vox: float) -> np.ndarray:
    r = int(math.ceil(radius_vox))
    g = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1].reshape(3, -1).T
    return g[(g**2).sum(1) <= radius_vox**2 + 1e-9]


def _sub_volume(volume: Volume, box) -> Volume:
    (z0, z1), (y0, y1), (x0, x1) = box
    return Volume(
        np.ascontiguousarray(volume.array[z0:z1, y0:y1, x0:x1], dtype=np.float32),
        spacing=volume.spacing,
        origin=tuple(volume.index_to_physical((z0, y0, x0))),
        direction=volume.direction,
    )


def _slice_hulls(mask2d_stack: np.ndarray) -> np.ndarray:
    """Per axial slice, the filled convex hull of the True pixels (z, y, x)."""
    from skimage.morphology import convex_hull_image

    out = np.zeros_like(mask2d_stack)
    for z in range(mask2d_stack.shape[0]):
        if mask2d_stack[z].sum() >= 3:
            try:
                out[z] = convex_hull_image(mask2d_stack[z])
            except ValueError:  # degenerate (collinear) pixels
                out[z] = mask2d_stack[z]
    return out


def _edt(mask: np.ndarray, g: float) -> np.ndarray:
    """Distance (mm) from each True voxel to the nearest False one (0 outside), computed on the
    mask's bounding box only (exact: the box is padded by one background voxel)."""
    from scipy import ndimage

    out = np.zeros(mask.shape, np.float32)
    boxes = ndimage.find_objects(mask.astype(np.uint8))
    if not boxes:
        return out
    box = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(boxes[0], mask.shape))
    sub = np.pad(mask[box], 1, constant_values=False)
    out[box] = ndimage.distance_transform_edt(sub, sampling=(g, g, g))[1:-1, 1:-1, 1:-1]
    return out


def _within(mask: np.ndarray, g: float, reach_mm: float) -> np.ndarray:
    """Voxels within ``reach_mm`` (mm) of ``mask`` (a dilation by a ball), computed on the
    mask's bounding box grown by the reach only."""
    from scipy import ndimage

    boxes = ndimage.find_objects(mask.astype(np.uint8))
    out = np.zeros(mask.shape, bool)
    if not boxes:
        return out
    r = int(math.ceil(reach_mm / g)) + 1
    box = tuple(slice(max(0, b.start - r), min(n, b.stop + r)) for b, n in zip(boxes[0], mask.shape))
    out[box] = ndimage.distance_transform_edt(~mask[box], sampling=(g, g, g)) <= reach_mm
    return out


def _component_at(binary: np.ndarray, point: Sequence[int]) -> np.ndarray:
    """The 26-connected component of ``binary`` at ``point`` (voxel indices), else the nearest one
    (:func:`mkunet.segmentation.components.component_at`, isotropic grid: voxel distances)."""
    from scipy import ndimage

    labels, n = ndimage.label(binary, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return np.zeros_like(binary)
    return labels == component_at(labels, point)


# ----------------------------------------------------------------------------- the model


def _estimate_hu(iso: np.ndarray, seed: np.ndarray, g: float, p: LesionParams) -> tuple[float, float]:
    # the lesion's HU: a ball of lesion_radius_mm, smaller for a nodule smaller than that
    # (0.7 x the distance from the seed to the nearest aerated-lung voxel, at least one voxel;
    # ground glass, -760..-300 HU, is not aerated lung here)
    reach = int(math.ceil(p.lesion_radius_mm / g)) + 1
    lo = np.maximum(seed - reach, 0)
    hi = np.minimum(seed + reach + 1, iso.shape)
    near_lung = np.argwhere(iso[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] < p.aerated_hu) + lo
    radius = p.lesion_radius_mm
    if len(near_lung):
        d0 = float(np.sqrt((((near_lung - seed) * g) ** 2).sum(1)).min())
        radius = float(np.clip(0.7 * d0, g, p.lesion_radius_mm))
    off = _ball_offsets(radius / g)
    pts = np.clip(seed + off, 0, np.asarray(iso.shape) - 1)
    hu_lesion = float(np.median(iso[pts[:, 0], pts[:, 1], pts[:, 2]]))
    # ground glass: the full ball's non-aerated voxels are mostly ground glass (a vessel
    # running through the nodule, or the click on it, does not make it solid)
    full = np.clip(seed + _ball_offsets(p.lesion_radius_mm / g), 0, np.asarray(iso.shape) - 1)
    vals = iso[full[:, 0], full[:, 1], full[:, 2]]
    n_all = vals.size
    vals = vals[vals >= p.aerated_hu]
    # ...but only when the ball is mostly lesion: around a nodule smaller than the ball,
    # the blurred rim would pass for ground glass
    if vals.size >= 0.5 * n_all and float(np.median(vals)) < p.ground_glass_max_hu:
        hu_lesion = float(np.median(vals))
    zz, yy, xx = np.ogrid[: iso.shape[0], : iso.shape[1], : iso.shape[2]]
    d2 = ((zz - seed[0]) ** 2 + (yy - seed[1]) ** 2 + (xx - seed[2]) ** 2) * g * g
    far_lung = aerated_lung(iso, room_air_hu=p.room_air_hu) & (d2 > p.lung_min_dist_mm**2)
    hu_lung = float(np.median(iso[far_lung])) if far_lung.sum() > 50 else PARENCHYMA_HU
    return hu_lesion, float(np.clip(hu_lung, *p.lung_hu_range))


def _star_constraint(
    obj: np.ndarray, core: np.ndarray, g: float, p: LesionParams, iso: np.ndarray | None = None, t: float = 0.0
) -> np.ndarray:
    """Cut rays from ``core`` longer than ``star_ratio`` x the median of their neighbours."""
    from scipy.spatial import cKDTree

    dirs = fibonacci_directions(p.n_rays)
    rmax = float(np.linalg.norm(obj.shape)) + 1.0
    steps = np.arange(0.0, rmax, 0.5)
    # first exit along each ray (voxel units)
    pts = core[None, None, :] + dirs[:, None, :] * steps[None, :, None]
    idx = np.rint(pts).astype(int)
    inside_grid = np.all((idx >= 0) & (idx < np.asarray(obj.shape)), axis=2)
    idx_c = np.clip(idx, 0, np.asarray(obj.shape) - 1)
    on = obj[idx_c[..., 0], idx_c[..., 1], idx_c[..., 2]] & inside_grid
    off = ~on
    off[:, -1] = True
    first_off = np.argmax(off, axis=1)
    r = steps[first_off]
    tree = cKDTree(dirs)
    chord = 2.0 * math.sin(math.radians(p.star_angle_deg) / 2.0)
    neigh = tree.query_ball_point(dirs, chord)
    med = np.array([np.median(r[[j for j in nb if j != i]]) if len(nb) > 1 else r[i] for i, nb in enumerate(neigh)])
    allowed = np.minimum(r, p.star_ratio * med + 1.0)
    if p.star_global_ratio > 0:
        ref = r
        if iso is not None and p.star_free_rays:
            # free rays: the object ends on aerated lung (the lesion's own surface), not on soft tissue
            beyond = np.clip(
                np.rint(core[None, :] + dirs * (r + 2.0 / g)[:, None]).astype(int), 0, np.asarray(obj.shape) - 1
            )
            free = iso[beyond[:, 0], beyond[:, 1], beyond[:, 2]] < t
            if free.mean() >= 0.1:
                ref = r[free]
        allowed = np.minimum(allowed, p.star_global_ratio * float(np.quantile(ref, p.star_global_quantile)) + 1.0)
    # voxel -> nearest direction -> allowed radius
    coords = np.argwhere(obj)
    vec = coords - core[None, :]
    dist = np.linalg.norm(vec, axis=1)
    unit = vec / np.maximum(dist, 1e-9)[:, None]
    _, nearest = tree.query(unit)
    keep = dist <= allowed[nearest] + 0.5
    out = np.zeros_like(obj)
    out[tuple(coords[keep].T)] = True
    return out


def _deepest_near(depth: np.ndarray, point: np.ndarray, radius_mm: float, g: float) -> np.ndarray:
    """The voxel of largest ``depth`` within ``radius_mm`` of ``point`` (iso voxel indices)."""
    r = int(math.ceil(radius_mm / g))
    lo = np.maximum(point - r, 0)
    hi = np.minimum(point + r + 1, depth.shape)
    sub = depth[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    ball = ((zz - point[0]) ** 2 + (yy - point[1]) ** 2 + (xx - point[2]) ** 2) * g * g <= radius_mm**2
    k = int(np.argmax(np.where(ball, sub, -1.0)))
    return (np.asarray(np.unravel_index(k, sub.shape)) + lo).astype(np.float64)


def _inscribed_radius(depth: np.ndarray, seed: np.ndarray, g: float, climb_steps: int) -> float:
    """The lesion's inscribed radius (mm): the largest ball near the seed, reached by ``climb_steps``
    climbing steps on the distance map ``depth`` (mm), not the component's (a leak into the
    mediastinum is thicker); with no steps, the component's."""
    local = seed.astype(int)
    for _ in range(climb_steps):
        nxt = np.rint(_deepest_near(depth, local, float(depth[tuple(local)]) + 2.0, g)).astype(int)
        if depth[tuple(nxt)] <= depth[tuple(local)]:
            break
        local = nxt
    return float(depth[tuple(local)]) if climb_steps > 0 else float(depth.max())


def _part_solid_union(
    obj: np.ndarray,
    iso: np.ndarray,
    hull: np.ndarray,
    core: np.ndarray,
    t: float,
    hu_lung: float,
    g: float,
    p: LesionParams,
    notes: list[str],
) -> tuple[np.ndarray, float]:
    """Join the ground-glass part around a solid core (part-solid lesion), if there is one.

    Returns (object, the edge iso-level now in force: ``t``, or the ground glass's ``t_ggo``).

    The shell 1-4 mm outside the solid object (below its iso-level) says whether ground glass
    surrounds it: its 25th HU percentile above ``hu_lung + ground_glass_contrast_hu`` (ground glass
    around three quarters of the core; a solid tumour's own partial-volume edge, spicules
    or a patch of atelectasis do not reach that). Then the ground glass is the part of
    ``HU >= t_ggo`` (halfway between lung and the shell's HU) connected to the core, inside
    the lung hull, opened to cut vessels and star-constrained like the core.
    """
    from scipy import ndimage

    # in-plane distance (thick slices put lung above and below any core), on the core's box only
    boxes = ndimage.find_objects(obj.astype(np.uint8))
    if not boxes:  # nothing left after the star constraint
        return obj, t
    r = int(math.ceil(4.0 / g)) + 1
    box = (boxes[0][0],) + tuple(
        slice(max(0, b.start - r), min(n, b.stop + r)) for b, n in zip(boxes[0][1:], obj.shape[1:])
    )
    outside = np.full(obj.shape, np.inf, np.float32)
    outside[box] = ndimage.distance_transform_edt(~obj[box], sampling=(1e3, g, g))
    # below the solid iso-level only: chest wall or mediastinum touching the core is not ground glass
    shell = (outside > 1.0) & (outside <= 4.0) & hull & (iso < t)
    if shell.sum() < 10:
        return obj, t
    q25, hu_shell = (float(v) for v in np.percentile(iso[shell], [25, 50]))
    if q25 < hu_lung + p.ground_glass_contrast_hu:  # lung around most of the core: no ground-glass halo
        return obj, t
    t_ggo = hu_lung + p.ground_glass_iso_fraction * (hu_shell - hu_lung)
    cand = ((iso >= t_ggo) & (iso <= p.bone_hu) & hull) | obj
    cand = ndimage.binary_closing(cand, structure=ndimage.generate_binary_structure(3, 1))
    cand = ndimage.binary_fill_holes(cand)
    seed = np.rint(core).astype(int)
    union = _component_at(cand, seed)
    depth = _edt(union, g)
    r_open = float(np.clip(p.open_fraction * float(depth.max()), p.open_min_mm, p.open_max_mm))
    eroded = depth > r_open
    if eroded.any():
        union &= _within(_component_at(eroded, seed), g, r_open + 0.5 * g)
    union = _component_at(_star_constraint(union | obj, core, g, p, iso, t_ggo), seed)
    gain = np.count_nonzero(union & ~obj)
    if gain > p.ground_glass_min_gain * np.count_nonzero(obj):
        notes.append(f"part-solid: the ground glass around the solid core was joined (iso-level {t_ggo:.0f} HU)")
        return union | obj, t_ggo
    return obj, t


def _crop_lung(iso: np.ndarray, g: float, p: LesionParams) -> np.ndarray:
    """Aerated lung on an isotropic crop (``g`` mm): below :data:`~mkunet.constants.LUNG_HU` on the
    image, above room air on a 1.5 mm-smoothed image (room air, -1000 HU with noise, is below
    ``p.room_air_hu`` there, so a field of view's air next to the chest wall is not lung), and not
    within ``p.skin_band_mm`` of room air (on its way from the body to room air the smoothed image
    passes through lung HU, a 2-3 mm shell whose hull took the chest wall up to the ribs); opened once."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(iso, 1.5 / g)
    lung = aerated_lung(iso) & (smooth > p.room_air_hu)
    if p.skin_band_mm > 0:
        lung &= ~_within(smooth <= p.room_air_hu, g, p.skin_band_mm)
    return ndimage.binary_opening(lung, iterations=1)


def _model_on_crop(
    iso: np.ndarray,
    seed: np.ndarray,
    g: float,
    p: LesionParams,
    notes: list[str],
    window: np.ndarray | None = None,
    cage: np.ndarray | None = None,
    hu: tuple[float, float] | None = None,
    info: dict[str, float] | None = None,
):
    """The lesion on one isotropic crop; returns (mask, t, hu_lesion, hu_lung, kind, core)."""
    from scipy import ndimage

    if hu is None:
        hu_lesion, hu_lung = _estimate_hu(iso, seed, g, p)
    else:  # measured on the first window: the lesion's own surroundings, whatever the window grows to
        hu_lesion, hu_lung = hu
    kind = GROUND_GLASS if hu_lesion < p.ground_glass_max_hu else SOLID
    top = min(hu_lesion, p.lesion_cap_hu)
    t = hu_lung + p.iso_fraction * (top - hu_lung)
    fg = (iso >= t) & (iso <= p.bone_hu)
    if kind == GROUND_GLASS:
        # ground glass sits close to the lung's HU: threshold a smoothed image, so scanner noise
        # in the lung does not bridge the nodule to its surroundings
        fg = (ndimage.gaussian_filter(iso, p.ground_glass_smooth_mm / g) >= t) & (iso <= p.bone_hu)
        ball = ndimage.generate_binary_structure(3, 1)
        fg = ndimage.binary_closing(fg, structure=ball, iterations=max(1, int(round(1.0 / g))))
        fg = ndimage.binary_fill_holes(fg)
    # local lung hull: the lesion lies within the convex hull of the aerated lung, per slice
    lung = _crop_lung(iso, g, p)
    if window is not None:
        lung &= window
        fg &= window
    hull = _slice_hulls(lung) if p.use_hull else np.ones_like(lung)
    hull |= ndimage.binary_dilation(lung, iterations=1)
    if cage is not None:
        hull &= cage
    if p.use_hull and not hull[tuple(seed)]:
        if window is not None:
            return None, t, hu_lesion, hu_lung, kind, seed.astype(float), None
        notes.append("no aerated lung around the seed: the lung-hull constraint was not applied")
        hull = np.ones_like(hull)
    fg &= hull
    comp = _component_at(fg, seed)
    if not comp.any():
        return comp, t, hu_lesion, hu_lung, kind, seed.astype(float), comp
    # opening scaled by the inscribed radius, core component, surface restored
    depth = _edt(comp, g)
    r_in = _inscribed_radius(depth, seed, g, p.rin_climb_steps)
    if info is not None:
        info["r_in"] = r_in
    r_open = float(np.clip(p.open_fraction * r_in, p.open_min_mm, p.open_max_mm))
    eroded = depth > r_open
    if eroded.any():
        core_comp = _component_at(eroded, seed)
        opened = _within(core_comp, g, r_open + 0.5 * g)
        obj = comp & opened
    else:
        obj = comp
    # ray origin: the deepest point of the object within reach of the seed (a leak into the
    # mediastinum is deeper than the lesion, so the whole object's deepest point may be there),
    # then the deepest point of the star-shaped result
    depth = _edt(obj, g)
    core = _deepest_near(depth, seed, float(depth[tuple(seed)]) + 2.0, g)
    base = obj
    for _ in range(p.star_passes):
        obj = _star_constraint(base, core, g, p, iso, t)
        obj = _component_at(obj, np.rint(core).astype(int))
        core = np.asarray(np.unravel_index(int(np.argmax(_edt(obj, g))), obj.shape), dtype=np.float64)
    if kind == SOLID:
        obj, t = _part_solid_union(obj, iso, hull, core, t, hu_lung, g, p, notes)
    obj = ndimage.binary_fill_holes(obj)
    return obj, t, hu_lesion, hu_lung, kind, core, base


RIB_HU = BONE_HU - 50.0
"""Bone threshold of :func:`rib_cage` (HU): below :data:`mkunet.constants.BONE_HU` because thin ribs,
partial-volumed in thick (5 mm) slices, read below it. The hull needs only the ring of bone; what
else passes (contrast-enhanced vessels, about 275 HU) lies inside the ring and does not move it."""


def rib_cage(volume: Volume, z_range: tuple[int, int], bone_hu: float = RIB_HU, step_mm: float = 2.0) -> np.ndarray:
    """Per axial slice in ``z_range``, the filled convex hull of the bone (> ``bone_hu``) of the
    whole slice: inside the ribs, spine and sternum. bool (z1 - z0, y, x) on the input grid;
    a slice with too little bone is all True (no constraint)."""
    from scipy import ndimage

    z0, z1 = z_range
    sp = np.asarray(volume.spacing)
    st = max(1, int(round(step_mm / min(sp[1], sp[2]))))
    sub = volume.array[z0:z1, ::st, ::st]
    bone = sub > bone_hu
    bone &= ndimage.binary_opening(bone, structure=np.ones((1, 2, 2), bool)) | bone  # keep thin ribs
    hull = _slice_hulls(bone)
    small = bone.reshape(bone.shape[0], -1).sum(1) < 20
    hull[small] = True
    idx_y = np.minimum(np.arange(volume.shape[1]) // st, hull.shape[1] - 1)
    idx_x = np.minimum(np.arange(volume.shape[2]) // st, hull.shape[2] - 1)
    return hull[:, idx_y][:, :, idx_x]


def _distance_to_lung(volume: Volume, seed: np.ndarray, limit_mm: float, fraction: float = 0.1) -> float:
    """Radius (mm) of the smallest ball around the seed whose voxels are at least ``fraction``
    aerated lung (< -400 HU), at most ``limit_mm``: a size for the lesion that air bubbles
    inside a tumour (necrosis, bronchi) do not shrink."""
    sp = np.asarray(volume.spacing)
    r = np.ceil(limit_mm / sp).astype(int)
    lo = np.maximum(seed - r, 0)
    hi = np.minimum(seed + r + 1, volume.shape)
    step = np.maximum(1, np.round(2.0 / sp).astype(int))  # about a 2 mm grid is enough
    arr = volume.array[lo[0] : hi[0] : step[0], lo[1] : hi[1] : step[1], lo[2] : hi[2] : step[2]]
    zz, yy, xx = np.meshgrid(
        *[(np.arange(a, b, st) - c) * s for a, b, st, c, s in zip(lo, hi, step, seed, sp)], indexing="ij"
    )
    dist = np.sqrt(zz**2 + yy**2 + xx**2).ravel()
    air = aerated_lung(arr).ravel()
    order = np.argsort(dist, kind="stable")
    cum = np.cumsum(air[order]) / np.arange(1, order.size + 1)
    ok = np.flatnonzero((cum >= fraction) & (dist[order] >= 2.0))
    return float(dist[order][ok[0]]) if ok.size else float(limit_mm)


def check_seed(
    volume: Volume, seed_zyx: Sequence[float] | np.ndarray, describe: str = "seed", params: LesionParams | None = None
) -> np.ndarray:
    """Validate a seed (continuous indices (z, y, x)); returns the nearest voxel index (z, y, x).

    Args:
        volume: the CT.
        seed_zyx: the seed as continuous array indices (z, y, x).
        describe: how the error names the seed.
        params: when given, also refuse a seed in air or bone (median HU of the 3 x 3 x 3
            voxels around it below ``params.air_seed_hu`` or above ``params.bone_seed_hu``).

    Raises:
        SeedError: outside the image, in air or in bone; the message names the point in
            mm and as a voxel index, both ordered (x, y, z).
    """
    shape = np.asarray(volume.shape)
    seed = np.asarray(seed_zyx, dtype=np.float64)
    if seed.shape != (3,) or not np.all(np.isfinite(seed)):
        raise SeedError(f"The {describe} must be 3 finite numbers, got {seed_zyx!r}.")
    if np.any(seed < -0.5) or np.any(seed > shape - 0.5):
        mm = volume.index_to_physical(seed)
        raise SeedError(
            f"The {describe} lies outside the image: (x, y, z) = {np.round(mm, 1).tolist()} mm, voxel (x, y, z) = "
            f"{np.round(seed[::-1], 1).tolist()}, image size (x, y, z) {tuple(int(s) for s in shape[::-1])} voxels. "
            "Check the units (--seed-units mm|voxel) and that the point is given as x y z."
        )
    vox = np.clip(np.rint(seed).astype(int), 0, shape - 1)
    if params is not None:
        lo = np.maximum(vox - 1, 0)  # the 3 x 3 x 3 voxels around the seed: a 4 mm nodule is enough
        hi = np.minimum(vox + 2, shape)
        hu = float(np.median(volume.array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]))
        mm = np.round(volume.index_to_physical(vox), 1).tolist()
        where = f"(x, y, z) = {mm} mm, voxel (x, y, z) = {vox[::-1].tolist()}"
        if hu < params.air_seed_hu:
            raise SeedError(
                f"The {describe} is in air or aerated lung ({hu:.0f} HU around {where}), not in a lesion: "
                "click inside the lesion."
            )
        if hu > params.bone_seed_hu:
            raise SeedError(
                f"The {describe} is in bone ({hu:.0f} HU around {where}), not in a lesion: click inside the lesion."
            )
    return vox


def segment_lesion(
    volume: Volume,
    seed_zyx: Sequence[float],
    params: LesionParams | None = None,
    *,
    describe: str = "seed",
) -> LesionResult:
    """Segment the lung lesion that contains ``seed_zyx`` (image-driven; see the module doc).

    Args:
        volume: CT in HU, (z, y, x).
        seed_zyx: the seed as continuous array indices (z, y, x).
        params: :class:`LesionParams` (defaults: one set for every lesion kind).
        describe: how errors name the seed (e.g. ``"seed (12.0, -40.5, 100.0) mm"``).

    Returns:
        :class:`LesionResult`; ``mask`` is bool (z, y, x) on ``volume``'s grid. Its
        boundary is the HU iso-level ``threshold_hu`` on the input voxels.

    Raises:
        SeedError: the seed is outside the image, in air or in bone.
    """
    p = params or LesionParams()
    t0 = time.perf_counter()
    seed_vox = check_seed(volume, np.asarray(seed_zyx, dtype=np.float64), describe, p)
    result = _segment_from(volume, seed_vox, p, t0)
    if p.reseed and result.mask.any():
        # re-seed at the lesion core: the result no longer depends on where inside it the user clicked
        core = np.clip(np.rint(result.core_zyx).astype(int), 0, np.asarray(volume.shape) - 1)
        if result.mask[tuple(core)] and not np.array_equal(core, seed_vox):
            second = _segment_from(volume, core, p, t0)
            n1, n2 = int(result.mask.sum()), int(second.mask.sum())
            if second.mask.any() and n2 <= p.reseed_max_growth * n1:
                core_mm = np.round(volume.index_to_physical(core), 1).tolist()
                second.notes.insert(
                    0, f"re-seeded at the lesion core (x, y, z) = {core_mm} mm, voxel (x, y, z) = {core[::-1].tolist()}"
                )
                result = second
            elif second.mask.any():
                result.notes.append(
                    f"re-seeding at the core grew the lesion {n2 / n1:.1f}x (a leak): the first result was kept"
                )
    return result


def _crop(volume: Volume, w_lo: np.ndarray, w_hi: np.ndarray, context: np.ndarray, p: LesionParams):
    """The crop of one pass: (box, the crop, the crop on the isotropic grid, grid mm, window edge mm).

    The box is the window (continuous input indices (z, y, x)) plus ``context`` voxels, clipped to
    the scan; the grid is ``p.grid_mm`` or 1 % of the window's edge (0.6 to 1.5 mm), never finer
    than the scan.
    """
    from mkunet.preprocess.resample import resample

    sp = np.asarray(volume.spacing)
    box = tuple(
        (int(max(0, np.floor(a - c))), int(min(n, np.ceil(b + c) + 1)))
        for a, b, c, n in zip(w_lo, w_hi, context, volume.shape)
    )
    sub = _sub_volume(volume, box)
    edge = float(np.max((w_hi - w_lo) * sp))
    g = p.grid_mm if p.grid_mm is not None else float(np.clip(edge / 100.0, 0.6, 1.5))
    g = max(g, float(sp.min()))
    iso_vol = resample(sub, (g, g, g), "linear", default_value=AIR_HU)
    return box, sub, iso_vol, g, edge


def _window_and_cage(volume: Volume, box, sub: Volume, iso_vol: Volume, g: float, w_lo, w_hi, p: LesionParams):
    """The window (bool, on the iso grid) and the rib cage there (None when ``p.use_rib_cage`` is off)."""
    from mkunet.preprocess.resample import resample_mask

    sp = np.asarray(volume.spacing)
    # window on the iso grid (same origin and direction as the crop: indices scale by g / spacing)
    box_lo = np.array([a for a, _ in box], dtype=np.float64)
    lo_i = np.maximum(np.floor((w_lo - box_lo) * sp / g).astype(int), 0)
    hi_i = np.ceil((w_hi - box_lo) * sp / g).astype(int) + 1
    window = np.zeros(iso_vol.shape, bool)
    window[tuple(slice(a, b) for a, b in zip(lo_i, hi_i))] = True
    cage = None
    if p.use_rib_cage:
        cage_in = rib_cage(volume, box[0])[:, box[1][0] : box[1][1], box[2][0] : box[2][1]]
        cage = resample_mask(cage_in, sub, iso_vol, method="nearest")
    return window, cage


def _max_window_edge(kind: str, info: dict[str, float], p: LesionParams) -> tuple[float, bool]:
    """The largest window edge (mm) for this lesion, and whether its size (not the kind) set it."""
    # ground glass is rarely larger than a few cm and leaks easily: a smaller largest window
    max_edge = p.max_crop_mm if kind == SOLID else min(p.max_crop_mm, p.ground_glass_max_crop_mm)
    # ...and around a small nodule a window far larger than its inscribed ball only follows vessels
    by_size = False
    if info.get("r_in", np.inf) < p.small_rin_mm:  # a small nodule: what reaches the window is vessels
        size_edge = max(p.initial_crop_mm, p.window_rin_factor * info["r_in"])
        by_size = size_edge < max_edge
        max_edge = min(max_edge, size_edge)
    return max_edge, by_size


def _to_input_grid(obj, t: float, core, volume: Volume, box, sub: Volume, iso_vol: Volume):
    """The lesion back on the input grid: (mask bool (z, y, x), core as input indices (z, y, x)).

    Linear interpolation of the 0/1 mask (>= 0.5), intersected with the iso-level ``t`` on the input
    voxels (or the interpolated mask's interior), holes filled, the component at the core kept.
    """
    from scipy import ndimage

    from mkunet.preprocess.resample import resample_mask

    back = resample_mask(obj, iso_vol, sub, method="linear")
    back &= (sub.array >= t) | ndimage.binary_erosion(back, iterations=1)
    back = ndimage.binary_fill_holes(back)
    if back.any():
        core_in = np.clip(
            np.rint(sub.physical_to_index(iso_vol.index_to_physical(core))).astype(int), 0, np.asarray(back.shape) - 1
        )
        if back.any():
            back = _component_at(back, core_in)
    mask = np.zeros(volume.shape, bool)
    sl = tuple(slice(a, b) for a, b in box)
    mask[sl] = back
    core_zyx = sub.physical_to_index(iso_vol.index_to_physical(core)) + np.array([a for a, _ in box])
    return mask, core_zyx


def _segment_from(volume: Volume, seed_vox: np.ndarray, p: LesionParams, t0: float) -> LesionResult:
    """One run of the lesion model from a validated seed voxel (see the module doc)."""

    notes: list[str] = []
    sp = np.asarray(volume.spacing)
    shape = np.asarray(volume.shape)
    d_air = _distance_to_lung(volume, seed_vox, p.max_crop_mm / 2.0)
    # the window (input voxel indices, continuous, (z, y, x)): where the lesion may be on this pass
    half = max(0.5 * p.initial_crop_mm, p.air_window_factor * d_air) / sp
    w_lo, w_hi = seed_vox - half, seed_vox + half
    context = np.ceil(p.context_mm / sp)
    hu: tuple[float, float] | None = None
    steps = 0
    info: dict[str, float] = {}
    while True:
        box, sub, iso_vol, g, edge = _crop(volume, w_lo, w_hi, context, p)
        iso = iso_vol.array
        seed_iso = np.clip(
            np.rint(iso_vol.physical_to_index(volume.index_to_physical(seed_vox))).astype(int),
            0,
            np.asarray(iso.shape) - 1,
        )
        box_lo = np.array([a for a, _ in box], dtype=np.float64)
        window, cage = _window_and_cage(volume, box, sub, iso_vol, g, w_lo, w_hi, p)
        obj, t, hu_lesion, hu_lung, kind, core, pre_star = _model_on_crop(
            iso, seed_iso, g, p, notes, window, cage, hu, info
        )
        hu = (hu_lesion, hu_lung)
        steps += 1
        max_edge, by_size = _max_window_edge(kind, info, p)
        if obj is None:  # the seed is not inside the local lung hull: look wider
            if edge >= max_edge or steps >= p.max_grow_steps:
                obj, t, hu_lesion, hu_lung, kind, core, pre_star = _model_on_crop(
                    iso, seed_iso, g, p, notes, None, cage, hu
                )
                break
            centre = seed_vox.astype(float)
            grown = 0.5 * min(edge * p.grow_factor, max_edge) / sp
            w_lo, w_hi = centre - grown, centre + grown
            continue
        if not obj.any():
            break
        # does the object touch a window face that is not the scan's border?
        # the object before the star constraint decides the growth: from a click near the edge of a
        # large lesion the star is cut to the part around the click until the window holds the lesion
        pts = np.argwhere(pre_star if p.grow_before_star and pre_star is not None else obj)
        o_lo = box_lo + pts.min(0) * g / sp
        o_hi = box_lo + pts.max(0) * g / sp
        tol = 1.5 * g / sp
        at_lo = (o_lo <= w_lo + tol) & (w_lo > 0.5)
        at_hi = (o_hi >= w_hi - tol) & (w_hi < shape - 1.5)
        if not (at_lo.any() or at_hi.any()):
            break
        if edge >= max_edge or steps >= p.max_grow_steps:
            if not by_size:  # at the size cap, what still touches is vessels the star constraint cut
                notes.append(f"the lesion reaches the largest window ({edge:.0f} mm): it may be cut")
            break
        # grow: the object's box plus hull_margin_mm on every side (at least grow_factor x the window)
        margin = p.hull_margin_mm / sp
        new_lo = np.minimum(w_lo, o_lo - margin)
        new_hi = np.maximum(w_hi, o_hi + margin)
        limit = 0.5 * max_edge / sp
        centre = seed_vox.astype(float)
        w_lo, w_hi = np.maximum(new_lo, centre - limit), np.minimum(new_hi, centre + limit)
    mask, core_zyx = _to_input_grid(obj, t, core, volume, box, sub, iso_vol)
    if not mask.any():
        notes.append("no lesion found at the seed: the mask is empty")
    return LesionResult(
        mask=mask,
        threshold_hu=float(t),
        hu_lesion=float(hu_lesion),
        hu_lung=float(hu_lung),
        kind=kind,
        crop_box=box,  # type: ignore[arg-type]
        grid_mm=float(g),
        core_zyx=core_zyx,
        notes=notes,
        timings={"total": time.perf_counter() - t0},
    )
