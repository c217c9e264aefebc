"""Inference: segment a lung tumour in a CT volume (the entry points).

Methods of :func:`segment` (``method=``, :data:`METHODS`):

* ``"auto"`` (default) runs the image-driven lesion model of :mod:`mkunet.segmentation.lesion`
  when there is a seed, a box or a previous mask (measured better on real CT: docs/segmentation.md
  "One click"), and for the whole volume the image-driven detector of
  :func:`mkunet.segmentation.candidates.detect_lesions` followed by the lesion model at the best
  candidate (docs/segmentation.md "Whole volume"); see :mod:`mkunet.segmentation.image_path`.
* ``"network"`` runs the trained network (:mod:`mkunet.segmentation.network`: the pipeline,
  the component rule).

``"image"`` (the former name of ``"auto"``, which did the same) is refused with a ValueError
that says to use ``"auto"``.

**No silently ignored option.** The network's options (``threshold``, ``keep``,
``min_component_cm3``, ``overlap``, ``body_crop``, ``lung_prior``, a :class:`Seed`'s
``size_mm``) do not apply to ``method="auto"``: given a value other than the default with
``"auto"``, :func:`segment` raises a ValueError that says why and what to do
(:func:`check_options`); ``overlap`` applies to ``"auto"`` with ``return_attention=True``
(the network then runs on the lesion's crop). ``min_component_cm3`` applies to ``keep="all"``
only, ``lung_prior=False`` to ``keep="component"`` only, ``detection`` to ``"auto"`` only and
``uncertainty_params`` to ``uncertainty="on"`` only. Options that apply to the method but not
to the region of interest are documented where they are (``body_crop`` and ``lung_prior``
act on whole-volume network runs; a :class:`PreviousMask`'s ``margin_mm`` on its network crop),
so that :func:`segment_timepoints` can pass one set of options to timepoints with and without
a region of interest.

:func:`segment_timepoints` follows a lesion clicked (or detected) on the baseline into later
scans by registration (:mod:`mkunet.segmentation.tracking`, :mod:`mkunet.segmentation.register`)
and estimates the LVCR the network takes by a fixed point when it is unknown.

Where things are: the prompts (:class:`Seed`, :class:`Box`, :class:`PreviousMask`,
:func:`roi_crop_box`, :func:`body_box`) in :mod:`mkunet.segmentation.prompts`; the results
(:class:`Segmentation`, :class:`LongitudinalSegmentation`, :func:`save_segmentation`,
:func:`segmentation_summary`, :func:`check_formats`, :func:`is_dicom_volume`, :data:`FORMATS`) in
:mod:`mkunet.segmentation.results`; the network (:func:`load_model`,
:func:`keep_tumour_component`, :data:`KEEP_RULES`, :func:`check_keep`) in
:mod:`mkunet.segmentation.network`; the tracking (:class:`TrackedLesion`, :data:`TRACKING`) in
:mod:`mkunet.segmentation.tracking`. **This module re-exports those names** (and
:class:`~mkunet.segmentation.lesion.SeedError`, :class:`~mkunet.segmentation.lesion.LesionParams`,
:func:`~mkunet.segmentation.lesion.check_seed`) so that ``from mkunet.segmentation.infer import
Seed, segment_timepoints`` keeps working; code of the package imports them from the defining
module, and so should a monkeypatch (``mkunet.segmentation.network.load_model`` is where every path
loads the model).

Axis conventions: arrays (z, y, x); spacings (z, y, x) in mm; physical points and
origins (x, y, z) in mm (DICOM LPS), see :mod:`mkunet.volume`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from mkunet.segmentation import network as _network
from mkunet.segmentation.candidates import DetectionParams
from mkunet.segmentation.image_path import segment_detect, segment_image
from mkunet.segmentation.lesion import LesionParams, SeedError, check_seed, segment_lesion
from mkunet.segmentation.network import (
    KEEP_RULES,
    check_keep,
    keep_tumour_component,
    load_model,
    predict_probability,
    segment_network,
)
from mkunet.segmentation.orientation import canonical_orientation
from mkunet.segmentation.prompts import Box, PreviousMask, Roi, Seed, body_box, roi_crop_box
from mkunet.segmentation.results import (
    FORMATS,
    LongitudinalSegmentation,
    Segmentation,
    check_formats,
    is_dicom_volume,
    save_segmentation,
    segmentation_summary,
)
from mkunet.segmentation.tracking import TRACKING, TimepointPasses, TrackedLesion, fixed_point, single_pass
from mkunet.segmentation.uncertainty import UncertaintyParams, VolumeUncertainty, check_uncertainty
from mkunet.utils import is_missing
from mkunet.volume import Volume

__all__ = [
    "segment",
    "segment_timepoints",
    "METHODS",
    "NETWORK_DEFAULTS",
    "check_method",
    "check_options",
    "resolve_method",
    # re-exported from the defining modules (module doc)
    "Box",
    "Seed",
    "PreviousMask",
    "Segmentation",
    "LongitudinalSegmentation",
    "TRACKING",
    "TrackedLesion",
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

METHODS = ("auto", "network")
"""Segmentation methods of :func:`segment` (see the module doc)."""

NETWORK_DEFAULTS: dict[str, Any] = {
    "threshold": None,
    "keep": "component",
    "min_component_cm3": 0.0,
    "overlap": 0.25,
    "body_crop": True,
    "lung_prior": True,
}
"""The network's options of :func:`segment` and their defaults (any other value needs ``method="network"``)."""

ProgressHook = Callable[[str], None]

# ----------------------------------------------------------------------------- options


def check_method(method: str) -> str:
    """Return ``method`` if it is one of :data:`METHODS`, else raise a ValueError quoting it."""
    if method == "image":
        raise ValueError(
            "`method='image'` is no longer a method: it did what method='auto' does (the image lesion model "
            "from a seed, box or previous mask; detection then the lesion model for the whole volume). "
            "Use method='auto' (CLI: --method auto)."
        )
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}.")
    return method


def resolve_method(method: str, roi: Roi | None) -> str:
    """The path :func:`segment` runs: ``"image"``, ``"detect"`` or ``"network"``.

    ``"auto"`` is the image-driven lesion model (``"image"``) when there is a seed, a box or a
    previous mask to start from, and ``"detect"`` for the whole volume: the image-driven detector
    (:func:`mkunet.segmentation.candidates.detect_lesions`) finds the lesion and the lesion model
    segments it from the top candidate (both measured better on real CT than the network:
    docs/segmentation.md); ``"network"`` forces the network.
    """
    check_method(method)
    if method == "network":
        return "network"
    if roi is None:
        return "detect"
    return "image"


def check_options(
    method: str,
    *,
    return_attention: bool = False,
    detection: DetectionParams | None = None,
    uncertainty: str = "on",
    uncertainty_params: UncertaintyParams | None = None,
    roi: Roi | None = None,
    names: Mapping[str, str] | None = None,
    **network: Any,
) -> None:
    """Refuse an option of :func:`segment` that would be ignored (module doc, "No silently ignored option").

    Args:
        method: ``"auto"`` or ``"network"``.
        return_attention, detection, uncertainty, uncertainty_params, roi: as in :func:`segment`.
        names: how to name an option in the message (e.g. ``{"keep": "--keep"}`` for a CLI);
            default its argument name.
        **network: the network's options as given (keys of :data:`NETWORK_DEFAULTS`).

    Raises:
        ValueError: the method is unknown, or an option given a non-default value does not apply;
            the message says why and what to do.
    """
    check_method(method)
    unknown = sorted(set(network) - set(NETWORK_DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown}: the network's options are {', '.join(NETWORK_DEFAULTS)}.")
    shown = {
        **{k: k for k in (*NETWORK_DEFAULTS, "method", "size_mm", "detection", "uncertainty_params")},
        **(names or {}),
    }
    given = {k: v for k, v in network.items() if v is not None and v != NETWORK_DEFAULTS[k]}
    if "keep" in network:
        check_keep(network["keep"])
    if method == "network":
        if detection is not None:
            raise ValueError(
                f"`{shown['detection']}` applies to {shown['method']}='auto' only (the image-driven detector); "
                f"{shown['method']}='network' finds the tumour with the network: drop it, or pass "
                f"{shown['method']}='auto'."
            )
        keep = network.get("keep", "component")
        if "min_component_cm3" in given and keep != "all":
            raise ValueError(
                f"`{shown['min_component_cm3']}={given['min_component_cm3']!r}` applies to {shown['keep']}='all' only "
                f"(the smallest component kept); {shown['keep']}={keep!r} keeps "
                + ("one component" if keep == "component" else "the thresholded map")
                + f": drop it, or pass {shown['keep']}='all'."
            )
        if "lung_prior" in given and keep != "component":
            raise ValueError(
                f"`{shown['lung_prior']}={given['lung_prior']!r}` applies to {shown['keep']}='component' only (the "
                f"choice of one component); {shown['keep']}={keep!r} chooses none: drop it."
            )
    else:
        _check_auto_options(given, shown, return_attention=return_attention, roi=roi)
    if uncertainty_params is not None and uncertainty == "off":
        raise ValueError(
            f"`{shown['uncertainty_params']}` applies with uncertainty='on' only; uncertainty='off' skips the "
            "estimate: drop one of them."
        )


_AUTO_REASONS = {
    "threshold": "the network's probability threshold; the image lesion model's edge is a HU iso-level (LesionParams)",
    "keep": "the network's component rule; the image lesion model keeps the lesion at the click (or at the "
    "detected candidate)",
    "min_component_cm3": "the smallest component the network's keep='all' keeps; the image lesion model keeps "
    "one lesion",
    "overlap": "the network's sliding-window overlap; the image lesion model runs the network only with "
    "return_attention=True",
    "body_crop": "the network's whole-volume crop; the image-driven detector looks in the lungs itself",
    "lung_prior": "the network's lung prior; the image-driven detector looks in the lungs itself",
}


def _check_auto_options(
    given: Mapping[str, Any], shown: Mapping[str, str], *, return_attention: bool, roi: Roi | None
) -> None:
    """``method="auto"``: a network option given, or a seed's cube size, is an error (see :func:`check_options`)."""
    for name, value in given.items():
        if name == "overlap" and return_attention:
            continue  # the network runs on the lesion's crop for the attention maps
        raise ValueError(
            f"`{shown[name]}={value!r}` applies to {shown['method']}='network' only ({_AUTO_REASONS[name]}): "
            f"drop it, or pass {shown['method']}='network'."
        )
    if isinstance(roi, Seed) and roi.size_mm is not None:
        raise ValueError(
            f"A seed's cube size (`{shown['size_mm']}={roi.size_mm!r}`) applies to {shown['method']}='network' "
            "only; the image lesion model sizes its own crop from the lesion: drop it, or pass "
            f"{shown['method']}='network'."
        )


# ----------------------------------------------------------------------------- segment


@canonical_orientation("volume", roi="roi")  # runs on the canonical (LPS) grid, answers on the user's
def segment(
    volume: Volume,
    model: Any = None,
    clinical: Mapping[str, Any] | Sequence[float] | np.ndarray | None = None,
    roi: Roi | None = None,
    *,
    method: Literal["auto", "network"] = "auto",
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

    * ``"auto"`` (default): with a seed, box or previous mask, the image-driven lesion model of
      :func:`mkunet.segmentation.lesion.segment_lesion` from the seed (a :class:`Box` gives the
      seed itself, the deepest soft-tissue point of its central part, and the lesion is clipped to
      the box; a :class:`PreviousMask` gives the deepest point of the previous mask that is still
      soft tissue). The boundary follows a HU iso-level halfway between the lesion's and the
      surrounding lung's median HU (the 50 % partial-volume edge; see :mod:`mkunet.segmentation.lesion`).
      For the whole volume, **detection**: :func:`mkunet.segmentation.candidates.detect_lesions`
      ranks the compact soft-tissue masses in the lungs (``Segmentation.candidates``) and the image
      model segments the first reportable candidate from its centre (the next one when that gives
      nothing). No reportable candidate: an empty mask, a note and a warning.
    * ``"network"``: the trained network's probability, thresholded, then the component
      rule (:mod:`mkunet.segmentation.network`). With a :class:`Seed` the cube around it grows by
      1.6x while the tumour touches one of its faces.

    The arguments marked *network* below apply to ``method="network"`` only: any other value
    than the default with ``"auto"`` is a ValueError (:func:`check_options`).

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
            A seed's ``size_mm`` is a network option.
        method: ``"auto"`` or ``"network"`` (above; ``"image"`` is refused: use ``"auto"``).
        threshold: *network*: probability threshold; default the bundle's (0.5).
        return_attention: also return attention maps (when the model has gates). With
            the image method the network is then run on the lesion's crop as well, and
            ``probability`` is its probability there.
        keep: *network*: component rule, see :func:`keep_tumour_component`.
        min_component_cm3: *network*, with ``keep="all"`` only: the smallest component kept (cm³).
        overlap: *network* (and ``"auto"`` with ``return_attention``): sliding-window overlap fraction.
        body_crop: *network*: without a ROI, run only on the patient's in-plane bounding box
            (:func:`body_box`); the probability is 0 outside. No effect with a ROI (its crop).
        lung_prior: *network*, with ``keep="component"`` only: without a seed or previous mask,
            prefer the component in the lung region (:mod:`mkunet.segmentation.network`).
        lesion_params: parameters of the image model (default :class:`mkunet.segmentation.lesion.LesionParams`);
            with the network, the seed check (air, bone) uses them.
        detection: ``"auto"`` only: parameters of the whole-volume detector (default
            :class:`mkunet.segmentation.candidates.DetectionParams`).
        uncertainty: ``"on"`` (default) estimates the volume's segmentation uncertainty
            (``Segmentation.uncertainty``: σ(ln V) and SE in cm³; :mod:`mkunet.segmentation.uncertainty`:
            the edge iso-level and the contact surface with the image model, the probability
            edge with the network; about 1 % of the segmentation's time); ``"off"`` skips it.
            The estimate never changes the mask.
        uncertainty_params: :class:`mkunet.segmentation.uncertainty.UncertaintyParams` (default
            values); with ``uncertainty="on"`` only.
        progress: optional callback called with a step name as each step starts.

    Returns:
        :class:`Segmentation` on ``volume``'s grid.

    Raises:
        SeedError: (a ValueError) the seed lies outside the image, in air or in bone.
        ValueError: a malformed ROI or option, or an option that does not apply to ``method``.
    """
    network: dict[str, Any] = dict(
        threshold=threshold, keep=keep, min_component_cm3=min_component_cm3, overlap=overlap, body_crop=body_crop,
        lung_prior=lung_prior,
    )  # fmt: skip
    params = _check_segment(
        volume, roi, method, lesion_params, network, return_attention=return_attention, detection=detection,
        uncertainty=uncertainty, uncertainty_params=uncertainty_params,
    )  # fmt: skip
    resolved = resolve_method(method, roi)
    if resolved == "detect":
        seg, roi = segment_detect(
            volume, model, clinical, params, detection,
            return_attention=return_attention, overlap=overlap, progress=progress,
        )  # fmt: skip
    elif resolved == "image":
        seg = segment_image(
            volume, roi, params,  # type: ignore[arg-type]
            model=model, clinical=clinical, return_attention=return_attention, overlap=overlap, progress=progress,
        )  # fmt: skip
    else:
        seg = segment_network(
            volume, model, clinical, roi, return_attention=return_attention, progress=progress, **network
        )
    if uncertainty == "on" and not seg.empty:
        seg.uncertainty = _volume_uncertainty(seg, roi, params, uncertainty_params or UncertaintyParams())
        seg.timings["uncertainty"] = seg.uncertainty.seconds
        seg.timings["total"] = seg.timings.get("total", 0.0) + seg.uncertainty.seconds
    return seg


def _check_segment(
    volume: Volume,
    roi: Roi | None,
    method: str,
    lesion_params: LesionParams | None,
    network: Mapping[str, Any],
    **options: Any,
) -> LesionParams:
    """Validate :func:`segment`'s input before any work; returns the lesion model's parameters."""
    if not isinstance(volume, Volume):
        raise ValueError(f"`volume` must be a mkunet Volume, got {type(volume).__name__} (use mkunet.io.read_volume).")
    check_options(method, roi=roi, **options, **network)
    check_uncertainty(options["uncertainty"])
    params = lesion_params or LesionParams()
    if isinstance(roi, Seed):
        roi_crop_box(volume, roi)  # malformed seeds and points outside the image fail here
        check_seed(volume, roi.index_zyx(volume), roi.describe(), params)  # in air or bone
    return params


def _volume_uncertainty(
    seg: Segmentation, roi: Roi | None, params: LesionParams, up: UncertaintyParams
) -> VolumeUncertainty:
    """The segmentation uncertainty of ``seg``'s volume (:mod:`mkunet.segmentation.uncertainty`).

    Image model: the HU edge term (iso-level SD = ``up.edge_fraction`` of the lesion-lung
    contrast), the contact term (the cut surface against tissue as dense as the lesion) and the
    click term (``up.click_shifts`` extra runs of the lesion model from
    other seeds inside the mask, clipped to a :class:`Box` like the first). Network: the
    probability edge term (threshold SD ``up.probability_delta``).
    """
    from mkunet.segmentation import uncertainty as unc

    t0 = time.perf_counter()
    notes: list[str] = []
    comps: dict[str, float] = {}
    if seg.method == "image" and seg.lesion is not None:
        les = seg.lesion
        delta = up.edge_fraction * abs(les.hu_lesion - les.hu_lung)
        comps["edge"] = unc.edge_sigma(seg.mask, seg.volume.array, les.threshold_hu, delta, up.band_voxels)
        comps["contact"] = unc.contact_sigma(seg.mask, seg.volume.array, les.threshold_hu, up.contact_layers)
        if up.click_shifts > 0:
            comps["click"] = _click_sigma(seg, roi, params, up)
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
    vol = seg.voxel_volume_cm3
    return VolumeUncertainty(
        voxel_volume_cm3=vol,
        sigma_log_volume=sigma,
        se_cm3=sigma * vol,
        components=comps,
        seconds=time.perf_counter() - t0,
        notes=tuple(notes),
    )


def _click_sigma(seg: Segmentation, roi: Roi | None, params: LesionParams, up: UncertaintyParams) -> float:
    """The click term: σ(ln V) between the mask and the lesion model run from ``up.click_shifts`` other seeds."""
    from mkunet.segmentation import uncertainty as unc

    volume = seg.volume
    n = int(np.count_nonzero(seg.mask))
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
    return float(np.sqrt(np.mean(np.square(pairs))))


# ----------------------------------------------------------------------------- segment_timepoints


@canonical_orientation("volumes", roi="rois")  # runs on the canonical (LPS) grid, answers on the user's
def segment_timepoints(
    volumes: Sequence[Volume],
    days: Sequence[float],
    model: Any = None,
    clinical: Mapping[str, Any] | None = None,
    rois: Sequence[Roi | None] | None = None,
    *,
    method: Literal["auto", "network"] = "auto",
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
        **segment_kwargs: passed to :func:`segment` (threshold, keep, return_attention, ...), checked
            before any work as there (:func:`check_options`).
    """
    volumes = list(volumes)
    days_list = [float(d) for d in days]
    roi_list = _check_timepoints(volumes, days_list, rois, method, tracking, tol, max_iter, segment_kwargs)
    params = segment_kwargs.get("lesion_params") or LesionParams()
    detected = _detect_baseline(volumes, roi_list, model, clinical, method, segment_kwargs)
    track = (isinstance(roi_list[0], (Seed, Box)) or detected is not None) and len(volumes) > 1
    # tracked follow-ups are seeded, so they run what a seed runs, like the baseline
    uses_network = any(resolve_method(method, r) == "network" for r in (roi_list[:1] if track else roi_list))
    bundle = _network.load_model(model) if uses_network or segment_kwargs.get("return_attention") else model

    def segment_one(vol: Volume, roi: Roi | None, clin: dict[str, Any] | None) -> Segmentation:
        return segment(vol, bundle, clin, roi, method=method, **segment_kwargs)

    passes = TimepointPasses(
        volumes, roi_list, segment_one, dict(clinical or {}), params, tracking, track, detected=detected,
        previous_mask_roi=previous_mask_roi, margin_mm=margin_mm,
    )  # fmt: skip
    if detected is not None:
        passes.notes.append(f"{detected.roi}; the lesion is followed into the later scans")
    given = passes.clinical.get("lvcr")
    given_lvcr = None if given is None or is_missing(given) else float(given)
    fixed = uses_network and given_lvcr is None and len(volumes) >= 2
    if fixed and getattr(bundle, "clinical_encoder", None) is not None:
        return fixed_point(passes, days_list, tol=tol, max_iter=max_iter, weights=lvcr_weights)
    return single_pass(passes, days_list, given_lvcr, lvcr_weights)


def _check_timepoints(
    volumes: list[Volume],
    days: list[float],
    rois: Sequence[Roi | None] | None,
    method: str,
    tracking: str,
    tol: float,
    max_iter: int,
    segment_kwargs: Mapping[str, Any],
) -> list[Roi | None]:
    """Validate :func:`segment_timepoints`'s input before any work; returns one ROI (or None) per timepoint."""
    if len(days) != len(volumes):
        raise ValueError(f"{len(volumes)} volumes but {len(days)} `days` values: give one day per timepoint.")
    if not volumes:
        raise ValueError("`volumes` is empty: give at least one timepoint.")
    if any(b <= a for a, b in zip(days, days[1:])):
        raise ValueError(f"`days` must be strictly increasing (days since the first scan), got {days}.")
    if rois is not None and len(rois) != len(volumes):
        raise ValueError(f"{len(volumes)} volumes but {len(rois)} `rois`: give one ROI (or None) per timepoint.")
    if not tol > 0 or max_iter < 0:
        raise ValueError(f"`tol` must be > 0 and `max_iter` >= 0, got tol={tol!r}, max_iter={max_iter!r}.")
    check_method(method)
    if tracking not in TRACKING:
        raise ValueError(f"`tracking` must be one of {', '.join(TRACKING)}; got {tracking!r}.")
    roi_list: list[Roi | None] = list(rois) if rois is not None else [None] * len(volumes)
    options = {k: v for k, v in segment_kwargs.items() if k not in ("lesion_params", "progress")}
    for roi in roi_list:  # an option that does not apply stops everything too
        check_options(method, roi=roi, **options)
    params = segment_kwargs.get("lesion_params") or LesionParams()
    for k, roi in enumerate(roi_list):  # bad seeds stop everything before any work
        if isinstance(roi, Seed):
            roi_crop_box(volumes[k], roi)
            check_seed(volumes[k], roi.index_zyx(volumes[k]), f"{roi.describe()} of timepoint {k}", params)
    return roi_list


def _detect_baseline(
    volumes: list[Volume],
    roi_list: list[Roi | None],
    model: Any,
    clinical: Mapping[str, Any] | None,
    method: str,
    segment_kwargs: Mapping[str, Any],
) -> Segmentation | None:
    """Without any ROI on the baseline (and later scans to follow it into), the baseline segmented once by
    whole-volume detection (:func:`segment`), to be followed as if clicked there; None when not
    applicable or nothing was found (every timepoint then runs as without tracking, and warns there)."""
    if roi_list[0] is not None or len(volumes) < 2 or resolve_method(method, None) != "detect":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = segment(volumes[0], model, clinical, None, method=method, **segment_kwargs)  # type: ignore[arg-type]
    if first.empty:
        return None
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=3)
    return first
