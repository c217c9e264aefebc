"""What a cohort run leaves on disk, and how to load it back: :class:`CohortRun`, :func:`load_run`.

Layout of a run folder ``OUT/`` (written by :func:`mkunet.run.pipeline.run_cohort`):

* ``run.json``: parameters, model identity, inputs, counts, notes;
* ``results.csv`` / ``.parquet`` (one row per patient x scan), ``patients.csv`` (one row per
  patient), ``errors.csv`` (:data:`ERROR_COLUMNS`), ``lesion_results.csv`` / ``.parquet``
  (target-lesion runs), ``excluded.csv`` (the patients the quality control left out of the
  statistics, with the reasons: :mod:`mkunet.run.overrides`);
* ``patients/<patient folder>/`` (:func:`patient_folder_name`): per-scan outputs and
  ``overview.png``;
* ``cohort/`` (with outcomes): the tables of :func:`mkunet.analysis.cohort.analyse_cohort`, including the
  stored curves the report draws (``km.csv``, ``roc.csv``).

Both the pipeline (which writes a run) and the report (which only reads one) import this
module; it imports nothing from the rest of :mod:`mkunet`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ERROR_COLUMNS", "CohortRun", "load_run", "patient_folder_name"]

ERROR_COLUMNS = ["patient_id", "timepoint", "stage", "error", "action"]
"""Columns of ``errors.csv``: one row per problem."""


def patient_folder_name(pid: str) -> str:
    """A patient id usable as a folder / file name (ids are user data)."""
    bad = set('/\\:*?"<>|') | {"\0"}
    name = "".join("_" if (c in bad or ord(c) < 32) else c for c in str(pid)).strip()
    if name in ("", ".", ".."):
        raise ValueError(f"patient_id {pid!r} cannot be used as a folder name; rename the patient.")
    return name


@dataclass
class CohortRun:
    """The result of :func:`mkunet.run.pipeline.run_cohort` (everything is also on disk under ``out_dir``).

    Attributes:
        out_dir: the output folder.
        results: one row per patient x timepoint (``results.csv``).
        patients: one row per patient (``patients.csv``).
        errors: one row per problem (``errors.csv``): patient_id, timepoint, stage, error, action.
        processed: patients computed in this run.
        resumed: patients taken from the cache.
        model: :func:`mkunet.run.cache.model_identity` of the model used.
        parameters: the run parameters (part of the cache key).
        cohort: the :class:`mkunet.analysis.cohort.CohortAnalysis` when outcomes were given (None when
            loaded from disk).
        notes: run-level notes (IES, cohort analysis, ...).
        meta: ``run.json`` content (inputs, synthetic flag, timings).
        lesions: one row per patient x target lesion x scan (``lesion_results.csv``; empty
            without ``--lesions``).
        excluded: the patients left out of the statistics by the quality control
            (``excluded.csv``: patient_id, qc_decision, scans, qc_reasons, qc_note).
    """

    out_dir: Path
    results: pd.DataFrame
    patients: pd.DataFrame
    errors: pd.DataFrame
    processed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    cohort: Any = None
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    lesions: pd.DataFrame = field(default_factory=pd.DataFrame)
    excluded: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def cohort_dir(self) -> Path | None:
        """``OUT/cohort`` when the cohort statistics were written."""
        d = self.out_dir / "cohort"
        return d if d.is_dir() else None

    def summary(self) -> str:
        """A few lines for the terminal."""
        n_ok = int((self.results.get("status", pd.Series(dtype=str)) == "ok").sum())
        lines = [
            f"patients: {len(self.patients)} ({len(self.processed)} computed, {len(self.resumed)} resumed from cache)",
            f"scans: {len(self.results)} ({n_ok} segmented with a tumour)",
            f"problems: {len(self.errors)} (see {self.out_dir / 'errors.csv'})",
            f"results: {self.out_dir / 'results.csv'}, {self.out_dir / 'patients.csv'}",
        ]
        if len(self.lesions):
            n = self.lesions[["patient_id", "lesion_id"]].drop_duplicates().shape[0]
            lines.append(
                f"target lesions: {n} in {self.lesions['patient_id'].nunique()} patient(s) "
                f"(see {self.out_dir / 'lesion_results.csv'})"
            )
        lines += self.qc_summary()
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def qc_summary(self) -> list[str]:
        """The quality control's summary: scans flagged, patients left out of the statistics."""
        if "qc" not in self.results.columns:
            return []
        flagged = int((self.results["qc"] == "review").sum())
        mode = self.meta.get("qc", "exclude")
        return [
            f"quality control: {flagged} of {len(self.results)} scan(s) flagged for review; "
            f"{len(self.excluded)} patient(s) left out of the statistics (--qc {mode}; see "
            f"{self.out_dir / 'excluded.csv'})"
        ]


def load_run(out_dir: str | Path) -> CohortRun:
    """Load a finished run from its folder (tables and run.json; ``cohort`` is None)."""
    out = Path(out_dir)
    if not (out / "run.json").is_file():
        raise FileNotFoundError(f"'{out}' is not an mkunet run folder (no run.json): run `mkunet run` first.")
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))

    def table(name: str, cols: Sequence[str] = ()) -> pd.DataFrame:
        p = out / name
        try:
            return pd.read_csv(
                p, dtype={"patient_id": str, "lesion_id": str, "features_from_lesion": str, "target_lesions": str}
            )
        except (FileNotFoundError, pd.errors.EmptyDataError):
            return pd.DataFrame(columns=list(cols))

    return CohortRun(
        out,
        table("results.csv"),
        table("patients.csv"),
        table("errors.csv", ERROR_COLUMNS),
        list(meta.get("processed", [])),
        list(meta.get("resumed", [])),
        dict(meta.get("model", {})),
        dict(meta.get("parameters", {})),
        None,
        list(meta.get("notes", [])),
        meta,
        table("lesion_results.csv") if (out / "lesion_results.csv").is_file() else pd.DataFrame(),
        table("excluded.csv", ("patient_id", "qc_decision", "scans", "qc_reasons", "qc_note")),
    )
