"""QC thresholds (:class:`QCParams`) and results (:class:`QCReason`, :class:`QCResult`).

The reason codes of the per-scan checks (:data:`SCAN_CODES`, :mod:`mkunet.qc.scan`) and of the
per-series checks (:data:`SERIES_CODES`, :mod:`mkunet.qc.series`) are listed here, each with a
short meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mkunet.analysis.kinetics import DEFAULT_SIGMA_LOG_VOLUME
from mkunet.checks import check_number
from mkunet.constants import AIR_HU, BONE_HU, LUNG_HU

__all__ = ["QC_STATUSES", "SCAN_CODES", "SERIES_CODES", "QCParams", "QCReason", "QCResult"]

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
        own = type(self).__name__
        for name in (
            "max_click_volume_ratio",
            "click_search_mm",
            "lung_closing_mm",
            "max_sigma_log_volume",
            "min_vdt_days",
            "min_halving_days",
        ):
            check_number(own, name, getattr(self, name), low=0.0, low_open=True)
        for name in ("click_smooth_mm", "noise_z", "sigma_error", "max_centre_shift_mm", "registration_z"):
            check_number(own, name, getattr(self, name), low=0.0)
        for name in ("max_growth_ratio", "max_shrink_ratio"):
            check_number(own, name, getattr(self, name), low=1.0, low_open=True)
        check_number(
            own, "soft_tissue_hu", self.soft_tissue_hu, low=AIR_HU, high=BONE_HU, low_open=True, high_open=True
        )
        for name in ("max_outside_fraction", "max_contact_fraction"):
            check_number(own, name, getattr(self, name), low=0.0, high=1.0, high_open=True)
        if self.lung_fill not in _LUNG_FILLS:
            raise ValueError(f"QCParams.lung_fill must be one of {_LUNG_FILLS}, got {self.lung_fill!r}.")


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
        """The reasons' messages, each without its final full stop, joined by ``"; "`` (``""`` when
        ok): a ``qc_reasons`` table cell."""
        return "; ".join(r.message.rstrip(".") for r in self.reasons)

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
