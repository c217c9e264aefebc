"""Per-scan quality checks: :func:`check_segmentation` and the measurements it uses.

The codes (``empty``, ``too_large_for_click``, ``crop_limit``, ``outside_lungs``,
``large_contact``, ``uncertain``) are described in :mod:`mkunet.qc`; the thresholds in
:class:`mkunet.qc.params.QCParams`. Arrays (z, y, x); spacings (z, y, x) mm; points (x, y, z) mm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mkunet.constants import LUNG_HU
from mkunet.qc._numbers import ball_cm3, equivalent_radius_mm, finite
from mkunet.qc.params import QCParams, QCReason, QCResult
from mkunet.segmentation.lung import lung_region
from mkunet.volume import Volume

if TYPE_CHECKING:
    from mkunet.segmentation.infer import Segmentation

__all__ = [
    "check_segmentation",
    "click_inscribed_radius_mm",
    "lung_envelope",
    "outside_lung_fraction",
    "contact_fraction",
]


def click_inscribed_radius_mm(
    volume: Volume,
    click_zyx: Sequence[float] | np.ndarray,
    *,
    search_mm: float = 3.0,
    smooth_mm: float = 1.0,
    soft_tissue_hu: float = LUNG_HU,
    max_radius_mm: float = 60.0,
) -> float:
    """Radius (mm) of the largest ball of soft tissue centred within ``search_mm`` of the click.

    Soft tissue is the CT smoothed by a Gaussian of SD ``smooth_mm`` above ``soft_tissue_hu``;
    the radius is its Euclidean distance map in mm (distance from a voxel centre to the
    nearest voxel that is not soft tissue), maximised over the voxels within
    ``max(search_mm, largest voxel edge)`` of the click. The work is done on a crop of
    ``max_radius_mm`` around the click, sub-sampled to about 1 mm where the voxels are
    finer; the crop's faces do not count as edges, so the radius is capped near
    ``max_radius_mm``.

    Args:
        volume: the CT, HU (z, y, x).
        click_zyx: the click, continuous array indices (z, y, x).
        search_mm: how far from the click the ball's centre may lie (mm).
        smooth_mm: smoothing SD (mm), 0 for none.
        soft_tissue_hu: threshold (HU) above which the smoothed image is soft tissue.
        max_radius_mm: largest radius measured (mm); larger balls read as about this.

    Returns:
        the radius in mm, 0.0 when no soft tissue lies within reach of the click.
    """
    from scipy import ndimage

    sp = np.asarray(volume.spacing, np.float64)
    shape = np.asarray(volume.shape)
    click = np.asarray(click_zyx, np.float64)
    search = max(float(search_mm), float(sp.max()))
    step = np.maximum(1, np.floor(1.0 / sp)).astype(int)  # about 1 mm where the voxels are finer
    half = np.ceil((search + max_radius_mm) / sp).astype(int) + 1
    centre = np.clip(np.rint(click).astype(int), 0, shape - 1)
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, shape)
    sub = volume.array[tuple(slice(a, b, s) for a, b, s in zip(lo, hi, step))]
    sub_sp = sp * step
    if smooth_mm > 0:
        sub = ndimage.gaussian_filter(sub.astype(np.float32), smooth_mm / sub_sp)
    soft = sub > soft_tissue_hu
    if not soft.any():
        return 0.0
    dist = ndimage.distance_transform_edt(soft, sampling=sub_sp)
    grids = np.ogrid[tuple(slice(0, n) for n in sub.shape)]
    d2 = sum(((g * s + a - c) * v) ** 2 for g, s, a, c, v in zip(grids, step, lo, click, sp))
    near = d2 <= search**2
    if not near.any():
        return 0.0
    return float(min(dist[near].max(), max_radius_mm))


def outside_lung_fraction(
    mask: np.ndarray,
    volume: Volume,
    *,
    closing_mm: float = 30.0,
    fill: str = "volume",
    region: np.ndarray | None = None,
) -> float:
    """Fraction of ``mask``'s voxels outside the lungs' smooth envelope.

    The envelope is :func:`mkunet.segmentation.lung.lung_region` (the lungs found by HU, closed
    by a ball of ``closing_mm``, holes filled by ``fill``).

    Args:
        mask: bool (z, y, x) on ``volume``'s grid.
        volume: the CT, HU.
        closing_mm, fill: see :func:`mkunet.segmentation.lung.lung_region`.
        region: the envelope, when already computed (bool (z, y, x)).

    Returns:
        the fraction in [0, 1]; NaN when the mask is empty or no lung is found (a crop
        without lung gives no information).
    """
    mask = np.asarray(mask, bool)
    n = int(np.count_nonzero(mask))
    if n == 0:
        return math.nan
    if region is None:
        region = lung_envelope(volume, closing_mm=closing_mm, fill=fill)
    if not region.any():
        return math.nan
    return float(np.count_nonzero(mask & ~region)) / n


def lung_envelope(volume: Volume, *, closing_mm: float = 30.0, fill: str = "volume") -> np.ndarray:
    """The lungs' envelope of ``volume``: bool (z, y, x) on its own grid.

    :func:`mkunet.segmentation.lung.lung_region` (the lungs found by HU, closed by a ball of
    ``closing_mm``, holes filled by ``fill``) computed in the canonical orientation
    (:mod:`mkunet.segmentation.orientation`: its slice-wise steps take array axis 0 as axial) and
    brought back exactly onto ``volume``'s grid, so a coronal or sagittal scan gets the same envelope.
    """
    from mkunet.segmentation.orientation import to_canonical

    canonical, back = to_canonical(volume)
    region = lung_region(canonical.array, canonical.spacing, closing_mm=closing_mm, fill=fill)
    return back.to_input(region)


def contact_fraction(mask: np.ndarray, volume: Volume, *, soft_tissue_hu: float = LUNG_HU) -> float:
    """Fraction of the one-voxel shell around ``mask`` (26-connected) that is soft tissue.

    A nodule free in the lung is surrounded by lung (about 0); one on the pleura or the
    mediastinum touches it over part of its surface; a piece of heart, liver or chest wall cut
    out by the lesion model's shape rules is mostly surrounded by more of the same tissue.

    Args:
        mask: bool (z, y, x) on ``volume``'s grid.
        volume: the CT, HU.
        soft_tissue_hu: above this (HU) a shell voxel is soft tissue.

    Returns:
        the fraction in [0, 1]; NaN for an empty mask.
    """
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    found = ndimage.find_objects(mask.astype(np.uint8))
    if not found:
        return math.nan
    sl = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(found[0], mask.shape))
    sub = mask[sl]
    shell = ndimage.binary_dilation(sub, structure=np.ones((3, 3, 3), bool)) & ~sub
    if not shell.any():
        return math.nan
    return float(np.count_nonzero(shell & (volume.array[sl] > soft_tissue_hu))) / float(np.count_nonzero(shell))


def _touches_crop(mask: np.ndarray, box: Sequence[tuple[int, int]], shape: Sequence[int]) -> bool:
    """True when the mask reaches a face of ``box`` (half-open voxels) that is not the scan's border."""
    for axis, ((lo, hi), n) in enumerate(zip(box, shape)):
        if lo > 0 and np.take(mask, lo, axis=axis).any():
            return True
        if hi < n and np.take(mask, hi - 1, axis=axis).any():
            return True
    return False


def _holds(mask: np.ndarray, point_zyx: np.ndarray) -> bool:
    """True when the voxel that contains ``point_zyx`` (continuous indices) is in ``mask``."""
    k = np.rint(np.asarray(point_zyx, np.float64)).astype(int)
    if np.any(k < 0) or np.any(k >= np.asarray(mask.shape)):
        return False
    return bool(mask[tuple(k)])


def check_segmentation(
    seg: Segmentation,
    *,
    click_mm: Sequence[float] | None = None,
    params: QCParams | None = None,
    lung_envelope: np.ndarray | None = None,
) -> QCResult:
    """Quality checks of one segmentation (one scan, one lesion); see :mod:`mkunet.qc` for the codes.

    Args:
        seg: the :class:`mkunet.segmentation.infer.Segmentation` to check (its ``mask`` (z, y, x),
            ``volume``, ``lesion``, ``touches_roi_edge``, ``uncertainty``, ``notes``).
        click_mm: the click (x, y, z) mm (DICOM LPS) the lesion was segmented from. Without it
            the lesion model's core is used for ``too_large_for_click``, which catches less: a
            contour that grew into the heart has its core in the heart.
        params: :class:`QCParams` (defaults).
        lung_envelope: the lungs' envelope (bool (z, y, x) on the scan's grid), when the caller
            has it (e.g. several lesions on one scan); computed otherwise.

    Returns:
        :class:`QCResult` with the reasons and the ``metrics`` measured.

    Raises:
        ValueError: ``click_mm`` is not three finite numbers, or ``lung_envelope`` has another
            shape than the scan.
    """
    p = params or QCParams()
    volume = seg.volume
    mask = np.asarray(seg.mask, bool)
    vol_cm3 = float(np.count_nonzero(mask)) * volume.voxel_volume_mm3 / 1000.0
    metrics: dict[str, float] = {
        "volume_cm3": vol_cm3,
        "inscribed_radius_mm": math.nan,
        "click_volume_ratio": math.nan,
        "outside_lung_fraction": math.nan,
        "sigma_log_volume": math.nan,
        "contact_fraction": math.nan,
    }
    if click_mm is not None:
        click = np.asarray(click_mm, np.float64).ravel()
        if click.shape != (3,) or not np.all(np.isfinite(click)):
            raise ValueError(f"`click_mm` must be three finite numbers (x, y, z) mm, got {click_mm!r}.")
    if lung_envelope is not None and np.shape(lung_envelope) != volume.shape:
        raise ValueError(f"`lung_envelope` has shape {np.shape(lung_envelope)}, the scan {volume.shape} (z, y, x).")
    if vol_cm3 == 0.0:
        return QCResult.from_reasons([QCReason("empty", "No tumour was found: the mask is empty.")], metrics)
    found = [
        _click_reason(seg, mask, vol_cm3, click_mm, p, metrics),
        _crop_reason(seg, mask, vol_cm3),
        _outside_reason(mask, volume, vol_cm3, lung_envelope, p, metrics),
        _contact_reason(mask, volume, p, metrics),
        _uncertainty_reason(seg, p, metrics),
    ]
    return QCResult.from_reasons([r for r in found if r is not None], metrics)


def _click_reason(
    seg: Segmentation,
    mask: np.ndarray,
    vol_cm3: float,
    click_mm: Sequence[float] | None,
    p: QCParams,
    metrics: dict[str, float],
) -> QCReason | None:
    """``too_large_for_click``: the volume against the largest soft-tissue ball at the click (or core)."""
    volume = seg.volume
    lesion = seg.lesion
    core_zyx = None if lesion is None else np.asarray(lesion.core_zyx, np.float64)
    search = max(p.click_search_mm, max(volume.spacing))
    floor_mm = 0.5 * max(volume.spacing)  # the smallest ball the grid resolves: one voxel

    def radius_at(zyx: np.ndarray) -> float:
        return click_inscribed_radius_mm(
            volume,
            zyx,
            search_mm=p.click_search_mm,
            smooth_mm=p.click_smooth_mm,
            soft_tissue_hu=p.soft_tissue_hu,
            max_radius_mm=equivalent_radius_mm(vol_cm3) + 1.0,
        )

    r_in, where = math.nan, ""
    if click_mm is not None:
        click_zyx = volume.physical_to_index(np.asarray(click_mm, np.float64))
        r_in, where = radius_at(click_zyx), "the click"
        if core_zyx is not None and not _holds(mask, click_zyx):
            # the mask does not hold the click: the lesion model moved away from it (a click on a
            # vessel or the wall beside a nodule) and the lesion is the one at its core, when that
            # is the larger ball
            r_core = radius_at(core_zyx)
            if r_core > r_in:
                r_in, where = r_core, "the lesion's core (the click lies outside the mask)"
    elif core_zyx is not None:
        r_in, where = radius_at(core_zyx), "the lesion's core"
    if not where:
        return None
    ball = ball_cm3(max(r_in, floor_mm))
    ratio = vol_cm3 / ball
    metrics["inscribed_radius_mm"] = r_in
    metrics["click_volume_ratio"] = ratio
    if ratio <= p.max_click_volume_ratio:
        return None
    if r_in > 0:
        msg = (
            f"The mask ({vol_cm3:.3g} cm³) is {ratio:.0f} times the largest ball of soft tissue at "
            f"{where} (radius {r_in:.1f} mm, {ball:.3g} cm³; bound {p.max_click_volume_ratio:g}x): "
            "the contour has probably grown into a neighbouring structure."
        )
    else:
        msg = (
            f"There is no soft tissue (above {p.soft_tissue_hu:g} HU) within {search:.1f} mm of "
            f"{where}, yet the mask holds {vol_cm3:.3g} cm³ ({ratio:.0f} times a one-voxel ball; bound "
            f"{p.max_click_volume_ratio:g}x): the contour is not the lesion at {where}."
        )
    return QCReason("too_large_for_click", msg)


def _crop_reason(seg: Segmentation, mask: np.ndarray, vol_cm3: float) -> QCReason | None:
    """``crop_limit``: the mask reaches the largest window or a face of its crop."""
    lesion = seg.lesion
    at_window = any("largest window" in n for n in seg.notes) or (
        lesion is not None and any("largest window" in n for n in lesion.notes)
    )
    box = lesion.crop_box if lesion is not None else seg.roi_box
    at_crop = seg.touches_roi_edge or (box is not None and _touches_crop(mask, box, seg.volume.shape))
    if not (at_window or at_crop):
        return None
    what = "the largest window the lesion model allows" if at_window else "the edge of its crop"
    return QCReason(
        "crop_limit",
        f"The mask ({vol_cm3:.3g} cm³) reaches {what}: it may be cut, or a leak that only the crop stopped.",
    )


def _outside_reason(
    mask: np.ndarray,
    volume: Volume,
    vol_cm3: float,
    envelope: np.ndarray | None,
    p: QCParams,
    metrics: dict[str, float],
) -> QCReason | None:
    """``outside_lungs``: most of the mask outside the lungs' envelope."""
    region = envelope
    if region is None:
        region = lung_envelope(volume, closing_mm=p.lung_closing_mm, fill=p.lung_fill)
    outside = outside_lung_fraction(mask, volume, region=np.asarray(region, bool))
    metrics["outside_lung_fraction"] = outside
    if not (finite(outside) and outside > p.max_outside_fraction):
        return None
    return QCReason(
        "outside_lungs",
        f"{100 * outside:.0f} % of the mask ({vol_cm3:.3g} cm³) lies outside the lungs' envelope "
        f"(bound {100 * p.max_outside_fraction:.0f} %): it is probably heart, mediastinum, chest wall "
        "or abdomen, not a lung tumour.",
    )


def _contact_reason(mask: np.ndarray, volume: Volume, p: QCParams, metrics: dict[str, float]) -> QCReason | None:
    """``large_contact``: most of the surface against other soft tissue."""
    contact = contact_fraction(mask, volume, soft_tissue_hu=p.soft_tissue_hu)
    metrics["contact_fraction"] = contact
    if not (finite(contact) and contact > p.max_contact_fraction):
        return None
    return QCReason(
        "large_contact",
        f"{100 * contact:.0f} % of the mask's surface touches other soft tissue (bound "
        f"{100 * p.max_contact_fraction:.0f} %): it is probably cut out of a larger structure (heart, "
        "great vessels, chest wall, diaphragm) rather than a lesion in the lung.",
    )


def _uncertainty_reason(seg: Segmentation, p: QCParams, metrics: dict[str, float]) -> QCReason | None:
    """``uncertain``: the segmentation's own σ(ln V) is very large."""
    if seg.uncertainty is None:
        return None
    sigma = float(seg.uncertainty.sigma_log_volume)
    metrics["sigma_log_volume"] = sigma
    if not (finite(sigma) and sigma > p.max_sigma_log_volume):
        return None
    return QCReason(
        "uncertain",
        f"The segmentation's own volume uncertainty is very large: σ(ln V) = {sigma:.2f} "
        f"(the volume is uncertain by a factor {math.exp(sigma):.2f}; bound {p.max_sigma_log_volume:g}).",
    )
