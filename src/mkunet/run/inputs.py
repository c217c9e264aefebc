"""The inputs of a cohort run: scans, clinical.csv, outcomes.csv and lesions.csv.

Input discovery (:func:`discover_scans`)
---------------------------------------
* ``COHORT_DIR/scans.csv`` present (the layout of :func:`mkunet.synth.write_cohort`):
  one row per scan with ``patient_id``, ``timepoint``, ``days`` (or ``scan_date``
  YYYY-MM-DD), ``image`` (NIfTI, relative path), ``dicom`` (folder, relative) and
  optionally ``mask`` (a reference label map: the results then carry the Dice of the
  automatic mask against it). The DICOM folder is preferred (SEG and RTSTRUCT can only
  be written for a DICOM input); the NIfTI image is the fallback.
* otherwise ``COHORT_DIR/<patient_id>/<scan>/`` folders, each holding one DICOM CT
  series (directly or in a ``dicom/`` sub-folder); scans are dated by StudyDate
  (SeriesDate / AcquisitionDate as fallbacks), sorted by date, and ``days`` counts from
  the patient's first scan. A NIfTI / NRRD file has no date: a ValueError names it and
  says to add a ``scans.csv``.

``clinical.csv`` (:func:`read_clinical`) has one row per patient (``patient_id``, ``age``,
``sex``, ``smoking``, ``grade``, ``stage``, optional ``lvcr`` per day); ``outcomes.csv``
(:func:`read_outcomes`) needs ``patient_id``, ``os_days`` and ``event``; ``lesions.csv``
(:func:`read_lesions`) lists the target lesions. The readers are also importable from
:mod:`mkunet.run.pipeline`.

Units: days, mm. Points are physical (x, y, z) mm (DICOM LPS); boxes ((z0, z1), (y0, y1), (x0, x1)) mm.
"""

from __future__ import annotations

import datetime as _dt
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mkunet.run.store import patient_folder_name
from mkunet.utils import is_missing

__all__ = [
    "CLINICAL_COLUMNS",
    "ScanInput",
    "discover_scans",
    "read_clinical",
    "clinical_mapping",
    "read_outcomes",
    "LESION_COLUMNS",
    "LESION_OPTIONAL_COLUMNS",
    "MAX_TARGET_LESIONS",
    "TargetLesion",
    "check_lesions",
    "read_lesions",
    "read_text_table",
    "read_table",
    "parse_scan_date",
    "lesion_folder_name",
]

CLINICAL_COLUMNS = ("age", "sex", "smoking", "grade", "stage")
"""Required columns of clinical.csv besides ``patient_id`` (``lvcr`` is optional)."""
_NIFTI = (".nii", ".nii.gz", ".nrrd", ".nhdr")


@dataclass(frozen=True)
class ScanInput:
    """One scan of one patient.

    Attributes:
        patient_id: the patient.
        timepoint: 0-based index in time order (the folder name is ``T<timepoint>``).
        days: days since the patient's first scan.
        scan_date: YYYY-MM-DD when known.
        path: DICOM folder or NIfTI / NRRD file.
        kind: ``"dicom"`` or ``"nifti"``.
        reference_mask: optional reference label map (NIfTI) for a Dice check.
    """

    patient_id: str
    timepoint: int
    days: float
    scan_date: str | None
    path: Path
    kind: str
    reference_mask: Path | None = None

    def files(self) -> list[Path]:
        """The input files whose bytes define this scan (sorted)."""
        if self.path.is_dir():
            return sorted(p for p in self.path.iterdir() if p.is_file() and not p.name.startswith("."))
        return [self.path]


def _kind_of(path: Path) -> str:
    return "dicom" if path.is_dir() or path.name.lower().endswith(".dcm") else "nifti"


def parse_scan_date(value: Any, where: str) -> _dt.date:
    """A scan date written YYYY-MM-DD (or DICOM YYYYMMDD); ``where`` (file, line) starts the error message."""
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return _dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{where}: scan date {text!r} is not a date; write YYYY-MM-DD (or DICOM YYYYMMDD).")


def read_table(
    path: Path, what: str, needs: str, *, allow_no_rows: bool = False, **read_csv_kwargs: Any
) -> pd.DataFrame:
    """A user's CSV table, refused with one line naming the file when it is empty (0 bytes, or blank) or has a
    header and no row (unless ``allow_no_rows``).

    Args:
        path: the CSV file (it exists).
        what: its name in messages (``"clinical table"``).
        needs: what it must hold, for the message (``"one row per patient: patient_id, age, ..."``).
        allow_no_rows: a header-only table is valid (e.g. no reviewer decision yet).
        **read_csv_kwargs: passed to :func:`pandas.read_csv`.

    Raises:
        ValueError: an empty file, a header without rows, or a file pandas cannot parse.
    """
    try:
        df = pd.read_csv(path, **read_csv_kwargs)
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{what} '{path}' is empty: it needs a header row and {needs}.") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} '{path}' is not a readable CSV ({err}); it needs a header row and {needs}.") from err
    blank = df.apply(lambda c: c.isna() | (c.astype(str).str.strip() == "")).all(axis=1) if len(df.columns) else []
    if not allow_no_rows and (df.empty or bool(np.all(blank))):
        raise ValueError(
            f"{what} '{path}' has a header ({', '.join(map(str, df.columns))}) but no rows: it needs {needs}."
        )
    return df


def _from_scans_csv(cohort_dir: Path, csv: Path) -> dict[str, list[ScanInput]]:
    df = read_table(
        csv,
        "scans table",
        "one row per scan: patient_id, timepoint, days or scan_date, dicom or image",
        dtype={"patient_id": str},
    )
    if "patient_id" not in df.columns:
        raise ValueError(f"'{csv}' has no 'patient_id' column; columns are {list(df.columns)}.")
    if "dicom" not in df.columns and "image" not in df.columns:
        raise ValueError(
            f"'{csv}' needs a 'dicom' (folder) or 'image' (NIfTI) column per scan; has {list(df.columns)}."
        )
    if "days" not in df.columns and "scan_date" not in df.columns:
        raise ValueError(f"'{csv}' needs a 'days' (since the first scan) or 'scan_date' (YYYY-MM-DD) column.")
    out: dict[str, list[ScanInput]] = {}
    for pid, g in df.groupby("patient_id", sort=True):
        pid = str(pid)
        entries = []
        for i, row in g.iterrows():
            where = f"'{csv}' row {int(i) + 2} (patient {pid!r})"
            path = None
            for col in ("dicom", "image"):
                if col in g.columns and not is_missing(row.get(col)):
                    cand = (cohort_dir / str(row[col])).resolve()
                    if cand.exists():
                        path = cand
                        break
            if path is None:
                given = [str(row[c]) for c in ("dicom", "image") if c in g.columns and not is_missing(row.get(c))]
                # keep the scan: reading it will fail and be reported for this patient only
                path = (cohort_dir / given[0]).resolve() if given else cohort_dir / f"<no image for row {int(i) + 2}>"
            date = (
                None
                if "scan_date" not in g.columns or is_missing(row.get("scan_date"))
                else parse_scan_date(row["scan_date"], where)
            )
            if "days" in g.columns and not is_missing(row.get("days")):
                days = float(row["days"])
            elif date is not None:
                days = float("nan")  # filled below from the dates
            else:
                raise ValueError(f"{where}: neither 'days' nor 'scan_date' is given; fill one in.")
            ref = None
            if "mask" in g.columns and not is_missing(row.get("mask")):
                cand = (cohort_dir / str(row["mask"])).resolve()
                ref = cand if cand.exists() else None
            entries.append((days, date, path, ref, row.get("timepoint")))
        if any(math.isnan(e[0]) for e in entries):
            if any(e[1] is None for e in entries):
                raise ValueError(f"'{csv}': patient {pid!r} mixes rows with and without days/scan_date; fill them in.")
            first = min(e[1] for e in entries)
            entries = [((e[1] - first).days, *e[1:]) for e in entries]
        entries.sort(key=lambda e: e[0])
        out[pid] = [
            ScanInput(pid, k, float(d), None if date is None else date.isoformat(), p, _kind_of(p), ref)
            for k, (d, date, p, ref, _) in enumerate(entries)
        ]
    return out


def _dicom_date(folder: Path) -> tuple[_dt.date | None, Path | None]:
    import pydicom

    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM / corrupt: try the next file
            continue
        for key in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            value = str(ds.get(key, "") or "").strip()
            if value:
                return parse_scan_date(value, f"'{f}' {key}"), f
        return None, f
    return None, None


def _from_folders(cohort_dir: Path) -> dict[str, list[ScanInput]]:
    out: dict[str, list[ScanInput]] = {}
    for pdir in sorted(p for p in cohort_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        pid = pdir.name
        scans: list[tuple[_dt.date | None, Path]] = []
        for entry in sorted(pdir.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_file() and entry.name.lower().endswith(_NIFTI):
                raise ValueError(
                    f"'{entry}' is a NIfTI/NRRD image without a scan date: add a scans.csv to '{cohort_dir}' "
                    "(columns patient_id, timepoint, days or scan_date, image) to say when each scan was taken."
                )
            if not entry.is_dir():
                continue
            folder = entry / "dicom" if (entry / "dicom").is_dir() else entry
            niftis = [p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(_NIFTI)]
            date, first = _dicom_date(folder)
            if first is None:
                if niftis:
                    raise ValueError(
                        f"'{niftis[0]}' is a NIfTI/NRRD image without a scan date: add a scans.csv to "
                        f"'{cohort_dir}' (columns patient_id, timepoint, days or scan_date, image)."
                    )
                continue  # not a scan folder
            if date is None:
                raise ValueError(
                    f"The DICOM series in '{folder}' has no StudyDate/SeriesDate/AcquisitionDate: add a scans.csv "
                    f"to '{cohort_dir}' giving the scan days."
                )
            scans.append((date, folder))
        if not scans:
            continue
        scans.sort(key=lambda s: (s[0], str(s[1])))
        first_date = scans[0][0]
        out[pid] = [
            ScanInput(pid, k, float((d - first_date).days), d.isoformat(), folder, "dicom")
            for k, (d, folder) in enumerate(scans)
        ]
    return out


def discover_scans(cohort_dir: str | Path) -> dict[str, list[ScanInput]]:
    """Find every patient's scans (see the module docstring for the two layouts).

    Returns:
        patient_id -> scans in time order (``timepoint`` 0, 1, ...).

    Raises:
        FileNotFoundError: ``cohort_dir`` does not exist.
        ValueError: malformed scans.csv, a NIfTI without a date, no scan found.
    """
    cohort_dir = Path(cohort_dir)
    if not cohort_dir.is_dir():
        raise FileNotFoundError(f"Cohort folder not found: '{cohort_dir}'.")
    csv = cohort_dir / "scans.csv"
    scans = _from_scans_csv(cohort_dir, csv) if csv.is_file() else _from_folders(cohort_dir)
    if not scans:
        raise ValueError(
            f"No scans found in '{cohort_dir}': give a scans.csv, or one folder per patient holding one folder "
            "per scan with a DICOM CT series."
        )
    return scans


def read_clinical(path: str | Path) -> pd.DataFrame:
    """Read clinical.csv: one row per patient, indexed by ``patient_id`` (str).

    Raises:
        FileNotFoundError, ValueError: missing file / column, duplicated patient.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Clinical table not found: '{path}'.")
    df = read_table(
        path,
        "clinical table",
        "one row per patient: patient_id, age, sex, smoking, grade, stage (and optionally lvcr, per day)",
        dtype={"patient_id": str},
    )
    if "patient_id" not in df.columns:
        raise ValueError(f"'{path}' has no 'patient_id' column; columns are {list(df.columns)}.")
    dup = df["patient_id"][df["patient_id"].duplicated()].tolist()
    if dup:
        raise ValueError(f"'{path}': patient(s) {dup[:10]} appear more than once; keep one row per patient.")
    missing = [c for c in CLINICAL_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"'{path}' lacks column(s) {missing}; clinical.csv needs patient_id, age, sex, smoking, grade, stage "
            "(and optionally lvcr, per day)."
        )
    return df.set_index("patient_id")


def clinical_mapping(row: pd.Series | None) -> dict[str, Any] | None:
    """One row of :func:`read_clinical` as the mapping :func:`mkunet.segmentation.infer.segment_timepoints` takes.

    The clinical columns (and ``lvcr`` when given), numpy scalars as Python values, missing values
    (:func:`mkunet.utils.is_missing`) as None; ``lvcr`` is left out when missing.
    """
    if row is None:
        return None
    out: dict[str, Any] = {}
    for c in (*CLINICAL_COLUMNS, "lvcr"):
        if c in row.index:
            v = row[c]
            if isinstance(v, (np.generic,)):
                v = v.item()
            out[c] = None if is_missing(v) else v
    if out.get("lvcr") is None:
        out.pop("lvcr", None)
    return out


# ============================================================================ target lesions


LESION_COLUMNS = ("patient_id", "lesion_id", "x_mm", "y_mm", "z_mm")
"""Required columns of lesions.csv (see :func:`read_lesions`)."""
LESION_OPTIONAL_COLUMNS = ("timepoint", "roi")
"""Optional columns of lesions.csv."""
MAX_TARGET_LESIONS = 5
"""RECIST 1.1 allows at most 5 target lesions per patient (2 per organ; the per-organ limit is not checked)."""


@dataclass(frozen=True)
class TargetLesion:
    """One row of lesions.csv: a target lesion and where it is.

    Attributes:
        patient_id: the patient (as in scans.csv / the patient folders).
        lesion_id: the lesion's name within its patient (text: "1", "RUL", ...).
        point_xyz_mm: a point inside the lesion (the "click"), physical patient
            coordinates **(x, y, z)** in mm (DICOM LPS), on scan ``timepoint``.
        timepoint: 0-based index of the scan the click (and box) refer to, among the
            patient's scans in time order (the ``T<k>`` of the outputs; 0 = first scan).
        box_mm: optional box around the lesion on that scan, ((z0, z1), (y0, y1), (x0, x1))
            physical mm, each start < stop; when given it is the region of interest
            instead of the click.
        source: the file the row came from ("" when built in Python).
        line: the row's line number in that file (header = line 1; 0 when built in Python).
    """

    patient_id: str
    lesion_id: str
    point_xyz_mm: tuple[float, float, float]
    timepoint: int = 0
    box_mm: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] | None = None
    source: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        """Where the row is, for messages: file, line, patient and lesion."""
        at = f"'{self.source}' line {self.line}, " if self.source else ""
        return f"{at}patient {self.patient_id!r}, lesion {self.lesion_id!r}"

    @property
    def box_text(self) -> str | None:
        """The box in the lesions.csv ``roi`` format, ``"x0 x1 y0 y1 z0 z1"`` (mm), or None."""
        if self.box_mm is None:
            return None
        (z0, z1), (y0, y1), (x0, x1) = self.box_mm
        return " ".join(f"{v:g}" for v in (x0, x1, y0, y1, z0, z1))

    def roi(self) -> Any:
        """The region of interest on scan ``timepoint``: :class:`mkunet.segmentation.infer.Box` (mm) when a box is
        given,
        else :class:`~mkunet.segmentation.infer.Seed` at the click (100 mm cube, the component at the click kept)."""
        from mkunet.segmentation.infer import Box, Seed

        if self.box_mm is not None:
            z, y, x = self.box_mm
            return Box(z=z, y=y, x=x, units="mm")
        return Seed(point=self.point_xyz_mm, units="mm")

    def key(self) -> dict[str, Any]:
        """What defines the lesion's results (part of the patient's cache key; not the file line)."""
        return {
            "lesion_id": self.lesion_id,
            "point_xyz_mm": [float(v) for v in self.point_xyz_mm],
            "timepoint": int(self.timepoint),
            "box_zyx_mm": None if self.box_mm is None else [[float(a), float(b)] for a, b in self.box_mm],
        }


def _lesion_number(text: str, column: str, where: str, problems: list[str]) -> float | None:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        what = "is empty" if not text else f"is {text!r}, not a finite number"
        problems.append(f"{where}: {column} {what}; give the coordinate in mm")
        return None
    return value


def _lesion_box(text: str, point: tuple[float, float, float] | None, where: str, problems: list[str]) -> Any:
    parts = text.replace(";", " ").split()
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 6 or not all(math.isfinite(v) for v in values):
        problems.append(
            f"{where}: roi {text!r} is not a box; write six numbers 'x0 x1 y0 y1 z0 z1' in mm "
            "separated by spaces (or leave roi blank to use the click)"
        )
        return None
    x0, x1, y0, y1, z0, z1 = values
    bad = [a for a, (lo, hi) in zip("xyz", ((x0, x1), (y0, y1), (z0, z1))) if not lo < hi]
    if bad:
        problems.append(
            f"{where}: roi {text!r} has start >= stop along {', '.join(bad)}; write 'x0 x1 y0 y1 z0 z1' "
            "with each start < stop (mm)"
        )
        return None
    if point is not None and not all(lo <= p <= hi for p, (lo, hi) in zip(point, ((x0, x1), (y0, y1), (z0, z1)))):
        problems.append(
            f"{where}: the click ({', '.join(f'{v:g}' for v in point)}) mm lies outside its roi box "
            f"{text!r}; fix x_mm/y_mm/z_mm or the box"
        )
        return None
    return ((z0, z1), (y0, y1), (x0, x1))


def _raise_lesion_problems(path: Any, problems: list[str]) -> None:
    if problems:
        more = f"; and {len(problems) - 8} more problem(s)" if len(problems) > 8 else ""
        raise ValueError(f"lesions file '{path}': " + "; ".join(problems[:8]) + more + ".")


def check_lesions(
    lesions: Sequence[TargetLesion],
    scans: Mapping[str, Sequence[ScanInput]] | None = None,
    source: Any = "lesions",
) -> list[TargetLesion]:
    """Check a list of target lesions (what :func:`read_lesions` does after parsing).

    Checks: unique (patient_id, lesion_id); at most :data:`MAX_TARGET_LESIONS` per patient;
    with ``scans`` (from :func:`discover_scans`): every patient has scans and every
    ``timepoint`` exists.

    Raises:
        ValueError: naming ``source``, the line / patient / lesion and the fix.
    """
    lesions = list(lesions)
    problems: list[str] = []
    if not lesions:
        problems.append("no lesion rows; give one row per target lesion or leave out --lesions")
    seen: dict[tuple[str, str], TargetLesion] = {}
    per_patient: dict[str, list[TargetLesion]] = {}
    for les in lesions:
        first = seen.setdefault((les.patient_id, les.lesion_id), les)
        if first is not les:
            problems.append(
                f"{les.where}: duplicate (patient_id, lesion_id), first given "
                f"{'on line ' + str(first.line) if first.line else 'earlier'}; give each lesion once"
            )
        per_patient.setdefault(les.patient_id, []).append(les)
    for pid, rows in per_patient.items():
        if len(rows) > MAX_TARGET_LESIONS:
            problems.append(
                f"patient {pid!r} has {len(rows)} target lesions; RECIST 1.1 allows at most "
                f"{MAX_TARGET_LESIONS} (2 per organ): keep the {MAX_TARGET_LESIONS} largest measurable "
                "ones"
            )
    if scans is not None:
        unknown = sorted(set(per_patient) - set(scans))
        if unknown:
            known = sorted(scans)
            problems.append(
                f"patient(s) {unknown[:10]} have no scans in the cohort (patients with scans: "
                f"{known[:10]}{' ...' if len(known) > 10 else ''}); fix the patient_id or remove those "
                "rows"
            )
        for les in lesions:
            n = len(scans.get(les.patient_id, ()))
            if les.patient_id in scans and les.timepoint >= n:
                problems.append(
                    f"{les.where}: timepoint {les.timepoint} but the patient has {n} scan(s) "
                    f"(T0-T{n - 1}, in time order); give the 0-based index of the scan the click is on"
                )
    _raise_lesion_problems(source, problems)
    return lesions


def read_text_table(
    path: str | Path,
    what: str,
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    how: str = "",
    allow_no_rows: bool = False,
    **read_csv_kwargs: Any,
) -> pd.DataFrame:
    """A user's CSV table read as text (no value turned into NaN), header names stripped.

    Args:
        path: the CSV file.
        what: its name in messages (``"lesions file"``, ``"worklist"``).
        required: columns it must have; optional: columns it may have (named in the message).
        how: what to do when the file is not a readable CSV (appended to the message).
        allow_no_rows: a header without rows is valid (else a ValueError naming the file).
        **read_csv_kwargs: passed to :func:`pandas.read_csv`.

    Raises:
        FileNotFoundError: no such file (names it).
        ValueError: an empty file, a header without rows (unless ``allow_no_rows``), not a readable CSV,
            or a required column missing (named, with the expected ones and the file's own).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what[:1].upper()}{what[1:]} not found: '{path}'.")
    needs = how or f"the columns {', '.join(required)}"
    if not path.read_bytes().strip():
        raise ValueError(f"{what} '{path}' is empty: {needs}.")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, **read_csv_kwargs)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} '{path}' is not a readable CSV ({err}){'; ' + how if how else ''}.") from err
    df.columns = [str(c).strip() for c in df.columns]
    if not allow_no_rows and not any(any(str(v).strip() for v in rec) for rec in df.itertuples(index=False)):
        raise ValueError(f"{what} '{path}' has a header ({', '.join(df.columns)}) but no rows: {needs}.")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} '{path}' lacks column(s) {missing}; it needs {', '.join(required)}"
            + (f" (and optionally {', '.join(optional)})" if optional else "")
            + f"; its columns are {list(df.columns)}."
        )
    return df


def read_lesions(path: str | Path, scans: Mapping[str, Sequence[ScanInput]] | None = None) -> list[TargetLesion]:
    """Read and check lesions.csv: one row per target lesion (at most 5 per patient, as RECIST 1.1).

    Format (CSV with a header row; the last two columns are optional)::

        patient_id,lesion_id,x_mm,y_mm,z_mm,timepoint,roi
        P001,1,-35.2,12.0,-150.5,,
        P001,2,40.1,-3.5,-120.0,0,30 50 -13 7 -130 -110

    * ``patient_id``: as in scans.csv / the patient folders.
    * ``lesion_id``: the lesion's name within its patient (text), unique per patient.
    * ``x_mm, y_mm, z_mm``: a point inside the lesion (the "click"), physical patient
      coordinates (DICOM LPS) in mm, on the scan given by ``timepoint``.
    * ``timepoint`` (blank = 0): the 0-based index of that scan among the patient's scans in
      time order (the ``T<k>`` of the outputs; 0 = the first scan).
    * ``roi`` (blank = none): a box around the lesion on that scan, six numbers
      ``x0 x1 y0 y1 z0 z1`` in mm separated by spaces, each start < stop, containing the
      click. With a box the model runs on the box and keeps its best component; without,
      on a 100 mm cube around the click, keeping the component at the click.

    Other columns are ignored, with a warning naming them.

    Args:
        path: the CSV file.
        scans: optional :func:`discover_scans` result: then every patient must have scans and
            every ``timepoint`` must exist.

    Returns:
        The lesions (:class:`TargetLesion`) in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column (named, with the expected ones), a non-numeric coordinate,
            a bad timepoint or box, a duplicate (patient_id, lesion_id), more than 5 lesions for
            a patient, unknown patients: the message names the file, line, patient and lesion.
    """
    path = Path(path)
    df = read_text_table(
        path,
        "lesions file",
        LESION_COLUMNS,
        LESION_OPTIONAL_COLUMNS,
        how=f"write a header row {','.join(LESION_COLUMNS)}[,timepoint,roi] and one row per lesion",
        skip_blank_lines=False,
    )
    extra = [c for c in df.columns if c not in LESION_COLUMNS + LESION_OPTIONAL_COLUMNS]
    if extra:
        warnings.warn(
            f"lesions file '{path}': column(s) {extra} are not used (known columns: "
            f"{', '.join(LESION_COLUMNS + LESION_OPTIONAL_COLUMNS)}).",
            UserWarning,
            stacklevel=2,
        )
    problems: list[str] = []
    lesions: list[TargetLesion] = []
    for i, rec in enumerate(df.to_dict("records")):
        values = {k: str(v).strip() for k, v in rec.items()}
        if not any(values.values()):
            continue  # a blank line
        line = i + 2
        pid, lid = values["patient_id"], values["lesion_id"]
        where = f"line {line} (patient {pid!r}, lesion {lid!r})"
        if not pid or not lid:
            problems.append(f"{where}: {'patient_id' if not pid else 'lesion_id'} is empty; fill it in")
            continue
        coords = [_lesion_number(values[c], c, where, problems) for c in ("x_mm", "y_mm", "z_mm")]
        point = None if any(c is None for c in coords) else (coords[0], coords[1], coords[2])
        timepoint = 0
        text = values.get("timepoint", "")
        if text:
            try:
                tp = float(text)
            except ValueError:
                tp = float("nan")
            if not (math.isfinite(tp) and tp == int(tp) and tp >= 0):
                problems.append(
                    f"{where}: timepoint {text!r} is not a scan index; give 0 for the first scan, "
                    "1 for the second, ... (or leave it blank)"
                )
                continue
            timepoint = int(tp)
        box = None
        if values.get("roi", ""):
            box = _lesion_box(values["roi"], point, where, problems)
            if box is None:
                continue
        if point is None:
            continue
        lesions.append(TargetLesion(pid, lid, point, timepoint, box, str(path), line))
    _raise_lesion_problems(path, problems)
    return check_lesions(lesions, scans, path)


def lesion_folder_name(lesion_id: str) -> str:
    """``lesion_<id>``, usable as a folder name (ids are user data)."""
    try:
        return "lesion_" + patient_folder_name(lesion_id)
    except ValueError as err:
        raise ValueError(f"lesion_id {lesion_id!r} cannot be used in a folder name; rename the lesion.") from err


def read_outcomes(path: str | Path) -> pd.DataFrame:
    """Read outcomes.csv (``patient_id``, ``os_days``, ``event``, optional PD-L1 / CD8 columns).

    Raises:
        FileNotFoundError, ValueError: missing file or required column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Outcomes table not found: '{path}'.")
    df = read_table(
        path, "outcomes table", "one row per patient: patient_id, os_days, event", dtype={"patient_id": str}
    )
    missing = [c for c in ("patient_id", "os_days", "event") if c not in df.columns]
    if missing:
        raise ValueError(f"'{path}' lacks column(s) {missing}; outcomes.csv needs patient_id, os_days, event.")
    return df
