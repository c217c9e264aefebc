"""Immune Evasion Score (paper 2.7.3; SPEC "IES"; DOMAIN section 7).

The paper's score is

.. math:: \\mathrm{IES} = 0.6\\,\\mathrm{LVCR} + 0.3\\,(1 - \\mathrm{sphericity}) + 0.1\\,\\mathrm{PDL1^+ area\\ ratio}

with LVCR per day. The three terms live on very different scales (0.6 LVCR is about
0.0006-0.006, 0.3 (1 - sphericity) about 0.03-0.15, the ratio term 0-0.1), so the raw
sum is dominated by shape. Three modes:

* ``"paper"``: the raw weighted sum, as printed.
* ``"standardised"``: each term is z-scored on the cohort (mean, SD with ddof=1), then
  weighted: every term then contributes on the same scale.
* ``"cox"``: the weights are refitted as Cox coefficients (log-HR per cohort SD) of the
  z-scored terms on the cohort's survival (lifelines ``CoxPHFitter``), so the score is
  the Cox linear predictor. Cox coefficients do not sum to 1 and need z-scored inputs
  to be comparable (DOMAIN 7.2).

**Missing PD-L1 ratio** (it comes from pathology):

* missing for every patient (or the column is absent): the term is dropped for the
  cohort and the remaining weights are renormalised to sum to their original total
  (0.6, 0.3) -> (0.667, 0.333); a note says so.
* missing for some patients (paper / standardised modes): those patients are scored on
  the imaging terms only with renormalised weights, the others on all three terms; a
  note lists how many. Such scores are not strictly comparable across the two groups,
  hence the note. In ``cox`` mode a partially missing term cannot be fitted without
  imputation: the term is dropped for the whole cohort, with a note.

Circularity (DOMAIN 7.3): a score containing the PD-L1 ratio cannot be used to
predict PD-L1 status; :attr:`IESResult.imaging_only` is the same score without the
PD-L1 term and is the one to evaluate against PD-L1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["IESResult", "immune_evasion_score", "PAPER_WEIGHTS"]

#: Weights printed in the paper for (LVCR, 1 - sphericity, PD-L1+ area ratio).
PAPER_WEIGHTS = (0.6, 0.3, 0.1)
_TERMS = ("lvcr", "one_minus_sphericity", "pdl1_area_ratio")


@dataclass
class IESResult:
    """Immune Evasion Score of a cohort.

    Attributes:
        scores: pandas Series of IES per patient (index of the input table).
        imaging_only: IES without the PD-L1 term (LVCR and shape only), same mode.
        weights: term -> weight used for ``scores`` (renormalised / refitted as applicable).
        imaging_weights: term -> weight used for ``imaging_only``.
        terms: terms entering ``scores`` (any of "lvcr", "one_minus_sphericity", "pdl1_area_ratio").
        mode: "paper", "standardised" or "cox".
        notes: human-readable notes on dropped terms, renormalisation, refitting.
        standardisation: term -> (mean, sd) used for z-scores (standardised / cox modes).
        components: DataFrame of the raw terms per patient.
        cox_summary: lifelines summary of the refit (cox mode), else None.
    """

    scores: object
    imaging_only: object
    weights: dict[str, float]
    imaging_weights: dict[str, float]
    terms: tuple[str, ...]
    mode: str
    notes: list[str] = field(default_factory=list)
    standardisation: dict[str, tuple[float, float]] = field(default_factory=dict)
    components: object = None
    cox_summary: object = None


def _renorm(weights: dict[str, float], keep: Sequence[str]) -> dict[str, float]:
    total = sum(weights.values())
    sub = sum(weights[k] for k in keep)
    if sub == 0:
        raise ValueError(f"weights of the remaining terms {list(keep)} sum to 0; cannot renormalise.")
    return {k: weights[k] * total / sub for k in keep}


def _fmt(w: dict[str, float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in w.values()) + ")"


def _checked_weights(mode: str, weights: Sequence[float]) -> tuple[float, ...]:
    """Check the mode and the three weights; the weights as floats."""
    if mode not in ("paper", "standardised", "cox"):
        raise ValueError(f"mode must be 'paper', 'standardised' or 'cox', got {mode!r}.")
    weights = tuple(float(w) for w in weights)
    if len(weights) != 3 or not all(np.isfinite(weights)):
        raise ValueError(f"weights must be three finite numbers (LVCR, 1 - sphericity, PD-L1 ratio), got {weights!r}.")
    return weights


def _components(df, lvcr_col: str, sphericity_col: str, pdl1_col: str):
    """The raw terms per patient (DataFrame with the columns of ``_TERMS``), after checking LVCR and sphericity."""
    import pandas as pd

    for col in (lvcr_col, sphericity_col):
        if col not in df.columns:
            raise ValueError(f"IES: column {col!r} not found; the table has {list(df.columns)}.")
        bad = df.index[pd.to_numeric(df[col], errors="coerce").isna()].tolist()
        if bad:
            raise ValueError(f"IES: {col!r} missing or not numeric for patient(s) {bad[:10]}; measure or exclude them.")
    sph = df[sphericity_col].astype(float)
    out_of_range = df.index[(sph <= 0) | (sph > 1.0 + 1e-9)].tolist()
    if out_of_range:
        raise ValueError(
            f"IES: sphericity must be in (0, 1], got {sph[out_of_range].tolist()[:5]} for {out_of_range[:5]}."
        )
    return pd.DataFrame(
        {
            "lvcr": df[lvcr_col].astype(float),
            "one_minus_sphericity": 1.0 - sph,
            "pdl1_area_ratio": (pd.to_numeric(df[pdl1_col], errors="coerce") if pdl1_col in df.columns else np.nan),
        },
        index=df.index,
    )


def _pdl1_term_usable(
    comp, has_pdl1, pdl1_col: str, column_present: bool, mode: str, all_weights: dict[str, float], notes: list[str]
) -> bool:
    """Whether the PD-L1 term enters the score (a note when it is dropped); checks its range when it does."""
    pdl1_terms_ok = bool(has_pdl1.any())
    if not column_present or not pdl1_terms_ok:
        pdl1_terms_ok = False
        notes.append(
            f"PD-L1 ratio missing (column {pdl1_col!r} {'absent' if not column_present else 'empty'}): "
            f"term dropped for the cohort"
            + (f", weights renormalised to {_fmt(_renorm(all_weights, _TERMS[:2]))}" if mode != "cox" else "")
            + "."
        )
    elif not has_pdl1.all() and mode == "cox":
        pdl1_terms_ok = False
        notes.append(
            f"PD-L1 ratio missing for {int((~has_pdl1).sum())} of {len(comp)} patients: term dropped for the "
            "whole cohort (a Cox refit cannot use a partially missing covariate without imputation)."
        )
    if pdl1_terms_ok:
        bad = comp.index[has_pdl1 & ((comp["pdl1_area_ratio"] < 0) | (comp["pdl1_area_ratio"] > 1))].tolist()
        if bad:
            raise ValueError(f"IES: PD-L1 area ratio must be in [0, 1] (a fraction, not %), bad for {bad[:10]}.")
    return pdl1_terms_ok


def _standardise(comp, z, pdl1_terms_ok: bool) -> dict[str, tuple[float, float]]:
    """Z-score each term of ``comp`` into ``z`` (in place); term -> (mean, sd) used."""
    standardisation: dict[str, tuple[float, float]] = {}
    for term in _TERMS:
        col = comp[term]
        if term == "pdl1_area_ratio" and not pdl1_terms_ok:
            continue
        sd = float(col.std(ddof=1))
        if not np.isfinite(sd) or sd == 0:
            raise ValueError(
                f"IES: term {term!r} has zero (or undefined) spread across the cohort; it cannot be "
                "z-scored. Use mode='paper' or a larger cohort."
            )
        mean = float(col.mean())
        standardisation[term] = (mean, sd)
        z[term] = (col - mean) / sd
    return standardisation


def _weighted_sum(z, weights: dict[str, float]):
    """Sum over the terms named in ``weights`` of weight x term, per patient (pandas Series)."""
    import pandas as pd

    return (z[list(weights)] * pd.Series(weights)).sum(axis=1)


def _cox_weights(z, df, duration_col: str | None, event_col: str | None, full_terms, imaging_terms):
    """Cox coefficients of the z-scored terms: (full weights, imaging-only weights, summary of the full fit)."""
    if duration_col is None or event_col is None:
        raise ValueError("IES mode='cox' needs duration_col and event_col (survival time in days, event 0/1).")
    for col in (duration_col, event_col):
        if col not in df.columns:
            raise ValueError(f"IES: survival column {col!r} not found; the table has {list(df.columns)}.")
    from lifelines import CoxPHFitter

    def refit(terms):
        data = z[list(terms)].copy()
        data["_T"] = df[duration_col].astype(float)
        data["_E"] = df[event_col].astype(int)
        cph = CoxPHFitter().fit(data, duration_col="_T", event_col="_E")
        return {t: float(cph.params_[t]) for t in terms}, cph.summary

    w_full, cox_summary = refit(full_terms)
    w_img, _ = refit(imaging_terms)
    return w_full, w_img, cox_summary


def _fixed_weight_scores(z, comp, has_pdl1, pdl1_terms_ok: bool, all_weights: dict[str, float], notes: list[str]):
    """Paper / standardised modes: (full weights, imaging weights, scores, imaging-only scores).

    Patients without a PD-L1 ratio get the imaging-only score, with a note.
    """
    w_img = _renorm(all_weights, _TERMS[:2])
    imaging = _weighted_sum(z, w_img)
    if pdl1_terms_ok:
        w_full = dict(all_weights)
        scores = _weighted_sum(z, w_full)
        if not has_pdl1.all():
            missing = ~has_pdl1
            scores[missing] = imaging[missing]
            notes.append(
                f"PD-L1 ratio missing for {int(missing.sum())} of {len(comp)} patients "
                f"({', '.join(map(str, comp.index[missing][:10]))}{'...' if missing.sum() > 10 else ''}): "
                f"scored on LVCR and shape only with weights renormalised to {_fmt(w_img)}."
            )
    else:
        w_full = w_img
        scores = imaging.copy()
    return w_full, w_img, scores, imaging


def immune_evasion_score(
    table,
    mode: Literal["paper", "standardised", "cox"] = "paper",
    weights: Sequence[float] = PAPER_WEIGHTS,
    duration_col: str | None = None,
    event_col: str | None = None,
    lvcr_col: str = "lvcr",
    sphericity_col: str = "sphericity",
    pdl1_col: str = "pdl1_area_ratio",
    patient_col: str | None = None,
) -> IESResult:
    """Immune Evasion Score per patient.

    Args:
        table: pandas DataFrame, one row per patient, with LVCR (per day), sphericity (0-1)
            and optionally the PD-L1+ area ratio (0-1, may be missing).
        mode: "paper" (raw weighted sum), "standardised" (z-score each term, then weight) or
            "cox" (weights refitted as Cox coefficients of the z-scored terms; needs
            ``duration_col`` and ``event_col``).
        weights: (LVCR, 1 - sphericity, PD-L1 ratio) weights for paper / standardised modes.
        duration_col, event_col: survival time (days) and event (0/1) columns (cox mode).
        lvcr_col, sphericity_col, pdl1_col: column names.
        patient_col: column to use as index of the scores (default: the table's index).

    Returns:
        :class:`IESResult`.

    Raises:
        ValueError: unknown mode, missing columns, missing LVCR / sphericity (patients named),
            sphericity outside (0, 1], cox mode without survival columns.
    """
    weights = _checked_weights(mode, weights)
    df = table.set_index(patient_col) if patient_col is not None else table
    comp = _components(df, lvcr_col, sphericity_col, pdl1_col)
    notes: list[str] = []
    all_weights = dict(zip(_TERMS, weights))
    has_pdl1 = comp["pdl1_area_ratio"].notna()
    pdl1_terms_ok = _pdl1_term_usable(comp, has_pdl1, pdl1_col, pdl1_col in df.columns, mode, all_weights, notes)
    standardisation: dict[str, tuple[float, float]] = {}
    z = comp.copy()
    if mode in ("standardised", "cox"):
        standardisation = _standardise(comp, z, pdl1_terms_ok)
    imaging_terms = _TERMS[:2]
    full_terms = _TERMS if pdl1_terms_ok else imaging_terms
    if mode == "cox":
        w_full, w_img, cox_summary = _cox_weights(z, df, duration_col, event_col, full_terms, imaging_terms)
        notes.append("weights refitted as Cox coefficients (log hazard ratio per cohort SD of each term).")
        scores = _weighted_sum(z, w_full)
        imaging = _weighted_sum(z, w_img)
    else:
        cox_summary = None
        w_full, w_img, scores, imaging = _fixed_weight_scores(z, comp, has_pdl1, pdl1_terms_ok, all_weights, notes)
        if mode == "paper":
            notes.append(
                "mode='paper': raw weighted sum; LVCR (per day) contributes about 100x less than shape, see DOMAIN 7.2."
            )
    return IESResult(
        scores.rename("ies"),
        imaging.rename("ies_imaging_only"),
        w_full,
        w_img,
        tuple(full_terms),
        mode,
        notes,
        standardisation,
        comp,
        cox_summary,
    )
