"""Dice / IoU / HD95 on analytic cubes and spheres, against MONAI and a brute-force implementation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial import cKDTree

from mkunet.analysis.metrics import (
    EmptyMaskWarning,
    dice,
    hausdorff,
    hd95,
    iou,
    paired_ttest,
    segmentation_scores,
    summarise,
    surface_distances,
)


def _cube(shape, lo, hi):
    m = np.zeros(shape, dtype=bool)
    m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return m


def _sphere(shape, centre_mm, radius_mm, spacing):
    zz, yy, xx = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return (zz - centre_mm[0]) ** 2 + (yy - centre_mm[1]) ** 2 + (xx - centre_mm[2]) ** 2 <= radius_mm**2


def _brute_force_surface_distances(a, b, spacing):
    """Independent implementation: surface = voxels with a 6-neighbour outside (array border = outside); KD-tree."""

    def surface(m):
        p = np.pad(m, 1)
        inner = p[1:-1, 1:-1, 1:-1].copy()
        for axis in range(3):
            for shift in (-1, 1):
                inner &= np.roll(p, shift, axis=axis)[1:-1, 1:-1, 1:-1]
        return m & ~inner

    pa = np.argwhere(surface(a)) * np.asarray(spacing)
    pb = np.argwhere(surface(b)) * np.asarray(spacing)
    return cKDTree(pb).query(pa)[0], cKDTree(pa).query(pb)[0]


def test_dice_iou_shifted_cubes():
    a = _cube((20, 20, 20), (2, 2, 2), (12, 12, 12))
    b = _cube((20, 20, 20), (2, 2, 4), (12, 12, 14))  # shifted 2 voxels along x: overlap 10*10*8
    assert dice(a, b) == pytest.approx(2 * 800 / 2000)
    assert iou(a, b) == pytest.approx(800 / 1200)
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    assert dice(a, ~a) == 0.0


@pytest.mark.parametrize(
    "axis, shift, spacing",
    [(0, 3, (2.5, 0.7, 0.7)), (2, 2, (2.5, 0.7, 0.7)), (1, 1, (1.0, 3.0, 0.5))],
)
def test_hd_of_shifted_cube_is_the_shift_in_mm(axis, shift, spacing):
    """A solid cube shifted by k voxels along one axis: every directed distance is in [0, k*s], and the face
    perpendicular to the shift (>5 % of the surface) sits at exactly k*s, so HD = HD95 = k*s."""
    lo, hi = [4, 4, 4], [14, 14, 14]
    a = _cube((24, 24, 24), lo, hi)
    lo[axis] += shift
    hi[axis] += shift
    b = _cube((24, 24, 24), lo, hi)
    expected = shift * spacing[axis]
    assert hausdorff(a, b, spacing) == pytest.approx(expected)
    assert hd95(a, b, spacing) == pytest.approx(expected)
    assert hd95(a, b, spacing, mode="pooled") == pytest.approx(expected)


def test_hd95_concentric_spheres_anisotropic():
    """Spheres of radius 8 and 12 mm on a (2.0, 0.8, 0.8) mm grid: every surface-to-surface distance is
    4 mm up to the discretisation (half a voxel diagonal on each surface)."""
    spacing = (2.0, 0.8, 0.8)
    shape = (20, 44, 44)
    centre = (19.0, 17.2, 17.2)
    a = _sphere(shape, centre, 8.0, spacing)
    b = _sphere(shape, centre, 12.0, spacing)
    tol = math.dist((0, 0, 0), spacing)  # one voxel diagonal
    assert abs(hd95(a, b, spacing) - 4.0) < tol
    d_ab, d_ba = surface_distances(a, b, spacing)
    assert abs(np.median(d_ab) - 4.0) < tol and abs(np.median(d_ba) - 4.0) < tol


def test_hd95_matches_brute_force_and_monai():
    from monai.metrics import compute_hausdorff_distance

    rng = np.random.default_rng(0)
    from scipy import ndimage

    shape = (12, 40, 36)
    spacing = (2.5, 0.75, 0.9)
    for k in range(3):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
        a = field > 0.05
        b = ndimage.shift(field, (0, 2 + k, -1), order=1) > 0.0
        if k == 2:
            a[0] = True  # a mask touching the array border: surfaces there too
        d_ab, d_ba = _brute_force_surface_distances(a, b, spacing)
        ours_ab, ours_ba = surface_distances(a, b, spacing)
        # MONAI's distances are float32: equal to the float64 brute force to ~1e-7 relative
        np.testing.assert_allclose(np.sort(ours_ab), np.sort(d_ab), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.sort(ours_ba), np.sort(d_ba), rtol=1e-6, atol=1e-6)
        expected_max = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
        expected_pooled = np.percentile(np.concatenate([d_ab, d_ba]), 95)
        # MONAI's quantile runs in float32 (the interpolation position too): about 1e-6 relative
        assert hd95(a, b, spacing) == pytest.approx(expected_max, rel=1e-5)
        assert hd95(a, b, spacing, mode="pooled") == pytest.approx(expected_pooled, rel=1e-6)
        assert hd95(a, b, spacing, mode="pooled") <= hd95(a, b, spacing) + 1e-12
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # raised inside MONAI 1.6 itself
            monai = compute_hausdorff_distance(
                torch.from_numpy(a)[None, None],
                torch.from_numpy(b)[None, None],
                include_background=True,
                percentile=95,
                spacing=spacing,
            )
        assert hd95(a, b, spacing) == float(monai)  # hd95 is MONAI's, with our empty-mask policy around it


def test_empty_cases():
    empty = np.zeros((8, 8, 8), dtype=bool)
    cube = _cube((8, 8, 8), (2, 2, 2), (5, 5, 5))
    with pytest.warns(EmptyMaskWarning):
        assert dice(empty, empty) == 1.0
    with pytest.warns(EmptyMaskWarning):
        assert iou(empty, empty) == 1.0
    with pytest.warns(EmptyMaskWarning):
        assert hd95(empty, empty, (1, 1, 1)) == 0.0
    for p, t in ((empty, cube), (cube, empty)):
        with pytest.warns(EmptyMaskWarning):
            assert dice(p, t) == 0.0
        with pytest.warns(EmptyMaskWarning):
            assert iou(p, t) == 0.0
        with pytest.warns(EmptyMaskWarning, match="inf"):
            assert hd95(p, t, (1, 1, 1)) == math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyMaskWarning)
        scores = segmentation_scores(empty, cube, (2.0, 1.0, 1.0))
    assert scores == {"dice": 0.0, "iou": 0.0, "hd95": math.inf}


def test_input_validation():
    a = np.zeros((4, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match="same shape"):
        dice(a, np.zeros((4, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match="threshold"):
        dice(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="3-D"):
        iou(a[0], a[0])
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match="percentile"):
        hausdorff(a, a, (1, 1, 1), percentile=150)
    with pytest.raises(ValueError, match="percentile"):
        hausdorff(a, a, (1, 1, 1), percentile=0)  # MONAI would read 0 as "no percentile" (the maximum)
    with pytest.raises(ValueError, match="mode"):
        hausdorff(a, a, (1, 1, 1), mode="directed")
    cube = _cube((4, 4, 4), (1, 1, 1), (3, 3, 3))
    assert dice(cube.astype(np.uint8), cube) == 1.0  # integer labels accepted (non-zero = foreground)


def test_summarise_excludes_non_finite():
    with pytest.warns(UserWarning, match="1 infinite and 1 NaN"):
        s = summarise([1.0, 2.0, 3.0, math.inf, math.nan])
    assert s == {"mean": 2.0, "sd": 1.0, "n": 3, "n_inf": 1, "n_nan": 1, "n_total": 5}
    with pytest.warns(UserWarning, match="SD is undefined"):
        one = summarise([5.0])
    assert one["mean"] == 5.0 and math.isnan(one["sd"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert summarise(np.array([0.7, 0.8]))["sd"] == pytest.approx(np.std([0.7, 0.8], ddof=1))


def test_paired_ttest_against_formula():
    a = np.array([0.71, 0.75, 0.69, 0.80, 0.77, 0.73])
    b = np.array([0.74, 0.78, 0.70, 0.83, 0.81, 0.74])
    t, p = paired_ttest(a, b)
    d = a - b
    t_hand = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
    p_hand = 2 * stats.t.sf(abs(t_hand), d.size - 1)
    assert t == pytest.approx(t_hand) and p == pytest.approx(p_hand)
    with pytest.raises(ValueError, match="6 and 5"):
        paired_ttest(a, b[:5])
    with pytest.raises(ValueError, match="at least 2"):
        paired_ttest([1.0], [2.0])
    with pytest.raises(ValueError, match=r"index \[2\]"):
        paired_ttest([1.0, 2.0, math.inf], [1.0, 2.5, 3.0])
    with pytest.warns(UserWarning, match="all paired differences are 0"):
        t0, p0 = paired_ttest(a, a)
    assert math.isnan(t0) and math.isnan(p0)
