"""Inference: segment a lung tumour in a CT volume.

Methods of :func:`segment` (``method=``): ``"auto"`` (default) runs the image-driven lesion
model of :mod:`mkunet.segmentation.lesion` when there is a seed, a box or a previous mask (measured better
on real CT: README "One-click segmentation"), and for the whole volume the image-driven
detector of :func:`mkunet.segmentation.candidates.detect_lesions` followed by the lesion model at the best
candidate (README "Whole volume"); ``"network"`` runs the network below.
:func:`segment_timepoints` follows a lesion clicked (or detected) on the baseline into later
scans by registration (:mod:`mkunet.segmentation.register`).

Network path of :func:`segment` (all outputs on the *input* grid)::

    Volume (z, y, x) HU ──► ROI crop (Box / Seed / PreviousMask; without a ROI the
                            patient's in-plane bounding box, see body_box)
        ──► resample crop to bundle.target_spacing (float32, linear, SimpleITK)
        ──► bundle.preprocessor  ──► (C, z, y, x) float32
        ──► MONAI sliding window (patch = bundle.patch_size, overlap 0.25,
            gaussian blending of the *probabilities*)
        ──► resample back onto the crop, paste into a zero map of the input's shape
        ──► threshold (bundle.threshold unless given) ──► keep the tumour component

Component rule (``keep="component"``, the default; 26-connectivity):

* ``Seed`` ROI: the connected component containing the seed voxel; if the seed
  lies outside every component, the component with the voxel nearest to the seed
  (distance in mm).
* ``PreviousMask`` ROI: the component overlapping the previous mask most; if
  none overlaps, the component nearest to the previous mask's centroid (mm).
* otherwise (no ROI or a ``Box``): the component with the largest probability mass
  inside the lung region, weighted by the fraction of its mass inside
  (:func:`mkunet.segmentation.lung.lung_region`: the lungs found by HU, closed by a 30 mm ball,
  holes filled; a lung tumour lies in or on a lung, while the network's false
  positives are often in the heart, chest wall or abdomen). When no
  lung is found, or no component reaches it, the largest probability mass anywhere.
  ``lung_prior=False`` drops the region (largest probability mass anywhere).

``keep="all"`` keeps every component of at least ``min_component_cm3``;
``keep="none"`` keeps the thresholded map as it is. An empty result is not an
error: the mask is empty, ``Segmentation.empty`` is True, a note says
"no tumour found" and a :class:`UserWarning` is issued.

LVCR and the model: the clinical vector's last entry is the log volume change
rate (per day). :func:`segment_timepoints` estimates it when it is unknown, by a
fixed-point iteration over a patient's timepoints (see there).

Axis conventions: arrays (z, y, x); spacings (z, y, x) in mm; physical points and
origins (x, y, z) in mm (DICOM LPS), see :mod:`mkunet.volume`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mkunet.models.bundle import predict_probability
from mkunet.segmentation.candidates import DetectionParams
from mkunet.segmentation.lesion import LesionParams, LesionResult, SeedError, check_seed, segment_lesion
from mkunet.segmentation.lung import lung_region
from mkunet.segmentation.orientation import canonical_orientation  # orientation hook (issue #23)
from mkunet.segmentation.uncertainty import UncertaintyParams, VolumeUncertainty, check_uncertainty
from mkunet.utils import atomic_write_text, is_missing, to_jsonable
from mkunet.volume import Volume, same_grid

__all__ = [
    "Box",
    "Seed",
    "PreviousMask",
    "Segmentation",
    "LongitudinalSegmentation",
    "segment",
    "segment_timepoints",
    "METHODS",
    "TRACKING",
    "TrackedLesion",
    "check_method",
    "resolve_method",
    "SeedError",
    "LesionParams",
    "check_seed",
    "predict_probability",
    "keep_tumour_component",
    "KEEP_RULES",
    "check_keep",
    "body_box",
    "roi_crop_box",
    "check_formats",
    "is_dicom_volume",
    "save_segmentation",
    "segmentation_summary",
    "load_model",
    "FORMATS",
]

logger = logging.getLogger(__name__)

FORMATS = ("nifti", "seg", "rtstruct")
"""Output formats :func:`save_segmentation` writes."""

METHODS = ("auto", "image", "network")
"""Segmentation methods of :func:`segment` (see the module doc)."""

NETWORK_SEED_CUBE_MM = 100.0
"""First cube edge (mm) the network runs around a seed; it grows while the tumour touches a face."""

ProgressHook = Callable[[str], None]

# ----------------------------------------------------------------------------- ROIs


@dataclass(frozen=True)
class Box:
    """A box region of interest: ranges along (z, y, x).

    Args:
        z: (start, stop) along the slice axis.
        y: (start, stop) along the row axis.
        x: (start, stop) along the column axis.
        units: ``"voxel"``: array indices, half-open ``[start, stop)``;
            ``"mm"``: physical coordinates (patient LPS) in mm of the box's
            corners, i.e. ``z`` is the range of the physical z coordinate, etc.
            (the crop is the index-space bounding box of the 8 corners).
    """

    z: tuple[float, float]
    y: tuple[float, float]
    x: tuple[float, float]
    units: Literal["voxel", "mm"] = "voxel"

    def describe(self) -> str:
        return f"box z={tuple(self.z)} y={tuple(self.y)} x={tuple(self.x)} ({self.units})"


@dataclass(frozen=True)
class Seed:
    """A point inside the lesion (a click); no size is needed.

    Args:
        point: the point, ordered **(x, y, z)**: physical patient coordinates (LPS)
            in mm when ``units="mm"``, or voxel indices (column, row, slice) when
            ``units="voxel"`` (the order viewers such as ITK-SNAP display).
        units: ``"mm"`` or ``"voxel"``.
        size_mm: only for ``method="network"``: edge of the first cube run around the
            seed (mm; None = :data:`NETWORK_SEED_CUBE_MM`). The cube grows by 1.6x
            whenever the kept tumour touches one of its faces, so a 10 cm mass is not
            cut. The image-driven model sizes its own crop from the lesion.
    """

    point: tuple[float, float, float]
    units: Literal["mm", "voxel"] = "mm"
    size_mm: float | None = None

    def index_zyx(self, volume: Volume) -> np.ndarray:
        """The seed as continuous array indices (z, y, x) on ``volume``."""
        p = np.asarray(self.point, dtype=np.float64)
        if self.units == "mm":
            return volume.physical_to_index(p)
        return p[::-1].copy()

    def describe(self) -> str:
        size = "" if self.size_mm is None else f", cube {self.size_mm:g} mm"
        return f"seed {tuple(round(float(v), 2) for v in self.point)} ({self.units}, x y z){size}"


@dataclass(frozen=True, eq=False)
class PreviousMask:
    """The previous timepoint's tumour mask as region of interest.

    The mask is resampled (nearest neighbour) onto the current grid; the crop is
    its bounding box grown by ``margin_mm`` on every side (the box of the mask
    dilated by the margin), and the kept component is the one overlapping it most.

    Args:
        mask: bool (z, y, x) on ``reference``'s grid, or a :class:`Volume` label map
            (non-zero = tumour; then ``reference`` may be omitted).
        reference: the volume the mask was drawn on (its geometry is what matters).
        margin_mm: growth margin (mm), default 15.
    """

    mask: Any
    reference: Volume | None = None
    margin_mm: float = 15.0

    def on_grid(self, volume: Volume) -> np.ndarray:
        """The previous mask as bool (z, y, x) on ``volume``'s grid."""
        if isinstance(self.mask, Volume):
            ref, arr = self.mask, self.mask.array != 0
        else:
            if self.reference is None:
                raise ValueError(
                    "PreviousMask: an array mask needs `reference` (the Volume it was drawn on) "
                    "to know its geometry; pass reference=<previous Volume> or a Volume label map."
                )
            ref, arr = self.reference, np.asarray(self.mask) != 0
            if arr.shape != ref.shape:
                raise ValueError(
                    f"PreviousMask: mask shape {arr.shape} differs from its reference volume's {ref.shape}."
                )
        if same_grid(ref, volume):
            return arr
        import SimpleITK as sitk

        out = sitk.Resample(
            ref.to_sitk(arr.astype(np.uint8)),
            volume.to_sitk(np.zeros(volume.shape, np.uint8)),
            sitk.Transform(),
            sitk.sitkNearestNeighbor,
            0,
        )
        return sitk.GetArrayViewFromImage(out) != 0

    def describe(self) -> str:
        return f"previous mask + {self.margin_mm:g} mm"


Roi = Box | Seed | PreviousMask

# ----------------------------------------------------------------------------- results


@dataclass(eq=False)
class Segmentation:
    """The result of :func:`segment`, on the input volume's grid.

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
        method: ``"image"`` (the lesion model of :mod:`mkunet.segmentation.lesion`) or ``"network"``.
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
    def volume_cm3(self) -> float:
        """Tumour volume in cm^3 (voxel counting: n voxels x voxel volume / 1000)."""
        return float(np.count_nonzero(self.mask)) * self.volume.voxel_volume_mm3 / 1000.0

    def __repr__(self) -> str:
        return (
            f"Segmentation(volume_cm3={self.volume_cm3:.3f}, empty={self.empty}, roi={self.roi!r}, "
            f"lvcr_used={self.lvcr_used}, notes={self.notes})"
        )


@dataclass(eq=False)
class LongitudinalSegmentation:
    """The result of :func:`segment_timepoints`.

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
        tracked: one :class:`TrackedLesion` per timepoint (None where the lesion was not
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


# ----------------------------------------------------------------------------- model


@functools.lru_cache(maxsize=1)
def _default_bundle():
    from mkunet.models.bundle import default_bundle

    return default_bundle()


def load_model(model: Any = None):
    """Resolve ``model`` to a model bundle.

    Args:
        model: None (the shipped model, loaded once and cached), a bundle object,
            or a path to a run / bundle directory (``ModelBundle.load``).
    """
    if model is None:
        return _default_bundle()
    if isinstance(model, (str, Path)):
        from mkunet.models.bundle import ModelBundle

        path = Path(model)
        if not path.exists():
            raise FileNotFoundError(f"Model directory not found: '{path}' (give a training run or bundle folder).")
        return ModelBundle.load(path)
    return model


def _clinical_vector(bundle: Any, clinical: Any, notes: list[str]) -> tuple[np.ndarray | None, float | None]:
    """Encode ``clinical`` for the bundle; returns (vector (6,) or None, lvcr per day or None)."""
    encoder = getattr(bundle, "clinical_encoder", None)
    default = getattr(bundle, "default_clinical", None)
    if clinical is not None and not isinstance(clinical, Mapping):
        vec = np.asarray(clinical, dtype=np.float32).reshape(-1)
        if vec.shape != (6,) or not np.all(np.isfinite(vec)):
            raise ValueError(
                f"`clinical` must be a mapping (age, sex, smoking, grade, stage, lvcr) or an encoded "
                f"vector of 6 finite values, got {np.asarray(clinical).tolist()!r}."
            )
        return vec, None
    if clinical is None and default is not None:
        notes.append("clinical values unknown (LVCR included): the bundle's default vector (training medians) was used")
        return np.asarray(default, dtype=np.float32).reshape(-1).copy(), None
    if encoder is None:
        if clinical is not None:
            notes.append("the model has no clinical encoder; the clinical values were ignored")
        return (None if default is None else np.asarray(default, dtype=np.float32).reshape(-1).copy()), None
    columns = tuple(getattr(encoder, "COLUMNS", ("age", "sex", "smoking", "grade", "stage", "lvcr")))
    row = {c: None for c in columns}
    if clinical is not None:
        unknown = sorted(set(clinical) - set(columns))
        if unknown:
            raise ValueError(f"Unknown clinical field(s) {unknown}: valid names are {', '.join(columns)}.")
        row.update({k: (None if is_missing(v) else v) for k, v in clinical.items()})
    lvcr = row.get("lvcr")
    lvcr_used = None if lvcr is None else float(lvcr)
    if lvcr is None:
        notes.append("LVCR unknown: encoded as the training median (clinical encoder default)")
    missing = [c for c in columns if c != "lvcr" and row[c] is None]
    if missing:
        notes.append(
            f"clinical field(s) unknown: {', '.join(missing)}; imputed with the training median (explicit imputation)"
        )
        with warnings.catch_warnings():  # the note above says it once
            warnings.simplefilter("ignore", UserWarning)
            vec = encoder.encode_one(row, impute="median")
    else:
        vec = encoder.encode_one(row)
    return np.asarray(vec, dtype=np.float32).reshape(-1), lvcr_used


# ----------------------------------------------------------------------------- ROI geometry

BoxIdx = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def roi_crop_box(volume: Volume, roi: Roi | None) -> tuple[BoxIdx, np.ndarray | None]:
    """The crop (voxel index box, half-open, (z, y, x)) a ROI asks for, clipped to the volume.

    Returns:
        (box, previous mask on this grid or None).

    Raises:
        ValueError: the ROI lies outside the volume or is malformed.
    """
    shape = np.asarray(volume.shape)
    prev = None
    if roi is None:
        lo, hi = np.zeros(3, int), shape.copy()
    elif isinstance(roi, Box):
        ranges = np.asarray([roi.z, roi.y, roi.x], dtype=np.float64)
        if ranges.shape != (3, 2) or not np.all(np.isfinite(ranges)):
            raise ValueError(f"Box ranges must be three (start, stop) pairs, got {roi!r}.")
        if roi.units == "voxel":
            lo, hi = np.floor(ranges[:, 0]).astype(int), np.ceil(ranges[:, 1]).astype(int)
        elif roi.units == "mm":
            corners_xyz = np.array(
                [[x, y, z] for z in ranges[0] for y in ranges[1] for x in ranges[2]], dtype=np.float64
            )
            idx = volume.physical_to_index(corners_xyz)
            lo, hi = np.floor(idx.min(0)).astype(int), np.floor(idx.max(0)).astype(int) + 1
        else:
            raise ValueError(f"Box units must be 'voxel' or 'mm', got {roi.units!r}.")
        if np.any(hi <= lo):
            raise ValueError(f"Empty box {roi.describe()}: each stop must exceed its start.")
    elif isinstance(roi, Seed):
        if roi.units not in ("mm", "voxel"):
            raise ValueError(f"Seed units must be 'mm' or 'voxel', got {roi.units!r}.")
        if len(roi.point) != 3 or not np.all(np.isfinite(roi.point)):
            raise ValueError(f"Seed point must be 3 finite numbers (x, y, z), got {roi.point!r}.")
        size = NETWORK_SEED_CUBE_MM if roi.size_mm is None else roi.size_mm
        if not size > 0:
            raise ValueError(f"Seed size_mm must be > 0 (or None), got {roi.size_mm!r}.")
        centre = roi.index_zyx(volume)
        check_seed(volume, centre, roi.describe())
        half = 0.5 * size / np.asarray(volume.spacing)
        lo = np.floor(centre - half).astype(int)
        hi = np.ceil(centre + half).astype(int) + 1
    elif isinstance(roi, PreviousMask):
        prev = roi.on_grid(volume)
        if not prev.any():
            lo, hi = np.zeros(3, int), shape.copy()
        else:
            nz = [np.flatnonzero(prev.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
            margin = np.ceil(roi.margin_mm / np.asarray(volume.spacing)).astype(int)
            lo = np.array([n[0] for n in nz]) - margin
            hi = np.array([n[-1] + 1 for n in nz]) + margin
    else:
        raise ValueError(f"`roi` must be None, Box, Seed or PreviousMask, got {type(roi).__name__}: {roi!r}.")
    lo = np.clip(lo, 0, shape)
    hi = np.clip(hi, 0, shape)
    if np.any(hi <= lo):
        raise ValueError(
            f"The region of interest ({roi.describe() if roi is not None else ''}) does not overlap the volume "
            f"(shape z, y, x = {tuple(shape)})."
        )
    return tuple((int(a), int(b)) for a, b in zip(lo, hi)), prev  # type: ignore[return-value]


def body_box(
    volume: Volume, threshold_hu: float = -500.0, margin_mm: float = 10.0, min_fraction: float = 0.1
) -> BoxIdx:
    """The patient's in-plane bounding box (all slices), to skip the air around the body.

    The body is the union of the connected components (8-connectivity) of the axial
    projection of ``array > threshold_hu`` whose area is at least ``min_fraction`` of
    the largest one (small debris and thin lines are dropped; a large couch may stay);
    its (y, x) bounding box grows by ``margin_mm``. Without any voxel above the
    threshold the whole volume is returned.

    Returns:
        ((0, nz), (y0, y1), (x0, x1)) voxel indices, half-open.
    """
    from scipy import ndimage

    nz, ny, nx = volume.shape
    projection = (volume.array > threshold_hu).any(axis=0)
    labels, n = ndimage.label(projection, structure=np.ones((3, 3), bool))
    if n == 0:
        return ((0, nz), (0, ny), (0, nx))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    big = sizes >= min_fraction * sizes.max()
    big[0] = False
    ys, xs = np.nonzero(big[labels])
    my = int(math.ceil(margin_mm / volume.spacing[1]))
    mx = int(math.ceil(margin_mm / volume.spacing[2]))
    return (
        (0, nz),
        (max(0, int(ys.min()) - my), min(ny, int(ys.max()) + 1 + my)),
        (max(0, int(xs.min()) - mx), min(nx, int(xs.max()) + 1 + mx)),
    )


def _crop(volume: Volume, box: BoxIdx) -> Volume:
    (z0, z1), (y0, y1), (x0, x1) = box
    if box == tuple((0, n) for n in volume.shape):
        return volume
    origin = volume.index_to_physical((z0, y0, x0))
    return Volume(
        np.ascontiguousarray(volume.array[z0:z1, y0:y1, x0:x1]),
        spacing=volume.spacing,
        origin=tuple(origin),
        direction=volume.direction,
        patient_id=volume.patient_id,
        study_uid=volume.study_uid,
        series_uid=volume.series_uid,
        frame_of_reference_uid=volume.frame_of_reference_uid,
    )


# ----------------------------------------------------------------------------- post-processing
KEEP_RULES = ("component", "all", "none")
"""The component rules of :func:`keep_tumour_component` (see the module doc)."""


def check_keep(keep: str) -> str:
    """Return ``keep`` if it is one of :data:`KEEP_RULES`, else raise a ValueError quoting it."""
    if keep not in KEEP_RULES:
        raise ValueError(f"`keep` must be one of {', '.join(KEEP_RULES)}; got {keep!r}.")
    return keep


def keep_tumour_component(
    binary: np.ndarray,
    spacing: Sequence[float],
    *,
    keep: Literal["component", "all", "none"] = "component",
    seed_zyx: Sequence[float] | None = None,
    previous: np.ndarray | None = None,
    min_component_cm3: float = 0.0,
    probability: np.ndarray | None = None,
    region: np.ndarray | None = None,
) -> np.ndarray:
    """Select the tumour among the connected components (26-connectivity) of ``binary``.

    Args:
        binary: bool (z, y, x), the thresholded probability.
        spacing: (z, y, x) voxel size in mm (distances and volumes).
        keep: ``"component"``: with ``seed_zyx`` the component containing it, else
            the one with the voxel nearest to it (mm); with ``previous`` the one
            overlapping it most, else the one nearest its centroid; otherwise the
            one with the largest score :math:`M_{in}^2 / M`, with :math:`M` the sum of
            ``probability`` (or the voxel count without it) over the component and
            :math:`M_{in}` that sum over its voxels inside ``region`` (the mass inside
            times the fraction inside); :math:`M` alone when ``region`` is None, empty
            or touches no component.
            ``"all"``: every component of at least ``min_component_cm3``.
            ``"none"``: ``binary`` unchanged.
        seed_zyx: seed as array indices (z, y, x) (continuous allowed).
        previous: bool (z, y, x) previous-timepoint mask on the same grid.
        min_component_cm3: smallest component kept by ``keep="all"`` (cm^3).
        probability: float (z, y, x) tumour probability on the same grid (the score's
            weights), or None.
        region: bool (z, y, x) where a tumour can be (:func:`mkunet.segmentation.lung.lung_region`),
            or None.

    Returns:
        bool (z, y, x) mask (empty when ``binary`` is empty).
    """
    from scipy import ndimage

    binary = np.asarray(binary, dtype=bool)
    if check_keep(keep) == "none":
        return binary.copy()
    labels, n = ndimage.label(binary, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return np.zeros_like(binary)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    if keep == "all":
        voxel_cm3 = float(np.prod(spacing_arr)) / 1000.0
        good = sizes * voxel_cm3 >= min_component_cm3
        good[0] = False
        return good[labels]

    def nearest_to(point_zyx: np.ndarray) -> int:
        coords = np.argwhere(binary)  # (n, 3) z, y, x
        d2 = (((coords - point_zyx) * spacing_arr) ** 2).sum(axis=1)
        k = coords[int(np.argmin(d2))]
        return int(labels[tuple(k)])

    chosen: int
    if seed_zyx is not None:
        seed = np.asarray(seed_zyx, dtype=np.float64)
        idx = tuple(np.clip(np.rint(seed).astype(int), 0, np.asarray(binary.shape) - 1))
        chosen = int(labels[idx]) or nearest_to(seed)
    elif previous is not None and np.any(previous):
        overlap = np.bincount(labels[np.asarray(previous, bool)], minlength=n + 1)
        overlap[0] = 0
        if overlap.max() > 0:
            chosen = int(np.argmax(overlap))
        else:
            chosen = nearest_to(np.argwhere(previous).mean(axis=0))
    else:
        weights = None if probability is None else np.asarray(probability)  # no float64 copy of the map
        score = np.zeros(n + 1)  # stays 0 without a usable region
        total = np.bincount(labels[binary], weights=None if weights is None else weights[binary], minlength=n + 1)
        total[0] = 0.0
        if region is not None and np.any(region):
            inside = np.asarray(region, bool) & binary
            mass_in = np.bincount(labels[inside], weights=None if weights is None else weights[inside], minlength=n + 1)
            mass_in[0] = 0.0
            # mass inside x fraction inside: a chest-wall or heart false positive that only
            # grazes the region's edge scores little however large it is
            score = mass_in * mass_in / np.maximum(total, 1e-12)
        if not score.any():
            score = total
        chosen = int(np.argmax(score))
    return labels == chosen


# ----------------------------------------------------------------------------- segment


def check_method(method: str) -> str:
    """Return ``method`` if it is one of :data:`METHODS`, else raise a ValueError quoting it."""
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}.")
    return method


def resolve_method(method: str, roi: Roi | None) -> str:
    """The method :func:`segment` runs: ``"image"``, ``"detect"`` or ``"network"``.

    ``"auto"`` is the image-driven lesion model when there is a seed, a box or a previous
    mask to start from, and ``"detect"`` for the whole volume: the image-driven detector
    (:func:`mkunet.segmentation.candidates.detect_lesions`) finds the lesion and the lesion model segments it
    from the top candidate (both measured better on real CT than the network: README). ``"image"``
    without a region of interest is ``"detect"`` too; ``"network"`` forces the network.
    """
    check_method(method)
    if method == "network":
        return "network"
    if roi is None:
        return "detect"
    return "image"


@canonical_orientation("volume", roi="roi")  # orientation hook: runs on the LPS grid, answers on the user's
def segment(
    volume: Volume,
    model: Any = None,
    clinical: Mapping[str, Any] | Sequence[float] | np.ndarray | None = None,
    roi: Roi | None = None,
    *,
    method: Literal["auto", "image", "network"] = "auto",
    threshold: float | None = None,
    return_attention: bool = False,
    keep: Literal["component", "all", "none"] = "component",
    min_component_cm3: float = 0.0,
    overlap: float = 0.25,
    body_crop: bool = True,
    lung_prior: bool = True,
    lesion_params: LesionParams | None = None,
    detection: DetectionParams | None = None,
    uncertainty: Literal["on", "off"] = "on",
    uncertainty_params: UncertaintyParams | None = None,
    progress: ProgressHook | None = None,
) -> Segmentation:
    """Segment the lung tumour in one CT volume.

    Methods (``method``):

    * ``"image"``: the image-driven lesion model of :func:`mkunet.segmentation.lesion.segment_lesion`
      from the seed (a :class:`Box` gives the seed itself, the deepest soft-tissue point
      of its central part, and the lesion is clipped to the box; a :class:`PreviousMask`
      gives the deepest point of the previous mask that is still soft tissue). The
      boundary follows a HU iso-level halfway between the lesion's and the surrounding
      lung's median HU (the 50 % partial-volume edge; see :mod:`mkunet.segmentation.lesion`).
    * ``"network"``: the trained network's probability, thresholded, then the component
      rule (module doc). With a :class:`Seed` the cube around it grows by 1.6x while the
      tumour touches one of its faces.
    * ``"auto"`` (default): ``"image"`` with a seed, box or previous mask; for the whole
      volume, **detection**: :func:`mkunet.segmentation.candidates.detect_lesions` ranks the compact
      soft-tissue masses in the lungs (``Segmentation.candidates``) and the image model
      segments the first reportable candidate from its centre (the next one when that gives
      nothing). No reportable candidate: an empty mask, a note and a warning. ``"image"``
      without a ROI does the same.

    Args:
        volume: the CT (HU), any spacing; outputs come back on its grid.
        model: None (the shipped model, cached), a ``ModelBundle``, or a bundle /
            run directory. The image method loads it only for ``return_attention``.
        clinical: mapping with any of ``age`` (years), ``sex`` (M|F), ``smoking``
            (never|former|current), ``grade`` (1-3), ``stage`` (I-IV), ``lvcr`` (per
            day); or an already encoded vector (6,); or None. An unknown LVCR is
            encoded as the training median (the encoder's documented default);
            other unknown fields are imputed with the training median and a note
            says so. Ignored (with a note) when the model takes no clinical input.
        roi: None (whole volume), :class:`Box`, :class:`Seed` or :class:`PreviousMask`.
        method: ``"auto"``, ``"image"`` or ``"network"`` (above).
        threshold: probability threshold of the network; default the bundle's (0.5).
        return_attention: also return attention maps (when the model has gates). With
            the image method the network is then run on the lesion's crop as well, and
            ``probability`` is its probability there.
        keep: network component rule, see :func:`keep_tumour_component` and the module doc.
        min_component_cm3: for ``keep="all"``.
        overlap: sliding-window overlap fraction.
        body_crop: without a ROI, run only on the patient's in-plane bounding box
            (:func:`body_box`); the probability is 0 outside.
        lung_prior: without a seed or previous mask, prefer the component in the lung
            region (see the module doc).
        lesion_params: parameters of the image model (default :class:`mkunet.segmentation.lesion.LesionParams`).
        detection: parameters of the whole-volume detector (default
            :class:`mkunet.segmentation.candidates.DetectionParams`).
        uncertainty: ``"on"`` (default) estimates the volume's segmentation uncertainty
            (``Segmentation.uncertainty``: σ(ln V) and SE in cm³; :mod:`mkunet.segmentation.uncertainty`:
            the edge iso-level and the contact surface with the image model, the probability
            edge with the network; about 1 % of the segmentation's time); ``"off"`` skips it.
            The estimate never changes the mask.
        uncertainty_params: :class:`mkunet.segmentation.uncertainty.UncertaintyParams` (default values).
        progress: optional callback called with a step name as each step starts.

    Returns:
        :class:`Segmentation` on ``volume``'s grid.

    Raises:
        SeedError: (a ValueError) the seed lies outside the image, in air or in bone.
        ValueError: a malformed ROI or option.
    """
    if not isinstance(volume, Volume):
        raise ValueError(f"`volume` must be a mkunet Volume, got {type(volume).__name__} (use mkunet.io.read_volume).")
    resolved = resolve_method(method, roi)
    check_uncertainty(uncertainty)
    params = lesion_params or LesionParams()
    if isinstance(roi, Seed):
        roi_crop_box(volume, roi)  # malformed seeds and points outside the image fail here
        check_seed(volume, roi.index_zyx(volume), roi.describe(), params)  # in air or bone
    if resolved == "detect":
        seg, roi = _segment_detect(
            volume, model, clinical, params, detection,
            threshold=threshold, return_attention=return_attention, overlap=overlap, progress=progress,
        )  # fmt: skip
    else:
        seg = _segment_dispatch(
            volume, model, clinical, roi, resolved, params,
            threshold=threshold, return_attention=return_attention, keep=keep, min_component_cm3=min_component_cm3,
        overlap=overlap, body_crop=body_crop, lung_prior=lung_prior, progress=progress,
    )  # fmt: skip
    if uncertainty == "on" and not seg.empty:
        seg.uncertainty = _volume_uncertainty(seg, roi, params, uncertainty_params or UncertaintyParams())
        seg.timings["uncertainty"] = seg.uncertainty.seconds
        seg.timings["total"] = seg.timings.get("total", 0.0) + seg.uncertainty.seconds
    return seg


def _segment_detect(
    volume: Volume,
    model: Any,
    clinical: Any,
    params: LesionParams,
    detection: DetectionParams | None,
    *,
    threshold: float | None,
    return_attention: bool,
    overlap: float,
    progress: ProgressHook | None,
    tries: int = 3,
) -> tuple[Segmentation, Seed | None]:
    """Whole volume, image-driven: detect, then segment the best reportable candidate (see :func:`segment`).

    Returns the segmentation (its ``candidates`` set, ``roi`` naming the candidate) and the seed
    it came from (None when nothing was found).
    """
    from mkunet.segmentation.candidates import detect_lesions

    t0 = time.perf_counter()
    (progress or (lambda name: None))("detect")
    candidates = detect_lesions(volume, detection)
    seconds = time.perf_counter() - t0
    for cand in [c for c in candidates if c.reportable][: max(int(tries), 1)]:
        seed = Seed(tuple(float(v) for v in cand.centroid_zyx[::-1]), units="voxel")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                seg = _segment_image(
                    volume, seed, params, model=model, clinical=clinical, return_attention=return_attention,
                    overlap=overlap, threshold=threshold, progress=progress,
                )  # fmt: skip
        except SeedError:
            continue
        if seg.empty:
            continue
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=3)
        x, y, z = cand.centroid_mm
        seg.roi = f"whole volume: detected candidate #{cand.rank} at ({x:.1f}, {y:.1f}, {z:.1f}) mm"
        seg.notes.insert(0, f"whole volume: the lesion was detected ({cand.describe()}) and segmented from its centre")
        seg.candidates = candidates
        seg.timings["detect"] = seconds
        seg.timings["total"] = seg.timings.get("total", 0.0) + seconds
        return seg, seed
    reportable = sum(c.reportable for c in candidates)
    why = (
        "no candidate lesion found"
        if not candidates
        else f"{len(candidates)} candidate(s), none reportable"
        if not reportable
        else f"the lesion model found nothing at the {min(reportable, tries)} best candidate(s)"
    )
    warnings.warn(f"No tumour found in {volume!r} ({why}); the mask is empty.", UserWarning, stacklevel=3)
    seg = Segmentation(
        mask=np.zeros(volume.shape, bool),
        probability=np.zeros(volume.shape, np.float32),
        volume=volume,
        roi="whole volume",
        threshold=0.5,
        empty=True,
        notes=[f"no tumour found: {why}; the mask is empty"],
        timings={"detect": seconds, "total": time.perf_counter() - t0},
        method="image",
        candidates=candidates,
    )
    return seg, None


def _segment_dispatch(
    volume: Volume,
    model: Any,
    clinical: Any,
    roi: Roi | None,
    resolved: str,
    params: LesionParams,
    *,
    threshold: float | None,
    return_attention: bool,
    keep: Literal["component", "all", "none"],
    min_component_cm3: float,
    overlap: float,
    body_crop: bool,
    lung_prior: bool,
    progress: ProgressHook | None,
) -> Segmentation:
    """The method-specific part of :func:`segment` (arguments as there, validated)."""
    if resolved == "image":
        return _segment_image(
            volume,
            roi,
            params,
            model=model,
            clinical=clinical,
            return_attention=return_attention,
            overlap=overlap,
            threshold=threshold,
            progress=progress,
        )
    kwargs: dict[str, Any] = dict(
        threshold=threshold,
        return_attention=return_attention,
        keep=keep,
        min_component_cm3=min_component_cm3,
        overlap=overlap,
        body_crop=body_crop,
        lung_prior=lung_prior,
        progress=progress,
    )
    if not isinstance(roi, Seed):
        return _segment_network(volume, model, clinical, roi, **kwargs)
    # a seed: grow the cube while the tumour touches one of its faces
    size = NETWORK_SEED_CUBE_MM if roi.size_mm is None else float(roi.size_mm)
    largest = float(np.max(np.asarray(volume.shape) * np.asarray(volume.spacing))) * 2.0
    while True:
        trial = Seed(roi.point, units=roi.units, size_mm=size)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seg = _segment_network(volume, model, clinical, trial, **kwargs)
        if not seg.touches_roi_edge or size >= largest:
            for w in caught:
                warnings.warn(w.message, w.category, stacklevel=2)
            return seg
        size = min(size * 1.6, largest)


def _volume_uncertainty(seg: Segmentation, roi: Roi | None, params: LesionParams, up: UncertaintyParams):
    """The segmentation uncertainty of ``seg``'s volume (:mod:`mkunet.segmentation.uncertainty`).

    Image model: the HU edge term (iso-level SD = ``up.edge_fraction`` of the lesion-lung
    contrast), the contact term (the cut surface against tissue as dense as the lesion) and the
    click term (``up.click_shifts`` extra runs of the lesion model from
    other seeds inside the mask, clipped to a :class:`Box` like the first). Network: the
    probability edge term (threshold SD ``up.probability_delta``).
    """
    from mkunet.segmentation import uncertainty as unc

    t0 = time.perf_counter()
    volume = seg.volume
    n = int(np.count_nonzero(seg.mask))
    comps: dict[str, float] = {}
    notes: list[str] = []
    if seg.method == "image" and seg.lesion is not None:
        les = seg.lesion
        delta = up.edge_fraction * abs(les.hu_lesion - les.hu_lung)
        comps["edge"] = unc.edge_sigma(seg.mask, volume.array, les.threshold_hu, delta, up.band_voxels)
        comps["contact"] = unc.contact_sigma(seg.mask, volume.array, les.threshold_hu, up.contact_layers)
        if up.click_shifts > 0:
            rng = np.random.default_rng(up.seed)
            clip = roi_crop_box(volume, roi)[0] if isinstance(roi, Box) else None
            pairs = []
            for _ in range(int(up.click_shifts)):
                other_seed = unc.click_seed(seg.mask, volume.spacing, up.click_depth_mm, rng)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        other = segment_lesion(volume, other_seed, params, describe="second click").mask
                except SeedError:
                    other = np.zeros(volume.shape, bool)
                if clip is not None:
                    inside = np.zeros(volume.shape, bool)
                    inside[tuple(slice(a, b) for a, b in clip)] = True
                    other &= inside
                pairs.append(unc.click_sigma(n, int(np.count_nonzero(other))))
            comps["click"] = float(np.sqrt(np.mean(np.square(pairs))))
            if comps["click"] > 0.1:
                notes.append(
                    f"the volume depends on the click (sigma(ln V) {comps['click']:.2f} between two clicks): "
                    "check the contour"
                )
    elif seg.method == "network":
        comps["probability"] = unc.edge_sigma(
            seg.mask, seg.probability, seg.threshold, up.probability_delta, up.band_voxels
        )
    sigma = unc.combine(comps)
    vol = seg.volume_cm3
    return VolumeUncertainty(
        volume_cm3=vol,
        sigma_log_volume=sigma,
        se_cm3=sigma * vol,
        components=comps,
        seconds=time.perf_counter() - t0,
        notes=tuple(notes),
    )


def _seed_in_box(volume: Volume, box: BoxIdx, soft_hu: float = -400.0, bone_hu: float = 300.0) -> np.ndarray:
    """A seed for "the lesion is inside this box": the deepest soft-tissue voxel of the box's
    central part (inner 60 % of each side), depth measured inside the box so that tissue
    entering through a face (chest wall, mediastinum) is shallow. Returns (z, y, x) indices."""
    from scipy import ndimage

    sl = tuple(slice(a, b) for a, b in box)
    sub = volume.array[sl]
    dense = (sub >= soft_hu) & (sub <= bone_hu)
    padded = np.pad(dense, 1, constant_values=False)
    depth = ndimage.distance_transform_edt(padded, sampling=volume.spacing)[1:-1, 1:-1, 1:-1]
    central = np.zeros_like(dense)
    inner = tuple(
        slice(int(np.floor(0.2 * n)), max(int(np.floor(0.2 * n)) + 1, int(np.ceil(0.8 * n)))) for n in sub.shape
    )
    central[inner] = True
    score = np.where(central, depth, 0.0)
    if not score.any():
        raise SeedError(
            f"No soft tissue (>= {soft_hu:g} HU) in the central part of the box {box} (z, y, x voxels): the box "
            "should surround the lesion; enlarge or move it."
        )
    k = np.asarray(np.unravel_index(int(np.argmax(score)), sub.shape))
    return (k + np.array([a for a, _ in box])).astype(np.float64)


def _seed_in_mask(volume: Volume, mask: np.ndarray, soft_hu: float = -400.0) -> np.ndarray | None:
    """The deepest voxel of ``mask`` that is still soft tissue (>= ``soft_hu``) on ``volume``; None when none is."""
    from scipy import ndimage

    sl = ndimage.find_objects(mask.astype(np.uint8))[0] if mask.any() else None
    if sl is None:
        return None
    region = mask[sl] & (volume.array[sl] >= soft_hu)
    if not region.any():
        return None
    depth = ndimage.distance_transform_edt(region, sampling=volume.spacing)
    k = np.asarray(np.unravel_index(int(np.argmax(depth)), region.shape))
    return (k + np.array([s.start for s in sl])).astype(np.float64)


def _segment_image(
    volume: Volume,
    roi: Roi | None,
    params: LesionParams,
    *,
    model: Any,
    clinical: Any,
    return_attention: bool,
    overlap: float,
    threshold: float | None,
    progress: ProgressHook | None,
) -> Segmentation:
    """The image path of :func:`segment` (see there)."""
    t0 = time.perf_counter()
    step = progress or (lambda name: None)
    step("lesion model")
    notes: list[str] = []
    box_idx: BoxIdx | None = None
    if isinstance(roi, Seed):
        seed_zyx: np.ndarray | None = roi.index_zyx(volume)
    elif isinstance(roi, Box):
        box_idx, _ = roi_crop_box(volume, roi)
        seed_zyx = _seed_in_box(volume, box_idx)
        notes.append(f"box: the lesion was seeded at voxel (z, y, x) {np.rint(seed_zyx).astype(int).tolist()}")
    elif isinstance(roi, PreviousMask):
        seed_zyx = _seed_in_mask(volume, roi.on_grid(volume))
    else:  # pragma: no cover - resolve_method sends no-ROI calls to the detection
        raise ValueError(f"The image method needs a Seed, Box or PreviousMask, got {roi!r}.")
    describe = "whole volume" if roi is None else roi.describe()
    if seed_zyx is None:
        result = None
        mask = np.zeros(volume.shape, bool)
        notes.append("no soft tissue left inside the previous mask: the lesion is gone or moved (no tumour found)")
    else:
        result = segment_lesion(volume, seed_zyx, params, describe=describe)
        mask = result.mask
        notes.extend(result.notes)
        if box_idx is not None:
            inside = np.zeros(volume.shape, bool)
            inside[tuple(slice(a, b) for a, b in box_idx)] = True
            if (mask & ~inside).any():
                notes.append("the lesion was clipped to the box")
            mask = mask & inside
    timings = {"lesion": time.perf_counter() - t0}
    probability = mask.astype(np.float32)
    attention = None
    lvcr_used = None
    if return_attention and mask.any():
        # the network on the lesion's crop, for its probability and attention maps (the report shows them)
        step("network (attention)")
        (z0, z1), (y0, y1), (x0, x1) = result.crop_box if result is not None else box_idx  # type: ignore[misc]
        net = _segment_network(
            volume,
            model,
            clinical,
            Box((z0, z1), (y0, y1), (x0, x1)),
            threshold=threshold,
            return_attention=True,
            overlap=overlap,
            keep="none",
        )
        probability, attention, lvcr_used = net.probability, net.attention, net.lvcr_used
        timings["network"] = net.timings.get("total", float("nan"))
    empty = not mask.any()
    if empty:
        if "no tumour found" not in " ".join(notes):
            notes.append("no tumour found: the mask is empty")
        warnings.warn(f"No lesion found at the {describe} in {volume!r}; the mask is empty.", UserWarning, stacklevel=3)
    timings["total"] = time.perf_counter() - t0
    return Segmentation(
        mask=mask,
        probability=probability,
        volume=volume,
        attention=attention,
        lvcr_used=lvcr_used,
        roi=describe,
        roi_box=result.crop_box if result is not None else box_idx,
        threshold=0.5,
        empty=empty,
        notes=notes,
        timings=timings,
        method="image",
        lesion=result,
    )


def _segment_network(
    volume: Volume,
    model: Any = None,
    clinical: Mapping[str, Any] | Sequence[float] | np.ndarray | None = None,
    roi: Roi | None = None,
    *,
    threshold: float | None = None,
    return_attention: bool = False,
    keep: Literal["component", "all", "none"] = "component",
    min_component_cm3: float = 0.0,
    overlap: float = 0.25,
    body_crop: bool = True,
    lung_prior: bool = True,
    progress: ProgressHook | None = None,
) -> Segmentation:
    """The network path of :func:`segment` on one crop (see there for the arguments).

    Sets ``touches_roi_edge`` so that :func:`segment` can grow a seed's cube.
    """
    if not isinstance(volume, Volume):
        raise ValueError(f"`volume` must be a mkunet Volume, got {type(volume).__name__} (use mkunet.io.read_volume).")
    t0 = time.perf_counter()
    step = progress or (lambda name: None)
    step("load model")
    bundle = load_model(model)
    timings: dict[str, float] = {"load_model": time.perf_counter() - t0}
    notes: list[str] = []
    vector, lvcr_used = _clinical_vector(bundle, clinical, notes)
    thr = float(getattr(bundle, "threshold", 0.5) if threshold is None else threshold)
    if not 0.0 < thr < 1.0:
        raise ValueError(f"`threshold` must be in (0, 1), got {thr!r}.")

    box, previous = roi_crop_box(volume, roi)
    if roi is None and body_crop:
        box = body_box(volume)
    sub = _crop(volume, box)
    step("predict")
    t1 = time.perf_counter()
    result = predict_probability(
        bundle, sub, vector, overlap=overlap, sw_batch_size=1, return_attention=return_attention, timings=timings
    )
    prob_sub, att_sub = result if return_attention else (result, None)
    timings["predict"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    sl = tuple(slice(a, b) for a, b in box)
    if sub is volume:
        probability = prob_sub
    else:
        probability = np.zeros(volume.shape, np.float32)
        probability[sl] = prob_sub
    attention = None
    if return_attention:
        if att_sub is None:
            notes.append("the model has no attention gates: no attention maps")
        elif sub is volume:
            attention = att_sub
        else:
            attention = []
            for a in att_sub:
                full = np.zeros(volume.shape, np.float32)
                full[sl] = a
                attention.append(full)

    step("post-process")
    seed_zyx = roi.index_zyx(volume) if isinstance(roi, Seed) else None
    # component analysis on the crop only (zero outside it)
    sub_binary = prob_sub >= thr
    offset = np.array([a for a, _ in box], dtype=np.float64)
    region = None
    if lung_prior and keep == "component" and seed_zyx is None and previous is None and sub_binary.any():
        region = lung_region(volume.array, volume.spacing)[sl]  # whole scan: a small box crop cuts the lungs
    sub_mask = keep_tumour_component(
        sub_binary,
        volume.spacing,
        keep=keep,
        seed_zyx=None if seed_zyx is None else seed_zyx - offset,
        previous=None if previous is None else previous[sl],
        min_component_cm3=min_component_cm3,
        probability=prob_sub,
        region=region,
    )
    mask = np.zeros(volume.shape, bool)
    mask[sl] = sub_mask
    candidates: list[Any] = []
    if roi is None and keep == "component" and sub_binary.any():  # whole volume: the ranked candidates
        from mkunet.segmentation.candidates import list_candidates

        full_region = None
        if region is not None:
            full_region = np.zeros(volume.shape, bool)
            full_region[sl] = region
        candidates = list_candidates(volume, probability, threshold=thr, region=full_region)
    timings["postprocess"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0

    touches = roi is not None and sub_mask.any() and _touches_inner_face(sub_mask, box, volume.shape)
    if touches:
        notes.append(
            f"the tumour reaches the edge of the region of interest {box} (z, y, x voxels): it may be cut; "
            "enlarge the ROI (e.g. --seed-size-mm) or run on the whole volume"
        )
        warnings.warn(
            f"Segmentation touches the edge of the {roi.describe()}: the tumour may be cut off.",
            UserWarning,
            stacklevel=2,
        )
    if isinstance(roi, PreviousMask) and previous is not None and not previous.any():
        notes.append("the previous mask is empty: ran on the whole volume")
    empty = not mask.any()
    if empty:
        notes.append("no tumour found: the mask is empty")
        warnings.warn(
            f"No tumour found in {volume!r} (no voxel with probability >= {thr:g}"
            f"{' inside the ' + roi.describe() if roi is not None else ''}); the mask is empty.",
            UserWarning,
            stacklevel=2,
        )
    return Segmentation(
        mask=mask,
        probability=probability,
        volume=volume,
        attention=attention,
        lvcr_used=lvcr_used,
        roi="whole volume" if roi is None else roi.describe(),
        roi_box=box,
        threshold=thr,
        empty=empty,
        notes=notes,
        timings=timings,
        method="network",
        touches_roi_edge=bool(touches),
        candidates=candidates,
    )


def _touches_inner_face(sub_mask: np.ndarray, box: BoxIdx, shape: Sequence[int]) -> bool:
    """True when the cropped mask touches a crop face that is not the volume's own border."""
    for axis, ((lo, hi), n) in enumerate(zip(box, shape)):
        first = np.take(sub_mask, 0, axis=axis)
        last = np.take(sub_mask, sub_mask.shape[axis] - 1, axis=axis)
        if (lo > 0 and first.any()) or (hi < n and last.any()):
            return True
    return False


# ----------------------------------------------------------------------------- fixed-point LVCR


def _estimate_lvcr(days: Sequence[float], segs: Sequence[Segmentation], weights: str = "interval") -> float:
    """LVCR (/day) of the segmentations by the one definition, :func:`mkunet.analysis.kinetics.lvcr_from_masks`.

    Mesh volumes (as the pipeline's ``volume_cm3``) and the user's ``weights`` (``lvcr_weights``).
    """
    from mkunet.analysis.kinetics import lvcr_from_masks

    result = lvcr_from_masks(list(days), [s.mask for s in segs], [s.volume.spacing for s in segs], weights=weights)  # type: ignore[arg-type]
    return float(result.lvcr_per_day)


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
    k = _seed_in_mask(seg.volume, seg.mask, soft_hu=-np.inf)
    return seg.volume.index_to_physical(k if k is not None else np.argwhere(seg.mask).mean(0))


def _follow_lesion(
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
    radius = (3.0 * baseline.volume_cm3 * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0) + 3.0
    sp = np.asarray(followup.spacing)
    r_vox = np.ceil(radius / sp).astype(int)
    c = np.clip(np.rint(idx).astype(int), 0, np.asarray(followup.shape) - 1)
    lo, hi = np.maximum(c - r_vox, 0), np.minimum(c + r_vox + 1, followup.shape)
    sub = followup.array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    t = baseline.lesion.threshold_hu if baseline.lesion is not None else -400.0
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
    return Seed(tuple(float(v) for v in seed_xyz)), TrackedLesion(point, True, kind, notes, reg), mapped_mask


def _grown_box(mask: np.ndarray, pad: int | np.ndarray) -> tuple[slice, ...]:
    """The bounding box of a non-empty bool (z, y, x) mask grown by ``pad`` voxels per axis, clipped."""
    from scipy import ndimage

    pads = np.broadcast_to(np.asarray(pad, dtype=int), (3,))
    (bbox,) = ndimage.find_objects(mask.astype(np.uint8))
    return tuple(slice(max(0, b.start - q), min(n, b.stop + q)) for b, q, n in zip(bbox, pads, mask.shape))


def _same_lesion(seg: Segmentation, mapped: np.ndarray | None, margin_mm: float = 5.0) -> bool:
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
    return covered >= 0.2 or inside >= 0.5


@canonical_orientation("volumes", roi="rois")  # orientation hook: runs on the LPS grid, answers on the user's
def segment_timepoints(
    volumes: Sequence[Volume],
    days: Sequence[float],
    model: Any = None,
    clinical: Mapping[str, Any] | None = None,
    rois: Sequence[Roi | None] | None = None,
    *,
    method: Literal["auto", "image", "network"] = "auto",
    tracking: Literal["register", "none"] = "register",
    tol: float = 1e-4,
    max_iter: int = 5,
    previous_mask_roi: bool = False,
    margin_mm: float = 15.0,
    lvcr_weights: Literal["interval", "inverse_variance", "uniform"] = "interval",
    **segment_kwargs: Any,
) -> LongitudinalSegmentation:
    """Segment one patient's timepoints: the same lesion in every scan, LVCR by fixed point when needed.

    **Tracking.** When the first timepoint has a :class:`Seed` or :class:`Box` and a later
    one has no ROI, the lesion found on the first scan is followed (with no ROI at all and the
    whole-volume detection of :func:`segment`, the detected lesion's centre is the baseline's seed,
    and the baseline keeps the ranked ``candidates``): each later scan is
    registered to the first (``tracking="register"``: :func:`mkunet.segmentation.register.register`,
    global rigid + affine, then a local stage around the lesion), the lesion's core is
    mapped into it and segmented from there. Where nothing is found at the mapped
    position, or the object found there is not the lesion (it neither covers 20 % of the
    mapped baseline mask nor lies half within 5 mm of it, e.g. a vessel where a nodule
    was), the timepoint's mask is empty and a note says "lesion not found" (a complete
    response, or a lesion lost). ``tracking="none"`` maps by scanner coordinates and warns
    when the scans' FrameOfReferenceUIDs differ. ``LongitudinalSegmentation.tracked`` holds
    one :class:`TrackedLesion` per timepoint (None where not tracked).

    **LVCR.** The network takes the LVCR as an input. When the network is used (``method``
    resolves to ``"network"`` somewhere), the clinical values give no LVCR and there are
    two timepoints or more, it is estimated by fixed-point iteration (SPEC "LVCR"):

    1. pass 0: segment every timepoint with LVCR unknown (encoder default), get
       volumes V_i (cm^3) and L_0 = LVCR(days, V) (:func:`mkunet.analysis.kinetics.lvcr`, per day);
    2. pass k >= 1: segment again with LVCR = L_{k-1}, estimate L_k from the new volumes;
    3. stop when |L_k - L_{k-1}| < ``tol`` (per day) or after ``max_iter`` passes
       after pass 0 (then ``converged`` is False and a warning is issued).

    The image method does not use the LVCR: one pass, and ``lvcr_per_day`` is estimated
    from its volumes. An empty segmentation at any timepoint stops the estimate (no LVCR
    from a zero volume), with a note.

    Args:
        volumes: the CTs in time order.
        days: scan times in days since the first scan (strictly increasing).
        model: as in :func:`segment`.
        clinical: the patient's clinical mapping (``lvcr`` may be absent / None).
        rois: one ROI (or None) per timepoint; ``[Seed(...), None, None]`` = one click on
            the baseline, tracked.
        method: as in :func:`segment`.
        tracking: ``"register"`` (default) or ``"none"`` (above).
        tol: convergence tolerance on LVCR (per day).
        max_iter: maximum passes after the first.
        previous_mask_roi: without a baseline seed or box (the whole-volume path), use
            timepoint k-1's mask grown by ``margin_mm`` as timepoint k's ROI (voxel
            correspondence by scanner coordinates). Refinement passes also restrict each
            timepoint to its own previous-pass mask grown by ``margin_mm``.
        lvcr_weights: weights of the LVCR estimate (:func:`mkunet.analysis.kinetics.lvcr_from_masks`:
            mesh volumes, as the pipeline's kinetics).
        **segment_kwargs: passed to :func:`segment` (threshold, keep, return_attention, ...).
    """
    volumes = list(volumes)
    days_list = [float(d) for d in days]
    if len(days_list) != len(volumes):
        raise ValueError(f"{len(volumes)} volumes but {len(days_list)} `days` values: give one day per timepoint.")
    if not volumes:
        raise ValueError("`volumes` is empty: give at least one timepoint.")
    if any(b <= a for a, b in zip(days_list, days_list[1:])):
        raise ValueError(f"`days` must be strictly increasing (days since the first scan), got {days_list}.")
    if rois is not None and len(rois) != len(volumes):
        raise ValueError(f"{len(volumes)} volumes but {len(rois)} `rois`: give one ROI (or None) per timepoint.")
    if not tol > 0 or max_iter < 0:
        raise ValueError(f"`tol` must be > 0 and `max_iter` >= 0, got tol={tol!r}, max_iter={max_iter!r}.")
    check_method(method)
    if tracking not in TRACKING:
        raise ValueError(f"`tracking` must be one of {', '.join(TRACKING)}; got {tracking!r}.")
    roi_list: list[Roi | None] = list(rois) if rois is not None else [None] * len(volumes)
    params = segment_kwargs.get("lesion_params") or LesionParams()
    for k, roi in enumerate(roi_list):  # bad seeds stop everything before any work
        if isinstance(roi, Seed):
            roi_crop_box(volumes[k], roi)
            check_seed(volumes[k], roi.index_zyx(volumes[k]), f"{roi.describe()} of timepoint {k}", params)
    detected: Segmentation | None = None
    if roi_list[0] is None and len(volumes) > 1 and resolve_method(method, None) == "detect":
        # whole volume: detect and segment the lesion on the baseline once, then follow it as if clicked there
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = segment(volumes[0], model, clinical, None, method=method, **segment_kwargs)
        if not first.empty:  # (nothing found: every timepoint runs as without tracking, and warns there)
            detected = first
            for w in caught:
                warnings.warn(w.message, w.category, stacklevel=2)
    track = (isinstance(roi_list[0], (Seed, Box)) or detected is not None) and len(volumes) > 1
    # tracked follow-ups are seeded, so they run what a seed runs, like the baseline
    uses_network = any(resolve_method(method, r) == "network" for r in (roi_list[:1] if track else roi_list))
    bundle = load_model(model) if uses_network or segment_kwargs.get("return_attention") else model
    base = dict(clinical or {})
    notes: list[str] = []
    if detected is not None:
        notes.append(f"{detected.roi}; the lesion is followed into the later scans")
    tracked: list[TrackedLesion | None] = [None] * len(volumes)
    follow_rois: dict[int, Seed | None] = {}
    mapped_masks: dict[int, np.ndarray | None] = {}

    def one_pass(lvcr_in: float | None, earlier: Sequence[Segmentation] = ()) -> list[Segmentation]:
        segs: list[Segmentation] = []
        clin = dict(base, lvcr=lvcr_in) if (base or lvcr_in is not None) else None
        for k, vol in enumerate(volumes):
            roi = roi_list[k]
            if k == 0 and detected is not None:  # the image path ignores the LVCR: the same in every pass
                segs.append(detected)
                continue
            if roi is None and track and k > 0:
                if k not in follow_rois:  # register once; later passes reuse the mapping
                    follow_rois[k], tracked[k], mapped_masks[k] = _follow_lesion(
                        segs[0], vol, tracking=tracking, params=params
                    )
                seed = follow_rois[k]
                if seed is None:
                    segs.append(_not_found(vol, tracked[k]))
                    continue
                seg = segment(vol, bundle, clin, seed, method=method, **segment_kwargs)
                if not _same_lesion(seg, mapped_masks[k]):
                    tracked[k].found = False  # type: ignore[union-attr]
                    tracked[k].notes.append("the object at the tracked position is not the lesion")  # type: ignore[union-attr]
                    seg = _not_found(vol, tracked[k], seg)
                segs.append(seg)
                continue
            if roi is None and previous_mask_roi and earlier and not earlier[k].empty:
                roi = PreviousMask(earlier[k].mask, vol, margin_mm=margin_mm)
            elif roi is None and previous_mask_roi and k > 0 and not segs[-1].empty:
                roi = PreviousMask(segs[-1].mask, volumes[k - 1], margin_mm=margin_mm)
                if volumes[k - 1].frame_of_reference_uid != vol.frame_of_reference_uid:
                    msg = (
                        f"timepoint {k}: FrameOfReferenceUID differs from timepoint {k - 1}'s and no registration "
                        "was done: the previous mask is placed by scanner coordinates"
                    )
                    if msg not in notes:
                        notes.append(msg)
                        warnings.warn(msg, UserWarning, stacklevel=3)
            segs.append(segment(vol, bundle, clin, roi, method=method, **segment_kwargs))
        return segs

    given = base.get("lvcr")
    given_ok = given is not None and not is_missing(given)
    fixed_point = (
        uses_network and not given_ok and len(volumes) >= 2 and getattr(bundle, "clinical_encoder", None) is not None
    )
    if not fixed_point:
        if len(volumes) < 2 and not given_ok:
            notes.append("a single timepoint: LVCR cannot be estimated")
        segs = one_pass(float(given) if given_ok else None)
        lvcr_est = None
        if len(volumes) >= 2 and not given_ok and all(not s.empty for s in segs):
            lvcr_est = _estimate_lvcr(days_list, segs, lvcr_weights)
        elif len(volumes) >= 2 and not given_ok:
            notes.append("no lesion at some timepoint: LVCR not estimated")
        return LongitudinalSegmentation(segs, days_list, lvcr_est, True, [], notes, tracked)

    from mkunet.analysis.kinetics import mask_volume_cm3

    trace: list[dict[str, Any]] = []
    lvcr_in: float | None = None
    converged = False
    segs = []
    for iteration in range(max_iter + 1):
        segs = one_pass(lvcr_in, segs)
        vols = [mask_volume_cm3(s.mask, s.volume.spacing) for s in segs]  # the LVCR's volume measure (mesh)
        entry: dict[str, Any] = {"iteration": iteration, "lvcr_in": lvcr_in, "volumes_cm3": vols}
        if any(s.empty for s in segs):
            empty_tp = [k for k, s in enumerate(segs) if s.empty]
            notes.append(f"no tumour at timepoint(s) {empty_tp}: LVCR cannot be estimated; iteration stopped")
            entry.update(lvcr_out=None, change=None)
            trace.append(entry)
            warnings.warn(
                f"Fixed-point LVCR stopped: empty segmentation at timepoint(s) {empty_tp}.", UserWarning, stacklevel=2
            )
            return LongitudinalSegmentation(segs, days_list, None, False, trace, notes, tracked)
        lvcr_out = _estimate_lvcr(days_list, segs, lvcr_weights)
        change = None if lvcr_in is None else abs(lvcr_out - lvcr_in)
        entry.update(lvcr_out=lvcr_out, change=change)
        trace.append(entry)
        logger.info("fixed-point LVCR pass %d: in=%s out=%.6g /day change=%s", iteration, lvcr_in, lvcr_out, change)
        if change is not None and change < tol:
            converged = True
            break
        lvcr_in = lvcr_out
    lvcr_final = trace[-1]["lvcr_out"]
    if not converged:
        notes.append(f"LVCR did not settle within {max_iter} passes (last change {trace[-1]['change']})")
        warnings.warn(
            f"Fixed-point LVCR did not converge to tol={tol:g}/day in {max_iter} passes; last change "
            f"{trace[-1]['change']}/day. Returning the last pass.",
            UserWarning,
            stacklevel=2,
        )
    return LongitudinalSegmentation(segs, days_list, lvcr_final, converged, trace, notes, tracked)


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


# ----------------------------------------------------------------------------- outputs


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
        "volume_cm3": segmentation.volume_cm3,
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
