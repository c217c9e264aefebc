"""Benchmark of the four input channels and of the GLCM-contrast map (issue 4).

Prints a table: median wall time of each channel and of ``four_channels`` on a
synthetic 512 x 512 x 40 chest-like CT (z = 40), and the GLCM-contrast map against
a per-window GLCM reference (one co-occurrence matrix built per voxel window) on a
small volume: per-voxel speed ratio and exactness.

Run:  .venv/bin/python benchmarks/preprocess.py [--repeats 3] [--threads N] [--small 12]
Targets (issue 4): total <= 4 s on 2 CPU cores; GLCM map >= 1000x faster per voxel
than the reference and bit-exact.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from mkunet.preprocess import (
    GLCM_DIRECTIONS,
    canny_edges,
    four_channels,
    gaussian_denoise,
    glcm_contrast,
    intensity_channel,
    quantise,
    texture_channel,
)


def synthetic_ct(shape=(40, 512, 512), seed=0) -> np.ndarray:
    """A chest-like HU volume: air, body (soft tissue), two lungs, vessels, a nodule, spine, noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cy, cx = shape[1] / 2, shape[2] / 2
    hu = np.full(shape, -1000.0, dtype=np.float32)
    body = ((y - cy) / (0.39 * shape[1])) ** 2 + ((x - cx) / (0.47 * shape[2])) ** 2 < 1
    hu[np.broadcast_to(body, shape)] = 40.0
    for side in (-1, 1):
        lung = ((y - cy) / (0.25 * shape[1])) ** 2 + ((x - cx - side * 0.17 * shape[2]) / (0.14 * shape[2])) ** 2 < 1
        hu[np.broadcast_to(lung, shape)] = -850.0
    spine = (y - cy - 0.3 * shape[1]) ** 2 + (x - cx) ** 2 < (0.04 * shape[1]) ** 2
    hu[np.broadcast_to(spine, shape)] = 700.0
    for _ in range(60):  # vessels: short tubes along z
        vy, vx, r = rng.uniform(0.3, 0.7) * shape[1], rng.uniform(0.2, 0.8) * shape[2], rng.uniform(1, 4)
        tube = (y - vy) ** 2 + (x - vx) ** 2 < r**2
        hu[np.broadcast_to(tube, shape) & (hu < -800)] = 30.0
    nodule = (z - shape[0] / 2) ** 2 * 9 + (y - 0.4 * shape[1]) ** 2 + (x - 0.35 * shape[2]) ** 2 < 15**2
    hu[nodule] = 20.0
    hu += rng.normal(0.0, 20.0, shape).astype(np.float32)
    return hu


def per_window_reference(array: np.ndarray, levels: int, value_range, window: int = 5) -> np.ndarray:
    """GLCM contrast, one symmetric co-occurrence matrix per voxel window (13 directions merged).

    Vectorised within each window (pairs gathered by slicing, matrix by ``np.bincount``),
    looping over voxels. Contrast = sum (i-j)^2 P / sum P with integer P, one division.
    """
    grey = quantise(array, levels, value_range).astype(np.int64)
    half = window // 2
    i, j = np.meshgrid(np.arange(levels), np.arange(levels), indexing="ij")
    weight = ((i - j) ** 2).astype(np.int64)
    out = np.zeros(grey.shape, dtype=np.float64)
    for c in np.ndindex(grey.shape):
        lo = [max(0, c[a] - half) for a in range(3)]
        hi = [min(grey.shape[a], c[a] + half + 1) for a in range(3)]
        region = grey[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        n = region.shape
        codes = []
        for d in GLCM_DIRECTIONS:
            src = tuple(slice(max(0, -d[a]), n[a] - max(0, d[a])) for a in range(3))
            dst = tuple(slice(max(0, -d[a]) + d[a], n[a] - max(0, d[a]) + d[a]) for a in range(3))
            codes.append((region[src] * levels + region[dst]).ravel())
        p = np.bincount(np.concatenate(codes), minlength=levels * levels).reshape(levels, levels)
        p = p + p.T
        out[c] = int((weight * p).sum()) / int(p.sum())
    return out


def median_time(func: Callable[[], object], repeats: int) -> float:
    """Median wall time (s); the median process CPU time (all threads) goes to ``CPU_TIMES``."""
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        func()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU_TIMES.append(statistics.median(cpu))
    return statistics.median(times)


CPU_TIMES: list[float] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: available cores)")
    parser.add_argument("--small", type=int, default=12, help="edge of the small cube for the reference")
    args = parser.parse_args()
    window = (-1000.0, 400.0)
    hu = synthetic_ct()
    nt = args.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"volume (z, y, x) = {hu.shape}, {hu.size / 1e6:.1f} M voxels; cores available: {cores}; "
        f"threads: {nt or 'all'}; load average before: {os.getloadavg()[0]:.2f}"
    )
    intensity = intensity_channel(hu, window)
    rows = [
        ("intensity", median_time(lambda: intensity_channel(hu, window), args.repeats)),
        ("edges (3-D Canny)", median_time(lambda: canny_edges(intensity, n_threads=nt), args.repeats)),
        ("denoised (Gaussian)", median_time(lambda: gaussian_denoise(hu, window=window, n_threads=nt), args.repeats)),
        (
            "texture (GLCM contrast)",
            median_time(lambda: texture_channel(hu, window=window, n_threads=nt), args.repeats),
        ),
    ]
    total = median_time(lambda: four_channels(hu, window, n_threads=nt), args.repeats)
    rows.append(("total four_channels", total))
    print()
    print(f"{'step':<28}{'wall s':>10}{'CPU s':>10}   (medians of {args.repeats}; CPU = all threads)")
    for (name, seconds), cpu in zip(rows, CPU_TIMES):
        print(f"{name:<28}{seconds:>10.3f}{cpu:>10.3f}")
    print(
        f"target total <= 4 s (wall): {'met' if total <= 4.0 else 'NOT met'}; total CPU {CPU_TIMES[-1]:.2f} s "
        "(all threads: the wall time on otherwise idle cores is at most this)"
    )

    # GLCM map vs per-window reference
    small = hu[: args.small, 200 : 200 + args.small, 150 : 150 + args.small].copy()
    levels = 256
    start = time.perf_counter()
    ref = per_window_reference(small, levels, window)
    t_ref = time.perf_counter() - start
    fast_small = glcm_contrast(small, levels, 5, "merged", value_range=window, n_threads=nt)
    t_fast_small = median_time(
        lambda: glcm_contrast(small, levels, 5, "merged", value_range=window, n_threads=nt), max(args.repeats, 5)
    )
    t_fast_big = median_time(
        lambda: glcm_contrast(hu, levels, 5, "merged", value_range=window, n_threads=nt, dtype=np.float64), args.repeats
    )
    diff = float(np.abs(fast_small - ref).max())
    identical = bool(np.array_equal(fast_small, ref))
    ref_pv = t_ref / small.size
    print()
    print(f"GLCM contrast (256 levels, 5x5x5, 13 directions merged), reference on {small.shape}:")
    print(f"{'method':<44}{'s / voxel':>12}{'ratio':>10}")
    print(f"{'per-window GLCM reference (small cube)':<44}{ref_pv:>12.3e}{1.0:>10.0f}")
    print(
        f"{'box-sum map, same small cube':<44}{t_fast_small / small.size:>12.3e}{ref_pv / (t_fast_small / small.size):>10.0f}"  # noqa: E501
    )
    print(
        f"{'box-sum map, 512x512x40 (float64 output)':<44}{t_fast_big / hu.size:>12.3e}{ref_pv / (t_fast_big / hu.size):>10.0f}"  # noqa: E501
    )
    print(f"max |map - reference| = {diff:.3e}; bit-exact: {identical}")
    print(
        f"load average after: {os.getloadavg()[0]:.2f} (other processes share the cores; timings are noisy when it exceeds the core count)"  # noqa: E501
    )


if __name__ == "__main__":
    main()
