"""GLCM-contrast map vs a brute-force per-window GLCM written here (independent implementation)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mkunet.preprocess import _parallel, glcm_contrast, quantise

# the 13 offsets of 26-connectivity, one of each +/- pair, built independently of the module
OFFSETS = [d for d in itertools.product((-1, 0, 1), repeat=3) if d > (0, 0, 0)]


def brute_force(grey: np.ndarray, levels: int, window: int, directions: str) -> np.ndarray:
    """Per voxel: build each direction's symmetric co-occurrence matrix of the clipped window."""
    half = window // 2
    i, j = np.meshgrid(np.arange(levels), np.arange(levels), indexing="ij")
    weight = (i - j) ** 2
    out = np.zeros(grey.shape)
    for c in np.ndindex(grey.shape):
        lo = [max(0, c[a] - half) for a in range(3)]
        hi = [min(grey.shape[a], c[a] + half + 1) for a in range(3)]
        region = grey[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        matrices = []
        n = region.shape
        for d in OFFSETS:
            # voxels x with x + d also in the region: x_a in [max(0, -d_a), n_a - max(0, d_a))
            src = tuple(slice(max(0, -d[a]), n[a] - max(0, d[a])) for a in range(3))
            dst = tuple(slice(max(0, -d[a]) + d[a], n[a] - max(0, d[a]) + d[a]) for a in range(3))
            first, second = region[src].ravel(), region[dst].ravel()
            if first.size == 0:
                continue
            p = np.zeros((levels, levels))
            np.add.at(p, (first, second), 1.0)
            p = p + p.T  # symmetric
            matrices.append(p)
        if directions == "merged":
            p = sum(matrices)
            out[c] = (weight * p / p.sum()).sum()
        else:
            out[c] = np.mean([(weight * p / p.sum()).sum() for p in matrices])
    return out


@pytest.mark.parametrize("directions", ["merged", "averaged"])
@pytest.mark.parametrize(
    "levels,shape,window",
    [(4, (7, 8, 9), 5), (16, (7, 8, 9), 5), (256, (4, 5, 6), 5), (16, (1, 6, 7), 5), (8, (2, 9, 3), 3)],
)
def test_matches_brute_force_on_integer_levels(levels, shape, window, directions):
    rng = np.random.default_rng(levels + shape[0])
    grey = rng.integers(0, levels, shape)
    # value_range (0, levels) maps integer v to level v exactly
    fast = glcm_contrast(grey.astype(np.float32), levels, window, directions, value_range=(0, levels))
    assert fast.dtype == np.float64 and fast.shape == shape
    np.testing.assert_allclose(fast, brute_force(grey, levels, window, directions), rtol=0, atol=1e-9)


@pytest.mark.parametrize("directions", ["merged", "averaged"])
def test_matches_brute_force_on_hu_with_own_quantisation(directions):
    rng = np.random.default_rng(7)
    hu = rng.normal(-300, 400, (6, 7, 8)).astype(np.float32)
    levels, lo, hi = 16, -1000.0, 400.0
    # IBSI fixed bin number, written here in float64
    grey = np.clip(np.floor(levels * (np.clip(hu.astype(np.float64), lo, hi) - lo) / (hi - lo)), 0, levels - 1)
    fast = glcm_contrast(hu, levels, 5, directions, value_range=(lo, hi))
    np.testing.assert_allclose(fast, brute_force(grey.astype(int), levels, 5, directions), rtol=0, atol=1e-9)


def test_slabs_and_threads_give_identical_results(monkeypatch):
    rng = np.random.default_rng(3)
    hu = rng.normal(0, 300, (5, 40, 9)).astype(np.float32)
    whole = glcm_contrast(hu, 64, 5)
    monkeypatch.setattr(_parallel, "SLAB_VOXELS", 1)  # force many 16-row slabs
    for threads in (1, 3):
        np.testing.assert_array_equal(glcm_contrast(hu, 64, 5, n_threads=threads), whole)
    np.testing.assert_array_equal(
        glcm_contrast(hu, 64, 5, "averaged"), glcm_contrast(hu, 64, 5, "averaged", n_threads=1)
    )


def test_analytic_cases():
    # constant volume: contrast 0
    assert not glcm_contrast(np.full((4, 5, 6), 3.0), 8).any()
    # alternating planes along x between levels 0 and L-1: only pairs with dx != 0 differ
    levels = 4
    grey = np.zeros((6, 6, 6))
    grey[:, :, 1::2] = levels - 1
    c = glcm_contrast(grey, levels, 5, "merged", value_range=(0, levels - 1 + 1e-9))
    # interior window: 9 directions with dx != 0, each 4*5*5/(5*5*4)... pooled fraction:
    # pairs with dx != 0: (1 axis: 4*5*5=100) + (2 face: 2*4*4*5=160) + (2 face: 160) + (4 body: 256) = 676
    # all pairs: 3*100 + 6*80 + 4*64 = 1036
    assert c[2, 2, 2] == pytest.approx(676 / 1036 * (levels - 1) ** 2, abs=1e-12)
    # the float32 output agrees with float64
    np.testing.assert_allclose(glcm_contrast(grey, levels, dtype=np.float32), glcm_contrast(grey, levels), rtol=1e-6)


def test_single_voxel_warns_and_gives_zero():
    with pytest.warns(UserWarning, match="single voxel"):
        out = glcm_contrast(np.ones((1, 1, 1)), 8)
    assert out.shape == (1, 1, 1) and out[0, 0, 0] == 0


def test_quantise_matches_ibsi_formula():
    rng = np.random.default_rng(1)
    hu = rng.uniform(-1200, 600, 10_000).astype(np.float32)
    q = quantise(hu, 256, (-1000, 400))
    assert q.dtype == np.uint8
    ref = np.clip(np.floor(256 * (np.clip(hu.astype(np.float64), -1000, 400) + 1000) / 1400), 0, 255)
    scaled = 256 * (np.clip(hu.astype(np.float64), -1000, 400) + 1000) / 1400
    at_boundary = np.abs(scaled - np.round(scaled)) < 1e-4  # float32 rounding may flip exact bin edges
    assert np.array_equal(q[~at_boundary], ref[~at_boundary])
    assert q.min() == 0 and q.max() == 255
    # default range: array min..max
    assert quantise(np.array([2.0, 3.0, 4.0]), 2).tolist() == [0, 1, 1]
    assert quantise(np.full(3, 5.0), 8).tolist() == [0, 0, 0]
    assert quantise(hu, 1000, (-1000, 400)).dtype == np.uint16


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"levels": 1}, "levels"),
        ({"window": 4}, "window"),
        ({"directions": "mean"}, "directions"),
        ({"value_range": (1, 0)}, "value_range"),
        ({"n_threads": 0}, "n_threads"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        glcm_contrast(np.zeros((3, 3, 3)), **kwargs)


def test_nan_raises():
    a = np.zeros((3, 3, 3))
    a[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        glcm_contrast(a)
