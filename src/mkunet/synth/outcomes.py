"""Clinical covariates and outcomes drawn from a known model.

Overall survival follows a Cox proportional-hazards model with a Weibull baseline,

.. math:: h(t \\mid x) = \\lambda \\rho t^{\\rho - 1} \\exp(\\beta^\\top x),

sampled by inversion, ``T = (-ln U / (lambda exp(beta'x)))^(1/rho)``. Covariates ``x``:

* ``lvcr_z``: true LVCR standardised with fixed reference constants
  (``(lvcr - 0.002) / 0.004``, per day),
* ``irregularity_z``: (1 - sphericity) standardised (``(irr - 0.12) / 0.06``),
* ``age_per10``: (age - 65) / 10,
* ``stage``: I..IV coded 0..3.

Censoring: administrative (uniform 1-5 years of follow-up) and random drop-out
(exponential, mean 3000 d). PD-L1 TPS category (< 1 %, 1-49 %, >= 50 %) is drawn from a
latent normal (the score ``0.45 irregularity_z + 0.25 lvcr_z``, standardised within the
cohort, times ``a = sqrt(0.45^2 + 0.25^2)``, plus ``sqrt(1 - a^2)`` N(0, 1) noise) cut at
the normal quantiles giving 48 / 30 / 22 % (DOMAIN.md section 6, EXPRESS); CD8 density (cells/mm^2) is log-normal with
log-mean increasing with sphericity; response = responder when the true LVCR < 0.
All coefficients are returned by :meth:`OutcomeModel.to_dict` and written to truth.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

__all__ = ["OutcomeModel", "sample_clinical", "simulate_outcomes", "covariate_matrix", "COX_COVARIATES"]

COX_COVARIATES = ("lvcr_z", "irregularity_z", "age_per10", "stage")
_STAGES = ("I", "II", "III", "IV")


@dataclass
class OutcomeModel:
    """Parameters of the outcome model (see module docstring)."""

    beta: dict[str, float] = field(
        default_factory=lambda: {"lvcr_z": 0.5, "irregularity_z": 0.3, "age_per10": 0.2, "stage": 0.35}
    )
    weibull_shape: float = 1.2
    weibull_scale_days: float = 900.0  # lambda = 1 / scale^shape
    lvcr_ref: tuple[float, float] = (0.002, 0.004)  # mean, sd (per day)
    irregularity_ref: tuple[float, float] = (0.12, 0.06)
    followup_days: tuple[float, float] = (365.0, 1825.0)
    dropout_mean_days: float = 3000.0
    pdl1_loadings: dict[str, float] = field(default_factory=lambda: {"irregularity_z": 0.45, "lvcr_z": 0.25})
    pdl1_fractions: tuple[float, float, float] = (0.48, 0.30, 0.22)
    cd8_log_mean: float = float(np.log(150.0))
    cd8_sphericity_slope: float = 0.4  # per SD of sphericity (= -irregularity_z)
    cd8_log_sd: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def sample_clinical(rng: np.random.Generator, diameter_mm: float) -> dict:
    """Age (years), sex, smoking, grade and stage (stage increases with tumour diameter, mm)."""
    age = int(np.clip(round(rng.normal(66, 9)), 35, 90))
    sex = str(rng.choice(["M", "F"], p=[0.6, 0.4]))
    smoking = str(rng.choice(["never", "former", "current"], p=[0.15, 0.45, 0.40]))
    grade = int(rng.choice([1, 2, 3], p=[0.2, 0.45, 0.35]))
    score = 0.04 * (diameter_mm - 30.0) + rng.normal()
    stage = _STAGES[int(np.searchsorted([-0.8, -0.3, 0.5], score))]
    return {"age": age, "sex": sex, "smoking": smoking, "grade": grade, "stage": stage}


def covariate_matrix(table: pd.DataFrame, model: OutcomeModel) -> pd.DataFrame:
    """Cox covariates (columns :data:`COX_COVARIATES`) from a table with columns
    ``lvcr`` (/day), ``sphericity`` (0..1), ``age`` (years), ``stage`` (I..IV)."""
    missing = [c for c in ("lvcr", "sphericity", "age", "stage") if c not in table.columns]
    if missing:
        raise ValueError(
            f"simulate_outcomes: the table lacks column(s) {missing}; it needs lvcr, sphericity, age, stage."
        )
    stage = table["stage"].map({s: i for i, s in enumerate(_STAGES)})
    if stage.isna().any():
        bad = table["stage"][stage.isna()].unique().tolist()
        raise ValueError(f"simulate_outcomes: unknown stage value(s) {bad}; use one of {_STAGES}.")
    return pd.DataFrame(
        {
            "lvcr_z": (table["lvcr"].to_numpy(float) - model.lvcr_ref[0]) / model.lvcr_ref[1],
            "irregularity_z": ((1.0 - table["sphericity"].to_numpy(float)) - model.irregularity_ref[0])
            / model.irregularity_ref[1],
            "age_per10": (table["age"].to_numpy(float) - 65.0) / 10.0,
            "stage": stage.to_numpy(float),
        },
        index=table.index,
    )


def simulate_outcomes(table: pd.DataFrame, rng: np.random.Generator, model: OutcomeModel | None = None) -> pd.DataFrame:
    """Draw outcomes for each row of ``table`` (columns lvcr, sphericity, age, stage).

    Returns:
        DataFrame (same index): os_days, event (0|1), pdl1_tps (%), pdl1_positive,
        pdl1_area_ratio, cd8_density (cells/mm^2), response.
    """
    model = model or OutcomeModel()
    x = covariate_matrix(table, model)
    n = len(x)
    lin = sum(model.beta[c] * x[c].to_numpy() for c in COX_COVARIATES)
    lam = model.weibull_scale_days ** (-model.weibull_shape)
    t = (-np.log(rng.uniform(size=n)) / (lam * np.exp(lin))) ** (1.0 / model.weibull_shape)
    admin = rng.uniform(*model.followup_days, size=n)
    drop = rng.exponential(model.dropout_mean_days, size=n)
    cens = np.minimum(admin, drop)
    os_days = np.minimum(t, cens)
    event = (t <= cens).astype(int)
    # PD-L1 category from a latent normal variable
    load = model.pdl1_loadings
    signal = sum(w * np.clip(x[c].to_numpy(), -3, 3) for c, w in load.items())
    a = float(np.sqrt(min(sum(w * w for w in load.values()), 0.95)))
    sd = float(np.std(signal)) if n > 1 else 0.0
    signal = (signal - np.mean(signal)) / sd if sd > 0 else np.zeros(n)
    latent = a * signal + np.sqrt(1.0 - a * a) * rng.standard_normal(n)
    f0, f1, _ = model.pdl1_fractions
    cuts = norm.ppf([f0, f0 + f1])
    cat = np.searchsorted(cuts, latent)
    tps = np.where(
        cat == 0,
        np.where(rng.random(n) < 0.7, 0.0, rng.uniform(0.0, 0.99, n)),
        np.where(cat == 1, rng.uniform(1.0, 49.0, n), rng.uniform(50.0, 100.0, n)),
    )
    tps = np.round(tps, 1)
    area = np.clip(tps / 100.0 * rng.uniform(0.5, 1.0, n) + rng.normal(0, 0.02, n), 0.0, 1.0)
    cd8 = np.exp(
        model.cd8_log_mean
        - model.cd8_sphericity_slope * x["irregularity_z"].to_numpy()
        + model.cd8_log_sd * rng.standard_normal(n)
    )
    return pd.DataFrame(
        {
            "os_days": np.round(os_days, 1),
            "event": event,
            "pdl1_tps": tps,
            "pdl1_positive": (tps >= 1.0).astype(int),
            "pdl1_area_ratio": np.round(area, 4),
            "cd8_density": np.round(cd8, 1),
            "response": np.where(table["lvcr"].to_numpy(float) < 0, "responder", "non-responder"),
        },
        index=table.index,
    )
