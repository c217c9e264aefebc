"""How sure is a segmented tumour volume? A per-scan σ(ln V) and SE (cm³) of the segmentation.

A volume measured from an automatic contour has two independent errors on ln V:

* the scan-to-scan (repeat-CT) variation of the error model of :mod:`mkunet.analysis.kinetics`,
  :math:`\\sigma_{err}` = 0.08 (:data:`mkunet.analysis.kinetics.DEFAULT_SIGMA_LOG_VOLUME`), the same for
  every scan;
* the segmentation's own uncertainty :math:`\\sigma_{seg}`, estimated here for each scan. It is
  small for a clean solid nodule with a sharp edge and large for a small, blurred or
  ground-glass lesion, or one whose extent depends on where it was clicked.

:math:`\\sigma_{seg}` is the root sum of squares of cheap, documented components, each an SD
of ln V:

``edge``
    the partial-volume edge. The contour is an iso-level (the image model: halfway between
    the lesion's and the lung's median HU; the network: probability 0.5). Where the edge is
    blurred, a slightly different level moves it by a voxel or more. With the level's SD
    :math:`\\delta` (``edge_fraction`` of the lesion-lung contrast, or ``probability_delta``),
    :math:`n_+` voxels of the band just outside the mask lie in :math:`[t-\\delta, t)` (they
    join at the level :math:`t-\\delta`) and :math:`n_-` voxels of the band just inside lie in
    :math:`[t, t+\\delta)` (they leave at :math:`t+\\delta`), so

    .. math:: \\sigma_{edge} = \\tfrac12 \\left[\\ln(V + n_+) - \\ln(V - n_-)\\right]

    (volumes in voxels; the band is ``band_voxels`` voxels deep on each side, 26-connected).
    A first-order, one-threshold-pass estimate of re-segmenting at :math:`t \\pm \\delta`.
``contact``
    where the lesion touches other soft tissue (chest wall, mediastinum, a vessel, atelectasis)
    its border is not an edge in the image but a cut made by the shape rules. The :math:`n_c`
    voxels of the one-voxel shell outside the mask that are as dense as the lesion
    (:math:`\\ge t`) are that cut surface; it may plausibly lie ``contact_layers`` voxel layers
    further in or out:

    .. math:: \\sigma_{contact} = \\tfrac12 \\left[\\ln(V + m n_c) - \\ln(V - m n_c)\\right],
        \\quad m = \\text{contact\\_layers}.

    Zero for a lesion free in the lung.
``click``
    test-time augmentation of the click: the lesion is segmented once more from another
    seed, a voxel drawn (seeded) among the mask's voxels at least ``click_depth_mm`` deep
    (or half the mask's greatest depth in small lesions), as another user might click.
    With one extra segmentation :math:`V_2`, :math:`\\sigma_{click} = |\\ln V_2 - \\ln V|/\\sqrt2`
    (the SD estimate from one pair). **Off by default** (``click_shifts=0``): it costs one more
    segmentation (measured 1.5-2.6x the seeded time in all, over the 2x budget), and the image
    model re-seeds at the lesion's core, so a second click mostly gives the same mask (measured
    σ_click 0.002-0.007 on the three public real tumours against σ_edge 0.017-0.117).
``probability``
    where the network gave the contour: the same edge count on the probability map.

The volume's SE is :math:`\\sigma_{seg} V` (cm³; delta method). :mod:`mkunet.analysis.kinetics` combines
the two errors per scan, :math:`\\sigma_i = \\sqrt{\\sigma_{err}^2 + \\sigma_{seg,i}^2}`
(``lvcr(..., sigma_segmentation=...)``), so that the LVCR confidence interval widens for
difficult lesions.

Calibration: ``edge_fraction`` = 0.10 of the contrast was fixed beforehand (an edge level
plausibly anywhere between the 30 % and 70 % iso-levels). ``contact_layers`` = 0.5 was chosen
among 0.25, 0.5, 1 and 2 on a synthetic calibration cohort (seed 101, 64 patients x 3-4 scans,
automatic masks from the pipeline) as the smallest value whose LVCR interval reached nominal
coverage, and checked on a second cohort (seed 202); ``benchmarks/uncertainty.py`` reproduces
both (see docs/tracking-and-uncertainty.md for the table).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mkunet.checks import check_int, check_number

__all__ = [
    "UNCERTAINTY_MODES",
    "UncertaintyParams",
    "VolumeUncertainty",
    "check_uncertainty",
    "edge_sigma",
    "contact_sigma",
    "click_sigma",
    "click_seed",
    "combine",
]

UNCERTAINTY_MODES = ("on", "off")
UncertaintyMode = Literal["on", "off"]


def check_uncertainty(mode: str) -> str:
    """Validate an ``uncertainty`` option (``"on"`` or ``"off"``); returns it."""
    if mode not in UNCERTAINTY_MODES:
        raise ValueError(f"uncertainty must be one of {', '.join(UNCERTAINTY_MODES)}, got {mode!r}.")
    return mode


@dataclass(frozen=True)
class UncertaintyParams:
    """Parameters of the segmentation-uncertainty estimate (see the module doc).

    Attributes:
        edge_fraction: SD of the edge iso-level as a fraction of the lesion-lung contrast
            (image model). 0.10: the edge level is plausibly anywhere between the 30 % and
            70 % iso-levels.
        probability_delta: SD of the probability threshold (network), in probability units.
        band_voxels: depth of the edge band on each side of the contour (voxels, 26-connected).
        contact_layers: how many voxel layers the cut surface against other soft tissue may move
            (image model; 0 switches the contact term off). 0.5: chosen among 0.25, 0.5, 1 and 2 on the
            calibration cohort (module doc).
        click_shifts: extra segmentations from other seeds (default 0: the click term is off; 1 adds
            one lesion-model run, about 1x the seeded time).
        click_depth_mm: the other seeds lie at least this deep inside the mask (mm), or at half
            the mask's greatest depth when the lesion is thinner.
        seed: seed of the click draw (the same seed gives the same estimate), >= 0.

    Raises:
        ValueError: a field has the wrong type or is out of range; the message names it and
            quotes the value.
    """

    edge_fraction: float = 0.10
    probability_delta: float = 0.10
    band_voxels: int = 2
    contact_layers: float = 0.5
    click_shifts: int = 0
    click_depth_mm: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        own = "UncertaintyParams"
        for name in ("edge_fraction", "probability_delta"):
            check_number(own, name, getattr(self, name), low=0.0, high=0.5, high_open=True)
        check_number(own, "contact_layers", self.contact_layers, low=0.0)
        check_number(own, "click_depth_mm", self.click_depth_mm, low=0.0, unit="mm")
        check_int(own, "band_voxels", self.band_voxels, low=1)
        check_int(own, "click_shifts", self.click_shifts, low=0)
        check_int(own, "seed", self.seed, low=0)


@dataclass(frozen=True)
class VolumeUncertainty:
    """The segmentation uncertainty of one tumour volume.

    Attributes:
        voxel_volume_cm3: the mask's volume (cm³, voxel counting: voxels x voxel volume) the SE refers to.
        sigma_log_volume: σ_seg, the segmentation's SD of ln V (dimensionless; ≈ relative SE).
        se_cm3: σ_seg x volume (cm³).
        components: σ(ln V) per component (``edge``, ``click``, ``probability``), those computed.
        seconds: time spent on the estimate.
        notes: what the user should know.
    """

    voxel_volume_cm3: float
    sigma_log_volume: float
    se_cm3: float
    components: Mapping[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Flat dict for a results row / JSON sidecar."""
        out: dict[str, Any] = {
            "volume_se_cm3": self.se_cm3,
            "sigma_log_volume_seg": self.sigma_log_volume,
        }
        for name in ("edge", "contact", "click", "probability"):
            out[f"sigma_{name}"] = self.components.get(name)
        out["uncertainty_seconds"] = self.seconds
        return out


def _mask_box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """The bounding box of a non-empty ``mask`` grown by ``pad`` voxels, clipped to the array (z, y, x)."""
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _bands(mask: np.ndarray, band_voxels: int) -> tuple[np.ndarray, np.ndarray, tuple[slice, ...]]:
    """(outer band, inner band, box) on the mask's bounding box grown by the band (bool (z, y, x))."""
    from scipy import ndimage

    box = _mask_box(mask, band_voxels + 1)
    sub = mask[box]
    struct = np.ones((3, 3, 3), bool)
    grown = ndimage.binary_dilation(sub, struct, iterations=band_voxels)
    shrunk = ndimage.binary_erosion(sub, struct, iterations=band_voxels, border_value=1)
    return grown & ~sub, sub & ~shrunk, box


def edge_sigma(mask: np.ndarray, field_map: np.ndarray, level: float, delta: float, band_voxels: int = 2) -> float:
    """σ(ln V) of the partial-volume edge: the voxels that flip when the iso-level moves by ±``delta``.

    Args:
        mask: bool (z, y, x), the contour at ``level`` (plus whatever shape rules made it).
        field_map: the map the contour was drawn on, same shape: HU (image model) or
            probability (network).
        level: the iso-level t (HU or probability).
        delta: the level's SD (same units), >= 0.
        band_voxels: depth of the band on each side of the contour (voxels).

    Returns:
        ½ [ln(V + n₊) − ln(V − n₋)] (module doc); 0.0 for an empty mask or ``delta`` 0.
    """
    mask = np.asarray(mask, bool)
    if mask.shape != np.shape(field_map):
        raise ValueError(f"mask {mask.shape} and map {np.shape(field_map)} must have the same (z, y, x) shape.")
    if delta < 0 or not math.isfinite(delta):
        raise ValueError(f"delta must be a finite value >= 0, got {delta!r}.")
    n = int(np.count_nonzero(mask))
    if n == 0 or delta == 0:
        return 0.0
    outer, inner, box = _bands(mask, int(band_voxels))
    f = np.asarray(field_map)[box]
    n_plus = int(np.count_nonzero(outer & (f >= level - delta) & (f < level)))
    n_minus = int(np.count_nonzero(inner & (f >= level) & (f < level + delta)))
    n_minus = min(n_minus, n - 1)
    return 0.5 * (math.log(n + n_plus) - math.log(n - n_minus))


def contact_sigma(mask: np.ndarray, hu: np.ndarray, level: float, layers: float = 1.0) -> float:
    """σ(ln V) of the cut surface where the lesion touches tissue as dense as itself (module doc).

    Args:
        mask: bool (z, y, x), the lesion.
        hu: the CT (HU), same shape.
        level: the lesion's edge iso-level t (HU): shell voxels at or above it are "contact".
        layers: voxel layers the cut may move (m), >= 0.

    Returns:
        ½ [ln(V + m n_c) − ln(V − m n_c)]; 0.0 for an empty mask, no contact or ``layers`` 0.
    """
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if mask.shape != np.shape(hu):
        raise ValueError(f"mask {mask.shape} and CT {np.shape(hu)} must have the same (z, y, x) shape.")
    if layers < 0 or not math.isfinite(layers):
        raise ValueError(f"layers must be a finite value >= 0, got {layers!r}.")
    n = int(np.count_nonzero(mask))
    if n == 0 or layers == 0:
        return 0.0
    box = _mask_box(mask, 1)
    sub = mask[box]
    shell = ndimage.binary_dilation(sub, np.ones((3, 3, 3), bool)) & ~sub
    n_c = float(np.count_nonzero(shell & (np.asarray(hu)[box] >= level))) * float(layers)
    return 0.5 * (math.log(n + n_c) - math.log(max(n - n_c, 1.0)))


def click_seed(mask: np.ndarray, spacing: tuple[float, float, float], depth_mm: float, rng: np.random.Generator):
    """Another plausible click: a voxel (z, y, x) of ``mask`` at least ``depth_mm`` deep (or half the
    greatest depth when the lesion is thinner), drawn with ``rng``; None for an empty mask.

    Args:
        mask: bool (z, y, x).
        spacing: voxel size (z, y, x) mm.
        depth_mm: minimum depth inside the mask (mm).
        rng: the random generator (seeded by the caller).
    """
    from scipy import ndimage

    if not mask.any():
        return None
    sl = ndimage.find_objects(mask.astype(np.uint8))[0]
    sub = np.pad(mask[sl], 1)
    depth = ndimage.distance_transform_edt(sub, sampling=spacing)[1:-1, 1:-1, 1:-1]
    need = min(float(depth_mm), 0.5 * float(depth.max()))
    cand = np.argwhere(depth >= need)
    pick = cand[int(rng.integers(len(cand)))]
    return (pick + np.array([s.start for s in sl])).astype(np.float64)


def click_sigma(volume_voxels: float, other_voxels: float) -> float:
    """σ(ln V) from one extra segmentation: |ln V₂ − ln V| / √2 (volumes in any common unit).

    An extra segmentation that found nothing (V₂ = 0) counts as a factor-of-2 disagreement
    (ln 2 / √2), the largest this term reports.
    """
    if volume_voxels <= 0:
        return 0.0
    if other_voxels <= 0:
        return math.log(2.0) / math.sqrt(2.0)
    return min(abs(math.log(other_voxels) - math.log(volume_voxels)), math.log(2.0)) / math.sqrt(2.0)


def combine(components: Mapping[str, float]) -> float:
    """Root sum of squares of independent σ(ln V) components."""
    return float(math.sqrt(sum(float(s) ** 2 for s in components.values())))
