"""Run a local (finite-support) array operation on y-slabs in parallel threads.

NumPy and scipy.ndimage release the GIL on large array operations, so slabs of a
volume processed on threads use several cores. A slab carries ``halo`` extra rows
on each side, so any operation whose output voxel depends only on input voxels
within ``halo`` rows (along y) gives exactly the same result as on the whole volume.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["n_threads", "map_slabs"]

#: target voxels per slab (small enough for the caches, large enough to amortise the overhead)
SLAB_VOXELS = 200_000


def n_threads(requested: int | None) -> int:
    """Validated thread count; ``None`` = the CPU cores available to this process (at most 8)."""
    if requested is None:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(available, 8))
    if isinstance(requested, bool) or not isinstance(requested, (int, np.integer)) or requested < 1:
        raise ValueError(f"`n_threads` must be a positive integer or None (all cores), got {requested!r}.")
    return int(requested)


def map_slabs(
    func: Callable[[np.ndarray], np.ndarray],
    array: np.ndarray,
    halo: int,
    dtype: np.dtype | type,
    threads: int | None = None,
    slab_voxels: int | None = None,
) -> np.ndarray:
    """Apply ``func`` (a (z, y', x) -> (z, y', x) local operation) slab by slab along y.

    Args:
        func: maps a sub-volume to an array of the same shape.
        array: (z, y, x) input.
        halo: rows of context each output row needs on either side (the operation's radius).
        dtype: output dtype.
        threads: worker threads (see :func:`n_threads`).
        slab_voxels: voxels per slab (default :data:`SLAB_VOXELS`).

    Returns:
        ``func(array)`` assembled from the slabs, shape ``array.shape``.
    """
    shape = array.shape
    # at least 8 halos per slab, so the recomputed halo rows cost <= 25 %
    rows = max(8, 8 * halo, (slab_voxels or SLAB_VOXELS) // max(1, shape[0] * shape[2]))
    workers = n_threads(threads)
    if rows >= shape[1]:
        return np.asarray(func(array), dtype=dtype)
    result = np.empty(shape, dtype=dtype)

    def run(y0: int) -> None:
        y1 = min(shape[1], y0 + rows)
        a0, a1 = max(0, y0 - halo), min(shape[1], y1 + halo)
        result[:, y0:y1] = func(array[:, a0:a1])[:, y0 - a0 : y1 - a0]

    starts = range(0, shape[1], rows)
    if workers <= 1:
        for y0 in starts:
            run(y0)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, starts))
    return result
