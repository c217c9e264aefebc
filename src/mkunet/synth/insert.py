"""Synthetic tumours inserted into real CT: real anatomy, synthetic lesion, known mask.

Label-free training works when the anatomy is real and only the tumour is synthetic
(Hu et al., CVPR 2023; ``DOMAIN.md`` section 8). :func:`insert_tumours` paints one or more
tumours of the existing tumour model (:mod:`mkunet.synth.tumour`) into a real scan:

1. **Lesion types** (:data:`LESION_TYPES`): ``solid``, ``part-solid``, ``ground-glass``,
   ``spiculated`` (solid with spicules) and ``necrotic`` (solid with a necrotic core and
   enhancing rim).
2. **Placement** (:data:`PLACEMENTS`), from the scan's own lung mask
   (:func:`mkunet.segmentation.lung.filled_lungs`: filled per axial slice so that the vessels
   are inside it) and its distance map (mm):
   ``free`` (the whole lesion inside the lung), ``pleura`` / ``mediastinum`` (centre at 0.6-0.9
   radius from the lung surface, on the lateral / medial side of the lung, so the lesion abuts
   the chest wall / the mediastinum), ``vessel`` (next to a vessel: a voxel of the lung above
   -400 HU at 0.6-1.0 radius from the centre) and ``fissure`` (on a plate-like bright sheet of
   the parenchyma: Hessian at 1.5 mm with one large negative eigenvalue and two small ones).
   A placement with no candidate in the scan falls back to ``free``. Lesions keep 5 mm away
   from the ``ignore`` region and from each other.
3. **Blending**: the lesion is painted into the real HU by the tumour model (occupancy-weighted
   mix with the local parenchyma; ground glass is ``max(parenchyma, ground glass)`` so the
   vessels inside it stay visible), then the change is blurred with the scanner's own PSF
   (at most :data:`EDGE_BLUR_MAX_VOX`) and the noise removed under the lesion is replaced by
   new noise of the scanner's own SD and correlation (:func:`estimate_scanner`, from the
   scan's homogeneous soft tissue). The image
   changes only within a few PSF widths of the lesion: there is no seam.
4. **Ignore**: existing real tumours and regions the data's README calls unknown are passed
   as ``ignore`` and come back as :data:`IGNORE_LABEL` in the label map (the training loss
   skips them, :class:`mkunet.train.masked.MaskedDiceBCELoss`), so that they are never trained
   as background.

:func:`growth_series` makes serial timepoints from one background: one lesion with a known
LVCR (``V(t) = V0 exp(LVCR t)``), each timepoint with its own noise and a small rigid motion
(rotation about z and translation) of the whole scan.

Axis conventions: arrays (z, y, x); spacings (z, y, x) in mm; lesion centres in the module's
functions are (z, y, x) voxel indices. Deterministic: same inputs and generator state, same
output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mkunet.segmentation.lung import filled_lungs
from mkunet.synth._fields import Grid
from mkunet.synth.growth import diameter_to_volume
from mkunet.synth.scanner import ScannerParams
from mkunet.synth.tumour import TumourParams, render_tumour, sample_tumour
from mkunet.volume import Volume

__all__ = [
    "IGNORE_LABEL",
    "LESION_TYPES",
    "PLACEMENTS",
    "InsertedLesion",
    "estimate_scanner",
    "insert_tumours",
    "growth_series",
]

IGNORE_LABEL = 2
"""Label value of voxels the loss must skip (real tumours, unknown regions); 1 = inserted tumour."""

EDGE_BLUR_MAX_VOX = 0.6
"""Largest edge blur (Gaussian sigma, voxels) applied to an inserted lesion."""

LESION_TYPES = ("solid", "part-solid", "ground-glass", "spiculated", "necrotic")
PLACEMENTS = ("free", "pleura", "fissure", "vessel", "mediastinum")
_CONTACT = {"free": "none", "pleura": "pleura", "fissure": "none", "vessel": "vessel", "mediastinum": "mediastinum"}


@dataclass
class InsertedLesion:
    """One inserted lesion: type, placement (asked and used), centre (z, y, x) voxels, volume (mm^3)."""

    lesion_type: str
    placement: str
    placement_used: str
    centre_zyx: tuple[float, float, float]
    volume_mm3: float
    diameter_mm: float
    params: TumourParams = field(repr=False)


def estimate_scanner(array: np.ndarray, spacing: Sequence[float], lungs: np.ndarray | None = None) -> ScannerParams:
    """The scan's noise SD (HU) and PSF sigma (mm), from its homogeneous soft tissue.

    Residual ``r = x - G_2vox * x`` on soft-tissue voxels (-100..+150 HU after smoothing, at
    least 4 mm inside such tissue: muscle, heart, liver; homogeneous, so ``r`` is noise); the
    noise SD is the robust SD (1.4826 MAD) of ``r``, and the correlation of neighbouring
    voxels along each axis is ``rho = 1 - Var(r_i - r_i+1) / (2 Var r)``. Noise blurred by a
    Gaussian of sigma ``s`` voxels (the scanner model of :mod:`mkunet.synth.scanner`) has
    ``rho = exp(-1 / (4 s^2))``, which gives the PSF sigma per axis (clipped to 0.25-2.5
    voxels). ``lungs`` is accepted for symmetry and unused. Returns :class:`ScannerParams`
    (no HU offset or gain); a default (20 HU, 0.7 mm in-plane) when the scan has too little
    soft tissue.
    """
    from scipy import ndimage

    x = np.asarray(array, np.float32)
    spacing = tuple(float(s) for s in spacing)
    smooth = ndimage.gaussian_filter(x, [2.0 / s for s in spacing])
    soft = (smooth > -100) & (smooth < 150)
    sel = ndimage.distance_transform_edt(soft, sampling=spacing) >= 4.0 if soft.any() else soft
    if sel.sum() < 1000:
        return ScannerParams((0.5 * spacing[0], 0.7, 0.7), 20.0, 0.0, 1.0)
    r = x - ndimage.gaussian_filter(x, 2.0)
    rs = r[sel]

    def robust_var(v: np.ndarray) -> float:
        mad = float(np.median(np.abs(v - np.median(v))))
        return (1.4826 * mad) ** 2

    var = max(robust_var(rs), 1e-6)
    sigmas = []
    for axis in range(3):
        a = np.moveaxis(r, axis, 0)
        s = np.moveaxis(sel, axis, 0)
        both = s[1:] & s[:-1]
        diff = (a[1:] - a[:-1])[both]
        if diff.size < 100:
            sigmas.append(0.5 * spacing[axis])
            continue
        rho = float(np.clip(1.0 - robust_var(diff) / (2.0 * var), 1e-3, 0.95))
        s_vox = float(np.clip(np.sqrt(-1.0 / (4.0 * np.log(rho))), 0.25, 2.5))
        sigmas.append(s_vox * spacing[axis])
    return ScannerParams((sigmas[0], sigmas[1], sigmas[2]), float(np.sqrt(var)), 0.0, 1.0)


def _correlated_noise(shape: Sequence[int], spacing: Sequence[float], scanner: ScannerParams, rng) -> np.ndarray:
    """Noise of SD ``scanner.noise_sd`` HU correlated by the scanner PSF (as :func:`apply_scanner`)."""
    from scipy import ndimage

    from mkunet.synth.scanner import kernel_norm

    sig = [max(s / d, 0.0) for s, d in zip(scanner.psf_sigma_mm, spacing)]
    norm = float(np.prod([kernel_norm(s) for s in sig]))
    noise = rng.standard_normal(tuple(shape), dtype=np.float32) * np.float32(scanner.noise_sd / max(norm, 1e-6))
    return ndimage.gaussian_filter(noise, sig, truncate=3.0, output=np.float32)


def _tumour_for(lesion_type: str, placement: str, diameter_mm: float, rng: np.random.Generator) -> TumourParams:
    kind = {"solid": "solid", "spiculated": "solid", "necrotic": "solid"}.get(lesion_type, lesion_type)
    surface = "spiculated" if lesion_type == "spiculated" else "lobulated"
    if kind == "ground-glass":
        surface = "lobulated"
    necrosis = lesion_type == "necrotic"
    if lesion_type == "solid":
        necrosis = False
    return sample_tumour(
        rng, kind=kind, surface=surface, contact=_CONTACT[placement], necrosis=necrosis, diameter_mm=diameter_mm
    )


def _fissure_like(array: np.ndarray, spacing: Sequence[float], lungs: np.ndarray, step: Sequence[int]) -> np.ndarray:
    """Bool (coarse grid) of plate-like bright sheets in the parenchyma (fissure candidates)."""
    from scipy import ndimage

    sub = tuple(slice(None, None, s) for s in step)
    x = np.asarray(array, np.float32)[sub]
    lung = np.asarray(lungs, bool)[sub]
    sp = np.asarray(spacing, float) * np.asarray(step)
    sig = [1.5 / s for s in sp]
    cand = lung & (x > -900) & (x < -500)
    if cand.sum() < 50:
        return np.zeros_like(lung)
    idx = np.nonzero(cand)
    hess = np.zeros((idx[0].size, 3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            order = [0, 0, 0]
            order[i] += 1
            order[j] += 1
            d = ndimage.gaussian_filter(x, sig, order=order)[idx] / np.float32(sp[i] * sp[j])
            hess[:, i, j] = hess[:, j, i] = d
    ev = np.linalg.eigvalsh(hess)  # ascending: ev[:, 0] most negative
    plate = (
        (ev[:, 0] < -15.0) & (np.abs(ev[:, 1]) < 0.25 * np.abs(ev[:, 0])) & (np.abs(ev[:, 2]) < 0.25 * np.abs(ev[:, 0]))
    )
    out = np.zeros_like(lung)
    out[tuple(i[plate] for i in idx)] = True
    return out


def _choose_centre(
    placement: str,
    radius_mm: float,
    x: np.ndarray,
    spacing: np.ndarray,
    lungs: np.ndarray,
    depth: np.ndarray,
    forbid_depth: np.ndarray,
    fissure: np.ndarray | None,
    step: Sequence[int],
    rng: np.random.Generator,
) -> tuple[np.ndarray | None, str]:
    """A centre (z, y, x) voxel for the placement (coarse grid ``step``), or None; and the placement used."""
    from scipy import ndimage

    sub = tuple(slice(None, None, s) for s in step)
    lung = lungs[sub]
    d = depth[sub]
    away = forbid_depth[sub] > radius_mm + 5.0
    r = radius_mm
    options = {"free": lung & (d >= r + 2.0) & away}
    if placement in ("pleura", "mediastinum"):
        near = lung & (d >= 0.6 * r) & (d <= 0.9 * r) & away
        # medial = towards the body's left-right centre line from the lung's surface
        xs = np.nonzero(lung.any(axis=(0, 1)))[0]
        mid = 0.5 * (xs.min() + xs.max()) if xs.size else lung.shape[2] / 2
        col = np.arange(lung.shape[2])[None, None, :]
        # the nearest outside-lung voxel: direction of the negative depth gradient, along x
        gx = ndimage.sobel(d, axis=2)
        towards_mid = np.sign(mid - col) * -gx > 0  # the surface lies on the mid side
        options[placement] = near & (towards_mid if placement == "mediastinum" else ~towards_mid)
    elif placement == "vessel":
        dense = (x[sub] > -400) & lung & (d > 3.0)
        if dense.any():
            dist = ndimage.distance_transform_edt(~dense, sampling=spacing * np.asarray(step))
            options["vessel"] = lung & (dist >= 0.6 * r) & (dist <= 1.0 * r) & (d >= 0.8 * r) & away
    elif placement == "fissure" and fissure is not None:
        options["fissure"] = fissure & (d >= 0.8 * r) & away
    for name in (placement, "free"):
        ok = options.get(name)
        if ok is not None and ok.any():
            cand = np.argwhere(ok)
            k = cand[int(rng.integers(len(cand)))]
            jitter = rng.uniform(-0.5, 0.5, 3) * (np.asarray(step) - 1)
            return k * np.asarray(step) + jitter, name
    # the deepest point, when nothing fits (a lesion larger than the lung's depth)
    ok = lung & away
    if not ok.any():
        return None, "none"
    dd = np.where(ok, d, -1.0)
    k = np.asarray(np.unravel_index(int(np.argmax(dd)), dd.shape))
    return k * np.asarray(step).astype(float), "deepest"


def _paint(
    base: np.ndarray,
    spacing: tuple[float, float, float],
    tumour: TumourParams,
    volume_mm3: float,
    centre_zyx: np.ndarray,
    lung_occ: np.ndarray,
    scanner: ScannerParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Paint one lesion into ``base`` (in place); returns its bool mask on the crop and the crop slices."""
    from scipy import ndimage

    sz, sy, sx = spacing
    # the edge blur: the scanner's PSF, at most 0.6 voxel (the PSF estimated from the noise
    # correlation is an upper bound: resampling the scan also correlates neighbouring voxels)
    blur = [min(max(s / d, 0.0), EDGE_BLUR_MAX_VOX) for s, d in zip(scanner.psf_sigma_mm, spacing)]
    ext = tumour.max_extent(volume_mm3) + 3.0
    pad = [int(np.ceil(ext / s + 3 * b)) + 2 for s, b in zip(spacing, blur)]
    c = np.asarray(centre_zyx, float)
    lo = [max(int(np.floor(ci)) - p, 0) for ci, p in zip(c, pad)]
    hi = [min(int(np.ceil(ci)) + p + 1, n) for ci, p, n in zip(c, pad, base.shape)]
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    crop = base[sl]
    grid = Grid((hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]), spacing, (lo[2] * sx, lo[1] * sy, lo[0] * sz))
    painted = crop.astype(np.float32).copy()
    centre_xyz = np.array([c[2] * sx, c[1] * sy, c[0] * sz])
    with np.errstate(divide="ignore"):  # the ramp's width is 0 on a voxel at the exact centre
        mask = render_tumour(tumour, volume_mm3, grid, painted, lung_occ[sl], rng, centre=centre_xyz)
    delta = painted - crop
    delta = ndimage.gaussian_filter(delta, blur, truncate=3.0, output=np.float32)
    weight = ndimage.gaussian_filter(mask.astype(np.float32), blur, truncate=3.0)
    noise = _correlated_noise(crop.shape, spacing, scanner, rng)
    crop += delta + weight * noise
    base[sl] = crop
    return mask, sl


def _check_lesion_options(
    n_tumours: int,
    diameter_mm: tuple[float, float],
    lesion_types: Sequence[str] | None,
    placements: Sequence[str] | None,
) -> tuple[float, float]:
    """Check :func:`insert_tumours`' lesion count, diameter range, types and placements -> (low, high) mm."""
    if isinstance(n_tumours, bool) or not isinstance(n_tumours, int) or n_tumours < 1:
        raise ValueError(f"`n_tumours` must be an integer >= 1, got {n_tumours!r}.")
    lo_d, hi_d = (float(v) for v in diameter_mm)
    if not 0 < lo_d <= hi_d:
        raise ValueError(f"`diameter_mm` must be (low, high) mm with 0 < low <= high, got {diameter_mm!r}.")
    for name, given, allowed in (("lesion_types", lesion_types, LESION_TYPES), ("placements", placements, PLACEMENTS)):
        if given is None:
            continue
        if len(given) != n_tumours:
            raise ValueError(f"`{name}` gives {len(given)} value(s) for n_tumours={n_tumours}; give one per lesion.")
        bad = [v for v in given if v not in allowed]
        if bad:
            raise ValueError(f"`{name}` has unknown value(s) {bad}; use {allowed}.")
    return lo_d, hi_d


def _draw_lesion(
    k: int,
    types: list[str] | None,
    places: list[str] | None,
    lo_d: float,
    hi_d: float,
    rng: np.random.Generator,
) -> tuple[str, str, float]:
    """Lesion ``k``'s type, placement (given, else drawn) and diameter (mm, log-uniform; necrotic >= 20 mm)."""
    lesion_type = types[k] if types else str(rng.choice(LESION_TYPES, p=[0.35, 0.15, 0.15, 0.2, 0.15]))
    placement = places[k] if places else str(rng.choice(PLACEMENTS, p=[0.3, 0.25, 0.1, 0.2, 0.15]))
    lo_k = max(lo_d, 20.0) if lesion_type == "necrotic" else lo_d
    d_mm = float(np.exp(rng.uniform(np.log(lo_k), np.log(max(hi_d, lo_k)))))
    return lesion_type, placement, d_mm


def insert_tumours(
    volume: Volume,
    lungs: np.ndarray | None,
    rng: np.random.Generator,
    *,
    n_tumours: int = 1,
    lesion_types: Sequence[str] | None = None,
    placements: Sequence[str] | None = None,
    diameter_mm: tuple[float, float] = (6.0, 50.0),
    ignore: np.ndarray | None = None,
    scanner: ScannerParams | None = None,
    lesions: list[InsertedLesion] | None = None,
) -> tuple[Volume, np.ndarray]:
    """Insert ``n_tumours`` synthetic lesions into a real CT (see the module docstring).

    Args:
        volume: the real CT (HU), (z, y, x), spacing (z, y, x) mm. Not modified.
        lungs: bool (z, y, x) lung mask, or None (computed: :func:`mkunet.segmentation.lung.filled_lungs`).
        rng: seeded generator (the only source of randomness).
        n_tumours: lesions to insert (>= 1). Fewer when the lungs have no room left.
        lesion_types: one per lesion from :data:`LESION_TYPES`, or None (drawn: solid 35 %,
            part-solid 15 %, ground-glass 15 %, spiculated 20 %, necrotic 15 %; necrotic
            lesions are at least 20 mm).
        placements: one per lesion from :data:`PLACEMENTS`, or None (drawn: free 30 %,
            pleura 25 %, fissure 10 %, vessel 20 %, mediastinum 15 %).
        diameter_mm: range of the equivalent diameter (mm), log-uniform.
        ignore: bool (z, y, x): existing real tumours and unknown regions. Lesions are not
            placed within 5 mm of it; returned as :data:`IGNORE_LABEL`.
        scanner: the scan's noise and PSF, or None (:func:`estimate_scanner`).
        lesions: a list that receives one :class:`InsertedLesion` per lesion.

    Returns:
        ``(volume, labels)``: a new :class:`Volume` (same geometry, float32 HU) and uint8
        (z, y, x) labels: 0 background, 1 inserted tumour, :data:`IGNORE_LABEL` ignore.

    Raises:
        ValueError: an unknown lesion type or placement, a bad count or diameter range, or
            ``lungs`` / ``ignore`` of another shape than the volume.
    """
    from scipy import ndimage

    lo_d, hi_d = _check_lesion_options(n_tumours, diameter_mm, lesion_types, placements)
    x = np.asarray(volume.array, np.float32)
    spacing = (float(volume.spacing[0]), float(volume.spacing[1]), float(volume.spacing[2]))
    for name, arr in (("lungs", lungs), ("ignore", ignore)):
        if arr is not None and np.shape(arr) != x.shape:
            raise ValueError(f"`{name}` has shape {np.shape(arr)}, the volume {x.shape}; give masks on the scan grid.")
    lungs = filled_lungs(x, spacing) if lungs is None else np.asarray(lungs, bool)
    ignore_mask = np.zeros(x.shape, bool) if ignore is None else np.asarray(ignore, bool)
    scanner = estimate_scanner(x, spacing, lungs) if scanner is None else scanner
    out = x.copy()
    labels = np.zeros(x.shape, np.uint8)
    if not lungs.any():
        labels[ignore_mask] = IGNORE_LABEL
        return _like(volume, out), labels
    sp = np.asarray(spacing)
    step = [max(1, int(round(2.0 / s))) for s in spacing]  # placement on a ~2 mm grid
    depth = ndimage.distance_transform_edt(lungs, sampling=sp).astype(np.float32)
    lung_occ = ndimage.gaussian_filter(lungs.astype(np.float32), [0.7 / s for s in spacing])
    fissure = None
    types = list(lesion_types) if lesion_types is not None else None
    places = list(placements) if placements is not None else None
    taken = ignore_mask.copy()
    for k in range(n_tumours):
        lesion_type, placement, d_mm = _draw_lesion(k, types, places, lo_d, hi_d, rng)
        tumour = _tumour_for(lesion_type, placement, d_mm, rng)
        vol_mm3 = float(diameter_to_volume(d_mm))
        radius = 0.5 * d_mm
        if placement == "fissure" and fissure is None:
            fissure = _fissure_like(x, spacing, lungs, step)
        forbid = (
            ndimage.distance_transform_edt(~taken, sampling=sp).astype(np.float32)
            if taken.any()
            else np.full(x.shape, np.inf, np.float32)
        )
        centre, used = _choose_centre(placement, radius, x, sp, lungs, depth, forbid, fissure, step, rng)
        if centre is None:
            break
        mask_crop, sl = _paint(out, spacing, tumour, vol_mm3, centre, lung_occ, scanner, rng)
        region = labels[sl]
        region[mask_crop & (region == 0)] = 1
        taken[sl] |= mask_crop
        if lesions is not None:
            lesions.append(
                InsertedLesion(
                    lesion_type,
                    placement,
                    used,
                    (float(centre[0]), float(centre[1]), float(centre[2])),
                    vol_mm3,
                    d_mm,
                    tumour,
                )
            )
    labels[ignore_mask] = IGNORE_LABEL
    np.clip(out, -1024.0, 3071.0, out=out)
    return _like(volume, out), labels


def _like(volume: Volume, array: np.ndarray) -> Volume:
    return volume.with_array(array.astype(np.float32))


def growth_series(
    volume: Volume,
    lungs: np.ndarray | None,
    rng: np.random.Generator,
    days: Sequence[float],
    lvcr_per_day: float,
    *,
    lesion_type: str | None = None,
    placement: str | None = None,
    diameter_mm: float = 15.0,
    ignore: np.ndarray | None = None,
    max_shift_mm: float = 3.0,
    max_rotation_deg: float = 2.0,
) -> list[tuple[Volume, np.ndarray]]:
    """Serial timepoints from one background: one lesion growing as ``V0 exp(LVCR t)``.

    The lesion (same shape, type and centre) has volume ``V0 exp(lvcr_per_day * days[k])`` at
    timepoint ``k`` (``V0`` from ``diameter_mm`` at ``days[0]``), fresh noise at every
    timepoint, and timepoints after the first move rigidly: a rotation about the z axis of
    up to ``max_rotation_deg`` and a translation of up to ``max_shift_mm`` per axis (linear
    interpolation for the image, nearest for the labels). The true LVCR is exactly
    ``lvcr_per_day`` (the volumes before rasterisation).

    Returns:
        one ``(Volume, labels)`` per day (labels as :func:`insert_tumours`).
    """
    from scipy import ndimage

    days_arr = np.asarray(days, float)
    if days_arr.ndim != 1 or days_arr.size < 1 or np.any(np.diff(days_arr) <= 0):
        raise ValueError(f"`days` must be strictly increasing, got {list(days)!r}.")
    x = np.asarray(volume.array, np.float32)
    spacing = (float(volume.spacing[0]), float(volume.spacing[1]), float(volume.spacing[2]))
    lungs = filled_lungs(x, spacing) if lungs is None else np.asarray(lungs, bool)
    ignore_mask = np.zeros(x.shape, bool) if ignore is None else np.asarray(ignore, bool)
    scanner = estimate_scanner(x, spacing, lungs)
    lesion_type = lesion_type or str(rng.choice(LESION_TYPES[:4]))
    placement = placement or "free"
    largest = diameter_mm * float(np.exp(max(0.0, lvcr_per_day * (days_arr[-1] - days_arr[0])) / 3.0))
    first: list[InsertedLesion] = []
    state = rng.bit_generator.state
    insert_tumours(
        volume,
        lungs,
        rng,
        lesion_types=[lesion_type],
        placements=[placement],
        diameter_mm=(largest, largest),
        ignore=ignore_mask,
        scanner=scanner,
        lesions=first,
    )
    rng.bit_generator.state = state  # the draws above only chose the lesion and its centre
    out: list[tuple[Volume, np.ndarray]] = []
    if not first:
        return [(_like(volume, x.copy()), np.where(ignore_mask, IGNORE_LABEL, 0).astype(np.uint8)) for _ in days_arr]
    lesion = first[0]
    v0 = float(diameter_to_volume(diameter_mm))
    lung_occ = ndimage.gaussian_filter(lungs.astype(np.float32), [0.7 / s for s in spacing])
    centre = np.asarray(lesion.centre_zyx)
    for k, t in enumerate(days_arr):
        image = x.copy()
        vol_k = v0 * float(np.exp(lvcr_per_day * (t - days_arr[0])))
        mask_crop, sl = _paint(image, spacing, lesion.params, vol_k, centre, lung_occ, scanner, rng)
        labels = np.zeros(x.shape, np.uint8)
        labels[sl][mask_crop] = 1
        labels[ignore_mask] = IGNORE_LABEL
        if k > 0 and (max_shift_mm > 0 or max_rotation_deg > 0):
            angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
            shift = rng.uniform(-max_shift_mm, max_shift_mm, 3) / np.asarray(spacing)
            rot = np.eye(3)
            ca, sa = np.cos(angle), np.sin(angle)
            aspect = spacing[1] / spacing[2]
            rot[1:, 1:] = [[ca, -sa / aspect], [sa * aspect, ca]]  # in-plane rotation in mm, on (y, x) voxels
            centre_vox = (np.asarray(x.shape) - 1) / 2.0
            offset = centre_vox - rot @ centre_vox + shift
            image = ndimage.affine_transform(image, rot, offset=offset, order=1, mode="nearest").astype(np.float32)
            labels = ndimage.affine_transform(labels, rot, offset=offset, order=0, mode="constant", cval=0).astype(
                np.uint8
            )
        np.clip(image, -1024.0, 3071.0, out=image)
        out.append((_like(volume, image), labels))
    return out
