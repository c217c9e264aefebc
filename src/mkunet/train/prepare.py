"""The cases a training run learns from: scans resampled, preprocessed and cached in memory.

:func:`prepare_data` loads the training and validation scans of the split, resamples them to
the target spacing (z, y, x) mm, computes each patient's LVCR from the ground-truth masks (the
one LVCR definition, :func:`mkunet.analysis.kinetics.lvcr_from_masks`'s mesh volumes), fits the
preprocessing and the clinical encoder on the training patients (or restores them on resume)
and returns :class:`TrainData`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mkunet.train.config import TrainConfig
from mkunet.train.data import PreparedCase, ScanRecord, load_scan, patient_lvcr, read_clinical
from mkunet.train.ddp import Dist

__all__ = ["LVCR_INDEX", "TrainData", "prepare_data", "prepare_case_from_resampled"]

LVCR_INDEX = 5
"""Index of the LVCR in the encoded clinical vector."""


@dataclass
class TrainData:
    """What :func:`prepare_data` prepared: the fitted (or restored) preprocessing and the cases."""

    preprocessor: Any
    encoder: Any
    default_clinical: np.ndarray | None
    train_cases: list[PreparedCase]
    val_cases: list[PreparedCase]
    real_cases: list[PreparedCase] = field(default_factory=list)


def prepare_data(
    config: TrainConfig,
    run_dir: Path,
    records: Sequence[ScanRecord],
    split: dict[str, Any],
    needs_clinical: bool,
    dist: Dist,
) -> TrainData:
    """Load the train / val scans, resample them, fit (or restore) the preprocessing and prepare the cases.

    Only the resampled copies stay in memory; each is released once preprocessed.
    """
    from mkunet.models.bundle import ModelBundle
    from mkunet.preprocess import AdaptiveWindow, Preprocessor

    data_dir = Path(config.data)
    train_ids, val_ids = set(split["train"]), set(split["val"])
    wanted = [r for r in records if r.patient_id in train_ids | val_ids]
    resampled, lvcrs = _load_resampled(wanted, config.target_spacing)

    # preprocessor + clinical encoder: fitted on the training split, or restored on resume
    train_keys = [r.key for r in wanted if r.patient_id in train_ids]
    encoder, default_clinical = None, None
    if config.resume:
        restored = ModelBundle.load(run_dir / "last")
        preprocessor, encoder, default_clinical = (
            restored.preprocessor,
            restored.clinical_encoder,
            restored.default_clinical,
        )
    else:
        window = AdaptiveWindow(k=config.window_k, mode=config.window_mode) if config.adaptive_window else None
        preprocessor = Preprocessor(channels=config.channels, adaptive_window=window)
        preprocessor.fit([resampled[k][0] for k in train_keys], [resampled[k][1] for k in train_keys])
        if needs_clinical:
            encoder, default_clinical = _fit_clinical_encoder(data_dir, sorted(train_ids), lvcrs)
    vectors = _clinical_vectors(config, sorted(lvcrs), lvcrs, encoder, default_clinical) if needs_clinical else {}
    cases: dict[str, PreparedCase] = {}
    for rec in wanted:  # preprocess one by one, releasing each resampled volume
        margin = config.crop_margin_mm if rec.patient_id in train_ids else None
        cases[rec.key] = prepare_case_from_resampled(
            rec,
            resampled.pop(rec.key),
            preprocessor,
            vectors.get(rec.patient_id),
            lvcrs.get(rec.patient_id),
            crop_margin_mm=margin,
            spacing=config.target_spacing,
            lung_samples=config.lung_fraction > 0 and rec.patient_id in train_ids,
        )
    train_cases = [cases[r.key] for r in wanted if r.patient_id in train_ids]
    val_cases = [cases[r.key] for r in wanted if r.patient_id in val_ids]
    if not train_cases:
        raise ValueError(f"The training split of '{data_dir}' is empty; lower --val-fraction / test fraction.")
    if not val_cases and dist.main:
        warnings.warn("No validation patients: the 'best' checkpoint is chosen by training loss.", stacklevel=4)
    real_cases = _real_cases(config, preprocessor, default_clinical if needs_clinical else None)
    return TrainData(preprocessor, encoder, default_clinical, train_cases, val_cases, real_cases)


def _load_resampled(
    records: Sequence[ScanRecord], spacing: Sequence[float]
) -> tuple[dict[str, tuple[Any, np.ndarray]], dict[str, float | None]]:
    """(scan key -> (volume, mask) resampled to ``spacing`` (z, y, x) mm, patient -> LVCR (/day) from the masks).

    The LVCR uses the one volume measure (mesh volume, :func:`mkunet.analysis.kinetics.mask_volume_cm3`),
    as inference and the pipeline do; an empty mask is warned about (a tumour-free case).
    """
    from mkunet.analysis.kinetics import mask_volume_cm3

    resampled: dict[str, tuple[Any, np.ndarray]] = {}
    by_patient: dict[str, list[tuple[ScanRecord, float]]] = {}
    for rec in records:
        volume, mask = load_scan(rec)
        if not mask.any():
            warnings.warn(f"Scan {rec.key}: the tumour mask is empty; used as a tumour-free case.", stacklevel=5)
        by_patient.setdefault(rec.patient_id, []).append((rec, mask_volume_cm3(mask, volume.spacing)))
        resampled[rec.key] = resampled_pair(volume, mask, spacing)
        del volume, mask
    lvcrs = {
        pid: patient_lvcr([r.days for r, _ in rows], [v for _, v in rows], pid) for pid, rows in by_patient.items()
    }
    return resampled, lvcrs


def _real_cases(config: TrainConfig, preprocessor: Any, clinical: np.ndarray | None) -> list[PreparedCase]:
    """The inserted-tumour cases on real backgrounds (:mod:`mkunet.train.real`); none without ``real_backgrounds``."""
    if not config.real_backgrounds:
        return []
    from mkunet.train.data import read_backgrounds
    from mkunet.train.real import prepare_real_cases

    return prepare_real_cases(
        read_backgrounds(config.real_backgrounds),
        preprocessor,
        config.target_spacing,
        config.seed,
        cases_per_background=config.real_cases_per_background,
        max_tumours=config.real_max_tumours,
        clinical=clinical,
    )


def _fit_clinical_encoder(
    data_dir: Path, train_patients: Sequence[str], lvcrs: dict[str, float | None]
) -> tuple[Any, np.ndarray]:
    """The clinical encoder fitted on the training patients, and the median encoded vector (the default)."""
    from mkunet.models.clinical import ClinicalEncoder

    frame = _clinical_frame(train_patients, read_clinical(data_dir, required=True), lvcrs)
    if frame["lvcr"].isna().all():
        warnings.warn(
            "No training patient has two or more scans: LVCR cannot be computed and is set to 0 /day "
            "for the encoder fit (the LVCR input carries no information).",
            stacklevel=5,
        )
        frame["lvcr"] = 0.0
    encoder = ClinicalEncoder().fit(frame)
    encoded = np.asarray(encoder.transform(frame), dtype=np.float32)
    return encoder, np.median(encoded, axis=0).astype(np.float32)


def _clinical_vectors(
    config: TrainConfig,
    patients: Sequence[str],
    lvcrs: dict[str, float | None],
    encoder: Any,
    default_clinical: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Encoded clinical vector per patient (LVCR replaced by the training median when ``use_lvcr`` is off)."""
    frame = _clinical_frame(patients, read_clinical(Path(config.data), required=True), lvcrs)
    encoded = np.asarray(encoder.transform(frame), dtype=np.float32)
    vectors = {}
    if not config.use_lvcr and default_clinical is None:
        raise ValueError("use_lvcr=False needs the training median of the clinical vectors (default_clinical).")
    for pid, vec in zip(patients, encoded, strict=True):
        if not config.use_lvcr and default_clinical is not None:
            vec = vec.copy()
            vec[LVCR_INDEX] = default_clinical[LVCR_INDEX]
        vectors[pid] = vec
    return vectors


def resampled_pair(volume: Any, mask: np.ndarray, spacing: Sequence[float]) -> tuple[Any, np.ndarray]:
    """``volume`` resampled (linear) to ``spacing`` (z, y, x) mm and ``mask`` onto it (linear on 0/1, >= 0.5)."""
    from mkunet.models.bundle import resample_onto
    from mkunet.preprocess import resample

    if np.allclose(volume.spacing, spacing, atol=1e-4):
        return volume, mask
    out = resample(volume, tuple(spacing))
    return out, resample_onto(mask.astype(np.float32), volume, out, "linear") >= 0.5


def _clinical_frame(patients: Sequence[str], table: Any, lvcrs: dict[str, float | None]) -> Any:
    """The clinical rows of ``patients`` (a DataFrame indexed by patient) with their LVCR (/day)."""
    import pandas as pd

    rows = []
    for pid in patients:
        if pid not in table.index:
            raise ValueError(f"Patient {pid!r} has scans but no row in clinical.csv; add one.")
        row = {c: table.loc[pid, c] for c in ("age", "sex", "smoking", "grade", "stage")}
        row["lvcr"] = lvcrs.get(pid)
        row["patient_id"] = pid
        rows.append(row)
    return pd.DataFrame(rows, index=list(patients))


def prepare_case_from_resampled(
    record: ScanRecord,
    resampled: tuple[Any, np.ndarray],
    preprocessor: Any,
    clinical: np.ndarray | None,
    lvcr: float | None,
    crop_margin_mm: float | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    lung_samples: bool = False,
) -> PreparedCase:
    """Preprocess an already resampled (volume, mask) pair into a cached case.

    With ``crop_margin_mm``, only the tumour's bounding box grown by that margin (mm, at
    ``spacing`` (z, y, x)) is kept, after preprocessing the whole scan. With
    ``lung_samples``, every 4th non-tumour voxel of the lung region (found on the whole
    scan, :func:`mkunet.segmentation.lung.lung_region`) is stored for hard-negative patches.
    """
    from mkunet.segmentation.lung import lung_region

    volume, label = resampled
    channels = np.asarray(preprocessor(volume), dtype=np.float32)
    label = np.asarray(label, dtype=bool)
    region = lung_region(volume.array, volume.spacing) & ~label if lung_samples else None
    if crop_margin_mm is not None and label.any():
        from scipy import ndimage

        pad = [int(math.ceil(crop_margin_mm / s)) for s in spacing]
        box = tuple(  # bounding box of the tumour grown by the margin (clipped)
            slice(max(0, s.start - p), min(n, s.stop + p))
            for s, p, n in zip(ndimage.find_objects(label.view(np.uint8))[0], pad, label.shape)
        )
        channels = np.ascontiguousarray(channels[(slice(None), *box)])
        label = np.ascontiguousarray(label[box])
        region = None if region is None else region[box]
    lung = np.zeros(0, np.int64) if region is None else np.flatnonzero(region)[::4].astype(np.int64)
    return PreparedCase(record, channels, label, clinical, np.flatnonzero(label).astype(np.int64), lvcr, lung)
