"""Quality control in a cohort run: every scan's segmentation and every series checked (:mod:`mkunet.qc`).

During a patient's steps (results cached with the patient, so a resumed run does not
recompute them):

* each segmentation is checked by :func:`mkunet.qc.check_segmentation` (:func:`check_scan`),
  with the lesions.csv click (x, y, z) mm on the click's own scan, and one lung envelope per
  scan computed once (:func:`scan_envelope`) and shared by the scan's lesions;
* each series (the patient's scans on the whole-volume path, each target lesion's scans on
  the target-lesion path) is checked by :func:`mkunet.qc.check_series` (:func:`quality_step`)
  from the per-scan volumes, days, σ(ln V), found / not found and, where the lesion was tracked
  by registration, its centre in the baseline's frame (:func:`tracked_centres`); the tracked
  point's error is taken as the largest voxel edge of the patient's scans (the registration
  does not report its own, and neither a mapped point nor a centroid is resolved below a voxel).

A scan is ``review`` when its own checks or its series' checks name it. The rows get ``qc``
(``ok`` | ``review``), ``qc_reasons`` (the messages, ``"; "``-joined) and ``qc_codes``
(:data:`mkunet.qc.SCAN_CODES`, :data:`mkunet.qc.SERIES_CODES`). In target-lesion runs a
patient's scan row (the sum of its lesions) carries its lesions' reasons, each prefixed by
``lesion <id>:``. An unreadable or unmeasured scan has ``qc`` ``review`` and code
``not_measured``. The person's decisions (``qc_overrides.csv``) are applied later, at the
statistics step (:mod:`mkunet.run.overrides`), so they never touch the cache.

Units: days, cm³, mm. Points (x, y, z) mm LPS; arrays (z, y, x).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mkunet.qc import QCParams, QCReason, QCResult, check_segmentation, check_series
from mkunet.run.patient import PatientWork
from mkunet.utils import is_missing
from mkunet.volume import Volume

__all__ = [
    "QC_COLUMNS",
    "scan_envelope",
    "check_scan",
    "tracked_centres",
    "qc_fields",
    "whole_volume_quality_step",
    "lesion_quality_step",
    "quality_step",
]

logger = logging.getLogger(__name__)

QC_COLUMNS = ("qc", "qc_reasons", "qc_codes")
"""Columns the quality control adds to results.csv, lesion_results.csv and patients.csv."""

_NOT_MEASURED = "not_measured"


def scan_envelope(volume: Volume, params: QCParams | None = None) -> np.ndarray | None:
    """The lungs' envelope of one scan (bool (z, y, x)), computed once and shared by its lesions; None when it fails."""
    from mkunet.qc import lung_envelope

    p = params or QCParams()
    try:
        return lung_envelope(volume, closing_mm=p.lung_closing_mm, fill=p.lung_fill)
    except Exception:  # noqa: BLE001 - the check then computes it itself (or reports its failure)
        logger.exception("lung envelope failed")
        return None


def check_scan(seg: Any, envelope: np.ndarray | None, click_mm: Sequence[float] | None = None) -> QCResult:
    """:func:`mkunet.qc.check_segmentation` of one segmentation; a failure of the checks is itself a reason."""
    try:
        return check_segmentation(seg, click_mm=click_mm, lung_envelope=envelope)
    except Exception as err:  # noqa: BLE001 - a failed check means a person should look
        logger.exception("quality checks failed")
        return QCResult.from_reasons([QCReason("qc_failed", f"The quality checks could not run: {err}.")])


def tracked_centres(segs: Sequence[Any], tracked: Sequence[Any]) -> list[np.ndarray | None] | None:
    """Each scan's lesion centre (x, y, z) mm in the baseline's frame, from the tracking's registration.

    The follow-up's mask centroid is compared with the tracked point (the baseline lesion's core
    mapped into the follow-up); that offset, added to the baseline's own centroid-to-core offset,
    places the follow-up's centre in the baseline's frame (the registration is taken as locally
    a translation). None when no follow-up was tracked by registration.
    """
    if not segs or segs[0].empty or segs[0].lesion is None:
        return None
    base = segs[0]
    core0 = base.volume.index_to_physical(np.asarray(base.lesion.core_zyx, np.float64))
    out: list[np.ndarray | None] = [_centroid(base)]
    any_tracked = False
    for j in range(1, len(segs)):
        t = tracked[j] if j < len(tracked) else None
        if t is None or getattr(t, "registration", "none") == "none" or segs[j].empty:
            out.append(None)
            continue
        any_tracked = True
        out.append(core0 + (_centroid(segs[j]) - np.asarray(t.point_xyz, np.float64)))
    return out if any_tracked else None


def _centroid(seg: Any) -> np.ndarray:
    return seg.volume.index_to_physical(np.argwhere(seg.mask).mean(axis=0))


def qc_fields(result: QCResult) -> dict[str, str]:
    """A row's ``qc``, ``qc_reasons`` and ``qc_codes``."""
    return {"qc": result.status, "qc_reasons": result.describe(), "qc_codes": ",".join(dict.fromkeys(result.codes))}


def _series_check(rows: Sequence[Mapping[str, Any]], centres: list[Any] | None, error_mm: float) -> QCResult:
    """:func:`mkunet.qc.check_series` over the measured rows (status ok or empty), in order; ``error_mm``: the
    tracked centres' error (mm)."""
    days = [float(r["days"]) for r in rows]
    vols = [float(r.get("volume_cm3") or 0.0) if r["status"] == "ok" else 0.0 for r in rows]
    sigmas = [None if is_missing(r.get("sigma_log_volume_seg")) else float(r["sigma_log_volume_seg"]) for r in rows]
    try:
        return check_series(
            days,
            vols,
            sigmas=sigmas,
            centres_mm=centres,
            registration_error_mm=error_mm,
            found=[r["status"] == "ok" for r in rows],
        )
    except ValueError as err:
        return QCResult.from_reasons([QCReason("qc_failed", f"The series checks could not run: {err}.")])


def _label(
    rows: Sequence[dict[str, Any]], scan_results: Mapping[int, QCResult], centres: Any, error_mm: float = 0.0
) -> None:
    """Each row's QC: its own checks merged with its series' reasons that name it (rows: one series, in order)."""
    measured = [r for r in rows if r["status"] in ("ok", "empty")]
    if centres is not None:
        keep = {id(r) for r in measured}
        centres = [c for r, c in zip(rows, centres) if id(r) in keep]
    series = _series_check(measured, centres, error_mm) if measured else QCResult()
    position = {id(r): k for k, r in enumerate(measured)}
    for r in rows:
        if id(r) not in position:
            why = r.get("notes") or "see errors.csv"
            res = QCResult.from_reasons(
                [QCReason(_NOT_MEASURED, f"This scan could not be measured ({r['status']}: {why}).")]
            )
        else:
            res = scan_results.get(r["timepoint"], QCResult()).merge(series.at(position[id(r)]))
        r.update(qc_fields(res))


def whole_volume_quality_step(work: PatientWork, longi: Any) -> None:
    """Whole-volume path: each readable scan's segmentation checked, then the series (:func:`quality_step`)."""
    scans: dict[tuple[str | None, int], QCResult] = {}
    for s, vol, seg in zip(work.readable, work.volumes, longi.segmentations):
        scans[(None, s.timepoint)] = check_scan(seg, scan_envelope(vol))
    quality_step(work, scans, {None: tracked_centres(longi.segmentations, longi.tracked)})


def lesion_quality_step(work: PatientWork, lesions: Sequence[Any], segs: Mapping[str, Any]) -> None:
    """Target-lesion path: each lesion on each readable scan checked (the click on its own scan; one lung
    envelope per scan for all its lesions), then each lesion's series (:func:`quality_step`)."""
    envelopes: dict[int, np.ndarray | None] = {}
    scans: dict[tuple[str | None, int], QCResult] = {}
    centres: dict[str | None, Any] = {}
    for les in lesions:
        longi = segs.get(les.lesion_id)
        if longi is None:
            continue
        for j, (s, seg) in enumerate(zip(work.readable, longi.segmentations)):
            if j not in envelopes:
                envelopes[j] = scan_envelope(work.volumes[j])
            click = les.point_xyz_mm if s.timepoint == les.timepoint else None
            scans[(les.lesion_id, s.timepoint)] = check_scan(seg, envelopes[j], click)
        centres[les.lesion_id] = tracked_centres(longi.segmentations, longi.tracked)
    quality_step(work, scans, centres)


def quality_step(
    work: PatientWork,
    scan_results: Mapping[tuple[str | None, int], QCResult],
    centres: Mapping[str | None, Any],
) -> None:
    """QC columns on every row of the patient (scan rows, and lesion rows in target-lesion mode).

    Args:
        work: the patient, measured (rows with ``status``, ``days``, ``volume_cm3``).
        scan_results: (lesion id, or None on the whole-volume path; timepoint) -> the scan's
            :func:`check_scan`.
        centres: lesion id (or None) -> :func:`tracked_centres` per readable scan, or None.

    Also sets ``work.patient``'s QC columns and each overlay's ``qc`` and ``qc_reasons`` (for the slice viewer).
    """
    error_mm = max((max(v.spacing) for v in work.volumes), default=0.0)
    if work.lesion_rows:
        for lesion_id in dict.fromkeys(r["lesion_id"] for r in work.lesion_rows):
            rows = [r for r in work.lesion_rows if r["lesion_id"] == lesion_id]
            scans = {tp: res for (lid, tp), res in scan_results.items() if lid == lesion_id}
            _label(rows, scans, _per_row(rows, work, centres.get(lesion_id)), error_mm)
        for row in work.rows:
            _combine_lesion_qc(row, [r for r in work.lesion_rows if r["timepoint"] == row["timepoint"]])
    else:
        scans = {tp: res for (lid, tp), res in scan_results.items() if lid is None}
        _label(work.rows, scans, _per_row(work.rows, work, centres.get(None)), error_mm)
    flagged = [r for r in work.rows if r.get("qc") == "review"]
    work.patient.update(
        qc="review" if flagged else "ok",
        qc_reasons="; ".join(f"T{r['timepoint']}: {r['qc_reasons']}" for r in flagged),
        qc_codes=",".join(dict.fromkeys(c for r in flagged for c in str(r.get("qc_codes") or "").split(",") if c)),
    )
    by_tp = work.by_tp
    for o in work.overlays:
        row = by_tp.get(int(o.get("timepoint", -1)), {})
        o["qc"], o["qc_reasons"] = row.get("qc", ""), row.get("qc_reasons", "")


def _per_row(rows: Sequence[Mapping[str, Any]], work: PatientWork, centres: Any) -> list[Any] | None:
    """Centres per row (rows cover every scan; centres cover the readable ones)."""
    if centres is None:
        return None
    by_tp = {s.timepoint: c for s, c in zip(work.readable, centres)}
    return [by_tp.get(r["timepoint"]) for r in rows]


def _combine_lesion_qc(row: dict[str, Any], lesion_rows: Sequence[Mapping[str, Any]]) -> None:
    """A patient's scan row (sum of target lesions) carries its lesions' reasons, each prefixed by the lesion."""
    flagged = [r for r in lesion_rows if r.get("qc") == "review"]
    if not lesion_rows:
        why = row.get("notes") or "see errors.csv"
        row.update(qc="review", qc_reasons=f"This scan could not be measured ({why}).", qc_codes=_NOT_MEASURED)
        return
    row.update(
        qc="review" if flagged else "ok",
        qc_reasons="; ".join(f"lesion {r['lesion_id']}: {r['qc_reasons']}" for r in flagged),
        qc_codes=",".join(dict.fromkeys(c for r in flagged for c in str(r.get("qc_codes") or "").split(",") if c)),
    )
