"""The four input channels: ranges, shapes, analytic Canny cases, independent Gaussian reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from mkunet.preprocess import (
    CHANNEL_NAMES,
    canny_edges,
    four_channels,
    gaussian_denoise,
    glcm_contrast,
    intensity_channel,
    texture_channel,
)
from mkunet.volume import Volume


def _phantom(shape=(12, 20, 22), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    hu = np.full(shape, -850.0, dtype=np.float32)  # lung
    hu[(z - 6) ** 2 + (y - 10) ** 2 + (x - 11) ** 2 < 16] = 40.0  # nodule
    hu[:, :2] = 1200.0  # bone, above the window
    hu[:, -2:] = -1100.0  # below the window
    return hu + rng.normal(0, 15, shape).astype(np.float32)


def test_four_channels_shape_range_and_order():
    hu = _phantom()
    volume = Volume(hu, spacing=(2.0, 0.7, 0.7))
    out = four_channels(volume)
    assert out.shape == (4,) + hu.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert CHANNEL_NAMES == ("intensity", "edges", "denoised", "texture")
    np.testing.assert_array_equal(out[0], intensity_channel(hu))
    np.testing.assert_array_equal(out[1], canny_edges(intensity_channel(hu)))
    np.testing.assert_array_equal(out[2], gaussian_denoise(hu))
    np.testing.assert_array_equal(out[3], texture_channel(hu))
    assert set(np.unique(out[1])) <= {0.0, 1.0} and out[1].any()
    # the same from an array or a Volume
    np.testing.assert_array_equal(four_channels(hu), out)


def test_intensity_is_the_windowed_hu():
    hu = np.array([[[-2000.0, -1000.0, -300.0, 400.0, 3000.0]]], dtype=np.float32)
    np.testing.assert_allclose(intensity_channel(hu), [[[0.0, 0.0, 0.5, 1.0, 1.0]]], atol=1e-7)
    np.testing.assert_allclose(intensity_channel(hu, (-300, -200)), [[[0, 0, 0, 1, 1]]], atol=1e-7)
    with pytest.raises(ValueError, match="window"):
        intensity_channel(hu, (400, -1000))


def test_gaussian_matches_explicit_3x3x3_kernel():
    hu = _phantom(seed=1)
    sigma = 0.8
    k1 = np.exp(-0.5 * (np.arange(-1, 2) / sigma) ** 2)
    k1 /= k1.sum()
    kernel = k1[:, None, None] * k1[None, :, None] * k1[None, None, :]
    ref = ndi.correlate(hu.astype(np.float64), kernel, mode="nearest")
    ref = (np.clip(ref, -1000, 400) + 1000) / 1400
    np.testing.assert_allclose(gaussian_denoise(hu), ref, atol=2e-6)
    # a constant volume stays constant; width 1 = no smoothing
    np.testing.assert_allclose(gaussian_denoise(np.full((4, 4, 4), -300.0)), 0.5, atol=1e-6)
    np.testing.assert_array_equal(gaussian_denoise(hu, width=1), intensity_channel(hu))
    with pytest.raises(ValueError, match="width"):
        gaussian_denoise(hu, width=4)


def test_canny_ball_gives_thin_shell_at_the_radius():
    n, radius = 36, 10.0
    centre = np.array([17.3, 17.6, 18.1])
    grid = np.indices((n, n, n)).astype(np.float64)
    dist = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
    ball = (dist <= radius).astype(np.float32)
    edges = canny_edges(ball)
    assert edges.dtype == np.float32 and set(np.unique(edges)) == {0.0, 1.0}
    d = dist[edges > 0]
    # on the boundary, within a voxel; nothing inside or outside
    assert d.min() > radius - 1.2 and d.max() < radius + 1.2
    assert abs(np.median(d) - radius) < 0.6
    # thin: about one voxel per unit of sphere surface (a 2-voxel shell would double it)
    area = 4 * math.pi * radius**2
    assert 0.7 * area < d.size < 1.5 * area
    # closed: every direction is hit (8 x 16 equal-area cells: uniform in cos(theta) and phi)
    v = (np.argwhere(edges > 0) - centre) / d[:, None]
    band = np.digitize(v[:, 0], np.linspace(-1, 1, 9)[1:-1])
    phi = np.digitize(np.arctan2(v[:, 1], v[:, 2]), np.linspace(-math.pi, math.pi, 17)[1:-1])
    assert len(set(zip(band.tolist(), phi.tolist()))) == 8 * 16


def test_canny_plane_step_is_one_voxel_thick():
    a = np.zeros((10, 12, 16), dtype=np.float32)
    a[:, :, 8:] = 1.0
    edges = canny_edges(a)
    xs = np.argwhere(edges > 0)[:, 2]
    assert set(xs.tolist()) == {7} or set(xs.tolist()) == {8}
    assert edges.sum() == 10 * 12  # the whole plane, one layer


def test_canny_hysteresis_keeps_weak_edges_connected_to_strong():
    # a cube whose faces have contrast 1 (strong) next to a cube of contrast 0.15 (weak, isolated)
    a = np.zeros((24, 24, 48), dtype=np.float32)
    a[6:18, 6:18, 4:16] = 1.0
    a[6:18, 6:18, 30:42] = 0.15
    edges = canny_edges(a, sigma=1.0, low=0.1, high=0.2)
    assert edges[:, :, :22].any() and not edges[:, :, 24:].any()
    # with a lower high threshold the weak cube is kept too
    assert canny_edges(a, sigma=1.0, low=0.05, high=0.1)[:, :, 24:].any()
    # constant volume: no edges
    assert not canny_edges(np.ones((5, 5, 5))).any()
    with pytest.raises(ValueError, match="high"):
        canny_edges(a, low=0.3, high=0.2)


def test_texture_channel_is_log_scaled_glcm_contrast():
    hu = _phantom(seed=2)
    c = glcm_contrast(hu, 256, 5, "merged", value_range=(-1000, 400))
    np.testing.assert_allclose(texture_channel(hu), np.log1p(c) / np.log1p(255.0**2), atol=1e-6)


def test_sparse_hysteresis_matches_ndimage_label():
    from mkunet.preprocess.channels import _hysteresis

    rng = np.random.default_rng(4)
    shape = (9, 11, 13)
    weak = rng.random(shape) < 0.12
    thin = np.flatnonzero(weak)
    strong = rng.random(thin.size) < 0.05
    labels, _ = ndi.label(weak, structure=np.ones((3, 3, 3)))
    keep = np.isin(labels.ravel()[thin], labels.ravel()[thin[strong]])
    np.testing.assert_array_equal(_hysteresis(thin, strong, shape), keep)
    assert 0 < keep.sum() < keep.size


@pytest.mark.parametrize("shape", [(9, 30, 11), (3, 20, 5), (1, 12, 40)])
def test_canny_smoothing_matches_scipy_gaussian(shape):
    from mkunet.preprocess.channels import _gaussian

    a = np.random.default_rng(5).random(shape).astype(np.float32)
    ref = ndi.gaussian_filter(a.astype(np.float64), 1.5, mode="nearest")
    np.testing.assert_allclose(_gaussian(a, 1.5, None, 2), ref, atol=1e-6)
