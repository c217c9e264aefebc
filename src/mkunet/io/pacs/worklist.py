"""Worklists: a cohort to segment, read from a CSV of PACS studies (:func:`read_worklist`, :func:`fetch_worklist`).

``mkunet run --dicomweb URL --worklist worklist.csv`` reads one row per scan (``patient_id,
study_uid[, series_uid], scan_date``), retrieves every series into a cohort folder in the
``scans.csv`` layout of :func:`mkunet.run.inputs.discover_scans` and runs
:func:`mkunet.run.pipeline.run_cohort` on it.

The retrieved files and the SEG / RTSTRUCT carry the patient's identity (name, ID, birth
date): keep the cache and output folders where patient data may be kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mkunet.io.pacs.client import PacsError, is_uid
from mkunet.io.pacs.series import SeriesChoice, SeriesSummary
from mkunet.io.pacs.source import DicomWebSource

__all__ = ["WORKLIST_COLUMNS", "WorklistEntry", "read_worklist", "fetch_worklist"]

WORKLIST_COLUMNS = ("patient_id", "study_uid", "scan_date")
"""Required columns of a worklist CSV (``series_uid`` is optional)."""


@dataclass(frozen=True)
class WorklistEntry:
    """One scan of a worklist: a patient's study (and optionally series) and its date.

    Attributes:
        patient_id: the patient (the cohort's id; clinical.csv uses it).
        study_uid: StudyInstanceUID on the PACS.
        series_uid: SeriesInstanceUID, or None to let :meth:`DicomWebSource.find_ct_series` choose.
        scan_date: YYYY-MM-DD.
        line: the row's line in the file (header = 1).
    """

    patient_id: str
    study_uid: str
    series_uid: str | None
    scan_date: str
    line: int = 0


def read_worklist(path: str | Path) -> list[WorklistEntry]:
    """Read a worklist CSV: ``patient_id, study_uid[, series_uid], scan_date`` (YYYY-MM-DD or YYYYMMDD).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column, an empty or invalid value, a bad date, a study listed twice for a
            patient; the message names the file, line and column.
    """
    from mkunet.run.inputs import parse_scan_date, read_text_table

    path = Path(path)
    df = read_text_table(path, "worklist", WORKLIST_COLUMNS, ("series_uid",))
    entries: list[WorklistEntry] = []
    seen: set[tuple[str, str, str | None]] = set()
    for i, rec in enumerate(df.to_dict("records")):
        values = {k: str(v).strip() for k, v in rec.items()}
        if not any(values.values()):
            continue
        line = i + 2
        where = f"worklist '{path}' line {line}"
        for col in WORKLIST_COLUMNS:
            if not values[col]:
                raise ValueError(f"{where}: {col} is empty; fill it in.")
        for col in ("study_uid", "series_uid"):
            if values.get(col) and not is_uid(values[col]):
                raise ValueError(f"{where}: {col} {values[col]!r} is not a DICOM UID (digits and dots, <= 64 chars).")
        date = parse_scan_date(values["scan_date"], where)
        series = values.get("series_uid") or None
        key = (values["patient_id"], values["study_uid"], series)
        if key in seen:
            raise ValueError(f"{where}: patient {key[0]!r}, study {key[1]} is listed twice; keep one row.")
        seen.add(key)
        entries.append(WorklistEntry(values["patient_id"], values["study_uid"], series, date.isoformat(), line))
    if not entries:
        raise ValueError(f"worklist '{path}' has no rows; add one row per scan.")
    return entries


def _fetch_entry(
    source: DicomWebSource, entry: WorklistEntry, cohort: Path
) -> tuple[SeriesChoice | SeriesSummary, Path]:
    """Choose (or check) the entry's series and retrieve it into ``cohort``; (the choice, the folder relative
    to ``cohort``: ``<patient>/<study_uid>_<series_uid>``)."""
    from mkunet.run.store import patient_folder_name

    choice: SeriesChoice | SeriesSummary
    if entry.series_uid is None:
        choice = source.find_ct_series(entry.study_uid)
        series_uid = choice.chosen.series_uid
    else:
        choice = source.check_series(entry.study_uid, entry.series_uid)
        series_uid = entry.series_uid
    rel = Path(patient_folder_name(entry.patient_id)) / f"{entry.study_uid}_{series_uid}"
    source.fetch_series(entry.study_uid, series_uid, cohort / rel)
    return choice, rel


def fetch_worklist(
    source: DicomWebSource,
    entries: Sequence[WorklistEntry],
    cohort_dir: str | Path,
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[Path, list[SeriesChoice | SeriesSummary]]:
    """Retrieve every scan of a worklist into a cohort folder that :func:`mkunet.run.inputs.discover_scans` reads.

    Layout: ``COHORT/<patient>/<study_uid>_<series_uid>/<SOPInstanceUID>.dcm`` and
    ``COHORT/scans.csv`` (``patient_id, timepoint, scan_date, dicom``). Series already there are
    not downloaded again (see :meth:`DicomWebSource.fetch_series`).

    Returns:
        (the cohort folder, per entry the series choice or the checked series).

    Raises:
        PacsError: the first scan that cannot be found or retrieved (named by the worklist line).
    """
    import pandas as pd

    from mkunet.utils import atomic_write_csv

    cohort = Path(cohort_dir)
    cohort.mkdir(parents=True, exist_ok=True)
    rows = []
    chosen: list[SeriesChoice | SeriesSummary] = []
    for k, entry in enumerate(entries):
        if progress is not None:
            progress(k, len(entries), f"retrieving {entry.patient_id} {entry.scan_date}")
        try:
            choice, rel = _fetch_entry(source, entry, cohort)
        except PacsError as err:
            raise type(err)(f"worklist line {entry.line} (patient {entry.patient_id!r}): {err}") from err
        chosen.append(choice)
        rows.append({"patient_id": entry.patient_id, "scan_date": entry.scan_date, "dicom": rel.as_posix()})
    if progress is not None:
        progress(len(entries), len(entries), "retrieved")
    table = pd.DataFrame(rows)
    table.insert(1, "timepoint", table.groupby("patient_id").cumcount())
    atomic_write_csv(table, cohort / "scans.csv")
    return cohort, chosen
