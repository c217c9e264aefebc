"""Adaptive window and Preprocessor: fitting, both modes, JSON round trips, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mkunet.preprocess import AdaptiveWindow, NotFittedError, Preprocessor, four_channels, intensity_channel
from mkunet.volume import Volume


def _cases(n=3, shape=(6, 10, 12), seed=0):
    rng = np.random.default_rng(seed)
    volumes, masks = [], []
    for i in range(n):
        hu = rng.normal(-700, 150, shape).astype(np.float32)
        mask = np.zeros(shape, dtype=bool)
        mask[2:4, 3 : 5 + i, 4:8] = True
        hu[mask] = rng.normal(30 + 20 * i, 40 + 10 * i, int(mask.sum()))
        volumes.append(Volume(hu, spacing=(3.0, 0.8, 0.8), patient_id=f"P{i}"))
        masks.append(mask)
    return volumes, masks


def test_fit_pools_all_tumour_voxels():
    volumes, masks = _cases()
    pooled = np.concatenate([v.array[m].astype(np.float64) for v, m in zip(volumes, masks)])
    window = AdaptiveWindow().fit(iter(volumes), (m for m in masks))  # generators are fine
    assert window.mean_ == pytest.approx(pooled.mean(), rel=1e-12)
    assert window.std_ == pytest.approx(pooled.std(), rel=1e-12)
    assert window.n_voxels_ == pooled.size


def test_symmetric_and_paper_modes():
    volumes, masks = _cases()
    sym = AdaptiveWindow(k=1.5).fit(volumes, masks)
    mu, sd = sym.mean_, sym.std_
    hu = volumes[0].array
    out = sym.transform(volumes[0])
    assert isinstance(out, Volume) and out.spacing == volumes[0].spacing and out.patient_id == "P0"
    keep = (hu >= mu - 1.5 * sd) & (hu <= mu + 1.5 * sd)
    np.testing.assert_array_equal(out.array[keep], hu[keep])
    assert (out.array[~keep] == -1000.0).all() and keep.any() and (~keep).any()
    paper = AdaptiveWindow(mode="paper", background=-1024).fit(volumes, masks)
    out_p = paper.transform(hu)
    keep_p = hu >= mu + 1.5 * sd
    np.testing.assert_array_equal(out_p[keep_p], hu[keep_p])
    assert (out_p[~keep_p] == -1024).all()
    # the literal rule drops most of the tumour itself
    assert (out_p[masks[0]] != -1024).mean() < 0.2
    assert paper.bounds == (pytest.approx(mu + 1.5 * sd), float("inf"))


def test_json_round_trip_and_errors():
    volumes, masks = _cases()
    window = AdaptiveWindow(k=2.0, mode="paper").fit(volumes, masks)
    back = AdaptiveWindow.from_dict(json.loads(json.dumps(window.to_dict())))
    assert (back.k, back.mode, back.mean_, back.std_) == (2.0, "paper", window.mean_, window.std_)
    np.testing.assert_array_equal(back.transform(volumes[1].array), window.transform(volumes[1].array))
    with pytest.raises(NotFittedError, match="fit"):
        AdaptiveWindow().transform(volumes[0])
    assert not AdaptiveWindow.from_dict(AdaptiveWindow().to_dict()).fitted
    with pytest.raises(ValueError, match="mode"):
        AdaptiveWindow(mode="upper")
    with pytest.raises(ValueError, match="k"):
        AdaptiveWindow(k=-1)
    with pytest.raises(ValueError, match="shape"):
        AdaptiveWindow().fit([volumes[0]], [masks[0][:-1]])
    with pytest.raises(ValueError, match="number of volumes and masks"):
        AdaptiveWindow().fit(volumes, masks[:2])


def test_empty_masks():
    volumes, masks = _cases()
    empty = np.zeros_like(masks[0])
    with pytest.warns(UserWarning, match="empty tumour mask for P0"):
        w = AdaptiveWindow().fit(volumes, [empty] + masks[1:])
    assert w.n_voxels_ == sum(int(m.sum()) for m in masks[1:])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no tumour voxel"):
        AdaptiveWindow().fit(volumes[:1], [empty])


def test_preprocessor():
    volumes, masks = _cases()
    plain = Preprocessor(channels=1)
    assert plain.in_channels == 1
    x = plain(volumes[0])
    assert x.shape == (1,) + volumes[0].shape and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], intensity_channel(volumes[0]))
    full = Preprocessor(channels=4, adaptive_window=AdaptiveWindow()).fit(volumes, masks)
    assert full.in_channels == 4
    y = full(volumes[1])
    np.testing.assert_array_equal(y, four_channels(full.adaptive_window.transform(volumes[1])))
    back = Preprocessor.from_dict(json.loads(json.dumps(full.to_dict())))
    np.testing.assert_array_equal(back(volumes[1]), y)
    with pytest.raises(NotFittedError):
        Preprocessor(adaptive_window=AdaptiveWindow())(volumes[0])
    with pytest.raises(ValueError, match="channels"):
        Preprocessor(channels=3)
