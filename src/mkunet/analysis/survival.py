"""Survival statistics: Cox model, Schoenfeld test, Kaplan-Meier, log-rank, landmark.

Everything is delegated to lifelines (no hand-derived estimators). Units: durations in
days, LVCR per day, volumes cm^3. The ROC / AUC and correlations of the scores with the
biomarkers are in :mod:`mkunet.analysis.association`; the whole cohort analysis of the
paper (:func:`~mkunet.analysis.cohort.analyse_cohort`) in :mod:`mkunet.analysis.cohort`.

Conventions worth knowing (DOMAIN section 5):

* **Concordance sign.** ``lifelines.utils.concordance_index(T, score, E)`` assumes a
  higher score means *longer* survival; risk scores (IES, hazards) must be negated.
  :func:`concordance_index` here takes a *risk* score (higher = worse) and negates it.
* **Schoenfeld test.** :func:`fit_cox` runs ``lifelines.statistics.proportional_hazard_test``
  with ``time_transform="rank"`` (lifelines' default). R's ``cox.zph`` defaults to "km"
  and changed its method in 2019, so p-values differ from R.
* **Cut-offs.** High / low groups use a pre-specified cut-off, by default the cohort
  median; an "optimal" cut-off picked on the same data inflates the HR (Faraggi & Simon,
  *Stat Med* 1996).
* **Guarantee-time bias.** LVCR needs follow-up scans, so a patient must survive to be
  measured; using it as a baseline covariate for survival from the first scan is
  biased (Giobbie-Hurder et al., *JCO* 2013). Use :func:`landmark` (patients alive and
  under follow-up at the landmark, durations counted from it).

Heavy imports (lifelines) are done lazily inside the functions.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CoxResult",
    "fit_cox",
    "concordance_index",
    "GroupComparison",
    "compare_groups",
    "landmark",
    "require_columns",
]

log = logging.getLogger(__name__)


def require_columns(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    """A ValueError naming ``what``, the missing columns and the table's columns when ``df`` lacks one of ``cols``."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: column(s) {missing} not found; the table has {list(df.columns)}.")


def _survival_frame(df, duration_col, event_col, covariates, what):
    require_columns(df, [duration_col, event_col, *covariates], what)
    data = df[[duration_col, event_col, *covariates]].copy()
    for c in data.columns:
        data[c] = pd.to_numeric(data[c], errors="coerce")
    bad = data.index[data.isna().any(axis=1)].tolist()
    if bad:
        raise ValueError(
            f"{what}: missing or non-numeric values for row(s) {bad[:10]} in columns "
            f"{[c for c in data.columns if data[c].isna().any()]}; impute or drop them first."
        )
    if (data[duration_col] <= 0).any():
        raise ValueError(f"{what}: durations in {duration_col!r} must be > 0 days.")
    if not set(np.unique(data[event_col])) <= {0, 1}:
        raise ValueError(f"{what}: {event_col!r} must be 0/1 (1 = event observed).")
    return data


# ----------------------------------------------------------------------------- Cox
@dataclass
class CoxResult:
    """A fitted Cox proportional-hazards model.

    Attributes:
        summary: DataFrame indexed by covariate: coef, se, hr, hr_ci_low, hr_ci_high, z, p
            (HR per covariate unit; 95 % Wald CI).
        ph_test: DataFrame indexed by covariate: test_statistic, p (scaled Schoenfeld residuals,
            lifelines ``proportional_hazard_test``, ``time_transform``); low p = PH violated.
        concordance: Harrell's C of the linear predictor (lifelines ``concordance_index_``).
        n, n_events: patients and events.
        fitter: the lifelines ``CoxPHFitter``.
    """

    summary: pd.DataFrame
    ph_test: pd.DataFrame | None
    concordance: float
    n: int
    n_events: int
    fitter: Any = None
    time_transform: str = "rank"


def fit_cox(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
    penalizer: float = 0.0,
    strata: Sequence[str] | None = None,
    time_transform: str = "rank",
    ph_test: bool = True,
) -> CoxResult:
    """Multi-factor Cox model (lifelines ``CoxPHFitter``) with the Schoenfeld PH test.

    .. math:: h(t \\mid x) = h_0(t) \\exp(x^\\top \\beta)

    Args:
        df: one row per patient.
        duration_col: follow-up time in days (> 0).
        event_col: 1 = event (death / progression), 0 = censored.
        covariates: numeric covariate columns (encode categories first).
        penalizer: lifelines ridge penalty (0 = plain partial likelihood).
        strata: optional stratification columns.
        time_transform: for ``proportional_hazard_test`` ("rank" as lifelines; R uses "km").
        ph_test: run the Schoenfeld test.

    Returns:
        :class:`CoxResult`.

    Raises:
        ValueError: missing columns / values, non-positive durations, non-binary events, or a
            fit that does not converge (with advice).
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.statistics import proportional_hazard_test

    covariates = list(covariates)
    if not covariates:
        raise ValueError("fit_cox: give at least one covariate.")
    data = _survival_frame(df, duration_col, event_col, covariates + list(strata or []), "fit_cox")
    constant = [c for c in covariates if data[c].nunique() < 2]
    if constant:
        raise ValueError(f"fit_cox: covariate(s) {constant} are constant in this cohort; drop them.")
    cph = CoxPHFitter(penalizer=penalizer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            cph.fit(data, duration_col=duration_col, event_col=event_col, strata=list(strata) if strata else None)
    except ConvergenceError as err:
        raise ValueError(
            f"fit_cox: the Cox model did not converge ({str(err).splitlines()[0]}); too few events for "
            f"{len(covariates)} covariates or (near-)separation. Drop covariates or set penalizer=0.1."
        ) from err
    s = cph.summary
    summary = pd.DataFrame(
        {
            "coef": s["coef"],
            "se": s["se(coef)"],
            "hr": s["exp(coef)"],
            "hr_ci_low": s["exp(coef) lower 95%"],
            "hr_ci_high": s["exp(coef) upper 95%"],
            "z": s["z"],
            "p": s["p"],
        }
    )
    summary.index.name = "covariate"
    ph = None
    if ph_test:
        try:
            res = proportional_hazard_test(cph, data, time_transform=time_transform)
            ph = res.summary[["test_statistic", "p"]].copy()
            if isinstance(ph.index, pd.MultiIndex):
                ph.index = ph.index.get_level_values(0)
            ph.index.name = "covariate"
        except Exception as err:  # noqa: BLE001 - the test is advisory; report why it is absent
            warnings.warn(f"Schoenfeld proportional-hazards test failed: {err}", stacklevel=2)
    return CoxResult(
        summary, ph, float(cph.concordance_index_), len(data), int(data[event_col].sum()), cph, time_transform
    )


def concordance_index(durations, risk_scores, events) -> float:
    """Harrell's C for a *risk* score (higher = shorter survival).

    lifelines' ``concordance_index`` expects higher = longer survival, so the score is
    negated here (DOMAIN 5). 0.5 = random, 1 = perfect ranking of risk.
    """
    from lifelines.utils import concordance_index as ci

    return float(ci(np.asarray(durations, float), -np.asarray(risk_scores, float), np.asarray(events, int)))


# ----------------------------------------------------------------------------- groups: HR, KM, log-rank
@dataclass
class GroupComparison:
    """High vs low group survival comparison.

    Attributes:
        variable: the dichotomised score. cutoff: the cut-off used (high = value > cutoff).
        hr, hr_ci_low, hr_ci_high, hr_p: Cox HR of high vs low (univariable).
        logrank_statistic, logrank_p: log-rank test.
        n_high, n_low, events_high, events_low: group sizes and events.
        median_high, median_low: KM median survival (days; inf when not reached).
        km: dict group label -> fitted lifelines ``KaplanMeierFitter``.
    """

    variable: str
    cutoff: float
    hr: float
    hr_ci_low: float
    hr_ci_high: float
    hr_p: float
    logrank_statistic: float
    logrank_p: float
    n_high: int
    n_low: int
    events_high: int
    events_low: int
    median_high: float
    median_low: float
    km: dict[str, Any] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Flat dict without the fitters (a table row)."""
        return {k: v for k, v in self.__dict__.items() if k != "km"}

    def km_table(self) -> pd.DataFrame:
        """The Kaplan-Meier curves as a table (what the report draws).

        Returns:
            one row per group x event time: ``group`` (label), ``days``, ``survival``, its
            pointwise 95 % CI ``ci_low`` / ``ci_high`` (lifelines), ``at_risk``, ``events`` and
            ``censored`` at that time (day 0 first).
        """
        parts = []
        for label, fitter in self.km.items():
            survival = fitter.survival_function_.iloc[:, 0]
            ci = fitter.confidence_interval_survival_function_.reindex(survival.index)
            events = fitter.event_table.reindex(survival.index).fillna(0)
            parts.append(
                pd.DataFrame(
                    {
                        "group": label,
                        "days": survival.index.to_numpy(float),
                        "survival": survival.to_numpy(float),
                        "ci_low": ci.iloc[:, 0].to_numpy(float),
                        "ci_high": ci.iloc[:, 1].to_numpy(float),
                        "at_risk": events["at_risk"].to_numpy(int),
                        "events": events["observed"].to_numpy(int),
                        "censored": events["censored"].to_numpy(int),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)


def compare_groups(
    df: pd.DataFrame,
    score_col: str,
    duration_col: str,
    event_col: str,
    cutoff: float | str = "median",
) -> GroupComparison:
    """Dichotomise ``score_col`` at ``cutoff`` (default cohort median) and compare survival.

    Kaplan-Meier per group (lifelines ``KaplanMeierFitter``), log-rank test
    (``lifelines.statistics.logrank_test``) and the univariable Cox HR of high vs low.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    from mkunet.analysis.kinetics import split_by_cutoff

    data = _survival_frame(df, duration_col, event_col, [score_col], "compare_groups")
    high, value = split_by_cutoff(data[score_col], cutoff, name=score_col)
    if high.all() or not high.any():
        raise ValueError(f"compare_groups: cut-off {value:g} for {score_col!r} leaves one group empty.")
    data = data.assign(_high=high.astype(int))
    a, b = data[data._high == 1], data[data._high == 0]
    lr = logrank_test(a[duration_col], b[duration_col], a[event_col], b[event_col])
    km = {}
    for label, g in ((f"{score_col} > {value:.4g}", a), (f"{score_col} <= {value:.4g}", b)):
        km[label] = KaplanMeierFitter().fit(g[duration_col], g[event_col], label=label)
    cox = fit_cox(data, duration_col, event_col, ["_high"], ph_test=False)
    row = cox.summary.loc["_high"]
    med = [float(f.median_survival_time_) for f in km.values()]
    return GroupComparison(
        score_col,
        value,
        float(row.hr),
        float(row.hr_ci_low),
        float(row.hr_ci_high),
        float(row.p),
        float(lr.test_statistic),
        float(lr.p_value),
        len(a),
        len(b),
        int(a[event_col].sum()),
        int(b[event_col].sum()),
        med[0],
        med[1],
        km,
    )


# ----------------------------------------------------------------------------- landmark
def landmark(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    landmark_days: float | str,
) -> pd.DataFrame:
    """Landmark analysis data set (against guarantee-time bias).

    Keeps only patients alive and under follow-up at the landmark (duration > landmark)
    and measures durations from the landmark. Covariates must only use information
    available at the landmark (e.g. LVCR from scans up to it) — the caller's job.

    Args:
        df: one row per patient; durations counted from the same origin as the landmark.
        duration_col, event_col: survival columns (days, 0/1).
        landmark_days: a number of days (same landmark for all) or the name of a column holding a
            per-patient landmark (e.g. the day of the last scan used for LVCR).

    Returns:
        A copy with the excluded patients dropped and ``duration_col`` shifted; the column
        ``landmark_days`` holds the landmark used.
    """
    require_columns(df, [duration_col, event_col], "landmark")
    if isinstance(landmark_days, str):
        require_columns(df, [landmark_days], "landmark")
        lm = pd.to_numeric(df[landmark_days], errors="coerce")
    else:
        if not np.isfinite(landmark_days) or landmark_days < 0:
            raise ValueError(f"landmark_days must be a finite number >= 0 or a column name, got {landmark_days!r}.")
        lm = pd.Series(float(landmark_days), index=df.index)
    if lm.isna().any():
        raise ValueError(f"landmark: missing landmark for {df.index[lm.isna()].tolist()[:10]}.")
    keep = df[duration_col] > lm
    out = df.loc[keep].copy()
    out[duration_col] = out[duration_col] - lm[keep]
    out["landmark_days"] = lm[keep]
    n_out = int((~keep).sum())
    if n_out:
        log.info("landmark: %d patient(s) dropped (event or censored before the landmark).", n_out)
    return out
