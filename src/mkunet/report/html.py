"""The self-contained HTML report of a cohort run.

One file: inline CSS, every figure embedded as a base64 PNG, no script, no external
URL. Sections (ids in brackets):

1. banner: synthetic data / shipped research model / not a medical device (when applicable);
2. run summary [summary]: inputs, model identity (name, version, weights sha256), parameters;
3. cohort summary [cohort-summary]: one row per patient (LVCR with 95 % CI, VDT, response, IES);
4. cohort statistics [statistics] (when outcomes were given): Kaplan-Meier by IES group
   with the log-rank p, Cox forest plot with the Schoenfeld test, ROC curves for PD-L1
   (full and imaging-only IES, with the circularity note), tables and notes;
5. model tables [model] (bundle metadata; evaluation tables when a folder is given);
6. problems [errors] (``errors.csv``);
7. one section per patient [patient-<id>]: growth curve (volume cm^3 vs days, log scale,
   LVCR fit and 95 % CI), LVCR, VDT and response per scan, axial overlays of the contour
   and the attention map through the tumour centroid at each scan, and a link to the patient's
   slice viewer ``patient/<id>.html`` (:mod:`mkunet.report.viewer`, written beside the report;
   each row of the per-scan table opens it at that scan). The viewer pages carry the
   only script; the report itself has none.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mkunet.run.store import CohortRun, load_run, patient_folder_name
from mkunet.utils import atomic_write_text, finite_or_none

__all__ = ["write_report", "render_report", "write_patient_viewers", "COLUMN_LABELS"]

#: Display names (with units) of table columns.
COLUMN_LABELS = {
    "patient_id": "patient",
    "timepoint": "scan",
    "days": "day",
    "n_scans": "scans",
    "n_scans_read": "scans read",
    "baseline_volume_cm3": "baseline volume (cm³)",
    "last_volume_cm3": "last volume (cm³)",
    "volume_cm3": "volume (cm³)",
    "volume_se_cm3": "volume SE (cm³, segmentation)",
    "growth": "growth (95% CI of LVCR)",
    "lvcr_per_day": "LVCR (/day)",
    "lvcr_ci": "LVCR 95% CI (/day)",
    "vdt_days": "VDT (days)",
    "last_response": "last response",
    "responses": "response per scan",
    "sphericity": "sphericity",
    "sphericity_baseline": "sphericity (baseline)",
    "scan_date": "date",
    "ies": "IES",
    "ies_imaging_only": "IES imaging-only",
    "ies_group": "IES group",
    "mean_dice_vs_reference": "Dice vs reference",
    "lvcr_source": "LVCR fed to the model",
    "status": "status",
    "longest_axial_diameter_mm": "longest axial diameter (mm)",
    "max_diameter_3d_mm": "max 3D diameter (mm)",
    "surface_area_mm2": "surface (mm²)",
    "mean_hu": "mean (HU)",
    "sd_hu": "SD (HU)",
    "response": "response",
    "dice_vs_reference": "Dice vs reference",
    "roi": "ROI",
    "series_uid": "input series UID",
    "hr": "HR",
    "hr_ci_low": "HR 95% CI low",
    "hr_ci_high": "HR 95% CI high",
    "p": "p",
    "test_statistic": "test statistic",
    "os_days": "OS (days)",
    "qc": "QC",
    "qc_reasons": "QC: why review",
    "qc_decision": "QC decision",
    "qc_note": "reviewer's note",
    "in_statistics": "in statistics",
    "scans": "flagged scans",
    "reason": "reason",
}

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1150px;padding:0 18px 40px;
color:#1b1b1b;line-height:1.4;font-size:14px}
h1{font-size:24px;margin:18px 0 4px}
h2{font-size:19px;border-bottom:2px solid #1f4e79;padding-bottom:3px;margin-top:30px}
h3{font-size:16px;margin:18px 0 6px}
.banner{background:#fff3cd;border:1px solid #e0b400;border-left:6px solid #e0a800;padding:10px 14px;margin:14px 0;
font-size:14px}
.banner strong{color:#7a4f00}
table{border-collapse:collapse;margin:8px 0 12px;font-size:12px}
th,td{border:1px solid #ccd;padding:3px 6px;text-align:right;vertical-align:top}
th{background:#eef2f7;text-align:center}td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#fafbfd}
.kv td:first-child{text-align:left;font-weight:600;background:#f4f6f9}.kv td{text-align:left}
.fig{display:inline-block;margin:4px 10px 4px 0;vertical-align:top}
.fig img{max-width:100%;border:1px solid #dde}
.note{color:#555;font-size:12px}.warn{color:#8a1c1c}
.patient{border-top:1px solid #ccd;margin-top:18px;padding-top:4px}
.mono{font-family:Menlo,Consolas,monospace;font-size:11px;word-break:break-all}
nav a{margin-right:10px}
tr:has(> td > a.rowlink){position:relative}td a.rowlink::after{content:"";position:absolute;inset:0}
tr:has(> td > a.rowlink):hover td{background:#e6f0ff}
tr.qc-review td,tr.qc-review:nth-child(even) td{background:#fde2e1}
tr.qc-review td:first-child{border-left:4px solid #d62828}
tr.qc-rejected td{background:#eee;color:#666}
.qc-flag{color:#9d0208;font-weight:600}
"""


# ============================================================================ small helpers


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _img(png: bytes, alt: str, cls: str = "fig") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<div class="{cls}"><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></div>'


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "—"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value)


def _table(
    df: pd.DataFrame,
    *,
    index: bool = False,
    left: Sequence[str] = (),
    max_rows: int = 500,
    row_links: Sequence[str | None] | None = None,
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table; ``row_links`` (one href or None per row) makes each row a link (CSS: the first cell's
    link covers the row; no script); ``row_classes``: one CSS class per row (``qc-review`` marks a flagged one)."""
    if df is None or df.empty:
        return '<p class="note">(empty)</p>'
    frame = df.reset_index() if index else df
    frame = frame.loc[:, [c for c in frame.columns if not str(c).startswith("Unnamed")]].head(max_rows)
    cols = list(frame.columns)
    head = "".join(f'<th class="{"l" if c in left else ""}">{_e(COLUMN_LABELS.get(str(c), c))}</th>' for c in cols)
    body = []
    for i, (_, row) in enumerate(frame.iterrows()):
        texts = [_e(_fmt(row[c])) for c in cols]
        link = row_links[i] if row_links is not None and i < len(row_links) else None
        if link and texts:
            texts[0] = f'<a class="rowlink" href="{_e(link)}" title="open this scan in the slice viewer">{texts[0]}</a>'
        cells = "".join(
            f'<td class="{"l" if c in left or isinstance(row[c], str) else ""}">{t}</td>' for c, t in zip(cols, texts)
        )
        cls = row_classes[i] if row_classes is not None and i < len(row_classes) else ""
        body.append(f'<tr class="{_e(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    more = f'<p class="note">first {max_rows} of {len(df)} rows shown</p>' if len(df) > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _kv(items: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(_fmt(v) if not isinstance(v, str) else v)}</td></tr>" for k, v in items
    )
    return f'<table class="kv">{rows}</table>'


def _read_csv(path: Path, index_col: int | None = None) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, index_col=index_col, dtype={"patient_id": str})
    except pd.errors.EmptyDataError:
        return None


# ============================================================================ sections


def _banner(meta: Mapping[str, Any]) -> str:
    parts = []
    if meta.get("synthetic"):
        parts.append(
            "<strong>Synthetic data.</strong> Every patient, scan, clinical value and outcome in this report was made "
            "by mkunet's synthetic cohort generator (known ground truth); none of it describes a real person."
        )
    model = meta.get("model", {}) or {}
    if model.get("model_source") == "shipped":
        measured = (model.get("metadata") or {}).get("measured_accuracy")
        parts.append(
            "<strong>Shipped research model.</strong> The segmentations come from the small MK-UNet shipped with "
            "mkunet, trained for minutes on a CPU on synthetic data only; its accuracy is limited"
            + (f" ({html.escape(str(measured))})" if measured else "")
            + "; see mkunet/weights/README.md."
        )
    parts.append(
        "<strong>Not a medical device.</strong> Research software: not for diagnosis, treatment or radiotherapy "
        "planning without independent clinical validation and review of every contour."
    )
    return '<div class="banner" id="banner">' + "<br>".join(parts) + "</div>"


def _summary(meta: Mapping[str, Any], results: pd.DataFrame, patients: pd.DataFrame, errors: pd.DataFrame) -> str:
    model = meta.get("model", {}) or {}
    params = meta.get("parameters", {}) or {}
    status = results["status"].value_counts().to_dict() if "status" in results else {}
    items = [
        ("cohort folder", meta.get("cohort_dir")),
        ("clinical table", meta.get("clinical")),
        ("outcomes table", meta.get("outcomes") or "none (no survival / PD-L1 statistics)"),
        ("patients", f"{len(patients)} analysed of {meta.get('n_patients', len(patients))} found"),
        ("scans", f"{len(results)} ({', '.join(f'{v} {k}' for k, v in status.items())})"),
        ("computed / resumed from cache", f"{len(meta.get('processed', []))} / {len(meta.get('resumed', []))}"),
        ("problems", f"{len(errors)} (table 'Problems' below)"),
        ("quality control", _qc_summary(meta, results, patients)),
        ("model", f"{model.get('model_name')} — {model.get('model_version')} ({model.get('model_source')})"),
        ("model weights sha256", model.get("weights_sha256")),
        ("parameters", json.dumps(params, sort_keys=True)),
        ("run time", f"{meta.get('seconds', float('nan'))} s, finished {meta.get('finished')}"),
    ]
    return '<h2 id="summary">Run summary</h2>' + _kv(items)


def _qc_summary(meta: Mapping[str, Any], results: pd.DataFrame, patients: pd.DataFrame) -> str:
    """One line: scans flagged, patients left out of the statistics, the ``--qc`` mode and the overrides used."""
    if "qc" not in results:
        return "not run (a run made before the quality control)"
    flagged = int((results["qc"] == "review").sum())
    mode = meta.get("qc", "exclude")
    left_out = int((~patients["in_statistics"].astype(bool)).sum()) if "in_statistics" in patients else 0
    how = (
        "flagged series not accepted by a reviewer are left out of the statistics"
        if mode == "exclude"
        else "flagged series are kept in the statistics (only rejected ones are left out)"
    )
    overrides = meta.get("qc_overrides")
    return (
        f"{flagged} of {len(results)} scan(s) flagged for review; {left_out} patient(s) left out of the statistics "
        f"(table 'Excluded from statistics' below). Mode --qc {mode}: {how}. Reviewer decisions: "
        + (f"{meta.get('n_qc_overrides', 0)} row(s) from {overrides}" if overrides else "none (--qc-overrides)")
        + "."
    )


def _excluded(run: Any, meta: Mapping[str, Any]) -> str:
    """The patients the quality control left out of the statistics (``OUT/excluded.csv``), with the reasons."""
    head = '<h2 id="excluded">Excluded from statistics</h2>'
    excluded = getattr(run, "excluded", None)
    mode = meta.get("qc", "exclude")
    intro = (
        '<p class="note">Automatic quality control (mkunet.qc) checks every segmentation (volume against the '
        "lesion at the click, share outside the lungs, contact with other soft tissue, crop limit, the "
        "segmentation's own uncertainty) and every series (growth or shrinkage beyond biology, volume jumps, "
        "the tracked centre moving, a lost lesion). "
        + (
            "Patients with a flagged scan that no reviewer accepted are left out of the IES, Cox, Kaplan-Meier and "
            "ROC statistics (--qc exclude, the default); rejected ones always are. "
            if mode == "exclude"
            else "This run kept the flagged patients in the statistics (--qc include); only rejected ones are "
            "left out. "
        )
        + "Accept or reject a result in qc_overrides.csv and rerun with --qc-overrides: no segmentation is "
        "recomputed. Same table: OUT/excluded.csv.</p>"
    )
    if excluded is None or len(excluded) == 0:
        return head + intro + "<p>None: every patient's series is in the statistics.</p>"
    return head + intro + _table(excluded, left=tuple(excluded.columns))


def _cohort_summary(patients: pd.DataFrame) -> str:
    if patients.empty:
        return '<h2 id="cohort-summary">Cohort summary</h2><p class="warn">No patient could be analysed.</p>'
    df = patients.copy()
    if {"lvcr_ci_low", "lvcr_ci_high"} <= set(df.columns):
        df["lvcr_ci"] = [
            "—" if finite_or_none(a) is None else f"{float(a):.4f} to {float(b):.4f}"
            for a, b in zip(df.lvcr_ci_low, df.lvcr_ci_high)
        ]
    df = df.rename(columns={"sphericity": "sphericity_baseline"})
    cols = [
        c
        for c in (
            "patient_id",
            "n_scans",
            "baseline_volume_cm3",
            "last_volume_cm3",
            "lvcr_per_day",
            "lvcr_ci",
            "growth",
            "vdt_days",
            "sphericity_baseline",
            "last_response",
            "ies",
            "ies_imaging_only",
            "ies_group",
            "mean_dice_vs_reference",
            "status",
            "qc_decision",
            "in_statistics",
        )
        if c in df.columns
    ]
    n_lvcr = int(df["lvcr_per_day"].notna().sum()) if "lvcr_per_day" in df else 0
    stats = []
    if n_lvcr:
        lv = df["lvcr_per_day"].dropna()
        stats.append(f"median LVCR {lv.median():.4f} /day (range {lv.min():.4f} to {lv.max():.4f}), n = {n_lvcr}")
    if "mean_dice_vs_reference" in df and df["mean_dice_vs_reference"].notna().any():
        d = df["mean_dice_vs_reference"].dropna()
        stats.append(
            f"Dice of the automatic masks against the reference masks: mean {d.mean():.3f} (min {d.min():.3f})"
        )
    text = "".join(f"<li>{_e(s)}</li>" for s in stats)
    return (
        '<h2 id="cohort-summary">Cohort summary</h2>'
        + (f"<ul>{text}</ul>" if text else "")
        + '<p class="note">LVCR: weighted least-squares slope of ln volume (cm³) against days (95% CI from the '
        "measurement-error model: repeat-scan error combined with each scan's segmentation uncertainty, when on); "
        "growth: 'growing' or 'shrinking' when the whole CI is above or below 0, else 'growth not established'; "
        "VDT = ln 2 / LVCR (negative: halving time); response: volumetric iRECIST-style "
        "category at the last scan; IES: immune evasion score (see statistics).</p>"
        + _table(
            df[cols],
            left=("patient_id", "last_response", "status", "ies_group", "lvcr_ci", "growth", "qc_decision"),
            row_classes=_qc_classes(df, "qc_decision"),
        )
    )


def _qc_classes(df: pd.DataFrame, column: str) -> list[str] | None:
    """``qc-review`` for the rows the quality control flagged (``qc-rejected`` for rejected ones)."""
    if column not in df:
        return None
    return [
        "qc-rejected" if v == "rejected" else ("qc-review" if v in ("review", "accepted") else "") for v in df[column]
    ]


def _km_section(groups, km) -> str:
    """Kaplan-Meier curves by IES group and the group statistics (stored by the run: km.csv, groups.csv)."""
    from mkunet.report import figures

    parts = ["<h3>Kaplan-Meier by IES group</h3>"]
    figs = []
    if groups is not None and "IES" in groups.index and km is not None and "IES" in km.index:
        g = groups.loc["IES"]
        figs.append(_img(figures.km_plot(km.loc[["IES"]], g), "Kaplan-Meier curves by IES group"))
        parts.append(
            f"<p>IES high (&gt; {float(g['cutoff']):.4g}, the cohort median) vs low: log-rank p = "
            f"{float(g['logrank_p']):.3g}; HR {float(g['hr']):.2f} (95% CI {float(g['hr_ci_low']):.2f}-"
            f"{float(g['hr_ci_high']):.2f}); n = {int(g['n_high'])} / {int(g['n_low'])}, events "
            f"{int(g['events_high'])} / {int(g['events_low'])}; median OS {_fmt(float(g['median_high']))} / "
            f"{_fmt(float(g['median_low']))} days.</p>"
        )
    else:
        parts.append('<p class="note">No IES groups (too few patients with LVCR and outcomes).</p>')
    return "".join(parts + figs)


def _cox_section(cox, ph) -> str:
    """Forest plot and table of the multi-factor Cox model, with the Schoenfeld test per covariate."""
    from mkunet.report import figures

    parts = ["<h3>Multi-factor Cox model and Schoenfeld test</h3>"]
    if cox is not None and not cox.empty:
        parts.append(_img(figures.forest_plot(cox, ph), "Cox forest plot"))
        parts.append(
            '<p class="note">Hazard ratios per unit of each covariate (imaging terms z-scored: per cohort SD). '
            "Proportional-hazards check: scaled Schoenfeld residuals (lifelines, rank time transform); "
            "a small p means the hazard ratio changes over time.</p>"
        )
        parts.append(_table(cox, index=True, left=("covariate",)))
        if ph is not None:
            parts.append("<p>Schoenfeld test per covariate:</p>" + _table(ph, index=True, left=("covariate",)))
    else:
        parts.append('<p class="note">The multi-factor Cox model was not fitted (see notes).</p>')
    return "".join(parts)


def _roc_section(roc, auc, pts) -> str:
    """ROC curves and AUCs of the full and imaging-only IES for PD-L1 status (stored by the run: roc.csv, auc.csv)."""
    from mkunet.report import figures

    parts = ["<h3>ROC for PD-L1 positivity</h3>"]
    if roc is not None and not roc.empty:
        curves = []
        for label, key in (
            ("full IES (contains PD-L1: circular)", "IES (contains PD-L1: circular)"),
            ("imaging-only IES", "imaging-only IES"),
        ):
            if key not in roc.index:
                continue
            row = auc.loc[key] if auc is not None and key in auc.index else {}
            curves.append(
                {
                    "label": label,
                    "fpr": roc.loc[[key], "fpr"].to_numpy(float),
                    "tpr": roc.loc[[key], "tpr"].to_numpy(float),
                    "auc": float(row.get("auc", float("nan"))),
                    "ci_low": finite_or_none(row.get("ci_low")),
                    "ci_high": finite_or_none(row.get("ci_high")),
                }
            )
        parts.append(_img(figures.roc_plot(curves), "ROC curves for PD-L1 positivity"))
        parts.append(
            '<p class="note"><strong>Circularity:</strong> the full IES contains the PD-L1+ area ratio, so its AUC '
            "for PD-L1 status is inflated by construction; the imaging-only IES (LVCR and shape) is the honest "
            "test of whether imaging predicts PD-L1.</p>"
        )
        if auc is not None:
            parts.append(_table(auc, index=True, left=("score",)))
    elif pts is not None and "pdl1_positive" in pts:
        parts.append(
            '<p class="note">No ROC: only one PD-L1 class present, or the AUC could not be computed '
            "(see the notes).</p>"
        )
    else:
        parts.append('<p class="note">No PD-L1 status in the outcomes: no ROC.</p>')
    return "".join(parts)


def _analysis_notes(cdir: Path) -> str:
    """The concordance and correlation tables, then the notes of the analysis (cohort/notes.md), where present."""
    parts = []
    for name, title in (
        ("excluded", "Excluded from the LVCR (fewer than two scans with a positive volume)"),
        ("concordance", "Concordance (Harrell's C, risk scores)"),
        ("correlations", "Spearman correlations"),
    ):
        t = _read_csv(cdir / f"{name}.csv")
        if t is not None:
            parts.append(f"<h3>{_e(title)}</h3>" + _table(t, left=("risk_score", "x", "y", "patient_id", "reason")))
    notes_md = cdir / "notes.md"
    if notes_md.is_file():
        lines = [ln[2:] for ln in notes_md.read_text(encoding="utf-8").splitlines() if ln.startswith("- ")]
        if lines:
            parts.append("<h3>Notes of the analysis</h3><ul>" + "".join(f"<li>{_e(n)}</li>" for n in lines) + "</ul>")
    return "".join(parts)


def _statistics(out_dir: Path, meta: Mapping[str, Any]) -> str:
    """The cohort statistics section: Kaplan-Meier, Cox, ROC, concordance, correlations and notes."""
    cdir = out_dir / "cohort"
    head = '<h2 id="statistics">Cohort statistics</h2>'
    if not cdir.is_dir():
        return head + '<p class="note">Not computed: no outcomes table was given (run with --outcomes).</p>'
    pts = _read_csv(cdir / "patients.csv")
    groups = _read_csv(cdir / "groups.csv", index_col=0)
    cox = _read_csv(cdir / "cox.csv", index_col=0)
    ph = _read_csv(cdir / "ph_test.csv", index_col=0)
    auc = _read_csv(cdir / "auc.csv", index_col=0)
    km = _read_csv(cdir / "km.csv", index_col=0)
    roc = _read_csv(cdir / "roc.csv", index_col=0)
    return "".join(
        [head, _km_section(groups, km), _cox_section(cox, ph), _roc_section(roc, auc, pts), _analysis_notes(cdir)]
    )


def _model_section(meta: Mapping[str, Any], model_tables: Path | None) -> str:
    model = meta.get("model", {}) or {}
    md = model.get("metadata", {}) or {}
    flat = [(k, v) for k, v in md.items() if isinstance(v, (str, int, float, bool)) or v is None]
    parts = [
        '<h2 id="model">Model</h2>',
        _kv(
            [
                ("name", model.get("model_name")),
                ("version / label", model.get("model_version")),
                ("source", model.get("model_source")),
                ("weights sha256 (state dict)", model.get("weights_sha256")),
                ("identity sha256 (weights + configuration)", model.get("identity_sha256")),
            ]
        ),
    ]
    if flat:
        parts.append("<h3>Bundle metadata</h3>" + _kv(flat[:40]))
    if model_tables is not None:
        tables = sorted(Path(model_tables).glob("*.csv"))
        if not tables:
            parts.append(f'<p class="note">No evaluation tables (*.csv) in {_e(model_tables)}.</p>')
        for t in tables:
            df = _read_csv(t)
            if df is not None:
                parts.append(f"<h3>{_e(t.stem)}</h3>" + _table(df, left=tuple(df.columns[:1])))
    else:
        parts.append('<p class="note">No evaluation tables given (write_report(..., model_tables=RUN_DIR)).</p>')
    return "".join(parts)


def _errors(errors: pd.DataFrame) -> str:
    head = '<h2 id="errors">Problems</h2>'
    if errors.empty:
        return head + "<p>None: every scan was read, segmented and measured.</p>"
    return (
        head
        + '<p class="warn">These cases were skipped or kept with a quantity missing:</p>'
        + _table(errors, left=("patient_id", "stage", "error", "action"))
    )


def _patient_facts(prow: Mapping[str, Any]) -> list[str]:
    """The patient's one-line facts: LVCR with its CI, growth call, VDT, responses, IES, LVCR fed to the model."""
    lv = finite_or_none(prow.get("lvcr_per_day"))
    facts = []
    if lv is not None:
        facts.append(
            f"LVCR {lv:.4f} /day (95% CI {finite_or_none(prow.get('lvcr_ci_low')) or float('nan'):.4f} to "
            f"{finite_or_none(prow.get('lvcr_ci_high')) or float('nan'):.4f} /day)"
        )
        call = prow.get("growth")  # stored by the run (kinetics.growth_call); the report recomputes nothing
        if isinstance(call, str) and call:
            facts.append(call + (": the interval contains 0" if call == "growth not established" else ""))
        vdt = finite_or_none(prow.get("vdt_days"))
        if vdt is not None:
            facts.append(f"VDT {vdt:.0f} days" if vdt > 0 else f"volume halving time {-vdt:.0f} days (shrinking)")
    else:
        facts.append("LVCR not available (fewer than two scans with a tumour)")
    if prow.get("responses"):
        facts.append(f"response: {prow['responses']}")
    if finite_or_none(prow.get("ies")) is not None:
        facts.append(f"IES {_fmt(finite_or_none(prow.get('ies')))} ({prow.get('ies_group') or 'no group'})")
    if prow.get("lvcr_source"):
        facts.append(f"LVCR fed to the model: {prow['lvcr_source']}")
    return facts


def _patient(
    pid: str, prow: Mapping[str, Any] | None, rows: pd.DataFrame, out_dir: Path, viewer: str | None = None
) -> str:
    """One patient's section; ``viewer``: relative href of its slice viewer page (links in the text and the table)."""
    from mkunet.report import figures

    anchor = "patient-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in pid)
    parts = [f'<div class="patient" id="{_e(anchor)}"><h3>Patient {_e(pid)}</h3>']
    prow = prow or {}
    lv = finite_or_none(prow.get("lvcr_per_day"))
    facts = _patient_facts(prow)
    parts.append("<p>" + "; ".join(_e(f) for f in facts) + ".</p>")
    parts.append(_patient_qc(prow))
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows.iloc[0:0]
    if len(ok):
        png = figures.growth_curve(
            pid,
            ok["days"].to_numpy(float),
            ok["volume_cm3"].to_numpy(float),
            {
                k: finite_or_none(prow.get(k))
                for k in ("lvcr_per_day", "lvcr_ci_low", "lvcr_ci_high", "lvcr_intercept_log_cm3", "vdt_days")
            }
            if lv is not None
            else None,
            list(ok["response"]) if "response" in ok else None,
            volume_se_cm3=ok["volume_se_cm3"].to_numpy(float) if "volume_se_cm3" in ok else None,
        )
        parts.append(_img(png, f"growth curve of {pid}"))
    overview = out_dir / "patients" / patient_folder_name(pid) / "overview.png"
    if overview.is_file():
        parts.append(_img(overview.read_bytes(), f"axial overlays of {pid}"))
    if viewer:
        parts.append(
            f'<p><a class="viewer-link" href="{_e(viewer)}">Open the slice viewer of {_e(pid)}</a> '
            '<span class="note">(every slice through the lesions, lung and mediastinal windows, contours, '
            "maps, all scans side by side; a row of the table below opens it at that scan)</span></p>"
        )
    parts.append(_scan_table(rows, viewer))
    parts.append("</div>")
    return "".join(parts)


def _scan_table(rows: pd.DataFrame, viewer: str | None) -> str:
    """The patient's per-scan table; rows open the slice viewer at that scan; QC-flagged rows are marked."""
    cols = [
        c
        for c in (
            "timepoint",
            "days",
            "scan_date",
            "status",
            "volume_cm3",
            "volume_se_cm3",
            "longest_axial_diameter_mm",
            "sphericity",
            "mean_hu",
            "response",
            "dice_vs_reference",
            "qc",
            "qc_decision",
            "qc_reasons",
            "roi",
            "series_uid",
        )
        if c in rows
    ]
    links = None
    if viewer and "timepoint" in rows:
        links = [None if finite_or_none(t) is None else f"{viewer}#t={int(float(t))}" for t in rows["timepoint"]]
    return _table(
        rows[cols],
        left=("status", "response", "roi", "series_uid", "scan_date", "qc", "qc_decision", "qc_reasons"),
        row_links=links,
        row_classes=_qc_classes(rows, "qc"),
    )


def _patient_qc(prow: Mapping[str, Any]) -> str:
    """The patient's quality-control line: flagged (why, and whether it is in the statistics) or ok."""
    qc = prow.get("qc")
    if not isinstance(qc, str) or not qc:
        return ""
    decision = prow.get("qc_decision") or qc
    inside = prow.get("in_statistics")
    where = "" if inside is None else (" In the statistics." if bool(inside) else " Left out of the statistics.")
    if qc == "ok" and decision == "ok":
        return f'<p class="note">Quality control: ok.{where}</p>'
    reasons = prow.get("qc_reasons") if isinstance(prow.get("qc_reasons"), str) else ""
    return f'<p class="qc-flag">Quality control: {_e(decision)} — {_e(reasons or "see the table")}.{_e(where)}</p>'


# ============================================================================ entry points


def render_report(
    run: Any,
    *,
    model_tables: str | Path | None = None,
    title: str | None = None,
    viewers: Mapping[str, str] | None = None,
) -> str:
    """The report as an HTML string (see :func:`write_report`); ``viewers``: patient id -> relative href
    of the patient's slice viewer page (:func:`write_report` writes them), linked from its section."""
    if not isinstance(run, CohortRun):
        run = load_run(run)
    out_dir = Path(run.out_dir)
    meta = dict(run.meta or {})
    if not meta and (out_dir / "run.json").is_file():
        meta = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
    results, patients, errors = run.results, run.patients, run.errors
    if "patient_id" in results:
        results = results.assign(patient_id=results["patient_id"].astype(str))
    if "patient_id" in patients:
        patients = patients.assign(patient_id=patients["patient_id"].astype(str))
    title = title or (
        "mkunet report — synthetic demonstration cohort" if meta.get("synthetic") else "mkunet cohort report"
    )
    pids = sorted(set(results["patient_id"])) if "patient_id" in results else []
    prows = {r["patient_id"]: r for r in patients.to_dict("records")} if len(patients) else {}
    nav = " ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("summary", "Run"),
            ("cohort-summary", "Cohort"),
            ("statistics", "Statistics"),
            ("model", "Model"),
            ("errors", "Problems"),
            ("excluded", "Excluded"),
            ("patients", "Patients"),
        )
    )
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<nav>{nav}</nav>",
        _banner(meta),
        _summary(meta, results, patients, errors),
        _cohort_summary(patients),
        _statistics(out_dir, meta),
        _model_section(meta, Path(model_tables) if model_tables is not None else None),
        _errors(errors),
        _excluded(run, meta),
        '<h2 id="patients">Patients</h2>',
        '<p class="note">Growth curve: segmented tumour volume (cm³, log scale) against days since the first scan, '
        "with the LVCR fit and its 95% CI band (slopes at the CI limits); overlays: axial slice through the tumour "
        "centroid at each scan, contour in red, attention map (finest immune-aware gate, 0-1) below.</p>",
    ]
    for pid in pids:
        body.append(
            _patient(pid, prows.get(pid), results[results["patient_id"] == pid], out_dir, (viewers or {}).get(pid))
        )
    from mkunet import __version__

    body.append(f'<p class="note">Generated by mkunet {_e(__version__)}. Units: mm, HU, days, cm³, per day.</p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )


def write_report(
    run: Any, path: str | Path | None = None, *, model_tables: str | Path | None = None, title: str | None = None
) -> Path:
    """Write ONE self-contained ``report.html`` for a cohort run.

    Args:
        run: a :class:`mkunet.run.store.CohortRun` (what :func:`mkunet.run.pipeline.run_cohort` returns), or
            the run's output folder.
        path: the HTML file (default ``<out_dir>/report.html``).
        model_tables: optional folder of evaluation tables (``*.csv``, e.g. an evaluate run) shown in
            the model section.
        title: page title.

    Returns:
        The path written (atomically: temporary file, then rename).

    Beside it, ``patient/<patient>.html``: one self-contained slice viewer per patient whose run
    folder holds ``viewer.json`` (:mod:`mkunet.report.viewer`), linked from the patient's section.
    """
    out_dir = Path(run.out_dir) if isinstance(run, CohortRun) else Path(run)
    target = Path(path) if path is not None else out_dir / "report.html"
    viewers = write_patient_viewers(out_dir, target)
    text = render_report(run, model_tables=model_tables, title=title, viewers=viewers)
    return atomic_write_text(target, text)


def write_patient_viewers(out_dir: str | Path, report_path: str | Path) -> dict[str, str]:
    """Write ``patient/<patient>.html`` beside ``report_path`` for every ``OUT/patients/*/viewer.json``.

    Returns:
        patient id -> the page's href relative to the report. A payload that cannot be read is
        skipped with a warning (the report then has no link for that patient).
    """
    import warnings
    from urllib.parse import quote

    from mkunet.report.viewer import write_viewer

    out: dict[str, str] = {}
    report_path = Path(report_path)
    for payload_file in sorted(Path(out_dir).glob("patients/*/viewer.json")):
        name = payload_file.parent.name
        try:
            payload = json.loads(payload_file.read_text(encoding="utf-8"))
            pid = str(payload["patient_id"])
            anchor = "patient-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in pid)
            write_viewer(
                report_path.parent / "patient" / f"{name}.html",
                payload,
                back_link=f"../{quote(report_path.name)}#{anchor}",
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            warnings.warn(f"slice viewer of {payload_file.parent.name!r} not written: {err}", stacklevel=2)
            continue
        out[pid] = f"patient/{quote(name)}.html"
    return out
