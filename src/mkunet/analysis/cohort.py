"""The whole cohort analysis of the paper (Figures 5-8): LVCR per patient, IES, Cox, groups, AUC, correlations.

:func:`analyse_cohort` joins the measurements (one row per patient x scan) with clinical.csv
and outcomes.csv, computes the Immune Evasion Score (:mod:`mkunet.analysis.ies`), the
survival statistics (:mod:`mkunet.analysis.survival`: multi-factor Cox, high vs low groups
with Kaplan-Meier and log-rank, concordance) and the biomarker associations
(:mod:`mkunet.analysis.association`: AUC for PD-L1 positivity, Spearman correlations), and
writes every table as CSV + Markdown (+ PNG figures). ``mkunet analyse`` and
:func:`mkunet.run.pipeline.run_cohort` (``OUT/cohort``) call it.

Units: durations in days, LVCR per day, volumes cm^3. Heavy imports (matplotlib) are done
lazily inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mkunet.analysis.association import AUCResult, roc_auc, spearman
from mkunet.analysis.survival import (
    CoxResult,
    GroupComparison,
    compare_groups,
    concordance_index,
    fit_cox,
    landmark,
    require_columns,
)

__all__ = ["CohortAnalysis", "analyse_cohort", "to_markdown"]


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
    require_columns(measurements, ["patient_id", "days", "volume_cm3", "sphericity"], "measurements")
    require_columns(outcomes, ["patient_id", "os_days", "event"], "outcomes")
    require_columns(clinical, ["patient_id"], "clinical")
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
    result = _statistics(patients, tables, ies, cutoff, n_boot, seed, notes)
    if out_dir is not None:
        result.files += _write_analysis(result, meas, Path(out_dir), figures)
    return result


# ----------------------------------------------------------------------------- analyse_cohort's steps
def _statistics(
    patients: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    ies: Any,
    cutoff: float | str,
    n_boot: int,
    seed: int,
    notes: list[str],
) -> CohortAnalysis:
    """Multi-factor Cox, high vs low groups, concordance, PD-L1 AUCs and correlations, added to ``tables``."""
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
    return CohortAnalysis(tables, ies, cox, groups, aucs, notes)


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
        notes.append(
            f"{len(excluded)} patient(s) excluded from the LVCR (fewer than two scans with a positive volume): "
            "listed with the reason in the cohort table 'excluded' (cohort/excluded.csv)."
        )
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
            "guarantee-time bias (Giobbie-Hurder et al., J Clin Oncol 2013); rerun `mkunet analyse` with "
            "--landmark-days (a landmark analysis)."
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
