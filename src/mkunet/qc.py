"""Automatic quality control: which segmentations and which lesion series a person should look at.

A researcher running hundreds of patients cannot look at every contour. The checks here name
the few that are probably wrong, each with a reason a reader understands (numbers and units),
so that they can be kept out of the statistics until someone has looked. Nothing here changes
a mask or a volume.

Two entry points:

* :func:`check_segmentation`: one :class:`mkunet.segmentation.infer.Segmentation` (one scan);
* :func:`check_series`: one lesion's volumes over time (days, cm³), with optionally the
  per-scan σ(ln V), the registered centres, the overlaps of registered masks and whether
  the lesion was found on each scan.

Both return a :class:`QCResult`: ``status`` ``"ok"`` or ``"review"``, the ``reasons``
(:class:`QCReason`: a stable ``code``, a ``message``, the ``timepoints`` involved) and the
measured ``metrics``. :meth:`QCResult.merge` combines a series' result with its scans'.

Per-scan checks (codes):

``empty``
    the mask is empty (no tumour found).
``too_large_for_click``
    the mask is far larger than the lesion at the click: its volume over the volume of the
    largest ball of soft tissue (smoothed HU above :data:`mkunet.constants.LUNG_HU`) centred
    within a few mm of the click (the lesion's inscribed radius there). A click on a 6 mm
    nodule whose contour grew into the heart gives a ratio in the hundreds.
``crop_limit``
    the mask reaches the largest window the lesion model allows, or a face of its crop that
    is not the scan's border: it may be cut, or a leak that only the window stopped.
``outside_lungs``
    most of the mask lies outside the lungs' smooth envelope
    (:func:`mkunet.segmentation.lung.lung_region`: the lungs closed by a ball, 3-D holes
    filled); a lung tumour lies in or on a lung, the heart, mediastinum, chest wall and
    abdomen do not.
``large_contact``
    most of the one-voxel shell around the mask is soft tissue: the mask was cut out of a
    larger structure (heart, great vessels, chest wall, diaphragm) by the shape rules.
``uncertain``
    the segmentation's own σ(ln V) (:mod:`mkunet.segmentation.uncertainty`) is very large.

Not checked (yet): the share of the lesion that the star constraint or the opening cut (the
lesion model does not report it), and a ground-glass rim left outside a part-solid lesion's
solid core (the main miss of the benchmark).

Series checks (codes; consecutive found scans are compared):

``growth_beyond_biology``
    a volume doubling time under :attr:`QCParams.min_vdt_days`, beyond the noise;
``shrinkage_beyond_biology``
    a volume halving time under :attr:`QCParams.min_halving_days`, beyond the noise;
``volume_jump``
    a volume ratio between consecutive scans above a bound, whatever the interval;
``centre_moved``
    the registered centre moves more than a few mm beyond the registration's error and what
    the change of size allows;
``no_overlap``
    the registered masks do not overlap at all although the lesion is larger than the
    registration's error;
``lost_follow_up`` / ``baseline_failed``
    the baseline was found and a follow-up was not (a complete response, or a failure),
    or the reverse.

Every threshold is a field of :class:`QCParams`, documented with its source or the measured
distribution it was chosen from (``benchmarks/qc.py``).

Conventions: arrays (z, y, x); spacings (z, y, x) mm; points (x, y, z) mm (DICOM LPS);
volumes cm³; days since the first scan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mkunet.analysis.kinetics import DEFAULT_SIGMA_LOG_VOLUME
from mkunet.constants import LUNG_HU
from mkunet.segmentation.lung import lung_region
from mkunet.volume import Volume

if TYPE_CHECKING:
    from mkunet.segmentation.infer import Segmentation

__all__ = [
    "QC_STATUSES",
    "SCAN_CODES",
    "SERIES_CODES",
    "QCParams",
    "QCReason",
    "QCResult",
    "check_segmentation",
    "check_series",
    "click_inscribed_radius_mm",
    "outside_lung_fraction",
    "contact_fraction",
]

QC_STATUSES = ("ok", "review")
"""The two QC statuses: ``"ok"`` (no check fired) and ``"review"`` (a person should look)."""

SCAN_CODES: dict[str, str] = {
    "empty": "no tumour found: the mask is empty",
    "too_large_for_click": "the mask is far larger than the lesion at the click",
    "crop_limit": "the mask reaches the crop limit of the lesion model",
    "outside_lungs": "most of the mask lies outside the lungs",
    "large_contact": "most of the mask's surface touches other soft tissue",
    "uncertain": "the segmentation's own volume uncertainty is very large",
}
"""Per-scan reason codes of :func:`check_segmentation` -> a short meaning."""

SERIES_CODES: dict[str, str] = {
    "growth_beyond_biology": "growth faster than a tumour can grow",
    "shrinkage_beyond_biology": "shrinkage faster than a tumour can respond",
    "volume_jump": "a volume ratio between consecutive scans above the bound",
    "centre_moved": "the registered centre moved more than the registration error allows",
    "no_overlap": "the registered masks of consecutive scans do not overlap",
    "lost_follow_up": "the baseline was found but a follow-up was not",
    "baseline_failed": "a follow-up was found but the baseline was not",
}
"""Series reason codes of :func:`check_series` -> a short meaning."""

_LUNG_FILLS = ("slice", "volume")


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class QCParams:
    """Thresholds of the quality checks (mm, cm³, days, HU), each with its source.

    Per-scan checks (:func:`check_segmentation`):

    Attributes:
        max_click_volume_ratio: ``too_large_for_click`` fires when the mask's volume exceeds
            this many times the volume of the largest soft-tissue ball at the click
            (:func:`click_inscribed_radius_mm`; when the mask does not hold the click's voxel, the
            lesion model moved away from it and the larger of that ball and the one at the lesion's
            core counts). Measured with ``benchmarks/qc.py`` (demo grid, seed 0, 12 patients x 3
            scans, truth clicks and clicks 5-15 mm beside the tumour): segmentations with Dice
            >= 0.8 have a median of 2.5 and reach 19 from a truth click (an irregular tumour whose
            click voxel is shallow) and 40 from a click on a vessel entering the tumour; contours
            grown into the heart or chest wall are in the hundreds to thousands. 20 keeps the
            truth clicks' good contours.
        click_search_mm: the ball's centre is searched within this distance of the click
            (mm; at least the largest voxel edge): a click on the partial-volume edge of a
            small nodule still finds it.
        click_smooth_mm: Gaussian SD (mm) of the smoothing before the soft-tissue threshold
            (noise of 20-40 HU, DOMAIN section 3, would otherwise pit the ball's surface).
        soft_tissue_hu: above this (HU) is soft tissue (:data:`mkunet.constants.LUNG_HU`,
            halfway between parenchyma and water).
        max_outside_fraction: ``outside_lungs`` fires when more than this fraction of the mask
            lies outside the lung envelope. Measured (``benchmarks/qc.py``): segmentations with Dice
            >= 0.8 have at most 0.13 outside (synthetic) and 0.00 / 0.08 (pyradiomics lung1 /
            lung2); contours of heart, mediastinum and chest wall 0.82-1.0. The IBSI phantom's
            359 cm³ GTV, which invades the mediastinum, has 0.84 outside (its one-click contour,
            Dice 0.78, is flagged). 0.6 lies between.
        lung_closing_mm: radius (mm) of the ball that closes the lungs
            (:func:`mkunet.segmentation.lung.lung_region`'s default 30 mm: it fills dents shallower
            than about this, e.g. a pleural or mediastinal tumour).
        lung_fill: ``"volume"`` (default) fills only 3-D holes of the closed lungs, so the
            heart and mediastinum stay outside (they open into the neck and abdomen);
            ``"slice"`` fills the holes of each axial slice, which takes the heart in wherever the
            closed lungs ring it (too lenient for this check).
        max_sigma_log_volume: ``uncertain`` fires above this σ(ln V) of the segmentation
            (:attr:`mkunet.segmentation.uncertainty.VolumeUncertainty.sigma_log_volume`).
            Repeat-CT volumetry is 0.06-0.10 (DOMAIN section 1); the public real tumours give
            0.02-0.12. Measured with ``benchmarks/qc.py`` (demo grid, seed 0, 12 patients): 25 of
            the 32 segmentations with Dice >= 0.8 are below 0.15 and 27 below 0.21 (the others are
            0.4-1 cm³ tumours on 2.6 x 2.6 x 5 mm voxels, whose volume is indeed uncertain); the
            contours of vessels and wall next to the tumour that the other checks pass are
            0.26-0.38. 0.25 (a volume uncertain by a factor 1.28) lies between.
        max_contact_fraction: ``large_contact`` fires when more than this fraction of the
            one-voxel shell around the mask is soft tissue (:func:`contact_fraction`): the mask
            is cut out of a larger structure (heart, great vessels, chest wall, diaphragm).
            Measured (same run): at most 0.26 for the synthetic segmentations with Dice >= 0.8
            (juxtapleural tumours), 0.46-1 for the contours of heart, chest wall and diaphragm
            (pieces of heart the envelope takes in give 0.48); on the real tumours 0.05 (lung1)
            and 0.44 (lung2, a large tumour on the mediastinum: a thin margin). 0.45 passes both.

    Series checks (:func:`check_series`):

    Attributes:
        min_vdt_days: ``growth_beyond_biology`` fires when the doubling time between two
            consecutive scans is below this (days), beyond the noise. DOMAIN section 1: VDT
            "well under about 20 days is beyond biology"; the fastest NSCLC categories are
            "< 100 d" (Frelinghuysen), hyperprogression (Kas, JAMA Oncol 2020) is about
            0.0135 /day, a VDT of 51 days.
        min_halving_days: ``shrinkage_beyond_biology`` fires when the halving time is below
            this (days), beyond the noise. The fastest regressions measured in NSCLC,
            under chemoradiation, are about 1-2 % of the volume a day (Kupelian et al., IJROBP
            2005; check at the source), halving times of 35-70 days; the synthetic generator's
            responders halve in 40-800 days. 7 days leaves a factor 5 for the exceptional
            response while still catching a 130 cm³ heart contour followed by the true
            1 cm³ nodule six weeks later.
        noise_z: the rate checks allow this many SDs of the rate's noise (one-sided;
            2 = 97.7 %), from the per-scan σ(ln V): ``sqrt(sigma_error^2 + sigma_seg^2)``.
        sigma_error: repeat-scan σ(ln V) of volumetry (default
            :data:`mkunet.analysis.kinetics.DEFAULT_SIGMA_LOG_VOLUME` = 0.08; DOMAIN section 1:
            95 % limits of about -25 % to +28 %).
        max_growth_ratio: ``volume_jump`` fires when a volume is more than this many times the
            previous one (beyond the noise), whatever the interval. 10x (3.3 doublings) takes
            over a year at the median VDT of resected NSCLC (191 d, Mackintosh, Respirology
            2014) and 110 days at the "fast" bound of 100 d; the synthetic generator (VDT >= 30
            d, intervals <= 91 d) reaches at most 8x.
        max_shrink_ratio: ``volume_jump`` also fires when a volume is less than 1 / this of
            the previous one. 50 (a loss of 98 %): a near-complete response usually leaves no
            lesion to find (``lost_follow_up``); a 2 % residual of a large lesion is more often
            a contour on a vessel or a scar.
        max_centre_shift_mm: ``centre_moved`` fires when the registered centre moves more
            than this (mm) plus ``registration_z`` x the registration's error plus the change
            of the equivalent radius (a lesion growing on one side moves its centroid by at
            most that). "A few mm": the 2 mm growth threshold of Fleischner 2017 and the 1.5 mm
            of Lung-RADS (DOMAIN section 1) are diameter changes, 1-2 voxels on most CT.
        registration_z: the registration's error (mm, given per call) counts this many times.
    """

    max_click_volume_ratio: float = 20.0
    click_search_mm: float = 3.0
    click_smooth_mm: float = 1.0
    soft_tissue_hu: float = LUNG_HU
    max_outside_fraction: float = 0.6
    lung_closing_mm: float = 30.0
    lung_fill: str = "volume"
    max_sigma_log_volume: float = 0.25
    max_contact_fraction: float = 0.45
    min_vdt_days: float = 20.0
    min_halving_days: float = 7.0
    noise_z: float = 2.0
    sigma_error: float = DEFAULT_SIGMA_LOG_VOLUME
    max_growth_ratio: float = 10.0
    max_shrink_ratio: float = 50.0
    max_centre_shift_mm: float = 5.0
    registration_z: float = 2.0

    def __post_init__(self) -> None:
        positive = (
            "max_click_volume_ratio",
            "click_search_mm",
            "lung_closing_mm",
            "max_sigma_log_volume",
            "min_vdt_days",
            "min_halving_days",
        )
        for name in positive:
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                raise ValueError(f"QCParams.{name} must be a finite number > 0, got {value!r}.")
        non_negative = ("click_smooth_mm", "noise_z", "sigma_error", "max_centre_shift_mm", "registration_z")
        for name in non_negative:
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise ValueError(f"QCParams.{name} must be a finite number >= 0, got {value!r}.")
        for name in ("max_growth_ratio", "max_shrink_ratio"):
            value = getattr(self, name)
            if not _finite(value) or value <= 1:
                raise ValueError(f"QCParams.{name} must be a finite ratio > 1, got {value!r}.")
        if not _finite(self.soft_tissue_hu) or not -1000.0 < self.soft_tissue_hu < 300.0:
            raise ValueError(
                "QCParams.soft_tissue_hu must be between air (-1000 HU) and bone (300 HU), "
                f"got {self.soft_tissue_hu!r}."
            )
        for name in ("max_outside_fraction", "max_contact_fraction"):
            value = getattr(self, name)
            if not _finite(value) or not 0.0 <= value < 1.0:
                raise ValueError(f"QCParams.{name} must be a fraction in [0, 1), got {value!r}.")
        if self.lung_fill not in _LUNG_FILLS:
            raise ValueError(f"QCParams.lung_fill must be one of {_LUNG_FILLS}, got {self.lung_fill!r}.")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class QCReason:
    """Why a result needs review.

    Attributes:
        code: a short stable identifier (:data:`SCAN_CODES`, :data:`SERIES_CODES`).
        message: one sentence for a reader, with the numbers and units.
        timepoints: the scans involved (0-based indices in the series; for a pair, both).
            Empty for a per-scan check, whose caller knows the scan.
    """

    code: str
    message: str
    timepoints: tuple[int, ...] = ()


@dataclass(eq=False)
class QCResult:
    """The outcome of a quality check.

    Attributes:
        status: ``"ok"`` (no check fired) or ``"review"``.
        reasons: the :class:`QCReason` of each check that fired (empty when ok).
        metrics: what was measured (names below), for tables and benchmarks; NaN where a
            check could not run. :func:`check_segmentation`: ``volume_cm3``,
            ``inscribed_radius_mm``, ``click_volume_ratio``, ``outside_lung_fraction``,
            ``contact_fraction``, ``sigma_log_volume``. :func:`check_series`: ``min_vdt_days`` (the shortest
            doubling time between consecutive scans, inf when none grows),
            ``min_halving_days``, ``max_step_ratio`` (the largest consecutive ratio, >= 1, either
            way), ``max_centre_shift_mm``.
    """

    status: str = "ok"
    reasons: list[QCReason] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in QC_STATUSES:
            raise ValueError(f"QCResult.status must be one of {QC_STATUSES}, got {self.status!r}.")
        if self.status == "ok" and self.reasons:
            raise ValueError(f"QCResult.status is 'ok' but there are reasons: {[r.code for r in self.reasons]}.")

    @classmethod
    def from_reasons(cls, reasons: Sequence[QCReason], metrics: dict[str, float] | None = None) -> QCResult:
        """``"review"`` when there is any reason, else ``"ok"``."""
        return cls("review" if reasons else "ok", list(reasons), dict(metrics or {}))

    @property
    def ok(self) -> bool:
        """True when no check fired."""
        return self.status == "ok"

    @property
    def codes(self) -> list[str]:
        """The reason codes, in order."""
        return [r.code for r in self.reasons]

    def describe(self) -> str:
        """The reasons' messages joined by ``"; "`` (``""`` when ok): a ``qc_reasons`` table cell."""
        return "; ".join(r.message for r in self.reasons)

    def at(self, timepoint: int) -> QCResult:
        """The reasons that involve scan ``timepoint`` (a series' result, per scan)."""
        return QCResult.from_reasons([r for r in self.reasons if timepoint in r.timepoints])

    def merge(self, *others: QCResult) -> QCResult:
        """One result from several: every reason, ``"review"`` when any is; metrics of later ones win."""
        reasons = list(self.reasons)
        metrics = dict(self.metrics)
        for other in others:
            reasons.extend(other.reasons)
            metrics.update(other.metrics)
        return QCResult.from_reasons(reasons, metrics)

    def __repr__(self) -> str:
        return f"QCResult(status={self.status!r}, codes={self.codes})"


# ----------------------------------------------------------------------------- measurements


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
        region = lung_region(volume.array, volume.spacing, closing_mm=closing_mm, fill=fill)
    if not region.any():
        return math.nan
    return float(np.count_nonzero(mask & ~region)) / n


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


def _ball_cm3(radius_mm: float) -> float:
    return 4.0 / 3.0 * math.pi * radius_mm**3 / 1000.0


def _radius_mm(volume_cm3: float) -> float:
    """Equivalent-sphere radius (mm) of a volume in cm³."""
    return (3.0 * max(volume_cm3, 0.0) * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)


# ----------------------------------------------------------------------------- per scan


def check_segmentation(
    seg: Segmentation,
    *,
    click_mm: Sequence[float] | None = None,
    params: QCParams | None = None,
    lung_envelope: np.ndarray | None = None,
) -> QCResult:
    """Quality checks of one segmentation (one scan, one lesion); see the module doc for the codes.

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
    reasons: list[QCReason] = []

    # the volume against the lesion at the click
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
            max_radius_mm=_radius_mm(vol_cm3) + 1.0,
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
    if where:
        ball = _ball_cm3(max(r_in, floor_mm))
        ratio = vol_cm3 / ball
        metrics["inscribed_radius_mm"] = r_in
        metrics["click_volume_ratio"] = ratio
        if ratio > p.max_click_volume_ratio:
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
            reasons.append(QCReason("too_large_for_click", msg))

    # the crop limit
    at_window = any("largest window" in n for n in seg.notes) or (
        lesion is not None and any("largest window" in n for n in lesion.notes)
    )
    box = lesion.crop_box if lesion is not None else seg.roi_box
    at_crop = seg.touches_roi_edge or (box is not None and _touches_crop(mask, box, volume.shape))
    if at_window or at_crop:
        what = "the largest window the lesion model allows" if at_window else "the edge of its crop"
        reasons.append(
            QCReason(
                "crop_limit",
                f"The mask ({vol_cm3:.3g} cm³) reaches {what}: it may be cut, or a leak that only the crop stopped.",
            )
        )

    # outside the lungs
    region = lung_envelope
    if region is None:
        region = lung_region(volume.array, volume.spacing, closing_mm=p.lung_closing_mm, fill=p.lung_fill)
    outside = outside_lung_fraction(mask, volume, region=np.asarray(region, bool))
    metrics["outside_lung_fraction"] = outside
    if _finite(outside) and outside > p.max_outside_fraction:
        reasons.append(
            QCReason(
                "outside_lungs",
                f"{100 * outside:.0f} % of the mask ({vol_cm3:.3g} cm³) lies outside the lungs' envelope "
                f"(bound {100 * p.max_outside_fraction:.0f} %): it is probably heart, mediastinum, chest wall "
                "or abdomen, not a lung tumour.",
            )
        )

    # the surface against other soft tissue
    contact = contact_fraction(mask, volume, soft_tissue_hu=p.soft_tissue_hu)
    metrics["contact_fraction"] = contact
    if _finite(contact) and contact > p.max_contact_fraction:
        reasons.append(
            QCReason(
                "large_contact",
                f"{100 * contact:.0f} % of the mask's surface touches other soft tissue (bound "
                f"{100 * p.max_contact_fraction:.0f} %): it is probably cut out of a larger structure (heart, "
                "great vessels, chest wall, diaphragm) rather than a lesion in the lung.",
            )
        )

    # the segmentation's own uncertainty
    if seg.uncertainty is not None:
        sigma = float(seg.uncertainty.sigma_log_volume)
        metrics["sigma_log_volume"] = sigma
        if _finite(sigma) and sigma > p.max_sigma_log_volume:
            reasons.append(
                QCReason(
                    "uncertain",
                    f"The segmentation's own volume uncertainty is very large: σ(ln V) = {sigma:.2f} "
                    f"(the volume is uncertain by a factor {math.exp(sigma):.2f}; bound {p.max_sigma_log_volume:g}).",
                )
            )
    return QCResult.from_reasons(reasons, metrics)


# ----------------------------------------------------------------------------- per series


def _per_scan(values: Any, n: int, name: str, *, width: int | None = None) -> list[Any] | None:
    if values is None:
        return None
    out = list(values)
    if len(out) != n:
        raise ValueError(f"`{name}` must have one entry per scan ({n}), got {len(out)}: {values!r}.")
    if width is not None:
        for k, v in enumerate(out):
            if v is None:
                continue
            arr = np.asarray(v, np.float64).ravel()
            if arr.shape != (width,) or not np.all(np.isfinite(arr)):
                raise ValueError(f"`{name}[{k}]` must be {width} finite numbers or None, got {v!r}.")
            out[k] = arr
    return out


def check_series(
    days: Sequence[float],
    volumes_cm3: Sequence[float | None],
    *,
    sigmas: Sequence[float | None] | None = None,
    centres_mm: Sequence[Sequence[float] | None] | None = None,
    registration_error_mm: float | Sequence[float] | None = None,
    overlaps: Sequence[float | None] | None = None,
    found: Sequence[bool] | None = None,
    params: QCParams | None = None,
) -> QCResult:
    """Quality checks of one lesion's series of volumes; see the module doc for the codes.

    Consecutive *found* scans are compared pairwise (a scan where the lesion was not found is
    skipped, and reported as ``lost_follow_up`` or ``baseline_failed``). Each reason names the
    scans it involves (``QCReason.timepoints``, 0-based), so :meth:`QCResult.at` gives the
    reasons of one scan; a pair's reason belongs to both its scans (which one is wrong the
    numbers cannot tell).

    Args:
        days: scan times (days since the first scan), strictly increasing.
        volumes_cm3: the lesion's volume per scan (cm³); 0, NaN or None where it was not found.
        sigmas: per-scan segmentation σ(ln V) (``Segmentation.uncertainty.sigma_log_volume``),
            None entries for unknown (0); combined with ``params.sigma_error`` as
            ``sqrt(sigma_error^2 + sigma^2)``.
        centres_mm: per-scan lesion centre (x, y, z) mm in one frame (the baseline's, after
            registration), None where unknown.
        registration_error_mm: the registration's error (mm): one value for every follow-up,
            or one per scan (the baseline's is usually 0); None = 0.
        overlaps: per scan, the overlap of its registered mask with the previous found scan's
            (any measure that is 0 for disjoint masks, e.g. the fraction of the smaller mask);
            the first entry is ignored; None entries for unknown.
        found: per scan, whether the lesion was found (e.g. a non-empty mask that passed
            :func:`check_segmentation`); default: the volume is a finite number > 0.
        params: :class:`QCParams` (defaults).

    Returns:
        :class:`QCResult` for the series.

    Raises:
        ValueError: lengths that differ, days not increasing, a negative or infinite volume,
            a negative sigma or registration error.
    """
    p = params or QCParams()
    t = np.asarray(days, np.float64).ravel()
    n = t.size
    if n == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"`days` must be one finite number per scan (at least one), got {days!r}.")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"`days` must be strictly increasing, got {list(days)!r}.")
    vols_in = _per_scan(volumes_cm3, n, "volumes_cm3") or []
    v = np.array([math.nan if x is None else float(x) for x in vols_in])
    if np.any(v < 0) or np.any(np.isinf(v)):
        raise ValueError(f"`volumes_cm3` must be >= 0 (0, NaN or None: not found), got {list(volumes_cm3)!r}.")
    sig_in = _per_scan(sigmas, n, "sigmas")
    s_seg = np.zeros(n) if sig_in is None else np.array([0.0 if x is None else float(x) for x in sig_in])
    if np.any(~np.isfinite(s_seg)) or np.any(s_seg < 0):
        raise ValueError(f"`sigmas` must be finite numbers >= 0 or None, got {sigmas!r}.")
    sig = np.sqrt(p.sigma_error**2 + s_seg**2)
    if registration_error_mm is None:
        reg = np.zeros(n)
    elif np.ndim(registration_error_mm) == 0:
        reg = np.full(n, float(registration_error_mm))  # type: ignore[arg-type]
        reg[0] = 0.0
    else:
        reg_in = _per_scan(registration_error_mm, n, "registration_error_mm")
        reg = np.array([0.0 if x is None else float(x) for x in reg_in or []])
    if np.any(~np.isfinite(reg)) or np.any(reg < 0):
        raise ValueError(f"`registration_error_mm` must be finite and >= 0, got {registration_error_mm!r}.")
    centres = _per_scan(centres_mm, n, "centres_mm", width=3)
    over = _per_scan(overlaps, n, "overlaps")
    if found is None:
        hit = [bool(np.isfinite(x) and x > 0) for x in v]
    else:
        hit = [bool(x) for x in (_per_scan(found, n, "found") or [])]
    hit = [h and bool(np.isfinite(x) and x > 0) for h, x in zip(hit, v)]

    reasons: list[QCReason] = []
    metrics: dict[str, float] = {
        "min_vdt_days": math.inf,
        "min_halving_days": math.inf,
        "max_step_ratio": 1.0,
        "max_centre_shift_mm": math.nan,
    }

    def scan(k: int) -> str:
        return f"scan {k + 1} (day {t[k]:g}, {v[k]:.3g} cm³)"

    # found / not found
    if hit[0]:
        for k in range(1, n):
            if not hit[k]:
                reasons.append(
                    QCReason(
                        "lost_follow_up",
                        f"The lesion was found on the baseline ({v[0]:.3g} cm³) but not on scan {k + 1} (day "
                        f"{t[k]:g}): a complete response, or a failed segmentation or registration.",
                        (0, k),
                    )
                )
    elif any(hit[1:]):
        first = next(k for k in range(1, n) if hit[k])
        reasons.append(
            QCReason(
                "baseline_failed",
                f"The lesion was not found on the baseline but was on {scan(first)}: the baseline failed, "
                "or the follow-up is another structure.",
                (0, first),
            )
        )

    ln2 = math.log(2.0)
    idx = [k for k in range(n) if hit[k]]
    shifts: list[float] = []
    for a, b in zip(idx, idx[1:]):
        dt = t[b] - t[a]
        step = math.log(v[b] / v[a])
        noise = math.sqrt(sig[a] ** 2 + sig[b] ** 2)
        rate, rate_se = step / dt, noise / dt
        pair = (a, b)
        if rate > 0:
            metrics["min_vdt_days"] = min(metrics["min_vdt_days"], ln2 / rate)
        elif rate < 0:
            metrics["min_halving_days"] = min(metrics["min_halving_days"], -ln2 / rate)
        metrics["max_step_ratio"] = max(metrics["max_step_ratio"], math.exp(abs(step)))
        # growth and shrinkage rates beyond biology, beyond the noise
        slow_end = rate - p.noise_z * rate_se
        if slow_end > ln2 / p.min_vdt_days:
            reasons.append(
                QCReason(
                    "growth_beyond_biology",
                    f"From {scan(a)} to {scan(b)} the volume doubles every {ln2 / rate:.1f} days (at most "
                    f"{ln2 / slow_end:.1f} allowing for noise): faster than a tumour grows (bound "
                    f"{p.min_vdt_days:g} days).",
                    pair,
                )
            )
        fast_end = rate + p.noise_z * rate_se
        if fast_end < -ln2 / p.min_halving_days:
            reasons.append(
                QCReason(
                    "shrinkage_beyond_biology",
                    f"From {scan(a)} to {scan(b)} the volume halves every {-ln2 / rate:.1f} days (at most "
                    f"{-ln2 / fast_end:.1f} allowing for noise): faster than a tumour responds (bound "
                    f"{p.min_halving_days:g} days).",
                    pair,
                )
            )
        # the ratio whatever the interval
        allowance = p.noise_z * noise
        if step > math.log(p.max_growth_ratio) + allowance:
            reasons.append(
                QCReason(
                    "volume_jump",
                    f"From {scan(a)} to {scan(b)} the volume grows {math.exp(step):.1f}-fold (bound "
                    f"{p.max_growth_ratio:g}x between consecutive scans).",
                    pair,
                )
            )
        elif -step > math.log(p.max_shrink_ratio) + allowance:
            reasons.append(
                QCReason(
                    "volume_jump",
                    f"From {scan(a)} to {scan(b)} the volume falls {math.exp(-step):.1f}-fold (bound "
                    f"{p.max_shrink_ratio:g}x between consecutive scans).",
                    pair,
                )
            )
        # the registered centre
        r_a, r_b = _radius_mm(v[a]), _radius_mm(v[b])
        err = math.sqrt(reg[a] ** 2 + reg[b] ** 2)
        if centres is not None and centres[a] is not None and centres[b] is not None:
            shift = float(np.linalg.norm(centres[b] - centres[a]))
            shifts.append(shift)
            allowed = p.max_centre_shift_mm + p.registration_z * err + abs(r_b - r_a)
            if shift > allowed:
                reasons.append(
                    QCReason(
                        "centre_moved",
                        f"From {scan(a)} to {scan(b)} the registered centre moves {shift:.1f} mm (allowed "
                        f"{allowed:.1f} mm: {p.max_centre_shift_mm:g} mm, {p.registration_z:g} x the registration "
                        f"error {err:.1f} mm, and the radius change {abs(r_b - r_a):.1f} mm): "
                        "probably another structure.",
                        pair,
                    )
                )
        # registered masks that should overlap
        if over is not None and over[b] is not None:
            o = float(over[b])  # type: ignore[arg-type]
            if not math.isfinite(o) or o < 0:
                raise ValueError(f"`overlaps[{b}]` must be a finite number >= 0 or None, got {over[b]!r}.")
            smaller = min(r_a, r_b)
            if o <= 0.0 and smaller > p.registration_z * err:
                reasons.append(
                    QCReason(
                        "no_overlap",
                        f"The registered masks of {scan(a)} and {scan(b)} do not overlap, although the lesion "
                        f"(radius {smaller:.1f} mm or more) is larger than {p.registration_z:g} x the "
                        f"registration error ({err:.1f} mm): probably another structure.",
                        pair,
                    )
                )
    if shifts:
        metrics["max_centre_shift_mm"] = max(shifts)
    return QCResult.from_reasons(reasons, metrics)
