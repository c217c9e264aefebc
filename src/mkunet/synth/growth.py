"""Longitudinal kinetics: scan schedules, true LVCR, volumes and repositioning.

Model (DOMAIN.md section 1): the true tumour volume follows ``V(t) = V0 exp(LVCR t)``
(t in days, LVCR per day). Non-responders grow with a volume-doubling time (VDT) drawn
log-normally (median 180 d for solid, x2 part-solid, x3 ground-glass; clipped to
30-800 d); responders (default 25 %) shrink with a halving time log-normal (median 150 d,
clipped 40-800 d), i.e. negative LVCR. Each scan renders ``V(t_k) * exp(eps_k)`` with
``eps_k ~ N(0, sigma)``, ``sigma`` = per-scan volumetric measurement noise (sigma of ln V;
default 0.07, inside the 0.06-0.10 implied by the MILD / NELSON repeatability data).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "sample_lvcr",
    "sample_schedule",
    "baseline_diameter",
    "volumes",
    "diameter_to_volume",
    "volume_to_diameter",
    "DEFAULT_MEASUREMENT_SIGMA",
]

DEFAULT_MEASUREMENT_SIGMA = 0.07
_VDT_FACTOR = {"solid": 1.0, "part-solid": 2.0, "ground-glass": 3.0}


def diameter_to_volume(d_mm):
    """Equivalent-sphere diameter (mm) -> volume (mm^3)."""
    return np.pi / 6.0 * np.asarray(d_mm, float) ** 3


def volume_to_diameter(v_mm3):
    """Volume (mm^3) -> equivalent-sphere diameter (mm)."""
    return np.cbrt(6.0 * np.asarray(v_mm3, float) / np.pi)


def sample_lvcr(rng: np.random.Generator, kind: str = "solid", responder_fraction: float = 0.25) -> tuple[float, bool]:
    """Draw a true LVCR (per day) and whether the patient is a responder (LVCR < 0)."""
    if not 0.0 <= responder_fraction <= 1.0:
        raise ValueError(f"`responder_fraction` must be in [0, 1], got {responder_fraction!r}.")
    if rng.random() < responder_fraction:
        halving = float(np.clip(rng.lognormal(np.log(150.0), 0.6), 40.0, 800.0))
        return -np.log(2.0) / halving, True
    vdt = float(np.clip(rng.lognormal(np.log(180.0 * _VDT_FACTOR.get(kind, 1.0)), 0.6), 30.0, 800.0))
    return np.log(2.0) / vdt, False


def sample_schedule(
    rng: np.random.Generator, timepoints: tuple[int, int] = (2, 5), interval_days: tuple[int, int] = (42, 84)
) -> np.ndarray:
    """Scan days since baseline: 0, then intervals uniform in ``interval_days`` +- 7 d jitter.

    Args:
        timepoints: (min, max) number of scans, inclusive.
        interval_days: (min, max) nominal interval in days.
    """
    lo, hi = int(timepoints[0]), int(timepoints[1])
    if lo < 1 or hi < lo:
        raise ValueError(f"`timepoints` must be (min, max) with 1 <= min <= max, got {timepoints!r}.")
    n = int(rng.integers(lo, hi + 1))
    gaps = rng.integers(interval_days[0], interval_days[1] + 1, n - 1) + rng.integers(-7, 8, n - 1)
    return np.concatenate([[0], np.cumsum(np.maximum(gaps, 14))]).astype(int)


def baseline_diameter(
    rng: np.random.Generator, lvcr: float, last_day: float, diameter_mm: tuple[float, float]
) -> float:
    """Baseline equivalent diameter (mm), log-uniform, such that every diameter over
    ``[0, last_day]`` stays within ``diameter_mm`` when possible (else clipped)."""
    dmin, dmax = diameter_mm
    if not 0 < dmin <= dmax:
        raise ValueError(f"`diameter_mm` must be (min, max) with 0 < min <= max, got {diameter_mm!r}.")
    factor = float(np.exp(lvcr * last_day / 3.0))  # diameter ratio last/first
    lo = dmin / min(factor, 1.0)
    hi = dmax / max(factor, 1.0)
    if lo > hi:
        return float(np.sqrt(lo * hi))
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def volumes(
    v0_mm3: float, lvcr: float, days: np.ndarray, sigma: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(true volumes V0 exp(LVCR t), rendered volumes with per-scan log-normal noise ``sigma``), mm^3."""
    if sigma < 0:
        raise ValueError(f"`measurement_sigma` must be >= 0, got {sigma!r}.")
    days = np.asarray(days, float)
    true = v0_mm3 * np.exp(lvcr * days)
    eps = rng.normal(0.0, sigma, len(days)) if sigma > 0 else np.zeros(len(days))
    return true, true * np.exp(eps)
