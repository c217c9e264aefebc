"""Cohort statistics: Cox model, Schoenfeld test, Kaplan-Meier, log-rank, ROC/AUC, correlations, landmark.

Everything is delegated to lifelines, scikit-learn and SciPy (no hand-derived
estimators). Units: durations in days, LVCR per day, volumes cm^3.

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

Heavy imports (lifelines, matplotlib) are done lazily inside the functions.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CoxResult",
    "fit_cox",
    "concordance_index",
    "GroupComparison",
    "compare_groups",
    "AUCResult",
    "roc_auc",
    "CorrelationResult",
    "spearman",
    "landmark",
    "attention_concordance",
    "CohortAnalysis",
    "analyse_cohort",
    "to_markdown",
]

log = logging.getLogger(__name__)


def _require(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: column(s) {missing} not found; the table has {list(df.columns)}.")


def _survival_frame(df, duration_col, event_col, covariates, what):
    _require(df, [duration_col, event_col, *covariates], what)
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


# ----------------------------------------------------------------------------- ROC / AUC
@dataclass
class AUCResult:
    """ROC AUC with a percentile bootstrap CI (stratified resampling is not used: plain case resampling).

    Attributes: auc, ci_low, ci_high, n_boot (valid resamples), n_pos, n_neg, fpr, tpr, thresholds.
    """

    auc: float
    ci_low: float
    ci_high: float
    n_boot: int
    n_pos: int
    n_neg: int
    fpr: np.ndarray = field(repr=False, default=None)
    tpr: np.ndarray = field(repr=False, default=None)
    thresholds: np.ndarray = field(repr=False, default=None)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("auc", "ci_low", "ci_high", "n_boot", "n_pos", "n_neg")}

    def roc_table(self) -> pd.DataFrame:
        """The ROC curve (scikit-learn ``roc_curve``) as a table: ``fpr``, ``tpr``, ``threshold``."""
        return pd.DataFrame(
            {
                "fpr": np.asarray(self.fpr, float),
                "tpr": np.asarray(self.tpr, float),
                "threshold": np.asarray(self.thresholds, float),
            }
        )


def roc_auc(y_true, score, n_boot: int = 2000, seed: int = 0, ci_level: float = 0.95) -> AUCResult:
    """ROC curve and AUC (scikit-learn) with a seeded percentile-bootstrap CI.

    Args:
        y_true: 0/1 labels (e.g. PD-L1 positive).
        score: higher = more likely positive.
        n_boot: bootstrap resamples (resamples with a single class are skipped).
        seed: seed of the ``numpy.random.Generator``.
        ci_level: CI level.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(y_true)
    s = np.asarray(score, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"roc_auc: labels {y.shape} and scores {s.shape} must be 1-D of equal length.")
    if np.isnan(s).any() or pd.isna(y).any():
        raise ValueError("roc_auc: missing labels or scores; drop those patients first.")
    y = y.astype(int)
    if not set(np.unique(y)) <= {0, 1} or len(np.unique(y)) < 2:
        raise ValueError(f"roc_auc: labels must be 0/1 with both classes present, got {np.unique(y).tolist()}.")
    auc = float(roc_auc_score(y, s))
    fpr, tpr, thr = roc_curve(y, s)
    # bootstrap: AUC of each resample via the Mann-Whitney identity on scipy ranks (vectorised over
    # resamples; equals sklearn's roc_auc_score, ties counted 1/2 — checked in the tests)
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    yb, sb = y[idx], s[idx]
    n1 = yb.sum(axis=1)
    n0 = len(y) - n1
    valid = (n1 > 0) & (n0 > 0)
    ranks = rankdata(sb[valid], axis=1)
    n1v, n0v = n1[valid], n0[valid]
    boots = ((ranks * yb[valid]).sum(axis=1) - n1v * (n1v + 1) / 2) / (n1v * n0v)
    alpha = (1 - ci_level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha]) if boots.size else (np.nan, np.nan)
    return AUCResult(auc, float(lo), float(hi), len(boots), int(y.sum()), int((1 - y).sum()), fpr, tpr, thr)


# ----------------------------------------------------------------------------- correlations
@dataclass
class CorrelationResult:
    """Spearman rank correlation: rho, p (two-sided), n, and the variable names."""

    x: str
    y: str
    rho: float
    p: float
    n: int


def spearman(df: pd.DataFrame, x: str, y: str) -> CorrelationResult:
    """Spearman correlation of two columns (``scipy.stats.spearmanr``); rows with a missing value are dropped."""
    from scipy import stats

    _require(df, [x, y], "spearman")
    data = df[[x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    if len(data) < 3:
        raise ValueError(f"spearman: fewer than 3 complete rows for {x!r} vs {y!r}.")
    res = stats.spearmanr(data[x], data[y])
    return CorrelationResult(x, y, float(res.statistic), float(res.pvalue), len(data))


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
    _require(df, [duration_col, event_col], "landmark")
    if isinstance(landmark_days, str):
        _require(df, [landmark_days], "landmark")
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


# ----------------------------------------------------------------------------- attention concordance
def attention_concordance(
    attention: np.ndarray,
    tumour_mask: np.ndarray,
    niche_mask: np.ndarray,
    quantile: float = 0.9,
) -> float:
    """Fraction of the high-attention tumour voxels that lie inside a given niche mask.

    High attention = tumour voxels whose attention is >= the ``quantile`` of the attention values
    inside the tumour (top 10 % by default). Paper: 72.3 % of high-attention regions fall in
    PD-L1+ niches.

    Args:
        attention: float (z, y, x) attention map on the mask grid.
        tumour_mask, niche_mask: bool (z, y, x).
        quantile: in (0, 1).

    Returns:
        Fraction in [0, 1].
    """
    att = np.asarray(attention)
    tm = np.asarray(tumour_mask, bool)
    nm = np.asarray(niche_mask, bool)
    if not (att.shape == tm.shape == nm.shape):
        raise ValueError(f"attention {att.shape}, tumour {tm.shape} and niche {nm.shape} shapes must match.")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}.")
    if not tm.any():
        raise ValueError("attention_concordance: empty tumour mask.")
    values = att[tm]
    thr = np.quantile(values, quantile)
    high = tm & (att >= thr)
    return float(np.count_nonzero(high & nm) / np.count_nonzero(high))


# ----------------------------------------------------------------------------- tables
def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (no ``tabulate`` dependency)."""
    frame = df.reset_index() if df.index.name is not None or not isinstance(df.index, pd.RangeIndex) else df

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


# ----------------------------------------------------------------------------- whole cohort
_ORDINALS = {
    "sex": {"M": 1, "F": 0},
    "smoking": {"never": 0, "former": 1, "current": 2},
    "stage": {"I": 1, "II": 2, "III": 3, "IV": 4},
}


@dataclass
class CohortAnalysis:
    """Everything :func:`analyse_cohort` computed.

    Attributes:
        tables: name -> DataFrame (patients, responses, excluded, cox, ph_test, groups, km, concordance,
            auc, roc, correlations). ``km`` (:meth:`GroupComparison.km_table`, indexed by score) and
            ``roc`` (:meth:`AUCResult.roc_table`, indexed by score) are the curves, stored so that a
            report can draw them without recomputing anything.
        ies: the :class:`~mkunet.analysis.ies.IESResult`.
        cox: multi-factor :class:`CoxResult`.
        groups: name -> :class:`GroupComparison` (high vs low IES, high vs low LVCR).
        auc: name -> :class:`AUCResult` (PD-L1 positivity).
        notes: warnings / decisions worth reading.
        files: written paths.
    """

    tables: dict[str, pd.DataFrame]
    ies: Any
    cox: CoxResult | None
    groups: dict[str, GroupComparison]
    auc: dict[str, AUCResult]
    notes: list[str]
    files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"patients analysed: {len(self.tables['patients'])}"]
        for name, g in self.groups.items():
            lines.append(
                f"{name}: HR high vs low {g.hr:.2f} (95% CI {g.hr_ci_low:.2f}-{g.hr_ci_high:.2f}), "
                f"log-rank p = {g.logrank_p:.3g}, cut-off {g.cutoff:.4g}"
            )
        for name, a in self.auc.items():
            lines.append(f"AUC PD-L1+ ({name}): {a.auc:.3f} (95% CI {a.ci_low:.3f}-{a.ci_high:.3f})")
        if self.cox is not None:
            lines.append(
                f"multi-factor Cox: C-index {self.cox.concordance:.3f}, n={self.cox.n}, events={self.cox.n_events}"
            )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _encode_clinical(clinical: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=clinical.index)
    if "age" in clinical:
        out["age"] = pd.to_numeric(clinical["age"], errors="coerce")
    for col, mapping in _ORDINALS.items():
        if col in clinical:
            values = clinical[col].astype(str).str.strip()
            bad = clinical.index[~values.isin(list(mapping))].tolist()
            if bad:
                raise ValueError(
                    f"clinical: column {col!r} has unknown values {sorted(set(values[bad]))[:5]} for {bad[:5]}; "
                    f"expected one of {list(mapping)}."
                )
            out["sex_male" if col == "sex" else col] = values.map(mapping).astype(float)
    if "grade" in clinical:
        out["grade"] = pd.to_numeric(clinical["grade"], errors="coerce")
    return out


def analyse_cohort(
    measurements: pd.DataFrame,
    clinical: pd.DataFrame,
    outcomes: pd.DataFrame,
    out_dir: str | Path | None = None,
    cutoff: float | str = "median",
    ies_mode: str = "standardised",
    landmark_days: float | str | None = None,
    lvcr_weights: str = "interval",
    sigma_log_volume: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    figures: bool = True,
) -> CohortAnalysis:
    """The whole cohort analysis of the paper (Figures 5-8), with the corrections of SPEC / DOMAIN 7.

    Args:
        measurements: one row per patient x scan: patient_id, days (since the patient's first
            scan), volume_cm3, sphericity (+ optional timepoint and other features).
        clinical: clinical.csv (patient_id, age, sex, smoking, grade, stage).
        outcomes: outcomes.csv (patient_id, os_days, event, pdl1_positive, pdl1_area_ratio,
            cd8_density, ...). ``os_days`` is counted from the first scan (day 0).
        out_dir: where to write CSV + Markdown tables and PNG figures (None: nothing written).
        cutoff: high/low cut-off for IES and LVCR: "median" (default) or a number
            (applied to the IES; the LVCR split always uses its own median unless a number
            is given via the IES-independent API :func:`compare_groups`).
        ies_mode: "paper", "standardised" (default) or "cox".
        landmark_days: None (no landmark; a note warns of guarantee-time bias), a number of
            days (LVCR only from scans up to it; patients must be alive and followed beyond
            it; durations from it), or "last_scan" (per-patient landmark at the last scan used).
        lvcr_weights: weighting for :func:`mkunet.analysis.kinetics.lvcr`.
        sigma_log_volume: error-model sigma(ln V) (default: kinetics default).
        n_boot, seed: bootstrap resamples and seed for AUC CIs.
        figures: also draw PNG figures when ``out_dir`` is given.

    Returns:
        :class:`CohortAnalysis`.
    """
    from mkunet.analysis.ies import immune_evasion_score

    notes: list[str] = []
    _require(measurements, ["patient_id", "days", "volume_cm3", "sphericity"], "measurements")
    _require(outcomes, ["patient_id", "os_days", "event"], "outcomes")
    _require(clinical, ["patient_id"], "clinical")
    meas = _measurement_frame(measurements, landmark_days, notes)
    per, excluded, responses = _lvcr_per_patient(meas, lvcr_weights, sigma_log_volume, notes)
    patients = _patient_table(per, clinical, outcomes, landmark_days, notes)

    ies = immune_evasion_score(
        patients,
        mode=ies_mode,
        duration_col="os_days",
        event_col="event",
        lvcr_col="lvcr",
    )
    notes.extend(f"IES: {n}" for n in ies.notes)
    patients["ies"] = ies.scores
    patients["ies_imaging_only"] = ies.imaging_only

    tables: dict[str, pd.DataFrame] = {"patients": patients, "responses": pd.DataFrame(responses)}
    if excluded:
        tables["excluded"] = pd.DataFrame(excluded)
    cox = _multifactor_cox(patients, notes)
    if cox is not None:
        tables["cox"] = cox.summary
        if cox.ph_test is not None:
            tables["ph_test"] = cox.ph_test
    groups = _group_comparisons(patients, cutoff, notes)
    if groups:
        tables["groups"] = pd.DataFrame([g.as_dict() for g in groups.values()], index=list(groups)).rename_axis("score")
        tables["km"] = pd.concat([g.km_table().assign(score=name) for name, g in groups.items()]).set_index("score")
    tables["concordance"] = _concordance_table(patients)
    aucs = _pdl1_aucs(patients, n_boot, seed, notes)
    if aucs:
        tables["auc"] = pd.DataFrame({k: v.as_dict() for k, v in aucs.items()}).T.rename_axis("score")
        tables["roc"] = pd.concat([a.roc_table().assign(score=name) for name, a in aucs.items()]).set_index("score")
    correlations = _correlations(patients, notes)
    if not correlations.empty:
        tables["correlations"] = correlations

    result = CohortAnalysis(tables, ies, cox, groups, aucs, notes)
    if out_dir is not None:
        result.files += _write_analysis(result, meas, Path(out_dir), figures)
    return result


# ----------------------------------------------------------------------------- analyse_cohort's steps
def _measurement_frame(measurements: pd.DataFrame, landmark_days: float | str | None, notes: list[str]) -> pd.DataFrame:
    """The measurements sorted by patient and day; with a numeric landmark, only the scans up to it."""
    meas = measurements.copy()
    meas["patient_id"] = meas["patient_id"].astype(str)
    meas = meas.sort_values(["patient_id", "days"])
    if isinstance(landmark_days, (int, float)) and not isinstance(landmark_days, bool):
        n_before = meas.patient_id.nunique()
        meas = meas[meas["days"] <= float(landmark_days)]
        notes.append(
            f"landmark at day {landmark_days:g}: LVCR from scans up to the landmark only; "
            f"{n_before - meas.patient_id.nunique()} patient(s) had no scan before it."
        )
    elif landmark_days is not None and landmark_days != "last_scan":
        raise ValueError(f"landmark_days must be None, a number of days or 'last_scan', got {landmark_days!r}.")
    return meas


def _lvcr_per_patient(
    meas: pd.DataFrame, lvcr_weights: str, sigma_log_volume: float | None, notes: list[str]
) -> tuple[pd.DataFrame, list[dict[str, Any]], list[dict[str, Any]]]:
    """LVCR, baseline shape and response categories per patient.

    Returns:
        (one row per patient indexed by ``patient_id`` with ``lvcr`` per day, the patients without
        a valid LVCR series with the reason, one response row per scan).

    Raises:
        ValueError: no patient has a valid LVCR series.
    """
    from mkunet.analysis import kinetics

    lvcr_kwargs: dict[str, Any] = {"weights": lvcr_weights}
    if sigma_log_volume is not None:
        lvcr_kwargs["sigma_log_volume"] = sigma_log_volume
    rows, excluded, responses = [], [], []
    for pid, g in meas.groupby("patient_id", sort=True):
        try:
            r = kinetics.lvcr(g["days"].to_numpy(), g["volume_cm3"].to_numpy(), patient_id=pid, **lvcr_kwargs)
        except ValueError as err:
            excluded.append({"patient_id": pid, "reason": str(err)})
            continue
        row = r.as_dict()
        row["sphericity"] = float(g["sphericity"].iloc[0])  # baseline scan
        row["baseline_volume_cm3"] = float(g["volume_cm3"].iloc[0])
        row["lvcr_intercept_log_cm3"] = r.intercept_log_cm3
        row["last_scan_days"] = float(g["days"].iloc[-1])
        cats = kinetics.response_over_time(g["days"].to_numpy(), g["volume_cm3"].to_numpy(), patient_id=pid)
        row["best_response"] = _best_response(cats)
        row["last_response"] = cats[-1]
        rows.append(row)
        responses.extend(
            {"patient_id": pid, "days": float(d), "volume_cm3": float(v), "category": c}
            for d, v, c in zip(g["days"], g["volume_cm3"], cats)
        )
    if excluded:
        notes.append(f"{len(excluded)} patient(s) excluded from LVCR (see table 'excluded').")
    if not rows:
        raise ValueError("analyse_cohort: no patient has a valid LVCR series (>= 2 scans with positive volumes).")
    per = pd.DataFrame(rows).set_index("patient_id").rename(columns={"lvcr_per_day": "lvcr"})
    return per, excluded, responses


def _patient_table(
    per: pd.DataFrame,
    clinical: pd.DataFrame,
    outcomes: pd.DataFrame,
    landmark_days: float | str | None,
    notes: list[str],
) -> pd.DataFrame:
    """LVCR rows joined with the outcomes (inner) and the encoded clinical columns; the landmark applied."""
    out = outcomes.copy()
    out["patient_id"] = out["patient_id"].astype(str)
    clin = clinical.copy()
    clin["patient_id"] = clin["patient_id"].astype(str)
    clin_enc = _encode_clinical(clin.set_index("patient_id"))
    patients = per.join(out.set_index("patient_id"), how="inner").join(clin_enc, how="left")
    lost = sorted(set(per.index) - set(patients.index))
    if lost:
        notes.append(f"{len(lost)} patient(s) with measurements but no outcomes row: {lost[:5]}.")
    if landmark_days is None:
        notes.append(
            "no landmark: LVCR needs follow-up scans, so survival from the first scan is subject to "
            "guarantee-time bias; rerun with --landmark-days (DOMAIN 7.5)."
        )
    else:
        lm = "last_scan_days" if landmark_days == "last_scan" else float(landmark_days)
        n0 = len(patients)
        patients = landmark(patients, "os_days", "event", lm)
        notes.append(f"landmark: {n0 - len(patients)} patient(s) not alive/under follow-up at the landmark dropped.")
    return patients


def _multifactor_cox(patients: pd.DataFrame, notes: list[str]) -> CoxResult | None:
    """Cox model on the z-scored imaging terms and the clinical covariates present and non-constant."""
    cox_df = patients.copy()
    covs = []
    for term, col in (("lvcr_z", "lvcr"), ("one_minus_sphericity_z", None), ("pdl1_area_ratio_z", "pdl1_area_ratio")):
        src = 1 - cox_df["sphericity"] if col is None else cox_df.get(col)
        if src is None or src.isna().any() or src.std() == 0:
            continue
        cox_df[term] = (src - src.mean()) / src.std()
        covs.append(term)
    for c in ("age", "sex_male", "smoking", "grade", "stage"):
        if c in cox_df and cox_df[c].notna().all() and cox_df[c].nunique() > 1:
            covs.append(c)
    try:
        return fit_cox(cox_df, "os_days", "event", covs)
    except ValueError as err:
        notes.append(f"multi-factor Cox not fitted: {err}")
        return None


def _group_comparisons(patients: pd.DataFrame, cutoff: float | str, notes: list[str]) -> dict[str, GroupComparison]:
    """High vs low IES (at ``cutoff``) and high vs low LVCR (at the median)."""
    groups: dict[str, GroupComparison] = {}
    for name, col, cut in (("IES", "ies", cutoff), ("LVCR", "lvcr", "median")):
        try:
            groups[name] = compare_groups(patients, col, "os_days", "event", cutoff=cut)
        except ValueError as err:
            notes.append(f"{name} high vs low not computed: {err}")
    return groups


def _concordance_table(patients: pd.DataFrame) -> pd.DataFrame:
    """Harrell's C of the risk scores IES, imaging-only IES and LVCR."""
    c_rows = {
        col: concordance_index(patients["os_days"], patients[col], patients["event"])
        for col in ("ies", "ies_imaging_only", "lvcr")
    }
    return pd.DataFrame({"c_index": c_rows}).rename_axis("risk_score")


def _pdl1_aucs(patients: pd.DataFrame, n_boot: int, seed: int, notes: list[str]) -> dict[str, AUCResult]:
    """AUC for PD-L1 positivity of the full (circular) and the imaging-only IES."""
    aucs: dict[str, AUCResult] = {}
    if "pdl1_positive" not in patients:
        return aucs
    lab = patients["pdl1_positive"]
    ok = lab.notna()
    for name, col in (("IES (contains PD-L1: circular)", "ies"), ("imaging-only IES", "ies_imaging_only")):
        try:
            aucs[name] = roc_auc(
                lab[ok].astype(int).to_numpy(), patients.loc[ok, col].to_numpy(), n_boot=n_boot, seed=seed
            )
        except ValueError as err:
            notes.append(f"AUC {name} not computed: {err}")
    return aucs


def _correlations(patients: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Spearman correlations of the imaging scores with CD8 density and PD-L1."""
    corr_rows = []
    for x, y in (
        ("sphericity", "cd8_density"),
        ("lvcr", "cd8_density"),
        ("ies", "cd8_density"),
        ("ies_imaging_only", "pdl1_tps"),
        ("sphericity", "pdl1_area_ratio"),
    ):
        if x in patients and y in patients:
            try:
                corr_rows.append(spearman(patients, x, y).__dict__)
            except ValueError as err:
                notes.append(str(err))
    return pd.DataFrame(corr_rows)


def _write_analysis(result: CohortAnalysis, meas: pd.DataFrame, out_path: Path, figures: bool) -> list[Path]:
    """Every table as CSV + Markdown, ``notes.md`` and (``figures``) the PNG figures; returns the paths."""
    out_path.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for name, table in result.tables.items():
        csv = out_path / f"{name}.csv"
        table.to_csv(csv)
        md = out_path / f"{name}.md"
        md.write_text(to_markdown(table))
        files += [csv, md]
    notes_path = out_path / "notes.md"
    notes_path.write_text("# Notes\n\n" + "".join(f"- {n}\n" for n in result.notes))
    files.append(notes_path)
    if figures:
        files += _figures(result, meas, out_path)
    return files


def _best_response(cats: list[str]) -> str:
    order = ["iCR", "CR", "iPR", "PR", "iSD", "SD", "iUPD", "PD", "iCPD"]
    seen = [c for c in cats[1:] if c in order]
    return min(seen, key=order.index) if seen else "baseline"


def _figures(result: CohortAnalysis, meas: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    files = []
    for name, g in result.groups.items():
        fig, ax = plt.subplots(figsize=(5, 4))
        for km in g.km.values():
            km.plot_survival_function(ax=ax, ci_show=True)
        ax.set_xlabel("days")
        ax.set_ylabel("overall survival")
        ax.set_title(f"{name} high vs low (log-rank p = {g.logrank_p:.3g})")
        path = out / f"km_{name.lower()}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        files.append(path)
    if result.auc:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for name, a in result.auc.items():
            ax.plot(a.fpr, a.tpr, label=f"{name}: AUC {a.auc:.2f} ({a.ci_low:.2f}-{a.ci_high:.2f})")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_title("PD-L1 positivity")
        ax.legend(fontsize=7, loc="lower right")
        path = out / "roc_pdl1.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        files.append(path)
    if result.cox is not None:
        s = result.cox.summary
        fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(s) + 1.2))
        y = np.arange(len(s))[::-1]
        ax.errorbar(s["hr"], y, xerr=[s["hr"] - s["hr_ci_low"], s["hr_ci_high"] - s["hr"]], fmt="o", capsize=3)
        ax.axvline(1.0, color="k", ls=":")
        ax.set_yticks(y)
        ax.set_yticklabels(s.index)
        ax.set_xscale("log")
        ax.set_xlabel("hazard ratio (95% CI)")
        ax.set_title("multi-factor Cox model")
        path = out / "forest_cox.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        files.append(path)
    # growth curves per patient: one panel per patient, 16 panels per page
    per = result.tables["patients"]
    groups = list(meas.groupby("patient_id", sort=True))
    per_page = 16
    for page in range(0, len(groups), per_page):
        chunk = groups[page : page + per_page]
        fig, axes = plt.subplots(4, 4, figsize=(12, 10), squeeze=False)
        for ax, (pid, g) in zip(axes.ravel(), chunk):
            ax.plot(g["days"], np.log(g["volume_cm3"]), "o-", ms=3)
            if pid in per.index:
                r = per.loc[pid]
                fit = r["lvcr_intercept_log_cm3"] + r["lvcr"] * (g["days"] - g["days"].iloc[0])
                ax.plot(g["days"], fit, "--", lw=0.8)
                ax.set_title(f"{pid}: LVCR {r['lvcr']:.4f}/day", fontsize=8)
            else:
                ax.set_title(f"{pid} (no LVCR)", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes.ravel()[len(chunk) :]:
            ax.axis("off")
        fig.supxlabel("days since first scan")
        fig.supylabel("ln volume (ln cm$^3$); dashed: LVCR fit")
        path = out / f"growth_{page // per_page + 1:02d}.png"
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.95, hspace=0.45, wspace=0.3)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files.append(path)
    return files
