"""Run a whole cohort: segment every scan, measure, kinetics, IES, cohort statistics; resumable.

:func:`run_cohort` is the typed API behind ``mkunet run``; :func:`mkunet.run.demo.run_demo` makes a
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
functions of :mod:`mkunet.run.patient`: read (:func:`~mkunet.run.patient.read_step`) -> segment ->
measure -> kinetics.

Target lesions (``run_cohort(..., lesions=...)``, ``mkunet run --lesions lesions.csv``)
----------------------------------------------------------------------------------
With ``lesions.csv`` (:func:`read_lesions`: a click or a box per target lesion, at most 5 per
patient) each listed patient's lesions are segmented on their own, and **the patient's volume at
a scan is the sum of its target-lesion volumes** (volumetric RECIST); ``OUT/lesion_results.csv``
holds one row per patient x lesion x scan. :mod:`mkunet.run.lesions` documents the file, the
outputs, the sums and their failures.

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

Quality control
---------------
Every scan's segmentation and every series is checked (:mod:`mkunet.run.quality`,
:mod:`mkunet.qc`): ``qc`` (ok | review), ``qc_reasons`` and ``qc_codes`` in results.csv,
lesion_results.csv and patients.csv, cached with the patient. With ``qc="exclude"`` (the
default) patients with a flagged scan no reviewer accepted are left out of the IES and cohort
statistics and listed in ``OUT/excluded.csv``; ``qc_overrides.csv`` holds the reviewer's
decisions, applied after the cache (:mod:`mkunet.run.overrides`).

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
counts. With outcomes: ``OUT/cohort/`` holds :func:`~mkunet.analysis.cohort.analyse_cohort`'s
tables and figures, the statistics the report shows included (``groups.csv``, ``auc.csv``, and
the Kaplan-Meier and ROC curves ``km.csv`` and ``roc.csv``): :mod:`mkunet.report` only draws
what is stored there (:mod:`mkunet.run.store` describes the folder).

Steps of :func:`run_cohort`: :func:`_discover_step` (inputs found and checked, model loaded,
before any work) -> :func:`_process_step` (each patient from the cache or computed) ->
:func:`_analyse_step` (tables, IES, cohort statistics) -> :func:`_write_step` (tables and
``run.json``).

Units: days, cm^3, mm, HU, per day. Arrays (z, y, x); spacing (z, y, x) mm.

Modules: :mod:`mkunet.run.patient` (one patient's steps), :mod:`mkunet.run.lesions` (target
lesions), :mod:`mkunet.run.cache` (resume), :mod:`mkunet.run.statistics` (IES and cohort
statistics), :mod:`mkunet.run.demo` (:func:`~mkunet.run.demo.run_demo`). This module keeps the
orchestration and re-exports, for its users, :class:`~mkunet.run.store.CohortRun`,
:func:`~mkunet.run.store.load_run`, :func:`~mkunet.run.inputs.discover_scans`,
:func:`~mkunet.run.inputs.read_clinical`, :func:`~mkunet.run.inputs.read_outcomes`,
:func:`~mkunet.run.inputs.read_lesions`, :class:`~mkunet.run.inputs.TargetLesion` and
:func:`~mkunet.run.cache.model_identity`.
"""

from __future__ import annotations

import datetime as _dt
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

import pandas as pd

from mkunet.run.cache import CACHE_VERSION, cache_key, cached_record, model_identity
from mkunet.run.inputs import (
    ScanInput,
    TargetLesion,
    clinical_mapping,
    discover_scans,
    read_clinical,
    read_lesions,
    read_outcomes,
)
from mkunet.run.lesions import (
    label_volume_definition,
    lesion_kinetics_step,
    lesion_table,
    lesions_by_patient,
    measure_lesions_step,
    segment_lesions_step,
)
from mkunet.run.overrides import (
    QCOverride,
    apply_overrides,
    check_qc_mode,
    excluded_table,
    patient_decisions,
    read_overrides,
)
from mkunet.run.patient import (
    error_row,
    kinetics_step,
    measure_step,
    overview_step,
    read_step,
    segment_step,
    viewer_step,
)
from mkunet.run.quality import lesion_quality_step, whole_volume_quality_step
from mkunet.run.statistics import cohort_statistics
from mkunet.run.store import ERROR_COLUMNS, CohortRun, load_run, patient_folder_name
from mkunet.utils import atomic_write_csv, atomic_write_parquet, atomic_write_text, to_jsonable

__all__ = [
    "ProgressCallback",
    "run_cohort",
    # re-exported from their defining modules, for users of this module
    "CohortRun",
    "load_run",
    "discover_scans",
    "read_clinical",
    "read_outcomes",
    "read_lesions",
    "TargetLesion",
    "model_identity",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]
"""``progress(done, total, description)``: called as patients start and finish."""


def _resolve_model(model: Any) -> tuple[Any, str]:
    from mkunet.segmentation import network

    if model is None:
        return network.load_model(None), "shipped"
    if isinstance(model, (str, Path)):
        return network.load_model(model), str(Path(model).resolve())
    return model, "object"


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

    Steps: :func:`read_step`; then either the whole-volume path (:func:`segment_step`,
    :func:`measure_step`) or, with ``lesions``, the target-lesion path
    (:func:`segment_lesions_step`, :func:`measure_lesions_step`); then
    :func:`kinetics_step` (on the per-scan volumes: the segmentation's, or the sum of target
    lesions), :func:`lesion_kinetics_step` (per lesion), the quality control
    (:func:`~mkunet.run.quality.whole_volume_quality_step` or
    :func:`~mkunet.run.quality.lesion_quality_step`), :func:`overview_step` and :func:`viewer_step`.

    Returns:
        dict with ``rows`` (one per scan), ``patient`` (one row), ``errors``, ``usable`` (bool),
        ``trace`` and ``lesion_rows`` (target-lesion mode; else empty).
    """
    work = read_step(pid, scans, params, stage_dir, base_row)
    if not work.readable:
        work.patient["status"] = "failed"
        return work.record(usable=False)
    if lesions:
        segs = segment_lesions_step(work, bundle, clinical, lesions)
        measure_lesions_step(work, lesions, segs)
    else:
        longi = segment_step(work, bundle, clinical)
        measure_step(work, longi)
    kinetics_step(work)
    if lesions:
        lesion_kinetics_step(work, lesions)
        lesion_quality_step(work, lesions, segs)
    else:
        whole_volume_quality_step(work, longi)
    overview_step(work)
    viewer_step(work)
    return work.record(usable=True)


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
    qc: str = "exclude",
    qc_overrides: str | Path | None = None,
) -> CohortRun:
    """Run the whole pipeline on a cohort (see the module docstring).

    The body is four steps (:func:`_discover_step` -> :func:`_process_step` -> :func:`_analyse_step` ->
    :func:`_write_step`); the length is the documentation of the arguments.

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
        cohort_figures: also let :func:`~mkunet.analysis.cohort.analyse_cohort` write its PNG figures into
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
        qc: ``"exclude"`` (default): patients whose measured scans the quality control flagged
            (:mod:`mkunet.run.quality`) and no one accepted are left out of the IES and cohort
            statistics and listed in ``OUT/excluded.csv``; ``"include"``: they are kept (rejected ones
            are still left out). See :mod:`mkunet.run.overrides`.
        qc_overrides: ``qc_overrides.csv`` (:func:`mkunet.run.overrides.read_overrides`): a person's
            accept / reject decisions, applied after the cache (a rerun recomputes no segmentation).

    Returns:
        :class:`CohortRun`; the tables are also written under ``out_dir``.

    Raises:
        ValueError: bad parameters, or a bad lesions.csv or qc_overrides.csv (the message names the
            file, line, patient, lesion or column) -- before any patient is processed.
    """
    t_start = time.perf_counter()
    params = _params(formats, roi, margin_mm, threshold, lvcr_weights, lvcr_tol, lvcr_max_iter, method, uncertainty)
    inputs = _discover_step(cohort_dir, clinical, outcomes, model, lesions, params, synthetic, qc, qc_overrides)
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
        tables.excluded,
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
    qc: str = "exclude"
    overrides: list[QCOverride] = field(default_factory=list)
    overrides_path: Path | None = None


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
    excluded: pd.DataFrame


def _discover_step(
    cohort_dir: str | Path,
    clinical: str | Path | pd.DataFrame,
    outcomes: str | Path | pd.DataFrame | None,
    model: Any,
    lesions: str | Path | Sequence[TargetLesion] | None,
    params: dict[str, Any],
    synthetic: bool | None,
    qc: str = "exclude",
    qc_overrides: str | Path | None = None,
) -> _RunInputs:
    """Find the scans, read and check every input table, load the model (errors raised here, before any work)."""
    check_qc_mode(qc)
    cohort_dir = Path(cohort_dir)
    scans = discover_scans(cohort_dir)
    targets = lesions_by_patient(lesions, scans, params)
    overrides = [] if qc_overrides is None else read_overrides(qc_overrides, scans, targets)
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
    return _RunInputs(
        cohort_dir,
        params,
        scans,
        targets,
        clin,
        outcomes_df,
        bundle,
        identity,
        bool(synthetic),
        qc,
        overrides,
        None if qc_overrides is None else Path(qc_overrides),
    )


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
        done.errors.append(error_row(pid, None, "discover", "in clinical.csv but no scans found", "ignored"))
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
            error_row(
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
            error_row(
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
        key = cache_key(scans, inputs.cohort_dir, inputs.identity, inputs.params, clinical_row, patient_lesions)
    except OSError as err:
        run_errors.append(error_row(pid, None, "read", err, "patient skipped"))
        return None, None, "unreadable"
    cache_file = out / "cache" / f"{name}.json"
    if resume:
        cached = cached_record(cache_file, key, out / "patients" / name)
        if cached is not None:
            return "resumed", cached, "resumed from cache"
    report(f"segmenting {len(scans)} scan(s)")
    rec = _compute_patient(inputs, pid, clinical_row, patient_lesions, out, base_row, run_errors)
    if rec is None:
        return None, None, "failed"
    rec["key"] = key
    rec["cache_version"] = CACHE_VERSION
    atomic_write_text(cache_file, json.dumps(to_jsonable(rec), indent=1, default=str))
    return "computed", to_jsonable(rec), "done"


def _compute_patient(
    inputs: _RunInputs,
    pid: str,
    clinical_row: dict[str, Any] | None,
    patient_lesions: Sequence[TargetLesion] | None,
    out: Path,
    base_row: Mapping[str, Any],
    run_errors: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """:func:`_process_patient` into the staging folder ``OUT/patients/.tmp-<name>``, renamed to
    ``OUT/patients/<name>`` when the patient is usable.

    Returns:
        the patient's record; None when it failed or had no readable scan (the staging folder and
        its cache file removed, the errors in ``run_errors``).
    """
    name = patient_folder_name(pid)
    scans = inputs.scans[pid]
    stage = out / "patients" / f".tmp-{name}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        rec = _process_patient(pid, scans, clinical_row, inputs.bundle, inputs.params, stage, base_row, patient_lesions)
    except Exception as err:  # noqa: BLE001 - one bad patient never stops the cohort
        logger.exception("patient %s failed", pid)
        shutil.rmtree(stage, ignore_errors=True)
        run_errors.append(error_row(pid, None, "segment", err, "patient skipped"))
        return None
    rec["patient"]["seconds"] = round(time.perf_counter() - t0, 2)
    if not rec["usable"]:
        shutil.rmtree(stage, ignore_errors=True)
        (out / "cache" / f"{name}.json").unlink(missing_ok=True)
        run_errors.extend(rec["errors"])
        run_errors.append(error_row(pid, None, "read", "no readable scan", "patient skipped"))
        return None
    final = out / "patients" / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(stage, final)
    return rec


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
    :func:`~mkunet.analysis.cohort.analyse_cohort`, which stores its tables and curves under ``OUT/cohort``.
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
    lesion_rows = lesion_table([r for pid in pids if pid in records for r in records[pid].get("lesion_rows", [])])
    results, lesion_rows = apply_overrides(results, lesion_rows, inputs.overrides)
    patients = patient_decisions(results, patients, inputs.qc)
    excluded = excluded_table(results, patients)
    if not patients.empty:
        patients, cohort, ies_notes, ies_errors = cohort_statistics(
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
            excluded=set(excluded["patient_id"].astype(str)) if len(excluded) else (),
        )
        notes += ies_notes
        all_errors += ies_errors
    errors = pd.DataFrame(all_errors, columns=ERROR_COLUMNS)
    if not results.empty:
        results = results.sort_values(["patient_id", "timepoint"]).reset_index(drop=True)
    if inputs.targets is not None:
        results, patients = label_volume_definition(results, patients)
    return _Tables(results, patients, errors, lesion_rows, cohort, notes, excluded)


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
    atomic_write_csv(tables.excluded, out / "excluded.csv")
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
        "qc": inputs.qc,
        "qc_overrides": None if inputs.overrides_path is None else str(inputs.overrides_path.resolve()),
        "n_qc_overrides": len(inputs.overrides),
        "n_excluded": len(tables.excluded),
    }
    atomic_write_text(out / "run.json", json.dumps(to_jsonable(meta), indent=2))
    return meta


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns with mixed types (None + str, numbers) -> str, so pyarrow can store them."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            values = out[c].dropna()
            if not values.map(lambda v: isinstance(v, str)).all():
                out[c] = out[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return out
