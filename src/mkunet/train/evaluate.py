"""Evaluation of trained runs: per-case scores, Table 1 (models), Table 2 (ablation), Table 3 (LVCR strata).

Each case is segmented with :func:`mkunet.models.bundle.predict_probability` (resample to the
bundle's spacing, preprocess, sliding window with Gaussian blending, sigmoid, linear
resampling back to the scan grid), thresholded at the bundle's threshold and, by default,
reduced to the tumour component exactly as :func:`mkunet.segmentation.infer.segment` does without a
region of interest (``keep="component"``: the component with the largest probability mass
in the lung region), so the scores are what a user of ``mkunet segment`` gets;
``keep="none"`` scores the raw thresholded map (the network alone). Dice, IoU
and HD95 (mm, the scan's spacing) are computed on the scan grid against the ground truth
(:mod:`mkunet.analysis.metrics`: an empty prediction of a non-empty tumour gives Dice 0 and HD95
``inf``; ``inf`` values are counted, never averaged).

Tables (returned as DataFrames, written as CSV and Markdown by :meth:`Evaluation.write`):

* Table 1: Dice, IoU, HD95 mean ± SD per run (model).
* Table 2: the ablation rows present among the runs (run labels ``baseline``,
  ``+ 4-channel preprocessing``, ``+ clinical fusion``, ``full model`` (or ``MK-UNet``),
  ``without LVCR``), with two-sided paired t-tests of Dice and HD95 against the full model
  on the cases both runs segmented.
* Table 3: Dice and HD95 per run in patients with high vs low LVCR (per-patient LVCR from
  the ground-truth volumes; cut-off a parameter, default the median over the evaluated
  patients; ``LVCR > cut-off`` is "high").

The clinical vector of a case uses the patient's clinical.csv row and the LVCR computed
from the ground-truth volumes of all the patient's scans (what a user with annotated
serial scans has); single-scan patients get "LVCR unknown" (the training median).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ABLATION",
    "Evaluation",
    "evaluate_runs",
    "benchmark_models",
    "benchmark_plan",
    "format_mean_sd",
]

#: Table 2 rows in order: key -> accepted run labels (case-insensitive).
ABLATION: dict[str, tuple[str, ...]] = {
    "baseline": ("baseline",),
    "+ 4-channel preprocessing": ("+ 4-channel preprocessing", "+4ch", "4ch", "+ 4-channel"),
    "+ clinical fusion": ("+ clinical fusion", "+fusion", "fusion"),
    "full model": ("full model", "mk-unet", "mkunet", "full"),
    "without LVCR": ("without lvcr", "no_lvcr", "-lvcr", "without_lvcr"),
}


_LVCR_NOTE = (
    "LVCR input (cases): where the LVCR fed to the network came from, as a user would have it: "
    "clinical.csv's value when given, else the fixed-point estimate from the network's own masks "
    "(mkunet.segmentation.infer.segment_timepoints), else unknown (training median)."
)


def format_mean_sd(mean: float, sd: float, digits: int = 3) -> str:
    """``"0.812 ± 0.034"`` (``"n/a"`` when the mean is not finite; SD shown as n/a with one case)."""
    if not np.isfinite(mean):
        return "n/a"
    sd_text = f"{sd:.{digits}f}" if np.isfinite(sd) else "n/a"
    return f"{mean:.{digits}f} ± {sd_text}"


def _summary(values: Sequence[float]) -> dict[str, float]:
    from mkunet.analysis.metrics import summarise

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return summarise(values)


@dataclass
class Evaluation:
    """Per-case scores and the three tables.

    Attributes:
        per_case: one row per (run, scan): run, label, model, patient_id, timepoint, dice,
            iou, hd95_mm, lvcr_per_day, truth_cm3, predicted_cm3.
        table1: one row per run: Dice / IoU / HD95 mean and SD, number of cases, parameters.
        table2: ablation rows found among the runs, with paired t-tests against the full model.
        table3: per run and LVCR group (high / low): n, Dice and HD95 mean and SD.
        lvcr_cutoff: the cut-off (per day) used for Table 3.
    """

    per_case: pd.DataFrame
    table1: pd.DataFrame
    table2: pd.DataFrame
    table3: pd.DataFrame
    lvcr_cutoff: float

    def to_markdown(self) -> str:
        """All three tables as Markdown text (mean ± SD)."""
        parts = ["# Evaluation", "", "## Table 1: segmentation accuracy per model", ""]
        t1 = pd.DataFrame(
            {
                "model": self.table1["label"],
                "network": self.table1["model"],
                "cases": self.table1["n"],
                "Dice": [format_mean_sd(m, s) for m, s in zip(self.table1["dice_mean"], self.table1["dice_sd"])],
                "IoU": [format_mean_sd(m, s) for m, s in zip(self.table1["iou_mean"], self.table1["iou_sd"])],
                "HD95 (mm)": [
                    format_mean_sd(m, s, 2) + (f" ({int(k)} inf)" if k else "")
                    for m, s, k in zip(self.table1["hd95_mean"], self.table1["hd95_sd"], self.table1["hd95_n_inf"])
                ],
                "parameters": self.table1["parameters"],
                "LVCR input (cases)": self.table1.get("lvcr_source", ""),
            }
        )
        parts += [_markdown(t1), "", _LVCR_NOTE, ""]
        parts += ["## Table 2: ablation (paired t-tests against the full model)", ""]
        if self.table2.empty:
            parts += [
                "No ablation runs (labels baseline, + 4-channel preprocessing, + clinical fusion, "
                "full model, without LVCR) were evaluated.",
                "",
            ]
        else:
            t2 = pd.DataFrame(
                {
                    "variant": self.table2["variant"],
                    "cases": self.table2["n"],
                    "Dice": [format_mean_sd(m, s) for m, s in zip(self.table2["dice_mean"], self.table2["dice_sd"])],
                    "HD95 (mm)": [
                        format_mean_sd(m, s, 2) for m, s in zip(self.table2["hd95_mean"], self.table2["hd95_sd"])
                    ],
                    "Dice p vs full": [_p(p) for p in self.table2["dice_p"]],
                    "HD95 p vs full": [_p(p) for p in self.table2["hd95_p"]],
                    "LVCR input (cases)": self.table2.get("lvcr_source", ""),
                }
            )
            parts += [_markdown(t2), ""]
        parts += [f"## Table 3: by LVCR (high: LVCR > {self.lvcr_cutoff:.5g} /day)", ""]
        if self.table3.empty:
            parts += ["No patient with a computable LVCR (two or more annotated scans).", ""]
        else:
            t3 = pd.DataFrame(
                {
                    "model": self.table3["label"],
                    "LVCR group": self.table3["group"],
                    "cases": self.table3["n"],
                    "Dice": [format_mean_sd(m, s) for m, s in zip(self.table3["dice_mean"], self.table3["dice_sd"])],
                    "HD95 (mm)": [
                        format_mean_sd(m, s, 2) for m, s in zip(self.table3["hd95_mean"], self.table3["hd95_sd"])
                    ],
                    "LVCR input (cases)": self.table3.get("lvcr_source", ""),
                }
            )
            parts += [_markdown(t3), "", "Groups by the ground-truth LVCR; " + _LVCR_NOTE, ""]
        return "\n".join(parts)

    def write(self, out: str | Path) -> dict[str, Path]:
        """Write per_case.csv, table1.csv, table2.csv, table3.csv and tables.md into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "per_case": out / "per_case.csv",
            "table1": out / "table1.csv",
            "table2": out / "table2.csv",
            "table3": out / "table3.csv",
            "markdown": out / "tables.md",
        }
        self.per_case.to_csv(paths["per_case"], index=False)
        self.table1.to_csv(paths["table1"], index=False)
        self.table2.to_csv(paths["table2"], index=False)
        self.table3.to_csv(paths["table3"], index=False)
        paths["markdown"].write_text(self.to_markdown() + "\n", encoding="utf-8")
        return paths


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _markdown(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def _run_bundle_dir(run: Path, checkpoint: str) -> Path:
    if (run / "bundle.json").is_file():  # a bundle folder given directly
        return run
    for name in (checkpoint, "last") if checkpoint == "best" else (checkpoint,):
        if (run / name / "bundle.json").is_file():
            return run / name
    raise FileNotFoundError(f"'{run}' is neither a training run folder (with best/ or last/) nor a model bundle.")


def _ablation_key(label: str) -> str | None:
    low = label.strip().lower()
    for key, aliases in ABLATION.items():
        if low in aliases:
            return key
    return None


class _Cohort:
    """The cases of a cohort folder, each loaded once, with each patient's ground-truth LVCR and clinical row."""

    def __init__(self, data: Path) -> None:
        from mkunet.train.data import read_clinical, read_scans

        self.data = data
        self.records = read_scans(data)
        self.clinical_table = read_clinical(data, required=False)
        self._cache: dict[str, tuple[Any, np.ndarray]] = {}
        self.by_patient: dict[str, list] = {}
        for rec in self.records:
            self.by_patient.setdefault(rec.patient_id, []).append(rec)
        self._truth_lvcr: dict[str, float | None] = {}

    def load(self, rec) -> tuple[Any, np.ndarray]:
        """(volume, ground-truth mask) of a scan record, cached."""
        from mkunet.train.data import load_scan

        if rec.key not in self._cache:
            self._cache[rec.key] = load_scan(rec)
        return self._cache[rec.key]

    def truth_lvcr(self, pid: str) -> float | None:
        """The stratifier of Table 3: the LVCR of the ground-truth masks (the one definition)."""
        from mkunet.analysis.kinetics import KineticsError, lvcr_from_masks

        if pid not in self._truth_lvcr:
            recs = self.by_patient[pid]
            value = None
            if len(recs) >= 2 and all(r.days is not None for r in recs):
                pairs = [self.load(r) for r in recs]
                try:
                    value = lvcr_from_masks(
                        [r.days for r in recs], [m for _, m in pairs], [v.spacing for v, _ in pairs], patient_id=pid
                    ).lvcr_per_day
                except (KineticsError, ValueError):
                    value = None
            self._truth_lvcr[pid] = value
        return self._truth_lvcr[pid]

    def clinical(self, pid: str) -> tuple[dict[str, Any] | None, float | None]:
        """The clinical.csv row (the user's values) and its LVCR when the table gives one."""
        from mkunet.train.data import CLINICAL_COLUMNS

        clinical_table = self.clinical_table
        if clinical_table is None or pid not in clinical_table.index:
            return None, None
        row = clinical_table.loc[pid]
        values: dict[str, Any] = {c: row[c] for c in CLINICAL_COLUMNS}
        given = row["lvcr"] if "lvcr" in clinical_table.columns else None
        given_ok = given is not None and bool(np.isfinite(float(given)))
        if given_ok:
            values["lvcr"] = float(given)
        return values, (float(given) if given_ok else None)

    def cases_of(self, run: Path, bundle_dir: Path, all_cases: bool) -> list:
        """The scan records ``run`` is evaluated on: its split's test patients, or every case (``all_cases``)."""
        if all_cases:
            return self.records
        split_path = (run if (run / "split.json").is_file() else bundle_dir.parent) / "split.json"
        if not split_path.is_file():
            raise FileNotFoundError(
                f"'{split_path}' not found: cannot tell the test patients of '{run}'; pass --all to evaluate "
                "every case of the data folder."
            )
        test = set(json.loads(split_path.read_text(encoding="utf-8"))["test"])
        chosen = [r for r in self.records if r.patient_id in test]
        if not chosen:
            raise ValueError(
                f"Run '{run}' has no test patients in '{self.data}' (split.json 'test' is empty); use --all."
            )
        return chosen


def _segment_patient(recs: list, volumes: list, bundle, clinical, *, overlap: float, keep: str, max_iter: int):
    """Segment one patient's scans as a user would -> (segmentations, LVCR estimate or None, fixed point iterated).

    A timed series (>= 2 scans, increasing days) goes through the fixed point of
    :func:`mkunet.segmentation.infer.segment_timepoints`; otherwise each scan alone.
    """
    from mkunet.segmentation.infer import segment, segment_timepoints

    day_list = [r.days for r in recs]
    timed = (
        len(recs) >= 2 and all(d is not None for d in day_list) and all(b > a for a, b in zip(day_list, day_list[1:]))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if timed:  # one patient's scans: the LVCR a user would have (fixed point or clinical.csv)
            longi = segment_timepoints(
                volumes,
                [float(r.days) - float(recs[0].days) for r in recs],
                bundle,
                clinical,
                method="network",
                overlap=overlap,
                keep=keep,
                max_iter=max_iter,
            )
            return longi.segmentations, longi.lvcr_per_day, bool(longi.trace)
        # no usable series: each scan alone, LVCR from clinical.csv or unknown
        segs = [
            segment(v, bundle, clinical, None, method="network", overlap=overlap, keep=keep)  # type: ignore[arg-type]
            for v in volumes
        ]
        return segs, None, False


def _lvcr_input(bundle, given: float | None, iterated: bool, lvcr_est: float | None) -> tuple[str, float]:
    """Where the LVCR fed to the network came from, and its value (nan when unknown)."""
    if bundle.clinical_encoder is None:
        return "not used (no clinical input)", math.nan
    if given is not None:
        return "clinical.csv", given
    if iterated and lvcr_est is not None:
        return "fixed-point estimate", lvcr_est
    if iterated:
        return "fixed-point stopped (empty mask)", math.nan
    return "unknown (training median)", math.nan


def _scores(pred: np.ndarray, truth: np.ndarray, spacing) -> dict[str, float]:
    """Dice, IoU and HD95 (mm) of a predicted mask against the ground truth."""
    from mkunet.analysis.metrics import dice, hd95, iou

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "dice": dice(pred, truth),
            "iou": iou(pred, truth),
            "hd95_mm": hd95(pred, truth, spacing),
        }


def evaluate_runs(
    runs: Sequence[str | Path],
    data: str | Path,
    *,
    all_cases: bool = False,
    lvcr_cutoff: float | None = None,
    checkpoint: str = "best",
    overlap: float = 0.25,
    keep: str = "component",
    max_iter: int = 5,
    progress: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    """Segment the test cases of each run and tabulate (see the module docstring).

    Args:
        runs: training run folders (their ``best/`` bundle, or ``last/``) or bundle folders.
        data: the cohort folder (same layout as for training).
        all_cases: evaluate every scan of ``data`` instead of each run's test split.
        lvcr_cutoff: high/low LVCR cut-off (per day) for Table 3; default the median of the
            evaluated patients' LVCR.
        checkpoint: ``"best"`` or ``"last"``.
        overlap: sliding-window overlap (default 0.25, :func:`mkunet.segmentation.infer.segment`'s).
        max_iter: fixed-point LVCR passes after the first (:func:`mkunet.segmentation.infer.segment_timepoints`).
        keep: ``"component"`` (the post-processing of :func:`mkunet.segmentation.infer.segment`),
            ``"all"`` (every component) or ``"none"`` (the raw thresholded map).
        progress: called as ``progress(run_label, done, total)`` after every case.

    Returns:
        :class:`Evaluation`.
    """
    from mkunet.models import count_parameters
    from mkunet.models.bundle import ModelBundle
    from mkunet.segmentation.infer import check_keep

    if not runs:
        raise ValueError("No runs to evaluate: give at least one --runs RUN_DIR.")
    check_keep(keep)
    cohort = _Cohort(Path(data))
    rows: list[dict[str, Any]] = []
    table1_rows: list[dict[str, Any]] = []
    for run in runs:
        run = Path(run)
        bundle_dir = _run_bundle_dir(run, checkpoint)
        bundle = ModelBundle.load(bundle_dir)
        label = str(bundle.metadata.get("label") or run.name)
        chosen = cohort.cases_of(run, bundle_dir, all_cases)
        chosen_by_patient: dict[str, list] = {}
        for rec in chosen:
            chosen_by_patient.setdefault(rec.patient_id, []).append(rec)
        done = 0
        for pid, recs in chosen_by_patient.items():
            pairs = [cohort.load(r) for r in recs]
            clinical, given = cohort.clinical(pid)
            segs, lvcr_est, iterated = _segment_patient(
                recs, [v for v, _ in pairs], bundle, clinical, overlap=overlap, keep=keep, max_iter=max_iter
            )
            source, lv_in = _lvcr_input(bundle, given, iterated, lvcr_est)
            lv_truth = cohort.truth_lvcr(pid)
            for rec, (volume, truth), seg in zip(recs, pairs, segs):
                pred = seg.mask
                rows.append(
                    {
                        "run": str(run),
                        "label": label,
                        "model": bundle.model_name,
                        "patient_id": rec.patient_id,
                        "timepoint": rec.timepoint,
                        "scan": rec.key,
                        **_scores(pred, truth, volume.spacing),
                        "lvcr_per_day": lv_truth if lv_truth is not None else math.nan,
                        "lvcr_input_per_day": seg.lvcr_used if seg.lvcr_used is not None else lv_in,
                        "lvcr_source": source,
                        "truth_cm3": float(truth.sum()) * volume.voxel_volume_mm3 / 1000.0,
                        "predicted_cm3": float(np.count_nonzero(pred)) * volume.voxel_volume_mm3 / 1000.0,
                    }
                )
                done += 1
                if progress is not None:
                    progress(label, done, len(chosen))
        table1_rows.append(
            {"run": str(run), "label": label, "model": bundle.model_name, "parameters": count_parameters(bundle.model)}
        )
    per_case = pd.DataFrame(rows)
    return _tables(per_case, pd.DataFrame(table1_rows), lvcr_cutoff)


def _sources(part: pd.DataFrame) -> str:
    """``"fixed-point estimate: 8; clinical.csv: 2"``: where the LVCR fed to the network came from."""
    if "lvcr_source" not in part.columns or part.empty:
        return ""
    counts = part["lvcr_source"].value_counts(sort=False)
    return "; ".join(f"{k}: {int(n)}" for k, n in counts.items())


_TABLE2_COLUMNS = [
    "variant",
    "run",
    "n",
    "dice_mean",
    "dice_sd",
    "hd95_mean",
    "hd95_sd",
    "dice_t",
    "dice_p",
    "hd95_t",
    "hd95_p",
    "n_paired",
    "lvcr_source",
]
_TABLE3_COLUMNS = [
    "label",
    "run",
    "group",
    "n",
    "n_patients",
    "dice_mean",
    "dice_sd",
    "hd95_mean",
    "hd95_sd",
    "lvcr_cutoff",
    "lvcr_source",
]


def _table1(per_case: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Table 1: Dice, IoU, HD95 mean and SD per run (model)."""
    t1 = []
    for _, run in runs.iterrows():
        sub = per_case[per_case["run"] == run["run"]]
        d, j, h = _summary(sub["dice"]), _summary(sub["iou"]), _summary(sub["hd95_mm"])
        t1.append(
            {
                "label": run["label"],
                "model": run["model"],
                "run": run["run"],
                "n": len(sub),
                "dice_mean": d["mean"],
                "dice_sd": d["sd"],
                "iou_mean": j["mean"],
                "iou_sd": j["sd"],
                "hd95_mean": h["mean"],
                "hd95_sd": h["sd"],
                "hd95_n_inf": h["n_inf"],
                "parameters": int(run["parameters"]),
                "lvcr_source": _sources(sub),
            }
        )
    return pd.DataFrame(t1)


def _paired_against_full(row: dict[str, Any], sub: pd.DataFrame, full: pd.DataFrame) -> None:
    """Paired t-tests of Dice and HD95 against the full model on the scans both runs segmented (into ``row``)."""
    from mkunet.analysis.metrics import paired_ttest

    common = sub.index.intersection(full.index)
    row["n_paired"] = len(common)
    for metric, col in (("dice", "dice"), ("hd95", "hd95_mm")):
        a, b = sub.loc[common, col].to_numpy(float), full.loc[common, col].to_numpy(float)
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t, p = paired_ttest(a[ok], b[ok])
            row[f"{metric}_t"], row[f"{metric}_p"] = t, p


def _table2(per_case: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Table 2: the ablation rows present among the runs, each tested against the full model."""
    keyed = {}
    for _, run in runs.iterrows():
        key = _ablation_key(str(run["label"]))
        if key is not None and key not in keyed:
            keyed[key] = run["run"]
    t2 = []
    full = per_case[per_case["run"] == keyed["full model"]].set_index("scan") if "full model" in keyed else None
    for key in ABLATION:
        if key not in keyed:
            continue
        sub = per_case[per_case["run"] == keyed[key]].set_index("scan")
        d, h = _summary(sub["dice"]), _summary(sub["hd95_mm"])
        row = {
            "variant": key,
            "run": keyed[key],
            "n": len(sub),
            "dice_mean": d["mean"],
            "dice_sd": d["sd"],
            "hd95_mean": h["mean"],
            "hd95_sd": h["sd"],
            "dice_t": math.nan,
            "dice_p": math.nan,
            "hd95_t": math.nan,
            "hd95_p": math.nan,
            "n_paired": 0,
            "lvcr_source": _sources(sub),
        }
        if full is not None and key != "full model":
            _paired_against_full(row, sub, full)
        t2.append(row)
    return pd.DataFrame(t2, columns=_TABLE2_COLUMNS)


def _table3(per_case: pd.DataFrame, runs: pd.DataFrame, lvcr_cutoff: float | None) -> tuple[pd.DataFrame, float]:
    """Table 3: Dice and HD95 per run in high vs low LVCR patients -> (table, cut-off per day used)."""
    patient_lvcr = (
        per_case.drop_duplicates("patient_id").set_index("patient_id")["lvcr_per_day"]
        if len(per_case)
        else pd.Series(dtype=float)
    )
    finite = patient_lvcr[np.isfinite(patient_lvcr.to_numpy(float))] if len(patient_lvcr) else patient_lvcr
    cutoff = float(lvcr_cutoff) if lvcr_cutoff is not None else (float(np.median(finite)) if len(finite) else math.nan)
    t3 = []
    if np.isfinite(cutoff):
        for _, run in runs.iterrows():
            sub = per_case[(per_case["run"] == run["run"]) & np.isfinite(per_case["lvcr_per_day"].astype(float))]
            for group, sel in (("high", sub["lvcr_per_day"] > cutoff), ("low", sub["lvcr_per_day"] <= cutoff)):
                part = sub[sel]
                d, h = _summary(part["dice"]), _summary(part["hd95_mm"])
                t3.append(
                    {
                        "label": run["label"],
                        "run": run["run"],
                        "group": group,
                        "n": len(part),
                        "n_patients": part["patient_id"].nunique(),
                        "dice_mean": d["mean"],
                        "dice_sd": d["sd"],
                        "hd95_mean": h["mean"],
                        "hd95_sd": h["sd"],
                        "lvcr_cutoff": cutoff,
                        "lvcr_source": _sources(part),
                    }
                )
    return pd.DataFrame(t3, columns=_TABLE3_COLUMNS), cutoff


def _tables(per_case: pd.DataFrame, runs: pd.DataFrame, lvcr_cutoff: float | None) -> Evaluation:
    """Tables 1-3 of the per-case scores (``runs``: run, label, model, parameters per run)."""
    table3, cutoff = _table3(per_case, runs, lvcr_cutoff)
    return Evaluation(per_case, _table1(per_case, runs), _table2(per_case, runs), table3, cutoff)


# ---------------------------------------------------------------------------------- benchmark
def benchmark_plan(paper_settings: bool = False) -> list[dict[str, Any]]:
    """The runs of Tables 1-2: ``[{"name", "label", "model", "channels", "adaptive_window", "model_kwargs",
    "use_lvcr"}]``.

    Baselines of Table 1 take the windowed intensity only (1 channel), as in the paper;
    MK-UNet (= the "full model" of Table 2) takes the four channels, clinical fusion and
    the immune-aware gates. The ablation keeps the MK-UNet backbone and adds one
    component at a time; "without LVCR" is the full model trained and evaluated with the
    LVCR input fixed at the training median.
    """
    one = {"channels": 1, "adaptive_window": False}
    four = {"channels": 4, "adaptive_window": True}
    return [
        {"name": "unet3d", "label": "3-D U-Net", "model": "unet3d", **one, "model_kwargs": {}, "use_lvcr": True},
        {"name": "resnet3d", "label": "3-D ResNet", "model": "resnet3d", **one, "model_kwargs": {}, "use_lvcr": True},
        {
            "name": "attention_unet",
            "label": "Attention U-Net",
            "model": "attention_unet",
            **one,
            "model_kwargs": {},
            "use_lvcr": True,
        },
        {"name": "mkunet", "label": "MK-UNet", "model": "mkunet", **four, "model_kwargs": {}, "use_lvcr": True},
        {
            "name": "ablation_baseline",
            "label": "baseline",
            "model": "mkunet",
            **one,
            "model_kwargs": {"clinical_fusion": False, "gate": "none"},
            "use_lvcr": True,
        },
        {
            "name": "ablation_4ch",
            "label": "+ 4-channel preprocessing",
            "model": "mkunet",
            **four,
            "model_kwargs": {"clinical_fusion": False, "gate": "none"},
            "use_lvcr": True,
        },
        {
            "name": "ablation_fusion",
            "label": "+ clinical fusion",
            "model": "mkunet",
            **four,
            "model_kwargs": {"clinical_fusion": True, "gate": "none"},
            "use_lvcr": True,
        },
        {
            "name": "ablation_no_lvcr",
            "label": "without LVCR",
            "model": "mkunet",
            **four,
            "model_kwargs": {},
            "use_lvcr": False,
        },
    ]


SMALL_RECIPE: dict[str, Any] = {
    "patch_size": (32, 64, 64),
    "target_spacing": (2.5, 2.0, 2.0),
    "lr": 2e-3,
    "lr_schedule": "poly",
    "tumour_fraction": 0.4,
    "lung_fraction": 0.3,
    "patches_per_epoch": 32,
}
"""Training settings of every run of :func:`benchmark_models` without ``paper_settings``: those
of the shipped model (docs/segmentation.md, "The shipped model"), which learn in minutes on a CPU. The paper's
settings (lr 1e-4, constant) barely move a small network in a few CPU epochs."""


def benchmark_models(
    data: str | Path,
    out: str | Path,
    *,
    paper_settings: bool = False,
    epochs: int | None = None,
    width: int | None = None,
    seed: int = 0,
    patch_size: Sequence[int] | None = None,
    target_spacing: Sequence[float] | None = None,
    time_budget_min: float | None = None,
    lvcr_cutoff: float | None = None,
    resume: bool = True,
    keep: str = "component",
    callback: Callable[[str, dict[str, Any]], None] | None = None,
) -> Evaluation:
    """Train every model of Tables 1-2 with one seed and budget, then evaluate them on the same test split.

    Defaults are small (width 4, 10 epochs, :data:`SMALL_RECIPE`) so the whole comparison
    runs on a CPU; ``paper_settings`` uses width 16 (the paper's channels 16..256), 150
    epochs and the :class:`~mkunet.train.TrainConfig` defaults (lr 1e-4, patch 32x96x96).
    Runs go to ``out/runs/<name>``; completed runs are reused (``resume``); tables go to ``out``.

    Args:
        data: cohort folder.
        out: output folder.
        paper_settings: full width and 150 epochs.
        epochs, width: override the defaults.
        seed: the one seed of every run (same split, same patches).
        patch_size, target_spacing: override the training defaults.
        time_budget_min: per-run time budget in minutes.
        lvcr_cutoff: Table 3 cut-off (default: median).
        resume: reuse finished runs and resume interrupted ones.
        keep: post-processing of the evaluation, see :func:`evaluate_runs`.
        callback: ``callback(run_name, event)`` with the training events of :func:`mkunet.train.train`.
    """
    from mkunet.segmentation.infer import check_keep
    from mkunet.train import TrainConfig, train

    check_keep(keep)  # before hours of training, not after
    out = Path(out)
    n_epochs = epochs if epochs is not None else (150 if paper_settings else 10)
    base_width = width if width is not None else (16 if paper_settings else 4)
    run_dirs = []
    for spec in benchmark_plan(paper_settings):
        run_dir = out / "runs" / spec["name"]
        kwargs: dict[str, Any] = {} if paper_settings else dict(SMALL_RECIPE)
        if patch_size is not None:
            kwargs["patch_size"] = tuple(patch_size)
        if target_spacing is not None:
            kwargs["target_spacing"] = tuple(target_spacing)
        model_kwargs = dict(spec["model_kwargs"])
        state = run_dir / "state.json"
        if state.exists() and resume:
            done = json.loads(state.read_text(encoding="utf-8"))["epoch"]
            if done < n_epochs:
                config = TrainConfig.from_run(run_dir, epochs=n_epochs, time_budget_min=time_budget_min)
                train(config, callback=None if callback is None else (lambda e, n=spec["name"]: callback(n, e)))
        else:
            config = TrainConfig(
                data=str(data),
                out=str(run_dir),
                model=spec["model"],
                model_kwargs=model_kwargs,
                width=base_width,
                epochs=n_epochs,
                seed=seed,
                channels=spec["channels"],
                adaptive_window=spec["adaptive_window"],
                use_lvcr=spec["use_lvcr"],
                label=spec["label"],
                time_budget_min=time_budget_min,
                command="mkunet benchmark-models",
                **kwargs,
            )
            train(config, callback=None if callback is None else (lambda e, n=spec["name"]: callback(n, e)))
        run_dirs.append(run_dir)
    evaluation = evaluate_runs(run_dirs, data, lvcr_cutoff=lvcr_cutoff, keep=keep)
    evaluation.write(out)
    return evaluation
