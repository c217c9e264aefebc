"""Longitudinal segmentation: following a lesion into later scans, and the fixed-point LVCR.

The steps of :func:`mkunet.segmentation.infer.segment_timepoints` (see there for the rules):

* :func:`follow_lesion`: map the baseline lesion's core into a follow-up scan by registration
  (:func:`mkunet.segmentation.register.register`) and find the seed there (or report the lesion
  as not found: :class:`TrackedLesion`); :func:`same_lesion`: is the object segmented there the
  tracked lesion rather than a vessel next to where it was;
* :class:`TimepointPasses`: one segmentation pass over a patient's timepoints (tracked seeds,
  previous-mask ROIs), registering each follow-up once for all passes;
* :func:`single_pass` and :func:`fixed_point`: the LVCR estimated from one pass, or by the
  fixed-point iteration when the network takes the LVCR as an input.

Axis conventions: arrays (z, y, x); spacings (z, y, x) in mm; points (x, y, z) in mm (DICOM LPS).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mkunet.constants import LUNG_HU
from mkunet.segmentation.lesion import LesionParams
from mkunet.segmentation.prompts import PreviousMask, Roi, Seed, seed_in_mask
from mkunet.segmentation.results import LongitudinalSegmentation, Segmentation
from mkunet.volume import Volume

__all__ = [
    "TRACKING",
    "TRACK_MIN_DEPTH_MM",
    "TRACK_MIN_DEPTH_FRACTION",
    "TrackedLesion",
    "follow_lesion",
    "same_lesion",
    "TimepointPasses",
    "single_pass",
    "fixed_point",
    "estimate_lvcr",
]

logger = logging.getLogger(__name__)

TRACKING = ("register", "none")
"""How :func:`segment_timepoints` follows a lesion clicked on the baseline into later scans."""

TRACK_MIN_DEPTH_MM = 1.0
TRACK_MIN_DEPTH_FRACTION = 0.3
"""A tracked lesion is found only where soft tissue at least this thick (mm; fraction of the
baseline lesion's inscribed radius) lies near its mapped position: a vessel is thinner."""


@dataclass(eq=False)
class TrackedLesion:
    """Where a baseline lesion was looked for in one follow-up scan.

    Attributes:
        point_xyz: the baseline lesion core mapped into the follow-up (x, y, z) mm.
        found: False when no lesion was found there (complete response, or lost).
        registration: kind of registration run (``"rigid+affine+local"``, ...), or ``"none"``.
        notes: what happened.
        result: the :class:`mkunet.segmentation.register.Registration` (baseline -> this scan) when one was run,
            else None (the slice viewer reuses it to show the same anatomy side by side).
    """

    point_xyz: np.ndarray
    found: bool
    registration: str
    notes: list[str] = field(default_factory=list)
    result: Any = None


def _core_mm(seg: Segmentation) -> np.ndarray:
    """The lesion's core (x, y, z) mm: the image model's core, else the mask's deepest voxel."""
    if seg.lesion is not None:
        return seg.volume.index_to_physical(seg.lesion.core_zyx)
    k = seed_in_mask(seg.volume, seg.mask, soft_hu=-np.inf)
    return seg.volume.index_to_physical(k if k is not None else np.argwhere(seg.mask).mean(0))


def follow_lesion(
    baseline: Segmentation, followup: Volume, *, tracking: str, params: LesionParams
) -> tuple[Seed | None, TrackedLesion, np.ndarray | None]:
    """Map the baseline lesion into ``followup``: (seed there or None, record, mapped baseline mask or None).

    The core is mapped by :func:`mkunet.segmentation.register.register` (global rigid + affine, then a
    local stage around the lesion). If the mapped point is not soft tissue (the lesion
    shrank, or a few mm of registration error on a small nodule), the seed moves to the
    deepest soft-tissue voxel within the baseline lesion's equivalent radius (+ 3 mm) of
    it; when there is none, or it is thinner than :data:`TRACK_MIN_DEPTH_FRACTION` x the
    baseline lesion's inscribed radius (a vessel crossing where the lesion was), the lesion
    is reported as not found.
    """
    from scipy import ndimage

    if baseline.empty or not baseline.mask.any():
        record = TrackedLesion(np.full(3, np.nan), False, "none", ["no lesion on the baseline scan to follow"])
        return None, record, None
    core = _core_mm(baseline)
    notes: list[str] = []
    mapped_mask = None
    reg = None
    if tracking == "register":
        from mkunet.segmentation.register import register

        reg = register(baseline.volume, followup, centre_xyz=core)
        point = np.asarray(reg.map_point(core), dtype=np.float64)
        kind = reg.kind
        notes.extend(reg.notes)
        mapped_mask = reg.map_mask(baseline.mask, baseline.volume, followup)
    else:
        point, kind = core.copy(), "none"
        if baseline.volume.frame_of_reference_uid != followup.frame_of_reference_uid:
            msg = (
                "the follow-up's FrameOfReferenceUID differs from the baseline's and no registration was done "
                "(tracking='none'): the lesion is looked for at the same scanner coordinates"
            )
            notes.append(msg)
            warnings.warn(msg, UserWarning, stacklevel=3)
    idx = followup.physical_to_index(point)
    if np.any(idx < -0.5) or np.any(idx > np.asarray(followup.shape) - 0.5):
        notes.append(f"the lesion maps outside the follow-up scan ({np.round(point, 1).tolist()} mm)")
        return None, TrackedLesion(point, False, kind, notes, reg), mapped_mask
    radius = (3.0 * baseline.voxel_volume_cm3 * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0) + 3.0
    sp = np.asarray(followup.spacing)
    r_vox = np.ceil(radius / sp).astype(int)
    c = np.clip(np.rint(idx).astype(int), 0, np.asarray(followup.shape) - 1)
    lo, hi = np.maximum(c - r_vox, 0), np.minimum(c + r_vox + 1, followup.shape)
    sub = followup.array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    t = baseline.lesion.threshold_hu if baseline.lesion is not None else LUNG_HU
    dense = (sub >= t) & (sub <= params.bone_hu)
    zz, yy, xx = np.meshgrid(*[(np.arange(a, b) - ci) * s for a, b, ci, s in zip(lo, hi, c, sp)], indexing="ij")
    dense &= (zz**2 + yy**2 + xx**2) <= radius**2
    if not dense.any():
        notes.append(f"no soft tissue (>= {t:.0f} HU) within {radius:.1f} mm of the tracked position")
        return None, TrackedLesion(point, False, kind, notes, reg), mapped_mask
    depth = ndimage.distance_transform_edt(dense, sampling=sp)
    # a vessel crossing where the lesion was is thin: the lesion must keep some thickness
    box = _grown_box(baseline.mask, 1)  # the inscribed radius needs only the mask's box, not the whole scan
    base_depth = float(ndimage.distance_transform_edt(baseline.mask[box], sampling=baseline.volume.spacing).max())
    need = max(TRACK_MIN_DEPTH_MM, TRACK_MIN_DEPTH_FRACTION * base_depth)
    if float(depth.max()) < need:
        notes.append(
            f"only thin soft tissue near the tracked position (deepest {float(depth.max()):.1f} mm < {need:.1f} mm, "
            f"{TRACK_MIN_DEPTH_FRACTION:g} x the baseline lesion's inscribed radius): a vessel, not the lesion"
        )
        return None, TrackedLesion(point, False, kind, notes, reg), mapped_mask
    k = np.asarray(np.unravel_index(int(np.argmax(depth)), dense.shape)) + lo
    seed_xyz = followup.index_to_physical(k.astype(np.float64))
    x, y, z = (float(v) for v in seed_xyz)
    return Seed((x, y, z)), TrackedLesion(point, True, kind, notes, reg), mapped_mask


def _grown_box(mask: np.ndarray, pad: int | np.ndarray) -> tuple[slice, ...]:
    """The bounding box of a non-empty bool (z, y, x) mask grown by ``pad`` voxels per axis, clipped."""
    from scipy import ndimage

    pads = np.broadcast_to(np.asarray(pad, dtype=int), (3,))
    (bbox,) = ndimage.find_objects(mask.astype(np.uint8))
    return tuple(slice(max(0, b.start - q), min(n, b.stop + q)) for b, q, n in zip(bbox, pads, mask.shape))


def same_lesion(seg: Segmentation, mapped: np.ndarray | None, margin_mm: float = 5.0) -> bool:
    """Is the follow-up object the tracked lesion rather than a vessel next to where it was?

    True when it covers at least 20 % of the baseline mask carried over by the
    registration, or at least half of it lies within ``margin_mm`` of that mask. A vessel
    crossing the place of a vanished nodule does neither.
    """
    from scipy import ndimage

    if mapped is None or not mapped.any() or not seg.mask.any():
        return bool(seg.mask.any())
    covered = np.count_nonzero(seg.mask & mapped) / np.count_nonzero(mapped)
    near = np.zeros(mapped.shape, bool)
    box = _grown_box(mapped, np.ceil(margin_mm / np.asarray(seg.volume.spacing)).astype(int) + 1)
    near[box] = ndimage.distance_transform_edt(~mapped[box], sampling=seg.volume.spacing) <= margin_mm
    inside = np.count_nonzero(seg.mask & near) / np.count_nonzero(seg.mask)
    return bool(covered >= 0.2 or inside >= 0.5)


def _not_found(volume: Volume, record: TrackedLesion | None, seg: Segmentation | None = None) -> Segmentation:
    """An empty segmentation for a tracked lesion that was not found (complete response, or lost)."""
    known = record is not None and bool(np.all(np.isfinite(record.point_xyz)))
    point = f" at {np.round(record.point_xyz, 1).tolist()} mm" if known else ""  # type: ignore[union-attr]
    note = f"lesion not found at its tracked position{point}: complete response, or the lesion was lost"
    extra = [] if record is None else list(record.notes)
    warnings.warn(f"Tracked lesion not found in {volume!r}{point}; the mask is empty.", UserWarning, stacklevel=3)
    return Segmentation(
        mask=np.zeros(volume.shape, bool),
        probability=np.zeros(volume.shape, np.float32),
        volume=volume,
        roi=f"tracked lesion{point}",
        empty=True,
        notes=[note, *extra],
        timings={} if seg is None else seg.timings,
        method="image" if seg is None else seg.method,
    )


# ----------------------------------------------------------------------------- fixed-point LVCR


def estimate_lvcr(days: Sequence[float], segs: Sequence[Segmentation], weights: str = "interval") -> float:
    """LVCR (/day) of the segmentations by the one definition, :func:`mkunet.analysis.kinetics.lvcr_from_masks`.

    Mesh volumes (as the pipeline's ``volume_cm3``) and the user's ``weights`` (``lvcr_weights``).
    """
    from mkunet.analysis.kinetics import lvcr_from_masks

    result = lvcr_from_masks(list(days), [s.mask for s in segs], [s.volume.spacing for s in segs], weights=weights)  # type: ignore[arg-type]
    return float(result.lvcr_per_day)


# ----------------------------------------------------------------------------- passes over the timepoints

SegmentOne = Callable[[Volume, "Roi | None", "dict[str, Any] | None"], Segmentation]
"""``segment_one(volume, roi, clinical)``: one scan segmented as :func:`mkunet.segmentation.infer.segment`."""


@dataclass(eq=False)
class TimepointPasses:
    """One patient's segmentation passes: call :meth:`run` once per pass (an LVCR in, one mask per scan out).

    Attributes:
        volumes: the CTs in time order.
        rois: one ROI (or None) per timepoint.
        segment_one: segments one scan (:data:`SegmentOne`).
        clinical: the patient's clinical values (``lvcr`` is replaced by each pass's LVCR).
        params: the lesion model's parameters (the tracked lesion's bone limit).
        tracking: ``"register"`` or ``"none"`` (:func:`follow_lesion`).
        track: follow the baseline lesion into the later scans without a ROI.
        detected: the baseline segmented once by whole-volume detection (reused by every pass),
            or None.
        previous_mask_roi, margin_mm: untracked timepoints without a ROI run inside the previous
            mask grown by ``margin_mm`` (mm).
        notes: notes of the whole series (appended to).
        tracked: one :class:`TrackedLesion` per timepoint (None where not tracked), filled by the
            first pass.
    """

    volumes: list[Volume]
    rois: list[Roi | None]
    segment_one: SegmentOne
    clinical: dict[str, Any]
    params: LesionParams
    tracking: str
    track: bool
    detected: Segmentation | None = None
    previous_mask_roi: bool = False
    margin_mm: float = 15.0
    notes: list[str] = field(default_factory=list)
    tracked: list[TrackedLesion | None] = field(default_factory=list)
    _follow: dict[int, tuple[Seed | None, np.ndarray | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tracked:
            self.tracked = [None] * len(self.volumes)

    def run(self, lvcr_in: float | None, earlier: Sequence[Segmentation] = ()) -> list[Segmentation]:
        """One pass with LVCR ``lvcr_in`` (per day; None = unknown); ``earlier``: the previous pass's masks."""
        segs: list[Segmentation] = []
        base = self.clinical
        clin = dict(base, lvcr=lvcr_in) if (base or lvcr_in is not None) else None
        for k, vol in enumerate(self.volumes):
            roi = self.rois[k]
            if k == 0 and self.detected is not None:  # the image path ignores the LVCR: the same in every pass
                segs.append(self.detected)
            elif roi is None and self.track and k > 0:
                segs.append(self._tracked(k, vol, segs[0], clin))
            else:
                segs.append(self.segment_one(vol, self._previous_roi(k, vol, roi, segs, earlier), clin))
        return segs

    def _tracked(self, k: int, vol: Volume, baseline: Segmentation, clin: dict[str, Any] | None) -> Segmentation:
        """Timepoint ``k`` segmented from the baseline lesion followed there (registered once)."""
        if k not in self._follow:  # register once; later passes reuse the mapping
            seed, self.tracked[k], mapped = follow_lesion(baseline, vol, tracking=self.tracking, params=self.params)
            self._follow[k] = (seed, mapped)
        seed, mapped = self._follow[k]
        record = self.tracked[k]
        if seed is None:
            return _not_found(vol, record)
        seg = self.segment_one(vol, seed, clin)
        if not same_lesion(seg, mapped):
            record.found = False  # type: ignore[union-attr]
            record.notes.append("the object at the tracked position is not the lesion")  # type: ignore[union-attr]
            seg = _not_found(vol, record, seg)
        return seg

    def _previous_roi(
        self, k: int, vol: Volume, roi: Roi | None, segs: Sequence[Segmentation], earlier: Sequence[Segmentation]
    ) -> Roi | None:
        """``roi``, or with ``previous_mask_roi`` and none given: this timepoint's mask of the previous
        pass, else the previous timepoint's mask (placed by scanner coordinates), grown by ``margin_mm``."""
        if roi is not None or not self.previous_mask_roi:
            return roi
        if earlier and not earlier[k].empty:
            return PreviousMask(earlier[k].mask, vol, margin_mm=self.margin_mm)
        if k > 0 and not segs[-1].empty:
            if self.volumes[k - 1].frame_of_reference_uid != vol.frame_of_reference_uid:
                msg = (
                    f"timepoint {k}: FrameOfReferenceUID differs from timepoint {k - 1}'s and no registration "
                    "was done: the previous mask is placed by scanner coordinates"
                )
                if msg not in self.notes:
                    self.notes.append(msg)
                    warnings.warn(msg, UserWarning, stacklevel=5)
            return PreviousMask(segs[-1].mask, self.volumes[k - 1], margin_mm=self.margin_mm)
        return None


def single_pass(
    passes: TimepointPasses, days: list[float], given_lvcr: float | None, weights: str
) -> LongitudinalSegmentation:
    """One pass with the given LVCR (or unknown); the LVCR is then estimated from its volumes
    when not given, every timepoint has a lesion and there are two timepoints or more."""
    notes = passes.notes
    n = len(passes.volumes)
    if n < 2 and given_lvcr is None:
        notes.append("a single timepoint: LVCR cannot be estimated")
    segs = passes.run(given_lvcr)
    lvcr_est = None
    if n >= 2 and given_lvcr is None and all(not s.empty for s in segs):
        lvcr_est = estimate_lvcr(days, segs, weights)
    elif n >= 2 and given_lvcr is None:
        notes.append("no lesion at some timepoint: LVCR not estimated")
    return LongitudinalSegmentation(segs, days, lvcr_est, True, [], notes, passes.tracked)


def fixed_point(
    passes: TimepointPasses, days: list[float], *, tol: float, max_iter: int, weights: str
) -> LongitudinalSegmentation:
    """The fixed-point LVCR (:func:`mkunet.segmentation.infer.segment_timepoints`, "LVCR"): pass 0 with
    the LVCR unknown, then passes with the last estimate until it changes by less than ``tol``
    (per day) or after ``max_iter`` passes (a warning); an empty mask stops it (a warning)."""
    from mkunet.analysis.kinetics import mask_volume_cm3

    notes = passes.notes
    trace: list[dict[str, Any]] = []
    lvcr_in: float | None = None
    converged = False
    segs: list[Segmentation] = []
    for iteration in range(max_iter + 1):
        segs = passes.run(lvcr_in, segs)
        vols = [mask_volume_cm3(s.mask, s.volume.spacing) for s in segs]  # the LVCR's volume measure (mesh)
        entry: dict[str, Any] = {"iteration": iteration, "lvcr_in": lvcr_in, "volumes_cm3": vols}
        if any(s.empty for s in segs):
            empty_tp = [k for k, s in enumerate(segs) if s.empty]
            notes.append(f"no tumour at timepoint(s) {empty_tp}: LVCR cannot be estimated; iteration stopped")
            entry.update(lvcr_out=None, change=None)
            trace.append(entry)
            warnings.warn(
                f"Fixed-point LVCR stopped: empty segmentation at timepoint(s) {empty_tp}.", UserWarning, stacklevel=3
            )
            return LongitudinalSegmentation(segs, days, None, False, trace, notes, passes.tracked)
        lvcr_out = estimate_lvcr(days, segs, weights)
        change = None if lvcr_in is None else abs(lvcr_out - lvcr_in)
        entry.update(lvcr_out=lvcr_out, change=change)
        trace.append(entry)
        logger.info("fixed-point LVCR pass %d: in=%s out=%.6g /day change=%s", iteration, lvcr_in, lvcr_out, change)
        if change is not None and change < tol:
            converged = True
            break
        lvcr_in = lvcr_out
    if not converged:
        notes.append(f"LVCR did not settle within {max_iter} passes (last change {trace[-1]['change']})")
        warnings.warn(
            f"Fixed-point LVCR did not converge to tol={tol:g}/day in {max_iter} passes; last change "
            f"{trace[-1]['change']}/day. Returning the last pass.",
            UserWarning,
            stacklevel=3,
        )
    return LongitudinalSegmentation(segs, days, trace[-1]["lvcr_out"], converged, trace, notes, passes.tracked)
