"""Run a whole cohort: segment every scan, measure, kinetics, IES, cohort statistics; resumable.

:func:`run_cohort` is the typed API behind ``mkunet run``; :func:`run_demo` makes a
synthetic cohort, runs it with the shipped model and writes the HTML report.

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

Patients and ``clinical.csv``
-----------------------------
``clinical.csv`` has one row per patient (``patient_id``, ``age``, ``sex``,
``smoking``, ``grade``, ``stage``, optional ``lvcr`` per day). A patient with scans
but no clinical row is **skipped and reported** (``errors.csv``, stage ``clinical``);
a clinical row without scans is reported (stage ``discover``) and ignored. A duplicated
``patient_id`` in clinical.csv is a ValueError.

Per patient
-----------
Every timepoint is read; :func:`mkunet.infer.segment_timepoints` segments them (the
previous timepoint's mask + ``margin_mm`` as ROI with ``roi="previous-mask"``; the
fixed-point LVCR iteration when clinical.csv gives no LVCR); per scan the outputs go to
``OUT/patients/<pid>/T<k>/``: ``mask.nii.gz`` (uint8), ``probability.nii.gz``
(float32), ``attention.nii.gz`` (float32, the finest attention gate; when the model has
gates), ``seg.dcm`` and ``rtstruct.dcm`` (DICOM inputs only), and
``OUT/patients/<pid>/overview.png`` (axial overlays for the report). Shape and
intensity features (:mod:`mkunet.measure`), LVCR with its 95 % CI, VDT and the
response category per scan (:mod:`mkunet.kinetics`) follow.

Failures (documented behaviour)
-------------------------------
* an unreadable timepoint (corrupt DICOM, missing file): its row has
  ``status="error"``; the patient continues with the other timepoints;
* an empty segmentation: ``status="empty"``, no shape / intensity features, volume 0
  in the response categories (CR), excluded from LVCR;
* fewer than two measurable timepoints: measurements kept, no LVCR / VDT / IES
  (``lvcr_per_day`` empty and an ``errors.csv`` row, stage ``kinetics``);
* no usable timepoint at all, or an unexpected failure: the patient is skipped.
Every problem is one row of ``OUT/errors.csv`` (patient_id, timepoint, stage, error,
action), a ``warnings.warn`` and a line of the report.

Resume
------
A patient's results are cached as ``OUT/cache/<pid>.json`` under a key: sha256 over
the bytes (and relative names) of its input files, the model identity (sha256 of the
network's state dict + its configuration), its clinical row and the run parameters. A
rerun reuses every patient whose key is unchanged (outputs included) and reruns only
the others. Patients without any usable timepoint are not cached (retried). Writes are
atomic: a patient's outputs are written to ``OUT/patients/.tmp-<pid>`` and renamed; JSON
/ CSV / Parquet files are written to a temporary name and renamed.

Tables
------
``OUT/results.csv`` and ``OUT/results.parquet``: one row per patient x timepoint with
provenance (input path, series UID, input sha256, model name / version / weights
sha256, parameters JSON, mkunet version). ``OUT/patients.csv``: one row per patient
(LVCR, CI, VDT, response, IES, ...). ``OUT/run.json``: parameters, model identity and
counts. With outcomes: ``OUT/cohort/`` holds :func:`mkunet.cohort.analyse_cohort`'s
tables and figures.

Units: days, cm^3, mm, HU, per day. Arrays (z, y, x); spacing (z, y, x) mm.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mkunet.volume import Volume

__all__ = [
    "patient_folder_name",
    "ScanInput",
    "CohortRun",
    "ProgressCallback",
    "discover_scans",
    "read_clinical",
    "model_identity",
    "run_cohort",
    "load_run",
    "run_demo",
    "DEMO_SHAPE",
    "DEMO_SPACING",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]
"""``progress(done, total, description)``: called as patients start and finish."""

CLINICAL_COLUMNS = ("age", "sex", "smoking", "grade", "stage")
_NIFTI = (".nii", ".nii.gz", ".nrrd", ".nhdr")
CACHE_VERSION = 1

#: Demo cohort geometry: (z, y, x) voxels; spacing None lets the generator fit the body per patient.
DEMO_SHAPE = (48, 128, 128)
DEMO_SPACING: tuple[float, float, float] | None = None


# ============================================================================ small helpers


def _atomic_write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _atomic_write_text(path: Path, text: str) -> Path:
    return _atomic_write_bytes(path, text.encode("utf-8"))


def _atomic_csv(df: pd.DataFrame, path: Path, index: bool = False) -> Path:
    return _atomic_write_text(path, df.to_csv(index=index))


def _atomic_parquet(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    df.to_parquet(tmp, engine="pyarrow", index=False)
    os.replace(tmp, path)
    return path


def _jsonable(value: Any) -> Any:
    """JSON-safe copy: numpy scalars -> Python, NaN / inf -> None, tuples -> lists, Paths -> str."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Path):
        return str(value)
    return value


def patient_folder_name(pid: str) -> str:
    """A patient id usable as a folder / file name (ids are user data)."""
    bad = set('/\\:*?"<>|') | {"\0"}
    name = "".join("_" if (c in bad or ord(c) < 32) else c for c in str(pid)).strip()
    if name in ("", ".", ".."):
        raise ValueError(f"patient_id {pid!r} cannot be used as a folder name; rename the patient.")
    return name


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "na", "n/a", "nan", "none", "unknown", "missing")


# ============================================================================ input discovery


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


def _parse_date(value: Any, where: str) -> _dt.date:
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return _dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{where}: scan date {text!r} is not a date; write YYYY-MM-DD (or DICOM YYYYMMDD).")


def _from_scans_csv(cohort_dir: Path, csv: Path) -> dict[str, list[ScanInput]]:
    df = pd.read_csv(csv, dtype={"patient_id": str})
    if "patient_id" not in df.columns:
        raise ValueError(f"'{csv}' has no 'patient_id' column; columns are {list(df.columns)}.")
    if "dicom" not in df.columns and "image" not in df.columns:
        raise ValueError(f"'{csv}' needs a 'dicom' (folder) or 'image' (NIfTI) column per scan; has {list(df.columns)}.")
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
                if col in g.columns and not _is_missing(row.get(col)):
                    cand = (cohort_dir / str(row[col])).resolve()
                    if cand.exists():
                        path = cand
                        break
            if path is None:
                given = [str(row[c]) for c in ("dicom", "image") if c in g.columns and not _is_missing(row.get(c))]
                # keep the scan: reading it will fail and be reported for this patient only
                path = (cohort_dir / given[0]).resolve() if given else cohort_dir / f"<no image for row {int(i) + 2}>"
            date = None if "scan_date" not in g.columns or _is_missing(row.get("scan_date")) else _parse_date(
                row["scan_date"], where
            )
            if "days" in g.columns and not _is_missing(row.get("days")):
                days = float(row["days"])
            elif date is not None:
                days = float("nan")  # filled below from the dates
            else:
                raise ValueError(f"{where}: neither 'days' nor 'scan_date' is given; fill one in.")
            ref = None
            if "mask" in g.columns and not _is_missing(row.get("mask")):
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
                return _parse_date(value, f"'{f}' {key}"), f
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
    df = pd.read_csv(path, dtype={"patient_id": str})
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


def _clinical_mapping(row: pd.Series | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out: dict[str, Any] = {}
    for c in (*CLINICAL_COLUMNS, "lvcr"):
        if c in row.index:
            v = row[c]
            if isinstance(v, (np.generic,)):
                v = v.item()
            out[c] = None if _is_missing(v) else v
    if out.get("lvcr") is None:
        out.pop("lvcr", None)
    return out


# ============================================================================ model identity


def model_identity(bundle: Any, source: str = "object") -> dict[str, Any]:
    """Provenance of a model bundle.

    Returns:
        dict with ``model_name``, ``model_version`` (metadata label / mkunet version),
        ``model_source`` ("shipped", a path, or "object"), ``weights_sha256`` (sha256 over
        the state dict: names, dtypes, shapes and bytes, in key order) and ``identity_sha256``
        (weights + configuration: threshold, spacing, patch, preprocessing, encoder).
    """
    import torch

    model = getattr(bundle, "model", None)
    h = hashlib.sha256()
    if isinstance(model, torch.nn.Module):
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        h.update(type(model).__qualname__.encode())
    weights = h.hexdigest()
    meta = dict(getattr(bundle, "metadata", {}) or {})
    config: dict[str, Any] = {
        "weights_sha256": weights,
        "model_name": getattr(bundle, "model_name", type(model).__name__ if model is not None else None),
        "model_kwargs": getattr(bundle, "model_kwargs", None),
        "threshold": getattr(bundle, "threshold", None),
        "target_spacing": getattr(bundle, "target_spacing", None),
        "patch_size": getattr(bundle, "patch_size", None),
    }
    for attr in ("preprocessor", "clinical_encoder"):
        obj = getattr(bundle, attr, None)
        to_dict = getattr(obj, "to_dict", None)
        config[attr] = to_dict() if callable(to_dict) else (None if obj is None else repr(obj))
    default = getattr(bundle, "default_clinical", None)
    config["default_clinical"] = None if default is None else np.asarray(default, np.float64).round(8).tolist()
    identity = hashlib.sha256(json.dumps(_jsonable(config), sort_keys=True, default=str).encode()).hexdigest()
    return {
        "model_name": str(config["model_name"]),
        "model_version": str(meta.get("label") or meta.get("version") or meta.get("mkunet_version") or "unknown"),
        "model_source": source,
        "weights_sha256": weights,
        "identity_sha256": identity,
        "metadata": _jsonable(meta),
    }


def _resolve_model(model: Any) -> tuple[Any, str]:
    from mkunet import infer

    if model is None:
        return infer.load_model(None), "shipped"
    if isinstance(model, (str, Path)):
        return infer.load_model(model), str(Path(model).resolve())
    return model, "object"


def _hash_scans(scans: Sequence[ScanInput], root: Path) -> str:
    h = hashlib.sha256()
    for s in scans:
        h.update(f"scan|{s.timepoint}|{s.days!r}|{s.kind}|".encode())
        files = list(s.files()) if s.path.exists() else []
        if not files:
            h.update(f"missing|{s.path}".encode())
        for f in files:
            h.update(f"file|{f.name}|".encode())
            with open(f, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    h.update(chunk)
        if s.reference_mask is not None:
            h.update(b"reference|" + s.reference_mask.read_bytes())
    return h.hexdigest()


# ============================================================================ results


@dataclass
class CohortRun:
    """The result of :func:`run_cohort` (everything is also on disk under ``out_dir``).

    Attributes:
        out_dir: the output folder.
        results: one row per patient x timepoint (``results.csv``).
        patients: one row per patient (``patients.csv``).
        errors: one row per problem (``errors.csv``): patient_id, timepoint, stage, error, action.
        processed: patients computed in this run.
        resumed: patients taken from the cache.
        model: :func:`model_identity` of the model used.
        parameters: the run parameters (part of the cache key).
        cohort: the :class:`mkunet.cohort.CohortAnalysis` when outcomes were given (None when
            loaded from disk).
        notes: run-level notes (IES, cohort analysis, ...).
        meta: ``run.json`` content (inputs, synthetic flag, timings).
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
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


ERROR_COLUMNS = ["patient_id", "timepoint", "stage", "error", "action"]


def _error(pid: str, timepoint: int | None, stage: str, err: Any, action: str) -> dict[str, Any]:
    text = str(err).strip().replace("\n", " ")
    if isinstance(err, BaseException) and not isinstance(err, ValueError):
        text = f"{type(err).__name__}: {text}"
    return {"patient_id": pid, "timepoint": timepoint, "stage": stage, "error": text, "action": action}


# ============================================================================ one patient


def _flatten_features(prefix: str, feats: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in feats.items():
        if k == "centroid_index_zyx":
            out.update({f"centroid_index_{a}": float(c) for a, c in zip("zyx", v)})
        elif k == "centroid_mm_xyz":
            out.update({f"centroid_{a}_mm": float(c) for a, c in zip("xyz", v)})
        elif k == "n_voxels" and prefix:
            continue
        else:
            out[prefix + k] = v
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    if sa + sb == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(a & b)) / (sa + sb)


def _process_patient(
    pid: str,
    scans: Sequence[ScanInput],
    clinical: dict[str, Any] | None,
    bundle: Any,
    params: Mapping[str, Any],
    stage_dir: Path,
    base_row: Mapping[str, Any],
) -> dict[str, Any]:
    """Segment, write, measure and compute kinetics for one patient into ``stage_dir``.

    Returns:
        dict with ``rows`` (one per scan), ``patient`` (one row), ``errors``, ``usable`` (bool).
    """
    from mkunet import infer, kinetics, measure
    from mkunet.io import read_mask, read_volume, write_volume
    from mkunet.report import figures

    errors: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    volumes: list[Volume] = []
    readable: list[ScanInput] = []
    for s in scans:
        row = {
            **base_row,
            "patient_id": pid,
            "timepoint": s.timepoint,
            "scan": f"T{s.timepoint}",
            "days": s.days,
            "scan_date": s.scan_date,
            "input_path": str(s.path),
            "input_kind": s.kind,
            "status": "error",
        }
        try:
            vol = read_volume(s.path)
        except Exception as err:  # noqa: BLE001 - one unreadable scan must not stop the cohort
            errors.append(_error(pid, s.timepoint, "read", err, "timepoint skipped"))
            row["notes"] = str(err)
            rows.append(row)
            continue
        row.update(
            series_uid=vol.series_uid,
            study_uid=vol.study_uid,
            input_sha256=_hash_scans([s], s.path),
            shape_zyx=json.dumps(list(vol.shape)),
            spacing_zyx_mm=json.dumps([round(v, 6) for v in vol.spacing]),
        )
        rows.append(row)
        volumes.append(vol)
        readable.append(s)

    patient: dict[str, Any] = {"patient_id": pid, "n_scans": len(scans), "n_scans_read": len(readable)}
    if not readable:
        patient["status"] = "failed"
        return {"rows": rows, "patient": patient, "errors": errors, "usable": False, "trace": []}

    by_tp = {r["timepoint"]: r for r in rows}
    days = [s.days for s in readable]
    rel = [d - days[0] for d in days]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        longi = infer.segment_timepoints(
            volumes,
            rel,
            model=bundle,
            clinical=clinical,
            previous_mask_roi=params["roi"] == "previous-mask",
            margin_mm=params["margin_mm"],
            tol=params["lvcr_tol"],
            max_iter=params["lvcr_max_iter"],
            return_attention=True,
            threshold=params["threshold"],
        )
    seg_warnings = [str(w.message) for w in caught]
    given_lvcr = clinical is not None and clinical.get("lvcr") is not None
    patient.update(
        lvcr_source="clinical.csv" if given_lvcr else ("fixed-point estimate" if longi.trace else "unknown"),
        lvcr_model_input_per_day=float(clinical["lvcr"]) if given_lvcr else longi.lvcr_per_day,
        fixed_point_converged=bool(longi.converged) if longi.trace else None,
        fixed_point_passes=len(longi.trace),
        fixed_point_trace=json.dumps(_jsonable(longi.trace)),
        segmentation_notes="; ".join(dict.fromkeys(longi.notes)),
    )

    overlays: list[dict[str, Any]] = []
    for s, vol, seg in zip(readable, volumes, longi.segmentations):
        row = by_tp[s.timepoint]
        tdir = stage_dir / f"T{s.timepoint}"
        formats = ["nifti"] + ([f for f in params["formats"] if f != "nifti"] if infer.is_dicom_volume(vol) else [])
        row.update(
            status="empty" if seg.empty else "ok",
            empty=bool(seg.empty),
            roi=seg.roi,
            lvcr_used_per_day=seg.lvcr_used,
            threshold=seg.threshold,
            seconds_segment=round(float(seg.timings.get("total", float("nan"))), 3),
            notes="; ".join(seg.notes),
        )
        if seg.empty:
            errors.append(_error(pid, s.timepoint, "segment", "no tumour found: the mask is empty",
                                 "kept as volume 0 (CR) in the response; excluded from LVCR and features"))
        written: dict[str, Path] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the empty-mask warnings of the writers are reported above
            try:
                written = infer.save_segmentation(seg, tdir, formats=formats)
            except Exception as err:  # noqa: BLE001 - a writer failure is reported, the rest goes on
                errors.append(_error(pid, s.timepoint, "write", err, "DICOM outputs missing for this scan"))
                written = infer.save_segmentation(seg, tdir, formats=["nifti"])
        att = seg.attention[0] if seg.attention else None
        if att is not None:
            written["attention"] = write_volume(vol, tdir / "attention.nii.gz", att.astype(np.float32, copy=False))
        row["outputs"] = json.dumps({k: str(p.relative_to(stage_dir)) for k, p in written.items()})
        row["formats_written"] = ",".join(k for k in ("mask", "seg", "rtstruct", "attention") if k in written)
        if not seg.empty:
            try:
                shape = measure.shape_features(seg.mask, vol)
                inten = measure.intensity_features(vol, seg.mask)
                row.update(_flatten_features("", shape))
                row.update(_flatten_features("", inten))
            except Exception as err:  # noqa: BLE001
                errors.append(_error(pid, s.timepoint, "measure", err, "features missing for this scan"))
                row["status"] = "error"
        row["volume_voxels_cm3"] = seg.volume_cm3
        if s.reference_mask is not None:
            try:
                ref = read_mask(s.reference_mask, vol)
                row["dice_vs_reference"] = _dice(seg.mask, ref)
                row["reference_volume_cm3"] = float(np.count_nonzero(ref)) * vol.voxel_volume_mm3 / 1000.0
            except Exception as err:  # noqa: BLE001
                errors.append(_error(pid, s.timepoint, "reference", err, "no Dice for this scan"))
        overlays.append(
            {"volume": vol, "mask": seg.mask, "attention": att, "label": f"T{s.timepoint}, day {s.days:g}",
             "volume_cm3": row.get("volume_cm3", 0.0)}
        )
    for w in seg_warnings:
        logger.info("patient %s: %s", pid, w)

    # kinetics on the measurable timepoints
    ok = [by_tp[s.timepoint] for s in readable if by_tp[s.timepoint]["status"] == "ok"]
    seg_rows = [by_tp[s.timepoint] for s in readable if by_tp[s.timepoint]["status"] in ("ok", "empty")]
    if len(ok) >= 2:
        try:
            res = kinetics.lvcr(
                [r["days"] for r in ok], [r["volume_cm3"] for r in ok], weights=params["lvcr_weights"], patient_id=pid
            )
            patient.update(
                lvcr_per_day=res.lvcr_per_day, lvcr_se=res.se, lvcr_ci_low=res.ci_low, lvcr_ci_high=res.ci_high,
                vdt_days=res.vdt_days, lvcr_n_scans=res.n_scans, lvcr_intercept_log_cm3=res.intercept_log_cm3,
            )
        except ValueError as err:
            errors.append(_error(pid, None, "kinetics", err, "no LVCR / VDT / IES for this patient"))
    else:
        errors.append(_error(
            pid, None, "kinetics",
            f"LVCR needs at least two scans with a tumour, got {len(ok)}",
            "measurements kept; no LVCR / VDT / IES for this patient",
        ))
    if seg_rows and seg_rows[0]["status"] == "ok":
        try:
            cats = kinetics.response_over_time(
                [r["days"] for r in seg_rows], [r.get("volume_cm3", 0.0) if r["status"] == "ok" else 0.0
                                                for r in seg_rows], patient_id=pid,
            )
            for r, c in zip(seg_rows, cats):
                r["response"] = c
            patient["last_response"] = cats[-1]
            patient["responses"] = " -> ".join(cats)
        except ValueError as err:
            errors.append(_error(pid, None, "kinetics", err, "no response categories"))
    if ok:
        base = ok[0]
        patient.update(
            baseline_days=base["days"], baseline_volume_cm3=base["volume_cm3"], sphericity=base["sphericity"],
            last_volume_cm3=ok[-1]["volume_cm3"], last_days=ok[-1]["days"],
            baseline_longest_axial_diameter_mm=base.get("longest_axial_diameter_mm"),
        )
    dices = [r["dice_vs_reference"] for r in rows if r.get("dice_vs_reference") is not None]
    if dices:
        patient["mean_dice_vs_reference"] = float(np.mean(dices))
    patient["status"] = "ok" if len(ok) == len(scans) else "partial"

    try:
        png = figures.patient_overview(pid, overlays)
        _atomic_write_bytes(stage_dir / "overview.png", png)
    except Exception as err:  # noqa: BLE001 - a figure never costs the results
        errors.append(_error(pid, None, "figure", err, "no overlay figure in the report"))
    return {"rows": rows, "patient": patient, "errors": errors, "usable": True, "trace": longi.trace}


# ============================================================================ the cohort


def _params(
    formats: Sequence[str], roi: str, margin_mm: float, threshold: float | None, lvcr_weights: str,
    lvcr_tol: float, lvcr_max_iter: int,
) -> dict[str, Any]:
    from mkunet import __version__

    fmts = [f.strip().lower() for f in formats if f.strip()]
    bad = [f for f in fmts if f not in ("nifti", "seg", "rtstruct")]
    if bad:
        raise ValueError(f"Unknown output format(s) {bad} in --formats: choose from nifti, seg, rtstruct.")
    if roi not in ("previous-mask", "none"):
        raise ValueError(f"--roi must be 'previous-mask' or 'none', got {roi!r}.")
    if lvcr_weights not in ("interval", "inverse_variance", "uniform"):
        raise ValueError(f"lvcr_weights must be interval, inverse_variance or uniform, got {lvcr_weights!r}.")
    if not margin_mm > 0:
        raise ValueError(f"margin_mm must be > 0 mm, got {margin_mm!r}.")
    return {
        "formats": sorted(set(fmts) | {"nifti"}),
        "roi": roi,
        "margin_mm": float(margin_mm),
        "threshold": None if threshold is None else float(threshold),
        "lvcr_weights": lvcr_weights,
        "lvcr_tol": float(lvcr_tol),
        "lvcr_max_iter": int(lvcr_max_iter),
        "mkunet_version": __version__,
        "cache_version": CACHE_VERSION,
    }


def run_cohort(
    cohort_dir: str | Path,
    clinical: str | Path | pd.DataFrame,
    out_dir: str | Path,
    model: Any = None,
    outcomes: str | Path | pd.DataFrame | None = None,
    *,
    formats: Sequence[str] = ("nifti", "seg", "rtstruct"),
    roi: str = "previous-mask",
    margin_mm: float = 15.0,
    threshold: float | None = None,
    lvcr_weights: str = "interval",
    lvcr_tol: float = 1e-4,
    lvcr_max_iter: int = 3,
    ies_mode: str = "standardised",
    n_boot: int = 1000,
    seed: int = 0,
    resume: bool = True,
    synthetic: bool | None = None,
    cohort_figures: bool = True,
    progress: ProgressCallback | None = None,
) -> CohortRun:
    """Run the whole pipeline on a cohort (see the module docstring).

    Args:
        cohort_dir: folder with ``scans.csv`` or ``<patient_id>/<scan>/`` DICOM folders.
        clinical: clinical.csv path (or a DataFrame with a ``patient_id`` column).
        out_dir: output folder (created).
        model: None (the shipped model), a bundle / run folder, or a ``ModelBundle``.
        outcomes: outcomes.csv (patient_id, os_days, event, pdl1_positive, pdl1_area_ratio, ...)
            for the cohort statistics; None skips them (IES is still computed).
        formats: outputs per scan among nifti, seg, rtstruct (SEG / RTSTRUCT for DICOM inputs only;
            NIfTI is always written).
        roi: ``"previous-mask"`` (timepoint k >= 1 is segmented inside timepoint k-1's mask grown by
            ``margin_mm`` mm) or ``"none"`` (whole volume every time).
        threshold: probability threshold (default: the model's).
        lvcr_weights: weighting of :func:`mkunet.kinetics.lvcr`.
        lvcr_tol, lvcr_max_iter: fixed-point LVCR tolerance (per day) and passes.
        ies_mode: :func:`mkunet.ies.immune_evasion_score` mode.
        n_boot, seed: bootstrap resamples / seed of the cohort AUC CIs.
        resume: reuse cached patients whose inputs, model and parameters are unchanged.
        synthetic: label the data as synthetic in the report (default: True when the cohort folder
            holds the synthetic generator's ``truth.json``).
        cohort_figures: also let :func:`mkunet.cohort.analyse_cohort` write its PNG figures into
            ``OUT/cohort`` (the report draws its own).
        progress: ``progress(done, total, description)`` callback.

    Returns:
        :class:`CohortRun`; the tables are also written under ``out_dir``.
    """
    t_start = time.perf_counter()
    cohort_dir = Path(cohort_dir)
    out = Path(out_dir)
    params = _params(formats, roi, margin_mm, threshold, lvcr_weights, lvcr_tol, lvcr_max_iter)
    scans = discover_scans(cohort_dir)
    clin = read_clinical(clinical) if not isinstance(clinical, pd.DataFrame) else clinical.assign(
        patient_id=clinical["patient_id"].astype(str)
    ).set_index("patient_id")
    outcomes_df = None
    if outcomes is not None:
        outcomes_df = outcomes.copy() if isinstance(outcomes, pd.DataFrame) else _read_outcomes(outcomes)
    bundle, source = _resolve_model(model)
    identity = model_identity(bundle, source)
    if synthetic is None:
        synthetic = (cohort_dir / "truth.json").is_file()

    out.mkdir(parents=True, exist_ok=True)
    (out / "patients").mkdir(exist_ok=True)
    (out / "cache").mkdir(exist_ok=True)
    for stale in (out / "patients").glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)

    base_row = {
        "model_name": identity["model_name"],
        "model_version": identity["model_version"],
        "model_source": identity["model_source"],
        "model_weights_sha256": identity["weights_sha256"],
        "parameters": json.dumps(_jsonable(params), sort_keys=True),
        "mkunet_version": params["mkunet_version"],
    }
    run_errors: list[dict[str, Any]] = []
    for pid in sorted(set(clin.index.astype(str)) - set(scans)):
        run_errors.append(_error(pid, None, "discover", "in clinical.csv but no scans found", "ignored"))
    pids = sorted(scans)
    processed, resumed = [], []
    records: dict[str, dict[str, Any]] = {}
    total = len(pids)
    report = progress or (lambda done, n, desc: None)
    for i, pid in enumerate(pids):
        if pid not in clin.index:
            run_errors.append(_error(pid, None, "clinical", f"patient {pid!r} has scans but no row in clinical.csv",
                                     "patient skipped: add a row to clinical.csv"))
            report(i + 1, total, f"{pid}: skipped (no clinical row)")
            continue
        clinical_row = _clinical_mapping(clin.loc[pid])
        report(i, total, f"{pid}: hashing inputs")
        name = patient_folder_name(pid)
        try:
            key = hashlib.sha256(
                json.dumps(
                    {
                        "inputs": _hash_scans(scans[pid], cohort_dir),
                        "model": identity["identity_sha256"],
                        "params": {k: v for k, v in params.items() if k != "mkunet_version"},
                        "version": params["mkunet_version"],
                        "clinical": _jsonable(clinical_row),
                    },
                    sort_keys=True,
                    default=str,
                ).encode()
            ).hexdigest()
        except OSError as err:
            run_errors.append(_error(pid, None, "read", err, "patient skipped"))
            report(i + 1, total, f"{pid}: unreadable")
            continue
        cache_file = out / "cache" / f"{name}.json"
        if resume and cache_file.is_file():
            try:
                cached = json.loads(cache_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                cached = None
            if cached and cached.get("key") == key and (out / "patients" / name).is_dir():
                records[pid] = cached
                resumed.append(pid)
                report(i + 1, total, f"{pid}: resumed from cache")
                continue
        report(i, total, f"{pid}: segmenting {len(scans[pid])} scan(s)")
        stage = out / "patients" / f".tmp-{name}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            rec = _process_patient(pid, scans[pid], clinical_row, bundle, params, stage, base_row)
        except Exception as err:  # noqa: BLE001 - one bad patient never stops the cohort
            logger.exception("patient %s failed", pid)
            shutil.rmtree(stage, ignore_errors=True)
            run_errors.append(_error(pid, None, "segment", err, "patient skipped"))
            report(i + 1, total, f"{pid}: failed")
            continue
        rec["patient"]["seconds"] = round(time.perf_counter() - t0, 2)
        final = out / "patients" / name
        if rec["usable"]:
            if final.exists():
                shutil.rmtree(final)
            os.replace(stage, final)
            rec["key"] = key
            rec["cache_version"] = CACHE_VERSION
            _atomic_write_text(cache_file, json.dumps(_jsonable(rec), indent=1, default=str))
        else:
            shutil.rmtree(stage, ignore_errors=True)
            cache_file.unlink(missing_ok=True)
            run_errors.extend(rec["errors"])
            run_errors.append(_error(pid, None, "read", "no readable scan", "patient skipped"))
            report(i + 1, total, f"{pid}: failed")
            continue
        records[pid] = _jsonable(rec)
        processed.append(pid)
        report(i + 1, total, f"{pid}: done")

    # ---------------------------------------------------------------- tables
    rows = [r for pid in pids if pid in records for r in records[pid]["rows"]]
    results = pd.DataFrame(rows)
    patients = pd.DataFrame([records[pid]["patient"] for pid in pids if pid in records])
    all_errors = [e for pid in pids if pid in records for e in records[pid]["errors"]] + run_errors
    for e in all_errors:
        warnings.warn(
            f"patient {e['patient_id']}"
            f"{'' if e['timepoint'] is None else ' T' + str(e['timepoint'])} ({e['stage']}): {e['error']} -> {e['action']}",
            UserWarning,
            stacklevel=2,
        )
    notes: list[str] = []
    cohort = None
    if not patients.empty:
        patients, cohort, ies_notes, ies_errors = _cohort_stage(
            results, patients, clin, outcomes_df, out, ies_mode, n_boot, seed, lvcr_weights, cohort_figures
        )
        notes += ies_notes
        all_errors += ies_errors
    errors = pd.DataFrame(all_errors, columns=ERROR_COLUMNS)
    if not results.empty:
        results = results.sort_values(["patient_id", "timepoint"]).reset_index(drop=True)
    _atomic_csv(results, out / "results.csv")
    _atomic_parquet(_parquet_safe(results), out / "results.parquet")
    _atomic_csv(patients, out / "patients.csv")
    _atomic_csv(errors, out / "errors.csv")
    meta = {
        "cohort_dir": str(cohort_dir.resolve()),
        "clinical": None if isinstance(clinical, pd.DataFrame) else str(Path(clinical).resolve()),
        "outcomes": None if outcomes is None or isinstance(outcomes, pd.DataFrame) else str(Path(outcomes).resolve()),
        "synthetic": bool(synthetic),
        "model": identity,
        "parameters": params,
        "ies_mode": ies_mode,
        "n_patients": len(pids),
        "processed": processed,
        "resumed": resumed,
        "seconds": round(time.perf_counter() - t_start, 2),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "notes": notes,
    }
    _atomic_write_text(out / "run.json", json.dumps(_jsonable(meta), indent=2))
    report(total, total, "cohort done")
    return CohortRun(out, results, patients, errors, processed, resumed, identity, params, cohort, notes, meta)


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns with mixed types (None + str, numbers) -> str, so pyarrow can store them."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            values = out[c].dropna()
            if not values.map(lambda v: isinstance(v, str)).all():
                out[c] = out[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return out


def _read_outcomes(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Outcomes table not found: '{path}'.")
    df = pd.read_csv(path, dtype={"patient_id": str})
    missing = [c for c in ("patient_id", "os_days", "event") if c not in df.columns]
    if missing:
        raise ValueError(f"'{path}' lacks column(s) {missing}; outcomes.csv needs patient_id, os_days, event.")
    return df


def _cohort_stage(
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
) -> tuple[pd.DataFrame, Any, list[str], list[dict[str, Any]]]:
    """IES for the cohort, and :func:`mkunet.cohort.analyse_cohort` when outcomes are given."""
    from mkunet.ies import immune_evasion_score

    notes: list[str] = []
    errors: list[dict[str, Any]] = []
    patients = patients.copy()
    cohort = None
    if outcomes is not None:
        from mkunet.cohort import analyse_cohort

        meas = results.loc[results["status"] == "ok", ["patient_id", "timepoint", "days", "volume_cm3", "sphericity"]]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cohort = analyse_cohort(
                    meas, clin.reset_index(), outcomes, out_dir=out / "cohort", ies_mode=ies_mode,
                    lvcr_weights=lvcr_weights, n_boot=n_boot, seed=seed, figures=figures,
                )
            notes += [f"cohort: {n}" for n in cohort.notes]
            tab = cohort.tables["patients"]
            for col in ("ies", "ies_imaging_only"):
                patients[col] = patients["patient_id"].map(tab[col])
            patients["ies_mode"] = ies_mode
            for col in ("os_days", "event", "pdl1_positive", "pdl1_area_ratio"):
                if col in tab:
                    patients[col] = patients["patient_id"].map(tab[col])
            if "IES" in cohort.groups:
                cut = cohort.groups["IES"].cutoff
                patients["ies_cutoff"] = cut
                patients["ies_group"] = [
                    None if pd.isna(v) else ("high" if v > cut else "low") for v in patients["ies"]
                ]
            return patients, cohort, notes, errors
        except ValueError as err:
            errors.append(_error("(cohort)", None, "cohort", err, "no cohort statistics"))
            notes.append(f"cohort statistics not computed: {err}")
    has = patients.dropna(subset=[c for c in ("lvcr_per_day", "sphericity") if c in patients]) if {
        "lvcr_per_day", "sphericity"
    } <= set(patients.columns) else patients.iloc[0:0]
    if len(has) >= 2:
        try:
            table = has.set_index("patient_id")
            if outcomes is not None and "pdl1_area_ratio" in outcomes:
                table = table.join(outcomes.astype({"patient_id": str}).set_index("patient_id")[["pdl1_area_ratio"]])
            res = immune_evasion_score(table, mode=ies_mode if ies_mode != "cox" else "standardised",
                                       lvcr_col="lvcr_per_day")
            patients["ies"] = patients["patient_id"].map(res.scores)
            patients["ies_imaging_only"] = patients["patient_id"].map(res.imaging_only)
            patients["ies_mode"] = res.mode
            notes += [f"IES: {n}" for n in res.notes]
        except ValueError as err:
            errors.append(_error("(cohort)", None, "ies", err, "no IES"))
    else:
        notes.append("IES not computed: fewer than two patients have an LVCR.")
    return patients, cohort, notes, errors


def load_run(out_dir: str | Path) -> CohortRun:
    """Load a finished run from its folder (tables and run.json; ``cohort`` is None)."""
    out = Path(out_dir)
    if not (out / "run.json").is_file():
        raise FileNotFoundError(f"'{out}' is not an mkunet run folder (no run.json): run `mkunet run` first.")
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))

    def table(name: str, cols: Sequence[str] = ()) -> pd.DataFrame:
        p = out / name
        try:
            return pd.read_csv(p, dtype={"patient_id": str})
        except (FileNotFoundError, pd.errors.EmptyDataError):
            return pd.DataFrame(columns=list(cols))

    return CohortRun(
        out, table("results.csv"), table("patients.csv"), table("errors.csv", ERROR_COLUMNS),
        list(meta.get("processed", [])), list(meta.get("resumed", [])), dict(meta.get("model", {})),
        dict(meta.get("parameters", {})), None, list(meta.get("notes", [])), meta,
    )


# ============================================================================ demo


def run_demo(
    out_dir: str | Path,
    n_patients: int = 20,
    seed: int = 0,
    *,
    timepoints: tuple[int, int] = (3, 3),
    shape: tuple[int, int, int] = DEMO_SHAPE,
    spacing: tuple[float, float, float] | None = DEMO_SPACING,
    model: Any = None,
    formats: Sequence[str] = ("nifti", "seg", "rtstruct"),
    lvcr_max_iter: int = 1,
    progress: ProgressCallback | None = None,
) -> Path:
    """Make a synthetic cohort, run the pipeline with the shipped model and the outcomes, write the report.

    Args:
        out_dir: output folder: ``cohort/`` (the synthetic data), ``run/`` (the pipeline's
            outputs) and ``report.html``.
        n_patients: patients in the synthetic cohort.
        seed: seed of the generator.
        timepoints: (min, max) scans per patient.
        shape: volume shape (z, y, x) voxels.
        spacing: voxel spacing (z, y, x) mm, or None (drawn per patient so the body fits).
        model: None (the shipped model) or a bundle / run folder.
        formats: per-scan outputs.
        lvcr_max_iter: fixed-point LVCR refinement passes after the first (each pass segments every
            scan again; 1 keeps the demo within its time budget on a 2-core CPU).
        progress: ``progress(done, total, description)``.

    Returns:
        Path of ``report.html``.
    """
    from mkunet import synth
    from mkunet.report import write_report

    out = Path(out_dir)
    cohort_dir = out / "cohort"
    report = progress or (lambda done, n, desc: None)
    if not (cohort_dir / "scans.csv").is_file():
        report(0, n_patients, "making the synthetic cohort")
        cohort = synth.make_cohort(n_patients, seed=seed, shape=tuple(shape),
                                   spacing=None if spacing is None else tuple(spacing),
                                   timepoints=tuple(timepoints))
        tmp = out / ".cohort-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        synth.write_cohort(cohort, tmp, formats=("nifti", "dicom"))
        shutil.rmtree(cohort_dir, ignore_errors=True)
        os.replace(tmp, cohort_dir)
    run = run_cohort(
        cohort_dir, cohort_dir / "clinical.csv", out / "run", model=model, outcomes=cohort_dir / "outcomes.csv",
        formats=formats, lvcr_max_iter=lvcr_max_iter, synthetic=True, progress=progress,
    )
    return write_report(run, out / "report.html")
