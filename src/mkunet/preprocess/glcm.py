"""Per-voxel GLCM contrast in a sliding window, computed exactly with box sums.

Definitions (IBSI / PyRadiomics, Haralick): for a grey-level co-occurrence matrix
:math:`P` of a region, contrast is :math:`\\sum_{ij} (i-j)^2 p(i,j)` with
:math:`p = P / \\sum P`. Let :math:`\\Pi_d` be the ordered voxel pairs
:math:`(x, x+d)` with both voxels in the region. Then

.. math::

    \\sum_{ij} (i-j)^2 P_d(i,j) = \\sum_{(x, x+d) \\in \\Pi_d} (g(x) - g(x+d))^2,

and symmetrising (adding :math:`P_d^T`) doubles numerator and denominator, so the
contrast of a region is the mean squared grey-level difference over its
neighbour pairs (DOMAIN.md section 4). For the window centred on voxel :math:`c`
(half width :math:`h`, region :math:`[c-h, c+h]^3` clipped to the volume) the
pair sum of direction :math:`d` is a box sum of the squared-difference image
:math:`E_d`, indexed by the per-axis *lower* voxel of each pair
:math:`p = \\min(x, x+d)`: the pair lies in the window iff, on every axis,
:math:`p_a \\in [c_a-h, c_a+h]` when :math:`d_a = 0` and
:math:`p_a \\in [c_a-h, c_a+h-1]` when :math:`d_a \\neq 0` (so the box has
``window`` or ``window - 1`` voxels along that axis), and it lies in the volume iff
:math:`0 \\le p_a \\le n_a - 1 - |d_a|`. The pair count :math:`N_d(c)` is the
product of the three per-axis counts. All sums are integer (exact); the map costs
O(voxels), independent of ``levels``.

Aggregations over the 13 directions (IBSI 3-D):

* ``merged``: :math:`\\sum_d S_d / \\sum_d N_d` (one matrix pooling every direction);
* ``averaged``: :math:`\\frac{1}{|D|}\\sum_{d\\in D} S_d / N_d`, :math:`D` the directions
  with at least one pair (a direction has none only along an axis of length 1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np

from mkunet.preprocess._parallel import map_slabs

__all__ = ["GLCM_DIRECTIONS", "quantise", "glcm_contrast"]

#: The 13 unique 3-D offsets (dz, dy, dx) at distance 1 (26-connectivity, one of each +/- pair).
GLCM_DIRECTIONS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 1),
    (0, 1, 0),
    (1, 0, 0),
    (0, 1, 1),
    (0, 1, -1),
    (1, 0, 1),
    (1, 0, -1),
    (1, 1, 0),
    (1, -1, 0),
    (1, 1, 1),
    (1, 1, -1),
    (1, -1, 1),
    (1, -1, -1),
)


def _check_levels(levels: int) -> int:
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"`levels` must be an integer >= 2 (number of grey levels), got {levels!r}.")
    if levels > 65536:
        raise ValueError(f"`levels` must be <= 65536, got {levels!r}; use fewer grey levels.")
    return int(levels)


def quantise(array: np.ndarray, levels: int = 256, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Quantise intensities linearly to ``levels`` grey levels (IBSI fixed bin number).

    .. math:: g = \\min\\left(\\left\\lfloor L\\,\\frac{v - lo}{hi - lo}\\right\\rfloor, L - 1\\right),
        \\quad v \\text{ clipped to } [lo, hi]

    so ``levels`` equal-width bins span ``[lo, hi]``, ``lo`` maps to 0 and ``hi`` to
    ``levels - 1`` (grey levels start at 0 here; IBSI numbers them from 1, which does not
    change contrast). Arithmetic is float32 (no float64 copy of the volume).

    Args:
        array: any-shape array of intensities (e.g. HU), finite.
        levels: number of grey levels L >= 2.
        value_range: ``(lo, hi)`` mapped onto the levels; ``None`` uses the array's own
            min..max (then the scale differs between scans: pass the HU window for
            comparable maps). Values outside are clipped.

    Returns:
        Integer grey levels, same shape: uint8 when ``levels <= 256``, else uint16.
        A constant array (lo == hi) gives all zeros.

    Raises:
        ValueError: bad ``levels``/``value_range``, or non-finite values in ``array``.
    """
    levels = _check_levels(levels)
    array = np.asarray(array)
    amin, amax = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
    if not (math.isfinite(amin) and math.isfinite(amax)):
        raise ValueError("quantise: the array contains NaN or infinite values; fill or mask them first.")
    if value_range is None:
        lo, hi = amin, amax
    else:
        if len(value_range) != 2:
            raise ValueError(f"`value_range` must be (low, high), got {value_range!r}.")
        lo, hi = float(value_range[0]), float(value_range[1])
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
            raise ValueError(f"`value_range` must be finite with low <= high, got {value_range!r}.")
    dtype = np.uint8 if levels <= 256 else np.uint16
    if hi == lo:
        return np.zeros(array.shape, dtype=dtype)
    scaled = np.clip(array, lo, hi, dtype=np.float32)  # float32 working copy
    scaled -= np.float32(lo)
    scaled *= np.float32(levels / (hi - lo))
    np.floor(scaled, out=scaled)
    np.minimum(scaled, np.float32(levels - 1), out=scaled)
    np.maximum(scaled, np.float32(0), out=scaled)  # float32 rounding of lo itself
    return scaled.astype(dtype)


def _sliding_sum(a: np.ndarray, axis: int, length: int, n_out: int) -> np.ndarray:
    """``out[i] = sum_{k < length} a[i + k]`` along ``axis`` for ``i < n_out`` (exact, by doubling)."""

    def take(arr: np.ndarray, start: int, stop: int) -> np.ndarray:
        index = [slice(None)] * arr.ndim
        index[axis] = slice(start, stop)
        return arr[tuple(index)]

    result: np.ndarray | None = None
    block, size, offset, remaining = a, 1, 0, length
    while True:
        if remaining & 1:
            part = take(block, offset, offset + n_out)
            if result is None:
                result = part.copy()
            else:
                result += part
            offset += size
        remaining >>= 1
        if not remaining:
            break
        m = block.shape[axis] - size
        block = take(block, 0, m) + take(block, size, size + m)
        size *= 2
    assert result is not None  # length >= 1 (internal)
    return result


def _axis_counts(n: int, half: int, nonzero: bool) -> np.ndarray:
    """Per-axis number of pair positions p in the window of centre c, inside the volume, for c < n."""
    c = np.arange(n)
    lo = np.maximum(c - half, 0)
    hi = np.minimum(c + half - int(nonzero), n - 1 - int(nonzero))
    return np.maximum(hi - lo + 1, 0).astype(np.int64)


def _squared_differences(
    grey: np.ndarray, d: tuple[int, int, int], out: np.ndarray, accumulate: bool, dtype: type
) -> None:
    """Write/add E_d (squared grey difference of each pair, at its lower corner) into ``out``."""
    n = grey.shape
    lengths = [n[a] - abs(d[a]) for a in range(3)]
    first = tuple(slice(max(0, -d[a]), max(0, -d[a]) + lengths[a]) for a in range(3))
    second = tuple(slice(max(0, d[a]), max(0, d[a]) + lengths[a]) for a in range(3))
    small = np.int16 if grey.dtype == np.uint8 else np.int32
    diff = np.subtract(grey[first], grey[second], dtype=small)
    if accumulate:
        out += np.multiply(diff, diff, dtype=dtype)
    else:
        np.multiply(diff, diff, out=out, dtype=dtype)


def glcm_contrast(
    array: np.ndarray,
    levels: int = 256,
    window: int = 5,
    directions: Literal["merged", "averaged"] = "merged",
    value_range: tuple[float, float] | None = None,
    dtype: type = np.float64,
    n_threads: int | None = None,
    post: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Per-voxel GLCM contrast of the ``window``-wide cubic neighbourhood (distance 1, 13 directions).

    The intensities are quantised with :func:`quantise` (``levels``, ``value_range``);
    then, for every voxel, the symmetric GLCM of its ``window**3`` neighbourhood
    (clipped at the volume border: only pairs with both voxels inside the volume and
    inside the window count) gives contrast :math:`\\sum (i-j)^2 p(i,j)`, computed as
    box sums of squared grey differences (see the module docstring; exact integer
    sums, O(voxels), independent of ``levels``).

    Args:
        array: (z, y, x) intensities (e.g. HU), finite.
        levels: number of grey levels (>= 2).
        window: odd window width in voxels (>= 3), the same along z, y and x.
        directions: ``"merged"`` pools the pairs of all 13 directions into one matrix;
            ``"averaged"`` averages the 13 per-direction contrasts (IBSI 3-D aggregations).
        value_range: ``(lo, hi)`` for quantisation; ``None`` = the array's min..max.
        dtype: output float type; ``float64`` (default) is exact to rounding,
            ``float32`` is for model input.
        n_threads: worker threads over y-slabs (results are identical for any count);
            ``None`` = the CPU cores available to this process (at most 8).
        post: optional element-wise map applied to each slab's contrast while it is in
            cache (e.g. the log scaling of the texture channel); must keep the shape.

    Returns:
        Raw contrast (or ``post`` of it) in squared grey-level units, shape (z, y, x), in
        ``[0, (levels - 1)**2]``, of type ``dtype``. A volume with no voxel pair at all
        (a single voxel) gives zeros and a warning.

    Raises:
        ValueError: bad parameters or a non-3-D / non-finite array.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"glcm_contrast expects a 3-D (z, y, x) array, got shape {array.shape}.")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 3 or window % 2 == 0:
        raise ValueError(f"`window` must be an odd integer >= 3 (voxels), got {window!r}.")
    if directions not in ("merged", "averaged"):
        raise ValueError(f"`directions` must be 'merged' or 'averaged', got {directions!r}.")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"`dtype` must be float32 or float64, got {dtype!r}.")
    levels = _check_levels(levels)
    grey = quantise(array, levels, value_range)
    half = int(window) // 2
    shape = grey.shape
    # exact integer accumulator: the largest window sum is (#pairs in a window) * (levels - 1)^2
    max_pairs = sum(math.prod(window - abs(x) for x in d) for d in GLCM_DIRECTIONS)
    acc = np.int32 if max_pairs * (levels - 1) ** 2 < 2**31 - 1 else np.int64
    core = _merged if directions == "merged" else _averaged
    dtype = np.dtype(dtype)
    if grey.size == 1:
        warnings.warn(
            "glcm_contrast: the volume has a single voxel, so no voxel pair: contrast set to 0.",
            stacklevel=2,
        )
        zeros = np.zeros(shape, dtype=dtype)
        return zeros if post is None else post(zeros)
    # Slabs along y with a halo of `half` rows: the window of an output voxel only sees
    # voxels within `half` of it, so each slab is exact; small slabs stay in cache and
    # run on parallel threads (NumPy releases the GIL).
    if post is None:
        return map_slabs(lambda g: core(g, half, acc, dtype), grey, half, dtype, n_threads)
    return map_slabs(lambda g: post(core(g, half, acc, dtype)), grey, half, dtype, n_threads)


def _merged(grey: np.ndarray, half: int, acc: type, dtype: np.dtype) -> np.ndarray:
    shape = grey.shape
    padded = tuple(n + 2 * half for n in shape)
    w = 2 * half + 1
    # E per pattern of non-zero axes (dz != 0, dy != 0, dx != 0); 7 patterns.
    patterns: dict[tuple[bool, bool, bool], np.ndarray] = {}
    for d in GLCM_DIRECTIONS:
        if any(shape[a] - abs(d[a]) <= 0 for a in range(3)):
            continue  # no pair of this direction in the volume
        key = tuple(bool(x) for x in d)
        lengths = [shape[a] - abs(d[a]) for a in range(3)]
        new = key not in patterns
        if new:
            patterns[key] = np.zeros(padded, dtype=acc)
        view = patterns[key][tuple(slice(half, half + lengths[a]) for a in range(3))]
        _squared_differences(grey, d, view, accumulate=not new, dtype=acc)
    if not patterns:
        warnings.warn(
            "glcm_contrast: the volume has a single voxel, so no voxel pair: contrast set to 0.",
            stacklevel=3,
        )
        return np.zeros(shape, dtype=dtype)

    def stage(groups: dict, axis: int) -> dict:
        """Box-sum along ``axis``: length w-1 for non-zero patterns, w for zero ones; merge keys."""
        out: dict = {}
        n = shape[axis]
        keys = {k[:-1] for k in groups}
        for k in keys:
            nz, z = groups.get(k + (True,)), groups.get(k + (False,))
            if nz is not None and z is not None:
                nz += z  # B_w(z) = B_{w-1}(z) + shifted z
                total = _sliding_sum(nz, axis, w - 1, n)
                total += _take(z, axis, w - 1, w - 1 + n)
            elif nz is not None:
                total = _sliding_sum(nz, axis, w - 1, n)
            else:
                total = _sliding_sum(z, axis, w, n)
            out[k] = total
        return out

    stage_x = stage(patterns, 2)
    del patterns
    stage_y = stage(stage_x, 1)
    del stage_x
    total = stage(stage_y, 0)[()]
    del stage_y
    # pair counts N(c) = sum_d prod_a n_a(c_a; |d_a|): separable, no full-volume integer work
    counts = _pair_counts(shape, half, dtype)
    return np.divide(total, counts, dtype=dtype)


def _pair_counts(shape: tuple[int, ...], half: int, dtype: np.dtype) -> np.ndarray:
    """N(c) = sum_d prod_a n_a(c_a; |d_a|), pairs of all directions in the window and the volume."""
    planes = {False: np.zeros(shape[1:], dtype=np.int64), True: np.zeros(shape[1:], dtype=np.int64)}
    for d in GLCM_DIRECTIONS:
        planes[bool(d[0])] += np.outer(
            _axis_counts(shape[1], half, bool(d[1])), _axis_counts(shape[2], half, bool(d[2]))
        )
    counts = np.multiply.outer(_axis_counts(shape[0], half, False), planes[False]).astype(dtype)
    counts += np.multiply.outer(_axis_counts(shape[0], half, True), planes[True]).astype(dtype)
    return counts


def _take(arr: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    index = [slice(None)] * arr.ndim
    index[axis] = slice(start, stop)
    return arr[tuple(index)]


def _averaged(grey: np.ndarray, half: int, acc: type, dtype: np.dtype) -> np.ndarray:
    shape = grey.shape
    padded = tuple(n + 2 * half for n in shape)
    w = 2 * half + 1
    result = np.zeros(shape, dtype=dtype)
    used = 0
    for d in GLCM_DIRECTIONS:
        lengths = [shape[a] - abs(d[a]) for a in range(3)]
        if min(lengths) <= 0:
            continue
        e = np.zeros(padded, dtype=acc)
        _squared_differences(grey, d, e[tuple(slice(half, half + lengths[a]) for a in range(3))], False, acc)
        for axis in (2, 1, 0):
            e = _sliding_sum(e, axis, w - 1 if d[axis] else w, shape[axis])
        f = [_axis_counts(shape[a], half, bool(d[a])).astype(dtype) for a in range(3)]
        count = f[0][:, None, None] * (f[1][:, None] * f[2][None, :])[None]
        result += np.divide(e, count, dtype=dtype)
        used += 1
    if used == 0:
        warnings.warn(
            "glcm_contrast: the volume has a single voxel, so no voxel pair: contrast set to 0.",
            stacklevel=3,
        )
        return result
    result /= dtype.type(used)
    return result
