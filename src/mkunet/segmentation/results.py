"""Results of segmentation and how they are written.

* :class:`Segmentation` (one scan, :func:`mkunet.segmentation.infer.segment`) and
  :class:`LongitudinalSegmentation` (one patient's timepoints,
  :func:`mkunet.segmentation.infer.segment_timepoints`);
* :func:`save_segmentation` (NIfTI mask, probability and sidecar, DICOM SEG, RTSTRUCT),
  :func:`segmentation_summary` (the sidecar's content), :func:`check_formats` and
  :func:`is_dicom_volume` (which outputs an input allows).

Axis conventions: arrays (z, y, x) on the input volume's grid; spacings (z, y, x) in mm.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mkunet.segmentation.lesion import LesionResult
from mkunet.segmentation.uncertainty import VolumeUncertainty
from mkunet.utils import atomic_write_text, to_jsonable
from mkunet.volume import Volume

__all__ = [
    "Segmentation",
    "LongitudinalSegmentation",
    "FORMATS",
    "is_dicom_volume",
    "check_formats",
    "segmentation_summary",
    "save_segmentation",
]

FORMATS = ("nifti", "seg", "rtstruct")
"""Output formats :func:`save_segmentation` writes."""


@dataclass(eq=False)
class Segmentation:
    """The result of :func:`mkunet.segmentation.infer.segment`, on the input volume's grid.

    Attributes:
        mask: bool (z, y, x), the tumour.
        probability: float32 (z, y, x) in [0, 1] (0 outside the ROI crop).
        volume: the input :class:`Volume`.
        attention: attention maps (float32 (z, y, x) in [0, 1], one per gated skip,
            finest first as the model returns them), or None when not requested or
            the model has no gates.
        lvcr_used: the LVCR (per day) fed to the model, or None when the clinical
            encoder's default for an unknown LVCR was used (or the model takes no
            clinical input).
        roi: a description of the region of interest ("whole volume" when none).
        roi_box: the crop actually run, ((z0, z1), (y0, y1), (x0, x1)) voxels, half-open.
        threshold: the probability threshold applied.
        empty: True when no tumour was found.
        notes: what the user should know (imputations, empty result, ...).
        timings: seconds per step.
        method: what made the mask: ``"image"`` (the lesion model of :mod:`mkunet.segmentation.lesion`,
            what ``method="auto"`` runs) or ``"network"``.
        lesion: the image model's details (HU iso-level, lesion kind, crop), None for the network.
        touches_roi_edge: the kept tumour reaches a face of the crop that is not the scan's border.
        uncertainty: the volume's segmentation uncertainty (:mod:`mkunet.segmentation.uncertainty`: σ(ln V), SE in
            cm³), None when switched off (``uncertainty="off"``) or the mask is empty.
        candidates: whole-volume runs: the ranked candidates (:class:`mkunet.segmentation.candidates.Candidate`,
            best first). Detection (the default): the image detector's candidates, the mask being
            the lesion at the first reportable one that gave a lesion (``roi`` names it); network:
            its connected components (the first is the kept mask when the lung prior is on).
            Empty for runs with a region of interest.
    """

    mask: np.ndarray
    probability: np.ndarray
    volume: Volume
    attention: list[np.ndarray] | None = None
    lvcr_used: float | None = None
    roi: str = "whole volume"
    roi_box: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None
    threshold: float = 0.5
    empty: bool = False
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    method: str = "network"
    lesion: LesionResult | None = None
    touches_roi_edge: bool = False
    uncertainty: VolumeUncertainty | None = None
    candidates: list[Any] = field(default_factory=list)

    @property
    def voxel_volume_cm3(self) -> float:
        """Tumour volume in cm^3 by voxel counting: n voxels x voxel volume / 1000.

        Not the mesh volume of :func:`mkunet.analysis.kinetics.mask_volume_cm3` (the LVCR's and
        ``results.csv``'s ``volume_cm3``), which is a little smaller on the same mask.
        """
        return float(np.count_nonzero(self.mask)) * self.volume.voxel_volume_mm3 / 1000.0

    @property
    def volume_cm3(self) -> float:
        """Deprecated name of :attr:`voxel_volume_cm3` (voxel counting)."""
        warnings.warn(
            "Segmentation.volume_cm3 is deprecated: use Segmentation.voxel_volume_cm3 (voxel counting; the mesh "
            "volume is mkunet.analysis.kinetics.mask_volume_cm3).",
            FutureWarning,
            stacklevel=2,
        )
        return self.voxel_volume_cm3

    def __repr__(self) -> str:
        return (
            f"Segmentation(voxel_volume_cm3={self.voxel_volume_cm3:.3f}, empty={self.empty}, roi={self.roi!r}, "
            f"lvcr_used={self.lvcr_used}, notes={self.notes})"
        )


@dataclass(eq=False)
class LongitudinalSegmentation:
    """The result of :func:`mkunet.segmentation.infer.segment_timepoints`.

    Attributes:
        segmentations: one :class:`Segmentation` per timepoint, input order.
        days: the scan times (days since the first scan).
        lvcr_per_day: the final LVCR estimate (per day), None when it could not be
            estimated (fewer than two timepoints, an empty segmentation) or was given.
        converged: True when the last change was below ``tol``.
        trace: one dict per segmentation pass: ``iteration`` (0 = LVCR unknown),
            ``lvcr_in`` (per day, None for unknown), ``volumes_cm3``, ``lvcr_out``
            (per day, estimated from those volumes) and ``change`` (|lvcr_out - lvcr_in|).
        notes: what the user should know.
        tracked: one :class:`mkunet.segmentation.tracking.TrackedLesion` per timepoint (None where the lesion was not
            tracked from the baseline, e.g. the baseline itself).
    """

    segmentations: list[Segmentation]
    days: list[float]
    lvcr_per_day: float | None
    converged: bool
    trace: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    tracked: list[Any] = field(default_factory=list)

    @property
    def iterations(self) -> int:
        """Number of segmentation passes run over all timepoints."""
        return len(self.trace)


def is_dicom_volume(volume: Volume) -> bool:
    """True when ``volume`` was read from a DICOM series (needed by the SEG / RTSTRUCT writers)."""
    return (
        bool(volume.source)
        and volume.series_uid is not None
        and all(not str(p).lower().endswith((".nii", ".nii.gz", ".nrrd", ".nhdr")) for p in volume.source)
    )


def check_formats(formats: Sequence[str], volume: Volume) -> tuple[str, ...]:
    """Validate output formats for ``volume``; DICOM outputs need a DICOM input.

    Raises:
        ValueError: unknown format, or ``seg``/``rtstruct`` for a non-DICOM input.
    """
    fmts = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise ValueError(f"Unknown output format(s) {bad}: choose from {', '.join(FORMATS)}.")
    dicom = [f for f in fmts if f in ("seg", "rtstruct")]
    if dicom and not is_dicom_volume(volume):
        src = volume.source[0] if volume.source else "an in-memory volume"
        raise ValueError(
            f"Output format(s) {', '.join(dicom)} need a DICOM input series (they reference its files), but the "
            f"input is '{src}'. Use --formats nifti, or give the DICOM folder."
        )
    return fmts


def segmentation_summary(segmentation: Segmentation) -> dict[str, Any]:
    """What the NIfTI sidecar (``mask.json``) records of a segmentation.

    Keys: ``volume_cm3`` (voxel counting), ``volume_se_cm3`` and ``sigma_log_volume_seg`` (the
    segmentation uncertainty, None when switched off or empty), ``uncertainty_components``
    (σ(ln V) per component), ``method``, ``roi``, ``roi_box`` ((z0, z1), (y0, y1), (x0, x1) voxels),
    ``threshold``, ``empty``, ``notes``, ``seconds``; with the image model also ``edge_hu``,
    ``lesion_hu``, ``lung_hu`` and ``lesion_kind``.
    """
    u = segmentation.uncertainty
    out: dict[str, Any] = {
        "volume_cm3": segmentation.voxel_volume_cm3,
        "volume_se_cm3": None if u is None else u.se_cm3,
        "sigma_log_volume_seg": None if u is None else u.sigma_log_volume,
        "uncertainty_components": None if u is None else dict(u.components),
        "method": segmentation.method,
        "roi": segmentation.roi,
        "roi_box": segmentation.roi_box,
        "threshold": segmentation.threshold,
        "empty": segmentation.empty,
        "notes": list(segmentation.notes) + ([] if u is None else list(u.notes)),
        "seconds": segmentation.timings.get("total"),
    }
    les = segmentation.lesion
    if les is not None:
        out.update(edge_hu=les.threshold_hu, lesion_hu=les.hu_lesion, lung_hu=les.hu_lung, lesion_kind=les.kind)
    return out


def save_segmentation(
    segmentation: Segmentation,
    out_dir: str | Path,
    formats: Sequence[str] = ("nifti",),
    *,
    attention: bool = False,
    label: str = "GTV",
) -> dict[str, Path]:
    """Write a segmentation on its input grid.

    Files: ``mask.nii.gz`` (uint8), ``probability.nii.gz`` (float32) and the sidecar
    ``mask.json`` (:func:`segmentation_summary`: volume, its segmentation SE and σ(ln V), method,
    region, notes) for ``nifti``; ``seg.dcm`` (DICOM SEG) for ``seg``; ``rtstruct.dcm`` for
    ``rtstruct``; ``attention_<k>.nii.gz`` (float32, k = 0, 1, ...) when
    ``attention`` and maps exist; ``candidates.csv`` (:func:`mkunet.segmentation.candidates.write_candidates`)
    when the segmentation lists candidates (whole-volume runs).

    Returns:
        dict name -> path of every file written.
    """
    from mkunet.io import write_mask, write_volume

    fmts = check_formats(formats, segmentation.volume)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vol = segmentation.volume
    written: dict[str, Path] = {}
    if "nifti" in fmts:
        written["mask"] = write_mask(segmentation.mask, vol, out / "mask.nii.gz")
        written["probability"] = write_volume(vol, out / "probability.nii.gz", segmentation.probability)
        written["sidecar"] = atomic_write_text(
            out / "mask.json", json.dumps(to_jsonable(segmentation_summary(segmentation)), indent=1)
        )
    if "seg" in fmts:
        from mkunet.io.dicom_out import write_seg

        written["seg"] = Path(write_seg(segmentation.mask, vol, out / "seg.dcm", segment_label=label))
    if "rtstruct" in fmts:
        from mkunet.io.dicom_out import write_rtstruct

        written["rtstruct"] = Path(write_rtstruct(segmentation.mask, vol, out / "rtstruct.dcm", roi_name=label))
    if segmentation.candidates:
        from mkunet.segmentation.candidates import write_candidates

        written["candidates"] = write_candidates(segmentation.candidates, out / "candidates.csv")
    if attention and segmentation.attention:
        for k, amap in enumerate(segmentation.attention):
            written[f"attention_{k}"] = write_volume(vol, out / f"attention_{k}.nii.gz", amap)
    return written
