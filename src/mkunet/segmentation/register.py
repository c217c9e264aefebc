"""Register a follow-up chest CT to its baseline, so that a lesion clicked once on the
baseline can be found again in every follow-up.

Follow-up scans are taken with the patient repositioned (shifts of 5-30 mm, a few degrees
of rotation) and breathing differently (lower-lobe lesions move 10-20 mm relative to the
chest wall). :func:`register` estimates a transform in two stages, both with SimpleITK's
registration framework (no hand-written optimiser):

1. **Global** (the whole thorax). Both scans are block-averaged to about ``grid_mm`` mm
   and clipped to [-1000, 400] HU (``CLIP_HU``: so bone and contrast do not dominate), then
   compared by mean squares inside the baseline's body (``HU >``
   :data:`mkunet.constants.BODY_HU` = -500, largest component, holes
   filled per axial slice, so the lungs are in). The start is the best of three
   candidates (scanner coordinates as they are, image centres aligned, body centres of
   mass aligned; see ``sitk.CenteredTransformInitializer``), so scans that do not
   overlap at all still register. Then a two-level rigid (``sitk.Euler3DTransform``)
   and, by default, an affine stage, with regular-step gradient descent and random
   metric sampling with a fixed seed.
2. **Local** (only when ``centre_xyz``, the baseline click, is given), on a grid of about
   2 mm, composed after the global transform: a translation inside the lung part of a
   ball of ``local_radius_mm`` around the click (the lung region of
   :func:`mkunet.segmentation.lung.lung_region`: the lesion moves with the parenchyma and slides along
   the chest wall), then a rigid refinement inside a ball of ``local_radius_mm / 3``
   (at least 20 mm) where the lesion and its nearest vessels dominate. It follows the
   lesion's breathing motion; it is *not* valid far from the click.

Every stage is checked: an exception, a NaN metric, an affine that scales by more than
25 %, a local correction that moves the click by more than 3/4 of ``local_radius_mm`` or
``LOCAL_MAX_SHIFT_MM`` (25 mm: breathing moves a lesion 10-20 mm relative to the chest wall), or
a result that matches more than 1 % worse than its start (mean squared HU difference on the points
both map inside the follow-up) keeps the previous stage's transform and says so in
``Registration.notes``; nothing fails silently.

Measured (``benchmarks/register.py``, 2 shared CPU cores, three real 512 x 512 x 61..275
chest CTs, known rigid motions of 5-30 mm and up to 4 deg, with and without a synthetic
15 mm breathing displacement in the lungs): 0.5-1.5 s per pair for the global stage,
0.8-1.9 s with the local stage; click error with the local stage under 0.9 mm (global
only: under 1 mm without breathing, 4-8 mm with it).

Conventions (as everywhere in ``mkunet``): arrays are ``(z, y, x)``; spacings ``(z, y, x)``
in mm; physical points ``(x, y, z)`` in mm, DICOM patient coordinates (LPS).

**Direction of the transform.** ``Registration.transform`` maps a *baseline* physical point
to the corresponding *follow-up* physical point (ITK's convention with fixed = baseline,
moving = follow-up). To resample a follow-up image onto the baseline grid, pass it as is:
``resample_array(followup.array, followup, baseline, transform=reg.transform)``
(:func:`mkunet.preprocess.resample.resample_array`); to carry a baseline mask to the
follow-up, use :meth:`Registration.map_mask` (which uses the inverse).

Example::

    reg = register(baseline, followup, centre_xyz=click_xyz)
    click_in_followup = reg.map_point(click_xyz)            # (x, y, z) mm
    mask_in_followup = reg.map_mask(mask, baseline, followup)  # bool (z, y, x)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mkunet.constants import AIR_HU, BODY_HU, CANCELLOUS_BONE_HU
from mkunet.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

__all__ = ["KINDS", "Registration", "register"]

#: The values of ``register(kind=...)``.
KINDS: tuple[str, ...] = ("identity", "rigid", "rigid+affine")

CLIP_HU: tuple[float, float] = (AIR_HU, CANCELLOUS_BONE_HU[1])
"""HU window applied before any comparison: air..dense soft tissue; cortical bone and contrast saturate.

The top, 400 HU, is the top of cancellous bone (:data:`mkunet.constants.CANCELLOUS_BONE_HU`) and
of IBSI's CT re-segmentation range [-1000, 400]: ribs and spine still show against soft tissue,
but cortex and contrast boluses (which change between scans) do not dominate the metric."""

LOCAL_GRID_MM = 2.0
"""Grid (mm) of the local stage."""

LOCAL_MIN_RADIUS_MM = 20.0
"""Smallest radius (mm) of the ball the local rigid refinement compares."""

LOCAL_MAX_SHIFT_MM = 25.0
"""The local stage may move the click by at most this (mm) beyond the global transform."""

_MAX_SAMPLES_GLOBAL = 20_000
_MAX_SAMPLES_LOCAL = 15_000


# ---------------------------------------------------------------------------- result
@dataclass(eq=False)
class Registration:
    """The result of :func:`register`: a transform from baseline to follow-up physical space.

    Attributes:
        transform: SimpleITK transform mapping a **baseline** physical point (x, y, z) mm to
            the corresponding **follow-up** physical point (x, y, z) mm (ITK convention,
            fixed = baseline, moving = follow-up). Always invertible (a composition of
            rigid/affine transforms). With a local stage it is
            ``CompositeTransform([global, local])`` and is accurate only within about
            ``local_radius_mm`` of the click.
        kind: what was done: ``"identity"``, ``"rigid"``, ``"rigid+affine"``, each
            possibly followed by ``"+local"``; ``"initialiser"`` when the global
            optimisation failed and only the initial alignment is used (see ``notes``).
        metric: final value of the last optimisation stage's metric (mean squares of
            clipped HU, HU^2; lower is better); NaN when nothing was optimised.
        seconds: wall-clock time of :func:`register`, s.
        notes: what was chosen or refused along the way (initialiser, fallbacks).
    """

    transform: sitk.Transform
    kind: str
    metric: float
    seconds: float
    notes: list[str] = field(default_factory=list)

    def map_point(self, point_xyz: np.ndarray | Sequence[float]) -> np.ndarray:
        """Map baseline physical points to follow-up physical points.

        Args:
            point_xyz: one point ``(3,)`` or ``n`` points ``(n, 3)``, ordered (x, y, z), in
                mm (LPS) on the **baseline**.

        Returns:
            float64 array of the same shape: the points on the **follow-up**, (x, y, z) mm.
        """
        pts = np.asarray(point_xyz, dtype=np.float64)
        if pts.shape != (3,) and (pts.ndim != 2 or pts.shape[1] != 3):
            raise ValueError(
                f"map_point expects a point (3,) or points (n, 3) ordered (x, y, z) mm, got shape {pts.shape}."
            )
        if not np.all(np.isfinite(pts)):
            raise ValueError(f"map_point: points must be finite, got {pts.tolist()!r}.")
        if pts.shape == (3,):
            return np.asarray(self.transform.TransformPoint(tuple(pts.tolist())), dtype=np.float64)
        out = np.empty_like(pts)
        for i, p in enumerate(pts):
            out[i] = self.transform.TransformPoint(tuple(p.tolist()))
        return out

    def map_mask(self, mask: np.ndarray, baseline: Volume, followup: Volume) -> np.ndarray:
        """Carry a baseline mask onto the follow-up grid.

        The mask is interpolated linearly (as 0/1 float32) through the inverse transform and
        thresholded at 0.5, which keeps the shape smoother than nearest neighbour. Only the
        mask's bounding box is resampled, so this is fast on full-size scans.

        Args:
            mask: bool (z, y, x) on ``baseline``'s grid (any non-zero value is foreground).
            baseline: the baseline volume (fixed image of :func:`register`).
            followup: the follow-up volume (moving image of :func:`register`).

        Returns:
            bool (z, y, x) on ``followup``'s grid; all False when the mapped mask falls
            outside the follow-up's field of view.
        """
        from mkunet.preprocess.resample import Grid, resample_array

        mask = np.asarray(mask)
        if mask.shape != baseline.shape:
            raise ValueError(
                f"map_mask: mask shape {mask.shape} differs from the baseline's {baseline.shape}; "
                "the mask must lie on the baseline grid (z, y, x)."
            )
        out = np.zeros(followup.shape, dtype=bool)
        where = np.nonzero(mask)
        if where[0].size == 0:
            return out
        lo = np.maximum([w.min() - 1 for w in where], 0)
        hi = np.minimum([w.max() + 2 for w in where], baseline.shape)
        sub = (mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] != 0).astype(np.float32)
        source = Grid(sub.shape, baseline.spacing, tuple(baseline.index_to_physical(lo).tolist()), baseline.direction)
        # output region: the follow-up indices of the mapped bounding-box corners (+margin)
        corners = np.array(
            [[a, b, c] for a in (lo[0] - 1, hi[0]) for b in (lo[1] - 1, hi[1]) for c in (lo[2] - 1, hi[2])]
        )
        idx = followup.physical_to_index(self.map_point(baseline.index_to_physical(corners)))
        olo = np.maximum(np.floor(idx.min(axis=0)).astype(int) - 2, 0)
        ohi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 3, followup.shape)
        if np.any(ohi <= olo):
            return out
        target = Grid(
            tuple(int(v) for v in ohi - olo),  # type: ignore[arg-type]
            followup.spacing,
            tuple(followup.index_to_physical(olo).tolist()),
            followup.direction,
        )
        # the inverse maps follow-up points to the baseline, where the mask lies
        resampled = resample_array(sub, source, target, transform=self.transform.GetInverse(), default_value=0.0)
        out[olo[0] : ohi[0], olo[1] : ohi[1], olo[2] : ohi[2]] = resampled >= 0.5
        return out

    def __repr__(self) -> str:  # the transform's own repr is pages long
        return (
            f"Registration(kind={self.kind!r}, metric={self.metric:.4g}, seconds={self.seconds:.2f}, "
            f"transform={self.transform.GetName()}, notes={self.notes!r})"
        )


# ---------------------------------------------------------------------------- helpers
def _image(array: np.ndarray, spacing_zyx, origin_xyz, direction) -> sitk.Image:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    image.SetOrigin(tuple(float(o) for o in origin_xyz))
    image.SetDirection(tuple(np.asarray(direction, dtype=np.float64).ravel()))
    return image


def _prepare(image: sitk.Image, grid_mm: float) -> sitk.Image:
    """Block-average to about ``grid_mm`` (integer factors per axis: no aliasing), then clip to CLIP_HU.

    Averaging first is 5x cheaper on full scans; a block that holds bone reads a little
    higher before the clip, which changes nothing that matters here.
    """
    import SimpleITK as sitk

    factors = [max(1, int(round(grid_mm / s))) for s in image.GetSpacing()]
    factors = [min(f, n) for f, n in zip(factors, image.GetSize())]
    if max(factors) > 1:
        image = sitk.BinShrink(image, factors)
    return sitk.Clamp(image, sitk.sitkFloat32, CLIP_HU[0], CLIP_HU[1])


def _body_mask(image: sitk.Image) -> np.ndarray:
    """Body with lungs, bool (z, y, x), on a coarse clipped image.

    The largest component of HU > BODY_HU (the table and clothes are apart from it), holes
    filled in each axial slice (the lungs), dilated by one voxel (the skin edge is in).
    """
    import SimpleITK as sitk
    from scipy import ndimage

    arr = sitk.GetArrayViewFromImage(image)
    body = arr > BODY_HU
    labels, n = ndimage.label(body)
    if n == 0:
        return body
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    body = labels == int(np.argmax(sizes))
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    body = ndimage.binary_fill_holes(body, structure=in_plane)
    return ndimage.binary_dilation(body, iterations=1)


def _mask_image(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(like)
    return image


def _warp(fixed: sitk.Image, moving: sitk.Image, transform) -> np.ndarray:
    """The moving image on the fixed grid through ``transform``; NaN where it maps outside."""
    from mkunet.preprocess.resample import Grid, resample_array

    return resample_array(
        _array(moving), Grid.from_sitk(moving), Grid.from_sitk(fixed), transform=transform, default_value=math.nan
    )


def _mismatch(fixed: sitk.Image, moving: sitk.Image, mask: np.ndarray, transform) -> float:
    """Mean squared HU difference inside ``mask``, points mapping outside the moving image read as air.

    Used to choose the initial alignment: unlike the ITK metric, which just drops such
    points, it penalises a start that slides the body out of the follow-up's field of view.
    """
    a = _warp(fixed, moving, transform)[mask]
    if a.size == 0:
        return math.inf
    a = np.where(np.isnan(a), CLIP_HU[0], a)
    d = a - _array(fixed)[mask]
    return float(np.dot(d, d) / d.size)


def _improved(fixed: sitk.Image, moving: sitk.Image, mask: np.ndarray, before, after) -> tuple[bool, float, float]:
    """Does ``after`` match at least as well as ``before`` (within 1 %, sampling noise)?

    Returns (verdict, before MSE, after MSE).

    Compared on the mask points that both transforms map inside the moving image (a
    follow-up with a shorter field of view must not favour a wrong transform); when those
    are under a quarter of the mask, points outside read as air instead.
    """
    a = _warp(fixed, moving, before)[mask]
    b = _warp(fixed, moving, after)[mask]
    f = _array(fixed)[mask]
    valid = np.isfinite(a) & np.isfinite(b)
    if valid.sum() < 0.25 * max(mask.sum(), 1):
        a, b, valid = np.nan_to_num(a, nan=CLIP_HU[0]), np.nan_to_num(b, nan=CLIP_HU[0]), np.ones(a.shape, bool)
    if not valid.any():
        return False, math.inf, math.inf
    da, db = a[valid] - f[valid], b[valid] - f[valid]
    mse_a, mse_b = float(np.dot(da, da) / da.size), float(np.dot(db, db) / db.size)
    return mse_b <= 1.01 * mse_a, mse_a, mse_b


def _array(image: sitk.Image) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayViewFromImage(image)


def _itk_seed(seed: int) -> int:
    # SimpleITK reads seed 0 as "wall clock" (non-deterministic): shift by one
    return int(seed) % 2_147_483_000 + 1


def _method(mask_image, n_mask: int, max_samples: int, seed: int, threads: int | None) -> sitk.ImageRegistrationMethod:
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(float(min(1.0, max_samples / max(n_mask, 1))), _itk_seed(seed))
    if mask_image is not None:
        method.SetMetricFixedMask(mask_image)
    method.SetInterpolator(sitk.sitkLinear)
    # gradients by finite differences at the sampled points only: no whole-image
    # gradient filter per level (a third of the time on 512x512x141 scans)
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    if threads is not None:
        method.SetNumberOfThreads(int(threads))
    return method


def _optimise(method, fixed, moving, initial, *, shrink, sigmas_mm, step_mm, iterations, name, notes):
    """Run one stage; returns (transform, metric), notes the iterations. Raises RuntimeError on NaN results."""
    import SimpleITK as sitk

    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=float(step_mm),
        minStep=0.01,
        numberOfIterations=int(iterations),
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(shrink))
    method.SetSmoothingSigmasPerLevel(list(sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    iterations_done = [0]
    method.AddCommand(sitk.sitkIterationEvent, lambda: iterations_done.__setitem__(0, iterations_done[0] + 1))
    result = method.Execute(fixed, moving)
    metric = float(method.GetMetricValue())
    notes.append(f"{name}: metric {metric:.4g} after {iterations_done[0]} iterations")
    params = np.asarray(result.GetParameters(), dtype=np.float64)
    if not math.isfinite(metric) or not np.all(np.isfinite(params)):
        raise RuntimeError(f"non-finite result (metric={metric}, parameters={params.tolist()})")
    return _unwrap(result), metric


def _unwrap(transform):
    """Execute returns a CompositeTransform holding only the optimised transform (not the
    moving initial one); take it out."""
    import SimpleITK as sitk

    if transform.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(transform)
        if comp.GetNumberOfTransforms() == 1:
            return comp.GetNthTransform(0).Downcast()
    return transform.Downcast()


def _euler_from(transform, centre) -> sitk.Euler3DTransform:
    """A centred Euler3DTransform equal to a rigid/translation transform (or the identity)."""
    import SimpleITK as sitk

    euler = sitk.Euler3DTransform()
    euler.SetCenter(tuple(float(c) for c in centre))
    if transform is not None:
        moved = transform.TransformPoint(tuple(float(c) for c in centre))
        euler.SetTranslation(tuple(m - c for m, c in zip(moved, centre)))
        if transform.GetName() == "Euler3DTransform":
            euler.SetMatrix(sitk.Euler3DTransform(transform).GetMatrix())
    return euler


def _affine_ok(affine) -> bool:
    m = np.asarray(affine.GetMatrix(), dtype=np.float64).reshape(3, 3)
    s = np.linalg.svd(m, compute_uv=False)
    return bool(np.all(np.isfinite(s)) and s.min() > 0.8 and s.max() < 1.25 and np.linalg.det(m) > 0)


def _roi(volume: Volume, centre_xyz: np.ndarray, half_mm: float):
    """Index box (lo, hi) (z, y, x) of the cube centre +- half_mm (mm) clipped to the volume, or None."""
    offsets = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=np.float64) * half_mm
    idx = volume.physical_to_index(centre_xyz + offsets)
    lo = np.maximum(np.floor(idx.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 1, volume.shape)
    if np.any(hi - lo < 2):
        return None
    return lo, hi


def _roi_image(volume: Volume, lo, hi) -> sitk.Image:
    sub = volume.array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return _image(sub, volume.spacing, volume.index_to_physical(lo), volume.direction)


def _check_centre(centre_xyz, baseline: Volume) -> np.ndarray:
    centre = np.asarray(centre_xyz, dtype=np.float64)
    if centre.shape != (3,) or not np.all(np.isfinite(centre)):
        raise ValueError(
            f"`centre_xyz` must be one finite physical point (x, y, z) in mm on the baseline, got {centre_xyz!r}."
        )
    idx = baseline.physical_to_index(centre)
    if np.any(idx < -0.5) or np.any(idx > np.asarray(baseline.shape) - 0.5):
        raise ValueError(
            f"`centre_xyz`={tuple(centre.tolist())} mm lies outside the baseline volume "
            f"(voxel (x, y, z) {tuple(np.round(idx[::-1], 1).tolist())} for an image of "
            f"{tuple(int(n) for n in baseline.shape[::-1])} voxels (x, y, z)); "
            "pass the click as a physical (x, y, z) point, e.g. baseline.index_to_physical((k, j, i))."
        )
    return centre


# ---------------------------------------------------------------------------- stages
def _initialisers(fixed, moving, fixed_body: np.ndarray, moving_body: np.ndarray, centre, notes: list[str]) -> dict:
    """The global stage's candidate starts (name -> Euler transform about ``centre``): scanner
    coordinates, image centres (GEOMETRY) and, with both bodies found, body centres of mass (MOMENTS)."""
    import SimpleITK as sitk

    candidates: dict[str, sitk.Transform] = {"scanner coordinates": _euler_from(None, centre)}
    candidates["image centres (GEOMETRY)"] = _euler_from(
        sitk.CenteredTransformInitializer(
            fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
        ),
        centre,
    )
    if fixed_body.any() and moving_body.any():
        try:
            candidates["body centres of mass (MOMENTS)"] = _euler_from(
                sitk.CenteredTransformInitializer(
                    sitk.Cast(_mask_image(fixed_body, fixed), sitk.sitkFloat32),
                    sitk.Cast(_mask_image(moving_body, moving), sitk.sitkFloat32),
                    sitk.Euler3DTransform(),
                    sitk.CenteredTransformInitializerFilter.MOMENTS,
                ),
                centre,
            )
        except RuntimeError as error:  # pragma: no cover - degenerate moments
            notes.append(f"MOMENTS initialiser failed: {error}")
    return candidates


def _global(fixed_vol: Volume, moving_vol: Volume, kind: str, grid_mm: float, seed: int, threads, notes: list[str]):
    """Global stage on ~grid_mm images: returns (transform, kind_done, metric)."""
    import SimpleITK as sitk

    fixed = _prepare(fixed_vol.to_sitk(), grid_mm)
    moving = _prepare(moving_vol.to_sitk(), grid_mm)
    fixed_body = _body_mask(fixed)
    moving_body = _body_mask(moving)
    if fixed_body.sum() < 64:
        notes.append(f"no body found on the baseline (HU > {BODY_HU:g}): the metric uses the whole image")
        fixed_body = np.ones(fixed_body.shape, bool)
    mask_image = _mask_image(fixed_body, fixed)
    n_mask = int(fixed_body.sum())
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in fixed.GetSize()])

    candidates = _initialisers(fixed, moving, fixed_body, moving_body, centre, notes)
    scores = {name: _mismatch(fixed, moving, fixed_body, t) for name, t in candidates.items()}
    best = min(scores, key=lambda k: scores[k])
    initial = candidates[best]
    notes.append(f"initialiser: {best} (mean squared HU difference {scores[best]:.4g})")

    try:
        method = _method(mask_image, n_mask, _MAX_SAMPLES_GLOBAL, seed, threads)
        rigid, metric = _optimise(
            method,
            fixed,
            moving,
            initial,
            shrink=(2, 1),
            sigmas_mm=(2.0 * grid_mm, 0.0),
            step_mm=2.0 * grid_mm,
            iterations=120,
            name="rigid",
            notes=notes,
        )
    except RuntimeError as error:
        notes.append(f"rigid registration failed ({error}); using the initialiser's transform")
        return initial, "initialiser", math.nan
    better, before, after = _improved(fixed, moving, fixed_body, initial, rigid)
    if not better:
        notes.append(
            f"rigid registration made the match worse ({after:.4g} > {before:.4g}); using the initialiser's transform"
        )
        return initial, "initialiser", math.nan
    if kind == "rigid":
        return rigid, "rigid", metric

    affine0 = sitk.AffineTransform(3)
    affine0.SetCenter(rigid.GetCenter())
    affine0.SetMatrix(rigid.GetMatrix())
    affine0.SetTranslation(rigid.GetTranslation())
    try:
        method = _method(mask_image, n_mask, _MAX_SAMPLES_GLOBAL, seed, threads)
        affine, affine_metric = _optimise(
            method,
            fixed,
            moving,
            affine0,
            shrink=(1,),
            sigmas_mm=(0.0,),
            step_mm=grid_mm / 2.0,
            iterations=100,
            name="affine",
            notes=notes,
        )
    except RuntimeError as error:
        notes.append(f"affine registration failed ({error}); keeping the rigid transform")
        return rigid, "rigid", metric
    if not _affine_ok(affine):
        notes.append("affine result scales or shears by more than 25 %; keeping the rigid transform")
        return rigid, "rigid", metric
    better, before, after = _improved(fixed, moving, fixed_body, rigid, affine)
    if not better:
        notes.append(f"affine made the match worse ({after:.4g} > {before:.4g}); keeping the rigid transform")
        return rigid, "rigid", metric
    return affine, "rigid+affine", affine_metric


def _local_masks(fixed: sitk.Image, centre: np.ndarray, radius_mm: float, notes: list[str]):
    """The local stage's masks on ``fixed`` (bool (z, y, x)): (ball, inner ball, inner radius mm), or None.

    The ball of ``radius_mm`` around the click, cut to the lung region when that keeps at least
    20 % of it, and its inner part within ``min(radius_mm, max(LOCAL_MIN_RADIUS_MM, radius_mm / 3))``.
    """
    import SimpleITK as sitk

    from mkunet.segmentation.lung import lung_region

    # distance (mm) of every fixed voxel from the click
    size = fixed.GetSize()
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in reversed(size)], indexing="ij"), axis=-1).reshape(-1, 3)
    direction = np.asarray(fixed.GetDirection()).reshape(3, 3)
    pts = (grid[:, ::-1] * np.asarray(fixed.GetSpacing())) @ direction.T + np.asarray(fixed.GetOrigin())
    distance = np.sqrt(np.sum((pts - centre) ** 2, axis=1)).reshape(tuple(reversed(size)))
    ball = distance <= radius_mm
    if ball.sum() < 64:
        notes.append("local stage skipped: fewer than 64 voxels in the local ball")
        return None
    # lesions move with the lung parenchyma and slide along the chest wall: compare the
    # lung region only (lungs closed by 30 mm, so the lesion and pleural dents are in)
    region = lung_region(sitk.GetArrayViewFromImage(fixed), tuple(reversed(fixed.GetSpacing())), grid_mm=0.0)
    if np.count_nonzero(ball & region) >= 0.2 * np.count_nonzero(ball):
        ball &= region
    else:
        notes.append("local stage: less than 20 % of the ball is lung; comparing the whole ball")
    inner_radius = min(radius_mm, max(LOCAL_MIN_RADIUS_MM, radius_mm / 3.0))
    inner = ball & (distance <= inner_radius)
    if inner.sum() < 64:
        inner = ball
    return ball, inner, inner_radius


def _local(
    baseline: Volume,
    followup: Volume,
    global_tx,
    centre: np.ndarray,
    radius_mm: float,
    seed: int,
    threads,
    notes: list[str],
):
    """Local correction around ``centre``; returns (composite transform, metric) or None.

    A translation (3 levels, 8 -> 2 mm) inside the lung part of a ball of ``radius_mm``,
    then a rigid refinement inside the lung part of a smaller ball of
    ``min(radius_mm, max(LOCAL_MIN_RADIUS_MM, radius_mm / 3))``, where the lesion and its
    nearest vessels dominate. Both compose after ``global_tx`` (baseline side).
    """
    import SimpleITK as sitk

    box = _roi(baseline, centre, radius_mm)
    target = np.asarray(global_tx.TransformPoint(tuple(centre.tolist())))
    mbox = _roi(followup, target, radius_mm + 30.0)
    if box is None or mbox is None:
        notes.append("local stage skipped: the region around the click is outside the follow-up's field of view")
        return None
    fixed = _prepare(_roi_image(baseline, *box), LOCAL_GRID_MM)
    moving = _prepare(_roi_image(followup, *mbox), LOCAL_GRID_MM)
    masks = _local_masks(fixed, centre, radius_mm, notes)
    if masks is None:
        return None
    ball, inner, inner_radius = masks

    def stage(mask, initial, shrink, sigmas, step, name):
        method = _method(_mask_image(mask, fixed), int(mask.sum()), _MAX_SAMPLES_LOCAL, seed, threads)
        method.SetMovingInitialTransform(global_tx)
        return _optimise(
            method,
            fixed,
            moving,
            initial,
            shrink=shrink,
            sigmas_mm=sigmas,
            step_mm=step,
            iterations=80,
            name=name,
            notes=notes,
        )

    try:
        shift, _ = stage(ball, sitk.TranslationTransform(3), (4, 2, 1), (4.0, 2.0, 0.0), 4.0, "local translation")
        local, metric = stage(
            inner, _euler_from(shift, centre), (1,), (0.0,), 1.0, f"local rigid ({inner_radius:.0f} mm ball)"
        )
    except RuntimeError as error:
        notes.append(f"local registration failed ({error}); keeping the global transform")
        return None
    composite = sitk.CompositeTransform([global_tx, local])
    moved = np.linalg.norm(np.asarray(local.TransformPoint(tuple(centre.tolist()))) - centre)
    angles = np.degrees(np.abs([local.GetAngleX(), local.GetAngleY(), local.GetAngleZ()]))
    limit = min(0.75 * radius_mm, LOCAL_MAX_SHIFT_MM)
    if moved > limit or angles.max() > 15.0:
        notes.append(
            f"local correction refused: it moves the click {moved:.1f} mm / rotates {angles.max():.1f} deg "
            f"(limits {limit:.1f} mm, 15 deg); keeping the global transform"
        )
        return None
    better, before, after = _improved(fixed, moving, inner, global_tx, composite)
    if not better:
        notes.append(
            f"local correction made the match worse ({after:.4g} > {before:.4g}); keeping the global transform"
        )
        return None
    notes.append(f"local correction moves the click by {moved:.1f} mm")
    return composite, metric


# ---------------------------------------------------------------------------- API
def register(
    baseline: Volume,
    followup: Volume,
    *,
    kind: str = "rigid+affine",
    centre_xyz: np.ndarray | Sequence[float] | None = None,
    local_radius_mm: float = 60.0,
    grid_mm: float = 4.0,
    seed: int = 0,
    threads: int | None = None,
) -> Registration:
    """Register a follow-up CT to its baseline (fixed = baseline, moving = follow-up).

    Args:
        baseline: the scan the lesion was clicked on (fixed image), HU, (z, y, x).
        followup: the later scan (moving image), HU, (z, y, x); any grid, direction or
            field of view; it need not overlap the baseline physically.
        kind: ``"identity"`` (no registration; ``map_point`` returns its input),
            ``"rigid"`` (6 parameters), or ``"rigid+affine"`` (rigid then 12-parameter
            affine; the default).
        centre_xyz: the baseline click, physical (x, y, z) mm. When given (and ``kind`` is
            not ``"identity"``), a local translation-then-rigid stage refines the global
            transform within ``local_radius_mm`` of it, on a ~2 mm grid.
        local_radius_mm: radius (mm) of the ball the local stage compares (default 60).
        grid_mm: approximate voxel size (mm) of the global stage (default 4; the images are
            block-averaged by integer factors, so an axis already coarser keeps its spacing).
        seed: seed of the random metric sampling; the same inputs, seed and thread count
            give the same result.
        threads: number of threads SimpleITK may use (its process-wide default is set for
            the call and restored after, so do not run SimpleITK filters in other Python
            threads meanwhile); ``None`` keeps SimpleITK's default.

    Returns:
        :class:`Registration` whose ``transform`` maps **baseline** (x, y, z) mm to
        **follow-up** (x, y, z) mm. When an optimisation fails (exception, NaN, or a worse
        match than its start), the previous stage's transform is kept (at worst the
        initialiser's alignment, ``kind="initialiser"``) and ``notes`` says so.

    Raises:
        ValueError: unknown ``kind``, non-positive ``grid_mm``/``local_radius_mm``/
            ``threads``, or a ``centre_xyz`` outside the baseline.
    """
    import SimpleITK as sitk

    t0 = time.perf_counter()
    if kind not in KINDS:
        raise ValueError(f"Unknown registration kind={kind!r}; choose one of {', '.join(map(repr, KINDS))}.")
    if not isinstance(baseline, Volume) or not isinstance(followup, Volume):
        raise ValueError(
            f"register expects two mkunet.volume.Volume objects, got {type(baseline).__name__} and "
            f"{type(followup).__name__}; wrap arrays with Volume(array, spacing, origin, direction)."
        )
    if not (math.isfinite(grid_mm) and grid_mm > 0):
        raise ValueError(f"`grid_mm` must be a positive size in mm, got {grid_mm!r}.")
    if not (math.isfinite(local_radius_mm) and local_radius_mm > 0):
        raise ValueError(f"`local_radius_mm` must be a positive radius in mm, got {local_radius_mm!r}.")
    if threads is not None and (int(threads) != threads or threads < 1):
        raise ValueError(f"`threads` must be a positive integer or None, got {threads!r}.")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}.")
    centre = None if centre_xyz is None else _check_centre(centre_xyz, baseline)

    notes: list[str] = []
    if kind == "identity":
        if centre is not None:
            notes.append("kind='identity': centre_xyz ignored (no registration)")
        return Registration(sitk.Transform(3, sitk.sitkIdentity), "identity", math.nan, time.perf_counter() - t0, notes)

    previous_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    if threads is not None:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        transform, done, metric = _global(baseline, followup, kind, grid_mm, int(seed), threads, notes)
        if centre is not None:
            try:
                local = _local(baseline, followup, transform, centre, float(local_radius_mm), int(seed), threads, notes)
            except (RuntimeError, ValueError) as error:  # e.g. ITK refusing a degenerate region
                notes.append(f"local stage failed ({type(error).__name__}: {error}); keeping the global transform")
                local = None
            if local is not None:
                transform, metric = local
                done += "+local"
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous_threads)
    return Registration(transform, done, float(metric), time.perf_counter() - t0, notes)
