"""Segmentation metrics: Dice, IoU, HD95 in mm, summaries and paired tests (SPEC "Metrics").

All masks are boolean numpy arrays indexed (z, y, x); ``spacing`` is (z, y, x) in mm.

Definitions
-----------
* Dice = 2 |P ∩ T| / (|P| + |T|); IoU = |P ∩ T| / |P ∪ T|.
* Surfaces and distances are MONAI's (``monai.metrics``; our code only adds the
  empty-mask policy below): the surface of a mask M is ``M & ~erode(M)`` with the
  6-connected (face) structuring element, voxels outside the array counting as background
  (so a mask touching the array border has a surface there); the directed surface
  distances d(P→T) are, for every surface voxel of P, the Euclidean distance in mm
  (``spacing`` respected) to the nearest surface voxel of T (voxel centres). MONAI returns
  them in float32, so values carry about 7 significant digits.
* HD95 (default ``mode="max"``) = max(P95(d(P→T)), P95(d(T→P))), the percentile with
  linear interpolation: MONAI's ``compute_hausdorff_distance(percentile=95, spacing=...)``
  itself (also the definition of DeepMind's surface-distance ``compute_robust_hausdorff``
  without surfel weighting). ``mode="pooled"`` gives P95 of the union of both directed
  sets (medpy's ``hd95``), which is never larger; MONAI has no such option (its
  ``directed=True`` keeps d(P→T) alone), so it is computed from MONAI's two directed sets
  (:func:`surface_distances`).

Empty masks (degenerate but valid; an :class:`EmptyMaskWarning` is issued):

===================  =====  =====  ======
case                 dice   iou    hd95
===================  =====  =====  ======
both empty           1.0    1.0    0.0
one of them empty    0.0    0.0    inf
===================  =====  =====  ======

An ``inf`` never enters a mean silently: :func:`summarise` averages finite values only
and reports how many were infinite / NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "EmptyMaskWarning",
    "dice",
    "iou",
    "surface_distances",
    "hausdorff",
    "hd95",
    "segmentation_scores",
    "summarise",
    "paired_ttest",
]


class EmptyMaskWarning(UserWarning):
    """A prediction and/or reference mask is empty; the metric takes its documented value."""


def _as_masks(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    for name, m in (("pred", pred), ("truth", truth)):
        if m.dtype != bool and not np.issubdtype(m.dtype, np.integer):
            raise ValueError(
                f"`{name}` must be a boolean (or integer label) mask, got dtype {m.dtype}; threshold probabilities "
                "first (e.g. prob > 0.5)."
            )
        if m.ndim != 3:
            raise ValueError(f"`{name}` must be 3-D (z, y, x), got shape {m.shape}.")
    if pred.shape != truth.shape:
        raise ValueError(f"`pred` and `truth` must have the same shape (z, y, x); got {pred.shape} and {truth.shape}.")
    return pred.astype(bool, copy=False), truth.astype(bool, copy=False)


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"`spacing` must be 3 numbers (z, y, x) in mm, got {spacing!r}.") from None
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"`spacing` must be 3 positive finite numbers (z, y, x) in mm, got {spacing!r}.")
    return values  # type: ignore[return-value]


def _overlap(pred: np.ndarray, truth: np.ndarray, kind: str) -> float:
    pred, truth = _as_masks(pred, truth)
    n_pred, n_truth = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
    if n_pred == 0 and n_truth == 0:
        warnings.warn(
            f"{kind}: prediction and truth are both empty; {kind} = 1.0 by convention.", EmptyMaskWarning, stacklevel=3
        )
        return 1.0
    inter = int(np.count_nonzero(pred & truth))
    if kind == "dice":
        value = 2.0 * inter / (n_pred + n_truth)
    else:
        value = inter / (n_pred + n_truth - inter)
    if n_pred == 0 or n_truth == 0:
        which = "prediction" if n_pred == 0 else "truth"
        warnings.warn(f"{kind}: the {which} is empty; {kind} = 0.0.", EmptyMaskWarning, stacklevel=3)
    return value


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient 2|P∩T| / (|P|+|T|) of two boolean masks (z, y, x).

    Both empty -> 1.0; one empty -> 0.0 (both with an :class:`EmptyMaskWarning`).
    """
    return _overlap(pred, truth, "dice")


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union |P∩T| / |P∪T| (Jaccard) of two boolean masks (z, y, x).

    Both empty -> 1.0; one empty -> 0.0 (both with an :class:`EmptyMaskWarning`).
    """
    return _overlap(pred, truth, "iou")


def _monai_inputs(pred: np.ndarray, truth: np.ndarray) -> tuple[Any, Any]:
    """(1, 1, z, y, x) bool tensors of both masks, sharing the numpy memory."""
    import torch

    p = torch.from_numpy(np.ascontiguousarray(pred))
    t = torch.from_numpy(np.ascontiguousarray(truth))
    return p[None, None], t[None, None]


def surface_distances(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm between two non-empty boolean masks (z, y, x).

    MONAI's ``monai.metrics.utils.get_edge_surface_distance`` (module docstring: surfaces
    by 6-connected erosion, Euclidean distances between voxel centres in mm); it crops
    both masks to the bounding box of their union first.

    Args:
        pred, truth: boolean masks (z, y, x), each non-empty.
        spacing: voxel size (z, y, x) in mm.

    Returns:
        ``(d_pred_to_truth, d_truth_to_pred)``: 1-D float64 arrays (of MONAI's float32
        values), one distance (mm) per surface voxel of pred (resp. truth) to the nearest
        surface voxel of the other mask.

    Raises:
        ValueError: a mask is empty (use :func:`hd95` for the documented empty cases), or
            the masks or ``spacing`` are malformed.
    """
    from monai.metrics.utils import get_edge_surface_distance

    pred, truth = _as_masks(pred, truth)
    spacing = _check_spacing(spacing)
    if not pred.any() or not truth.any():
        raise ValueError("surface_distances needs two non-empty masks; use hd95() for the documented empty cases.")
    p, t = _monai_inputs(pred, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI 1.6 warns about its own internal arguments
        _, distances, _ = get_edge_surface_distance(p[0, 0], t[0, 0], spacing=spacing, symmetric=True)
    d_pt, d_tp = (d.numpy().astype(np.float64) for d in distances)
    return d_pt, d_tp


def hausdorff(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    percentile: float = 100.0,
    mode: str = "max",
) -> float:
    """(Percentile) Hausdorff distance in mm between two boolean masks (z, y, x).

    ``mode="max"`` is MONAI's ``compute_hausdorff_distance``; the empty-mask policy of the
    module docstring is applied before MONAI is called.

    Args:
        pred, truth: boolean masks (z, y, x).
        spacing: voxel size (z, y, x) in mm (anisotropic spacing respected).
        percentile: in (0, 100]; 100 = classical Hausdorff distance, 95 = HD95.
        mode: ``"max"`` = max of the two directed percentiles (MONAI), ``"pooled"`` =
            percentile of both directed distance sets pooled (medpy).

    Returns:
        distance in mm; 0.0 when both masks are empty, ``inf`` when exactly one is
        (each with an :class:`EmptyMaskWarning`).
    """
    if not (isinstance(percentile, (int, float)) and 0 < percentile <= 100):
        raise ValueError(f"`percentile` must be a number in (0, 100], got {percentile!r}.")
    if mode not in ("max", "pooled"):
        raise ValueError(f"`mode` must be 'max' or 'pooled', got {mode!r}.")
    pred, truth = _as_masks(pred, truth)
    spacing = _check_spacing(spacing)
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        warnings.warn(
            "hausdorff: prediction and truth are both empty; distance = 0.0 by convention.",
            EmptyMaskWarning,
            stacklevel=2,
        )
        return 0.0
    if not has_pred or not has_truth:
        which = "prediction" if not has_pred else "truth"
        warnings.warn(
            f"hausdorff: the {which} is empty; distance = inf (excluded from means by summarise()).",
            EmptyMaskWarning,
            stacklevel=2,
        )
        return math.inf
    if mode == "pooled":
        d_pt, d_tp = surface_distances(pred, truth, spacing)
        return float(np.percentile(np.concatenate([d_pt, d_tp]), percentile))
    from monai.metrics import compute_hausdorff_distance

    p, t = _monai_inputs(pred, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI 1.6 warns about its own internal arguments
        value = compute_hausdorff_distance(p, t, include_background=True, percentile=float(percentile), spacing=spacing)
    return float(value.item())


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], mode: str = "max") -> float:
    """95th-percentile Hausdorff distance in mm (see the module docstring for the definition).

    Args:
        pred, truth: boolean masks (z, y, x).
        spacing: voxel size (z, y, x) in mm.
        mode: ``"max"`` (default, MONAI's definition) or ``"pooled"``.

    Returns:
        HD95 in mm; 0.0 when both masks are empty, ``inf`` when exactly one is (warned).
    """
    return hausdorff(pred, truth, spacing, percentile=95.0, mode=mode)


def segmentation_scores(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """``{"dice", "iou", "hd95"}`` of one case (masks (z, y, x), spacing (z, y, x) mm)."""
    return {"dice": dice(pred, truth), "iou": iou(pred, truth), "hd95": hd95(pred, truth, spacing)}


def summarise(values: Iterable[float]) -> dict[str, float | int]:
    """Mean ± sample SD over the *finite* values, with counts of what was left out.

    Args:
        values: per-case metric values (may contain inf, e.g. HD95 of an empty prediction).

    Returns:
        ``{"mean", "sd", "n", "n_inf", "n_nan", "n_total"}``: ``mean`` and ``sd`` (ddof=1)
        over the ``n`` finite values; ``n_inf`` / ``n_nan`` count the excluded ones. With
        n < 2 the SD is NaN, with n = 0 the mean too (warned). Non-finite values are
        warned about, never averaged.
    """
    arr = np.asarray(list(values), dtype=np.float64).ravel()
    finite = arr[np.isfinite(arr)]
    n_inf, n_nan = int(np.isinf(arr).sum()), int(np.isnan(arr).sum())
    if n_inf or n_nan:
        warnings.warn(
            f"summarise: {n_inf} infinite and {n_nan} NaN value(s) out of {arr.size} were excluded from mean and SD.",
            stacklevel=2,
        )
    n = int(finite.size)
    if n < 2:
        warnings.warn(f"summarise: only {n} finite value(s); the SD is undefined (NaN).", stacklevel=2)
    return {
        "mean": float(finite.mean()) if n else math.nan,
        "sd": float(finite.std(ddof=1)) if n >= 2 else math.nan,
        "n": n,
        "n_inf": n_inf,
        "n_nan": n_nan,
        "n_total": int(arr.size),
    }


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided paired t-test (``scipy.stats.ttest_rel``) of two models on the same cases.

    Args:
        a, b: per-case values of the two models, same case order, same length >= 2, finite.

    Returns:
        ``(t, p)``. When every difference is 0 the statistic is undefined: ``(nan, nan)``
        with a warning.

    Raises:
        ValueError: different lengths, fewer than 2 cases, or a non-finite value (its
            index is given: drop that case from both lists or replace the value).
    """
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"paired_ttest needs one value per case from each model; got {x.size} and {y.size} values.")
    if x.size < 2:
        raise ValueError(f"paired_ttest needs at least 2 paired cases, got {x.size}.")
    bad = np.flatnonzero(~(np.isfinite(x) & np.isfinite(y)))
    if bad.size:
        raise ValueError(
            f"paired_ttest: non-finite value(s) at case index {bad.tolist()[:10]} (e.g. HD95 = inf for an empty "
            "prediction); drop those cases from both lists or replace the values explicitly."
        )
    diff = x - y
    if np.all(diff == 0):
        warnings.warn("paired_ttest: all paired differences are 0; t and p are undefined (NaN).", stacklevel=2)
        return math.nan, math.nan
    res = stats.ttest_rel(x, y)
    return float(res.statistic), float(res.pvalue)
