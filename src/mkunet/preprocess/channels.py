"""The four model input channels (paper 2.1.1, SPEC "Four input channels").

Every channel is float32, shape (z, y, x), in [0, 1]:

0. ``intensity``: HU clipped to the window (default lung window -1000..400 HU) and
   scaled linearly, ``(clip(HU, lo, hi) - lo) / (hi - lo)``.
1. ``edges``: 3-D Canny edges (0/1) of the intensity channel (:func:`canny_edges`,
   sigma 1.5 voxels, hysteresis 0.1 / 0.2 of the maximum gradient magnitude).
2. ``denoised``: 3-D Gaussian of the HU volume (sigma 0.8 voxels, kernel 3 voxels
   wide), then windowed like channel 0 (:func:`gaussian_denoise`).
3. ``texture``: per-voxel GLCM contrast :math:`C` of the 5x5x5 neighbourhood
   (:func:`mkunet.preprocess.glcm.glcm_contrast`, 256 grey levels spanning the HU
   window, distance 1, 13 directions merged), compressed to [0, 1] by the fixed map
   :math:`\\log(1 + C) / \\log(1 + (L-1)^2)` (L = 256). The log spreads the typical
   range (noise: C ~ 10..100, tissue borders: C ~ 10^3..10^4) over the unit interval
   and is the same for every scan (no per-scan normalisation).

Sigmas and widths are in voxels, along every axis (z, y, x), as in the paper and in
scikit-image; with anisotropic CT voxels (e.g. 0.7 x 0.7 x 5 mm) they are therefore
not isotropic in mm. Resample first (:func:`mkunet.preprocess.resample`) if that
matters.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

from mkunet.preprocess._parallel import map_slabs
from mkunet.preprocess.glcm import glcm_contrast
from mkunet.volume import Volume

__all__ = [
    "CHANNEL_NAMES",
    "DEFAULT_WINDOW",
    "intensity_channel",
    "canny_edges",
    "gaussian_denoise",
    "texture_channel",
    "four_channels",
]

#: default HU window (lung window) mapped to [0, 1]
DEFAULT_WINDOW: tuple[float, float] = (-1000.0, 400.0)
#: channel order of :func:`four_channels`
CHANNEL_NAMES: tuple[str, str, str, str] = ("intensity", "edges", "denoised", "texture")

ArrayLike3D = Volume | np.ndarray


def as_array(volume: ArrayLike3D, name: str = "volume") -> np.ndarray:
    """The (z, y, x) float32 array of a Volume or an array (no copy when already float32).

    Raises:
        ValueError: the array is not 3-D; the message names ``name``.
    """
    array = volume.array if isinstance(volume, Volume) else np.asarray(volume)
    if array.ndim != 3:
        raise ValueError(f"`{name}` must be a 3-D (z, y, x) volume, got shape {array.shape}.")
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    return array


def check_window(window: tuple[float, float], name: str = "window") -> tuple[float, float]:
    """Validate an intensity window ``(low, high)`` in HU: finite, low < high."""
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be two numbers (low, high) in HU, got {window!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ValueError(f"`{name}` must be finite with low < high (HU), got {window!r}.")
    return lo, hi


def _window_in_place(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    np.clip(array, np.float32(lo), np.float32(hi), out=array)
    array -= np.float32(lo)
    array *= np.float32(1.0 / (hi - lo))
    return array


def intensity_channel(volume: ArrayLike3D, window: tuple[float, float] = DEFAULT_WINDOW) -> np.ndarray:
    """HU clipped to ``window`` and scaled linearly to [0, 1].

    Args:
        volume: a :class:`~mkunet.volume.Volume` or (z, y, x) array in HU.
        window: ``(low, high)`` in HU, mapped to 0 and 1.

    Returns:
        float32 (z, y, x) in [0, 1].
    """
    lo, hi = check_window(window)
    array = as_array(volume)
    out = np.clip(array, np.float32(lo), np.float32(hi))  # new float32 array
    return _window_in_place(out, lo, hi)


def _gaussian(array: np.ndarray, sigma: float, radius: int | None, threads: int | None) -> np.ndarray:
    """3-D Gaussian (float32, border "nearest"), same as ``ndi.gaussian_filter(..., radius=radius)``.

    The strided axes z and y use a symmetric FIR written with array slices (scipy's
    per-line buffering is slow along strided axes); x uses ``ndi.gaussian_filter1d``.
    """
    if sigma == 0:
        return array.copy()
    if radius is None:
        radius = int(4.0 * sigma + 0.5)  # scipy's default truncate = 4
    taps = np.exp(-0.5 * (np.arange(radius + 1) / sigma) ** 2)
    taps /= taps[0] + 2 * taps[1:].sum()

    def smooth(a: np.ndarray) -> np.ndarray:
        out = _symmetric_fir(a, taps, 0)
        out = _symmetric_fir(out, taps, 1)
        return ndi.gaussian_filter1d(out, sigma, axis=2, radius=radius, mode="nearest", output=out)

    return map_slabs(smooth, array, radius, np.float32, threads)


def _symmetric_fir(a: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    """``out[i] = t0 a[i] + sum_k t_k (a[i-k] + a[i+k])`` along ``axis``, border replicated (float32)."""
    n, radius = a.shape[axis], taps.size - 1
    if n == 1 or radius == 0:
        return a.astype(np.float32, copy=True)
    moved = np.moveaxis(a, axis, 0)
    pad = np.concatenate([np.repeat(moved[:1], radius, axis=0), moved, np.repeat(moved[-1:], radius, axis=0)], axis=0)
    out = pad[radius : radius + n] * np.float32(taps[0])
    tmp = np.empty_like(out)
    for k in range(1, radius + 1):
        np.add(pad[radius - k : radius - k + n], pad[radius + k : radius + k + n], out=tmp)
        tmp *= np.float32(taps[k])
        out += tmp
    return np.moveaxis(out, 0, axis)


def _check_fraction(value: float, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number in [0, 1], got {value!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a fraction of the maximum gradient in [0, 1], got {value!r}.")
    return value


def canny_edges(
    volume: ArrayLike3D,
    sigma: float = 1.5,
    low: float = 0.1,
    high: float = 0.2,
    n_threads: int | None = None,
) -> np.ndarray:
    """3-D Canny edge detector; 0/1 output.

    Steps (all float32, vectorised):

    1. Gaussian smoothing, ``sigma`` in voxels (same on z, y, x), kernel radius
       ``round(4 sigma)``, border mode "nearest".
    2. Gradient by central differences :math:`I_{i+1} - I_{i-1}` along each axis (border
       voxel replicated).
    3. Magnitude :math:`|\\nabla I|`, normalised by its maximum over the volume (the
       thresholds are applied to the squared magnitude, equivalently).
    4. Non-maximum suppression: the gradient direction is quantised to the nearest of
       the 13 neighbour axes (26-connectivity): the offset has component
       :math:`\\mathrm{sign}(g_a)` on each axis whose :math:`|g_a| \\ge \\tan(22.5°)\\max_b |g_b|`
       (the 3-D form of the 2-D 45° sectors), else 0. A voxel survives when its
       magnitude is >= the neighbour ahead and > the neighbour behind (ties broken
       to one voxel; neighbours outside the volume count as 0).
    5. Hysteresis: survivors with normalised magnitude >= ``low`` form candidate
       edges; connected groups of candidates (26-connectivity) are kept when at least
       one voxel reaches ``high`` (connected components of the sparse graph of
       surviving voxels).

    Args:
        volume: Volume or (z, y, x) array (any intensity unit; the thresholds are
            relative, so the result does not depend on the unit or scale).
        sigma: Gaussian sigma in voxels (>= 0; 0 = no smoothing).
        low: low hysteresis threshold, fraction of the maximum gradient magnitude.
        high: high hysteresis threshold (>= ``low``), same unit.
        n_threads: threads for the smoothing (``None`` = available cores).

    Returns:
        float32 (z, y, x), 1 on edge voxels, 0 elsewhere (all 0 for a constant volume).
    """
    array = as_array(volume)
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"`sigma` must be a number >= 0 (voxels), got {sigma!r}.") from None
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"`sigma` must be a number >= 0 (voxels), got {sigma!r}.")
    low = _check_fraction(low, "low")
    high = _check_fraction(high, "high")
    if high < low:
        raise ValueError(f"`high` ({high}) must be >= `low` ({low}).")
    shape = array.shape
    out = np.zeros(shape, dtype=np.float32)
    if min(shape) < 1:
        return out
    smooth = _gaussian(array, sigma, None, n_threads)
    # squared gradient magnitude (no full gradient arrays: components are gathered later,
    # at the candidates only)
    magnitude = map_slabs(_gradient_magnitude_sq, smooth, 1, np.float32, n_threads)
    peak = float(magnitude.max())
    if not math.isfinite(peak):
        raise ValueError("canny_edges: the volume contains NaN or infinite values; fill them first.")
    if peak == 0.0:
        return out
    flat = magnitude.ravel()
    candidates = np.flatnonzero(flat >= np.float32(low * low * peak))
    if candidates.size == 0:
        return out
    coords = np.unravel_index(candidates, shape)
    strides = (shape[1] * shape[2], shape[2], 1)
    smooth_flat = smooth.ravel()
    comps = []
    for a in range(3):
        ahead = candidates + strides[a] * (coords[a] < shape[a] - 1)
        behind = candidates - strides[a] * (coords[a] > 0)
        comps.append(smooth_flat[ahead] - smooth_flat[behind])
    del smooth, smooth_flat
    # quantised gradient direction: one of the 13 neighbour axes
    largest = np.maximum(np.maximum(np.abs(comps[0]), np.abs(comps[1])), np.abs(comps[2]))
    limit = largest * np.float32(math.tan(math.pi / 8))
    offsets = [(np.sign(c) * (np.abs(c) >= limit)).astype(np.int64) for c in comps]
    m = flat[candidates]

    def neighbour(sign: int) -> np.ndarray:
        inside = np.ones(candidates.size, dtype=bool)
        index = np.zeros(candidates.size, dtype=np.int64)
        for a in range(3):
            c = coords[a] + sign * offsets[a]
            inside &= (c >= 0) & (c < shape[a])
            index = index * shape[a] + c
        values = flat[np.where(inside, index, 0)]
        values[~inside] = 0
        return values

    keep = (m >= neighbour(+1)) & (m > neighbour(-1))
    thin = candidates[keep]  # sorted flat indices
    strong = flat[thin] >= np.float32(high * high * peak)
    edges = thin[_hysteresis(thin, strong, shape)]
    out.ravel()[edges] = 1.0
    return out


def _gradient_magnitude_sq(s: np.ndarray) -> np.ndarray:
    """Sum over axes of (s[i+1] - s[i-1])^2, the border voxel replicated (float32)."""
    out = np.zeros(s.shape, dtype=np.float32)
    for a in range(3):
        n = s.shape[a]
        if n < 2:
            continue

        def sl(start: int, stop: int, axis: int = a) -> tuple[slice, ...]:
            index = [slice(None)] * 3
            index[axis] = slice(start, stop)
            return tuple(index)

        diff = np.empty(s.shape, dtype=np.float32)
        np.subtract(s[sl(2, n)], s[sl(0, n - 2)], out=diff[sl(1, n - 1)])
        np.subtract(s[sl(1, 2)], s[sl(0, 1)], out=diff[sl(0, 1)])
        np.subtract(s[sl(n - 1, n)], s[sl(n - 2, n - 1)], out=diff[sl(n - 1, n)])
        np.multiply(diff, diff, out=diff)
        out += diff
    return out


def _hysteresis(thin: np.ndarray, strong: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Bool over ``thin`` (sorted flat indices): in a 26-connected group holding a strong voxel."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = thin.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    coords = np.unravel_index(thin, shape)
    rows, cols = [], []
    for d in ((0, 0, 1), (0, 1, -1), (0, 1, 0), (0, 1, 1)) + tuple(
        (1, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    ):  # 13 forward offsets: every 26-neighbour pair once
        inside = np.ones(n, dtype=bool)
        index = np.zeros(n, dtype=np.int64)
        for a in range(3):
            c = coords[a] + d[a]
            inside &= (c >= 0) & (c < shape[a])
            index = index * shape[a] + c
        pos = np.searchsorted(thin, index)
        found = inside & (pos < n)
        found[found] = thin[pos[found]] == index[found]
        rows.append(np.flatnonzero(found))
        cols.append(pos[found])
    row, col = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(row.size, dtype=np.int8), (row, col)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    keep_label = np.zeros(labels.max() + 1, dtype=bool)
    keep_label[labels[strong]] = True
    return keep_label[labels]


def gaussian_denoise(
    volume: ArrayLike3D,
    sigma: float = 0.8,
    width: int = 3,
    window: tuple[float, float] = DEFAULT_WINDOW,
    n_threads: int | None = None,
) -> np.ndarray:
    """3-D Gaussian smoothing of the HU volume, then windowed to [0, 1] like the intensity channel.

    Args:
        volume: Volume or (z, y, x) array in HU.
        sigma: Gaussian sigma in voxels (> 0), the same on z, y and x.
        width: kernel width in voxels (odd, >= 1): radius ``width // 2`` on each axis;
            the truncated kernel is renormalised to sum 1. Border mode "nearest".
        window: ``(low, high)`` HU mapped to 0 and 1.
        n_threads: worker threads (``None`` = available cores).

    Returns:
        float32 (z, y, x) in [0, 1].
    """
    lo, hi = check_window(window)
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"`sigma` must be a number > 0 (voxels), got {sigma!r}.") from None
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"`sigma` must be a number > 0 (voxels), got {sigma!r}.")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1 or width % 2 == 0:
        raise ValueError(f"`width` must be an odd integer >= 1 (voxels), got {width!r}.")
    array = as_array(volume)
    radius = int(width) // 2
    if radius == 0:
        return intensity_channel(array, (lo, hi))
    if radius == 1:
        w = math.exp(-0.5 / sigma**2)
        smooth = lambda a: _smooth3(a, w / (1 + 2 * w), 1 / (1 + 2 * w))  # noqa: E731
    else:
        smooth = lambda a: ndi.gaussian_filter(a, sigma, radius=radius, mode="nearest")  # noqa: E731
    return map_slabs(lambda a: _window_in_place(smooth(a), lo, hi), array, radius, np.float32, n_threads)


def _smooth3(a: np.ndarray, side: float, centre: float) -> np.ndarray:
    """Separable 3-tap filter [side, centre, side] on every axis, border replicated (float32).

    Same as ``scipy.ndimage.gaussian_filter(a, sigma, radius=1, mode="nearest")`` up to
    float32 rounding, without scipy's per-line buffering (about twice as fast).
    """
    side32, centre32 = np.float32(side), np.float32(centre)
    current = a
    for axis in range(3):
        n = current.shape[axis]
        if n == 1:
            continue

        def sl(start: int, stop: int, ax: int = axis) -> tuple[slice, ...]:
            index = [slice(None)] * 3
            index[ax] = slice(start, stop)
            return tuple(index)

        result = np.empty(current.shape, dtype=np.float32)
        inner = result[sl(1, n - 1)]
        np.add(current[sl(0, n - 2)], current[sl(2, n)], out=inner)
        inner *= side32
        inner += current[sl(1, n - 1)] * centre32
        for edge, near in ((0, 1), (n - 1, n - 2)):  # replicated border: [side, centre+side] weights
            out_edge = result[sl(edge, edge + 1)]
            np.multiply(current[sl(edge, edge + 1)], np.float32(centre + side), out=out_edge)
            out_edge += current[sl(near, near + 1)] * side32
        current = result
    return current if current is not a else a.copy()


def texture_channel(
    volume: ArrayLike3D,
    window: tuple[float, float] = DEFAULT_WINDOW,
    levels: int = 256,
    size: int = 5,
    directions: Literal["merged", "averaged"] = "merged",
    n_threads: int | None = None,
) -> np.ndarray:
    """GLCM-contrast texture channel in [0, 1]: :math:`\\log(1 + C) / \\log(1 + (L-1)^2)`.

    ``C`` is :func:`~mkunet.preprocess.glcm.glcm_contrast` of the HU volume quantised
    to ``levels`` grey levels over ``window`` (so maps are comparable across scans),
    in a ``size``-wide cubic window.

    Returns:
        float32 (z, y, x) in [0, 1].
    """
    lo, hi = check_window(window)
    contrast = glcm_contrast(
        as_array(volume),
        levels=levels,
        window=size,
        directions=directions,
        value_range=(lo, hi),
        dtype=np.float32,
        n_threads=n_threads,
        post=lambda c: _log_scale(c, levels),
    )
    return contrast


def _log_scale(contrast: np.ndarray, levels: int) -> np.ndarray:
    np.log1p(contrast, out=contrast)
    contrast *= np.float32(1.0 / math.log1p((levels - 1) ** 2))
    np.clip(contrast, 0.0, 1.0, out=contrast)
    return contrast


def four_channels(
    volume: ArrayLike3D,
    window: tuple[float, float] = DEFAULT_WINDOW,
    n_threads: int | None = None,
) -> np.ndarray:
    """The four model input channels, stacked (see the module docstring).

    Args:
        volume: Volume or (z, y, x) array in HU.
        window: ``(low, high)`` HU window for intensity, denoised and texture quantisation.
        n_threads: worker threads (``None`` = available cores).

    Returns:
        float32 (4, z, y, x), every channel in [0, 1], in the order of
        :data:`CHANNEL_NAMES`: intensity, edges, denoised, texture.
    """
    window = check_window(window)
    array = as_array(volume)
    out = np.empty((4,) + array.shape, dtype=np.float32)
    out[0] = intensity_channel(array, window)
    out[1] = canny_edges(out[0], n_threads=n_threads)
    out[2] = gaussian_denoise(array, window=window, n_threads=n_threads)
    out[3] = texture_channel(array, window=window, n_threads=n_threads)
    return out
