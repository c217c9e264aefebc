"""A person's QC decisions (``qc_overrides.csv``) and which series the cohort statistics leave out.

``qc_overrides.csv`` (``mkunet run --qc-overrides FILE``, ``run_cohort(..., qc_overrides=FILE)``;
it is read only when given, never looked up on its own)::

    patient_id,lesion_id,timepoint,decision,note
    SYN0003,1,,reject,heart contoured on every scan
    P07,,2,accept,checked: a true fast response

* ``patient_id``: a patient of the run;
* ``lesion_id`` (blank = every lesion, and the whole-volume segmentation): a target lesion of
  that patient (lesions.csv); must be blank for a patient without target lesions;
* ``timepoint`` (blank = every scan): a scan index (the ``T<k>`` of the outputs);
* ``decision``: ``accept`` (a flagged result counts as ok, with the note) or ``reject`` (the
  result is left out of the statistics, even with ``--qc include``); a ``reject`` wins over an
  ``accept`` that matches the same result;
* ``note``: free text, copied into the tables.

A bad row (unknown patient, lesion or timepoint, a decision other than accept / reject) is a
ValueError naming the file, line and field, raised before any patient is processed. The file
is applied at the statistics step, after the cache: editing it and rerunning recomputes no
segmentation.

**What is left out of the statistics.** The LVCR-based statistics (IES, Cox, Kaplan-Meier,
ROC) are per patient, and in a target-lesion run a patient's LVCR is that of the sum of its
target lesions: so the unit left out is the **patient**. With ``qc="exclude"`` (the default) a
patient is left out when any of its measured scans (status ok or empty: those the LVCR and the
response use) is ``review`` and not accepted, or rejected; with ``qc="include"`` only when
rejected. Unreadable or unmeasured scans are flagged ``review`` (code ``not_measured``) but are
already outside the LVCR, so they do not exclude the patient. Every row gets ``qc_decision``
(``ok`` | ``review`` | ``accepted`` | ``rejected``) and ``qc_note``; patients.csv gets
``qc_decision`` and ``in_statistics``; :func:`excluded_table` is ``OUT/excluded.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mkunet.run.inputs import ScanInput, TargetLesion, read_text_table

__all__ = [
    "QC_MODES",
    "OVERRIDE_COLUMNS",
    "EXCLUDED_COLUMNS",
    "QCOverride",
    "check_qc_mode",
    "read_overrides",
    "apply_overrides",
    "patient_decisions",
    "excluded_table",
]

QC_MODES = ("exclude", "include")
"""``qc="exclude"``: flagged, unaccepted series are left out of the statistics; ``"include"``: kept."""

OVERRIDE_COLUMNS = ("patient_id", "lesion_id", "timepoint", "decision", "note")
DECISIONS = ("accept", "reject")
EXCLUDED_COLUMNS = ["patient_id", "qc_decision", "scans", "qc_reasons", "qc_note"]
"""Columns of ``excluded.csv``: one row per patient left out of the statistics."""


@dataclass(frozen=True)
class QCOverride:
    """One row of ``qc_overrides.csv`` (None = blank: every lesion / every scan)."""

    patient_id: str
    lesion_id: str | None
    timepoint: int | None
    decision: str
    note: str
    where: str = ""

    def matches(self, patient_id: str, lesion_id: str | None, timepoint: int) -> bool:
        """True when this row applies to the result of ``patient_id``, ``lesion_id`` (None: whole volume), scan."""
        return (
            self.patient_id == str(patient_id)
            and (self.lesion_id is None or self.lesion_id == lesion_id)
            and (self.timepoint is None or self.timepoint == int(timepoint))
        )


def check_qc_mode(qc: str) -> str:
    """``qc`` checked: ``"exclude"`` or ``"include"``.

    Raises:
        ValueError: another value (quoted, with the choices).
    """
    if qc not in QC_MODES:
        raise ValueError(f"qc must be 'exclude' or 'include' (--qc), got {qc!r}.")
    return qc


def read_overrides(
    path: str | Path,
    scans: Mapping[str, Sequence[ScanInput]],
    targets: Mapping[str, Sequence[TargetLesion]] | None = None,
) -> list[QCOverride]:
    """Read and check ``qc_overrides.csv`` against the run's patients, lesions and scans (module doc).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column, or a bad row: ``'<file>', line <n>, field '<name>': ...``.
    """
    path = Path(path)
    df = read_text_table(
        path,
        "QC overrides file",
        ("patient_id", "decision"),
        ("lesion_id", "timepoint", "note"),
        how=f"write a header row {','.join(OVERRIDE_COLUMNS)} and one row per decision",
        allow_no_rows=True,
        skip_blank_lines=True,
    )
    out = []
    for i, rec in enumerate(df.to_dict("records")):
        values = {k: str(v).strip() for k, v in rec.items()}
        if not any(values.values()):
            continue
        out.append(_override(values, f"'{path}', line {i + 2}", scans, targets))
    return out


def _override(
    values: Mapping[str, str],
    where: str,
    scans: Mapping[str, Sequence[ScanInput]],
    targets: Mapping[str, Sequence[TargetLesion]] | None,
) -> QCOverride:
    pid = values.get("patient_id", "")
    if pid not in scans:
        raise ValueError(f"{where}, field 'patient_id': {pid!r} is not a patient of this run.")
    lid = values.get("lesion_id", "") or None
    if lid is not None:
        known = [les.lesion_id for les in (targets or {}).get(pid, [])]
        if lid not in known:
            hint = f"its target lesions are {known}" if known else "it has no target lesions: leave it blank"
            raise ValueError(f"{where}, field 'lesion_id': {lid!r} is not a lesion of patient {pid!r} ({hint}).")
    text = values.get("timepoint", "")
    tp = None
    if text:
        tps = [s.timepoint for s in scans[pid]]
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number == int(number) and int(number) in tps):
            raise ValueError(f"{where}, field 'timepoint': {text!r} is not a scan of patient {pid!r} ({tps}).")
        tp = int(number)
    decision = values.get("decision", "").lower()
    if decision not in DECISIONS:
        raise ValueError(f"{where}, field 'decision': {values.get('decision', '')!r}; use accept or reject.")
    return QCOverride(pid, lid, tp, decision, values.get("note", ""), where)


def _decide(qc: Any, matching: Sequence[QCOverride]) -> tuple[str, str]:
    """(decision, note) of one result from its automatic ``qc`` and the override rows that match it."""
    rejects = [o for o in matching if o.decision == "reject"]
    if rejects:
        return "rejected", "; ".join(o.note for o in rejects if o.note)
    accepts = [o for o in matching if o.decision == "accept"]
    note = "; ".join(o.note for o in accepts if o.note)
    if qc == "review":
        return ("accepted", note) if accepts else ("review", "")
    return "ok", note


def _matching(overrides: Sequence[QCOverride], pid: Any, lesion_id: str | None, timepoint: Any) -> list[QCOverride]:
    return [o for o in overrides if o.matches(pid, lesion_id, timepoint)]


def _combine(decisions: Sequence[str]) -> str:
    for d in ("rejected", "review", "accepted"):
        if d in decisions:
            return d
    return "ok"


def apply_overrides(
    results: pd.DataFrame, lesions: pd.DataFrame, overrides: Sequence[QCOverride]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``qc_decision`` and ``qc_note`` on every row of results.csv and lesion_results.csv.

    A lesion row is decided from its own ``qc`` and the rows that match it; a patient's scan row
    in a target-lesion run from its lesions' rows on that scan (rejected > review > accepted >
    ok), otherwise from its own ``qc`` and the rows with a blank ``lesion_id``.
    """
    lesions = lesions.copy()
    if len(lesions):
        decided = [
            _decide(r.get("qc"), _matching(overrides, r["patient_id"], str(r["lesion_id"]), r["timepoint"]))
            for r in lesions.to_dict("records")
        ]
        lesions["qc_decision"] = [d for d, _ in decided]
        lesions["qc_note"] = [n for _, n in decided]
    results = results.copy()
    if results.empty:
        return results, lesions
    out = []
    for r in results.to_dict("records"):
        mine = (
            lesions[(lesions["patient_id"] == r["patient_id"]) & (lesions["timepoint"] == r["timepoint"])]
            if len(lesions)
            else lesions
        )
        if len(mine):
            notes = [n for n in mine["qc_note"] if n]
            out.append((_combine(list(mine["qc_decision"])), "; ".join(dict.fromkeys(notes))))
        else:
            out.append(_decide(r.get("qc"), _matching(overrides, r["patient_id"], None, r["timepoint"])))
    results["qc_decision"] = [d for d, _ in out]
    results["qc_note"] = [n for _, n in out]
    return results, lesions


def patient_decisions(results: pd.DataFrame, patients: pd.DataFrame, qc: str) -> pd.DataFrame:
    """patients.csv with ``qc_decision`` (over the measured scans) and ``in_statistics`` (``qc`` mode)."""
    patients = patients.copy()
    if patients.empty:
        return patients
    measured = results[results["status"].isin(["ok", "empty"])] if "status" in results else results.iloc[0:0]
    by_pid = measured.groupby("patient_id")["qc_decision"].apply(list).to_dict() if len(measured) else {}
    patients["qc_decision"] = [_combine(by_pid.get(pid, [])) for pid in patients["patient_id"]]
    keep = ("ok", "accepted") if qc == "exclude" else ("ok", "accepted", "review")
    patients["in_statistics"] = patients["qc_decision"].isin(keep)
    return patients


def excluded_table(results: pd.DataFrame, patients: pd.DataFrame) -> pd.DataFrame:
    """``excluded.csv``: one row per patient left out of the statistics, with its flagged scans and reasons."""
    rows = []
    if len(patients) and "in_statistics" in patients:
        for p in patients[~patients["in_statistics"].astype(bool)].to_dict("records"):
            mine = results[
                (results["patient_id"] == p["patient_id"])
                & results["qc_decision"].isin(["review", "rejected"])
                & results["status"].isin(["ok", "empty"])
            ]
            reasons = [
                f"T{int(r['timepoint'])}: {r['qc_reasons']}" for r in mine.to_dict("records") if r.get("qc_reasons")
            ]
            rows.append(
                {
                    "patient_id": p["patient_id"],
                    "qc_decision": p["qc_decision"],
                    "scans": ", ".join(f"T{int(t)}" for t in mine["timepoint"]),
                    "qc_reasons": "; ".join(reasons),
                    "qc_note": "; ".join(dict.fromkeys(n for n in mine["qc_note"] if n)),
                }
            )
    return pd.DataFrame(rows, columns=EXCLUDED_COLUMNS)
