"""The network path of :func:`mkunet.segmentation.infer.segment` (``method="network"``).

All outputs are on the *input* grid::

    Volume (z, y, x) HU ──► ROI crop (Box / Seed / PreviousMask; without a ROI the
                            patient's in-plane bounding box, see body_box)
        ──► resample crop to bundle.target_spacing (float32, linear, SimpleITK)
        ──► bundle.preprocessor  ──► (C, z, y, x) float32
        ──► MONAI sliding window (patch = bundle.patch_size, overlap 0.25,
            gaussian blending of the *probabilities*)
        ──► resample back onto the crop, paste into a zero map of the input's shape
        ──► threshold (bundle.threshold unless given) ──► keep the tumour component

With a :class:`~mkunet.segmentation.prompts.Seed` the crop is a cube around it
(:data:`~mkunet.segmentation.prompts.NETWORK_SEED_CUBE_MM` unless the seed gives ``size_mm``)
that grows by 1.6x while the kept tumour touches one of its faces (:func:`segment_network`).

Component rule (``keep="component"``, the default; 26-connectivity):

* ``Seed`` ROI: the connected component containing the seed voxel; if the seed
  lies outside every component, the component with the voxel nearest to the seed
  (distance in mm; :func:`mkunet.segmentation.components.component_at`).
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
rate (per day); :func:`mkunet.segmentation.infer.segment_timepoints` estimates it when it is
unknown, by a fixed-point iteration over a patient's timepoints.

Axis conventions: arrays (z, y, x); spacings (z, y, x) in mm; physical points and
origins (x, y, z) in mm (DICOM LPS), see :mod:`mkunet.volume`.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from mkunet.models.bundle import predict_probability
from mkunet.segmentation.components import component_at, nearest_component
from mkunet.segmentation.lung import lung_region
from mkunet.segmentation.prompts import (
    NETWORK_SEED_CUBE_MM,
    BoxIdx,
    PreviousMask,
    Roi,
    Seed,
    body_box,
    crop_volume,
    describe_voxel_box,
    roi_crop_box,
)
from mkunet.segmentation.results import Segmentation
from mkunet.utils import is_missing
from mkunet.volume import Volume

__all__ = [
    "load_model",
    "clinical_vector",
    "KEEP_RULES",
    "check_keep",
    "keep_tumour_component",
    "segment_network",
    "predict_probability",
]

ProgressHook = Callable[[str], None]

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


def clinical_vector(bundle: Any, clinical: Any, notes: list[str]) -> tuple[np.ndarray | None, float | None]:
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
    seed_zyx: Sequence[float] | np.ndarray | None = None,
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

    chosen: int
    if seed_zyx is not None:
        chosen = component_at(labels, np.asarray(seed_zyx, dtype=np.float64), spacing_arr)
    elif previous is not None and np.any(previous):
        overlap = np.bincount(labels[np.asarray(previous, bool)], minlength=n + 1)
        overlap[0] = 0
        if overlap.max() > 0:
            chosen = int(np.argmax(overlap))
        else:
            chosen = nearest_component(labels, np.argwhere(previous).mean(axis=0), spacing_arr)
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


# ----------------------------------------------------------------------------- the network path


def segment_network(
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
    """The network path of :func:`mkunet.segmentation.infer.segment` (see there for the arguments).

    With a :class:`~mkunet.segmentation.prompts.Seed`, the cube around it grows by 1.6x (up to
    twice the scan's largest extent) while the kept tumour touches one of its faces; the
    warnings of the last run only are issued.
    """
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
        return _segment_crop(volume, model, clinical, roi, **kwargs)
    size = NETWORK_SEED_CUBE_MM if roi.size_mm is None else float(roi.size_mm)
    largest = float(np.max(np.asarray(volume.shape) * np.asarray(volume.spacing))) * 2.0
    while True:
        trial = Seed(roi.point, units=roi.units, size_mm=size)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seg = _segment_crop(volume, model, clinical, trial, **kwargs)
        if not seg.touches_roi_edge or size >= largest:
            for w in caught:
                warnings.warn(w.message, w.category, stacklevel=2)
            return seg
        size = min(size * 1.6, largest)


def _segment_crop(
    volume: Volume,
    model: Any,
    clinical: Any,
    roi: Roi | None,
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
    """The network on one crop: load, predict, keep the tumour, report (sets ``touches_roi_edge``)."""
    if not isinstance(volume, Volume):
        raise ValueError(f"`volume` must be a mkunet Volume, got {type(volume).__name__} (use mkunet.io.read_volume).")
    t0 = time.perf_counter()
    step = progress or (lambda name: None)
    step("load model")
    bundle = load_model(model)
    timings: dict[str, float] = {"load_model": time.perf_counter() - t0}
    notes: list[str] = []
    vector, lvcr_used = clinical_vector(bundle, clinical, notes)
    thr = float(getattr(bundle, "threshold", 0.5) if threshold is None else threshold)
    if not 0.0 < thr < 1.0:
        raise ValueError(f"`threshold` must be in (0, 1), got {thr!r}.")

    box, previous = roi_crop_box(volume, roi)
    if roi is None and body_crop:
        box = body_box(volume)
    step("predict")
    prob_sub, probability, attention = _predict_on_box(
        bundle, volume, box, vector, overlap=overlap, return_attention=return_attention, timings=timings, notes=notes
    )

    step("post-process")
    t2 = time.perf_counter()
    sub_mask, region = _kept_component(
        volume, box, prob_sub, thr, roi, previous, keep=keep, min_component_cm3=min_component_cm3, lung_prior=lung_prior
    )
    mask = np.zeros(volume.shape, bool)
    mask[tuple(slice(a, b) for a, b in box)] = sub_mask
    candidates: list[Any] = []
    if roi is None and keep == "component" and bool(np.any(prob_sub >= thr)):  # whole volume: the ranked candidates
        candidates = _whole_volume_candidates(volume, box, probability, thr, region)
    timings["postprocess"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0

    touches = roi is not None and sub_mask.any() and _touches_inner_face(sub_mask, box, volume.shape)
    _report_network(notes, volume, roi, box, previous, thr, touches=bool(touches), empty=not mask.any())
    return Segmentation(
        mask=mask,
        probability=probability,
        volume=volume,
        attention=attention,
        lvcr_used=lvcr_used,
        roi="whole volume" if roi is None else roi.describe(),
        roi_box=box,
        threshold=thr,
        empty=not mask.any(),
        notes=notes,
        timings=timings,
        method="network",
        touches_roi_edge=bool(touches),
        candidates=candidates,
    )


def _predict_on_box(
    bundle: Any,
    volume: Volume,
    box: BoxIdx,
    vector: np.ndarray | None,
    *,
    overlap: float,
    return_attention: bool,
    timings: dict[str, float],
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]:
    """The network's probability on ``box``: (on the crop, on ``volume``'s grid (0 outside), attention maps)."""
    sub = crop_volume(volume, box)
    t1 = time.perf_counter()
    result = predict_probability(
        bundle, sub, vector, overlap=overlap, sw_batch_size=1, return_attention=return_attention, timings=timings
    )
    prob_sub, att_sub = cast(tuple[np.ndarray, Any], result) if return_attention else (cast(np.ndarray, result), None)
    timings["predict"] = time.perf_counter() - t1
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
    return prob_sub, probability, attention


def _kept_component(
    volume: Volume,
    box: BoxIdx,
    prob_sub: np.ndarray,
    thr: float,
    roi: Roi | None,
    previous: np.ndarray | None,
    *,
    keep: Literal["component", "all", "none"],
    min_component_cm3: float,
    lung_prior: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The component rule on the crop: (kept mask on the crop, lung region on the crop or None)."""
    sl = tuple(slice(a, b) for a, b in box)
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
    return sub_mask, region


def _whole_volume_candidates(
    volume: Volume, box: BoxIdx, probability: np.ndarray, thr: float, region: np.ndarray | None
) -> list[Any]:
    """The network's connected components, ranked (:func:`mkunet.segmentation.candidates.list_candidates`)."""
    from mkunet.segmentation.candidates import list_candidates

    full_region = None
    if region is not None:
        full_region = np.zeros(volume.shape, bool)
        full_region[tuple(slice(a, b) for a, b in box)] = region
    return list_candidates(volume, probability, threshold=thr, region=full_region)


def _report_network(
    notes: list[str],
    volume: Volume,
    roi: Roi | None,
    box: BoxIdx,
    previous: np.ndarray | None,
    thr: float,
    *,
    touches: bool,
    empty: bool,
) -> None:
    """The notes and warnings of a network run: a tumour cut by the crop, an empty previous mask, no tumour."""
    if touches:
        notes.append(
            f"the tumour reaches the edge of the region of interest {describe_voxel_box(box)}: it may be cut; "
            "enlarge the ROI (e.g. --seed-size-mm) or run on the whole volume"
        )
        warnings.warn(
            f"Segmentation touches the edge of the {roi.describe()}: the tumour may be cut off.",  # type: ignore[union-attr]
            UserWarning,
            stacklevel=3,
        )
    if isinstance(roi, PreviousMask) and previous is not None and not previous.any():
        notes.append("the previous mask is empty: ran on the whole volume")
    if empty:
        notes.append("no tumour found: the mask is empty")
        warnings.warn(
            f"No tumour found in {volume!r} (no voxel with probability >= {thr:g}"
            f"{' inside the ' + roi.describe() if roi is not None else ''}); the mask is empty.",
            UserWarning,
            stacklevel=3,
        )


def _touches_inner_face(sub_mask: np.ndarray, box: BoxIdx, shape: Sequence[int]) -> bool:
    """True when the cropped mask touches a crop face that is not the volume's own border."""
    for axis, ((lo, hi), n) in enumerate(zip(box, shape)):
        first = np.take(sub_mask, 0, axis=axis)
        last = np.take(sub_mask, sub_mask.shape[axis] - 1, axis=axis)
        if (lo > 0 and first.any()) or (hi < n and last.any()):
            return True
    return False
