"""Cohort statistics of a run: the IES per patient and, with outcomes, the whole cohort analysis.

:func:`cohort_statistics` runs :func:`mkunet.analysis.cohort.analyse_cohort` on the measured scans
when outcomes are given (its tables and figures go to ``OUT/cohort``) and copies the IES, the
outcomes and the IES group into patients.csv; without outcomes (or when the analysis fails) it
computes the IES alone (:func:`mkunet.analysis.ies.immune_evasion_score`).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd

from mkunet.run.patient import error_row

__all__ = ["cohort_statistics"]


def cohort_statistics(
    results: pd.DataFrame,
    patients: pd.DataFrame,
    clin: pd.DataFrame,
    outcomes: pd.DataFrame | None,
    out: Path,
    ies_mode: str,
    n_boot: int,
    seed: int,
    lvcr_weights: str,
    figures: bool = True,
    excluded: Collection[str] = (),
) -> tuple[pd.DataFrame, Any, list[str], list[dict[str, Any]]]:
    """IES for the cohort, and :func:`~mkunet.analysis.cohort.analyse_cohort` when outcomes are given.

    Args:
        results: results.csv (one row per patient x scan; the ``status="ok"`` rows are analysed).
        patients: patients.csv (one row per patient, ``lvcr_per_day`` and ``sphericity``).
        clin: clinical.csv indexed by ``patient_id``.
        outcomes: outcomes.csv or None.
        out: the run folder (``OUT/cohort`` receives the analysis).
        ies_mode, n_boot, seed, lvcr_weights, figures: as :func:`mkunet.run.pipeline.run_cohort`.
        excluded: patients left out by the quality control (:mod:`mkunet.run.overrides`): their scans
            are not analysed and they get no IES (nor IES group).

    Returns:
        (patients.csv with the IES columns, and with outcomes the outcome columns, ``ies_cutoff`` and
        ``ies_group``; the :class:`~mkunet.analysis.cohort.CohortAnalysis` or None; notes; errors rows).
    """
    notes: list[str] = []
    errors: list[dict[str, Any]] = []
    patients = patients.copy()
    left_out = set(map(str, excluded))
    if left_out:
        results = results[~results["patient_id"].astype(str).isin(left_out)]
        notes.append(
            f"quality control: {len(left_out)} patient(s) left out of the IES and cohort statistics "
            "(listed in excluded.csv)."
        )
    if outcomes is not None:
        try:
            cohort = _analyse(
                results, patients, clin, outcomes, out, ies_mode, n_boot, seed, lvcr_weights, figures, notes
            )
            return patients, cohort, notes, errors
        except ValueError as err:
            errors.append(error_row("(cohort)", None, "cohort", err, "no cohort statistics"))
            notes.append(f"cohort statistics not computed: {err}")
    _ies_only(patients, outcomes, ies_mode, notes, errors, left_out)
    return patients, None, notes, errors


def _analyse(
    results: pd.DataFrame,
    patients: pd.DataFrame,
    clin: pd.DataFrame,
    outcomes: pd.DataFrame,
    out: Path,
    ies_mode: str,
    n_boot: int,
    seed: int,
    lvcr_weights: str,
    figures: bool,
    notes: list[str],
) -> Any:
    """:func:`~mkunet.analysis.cohort.analyse_cohort` on the measured scans; its IES, outcomes and IES
    group copied into ``patients`` (in place).

    Raises:
        ValueError: the analysis failed (too few patients, bad tables, ...).
    """
    from mkunet.analysis.cohort import analyse_cohort

    meas = results.loc[results["status"] == "ok", ["patient_id", "timepoint", "days", "volume_cm3", "sphericity"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = analyse_cohort(
            meas,
            clin.reset_index(),
            outcomes,
            out_dir=out / "cohort",
            ies_mode=ies_mode,
            lvcr_weights=lvcr_weights,
            n_boot=n_boot,
            seed=seed,
            figures=figures,
        )
    notes += [f"cohort: {n}" for n in cohort.notes]
    tab = cohort.tables["patients"]
    for col in ("ies", "ies_imaging_only"):
        patients[col] = patients["patient_id"].map(tab[col].dropna())
    patients["ies_mode"] = ies_mode
    for col in ("os_days", "event", "pdl1_positive", "pdl1_area_ratio"):
        if col in tab:
            patients[col] = patients["patient_id"].map(tab[col])
    if "IES" in cohort.groups:
        cut = cohort.groups["IES"].cutoff
        patients["ies_cutoff"] = cut
        patients["ies_group"] = [None if pd.isna(v) else ("high" if v > cut else "low") for v in patients["ies"]]
    return cohort


def _ies_only(
    patients: pd.DataFrame,
    outcomes: pd.DataFrame | None,
    ies_mode: str,
    notes: list[str],
    errors: list[dict[str, Any]],
    excluded: Collection[str] = (),
) -> None:
    """The IES alone (:func:`mkunet.analysis.ies.immune_evasion_score`; ``"cox"`` mode needs outcomes, so
    ``"standardised"`` is used instead) into ``patients`` (in place), when two patients or more have an LVCR."""
    from mkunet.analysis.ies import immune_evasion_score

    has = (
        patients.dropna(subset=[c for c in ("lvcr_per_day", "sphericity") if c in patients])
        if {"lvcr_per_day", "sphericity"} <= set(patients.columns)
        else patients.iloc[0:0]
    )
    has = has[~has["patient_id"].astype(str).isin(set(excluded))]
    if len(has) < 2:
        notes.append("IES not computed: fewer than two patients have an LVCR.")
        return
    try:
        table = has.set_index("patient_id")
        if outcomes is not None and "pdl1_area_ratio" in outcomes:
            table = table.join(outcomes.astype({"patient_id": str}).set_index("patient_id")[["pdl1_area_ratio"]])
        res = immune_evasion_score(
            table, mode=ies_mode if ies_mode != "cox" else "standardised", lvcr_col="lvcr_per_day"
        )
        patients["ies"] = patients["patient_id"].map(res.scores)
        patients["ies_imaging_only"] = patients["patient_id"].map(res.imaging_only)
        patients["ies_mode"] = res.mode
        notes += [f"IES: {n}" for n in res.notes]
    except ValueError as err:
        errors.append(error_row("(cohort)", None, "ies", err, "no IES"))
