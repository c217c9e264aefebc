"""Target lesions: each lesion segmented on its own, the patient's volume the sum of its target lesions.

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

Steps (:func:`mkunet.run.pipeline.run_cohort` calls them in place of the whole-volume ones of
:mod:`mkunet.run.patient`): :func:`segment_lesions_step` -> :func:`measure_lesions_step` (each
lesion, then their combination per scan) -> :func:`mkunet.run.patient.kinetics_step` (on the
sums) -> :func:`lesion_kinetics_step`. :func:`lesion_table` builds ``lesion_results.csv``.

Units: days, cm^3, mm, HU, per day. Points (x, y, z) mm LPS; arrays (z, y, x).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mkunet.run.inputs import (
    ScanInput,
    TargetLesion,
    check_lesions,
    lesion_folder_name,
    read_lesions,
)
from mkunet.run.patient import (
    PatientWork,
    lvcr_source,
    measure_features,
    outputs_fields,
    reference_step,
    rows_lvcr,
    segment_readable,
    uncertainty_fields,
    write_outputs,
)
from mkunet.utils import is_missing, to_jsonable
from mkunet.volume import Volume

__all__ = [
    "lesions_by_patient",
    "segment_lesions_step",
    "measure_lesions_step",
    "lesion_kinetics_step",
    "LESION_TABLE_COLUMNS",
    "lesion_table",
    "label_volume_definition",
]

logger = logging.getLogger(__name__)


def lesions_by_patient(
    lesions: str | Path | Sequence[TargetLesion] | None,
    scans: Mapping[str, Sequence[ScanInput]],
    params: Mapping[str, Any],
) -> dict[str, list[TargetLesion]] | None:
    """The run's target lesions per patient (None without --lesions), checked against the cohort.

    Raises:
        ValueError: a bad lesions table (:func:`read_lesions`), ``--roi`` other than previous-mask, or
            two lesion ids of a patient that map to the same folder name.
    """
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


def segment_lesions_step(
    work: PatientWork, bundle: Any, clinical: dict[str, Any] | None, lesions: Sequence[TargetLesion]
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
            longi = segment_readable(work, bundle, clinical, rois, previous_mask_roi=True)
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
        lvcr_source=lvcr_source(clinical, done) if done else "no lesion segmented",
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


#: Features that add up over disjoint lesions (summed in target-lesion mode); the others are the largest lesion's.
_ADDITIVE = ("volume_cm3", "mesh_volume_mm3", "n_voxels", "surface_area_mm2")

_Part = tuple[TargetLesion, Any, dict[str, Any], dict[str, Any] | None]
"""One lesion on one scan: (lesion, its Segmentation, its lesion_results row, its features or None)."""


def _lesion_row(work: PatientWork, les: TargetLesion, s: ScanInput) -> dict[str, Any]:
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
    work: PatientWork, les: TargetLesion, s: ScanInput, vol: Volume, seg: Any, row: dict[str, Any]
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
        volume_voxels_cm3=seg.voxel_volume_cm3,
    )
    folder = work.stage_dir / f"T{s.timepoint}" / lesion_folder_name(les.lesion_id)
    written = write_outputs(work, s.timepoint, seg, vol, folder, label=f"GTV {les.lesion_id}"[:64])
    row.update(outputs_fields(written, work.stage_dir))
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
        feats = measure_features(work, s.timepoint, seg.mask, vol, who=f"lesion {les.lesion_id!r}: ")
        if feats is None:
            row["status"] = "error"
        else:
            row.update(feats)
            row.update(uncertainty_fields(seg, row["volume_cm3"]))
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


def measure_lesions_step(work: PatientWork, lesions: Sequence[TargetLesion], segs: Mapping[str, Any]) -> None:
    """Target-lesion path: per scan, write and measure every lesion, then the combination (``T<k>/``)."""
    position = {s.timepoint: j for j, s in enumerate(work.readable)}
    by_tp = work.by_tp
    for s in work.scans:
        j = position.get(s.timepoint)
        parts: list[_Part] = []
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


def _combine_lesions(work: PatientWork, row: dict[str, Any], s: ScanInput, vol: Volume, parts: Sequence[_Part]) -> None:
    """The scan's row from its target lesions: volumes summed, shape and HU of the largest lesion.

    ``T<k>/`` gets the union of the lesion masks (mask, max probability, SEG / RTSTRUCT,
    max attention). Status: ``error`` when a segmented lesion could not be measured on this
    scan (or none was segmented), else ``ok`` when the sum > 0 and ``empty`` when it is 0.
    """
    combined, attention = _union(parts, vol)
    _check_overlaps(work, s.timepoint, parts, vol)
    written = write_outputs(work, s.timepoint, combined, vol, work.stage_dir / f"T{s.timepoint}", attention=attention)
    statuses = [lrow["status"] for _, _, lrow, _ in parts]
    row.update(
        outputs_fields(written, work.stage_dir),
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
        why = (
            "no target lesion was segmented"
            if not parts
            else "a target lesion could not be measured on this scan: the sum of target lesions is unknown"
        )
        row["notes"] = "; ".join(filter(None, [why, row["notes"]]))
    else:
        _sum_lesions(row, parts)
    row["empty"] = not combined.mask.any()
    row["volume_voxels_cm3"] = float(sum(seg.voxel_volume_cm3 for _, seg, _, _ in parts))
    reference_step(work, row, s, vol, combined.mask)
    work.overlays.append(
        {
            "volume": vol,
            "mask": combined.mask,
            "attention": attention,
            "label": f"T{s.timepoint}, day {s.days:g}",
            "volume_cm3": row.get("volume_cm3", 0.0),
            # for the slice viewer (viewer_step)
            "timepoint": s.timepoint,
            "days": s.days,
            "lesions": {les.lesion_id: seg.mask for les, seg, _, _ in parts},
            "lesion_volumes_cm3": {les.lesion_id: lrow.get("volume_cm3") for les, _, lrow, _ in parts},
            "probability": combined.probability,
            "tracked": False,
        }
    )


def _union(parts: Sequence[_Part], vol: Volume) -> tuple[Any, np.ndarray | None]:
    """The union of the lesions' segmentations on one scan, as a Segmentation (mask: union; probability:
    maximum; uncertainty: :func:`_sum_uncertainty`), and the maximum of their attention maps (None without)."""
    from mkunet.segmentation import infer

    union = np.zeros(vol.shape, bool)
    probability = np.zeros(vol.shape, np.float32)
    attention = None
    for _, seg, _, _ in parts:
        union |= seg.mask
        probability = np.maximum(probability, seg.probability)
        if seg.attention:
            attention = seg.attention[0] if attention is None else np.maximum(attention, seg.attention[0])
    combined = infer.Segmentation(
        mask=union,
        probability=probability,
        volume=vol,
        roi="target lesions " + ", ".join(les.lesion_id for les, *_ in parts),
        threshold=parts[0][1].threshold if parts else float("nan"),
        empty=not union.any(),
        uncertainty=_sum_uncertainty([seg for _, seg, _, _ in parts]),
    )
    return combined, attention


def _sum_lesions(row: dict[str, Any], parts: Sequence[_Part]) -> None:
    """A scan where every segmented lesion was measured: the largest lesion's shape and HU features,
    the additive features and the volume summed (its SE in quadrature), ``status`` ok (sum > 0) or empty."""
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


def _sum_uncertainty(segs: Sequence[Any]) -> Any:
    """The segmentation uncertainty of a sum of independent lesions (SEs in quadrature), for the
    scan's sidecar; None when a non-empty lesion has no estimate (switched off) or all are empty."""
    from mkunet.segmentation.uncertainty import VolumeUncertainty

    present = [seg for seg in segs if not seg.empty]
    if not present or any(seg.uncertainty is None for seg in present):
        return None
    total = float(sum(seg.uncertainty.voxel_volume_cm3 for seg in present))
    se = float(np.sqrt(sum(seg.uncertainty.se_cm3**2 for seg in present)))
    return VolumeUncertainty(
        voxel_volume_cm3=total,
        sigma_log_volume=se / total if total > 0 else 0.0,
        se_cm3=se,
        seconds=float(sum(seg.uncertainty.seconds for seg in present)),
    )


def _check_overlaps(work: PatientWork, timepoint: int, parts: Sequence[_Part], vol: Volume) -> None:
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


def lesion_kinetics_step(work: PatientWork, lesions: Sequence[TargetLesion]) -> None:
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
                res = rows_lvcr(ok, work.params, who)
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


def lesion_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``lesion_results.csv``: one row per patient x target lesion x scan, sorted, key columns first."""
    df = pd.DataFrame(list(rows))
    for c in LESION_TABLE_COLUMNS:
        if c not in df.columns:
            df[c] = pd.Series(dtype=object if c in ("patient_id", "lesion_id", "scan", "status") else float)
    df = df[LESION_TABLE_COLUMNS + [c for c in df.columns if c not in LESION_TABLE_COLUMNS]]
    if not df.empty:
        df = df.sort_values(["patient_id", "lesion_id", "timepoint"], kind="stable").reset_index(drop=True)
    return df


def label_volume_definition(results: pd.DataFrame, patients: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
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
