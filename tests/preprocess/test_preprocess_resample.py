"""Resampling keeps physical geometry: linear functions of position are reproduced exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mkunet.preprocess import Grid, resample, resample_array, resample_mask, resample_to
from mkunet.volume import Volume, same_grid

COEF = np.array([0.7, -1.3, 2.1])  # f(p) = COEF . p (x, y, z mm) + 5


def _rotation(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _linear_volume(shape=(9, 14, 16), spacing=(2.5, 0.8, 0.9), origin=(-10.0, 4.0, 30.0), deg=20.0) -> Volume:
    v = Volume(np.zeros(shape, np.float32), spacing=spacing, origin=origin, direction=_rotation(deg), patient_id="P1")
    return v.with_array(_field(v))


def _field(v: Volume) -> np.ndarray:
    points = v.index_to_physical(np.indices(v.shape).reshape(3, -1).T)
    return (points @ COEF + 5.0).reshape(v.shape).astype(np.float32)


def _inside(target: Volume, source: Volume) -> np.ndarray:
    """Target voxels whose centre lies within the source's voxel-centre hull (no extrapolation)."""
    idx = source.physical_to_index(target.index_to_physical(np.indices(target.shape).reshape(3, -1).T))
    ok = np.all((idx >= -1e-6) & (idx <= np.array(source.shape) - 1 + 1e-6), axis=1)
    return ok.reshape(target.shape)


def test_resample_geometry_and_values():
    v = _linear_volume()
    out = resample(v, (1.25, 1.6, 1.5))
    assert out.spacing == (1.25, 1.6, 1.5)
    assert out.shape == (18, 7, 10)  # ceil(9*2.5/1.25), ceil(14*0.8/1.6), ceil(16*0.9/1.5)
    assert out.origin == v.origin and np.allclose(out.direction, v.direction)
    assert out.patient_id == "P1" and out.array.dtype == np.float32
    inside = _inside(out, v)
    assert inside.mean() > 0.7
    np.testing.assert_allclose(out.array[inside], _field(out)[inside], atol=2e-3)
    with pytest.raises(ValueError, match="spacing"):
        resample(v, (1, 0, 1))
    with pytest.raises(ValueError, match="interpolator"):
        resample(v, (1, 1, 1), interpolator="cubic")


def test_round_trip_back_to_input_grid():
    v = _linear_volume()
    coarse = resample(v, (3.0, 1.2, 1.2))
    back = resample_to(coarse, v)
    assert same_grid(back, v)
    # compare where every coarse sample used by the interpolation was itself interpolated
    # (not clamped at the border of the input)
    exact = _inside(coarse, v)
    idx = coarse.physical_to_index(v.index_to_physical(np.indices(v.shape).reshape(3, -1).T))
    inside = _inside(v, coarse).ravel()
    for corner in np.ndindex(2, 2, 2):
        k = np.clip(np.floor(idx + 1e-6).astype(int) + np.array(corner), 0, np.array(coarse.shape) - 1)
        inside &= exact[k[:, 0], k[:, 1], k[:, 2]]
    inside = inside.reshape(v.shape)
    assert inside.mean() > 0.4
    np.testing.assert_allclose(back.array[inside], v.array[inside], atol=2e-3)
    # an array on the coarse grid (a probability map) goes back the same way
    back2 = resample_to(coarse.array, v, source=coarse)
    np.testing.assert_array_equal(back2.array, back.array)
    with pytest.raises(ValueError, match="source"):
        resample_to(coarse.array, v)


def test_mask_round_trip_nearest_and_linear():
    v = _linear_volume(shape=(8, 12, 12), spacing=(2.0, 1.0, 1.0), deg=0)
    mask = np.zeros(v.shape, bool)
    mask[2:6, 3:9, 4:10] = True
    fine = resample(v, (1.0, 0.5, 0.5))
    up = resample_mask(mask, v, fine)
    assert up.dtype == bool and up.shape == fine.shape
    assert up.sum() == mask.sum() * 8  # each voxel -> 2x2x2 nearest-neighbour children
    np.testing.assert_array_equal(resample_mask(up, fine, v), mask)
    np.testing.assert_array_equal(resample_mask(up, fine, v, method="linear"), mask)


def test_resample_array_crop_transform_dtype_and_default():
    """A crop of a volume through a translation: f(T(p)) on the target grid, NaN outside; labels stay uint8."""
    import SimpleITK as sitk

    v = _linear_volume()
    lo = np.array([2, 3, 4])
    sub = v.array[2:8, 3:12, 4:14]
    origin = v.index_to_physical(lo)
    crop = Grid(sub.shape, v.spacing, (float(origin[0]), float(origin[1]), float(origin[2])), v.direction)
    np.testing.assert_allclose(crop.index_to_physical([1, 2, 3]), v.index_to_physical(lo + [1, 2, 3]), atol=1e-9)
    shift = np.array([0.6, -0.4, 1.1])  # mm (x, y, z): the target point p samples the source at p + shift
    out = resample_array(sub, crop, v, transform=sitk.TranslationTransform(3, tuple(shift)), default_value=math.nan)
    assert out.shape == v.shape and out.dtype == np.float32
    points = v.index_to_physical(np.indices(v.shape).reshape(3, -1).T) + shift
    assert 0.1 < np.isfinite(out).mean() < 0.9  # the crop covers part of the volume; the rest is the default (NaN)
    idx = v.physical_to_index(points) - lo  # continuous indices in the crop
    hull = np.all((idx >= -1e-6) & (idx <= np.array(sub.shape) - 1 + 1e-6), axis=1).reshape(v.shape)
    assert np.isfinite(out[hull]).all() and hull.sum() > 100
    inside = hull  # beyond the last voxel centres ITK repeats the border value
    expected = (points @ COEF + 5.0).reshape(v.shape)
    np.testing.assert_allclose(out[inside], expected[inside], atol=2e-3)
    # identity onto its own grid gives the array back; bool labels come back as uint8
    mask = v.array > np.median(v.array)
    back = resample_array(mask, v, v, interpolator="nearest", dtype="uint8")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, mask)
    # the grid of a SimpleITK image
    g = Grid.from_sitk(v.to_sitk())
    assert g.shape == v.shape and g.spacing == v.spacing and g.origin == v.origin
    np.testing.assert_allclose(g.direction, v.direction)
    with pytest.raises(ValueError, match="source grid"):
        resample_array(sub, v, v)
    with pytest.raises(ValueError, match="dtype"):
        resample_array(v.array, v, v, dtype="int64")
    with pytest.raises(ValueError, match="interpolator"):
        resample_array(v.array, v, v, interpolator="cubic")
