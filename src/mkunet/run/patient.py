"""One patient's steps on the whole-volume path: read -> segment -> measure -> kinetics -> figures.

Every timepoint is read (:func:`read_step`); :func:`mkunet.segmentation.infer.segment_timepoints`
segments them (:func:`segment_step`); per scan the outputs go to ``OUT/patients/<pid>/T<k>/``
and the shape and intensity features, the segmentation uncertainty and the Dice against a
reference mask are measured (:func:`measure_step`); LVCR with its 95 % CI, VDT and the response
categories follow (:func:`kinetics_step`); then ``overview.png`` (:func:`overview_step`) and
``viewer.json`` (:func:`viewer_step`). The steps work on a :class:`PatientWork`, which collects
the rows and the errors; the target-lesion path (:mod:`mkunet.run.lesions`) reuses it and the
helpers here (:func:`segment_readable`, :func:`write_outputs`, :func:`measure_features`,
:func:`reference_step`, :func:`rows_lvcr`). :func:`mkunet.run.pipeline.run_cohort` chains the
steps (``_process_patient``) into a staging folder.

Units: days, cm^3, mm, HU, per day. Arrays (z, y, x); spacing (z, y, x) mm.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mkunet.run.cache import hash_scans
from mkunet.run.inputs import ScanInput
from mkunet.utils import atomic_write_bytes, atomic_write_text, is_missing, to_jsonable
from mkunet.volume import Volume

__all__ = [
    "PatientWork",
    "error_row",
    "read_step",
    "segment_readable",
    "segment_step",
    "lvcr_source",
    "write_outputs",
    "measure_features",
    "reference_step",
    "outputs_fields",
    "uncertainty_fields",
    "measure_step",
    "rows_lvcr",
    "kinetics_step",
    "overview_step",
    "viewer_step",
]

logger = logging.getLogger(__name__)


def error_row(pid: str, timepoint: int | None, stage: str, err: Any, action: str) -> dict[str, Any]:
    """One ``errors.csv`` row (:data:`mkunet.run.store.ERROR_COLUMNS`); an exception other than a ValueError
    is prefixed with its type."""
    text = str(err).strip().replace("\n", " ")
    if isinstance(err, BaseException) and not isinstance(err, ValueError):
        text = f"{type(err).__name__}: {text}"
    return {"patient_id": pid, "timepoint": timepoint, "stage": stage, "error": text, "action": action}


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
class PatientWork:
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
        self.errors.append(error_row(self.pid, timepoint, stage, err, action))

    def record(self, usable: bool) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "patient": self.patient,
            "errors": self.errors,
            "usable": usable,
            "trace": self.trace,
            "lesion_rows": self.lesion_rows,
        }


def read_step(
    pid: str, scans: Sequence[ScanInput], params: Mapping[str, Any], stage_dir: Path, base_row: Mapping[str, Any]
) -> PatientWork:
    """Read every scan; an unreadable one gets ``status="error"`` and an errors row."""
    from mkunet.io import read_volume

    work = PatientWork(pid, scans, params, stage_dir)
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
            input_sha256=hash_scans([s], s.path),
            shape_zyx=json.dumps(list(vol.shape)),
            spacing_zyx_mm=json.dumps([round(v, 6) for v in vol.spacing]),
        )
        work.volumes.append(vol)
        work.readable.append(s)
    work.patient = {"patient_id": pid, "n_scans": len(scans), "n_scans_read": len(work.readable)}
    return work


def segment_readable(
    work: PatientWork,
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


def segment_step(work: PatientWork, bundle: Any, clinical: dict[str, Any] | None) -> Any:
    """Whole-volume path: one :func:`mkunet.segmentation.infer.segment_timepoints` call over the readable scans."""
    longi = segment_readable(work, bundle, clinical, None, work.params["roi"] == "previous-mask")
    given_lvcr = clinical is not None and clinical.get("lvcr") is not None
    work.patient.update(
        lvcr_source=lvcr_source(clinical, [longi]),
        lvcr_model_input_per_day=float(clinical["lvcr"]) if given_lvcr else longi.lvcr_per_day,
        fixed_point_converged=bool(longi.converged) if longi.trace else None,
        fixed_point_passes=len(longi.trace),
        fixed_point_trace=json.dumps(to_jsonable(longi.trace)),
        segmentation_notes="; ".join(dict.fromkeys(longi.notes)),
    )
    work.trace = longi.trace
    return longi


def lvcr_source(clinical: Mapping[str, Any] | None, longis: Sequence[Any]) -> str:
    """What LVCR the segmentation model was fed, in words (patients.csv ``lvcr_source``).

    ``longis``: the patient's :class:`mkunet.segmentation.results.LongitudinalSegmentation` (one per target lesion).
    """
    if clinical is not None and clinical.get("lvcr") is not None:
        return f"clinical.csv ({float(clinical['lvcr']):g} /day)"
    if any(longi.trace for longi in longis):
        return "fixed-point estimate" + (" per lesion" if len(longis) > 1 else "")
    segs = [seg for longi in longis for seg in longi.segmentations]
    if segs and all(seg.method == "image" for seg in segs):
        return "not used (the image lesion model takes no LVCR)"
    return "none: the model's default for an unknown LVCR"


def write_outputs(
    work: PatientWork,
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


def measure_features(
    work: PatientWork, timepoint: int, mask: np.ndarray, vol: Volume, who: str = ""
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


def reference_step(work: PatientWork, row: dict[str, Any], s: ScanInput, vol: Volume, mask: np.ndarray) -> None:
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


def outputs_fields(written: Mapping[str, Path], stage_dir: Path) -> dict[str, str]:
    """The row's ``outputs`` (JSON: kind -> path relative to the patient folder) and ``formats_written``."""
    return {
        "outputs": json.dumps({k: str(p.relative_to(stage_dir)) for k, p in written.items()}),
        "formats_written": ",".join(k for k in ("mask", "seg", "rtstruct", "attention") if k in written),
    }


def measure_step(work: PatientWork, longi: Any) -> None:
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
        written = write_outputs(work, s.timepoint, seg, vol, work.stage_dir / f"T{s.timepoint}", attention=att)
        row.update(outputs_fields(written, work.stage_dir))
        if not seg.empty:
            feats = measure_features(work, s.timepoint, seg.mask, vol)
            if feats is None:
                row["status"] = "error"
            else:
                row.update(feats)
                row.update(uncertainty_fields(seg, row["volume_cm3"]))
        row["volume_voxels_cm3"] = seg.voxel_volume_cm3
        reference_step(work, row, s, vol, seg.mask)
        work.overlays.append(
            {
                "volume": vol,
                "mask": seg.mask,
                "attention": att,
                "label": f"T{s.timepoint}, day {s.days:g}",
                "volume_cm3": row.get("volume_cm3", 0.0),
                # for the slice viewer (viewer_step)
                "timepoint": s.timepoint,
                "days": s.days,
                "lesions": {"GTV": seg.mask},
                "probability": seg.probability,
                "tracked": False,
            }
        )


def uncertainty_fields(seg: Any, volume_cm3: float) -> dict[str, Any]:
    """The row's segmentation-uncertainty columns (:class:`mkunet.segmentation.uncertainty.VolumeUncertainty`), the SE
    on the row's (mesh) volume: ``volume_se_cm3``, ``sigma_log_volume_seg``, ``sigma_edge``, ``sigma_click``,
    ``sigma_probability``, ``uncertainty_seconds``; none when switched off."""
    u = getattr(seg, "uncertainty", None)
    if u is None:
        return {}
    fields = u.as_dict()
    fields["volume_se_cm3"] = u.sigma_log_volume * float(volume_cm3)
    return fields


def rows_lvcr(rows: Sequence[Mapping[str, Any]], params: Mapping[str, Any], who: str) -> Any:
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


def kinetics_step(work: PatientWork) -> None:
    """LVCR / VDT on the scans with a tumour (``status="ok"``), response categories, baseline summary."""
    from mkunet.analysis import kinetics

    pid, patient, by_tp = work.pid, work.patient, work.by_tp
    ok = [by_tp[s.timepoint] for s in work.readable if by_tp[s.timepoint]["status"] == "ok"]
    seg_rows = [by_tp[s.timepoint] for s in work.readable if by_tp[s.timepoint]["status"] in ("ok", "empty")]
    if len(ok) >= 2:
        try:
            res = rows_lvcr(ok, work.params, pid)
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


def overview_step(work: PatientWork) -> None:
    """``overview.png``: axial overlays of every readable scan for the report."""
    from mkunet.report import figures

    try:
        png = figures.patient_overview(work.pid, work.overlays)
        atomic_write_bytes(work.stage_dir / "overview.png", png)
    except Exception as err:  # noqa: BLE001 - a figure never costs the results
        work.error(None, "figure", err, "no overlay figure in the report")


def viewer_step(work: PatientWork) -> None:
    """``viewer.json``: the slice viewer's payload (:func:`mkunet.report.viewer.viewer_payload`) for the report.

    The scans are cropped around the lesions while they are in memory; follow-ups that were
    tracked by registration are shown through the tracking's own registration (baseline -> scan;
    registered again with :func:`register_for_view` only where none was kept),
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
                qc=str(o.get("qc") or ""),
                qc_reasons=str(o.get("qc_reasons") or ""),
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
            tps = register_for_view(tps, which=redo)
        payload = viewer.viewer_payload(tps, patient_id=work.pid)
        atomic_write_text(work.stage_dir / "viewer.json", json.dumps(payload, separators=(",", ":")))
    except Exception as err:  # noqa: BLE001 - a viewer never costs the results
        logger.exception("patient %s: viewer failed", work.pid)
        work.error(None, "viewer", err, "no slice viewer for this patient in the report")


def register_for_view(timepoints: Sequence[Any], which: Sequence[bool]) -> list[Any]:
    """Copies of the viewer's ``timepoints`` whose follow-ups (where ``which``) carry a registration to the baseline.

    :func:`mkunet.segmentation.register.register` (global rigid + affine, then the local stage around the
    centroid of the baseline's masks, as the tracking of :func:`mkunet.segmentation.infer.segment_timepoints`
    runs it); the viewer only resamples through it. A follow-up whose registration fails keeps
    ``registration=None`` (shown "not registered") and gets a note.
    """
    from dataclasses import replace

    from mkunet.segmentation.register import register

    out = list(timepoints)
    if len(out) < 2:
        return out
    base = out[0]
    union = np.zeros(base.volume.shape, bool)
    for m in base.lesions.values():
        union |= np.asarray(m, dtype=bool)
    centre = base.volume.index_to_physical(np.argwhere(union).mean(axis=0)) if union.any() else None
    for j in range(1, len(out)):
        if not which[j]:
            continue
        try:
            reg = register(base.volume, out[j].volume, centre_xyz=centre)
        except Exception as err:  # noqa: BLE001 - the view falls back to scanner coordinates, labelled
            out[j] = replace(out[j], note="; ".join(filter(None, [out[j].note, f"registration failed: {err}"])))
            continue
        out[j] = replace(out[j], registration=reg)
    return out
