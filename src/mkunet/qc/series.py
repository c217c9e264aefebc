"""Per-series quality checks: :func:`check_series` (one lesion's volumes over time).

The codes (``growth_beyond_biology``, ``shrinkage_beyond_biology``, ``volume_jump``,
``centre_moved``, ``no_overlap``, ``lost_follow_up``, ``baseline_failed``) are described in
:mod:`mkunet.qc`; the thresholds in :class:`mkunet.qc.params.QCParams`. Volumes cm³, days since
the first scan, points (x, y, z) mm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mkunet.qc._numbers import equivalent_radius_mm
from mkunet.qc.params import QCParams, QCReason, QCResult

__all__ = ["check_series"]

_LN2 = math.log(2.0)


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


@dataclass
class _Series:
    """The checked inputs of :func:`check_series` (one entry per scan)."""

    t: np.ndarray  # days
    v: np.ndarray  # cm³, NaN where not found
    sig: np.ndarray  # total σ(ln V)
    reg: np.ndarray  # registration error, mm
    centres: list[Any] | None
    over: list[Any] | None
    hit: list[bool]

    def scan(self, k: int) -> str:
        return f"scan {k + 1} (day {self.t[k]:g}, {self.v[k]:.3g} cm³)"


def _registration_errors(registration_error_mm: float | Sequence[float] | None, n: int) -> np.ndarray:
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
    return reg


def _series_inputs(
    days: Sequence[float],
    volumes_cm3: Sequence[float | None],
    sigmas: Sequence[float | None] | None,
    centres_mm: Sequence[Sequence[float] | None] | None,
    registration_error_mm: float | Sequence[float] | None,
    overlaps: Sequence[float | None] | None,
    found: Sequence[bool] | None,
    p: QCParams,
) -> _Series:
    """Check :func:`check_series`' arguments and put them in one record."""
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
    reg = _registration_errors(registration_error_mm, n)
    centres = _per_scan(centres_mm, n, "centres_mm", width=3)
    over = _per_scan(overlaps, n, "overlaps")
    if found is None:
        hit = [bool(np.isfinite(x) and x > 0) for x in v]
    else:
        hit = [bool(x) for x in (_per_scan(found, n, "found") or [])]
    hit = [h and bool(np.isfinite(x) and x > 0) for h, x in zip(hit, v)]
    return _Series(t, v, sig, reg, centres, over, hit)


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
    """Quality checks of one lesion's series of volumes; see :mod:`mkunet.qc` for the codes.

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
            :func:`mkunet.qc.check_segmentation`); default: the volume is a finite number > 0.
        params: :class:`QCParams` (defaults).

    Returns:
        :class:`QCResult` for the series.

    Raises:
        ValueError: lengths that differ, days not increasing, a negative or infinite volume,
            a negative sigma or registration error.
    """
    p = params or QCParams()
    s = _series_inputs(days, volumes_cm3, sigmas, centres_mm, registration_error_mm, overlaps, found, p)
    reasons = _found_reasons(s)
    metrics: dict[str, float] = {
        "min_vdt_days": math.inf,
        "min_halving_days": math.inf,
        "max_step_ratio": 1.0,
        "max_centre_shift_mm": math.nan,
    }
    idx = [k for k in range(len(s.t)) if s.hit[k]]
    shifts: list[float] = []
    for a, b in zip(idx, idx[1:]):
        reasons.extend(_rate_reasons(s, a, b, p, metrics))
        reasons.extend(_centre_and_overlap_reasons(s, a, b, p, shifts))
    if shifts:
        metrics["max_centre_shift_mm"] = max(shifts)
    return QCResult.from_reasons(reasons, metrics)


def _found_reasons(s: _Series) -> list[QCReason]:
    """``lost_follow_up`` / ``baseline_failed``."""
    n, hit, t, v = len(s.t), s.hit, s.t, s.v
    reasons = []
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
                f"The lesion was not found on the baseline but was on {s.scan(first)}: the baseline failed, "
                "or the follow-up is another structure.",
                (0, first),
            )
        )
    return reasons


def _rate_reasons(s: _Series, a: int, b: int, p: QCParams, metrics: dict[str, float]) -> list[QCReason]:
    """Growth and shrinkage beyond biology, and the volume jump, between found scans ``a`` and ``b``."""
    dt = s.t[b] - s.t[a]
    step = math.log(s.v[b] / s.v[a])
    noise = math.sqrt(s.sig[a] ** 2 + s.sig[b] ** 2)
    rate, rate_se = step / dt, noise / dt
    pair = (a, b)
    if rate > 0:
        metrics["min_vdt_days"] = min(metrics["min_vdt_days"], _LN2 / rate)
    elif rate < 0:
        metrics["min_halving_days"] = min(metrics["min_halving_days"], -_LN2 / rate)
    metrics["max_step_ratio"] = max(metrics["max_step_ratio"], math.exp(abs(step)))
    reasons = []
    slow_end = rate - p.noise_z * rate_se
    if slow_end > _LN2 / p.min_vdt_days:
        reasons.append(
            QCReason(
                "growth_beyond_biology",
                f"From {s.scan(a)} to {s.scan(b)} the volume doubles every {_LN2 / rate:.1f} days (at most "
                f"{_LN2 / slow_end:.1f} allowing for noise): faster than a tumour grows (bound "
                f"{p.min_vdt_days:g} days).",
                pair,
            )
        )
    fast_end = rate + p.noise_z * rate_se
    if fast_end < -_LN2 / p.min_halving_days:
        reasons.append(
            QCReason(
                "shrinkage_beyond_biology",
                f"From {s.scan(a)} to {s.scan(b)} the volume halves every {-_LN2 / rate:.1f} days (at most "
                f"{-_LN2 / fast_end:.1f} allowing for noise): faster than a tumour responds (bound "
                f"{p.min_halving_days:g} days).",
                pair,
            )
        )
    allowance = p.noise_z * noise
    if step > math.log(p.max_growth_ratio) + allowance:
        reasons.append(
            QCReason(
                "volume_jump",
                f"From {s.scan(a)} to {s.scan(b)} the volume grows {math.exp(step):.1f}-fold (bound "
                f"{p.max_growth_ratio:g}x between consecutive scans).",
                pair,
            )
        )
    elif -step > math.log(p.max_shrink_ratio) + allowance:
        reasons.append(
            QCReason(
                "volume_jump",
                f"From {s.scan(a)} to {s.scan(b)} the volume falls {math.exp(-step):.1f}-fold (bound "
                f"{p.max_shrink_ratio:g}x between consecutive scans).",
                pair,
            )
        )
    return reasons


def _centre_and_overlap_reasons(s: _Series, a: int, b: int, p: QCParams, shifts: list[float]) -> list[QCReason]:
    """``centre_moved`` and ``no_overlap`` between found scans ``a`` and ``b``."""
    reasons = []
    pair = (a, b)
    r_a, r_b = equivalent_radius_mm(s.v[a]), equivalent_radius_mm(s.v[b])
    err = math.sqrt(s.reg[a] ** 2 + s.reg[b] ** 2)
    if s.centres is not None and s.centres[a] is not None and s.centres[b] is not None:
        shift = float(np.linalg.norm(s.centres[b] - s.centres[a]))
        shifts.append(shift)
        allowed = p.max_centre_shift_mm + p.registration_z * err + abs(r_b - r_a)
        if shift > allowed:
            reasons.append(
                QCReason(
                    "centre_moved",
                    f"From {s.scan(a)} to {s.scan(b)} the registered centre moves {shift:.1f} mm (allowed "
                    f"{allowed:.1f} mm: {p.max_centre_shift_mm:g} mm, {p.registration_z:g} x the registration "
                    f"error {err:.1f} mm, and the radius change {abs(r_b - r_a):.1f} mm): "
                    "probably another structure.",
                    pair,
                )
            )
    if s.over is not None and s.over[b] is not None:
        o = float(s.over[b])
        if not math.isfinite(o) or o < 0:
            raise ValueError(f"`overlaps[{b}]` must be a finite number >= 0 or None, got {s.over[b]!r}.")
        smaller = min(r_a, r_b)
        if o <= 0.0 and smaller > p.registration_z * err:
            reasons.append(
                QCReason(
                    "no_overlap",
                    f"The registered masks of {s.scan(a)} and {s.scan(b)} do not overlap, although the lesion "
                    f"(radius {smaller:.1f} mm or more) is larger than {p.registration_z:g} x the "
                    f"registration error ({err:.1f} mm): probably another structure.",
                    pair,
                )
            )
    return reasons
