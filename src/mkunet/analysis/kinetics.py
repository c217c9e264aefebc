"""Tumour growth kinetics: LVCR, volume doubling time, volumetric response.

Lesions are followed from scan to scan by registration in :mod:`mkunet.segmentation` (one
tracking method); this module works on the volumes it measures.

Units: time in **days** (first scan = day 0), volumes in **cm^3**, rates **per day**.

LVCR (log volume change rate) is the weighted least-squares slope of ln V on t
(paper 5.1; SPEC "LVCR"):

.. math::

    \\hat\\beta = \\frac{\\sum_i w_i (t_i - \\bar t_w)(y_i - \\bar y_w)}{\\sum_i w_i (t_i - \\bar t_w)^2},
    \\qquad y_i = \\ln V_i,\\ \\bar t_w = \\sum w_i t_i / \\sum w_i .

It has the units of the specific growth rate SGR = ln(V2/V1)/(t2 - t1)
(Mehrara et al., *Cancer Res* 2007;67:3970) and with two scans equals it
exactly whatever the weights. VDT = ln 2 / LVCR.

**Measurement-error model.** Repeat-scan ("coffee-break") volumetry has a
volume SD roughly proportional to the volume (CV about 5.7 %, Smith et al.,
*PLoS One* 2015), 95 % limits of agreement of about +-25-28 % (MILD trial;
PMC3043750), i.e. a per-scan :math:`\\sigma(\\ln V)` of about 0.06-0.10 (DOMAIN
section 1). With independent errors of SD :math:`\\sigma_i` on each :math:`y_i`,
the WLS slope has variance

.. math::

    \\operatorname{Var}\\hat\\beta = \\frac{\\sum_i w_i^2 (t_i-\\bar t_w)^2 \\sigma_i^2}
    {\\left(\\sum_i w_i (t_i-\\bar t_w)^2\\right)^2},

which is the only honest SE with two scans (the residual is identically zero).
The default :data:`DEFAULT_SIGMA_LOG_VOLUME` = 0.08 is the middle of that range.
With three or more scans the classical residual-based WLS SE (t distribution,
n - 2 degrees of freedom) is available too (``se_method="residual"``), and
``"max"`` takes the larger of the two.

Note that interval weights (w_i = t_i - t_{i-1}, the baseline scan getting the
first interval) have no error model behind them (DOMAIN section 7.4); with a
constant sigma(ln V) the minimum-variance choice is uniform weights.

**One LVCR definition.** :func:`lvcr_from_masks` is the one place where an LVCR is
computed from masks (inference's fixed point, training's clinical LVCR, evaluation): the
volume is the IBSI mesh volume of :func:`mask_volume_cm3` (what
:func:`mkunet.analysis.shape.shape_features` reports as ``volume_cm3`` and the pipeline uses),
the weights are the caller's (default ``"interval"``), the error model is
:data:`DEFAULT_SIGMA_LOG_VOLUME`. ``se_method="auto"`` (its default) is the interval
for automatic masks: the error-model SE with two scans, the larger of the error-model
and the residual SE (``"max"``) with three or more, because the residual scatter of
automatic volumes can exceed the repeat-scan error the model assumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "DEFAULT_SIGMA_LOG_VOLUME",
    "LVCRResult",
    "lvcr",
    "LVCRFitter",
    "lvcr_table",
    "lvcr_from_masks",
    "mask_volume_cm3",
    "vdt_days",
    "growth_call",
    "GROWTH_CALLS",
    "RESPONSE_THRESHOLDS",
    "response_over_time",
    "split_by_cutoff",
]

#: Default per-scan SD of ln(volume) for repeat CT volumetry (DOMAIN section 1: 0.06-0.10).
DEFAULT_SIGMA_LOG_VOLUME = 0.08

WeightScheme = Literal["interval", "inverse_variance", "uniform"]
SEMethod = Literal["error_model", "residual", "max", "auto"]
SE_METHODS = ("error_model", "residual", "max", "auto")


class KineticsError(ValueError):
    """Bad longitudinal input; the message names the patient and the offending values."""


def _who(patient_id: str | None) -> str:
    return f"patient {patient_id!r}" if patient_id is not None else "this patient"


@dataclass(frozen=True)
class LVCRResult:
    """Log volume change rate of one lesion / patient.

    Attributes:
        lvcr_per_day: WLS slope of ln V (cm^3) on t (days), per day. > 0 growth, < 0 shrinkage.
        se: standard error of the slope (per day), by ``se_method``.
        ci_low, ci_high: two-sided confidence interval (level ``ci_level``), per day.
        vdt_days: volume doubling time ln 2 / LVCR in days; ``inf`` when LVCR == 0;
            **negative** for shrinking tumours (then -vdt is the volume halving time).
        n_scans: number of scans used.
        weights: normalised weights used (sum to 1), in scan order.
        method: weighting scheme ("interval", "inverse_variance", "uniform").
        se_method: "error_model" (normal CI), "residual" (t CI, n-2 df) or "max".
        se_error_model: SE from the measurement-error model.
        se_residual: residual-based SE (None with two scans: the fit is exact).
        sigma_log_volume: per-scan total sigma(ln V) the error-model SE used (tuple, one per scan):
            the repeat-scan error combined with the segmentation's, sqrt(sigma_err^2 + sigma_seg^2).
        sigma_segmentation: per-scan segmentation sigma(ln V) that went into it (zeros when none given).
        intercept_log_cm3: fitted ln V at day 0.
        patient_id: who (may be None).
    """

    lvcr_per_day: float
    se: float
    ci_low: float
    ci_high: float
    vdt_days: float
    n_scans: int
    weights: tuple[float, ...]
    method: str
    se_method: str
    se_error_model: float
    se_residual: float | None
    sigma_log_volume: tuple[float, ...]
    intercept_log_cm3: float
    ci_level: float = 0.95
    patient_id: str | None = None
    sigma_segmentation: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Flat dict (for a table row); tuples are dropped except ``n_scans``."""
        return {
            "patient_id": self.patient_id,
            "lvcr_per_day": self.lvcr_per_day,
            "lvcr_se": self.se,
            "lvcr_ci_low": self.ci_low,
            "lvcr_ci_high": self.ci_high,
            "vdt_days": self.vdt_days,
            "n_scans": self.n_scans,
            "lvcr_weights": self.method,
            "lvcr_se_method": self.se_method,
        }


def vdt_days(lvcr_per_day: float) -> float:
    """Volume doubling time ln 2 / LVCR (days): inf for 0, negative (halving time) for shrinkage."""
    if lvcr_per_day == 0:
        return math.inf
    return math.log(2.0) / lvcr_per_day


#: The three growth calls of :func:`growth_call`.
GROWTH_CALLS = ("growing", "shrinking", "growth not established")


def growth_call(ci_low: float | None, ci_high: float | None) -> str | None:
    """What the LVCR interval establishes: ``"growing"`` (the whole CI > 0), ``"shrinking"`` (< 0) or
    ``"growth not established"`` (the CI contains 0); None when there is no interval (NaN / None).

    Args:
        ci_low, ci_high: the LVCR confidence limits (per day).
    """
    if ci_low is None or ci_high is None or not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return None
    if ci_low > 0:
        return "growing"
    if ci_high < 0:
        return "shrinking"
    return "growth not established"


def _validate(days, volumes, patient_id):
    who = _who(patient_id)
    t = np.asarray(days, dtype=np.float64).ravel()
    v = np.asarray(volumes, dtype=np.float64).ravel()
    if t.size != v.size:
        raise KineticsError(f"{who}: {t.size} scan days but {v.size} volumes; give one volume per scan.")
    if t.size < 2:
        raise KineticsError(
            f"{who}: LVCR needs at least two scans, got {t.size} (days={t.tolist()}); "
            "exclude the patient or add a follow-up scan."
        )
    if not np.all(np.isfinite(t)) or not np.all(np.isfinite(v)):
        raise KineticsError(f"{who}: NaN or infinite value in days={t.tolist()} or volumes_cm3={v.tolist()}.")
    if np.any(np.diff(t) <= 0):
        raise KineticsError(
            f"{who}: scan days must be strictly increasing, got {t.tolist()}; sort the scans by date "
            "and merge same-day scans."
        )
    if np.any(v <= 0):
        raise KineticsError(
            f"{who}: volumes must be > 0 cm^3 to take logarithms, got {v.tolist()}; a disappeared lesion "
            "(complete response) has no log volume: stop the series before it or use response_over_time."
        )
    return t - t[0], v


def _scan_sigmas(
    n: int,
    sigmas: Sequence[float] | None,
    sigma_log_volume: float,
    sigma_segmentation: Sequence[float] | None,
    who: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-scan SDs of ln V: (total, segmentation's), each (n,); the total combines the repeat-scan error."""
    if sigmas is None:
        if not (np.isfinite(sigma_log_volume) and sigma_log_volume > 0):
            raise KineticsError(f"sigma_log_volume must be > 0, got {sigma_log_volume!r}.")
        sig = np.full(n, float(sigma_log_volume))
    else:
        sig = np.asarray(sigmas, dtype=np.float64).ravel()
        if sig.size != n or not np.all(np.isfinite(sig)) or np.any(sig <= 0):
            raise KineticsError(
                f"{who}: `sigmas` must be {n} positive SDs of ln V (one per scan), got {np.asarray(sigmas).tolist()}."
            )
    if sigma_segmentation is None:
        seg = np.zeros(n)
    else:
        seg = np.asarray(sigma_segmentation, dtype=np.float64).ravel()
        if seg.size != n or not np.all(np.isfinite(seg)) or np.any(seg < 0):
            raise KineticsError(
                f"{who}: `sigma_segmentation` must be {n} SDs of ln V >= 0 (one per scan), got "
                f"{np.asarray(sigma_segmentation).tolist()}; use 0 for a scan without an estimate."
            )
        if np.any(seg > 0):
            sig = np.sqrt(sig**2 + seg**2)
    return sig, seg


def _scan_weights(weights: str, t: np.ndarray, sig: np.ndarray, common_sigma: bool, who: str) -> np.ndarray:
    """Unnormalised per-scan weights of the scheme ``weights`` (days for "interval"), (n,)."""
    if weights == "interval":
        dt = np.diff(t)
        return np.concatenate([dt[:1], dt])
    if weights == "inverse_variance":
        if common_sigma:
            raise KineticsError(
                f"{who}: weights='inverse_variance' needs `sigmas` or `sigma_segmentation` (per-scan SD of "
                "ln V); with one common sigma it is identical to weights='uniform'."
            )
        return 1.0 / sig**2
    if weights == "uniform":
        return np.ones(t.size)
    raise KineticsError(f"weights must be 'interval', 'inverse_variance' or 'uniform', got {weights!r}.")


def _weighted_fit(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, sig: np.ndarray
) -> tuple[float, float, float, float | None]:
    """WLS line of ln V (``y``) on days: (slope per day, intercept, error-model SE, residual SE or None).

    ``w`` sums to 1. The residual SE needs >= 3 scans (None with two).
    """
    n = t.size
    t_bar = float(np.sum(w * t))
    y_bar = float(np.sum(w * y))
    dtc = t - t_bar
    sxx = float(np.sum(w * dtc**2))
    slope = float(np.sum(w * dtc * (y - y_bar)) / sxx)
    intercept = y_bar - slope * t_bar
    if n == 2:  # exact: avoid rounding noise so that two scans give SGR to the last digit
        slope = float((y[1] - y[0]) / (t[1] - t[0]))
        intercept = float(y[0])
    se_err = float(math.sqrt(np.sum(w**2 * dtc**2 * sig**2)) / sxx)
    se_res: float | None = None
    if n >= 3:
        resid = y - (intercept + slope * t)
        s2 = float(np.sum(w * resid**2) / (n - 2))  # model Var(e_i) = s2 / w_i
        se_res = math.sqrt(s2 / sxx)
    return slope, intercept, se_err, se_res


def _se_and_quantile(
    se_method: str, se_err: float, se_res: float | None, n: int, ci_level: float, who: str
) -> tuple[float, float]:
    """The SE the resolved ``se_method`` picks and the normal or t quantile of its interval."""
    from scipy import stats

    alpha = 1.0 - ci_level
    if se_method == "error_model":
        return se_err, float(stats.norm.ppf(1 - alpha / 2))
    if se_res is None:
        raise KineticsError(
            f"{who}: se_method={se_method!r} needs >= 3 scans (with two scans the residual is zero); "
            "use se_method='error_model'."
        )
    if se_method == "residual" or se_res >= se_err:
        return se_res, float(stats.t.ppf(1 - alpha / 2, n - 2))
    return se_err, float(stats.norm.ppf(1 - alpha / 2))


def lvcr(
    days: Sequence[float],
    volumes_cm3: Sequence[float],
    weights: WeightScheme = "interval",
    sigmas: Sequence[float] | None = None,
    patient_id: str | None = None,
    sigma_log_volume: float = DEFAULT_SIGMA_LOG_VOLUME,
    se_method: SEMethod = "error_model",
    ci_level: float = 0.95,
    sigma_segmentation: Sequence[float] | None = None,
) -> LVCRResult:
    """Log volume change rate: weighted least-squares slope of ln V on t.

    Args:
        days: scan times in days (any origin; shifted so the first scan is day 0), strictly increasing.
        volumes_cm3: tumour volumes in cm^3, > 0, one per scan.
        weights: ``"interval"`` (w_i = t_i - t_{i-1}, the baseline scan gets the first
            interval; the paper's choice), ``"inverse_variance"`` (w_i = 1/sigma_i^2,
            needs ``sigmas`` or ``sigma_segmentation``) or ``"uniform"`` (ordinary least squares).
        sigmas: per-scan SD of ln V (≈ the volume's coefficient of variation), used for
            inverse-variance weights and for the error-model SE. Default: ``sigma_log_volume``
            for every scan.
        patient_id: named in error messages and stored in the result.
        sigma_log_volume: per-scan sigma(ln V) of the measurement-error model when
            ``sigmas`` is not given (default 0.08; see the module docstring for sources).
        se_method: ``"error_model"`` (propagated measurement error, normal CI; default),
            ``"residual"`` (classical WLS SE from the residuals, t CI with n - 2 df;
            needs >= 3 scans), ``"max"`` (the larger of the two, t CI when residual wins) or
            ``"auto"`` (``"error_model"`` with two scans, ``"max"`` with three or more: the
            interval for automatic masks, default of :func:`lvcr_from_masks`). The result's
            ``se_method`` is the resolved one.
        ci_level: confidence level of the interval (0 < level < 1).
        sigma_segmentation: per-scan SD of ln V of the *segmentation* (e.g.
            ``Segmentation.uncertainty.sigma_log_volume``, :mod:`mkunet.segmentation.uncertainty`), >= 0, one
            per scan. Independent of the repeat-scan error, so each scan's total is
            sigma_i = sqrt(sigma_err,i^2 + sigma_seg,i^2), used by the error-model
            SE and by inverse-variance weights. None or zeros give exactly the interval without it.

    Returns:
        :class:`LVCRResult` (per day).

    Raises:
        KineticsError (ValueError): fewer than two scans, non-increasing days, non-positive
            volumes, mismatched lengths, NaN, bad options.

    Examples:
        >>> r = lvcr([0, 60], [1.0, 2.0])
        >>> round(r.lvcr_per_day * 60, 6) == round(math.log(2), 6)
        True
    """
    who = _who(patient_id)
    t, v = _validate(days, volumes_cm3, patient_id)
    n = t.size
    if not 0 < ci_level < 1:
        raise KineticsError(f"ci_level must be in (0, 1), got {ci_level!r}.")
    sig, seg = _scan_sigmas(n, sigmas, sigma_log_volume, sigma_segmentation, who)
    w = _scan_weights(weights, t, sig, sigmas is None and sigma_segmentation is None, who)
    if se_method not in SE_METHODS:
        raise KineticsError(f"se_method must be one of {', '.join(SE_METHODS)}, got {se_method!r}.")
    if se_method == "auto":
        se_method = "max" if n >= 3 else "error_model"
    w = w / w.sum()
    slope, intercept, se_err, se_res = _weighted_fit(t, np.log(v), w, sig)
    se, q = _se_and_quantile(se_method, se_err, se_res, n, ci_level, who)
    return LVCRResult(
        lvcr_per_day=slope,
        se=se,
        ci_low=slope - q * se,
        ci_high=slope + q * se,
        vdt_days=vdt_days(slope),
        n_scans=n,
        weights=tuple(float(x) for x in w),
        method=weights,
        se_method=se_method,
        se_error_model=se_err,
        se_residual=se_res,
        sigma_log_volume=tuple(float(s) for s in sig),
        intercept_log_cm3=float(intercept),
        ci_level=ci_level,
        patient_id=patient_id,
        sigma_segmentation=tuple(float(x) for x in seg),
    )


def mask_volume_cm3(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Tumour volume (cm^3) of one mask by the LVCR's volume measure: the IBSI mesh volume.

    The same number as ``mkunet.analysis.shape.shape_features(mask, spacing)["volume_cm3"]``
    (marching cubes at level 0.5, cropped to the mask), without the other features.
    0.0 for an empty mask.

    Args:
        mask: bool (or 0/1) array (z, y, x).
        spacing: voxel size (z, y, x) in mm.
    """
    from mkunet.analysis.shape import mesh, mesh_volume_area

    mask = np.asarray(mask) != 0
    if not mask.any():
        return 0.0
    verts, faces = mesh(mask, [float(s) for s in spacing])
    return mesh_volume_area(verts, faces)[0] / 1000.0


def lvcr_from_masks(
    days: Sequence[float],
    masks: Sequence[np.ndarray],
    spacings: Sequence[Sequence[float]],
    weights: WeightScheme = "interval",
    se_method: SEMethod = "auto",
    patient_id: str | None = None,
    **kwargs: Any,
) -> LVCRResult:
    """The one LVCR from masks: mesh volumes (:func:`mask_volume_cm3`) and :func:`lvcr`.

    Used by inference (the fixed point of :func:`mkunet.segmentation.infer.segment_timepoints`),
    training (the clinical LVCR from ground-truth masks) and evaluation.

    Args:
        days: scan days, strictly increasing.
        masks: one tumour mask (z, y, x) per scan, none empty.
        spacings: one voxel size (z, y, x) in mm per scan (or one per scan of anything
            with a ``spacing`` attribute, e.g. the :class:`~mkunet.volume.Volume`).
        weights: as in :func:`lvcr` (the user's ``lvcr_weights``).
        se_method: as in :func:`lvcr`; default ``"auto"`` (error model with two scans, the
            larger of error model and residual SE with three or more: automatic masks).
        patient_id: named in errors.
        **kwargs: passed to :func:`lvcr` (sigma_log_volume, ci_level, sigmas).

    Raises:
        KineticsError: mismatched lengths, an empty mask, or what :func:`lvcr` raises.
    """
    masks = list(masks)
    spacings = [getattr(s, "spacing", s) for s in spacings]
    if len(masks) != len(spacings):
        raise KineticsError(f"{_who(patient_id)}: {len(masks)} masks but {len(spacings)} spacings.")
    vols = [mask_volume_cm3(m, s) for m, s in zip(masks, spacings)]
    return lvcr(days, vols, weights=weights, se_method=se_method, patient_id=patient_id, **kwargs)


class LVCRFitter:
    """sklearn/lifelines-style wrapper around :func:`lvcr` (validate in ``__init__``, ``fit`` returns self).

    Attributes (after ``fit``):
        result_: the :class:`LVCRResult`.
        lvcr_: slope per day. se_: its SE. confidence_interval_: (low, high). vdt_days_: VDT.
    """

    def __init__(
        self,
        weights: WeightScheme = "interval",
        sigma_log_volume: float = DEFAULT_SIGMA_LOG_VOLUME,
        se_method: SEMethod = "error_model",
        ci_level: float = 0.95,
    ) -> None:
        if weights not in ("interval", "inverse_variance", "uniform"):
            raise ValueError(f"weights must be 'interval', 'inverse_variance' or 'uniform', got {weights!r}.")
        if se_method not in SE_METHODS:
            raise ValueError(f"se_method must be one of {', '.join(SE_METHODS)}, got {se_method!r}.")
        if not sigma_log_volume > 0:
            raise ValueError(f"sigma_log_volume must be > 0, got {sigma_log_volume!r}.")
        self.weights, self.sigma_log_volume, self.se_method, self.ci_level = (
            weights,
            sigma_log_volume,
            se_method,
            ci_level,
        )

    def fit(self, days, volumes_cm3, sigmas=None, patient_id: str | None = None) -> LVCRFitter:
        """Fit one series (days, volumes in cm^3); returns self."""
        self.result_ = lvcr(
            days,
            volumes_cm3,
            weights=self.weights,
            sigmas=sigmas,
            patient_id=patient_id,
            sigma_log_volume=self.sigma_log_volume,
            se_method=self.se_method,
            ci_level=self.ci_level,
        )
        self.lvcr_ = self.result_.lvcr_per_day
        self.se_ = self.result_.se
        self.confidence_interval_ = (self.result_.ci_low, self.result_.ci_high)
        self.vdt_days_ = self.result_.vdt_days
        return self

    def predict_volume(self, days) -> np.ndarray:
        """Fitted volume (cm^3) at ``days`` (days since the first scan)."""
        r = self.result_
        return np.exp(r.intercept_log_cm3 + r.lvcr_per_day * np.asarray(days, dtype=np.float64))


def lvcr_table(
    df,
    patient_col: str = "patient_id",
    days_col: str = "days",
    volume_col: str = "volume_cm3",
    **kwargs: Any,
):
    """LVCR per patient from a long table (one row per patient x scan).

    Args:
        df: pandas DataFrame.
        patient_col, days_col, volume_col: column names (days since any origin; volume in cm^3).
        **kwargs: passed to :func:`lvcr` (weights, sigma_log_volume, se_method, ci_level).

    Returns:
        DataFrame indexed by patient with lvcr_per_day, lvcr_se, lvcr_ci_low, lvcr_ci_high,
        vdt_days, n_scans, lvcr_weights, lvcr_se_method.

    Raises:
        ValueError naming the missing column or the patient whose series is invalid.
    """
    import pandas as pd

    for col in (patient_col, days_col, volume_col):
        if col not in df.columns:
            raise ValueError(f"lvcr_table: column {col!r} not found; the table has {list(df.columns)}.")
    rows = []
    for pid, g in df.sort_values([patient_col, days_col]).groupby(patient_col, sort=True):
        rows.append(lvcr(g[days_col].to_numpy(), g[volume_col].to_numpy(), patient_id=str(pid), **kwargs).as_dict())
    return pd.DataFrame(rows).set_index("patient_id")


# ----------------------------------------------------------------------------- response categories
#: Volumetric equivalents of RECIST 1.1 for a sphere (V ∝ D^3): PR = -30 % diameter ->
#: 0.7^3 - 1 = -65.7 % volume; PD = +20 % diameter -> 1.2^3 - 1 = +72.8 % volume (DOMAIN section 2,
#: AJNR table; Eisenhauer et al., Eur J Cancer 2009;45:228 for RECIST 1.1).
RESPONSE_THRESHOLDS = {"pr": -0.65, "pd": 0.73}


def response_over_time(
    days: Sequence[float],
    volumes_cm3: Sequence[float],
    immune: bool = True,
    pr_threshold: float = RESPONSE_THRESHOLDS["pr"],
    pd_threshold: float = RESPONSE_THRESHOLDS["pd"],
    confirm_increase: float = 0.0,
    cr_volume_cm3: float = 0.0,
    patient_id: str | None = None,
) -> list[str]:
    """Volumetric response category at every scan (RECIST-equivalent thresholds, iRECIST confirmation).

    * baseline (first scan): ``"baseline"``.
    * CR: volume <= ``cr_volume_cm3`` (lesion gone).
    * PD: volume >= (1 + ``pd_threshold``) x nadir (smallest earlier volume, baseline included);
      takes precedence over PR (as in RECIST).
    * PR: volume <= (1 + ``pr_threshold``) x baseline.
    * SD: anything else.

    With ``immune=True`` (iRECIST; Seymour et al., *Lancet Oncol* 2017;18:e143) categories are
    prefixed "i": a first PD is ``"iUPD"`` (unconfirmed); it becomes ``"iCPD"`` (confirmed) at the
    next assessment when the volume has increased further, by more than ``confirm_increase`` (a
    fraction; default 0: any further increase — the volumetric stand-in for iRECIST's further
    >= 5 mm in the diameter sum) relative to the iUPD volume. A next assessment showing iSD, iPR or
    iCR resets the iUPD (the following PD is again unconfirmed); one that still meets PD without a
    further increase stays iUPD. iCPD is final (later scans stay iCPD).

    Args:
        days: scan days, strictly increasing (only the order is used).
        volumes_cm3: volumes (>= 0; 0 means the lesion disappeared).
        immune: iRECIST-style categories with confirmation (True) or plain RECIST-style (False).
        pr_threshold, pd_threshold: fractional volume change for PR (vs baseline) and PD (vs nadir).
        confirm_increase: further fractional increase over the iUPD volume needed for iCPD.
        cr_volume_cm3: volume at or below which the lesion counts as gone.
        patient_id: named in error messages.

    Returns:
        list of str, one per scan.
    """
    who = _who(patient_id)
    t = np.asarray(days, dtype=np.float64).ravel()
    v = np.asarray(volumes_cm3, dtype=np.float64).ravel()
    if t.size != v.size or t.size == 0:
        raise KineticsError(f"{who}: need one volume per scan day, got {t.size} days and {v.size} volumes.")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
        raise KineticsError(f"{who}: NaN in days={t.tolist()} or volumes_cm3={v.tolist()}.")
    if np.any(np.diff(t) <= 0):
        raise KineticsError(f"{who}: scan days must be strictly increasing, got {t.tolist()}.")
    if np.any(v < 0) or v[0] <= 0:
        raise KineticsError(f"{who}: volumes must be >= 0 with a positive baseline, got {v.tolist()}.")
    prefix = "i" if immune else ""
    out = ["baseline"]
    nadir = v[0]
    pending_volume: float | None = None  # volume at an unconfirmed iUPD
    confirmed = False
    for k in range(1, v.size):
        vk = v[k]
        if confirmed:
            out.append("iCPD")
        elif vk <= cr_volume_cm3:
            cat = "CR"
        elif vk >= (1 + pd_threshold) * nadir:
            cat = "PD"
        elif vk <= (1 + pr_threshold) * v[0]:
            cat = "PR"
        else:
            cat = "SD"
        if not confirmed:
            if not immune:
                out.append(cat)
            elif pending_volume is not None and vk > pending_volume * (1 + confirm_increase):
                out.append("iCPD")
                confirmed = True
            elif cat == "PD":
                out.append("iUPD")
                if pending_volume is None:
                    pending_volume = vk
            else:
                out.append(prefix + cat)
                pending_volume = None  # iSD / iPR / iCR reset the unconfirmed progression
        nadir = min(nadir, vk)
    return out


def split_by_cutoff(values, cutoff: float | str = "median", name: str = "value"):
    """Dichotomise ``values`` into high (> cut-off) / low, with an explicit cut-off.

    Args:
        values: 1-D array-like or pandas Series (e.g. LVCR per day, IES).
        cutoff: ``"median"`` (the cohort median; default) or a number in the values' units.
            There is deliberately no hidden default such as the paper's 0.15/day (a VDT of 4.6
            days, DOMAIN section 7.1); choosing an "optimal" cut-off on the same data inflates the
            hazard ratio (Faraggi & Simon 1996) — pre-specify it.
        name: named in error messages.

    Returns:
        (bool array/Series ``high``, float cut-off used).
    """
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=np.float64))
    if series.isna().any():
        raise ValueError(f"{name}: {int(series.isna().sum())} missing values; cannot dichotomise.")
    if isinstance(cutoff, str):
        if cutoff != "median":
            raise ValueError(f"cutoff for {name} must be 'median' or a number, got {cutoff!r}.")
        value = float(series.median())
    else:
        value = float(cutoff)
        if not np.isfinite(value):
            raise ValueError(f"cutoff for {name} must be finite, got {cutoff!r}.")
    return series > value, value
