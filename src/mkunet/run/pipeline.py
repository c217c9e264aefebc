"""Run a whole cohort: segment every scan, measure, kinetics, IES, cohort statistics; resumable.

:func:`run_cohort` is the typed API behind ``mkunet run``; :func:`run_demo` makes a
synthetic cohort, runs it with the shipped model and writes the HTML report.

Inputs
------
Scans are found by :func:`discover_scans` (``scans.csv``, or one DICOM folder per scan);
clinical.csv, outcomes.csv and lesions.csv are read by :func:`read_clinical`,
:func:`mkunet.run.inputs.read_outcomes` and :func:`read_lesions`. These live in
:mod:`mkunet.run.inputs` (formats documented there) and are re-exported here.

Patients and ``clinical.csv``
-----------------------------
``clinical.csv`` has one row per patient (``patient_id``, ``age``, ``sex``,
``smoking``, ``grade``, ``stage``, optional ``lvcr`` per day). A patient with scans
but no clinical row is **skipped and reported** (``errors.csv``, stage ``clinical``);
a clinical row without scans is reported (stage ``discover``) and ignored. A duplicated
``patient_id`` in clinical.csv is a ValueError.

Per patient
-----------
Every timepoint is read; :func:`mkunet.segmentation.infer.segment_timepoints` segments them (the
previous timepoint's mask + ``margin_mm`` as ROI with ``roi="previous-mask"``; the
fixed-point LVCR iteration when clinical.csv gives no LVCR); per scan the outputs go to
``OUT/patients/<pid>/T<k>/``: ``mask.nii.gz`` (uint8), ``probability.nii.gz``
(float32), ``attention.nii.gz`` (float32, the finest attention gate; when the model has
gates), ``seg.dcm`` and ``rtstruct.dcm`` (DICOM inputs only), and
``OUT/patients/<pid>/overview.png`` (axial overlays for the report) and ``viewer.json`` (the
slice viewer's cropped CT, masks and maps: :mod:`mkunet.report.viewer`). Shape and
intensity features (:mod:`mkunet.analysis.shape`), LVCR with its 95 % CI, VDT and the
response category per scan (:mod:`mkunet.analysis.kinetics`) follow. The steps are named
functions: read (:func:`_read_step`) -> segment -> measure -> kinetics.

Target lesions (``run_cohort(..., lesions=...)``, ``mkunet run --lesions lesions.csv``)
----------------------------------------------------------------------------------
``lesions.csv`` (:func:`read_lesions`) has one row per target lesion: ``patient_id,
lesion_id, x_mm, y_mm, z_mm`` (a click inside the lesion, (x, y, z) mm, DICOM LPS, on the
first scan), optional ``timepoint`` (0-based scan index the click is on; blank = 0) and
``roi`` (a box ``"x0 x1 y0 y1 z0 z1"`` mm). At most 5 per patient (RECIST 1.1). A bad file
(missing column, non-numeric coordinate, duplicate lesion, > 5 lesions, unknown patient or
timepoint) is a ValueError naming the file, line, patient / lesion or column, raised before
any patient is processed; ``--roi none`` cannot be combined with it.

For a listed patient each lesion is segmented on its own:
:func:`mkunet.segmentation.infer.segment_timepoints` with the lesion's ROI (a Seed at the click, or its
box) at its scan and None elsewhere, ``previous_mask_roi=True`` (later scans follow the
lesion's previous mask + ``margin_mm``; the fixed-point LVCR iteration runs per lesion).
A click on a later scan (``timepoint`` > 0) leaves the earlier scans without a ROI: they
are segmented as :func:`mkunet.segmentation.infer.segment_timepoints` does without one (whole volume).
Outputs per scan: ``T<k>/lesion_<id>/`` holds the lesion's ``mask.nii.gz``,
``probability.nii.gz``, ``seg.dcm`` and ``rtstruct.dcm``; ``T<k>/`` holds the combination:
the union of the lesion masks, the maximum probability and attention, SEG / RTSTRUCT of the
union (a single segment). Lesions whose masks overlap get an errors row (their volumes
are still summed as given).

**The patient's volume at a scan is the sum of its target-lesion volumes** (volumetric
RECIST: the sum of target lesions replaces the sum of diameters). A lesion empty at a scan
counts 0 (complete response of that lesion, an errors row says so); a lesion that could not
be measured on a scan makes that scan's sum unknown (``status="error"``, excluded from
kinetics); a lesion that could not be segmented at all (its scan unreadable, the click
outside the volume) is left out of every scan's sum, with an errors row. In
``results.csv`` the patient's row per scan has ``volume_cm3`` = the sum (0 when every
lesion is gone: ``status="empty"``), the other additive features (``mesh_volume_mm3``,
``n_voxels``, ``surface_area_mm2``, ``volume_voxels_cm3``) summed,
``sum_longest_axial_diameter_mm`` (the RECIST-style sum of the lesions' longest axial
diameters), and the shape descriptors and HU statistics (sphericity, diameters, centroid,
mean HU, ...) of the largest lesion on that scan (``features_from_lesion``); so the IES
uses the baseline sphericity of the largest target lesion. **The patient LVCR** is
:func:`mkunet.analysis.kinetics.lvcr` of the sums on the scans where the sum is > 0 (a log-volume
slope needs positive volumes; ``lvcr_notes`` in patients.csv lists them); the response
categories use every measured sum (0 = CR). ``patients.csv`` gains ``volume_definition``,
``target_lesions``, ``n_target_lesions``, ``n_target_lesions_failed`` and ``lvcr_notes``.

``OUT/lesion_results.csv`` / ``.parquet``: one row per patient x lesion x scan: the click
(``click_x_mm``...), ``status`` (ok | empty | error), ``volume_cm3`` (0 when empty), the
lesion's shape and intensity features, ``click_in_mask`` (on the click's scan), and the
lesion's kinetics on every row: ``lesion_lvcr_per_day``, ``lesion_lvcr_se``,
``lesion_lvcr_ci_low`` / ``_high``, ``lesion_vdt_days``, ``lesion_lvcr_n_scans`` (from the
scans where the lesion is present; fewer than two: no lesion LVCR and an errors row) and
``lesion_response``. Patients without a row in lesions.csv run the whole-volume path and
get an errors row (stage ``lesions``) saying so; ``volume_definition`` says which volume each
patient has. Without ``lesions`` nothing of this is written and every table is as before.

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
network's state dict + its configuration), its clinical row, the run parameters and
(target-lesion mode) its rows of lesions.csv. A rerun reuses every patient whose key is
unchanged (outputs included) and reruns only the others. Patients without any usable
timepoint are not cached (retried). Writes are atomic: a patient's outputs are written to
``OUT/patients/.tmp-<pid>`` and renamed; JSON / CSV / Parquet files are written to a
temporary name and renamed.

Tables
------
``OUT/results.csv`` and ``OUT/results.parquet``: one row per patient x timepoint with
provenance (input path, series UID, input sha256, model name / version / weights
sha256, parameters JSON, mkunet version). ``OUT/patients.csv``: one row per patient
(LVCR, CI, VDT, response, IES, ...). ``OUT/lesion_results.csv`` / ``.parquet``: per target
lesion (see above). ``OUT/run.json``: parameters, model identity, lesions file and
counts. With outcomes: ``OUT/cohort/`` holds :func:`~mkunet.analysis.survival.analyse_cohort`'s
tables and figures, the statistics the report shows included (``groups.csv``, ``auc.csv``, and
the Kaplan-Meier and ROC curves ``km.csv`` and ``roc.csv``): :mod:`mkunet.report` only draws
what is stored there (:mod:`mkunet.run.store` describes the folder).

Steps of :func:`run_cohort`: :func:`_discover_step` (inputs found and checked, model loaded,
before any work) -> :func:`_process_step` (each patient from the cache or computed) ->
:func:`_analyse_step` (tables, IES, cohort statistics) -> :func:`_write_step` (tables and
``run.json``).

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

from mkunet.run.inputs import (
    CLINICAL_COLUMNS,
    LESION_COLUMNS,
    LESION_OPTIONAL_COLUMNS,
    MAX_TARGET_LESIONS,
    ScanInput,
    TargetLesion,
    check_lesions,
    clinical_mapping,
    discover_scans,
    lesion_folder_name,
    read_clinical,
    read_lesions,
    read_outcomes,
)
from mkunet.run.store import ERROR_COLUMNS, CohortRun, load_run, patient_folder_name
from mkunet.utils import (
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_parquet,
    atomic_write_text,
    is_missing,
    to_jsonable,
)
from mkunet.volume import Volume

__all__ = [
    "patient_folder_name",
    "ScanInput",
    "CohortRun",
    "ERROR_COLUMNS",
    "ProgressCallback",
    "discover_scans",
    "read_clinical",
    "read_outcomes",
    "CLINICAL_COLUMNS",
    "TargetLesion",
    "read_lesions",
    "check_lesions",
    "LESION_COLUMNS",
    "LESION_OPTIONAL_COLUMNS",
    "MAX_TARGET_LESIONS",
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

CACHE_VERSION = 2
"""Part of every patient's cache key; 2: the patient folder holds ``viewer.json`` (older entries are recomputed)."""

#: Demo cohort geometry: (z, y, x) voxels; spacing None lets the generator fit the body per patient.
DEMO_SHAPE = (48, 128, 128)
DEMO_SPACING: tuple[float, float, float] | None = None


def _lesions_by_patient(
    lesions: str | Path | Sequence[TargetLesion] | None,
    scans: Mapping[str, Sequence[ScanInput]],
    params: Mapping[str, Any],
) -> dict[str, list[TargetLesion]] | None:
    """The run's target lesions per patient (None without --lesions), checked against the cohort."""
    if lesions is None:
        return None
    if isinstance(lesions, (str, Path)):
        rows = read_lesions(lesions, scans)
    else:
        rows = check_lesions(lesions, scans, "lesions")
    if params["roi"] != "previous-mask":
        raise ValueError(
            f"--roi {params['roi']} cannot be combined with --lesions: each target lesion is followed from its "
            "click into the later scans through its previous mask; leave --roi at previous-mask."
        )
    out: dict[str, list[TargetLesion]] = {}
    for les in rows:
        out.setdefault(les.patient_id, []).append(les)
    for pid, group in out.items():
        names = [lesion_folder_name(les.lesion_id) for les in group]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ValueError(
                f"{group[0].where}: lesion ids of patient {pid!r} map to the same folder name(s) "
                f"{clash}; rename the lesions so they differ in letters or digits."
            )
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
    identity = hashlib.sha256(json.dumps(to_jsonable(config), sort_keys=True, default=str).encode()).hexdigest()
    return {
        "model_name": str(config["model_name"]),
        "model_version": str(meta.get("label") or meta.get("version") or meta.get("mkunet_version") or "unknown"),
        "model_source": source,
        "weights_sha256": weights,
        "identity_sha256": identity,
        "metadata": to_jsonable(meta),
    }


def _resolve_model(model: Any) -> tuple[Any, str]:
    from mkunet.segmentation import network

    if model is None:
        return network.load_model(None), "shipped"
    if isinstance(model, (str, Path)):
        return network.load_model(model), str(Path(model).resolve())
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


@dataclass
class _PatientWork:
    """One patient on its way through the steps read -> segment -> measure -> kinetics.

    Attributes:
        rows: one results.csv row per scan (all scans, readable or not).
        volumes, readable: the readable scans (same order).
        patient: the patients.csv row.
        lesion_rows: lesion_results.csv rows (patient x lesion x scan; target-lesion mode only).
        overlays: per readable scan, what the overview figure draws.
        trace: the fixed-point LVCR trace (per lesion in target-lesion mode).
    """

    pid: str
    scans: Sequence[ScanInput]
    params: Mapping[str, Any]
    stage_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)
    readable: list[ScanInput] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    patient: dict[str, Any] = field(default_factory=dict)
    lesion_rows: list[dict[str, Any]] = field(default_factory=list)
    overlays: list[dict[str, Any]] = field(default_factory=list)
    trace: Any = field(default_factory=list)

    @property
    def by_tp(self) -> dict[int, dict[str, Any]]:
        return {r["timepoint"]: r for r in self.rows}

    def error(self, timepoint: int | None, stage: str, err: Any, action: str) -> None:
        self.errors.append(_error(self.pid, timepoint, stage, err, action))

    def record(self, usable: bool) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "patient": self.patient,
            "errors": self.errors,
            "usable": usable,
            "trace": self.trace,
            "lesion_rows": self.lesion_rows,
        }


def _process_patient(
    pid: str,
    scans: Sequence[ScanInput],
    clinical: dict[str, Any] | None,
    bundle: Any,
    params: Mapping[str, Any],
    stage_dir: Path,
    base_row: Mapping[str, Any],
    lesions: Sequence[TargetLesion] | None = None,
) -> dict[str, Any]:
    """Segment, write, measure and compute kinetics for one patient into ``stage_dir``.

    Steps: :func:`_read_step`; then either the whole-volume path (:func:`_segment_step`,
    :func:`_measure_step`) or, with ``lesions``, the target-lesion path
    (:func:`_segment_lesions_step`, :func:`_measure_lesions_step`); then
    :func:`_kinetics_step` (on the per-scan volumes: the segmentation's, or the sum of target
    lesions), :func:`_lesion_kinetics_step` (per lesion) and :func:`_overview_step`.

    Returns:
        dict with ``rows`` (one per scan), ``patient`` (one row), ``errors``, ``usable`` (bool),
        ``trace`` and ``lesion_rows`` (target-lesion mode; else empty).
    """
    work = _read_step(pid, scans, params, stage_dir, base_row)
    if not work.readable:
        work.patient["status"] = "failed"
        return work.record(usable=False)
    if lesions:
        segs = _segment_lesions_step(work, bundle, clinical, lesions)
        _measure_lesions_step(work, lesions, segs)
    else:
        _measure_step(work, _segment_step(work, bundle, clinical))
    _kinetics_step(work)
    if lesions:
        _lesion_kinetics_step(work, lesions)
    _overview_step(work)
    _viewer_step(work)
    return work.record(usable=True)


# ---------------------------------------------------------------------------- read


def _read_step(
    pid: str, scans: Sequence[ScanInput], params: Mapping[str, Any], stage_dir: Path, base_row: Mapping[str, Any]
) -> _PatientWork:
    """Read every scan; an unreadable one gets ``status="error"`` and an errors row."""
    from mkunet.io import read_volume

    work = _PatientWork(pid, scans, params, stage_dir)
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
        work.rows.append(row)
        try:
            vol = read_volume(s.path)
        except Exception as err:  # noqa: BLE001 - one unreadable scan must not stop the cohort
            work.error(s.timepoint, "read", err, "timepoint skipped")
            row["notes"] = str(err)
            continue
        row.update(
            series_uid=vol.series_uid,
            study_uid=vol.study_uid,
            input_sha256=_hash_scans([s], s.path),
            shape_zyx=json.dumps(list(vol.shape)),
            spacing_zyx_mm=json.dumps([round(v, 6) for v in vol.spacing]),
        )
        work.volumes.append(vol)
        work.readable.append(s)
    work.patient = {"patient_id": pid, "n_scans": len(scans), "n_scans_read": len(work.readable)}
    return work


# ---------------------------------------------------------------------------- segment


def _segment_timepoints(
    work: _PatientWork,
    bundle: Any,
    clinical: dict[str, Any] | None,
    rois: Sequence[Any] | None,
    previous_mask_roi: bool,
) -> Any:
    """:func:`mkunet.segmentation.infer.segment_timepoints` on the readable scans with the run parameters."""
    from mkunet.segmentation import infer

    days = [s.days for s in work.readable]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        longi = infer.segment_timepoints(
            work.volumes,
            [d - days[0] for d in days],
            model=bundle,
            clinical=clinical,
            rois=rois,
            previous_mask_roi=previous_mask_roi,
            margin_mm=work.params["margin_mm"],
            tol=work.params["lvcr_tol"],
            max_iter=work.params["lvcr_max_iter"],
            return_attention=True,
            threshold=work.params["threshold"],
            method=work.params.get("method", "auto"),
            lvcr_weights=work.params["lvcr_weights"],
            uncertainty=work.params.get("uncertainty", "on"),
        )
    for w in caught:
        logger.info("patient %s: %s", work.pid, w.message)
    return longi


def _segment_step(work: _PatientWork, bundle: Any, clinical: dict[str, Any] | None) -> Any:
    """Whole-volume path: one :func:`mkunet.segmentation.infer.segment_timepoints` call over the readable scans."""
    longi = _segment_timepoints(work, bundle, clinical, None, work.params["roi"] == "previous-mask")
    given_lvcr = clinical is not None and clinical.get("lvcr") is not None
    work.patient.update(
        lvcr_source="clinical.csv" if given_lvcr else ("fixed-point estimate" if longi.trace else "unknown"),
        lvcr_model_input_per_day=float(clinical["lvcr"]) if given_lvcr else longi.lvcr_per_day,
        fixed_point_converged=bool(longi.converged) if longi.trace else None,
        fixed_point_passes=len(longi.trace),
        fixed_point_trace=json.dumps(to_jsonable(longi.trace)),
        segmentation_notes="; ".join(dict.fromkeys(longi.notes)),
    )
    work.trace = longi.trace
    return longi


def _segment_lesions_step(
    work: _PatientWork, bundle: Any, clinical: dict[str, Any] | None, lesions: Sequence[TargetLesion]
) -> dict[str, Any]:
    """Target-lesion path: one :func:`mkunet.segmentation.infer.segment_timepoints` call per lesion, its ROI (click or
    box) on its scan and no ROI elsewhere (later scans follow the lesion's previous mask).

    Returns:
        lesion_id -> LongitudinalSegmentation, or None when the lesion could not be segmented
        (its scan unreadable, the click outside the volume, ...: an errors row says why).
    """
    tps = [s.timepoint for s in work.readable]
    out: dict[str, Any] = {}
    traces: dict[str, Any] = {}
    notes: list[str] = []
    lost = "lesion not measured; the patient's sum uses the other target lesions"
    for les in lesions:
        out[les.lesion_id] = None
        if les.timepoint not in tps:
            work.error(
                les.timepoint,
                "lesions",
                f"lesion {les.lesion_id!r} ({les.where}): its scan "
                f"T{les.timepoint} could not be read, so the lesion cannot be located",
                lost,
            )
            continue
        rois: list[Any] = [None] * len(work.volumes)
        rois[tps.index(les.timepoint)] = les.roi()
        try:
            longi = _segment_timepoints(work, bundle, clinical, rois, previous_mask_roi=True)
        except Exception as err:  # noqa: BLE001 - one lesion never stops the patient
            logger.exception("patient %s lesion %s failed", work.pid, les.lesion_id)
            work.error(
                les.timepoint, "lesions", f"lesion {les.lesion_id!r} ({les.where}): {type(err).__name__}: {err}", lost
            )
            continue
        out[les.lesion_id] = longi
        traces[les.lesion_id] = longi.trace
        notes += [f"lesion {les.lesion_id}: {n}" for n in dict.fromkeys(longi.notes)]
    done = [longi for longi in out.values() if longi is not None]
    iterated = [longi for longi in done if longi.trace]
    given_lvcr = clinical is not None and clinical.get("lvcr") is not None
    work.patient.update(
        lvcr_source="clinical.csv" if given_lvcr else ("fixed-point estimate per lesion" if iterated else "unknown"),
        lvcr_model_input_per_day=float(clinical["lvcr"]) if given_lvcr else None,
        fixed_point_converged=all(bool(x.converged) for x in iterated) if iterated else None,
        fixed_point_passes=max((len(x.trace) for x in done), default=0),
        fixed_point_trace=json.dumps(to_jsonable(traces)),
        segmentation_notes="; ".join(notes),
        volume_definition=f"sum of {len(lesions)} target lesion(s) (volumetric RECIST)",
        target_lesions=";".join(les.lesion_id for les in lesions),
        n_target_lesions=len(lesions),
        n_target_lesions_failed=len(lesions) - len(done),
    )
    work.trace = traces
    return out


# ---------------------------------------------------------------------------- measure


def _write_outputs(
    work: _PatientWork,
    timepoint: int,
    seg: Any,
    vol: Volume,
    folder: Path,
    *,
    label: str = "GTV",
    attention: np.ndarray | None = None,
) -> dict[str, Path]:
    """mask / probability (+ SEG / RTSTRUCT for DICOM inputs, + attention) of one segmentation into ``folder``."""
    from mkunet.io import write_volume
    from mkunet.segmentation import infer

    dicom = [f for f in work.params["formats"] if f != "nifti"] if infer.is_dicom_volume(vol) else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the empty-mask warnings of the writers are reported as errors rows
        try:
            written = infer.save_segmentation(seg, folder, formats=["nifti", *dicom], label=label)
        except Exception as err:  # noqa: BLE001 - a writer failure is reported, the rest goes on
            work.error(timepoint, "write", err, "DICOM outputs missing for this scan")
            written = infer.save_segmentation(seg, folder, formats=["nifti"], label=label)
    if attention is not None:
        written["attention"] = write_volume(vol, folder / "attention.nii.gz", attention.astype(np.float32, copy=False))
    return written


def _features(
    work: _PatientWork, timepoint: int, mask: np.ndarray, vol: Volume, who: str = ""
) -> dict[str, Any] | None:
    """Shape and intensity features of a non-empty mask; None (and an errors row) when they fail."""
    from mkunet.analysis.shape import intensity_features, shape_features

    try:
        return {
            **_flatten_features("", shape_features(mask, vol)),
            **_flatten_features("", intensity_features(vol, mask)),
        }
    except Exception as err:  # noqa: BLE001
        work.error(timepoint, "measure", f"{who}{err}", "features missing for this scan")
        return None


def _reference_step(work: _PatientWork, row: dict[str, Any], s: ScanInput, vol: Volume, mask: np.ndarray) -> None:
    """Dice of ``mask`` against the scan's reference mask, when scans.csv gives one (both empty: 1.0)."""
    from mkunet.analysis.metrics import EmptyMaskWarning, dice
    from mkunet.io import read_mask

    if s.reference_mask is None:
        return
    try:
        ref = read_mask(s.reference_mask, vol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyMaskWarning)  # an empty segmentation is already an errors row
            row["dice_vs_reference"] = dice(mask, ref)
        row["reference_volume_cm3"] = float(np.count_nonzero(ref)) * vol.voxel_volume_mm3 / 1000.0
    except Exception as err:  # noqa: BLE001
        work.error(s.timepoint, "reference", err, "no Dice for this scan")


def _outputs_fields(written: Mapping[str, Path], stage_dir: Path) -> dict[str, str]:
    return {
        "outputs": json.dumps({k: str(p.relative_to(stage_dir)) for k, p in written.items()}),
        "formats_written": ",".join(k for k in ("mask", "seg", "rtstruct", "attention") if k in written),
    }


def _measure_step(work: _PatientWork, longi: Any) -> None:
    """Whole-volume path: write each scan's segmentation under ``T<k>/`` and measure it."""
    by_tp = work.by_tp
    for s, vol, seg in zip(work.readable, work.volumes, longi.segmentations):
        row = by_tp[s.timepoint]
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
            work.error(
                s.timepoint,
                "segment",
                "no tumour found: the mask is empty",
                "kept as volume 0 (CR) in the response; excluded from LVCR and features",
            )
        att = seg.attention[0] if seg.attention else None
        written = _write_outputs(work, s.timepoint, seg, vol, work.stage_dir / f"T{s.timepoint}", attention=att)
        row.update(_outputs_fields(written, work.stage_dir))
        if not seg.empty:
            feats = _features(work, s.timepoint, seg.mask, vol)
            if feats is None:
                row["status"] = "error"
            else:
                row.update(feats)
                row.update(_uncertainty_fields(seg, row["volume_cm3"]))
        row["volume_voxels_cm3"] = seg.volume_cm3
        _reference_step(work, row, s, vol, seg.mask)
        work.overlays.append(
            {
                "volume": vol,
                "mask": seg.mask,
                "attention": att,
                "label": f"T{s.timepoint}, day {s.days:g}",
                "volume_cm3": row.get("volume_cm3", 0.0),
                # for the slice viewer (_viewer_step)
                "timepoint": s.timepoint,
                "days": s.days,
                "lesions": {"GTV": seg.mask},
                "probability": seg.probability,
                "tracked": False,
            }
        )


#: Features that add up over disjoint lesions (summed in target-lesion mode); the others are the largest lesion's.
_ADDITIVE = ("volume_cm3", "mesh_volume_mm3", "n_voxels", "surface_area_mm2")


def _lesion_row(work: _PatientWork, les: TargetLesion, s: ScanInput) -> dict[str, Any]:
    return {
        "patient_id": work.pid,
        "lesion_id": les.lesion_id,
        "timepoint": s.timepoint,
        "scan": f"T{s.timepoint}",
        "days": s.days,
        "scan_date": s.scan_date,
        "status": "error",
        "click_timepoint": les.timepoint,
        "click_x_mm": les.point_xyz_mm[0],
        "click_y_mm": les.point_xyz_mm[1],
        "click_z_mm": les.point_xyz_mm[2],
        "roi_box_mm": les.box_text,
    }


def _measure_lesion(
    work: _PatientWork, les: TargetLesion, s: ScanInput, vol: Volume, seg: Any, row: dict[str, Any]
) -> dict[str, Any] | None:
    """Write one lesion's segmentation under ``T<k>/lesion_<id>/`` and measure it into ``row``.

    Returns:
        its features (None when empty or not measurable).
    """
    row.update(
        status="empty" if seg.empty else "ok",
        roi=seg.roi,
        lvcr_used_per_day=seg.lvcr_used,
        seconds_segment=round(float(seg.timings.get("total", float("nan"))), 3),
        notes="; ".join(seg.notes),
        volume_voxels_cm3=seg.volume_cm3,
    )
    folder = work.stage_dir / f"T{s.timepoint}" / lesion_folder_name(les.lesion_id)
    written = _write_outputs(work, s.timepoint, seg, vol, folder, label=f"GTV {les.lesion_id}"[:64])
    row.update(_outputs_fields(written, work.stage_dir))
    feats = None
    if seg.empty:
        row["volume_cm3"] = 0.0
        work.error(
            s.timepoint,
            "segment",
            f"lesion {les.lesion_id!r}: no tumour found, the mask is empty",
            "counted as 0 cm3 in the patient's sum of target lesions (CR of that lesion); excluded from "
            "the lesion's LVCR",
        )
    else:
        feats = _features(work, s.timepoint, seg.mask, vol, who=f"lesion {les.lesion_id!r}: ")
        if feats is None:
            row["status"] = "error"
        else:
            row.update(feats)
            row.update(_uncertainty_fields(seg, row["volume_cm3"]))
    if s.timepoint == les.timepoint:
        idx = np.rint(vol.physical_to_index(np.asarray(les.point_xyz_mm, np.float64))).astype(int)
        inside = bool(np.all(idx >= 0) and np.all(idx < np.asarray(vol.shape)) and seg.mask[tuple(idx)])
        row["click_in_mask"] = inside
        if not inside and not seg.empty:
            work.error(
                s.timepoint,
                "lesions",
                f"lesion {les.lesion_id!r} ({les.where}): the mask on its scan does not contain the click",
                "kept; review the contour",
            )
    return feats


def _measure_lesions_step(work: _PatientWork, lesions: Sequence[TargetLesion], segs: Mapping[str, Any]) -> None:
    """Target-lesion path: per scan, write and measure every lesion, then the combination (``T<k>/``)."""
    position = {s.timepoint: j for j, s in enumerate(work.readable)}
    by_tp = work.by_tp
    for s in work.scans:
        j = position.get(s.timepoint)
        parts: list[tuple[TargetLesion, Any, dict[str, Any], dict[str, Any] | None]] = []
        for les in lesions:
            lrow = _lesion_row(work, les, s)
            work.lesion_rows.append(lrow)
            longi = segs.get(les.lesion_id)
            if j is None:
                lrow["notes"] = "scan unreadable (see errors.csv)"
            elif longi is None:
                lrow["notes"] = "lesion not segmented (see errors.csv)"
            else:
                seg = longi.segmentations[j]
                parts.append((les, seg, lrow, _measure_lesion(work, les, s, work.volumes[j], seg, lrow)))
        if j is not None:
            _combine_lesions(work, by_tp[s.timepoint], s, work.volumes[j], parts)
            tracked = [longi.tracked[j] for longi in segs.values() if longi is not None and len(longi.tracked) > j]
            work.overlays[-1]["tracked"] = any(t is not None and t.registration != "none" for t in tracked)
            # the first lesion's registration (baseline -> this scan), reused by the slice viewer
            work.overlays[-1]["registration"] = next((t.result for t in tracked if t is not None and t.result), None)


def _combine_lesions(
    work: _PatientWork,
    row: dict[str, Any],
    s: ScanInput,
    vol: Volume,
    parts: Sequence[tuple[TargetLesion, Any, dict[str, Any], dict[str, Any] | None]],
) -> None:
    """The scan's row from its target lesions: volumes summed, shape and HU of the largest lesion.

    ``T<k>/`` gets the union of the lesion masks (mask, max probability, SEG / RTSTRUCT,
    max attention). Status: ``error`` when a segmented lesion could not be measured on this
    scan (or none was segmented), else ``ok`` when the sum > 0 and ``empty`` when it is 0.
    """
    from mkunet.segmentation import infer

    union = np.zeros(vol.shape, bool)
    probability = np.zeros(vol.shape, np.float32)
    attention = None
    for _, seg, _, _ in parts:
        union |= seg.mask
        probability = np.maximum(probability, seg.probability)
        if seg.attention:
            attention = seg.attention[0] if attention is None else np.maximum(attention, seg.attention[0])
    _check_overlaps(work, s.timepoint, parts, vol)
    ids = [les.lesion_id for les, *_ in parts]
    combined = infer.Segmentation(
        mask=union,
        probability=probability,
        volume=vol,
        roi="target lesions " + ", ".join(ids),
        threshold=parts[0][1].threshold if parts else float("nan"),
        empty=not union.any(),
        uncertainty=_sum_uncertainty([seg for _, seg, _, _ in parts]),
    )
    written = _write_outputs(work, s.timepoint, combined, vol, work.stage_dir / f"T{s.timepoint}", attention=attention)
    statuses = [lrow["status"] for _, _, lrow, _ in parts]
    row.update(
        _outputs_fields(written, work.stage_dir),
        roi=combined.roi,
        threshold=combined.threshold,
        volume_definition="sum of target lesions",
        n_target_lesions=len(parts),
        n_lesions_empty=statuses.count("empty"),
        seconds_segment=round(sum(lrow.get("seconds_segment", 0.0) or 0.0 for _, _, lrow, _ in parts), 3),
        notes="; ".join(f"lesion {les.lesion_id}: {lrow['notes']}" for les, _, lrow, _ in parts if lrow.get("notes")),
    )
    if not parts or "error" in statuses:
        row["status"] = "error"
        row["notes"] = "; ".join(
            filter(
                None,
                [
                    "no target lesion was segmented"
                    if not parts
                    else "a target lesion could not be measured on this scan: the sum of target lesions is unknown",
                    row["notes"],
                ],
            )
        )
    else:
        measured = [(les, lrow, feats) for les, _, lrow, feats in parts if feats is not None]
        if measured:
            les, _, feats = max(measured, key=lambda m: m[2]["volume_cm3"])
            row.update(feats)
            row["features_from_lesion"] = les.lesion_id
        total = float(sum(lrow["volume_cm3"] for _, _, lrow, _ in parts))
        for key in _ADDITIVE:
            row[key] = sum((f or {}).get(key, 0) for *_, f in parts)
        row["volume_cm3"] = total
        ses = [lrow.get("volume_se_cm3") for _, _, lrow, _ in parts if lrow["status"] == "ok"]
        if total > 0 and ses and not any(is_missing(x) for x in ses):
            se = float(np.sqrt(np.sum(np.square(ses))))  # independent lesions
            row.update(volume_se_cm3=se, sigma_log_volume_seg=se / total)
        else:
            row.pop("volume_se_cm3", None)
            row.pop("sigma_log_volume_seg", None)
        if total > 0 and row.get("surface_area_mm2"):
            row["surface_to_volume_per_mm"] = row["surface_area_mm2"] / row["mesh_volume_mm3"]
        row["sum_longest_axial_diameter_mm"] = float(
            sum((f or {}).get("longest_axial_diameter_mm", 0.0) for *_, f in parts)
        )
        row["status"] = "ok" if total > 0 else "empty"
    row["empty"] = not union.any()
    row["volume_voxels_cm3"] = float(sum(seg.volume_cm3 for _, seg, _, _ in parts))
    _reference_step(work, row, s, vol, union)
    work.overlays.append(
        {
            "volume": vol,
            "mask": union,
            "attention": attention,
            "label": f"T{s.timepoint}, day {s.days:g}",
            "volume_cm3": row.get("volume_cm3", 0.0),
            # for the slice viewer (_viewer_step)
            "timepoint": s.timepoint,
            "days": s.days,
            "lesions": {les.lesion_id: seg.mask for les, seg, _, _ in parts},
            "lesion_volumes_cm3": {les.lesion_id: lrow.get("volume_cm3") for les, _, lrow, _ in parts},
            "probability": probability,
            "tracked": False,
        }
    )


def _sum_uncertainty(segs: Sequence[Any]) -> Any:
    """The segmentation uncertainty of a sum of independent lesions (SEs in quadrature), for the
    scan's sidecar; None when a non-empty lesion has no estimate (switched off) or all are empty."""
    from mkunet.segmentation.uncertainty import VolumeUncertainty

    present = [seg for seg in segs if not seg.empty]
    if not present or any(seg.uncertainty is None for seg in present):
        return None
    total = float(sum(seg.uncertainty.volume_cm3 for seg in present))
    se = float(np.sqrt(sum(seg.uncertainty.se_cm3**2 for seg in present)))
    return VolumeUncertainty(
        volume_cm3=total,
        sigma_log_volume=se / total if total > 0 else 0.0,
        se_cm3=se,
        seconds=float(sum(seg.uncertainty.seconds for seg in present)),
    )


def _check_overlaps(work: _PatientWork, timepoint: int, parts: Sequence[tuple], vol: Volume) -> None:
    """An errors row for every pair of target lesions whose masks share voxels on this scan."""
    for a in range(len(parts)):
        for b in range(a + 1, len(parts)):
            common = int(np.count_nonzero(parts[a][1].mask & parts[b][1].mask))
            if common:
                work.error(
                    timepoint,
                    "lesions",
                    f"lesions {parts[a][0].lesion_id!r} and {parts[b][0].lesion_id!r} overlap "
                    f"({common * vol.voxel_volume_mm3 / 1000.0:.3f} cm3 in common): the rows may mark the same tumour",
                    "volumes summed as given (the overlap counts twice); check lesions.csv",
                )


# ---------------------------------------------------------------------------- kinetics


def _uncertainty_fields(seg: Any, volume_cm3: float) -> dict[str, Any]:
    """The row's segmentation-uncertainty columns (:class:`mkunet.segmentation.uncertainty.VolumeUncertainty`), the SE
    on the row's (mesh) volume: ``volume_se_cm3``, ``sigma_log_volume_seg``, ``sigma_edge``, ``sigma_click``,
    ``sigma_probability``, ``uncertainty_seconds``; none when switched off."""
    u = getattr(seg, "uncertainty", None)
    if u is None:
        return {}
    fields = u.as_dict()
    fields["volume_se_cm3"] = u.sigma_log_volume * float(volume_cm3)
    return fields


def _rows_lvcr(rows: Sequence[Mapping[str, Any]], params: Mapping[str, Any], who: str) -> Any:
    """:func:`mkunet.analysis.kinetics.lvcr` of scan rows (``days``, ``volume_cm3``) with the run's weights; the
    masks are automatic, so the CI uses ``se_method="auto"`` (the larger of the error-model and
    residual SE with 3 scans or more), and each scan's segmentation uncertainty
    (``sigma_log_volume_seg``, 0 where absent) joins the error model."""
    from mkunet.analysis import kinetics

    days = [r["days"] for r in rows]
    volumes = [r["volume_cm3"] for r in rows]
    seg = [0.0 if is_missing(r.get("sigma_log_volume_seg")) else float(r["sigma_log_volume_seg"]) for r in rows]
    return kinetics.lvcr(
        days, volumes, weights=params["lvcr_weights"], patient_id=who, se_method="auto", sigma_segmentation=seg
    )


def _kinetics_step(work: _PatientWork) -> None:
    """LVCR / VDT on the scans with a tumour (``status="ok"``), response categories, baseline summary."""
    from mkunet.analysis import kinetics

    pid, patient, by_tp = work.pid, work.patient, work.by_tp
    ok = [by_tp[s.timepoint] for s in work.readable if by_tp[s.timepoint]["status"] == "ok"]
    seg_rows = [by_tp[s.timepoint] for s in work.readable if by_tp[s.timepoint]["status"] in ("ok", "empty")]
    if len(ok) >= 2:
        try:
            res = _rows_lvcr(ok, work.params, pid)
            patient.update(
                lvcr_per_day=res.lvcr_per_day,
                lvcr_se=res.se,
                lvcr_ci_low=res.ci_low,
                lvcr_ci_high=res.ci_high,
                vdt_days=res.vdt_days,
                lvcr_n_scans=res.n_scans,
                lvcr_intercept_log_cm3=res.intercept_log_cm3,
                growth=kinetics.growth_call(res.ci_low, res.ci_high),
            )
        except ValueError as err:
            work.error(None, "kinetics", err, "no LVCR / VDT / IES for this patient")
    else:
        work.error(
            None,
            "kinetics",
            f"LVCR needs at least two scans with a tumour, got {len(ok)}",
            "measurements kept; no LVCR / VDT / IES for this patient",
        )
    if seg_rows and seg_rows[0]["status"] == "ok":
        try:
            cats = kinetics.response_over_time(
                [r["days"] for r in seg_rows],
                [r.get("volume_cm3", 0.0) if r["status"] == "ok" else 0.0 for r in seg_rows],
                patient_id=pid,
            )
            for r, c in zip(seg_rows, cats):
                r["response"] = c
            patient["last_response"] = cats[-1]
            patient["responses"] = " -> ".join(cats)
        except ValueError as err:
            work.error(None, "kinetics", err, "no response categories")
    if ok:
        base = ok[0]
        patient.update(
            baseline_days=base["days"],
            baseline_volume_cm3=base["volume_cm3"],
            sphericity=base["sphericity"],
            last_volume_cm3=ok[-1]["volume_cm3"],
            last_days=ok[-1]["days"],
            baseline_longest_axial_diameter_mm=base.get("longest_axial_diameter_mm"),
        )
    dices = [r["dice_vs_reference"] for r in work.rows if r.get("dice_vs_reference") is not None]
    if dices:
        patient["mean_dice_vs_reference"] = float(np.mean(dices))
    patient["status"] = "ok" if len(ok) == len(work.scans) else "partial"


def _lesion_kinetics_step(work: _PatientWork, lesions: Sequence[TargetLesion]) -> None:
    """Per lesion: LVCR / VDT on the scans where it is present, response categories (``lesion_*`` columns);
    and ``lvcr_notes`` on the patient saying which scans the patient LVCR (sum of target lesions) used."""
    from mkunet.analysis import kinetics

    for les in lesions:
        lrows = [r for r in work.lesion_rows if r["lesion_id"] == les.lesion_id]
        ok = [r for r in lrows if r["status"] == "ok"]
        measured = [r for r in lrows if r["status"] in ("ok", "empty")]
        who = f"{work.pid} lesion {les.lesion_id}"
        kin: dict[str, Any] = {}
        if len(ok) >= 2:
            try:
                res = _rows_lvcr(ok, work.params, who)
                kin = {
                    "lesion_lvcr_per_day": res.lvcr_per_day,
                    "lesion_lvcr_se": res.se,
                    "lesion_lvcr_ci_low": res.ci_low,
                    "lesion_lvcr_ci_high": res.ci_high,
                    "lesion_vdt_days": res.vdt_days,
                    "lesion_lvcr_n_scans": res.n_scans,
                    "lesion_growth": kinetics.growth_call(res.ci_low, res.ci_high),
                }
            except ValueError as err:
                work.error(None, "kinetics", err, f"no LVCR for lesion {les.lesion_id!r}")
        elif measured:
            work.error(
                None,
                "kinetics",
                f"lesion {les.lesion_id!r}: LVCR needs at least two scans with the lesion present, got {len(ok)}",
                "no LVCR for this lesion; the patient's LVCR uses the sum of target lesions",
            )
        for r in lrows:
            r.update(kin)
        if measured and measured[0]["status"] == "ok":
            try:
                cats = kinetics.response_over_time(
                    [r["days"] for r in measured], [r["volume_cm3"] for r in measured], patient_id=who
                )
                for r, c in zip(measured, cats):
                    r["lesion_response"] = c
            except ValueError as err:
                work.error(None, "kinetics", err, f"no response categories for lesion {les.lesion_id!r}")
    by_tp = work.by_tp
    used = [f"T{s.timepoint}" for s in work.readable if by_tp[s.timepoint]["status"] == "ok"]
    zero = [f"T{s.timepoint}" for s in work.readable if by_tp[s.timepoint]["status"] == "empty"]
    bad = [f"T{s.timepoint}" for s in work.scans if by_tp[s.timepoint]["status"] == "error"]
    note = f"patient volume = sum of target-lesion volumes; LVCR from the scans where the sum > 0: {used or 'none'}"
    if zero:
        note += f"; sum 0 (all target lesions gone) at {zero}: response CR, not in the LVCR"
    if bad:
        note += f"; sum unknown at {bad} (see errors.csv)"
    work.patient["lvcr_notes"] = note


def _overview_step(work: _PatientWork) -> None:
    """``overview.png``: axial overlays of every readable scan for the report."""
    from mkunet.report import figures

    try:
        png = figures.patient_overview(work.pid, work.overlays)
        atomic_write_bytes(work.stage_dir / "overview.png", png)
    except Exception as err:  # noqa: BLE001 - a figure never costs the results
        work.error(None, "figure", err, "no overlay figure in the report")


def _viewer_step(work: _PatientWork) -> None:
    """``viewer.json``: the slice viewer's payload (:func:`mkunet.report.viewer.viewer_payload`) for the report.

    The scans are cropped around the lesions while they are in memory; follow-ups that were
    tracked by registration are shown through the tracking's own registration (baseline -> scan;
    registered again with :func:`mkunet.report.viewer.register_followups` only where none was kept),
    the others by scanner coordinates.
    """
    from dataclasses import replace

    from mkunet.report import viewer

    try:
        tps = [
            viewer.ViewerTimepoint(
                volume=o["volume"],
                lesions=o.get("lesions") or {"GTV": o["mask"]},
                label=f"T{o.get('timepoint', j)}",
                timepoint=int(o.get("timepoint", j)),
                days=float(o.get("days", 0.0)),
                volume_cm3=o.get("volume_cm3"),
                lesion_volumes_cm3={k: v for k, v in (o.get("lesion_volumes_cm3") or {}).items() if v is not None},
                probability=o.get("probability"),
                attention=o.get("attention"),
            )
            for j, o in enumerate(work.overlays)
        ]
        tps = [
            replace(tp, registration=o.get("registration")) if j else tp
            for j, (tp, o) in enumerate(zip(tps, work.overlays))
        ]
        # tracked follow-ups whose tracking left no registration to reuse are registered for the view
        redo = [bool(o.get("tracked")) and o.get("registration") is None for o in work.overlays]
        if any(redo[1:]):
            tps = viewer.register_followups(tps, which=redo)
        payload = viewer.viewer_payload(tps, patient_id=work.pid)
        atomic_write_text(work.stage_dir / "viewer.json", json.dumps(payload, separators=(",", ":")))
    except Exception as err:  # noqa: BLE001 - a viewer never costs the results
        logger.exception("patient %s: viewer failed", work.pid)
        work.error(None, "viewer", err, "no slice viewer for this patient in the report")


# ============================================================================ the cohort


def _params(
    formats: Sequence[str],
    roi: str,
    margin_mm: float,
    threshold: float | None,
    lvcr_weights: str,
    lvcr_tol: float,
    lvcr_max_iter: int,
    method: str = "auto",
    uncertainty: str = "on",
) -> dict[str, Any]:
    from mkunet import __version__
    from mkunet.segmentation.uncertainty import check_uncertainty

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
    from mkunet.segmentation.infer import check_options

    check_options(method, threshold=threshold)  # "image" and a threshold with "auto" are refused
    return {
        "method": method,
        "uncertainty": check_uncertainty(uncertainty),
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
    lesions: str | Path | Sequence[TargetLesion] | None = None,
    method: str = "auto",
    uncertainty: str = "on",
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
        lvcr_weights: weighting of :func:`mkunet.analysis.kinetics.lvcr`.
        lvcr_tol, lvcr_max_iter: fixed-point LVCR tolerance (per day) and passes.
        ies_mode: :func:`mkunet.analysis.ies.immune_evasion_score` mode.
        n_boot, seed: bootstrap resamples / seed of the cohort AUC CIs.
        resume: reuse cached patients whose inputs, model and parameters are unchanged.
        synthetic: label the data as synthetic in the report (default: True when the cohort folder
            holds the synthetic generator's ``truth.json``).
        cohort_figures: also let :func:`~mkunet.analysis.survival.analyse_cohort` write its PNG figures into
            ``OUT/cohort`` (the report draws its own).
        progress: ``progress(done, total, description)`` callback.
        lesions: lesions.csv (see :func:`read_lesions`) or a list of :class:`TargetLesion`: the
            listed patients are measured as the sum of their target lesions (module docstring,
            "Target lesions"); None: the whole-volume path for every patient.
        method: :func:`mkunet.segmentation.infer.segment` method: ``"auto"`` (the image lesion model from each
            click, box or previous mask; for the whole volume the image-driven detection on the first
            scan, then tracking) or ``"network"`` (a ``threshold`` applies to it only).
        uncertainty: ``"on"`` (default): each scan's segmentation uncertainty (:mod:`mkunet.segmentation.uncertainty`;
            ``volume_se_cm3`` and ``sigma_log_volume_seg`` columns) widens the LVCR interval
            (``kinetics.lvcr(..., sigma_segmentation=...)``); ``"off"``: the repeat-scan error model only.

    Returns:
        :class:`CohortRun`; the tables are also written under ``out_dir``.

    Raises:
        ValueError: bad parameters, or a bad lesions.csv (the message names the file, line,
            patient, lesion or column) -- before any patient is processed.
    """
    t_start = time.perf_counter()
    params = _params(formats, roi, margin_mm, threshold, lvcr_weights, lvcr_tol, lvcr_max_iter, method, uncertainty)
    inputs = _discover_step(cohort_dir, clinical, outcomes, model, lesions, params, synthetic)
    out = _prepare_out_dir(out_dir)
    done = _process_step(inputs, out, resume, progress or (lambda done, n, desc: None))
    tables = _analyse_step(inputs, done, out, ies_mode, n_boot, seed, cohort_figures)
    meta = _write_step(inputs, done, tables, out, clinical, outcomes, lesions, ies_mode, t_start)
    if progress is not None:
        progress(len(done.pids), len(done.pids), "cohort done")
    return CohortRun(
        out,
        tables.results,
        tables.patients,
        tables.errors,
        done.processed,
        done.resumed,
        inputs.identity,
        inputs.params,
        tables.cohort,
        tables.notes,
        meta,
        tables.lesions,
    )


# ---------------------------------------------------------------------------- run_cohort's steps


@dataclass
class _RunInputs:
    """What :func:`_discover_step` found and checked: everything a run needs, before any patient is processed."""

    cohort_dir: Path
    params: dict[str, Any]
    scans: dict[str, list[ScanInput]]
    targets: dict[str, list[TargetLesion]] | None
    clinical: pd.DataFrame
    outcomes: pd.DataFrame | None
    bundle: Any
    identity: dict[str, Any]
    synthetic: bool


@dataclass
class _Processed:
    """What :func:`_process_step` produced: one record per usable patient (computed or from the cache)."""

    pids: list[str]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    processed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Tables:
    """What :func:`_analyse_step` produced: the run's tables, notes and cohort analysis."""

    results: pd.DataFrame
    patients: pd.DataFrame
    errors: pd.DataFrame
    lesions: pd.DataFrame
    cohort: Any
    notes: list[str]


def _discover_step(
    cohort_dir: str | Path,
    clinical: str | Path | pd.DataFrame,
    outcomes: str | Path | pd.DataFrame | None,
    model: Any,
    lesions: str | Path | Sequence[TargetLesion] | None,
    params: dict[str, Any],
    synthetic: bool | None,
) -> _RunInputs:
    """Find the scans, read and check every input table, load the model (errors raised here, before any work)."""
    cohort_dir = Path(cohort_dir)
    scans = discover_scans(cohort_dir)
    targets = _lesions_by_patient(lesions, scans, params)
    clin = (
        read_clinical(clinical)
        if not isinstance(clinical, pd.DataFrame)
        else clinical.assign(patient_id=clinical["patient_id"].astype(str)).set_index("patient_id")
    )
    outcomes_df = None
    if outcomes is not None:
        outcomes_df = outcomes.copy() if isinstance(outcomes, pd.DataFrame) else read_outcomes(outcomes)
    bundle, source = _resolve_model(model)
    identity = model_identity(bundle, source)
    if synthetic is None:
        synthetic = (cohort_dir / "truth.json").is_file()
    return _RunInputs(cohort_dir, params, scans, targets, clin, outcomes_df, bundle, identity, bool(synthetic))


def _prepare_out_dir(out_dir: str | Path) -> Path:
    """``OUT/``, ``OUT/patients`` and ``OUT/cache`` created; staging folders of an interrupted run removed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "patients").mkdir(exist_ok=True)
    (out / "cache").mkdir(exist_ok=True)
    for stale in (out / "patients").glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return out


def _process_step(inputs: _RunInputs, out: Path, resume: bool, report: ProgressCallback) -> _Processed:
    """Every patient with scans: from the cache when its key is unchanged, else computed (:func:`_run_patient`)."""
    identity, params = inputs.identity, inputs.params
    base_row = {
        "model_name": identity["model_name"],
        "model_version": identity["model_version"],
        "model_source": identity["model_source"],
        "model_weights_sha256": identity["weights_sha256"],
        "parameters": json.dumps(to_jsonable(params), sort_keys=True),
        "mkunet_version": params["mkunet_version"],
    }
    done = _Processed(sorted(inputs.scans))
    for pid in sorted(set(inputs.clinical.index.astype(str)) - set(inputs.scans)):
        done.errors.append(_error(pid, None, "discover", "in clinical.csv but no scans found", "ignored"))
    total = len(done.pids)
    for i, pid in enumerate(done.pids):
        kind, record, desc = _run_patient(
            inputs,
            pid,
            out,
            base_row,
            resume,
            done.errors,
            lambda text, i=i, pid=pid: report(i, total, f"{pid}: {text}"),
        )
        if record is not None:
            done.records[pid] = record
            (done.processed if kind == "computed" else done.resumed).append(pid)
        report(i + 1, total, f"{pid}: {desc}")
    return done


def _run_patient(
    inputs: _RunInputs,
    pid: str,
    out: Path,
    base_row: Mapping[str, Any],
    resume: bool,
    run_errors: list[dict[str, Any]],
    report: Callable[[str], None],
) -> tuple[str | None, dict[str, Any] | None, str]:
    """One patient: reuse its cache entry when the key matches, else compute it into ``OUT/patients/<pid>``.

    Problems that skip the patient go to ``run_errors``.

    Returns:
        (``"computed"``, ``"resumed"`` or None when skipped; the patient's JSON-safe record or None;
        the progress text).
    """
    if pid not in inputs.clinical.index:
        run_errors.append(
            _error(
                pid,
                None,
                "clinical",
                f"patient {pid!r} has scans but no row in clinical.csv",
                "patient skipped: add a row to clinical.csv",
            )
        )
        return None, None, "skipped (no clinical row)"
    clinical_row = clinical_mapping(inputs.clinical.loc[pid])
    report("hashing inputs")
    name = patient_folder_name(pid)
    if inputs.targets is not None and pid not in inputs.targets:
        run_errors.append(
            _error(
                pid,
                None,
                "lesions",
                f"patient {pid!r} has no row in the lesions table",
                "whole-volume segmentation, as without --lesions",
            )
        )
    patient_lesions = None if inputs.targets is None else inputs.targets.get(pid)
    scans = inputs.scans[pid]
    try:
        key = _cache_key(scans, inputs.cohort_dir, inputs.identity, inputs.params, clinical_row, patient_lesions)
    except OSError as err:
        run_errors.append(_error(pid, None, "read", err, "patient skipped"))
        return None, None, "unreadable"
    cache_file = out / "cache" / f"{name}.json"
    if resume:
        cached = _cached_record(cache_file, key, out / "patients" / name)
        if cached is not None:
            return "resumed", cached, "resumed from cache"
    report(f"segmenting {len(scans)} scan(s)")
    stage = out / "patients" / f".tmp-{name}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        rec = _process_patient(pid, scans, clinical_row, inputs.bundle, inputs.params, stage, base_row, patient_lesions)
    except Exception as err:  # noqa: BLE001 - one bad patient never stops the cohort
        logger.exception("patient %s failed", pid)
        shutil.rmtree(stage, ignore_errors=True)
        run_errors.append(_error(pid, None, "segment", err, "patient skipped"))
        return None, None, "failed"
    rec["patient"]["seconds"] = round(time.perf_counter() - t0, 2)
    if not rec["usable"]:
        shutil.rmtree(stage, ignore_errors=True)
        cache_file.unlink(missing_ok=True)
        run_errors.extend(rec["errors"])
        run_errors.append(_error(pid, None, "read", "no readable scan", "patient skipped"))
        return None, None, "failed"
    final = out / "patients" / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(stage, final)
    rec["key"] = key
    rec["cache_version"] = CACHE_VERSION
    atomic_write_text(cache_file, json.dumps(to_jsonable(rec), indent=1, default=str))
    return "computed", to_jsonable(rec), "done"


def _cached_record(cache_file: Path, key: str, outputs: Path) -> dict[str, Any] | None:
    """The cached record when the cache file holds ``key`` and the patient's outputs exist; else None."""
    if not cache_file.is_file():
        return None
    try:
        cached = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return cached if cached and cached.get("key") == key and outputs.is_dir() else None


def _analyse_step(
    inputs: _RunInputs,
    done: _Processed,
    out: Path,
    ies_mode: str,
    n_boot: int,
    seed: int,
    cohort_figures: bool,
) -> _Tables:
    """The cohort tables from the patient records; IES and (with outcomes)
    :func:`~mkunet.analysis.survival.analyse_cohort`, which stores its tables and curves under ``OUT/cohort``.
    Every problem is also a ``warnings.warn``."""
    records, pids = done.records, done.pids
    results = pd.DataFrame([r for pid in pids if pid in records for r in records[pid]["rows"]])
    patients = pd.DataFrame([records[pid]["patient"] for pid in pids if pid in records])
    all_errors = [e for pid in pids if pid in records for e in records[pid]["errors"]] + done.errors
    for e in all_errors:
        where = "" if e["timepoint"] is None else f" T{e['timepoint']}"
        warnings.warn(
            f"patient {e['patient_id']}{where} ({e['stage']}): {e['error']} -> {e['action']}",
            UserWarning,
            stacklevel=3,
        )
    notes: list[str] = []
    cohort = None
    if not patients.empty:
        patients, cohort, ies_notes, ies_errors = _cohort_stage(
            results,
            patients,
            inputs.clinical,
            inputs.outcomes,
            out,
            ies_mode,
            n_boot,
            seed,
            inputs.params["lvcr_weights"],
            cohort_figures,
        )
        notes += ies_notes
        all_errors += ies_errors
    errors = pd.DataFrame(all_errors, columns=ERROR_COLUMNS)
    if not results.empty:
        results = results.sort_values(["patient_id", "timepoint"]).reset_index(drop=True)
    lesion_table = _lesion_table([r for pid in pids if pid in records for r in records[pid].get("lesion_rows", [])])
    if inputs.targets is not None:
        results, patients = _label_volume_definition(results, patients)
    return _Tables(results, patients, errors, lesion_table, cohort, notes)


def _write_step(
    inputs: _RunInputs,
    done: _Processed,
    tables: _Tables,
    out: Path,
    clinical: Any,
    outcomes: Any,
    lesions: Any,
    ies_mode: str,
    t_start: float,
) -> dict[str, Any]:
    """Write the tables (CSV / Parquet) and ``run.json``; returns the run.json content."""
    if inputs.targets is not None:
        atomic_write_csv(tables.lesions, out / "lesion_results.csv")
        atomic_write_parquet(_parquet_safe(tables.lesions), out / "lesion_results.parquet")
    else:  # a table of an earlier run with --lesions would describe other results
        for name in ("lesion_results.csv", "lesion_results.parquet"):
            (out / name).unlink(missing_ok=True)
    atomic_write_csv(tables.results, out / "results.csv")
    atomic_write_parquet(_parquet_safe(tables.results), out / "results.parquet")
    atomic_write_csv(tables.patients, out / "patients.csv")
    atomic_write_csv(tables.errors, out / "errors.csv")
    meta = {
        "cohort_dir": str(inputs.cohort_dir.resolve()),
        "clinical": None if isinstance(clinical, pd.DataFrame) else str(Path(clinical).resolve()),
        "outcomes": None if outcomes is None or isinstance(outcomes, pd.DataFrame) else str(Path(outcomes).resolve()),
        "synthetic": inputs.synthetic,
        "model": inputs.identity,
        "parameters": inputs.params,
        "ies_mode": ies_mode,
        "lesions": None
        if lesions is None
        else (str(Path(lesions).resolve()) if isinstance(lesions, (str, Path)) else "(given in Python)"),
        "lesion_patients": None if inputs.targets is None else sorted(inputs.targets),
        "n_patients": len(done.pids),
        "processed": done.processed,
        "resumed": done.resumed,
        "seconds": round(time.perf_counter() - t_start, 2),
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "notes": tables.notes,
    }
    atomic_write_text(out / "run.json", json.dumps(to_jsonable(meta), indent=2))
    return meta


def _cache_key(
    scans: Sequence[ScanInput],
    cohort_dir: Path,
    identity: Mapping[str, Any],
    params: Mapping[str, Any],
    clinical_row: Any,
    lesions: Sequence[TargetLesion] | None,
) -> str:
    """The patient's cache key: sha256 over its input bytes, the model identity, the run parameters, its
    clinical row and (target-lesion mode) its rows of the lesions table.

    Raises:
        OSError: an input file cannot be read.
    """
    content: dict[str, Any] = {
        "inputs": _hash_scans(scans, cohort_dir),
        "model": identity["identity_sha256"],
        "params": {k: v for k, v in params.items() if k != "mkunet_version"},
        "version": params["mkunet_version"],
        "clinical": to_jsonable(clinical_row),
    }
    if lesions:
        content["lesions"] = [les.key() for les in lesions]
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


LESION_TABLE_COLUMNS = [
    "patient_id",
    "lesion_id",
    "timepoint",
    "scan",
    "days",
    "scan_date",
    "status",
    "volume_cm3",
    "volume_voxels_cm3",
    "lesion_lvcr_per_day",
    "lesion_lvcr_se",
    "lesion_lvcr_ci_low",
    "lesion_lvcr_ci_high",
    "lesion_vdt_days",
    "lesion_lvcr_n_scans",
    "lesion_response",
    "click_timepoint",
    "click_x_mm",
    "click_y_mm",
    "click_z_mm",
    "roi_box_mm",
    "click_in_mask",
    "roi",
]
"""The first columns of ``lesion_results.csv`` (shape / intensity features, outputs and notes follow)."""


def _lesion_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``lesion_results.csv``: one row per patient x target lesion x scan, sorted, key columns first."""
    df = pd.DataFrame(list(rows))
    for c in LESION_TABLE_COLUMNS:
        if c not in df.columns:
            df[c] = pd.Series(dtype=object if c in ("patient_id", "lesion_id", "scan", "status") else float)
    df = df[LESION_TABLE_COLUMNS + [c for c in df.columns if c not in LESION_TABLE_COLUMNS]]
    if not df.empty:
        df = df.sort_values(["patient_id", "lesion_id", "timepoint"], kind="stable").reset_index(drop=True)
    return df


def _label_volume_definition(results: pd.DataFrame, patients: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Target-lesion runs: say which volume every row is (patients without lesion rows: whole volume)."""
    whole = "whole-volume segmentation (no row in the lesions table)"
    out = []
    for df in (results, patients):
        df = df.copy()
        if not df.empty:
            col = (
                df["volume_definition"] if "volume_definition" in df else pd.Series(None, index=df.index, dtype=object)
            )
            df["volume_definition"] = col.where(col.notna(), whole)
        out.append(df)
    return out[0], out[1]


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns with mixed types (None + str, numbers) -> str, so pyarrow can store them."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            values = out[c].dropna()
            if not values.map(lambda v: isinstance(v, str)).all():
                out[c] = out[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return out


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
    """IES for the cohort, and :func:`~mkunet.analysis.survival.analyse_cohort` when outcomes are given."""
    from mkunet.analysis.ies import immune_evasion_score

    notes: list[str] = []
    errors: list[dict[str, Any]] = []
    patients = patients.copy()
    cohort = None
    if outcomes is not None:
        from mkunet.analysis.survival import analyse_cohort

        meas = results.loc[results["status"] == "ok", ["patient_id", "timepoint", "days", "volume_cm3", "sphericity"]]
        try:
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
    has = (
        patients.dropna(subset=[c for c in ("lvcr_per_day", "sphericity") if c in patients])
        if {"lvcr_per_day", "sphericity"} <= set(patients.columns)
        else patients.iloc[0:0]
    )
    if len(has) >= 2:
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
            errors.append(_error("(cohort)", None, "ies", err, "no IES"))
    else:
        notes.append("IES not computed: fewer than two patients have an LVCR.")
    return patients, cohort, notes, errors


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

    The synthetic cohort's ``lesions.csv`` (one target lesion per patient: a click at the tumour's
    centre on the first scan) is passed to :func:`run_cohort`, so the demo runs the target-lesion path.

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
        cohort = synth.make_cohort(
            n_patients,
            seed=seed,
            shape=tuple(shape),
            spacing=None if spacing is None else tuple(spacing),
            timepoints=tuple(timepoints),
        )
        tmp = out / ".cohort-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        synth.write_cohort(cohort, tmp, formats=("nifti", "dicom"))
        shutil.rmtree(cohort_dir, ignore_errors=True)
        os.replace(tmp, cohort_dir)
    lesions = cohort_dir / "lesions.csv"  # the click at each tumour's centre (cohorts written before it: none)
    run = run_cohort(
        cohort_dir,
        cohort_dir / "clinical.csv",
        out / "run",
        model=model,
        outcomes=cohort_dir / "outcomes.csv",
        formats=formats,
        lvcr_max_iter=lvcr_max_iter,
        synthetic=True,
        progress=progress,
        lesions=lesions if lesions.is_file() else None,
    )
    return write_report(run, out / "report.html")
