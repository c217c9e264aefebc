"""Generated HU by tissue class against the real chest CTs in ../shared/data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from mkunet.synth import make_case

CLASSES = {"lung": (-950, -600), "soft": (-100, 100), "bone": (300, 3072)}


def tissue_stats(a: np.ndarray) -> dict[str, tuple[float, float]]:
    """(fraction of body voxels, median HU) per class; body = slice-wise filled HU > -500."""
    body = np.stack([ndi.binary_fill_holes(s) for s in (a > -500)])
    b = a[body]
    out = {}
    for name, (lo, hi) in CLASSES.items():
        m = b[(b >= lo) & (b < hi)]
        out[name] = (m.size / b.size, float(np.median(m)))
    return out


@pytest.fixture(scope="module")
def real_stats(shared_data):
    import SimpleITK as sitk

    stats = []
    for name in ("lung1", "lung2"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "pyradiomics" / f"{name}_image.nrrd"))).astype(
            np.float32
        )
        stats.append(tissue_stats(a))
    return stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tissue_hu_medians_and_fractions_match_real_ct(seed, real_stats):
    v, _ = make_case(seed, shape=(32, 128, 128), fit_body=True, wide_scanner=False)
    syn = tissue_stats(v.array)
    for name in CLASSES:
        real_median = np.mean([r[name][1] for r in real_stats])
        assert abs(syn[name][1] - real_median) <= 60, (name, syn[name][1], real_median)
        real_frac = [r[name][0] for r in real_stats]
        assert 0.4 * min(real_frac) <= syn[name][0] <= 2.2 * max(real_frac), (name, syn[name][0], real_frac)


def test_outside_air_and_lung_spread_like_real_ct(real_stats):
    v, _ = make_case(4, shape=(32, 128, 128), fit_body=True, wide_scanner=False)
    a = v.array
    lung = a[(a >= -950) & (a < -600)]
    # real lung1/lung2 lung class: 5th-95th percentile span about 200-230 HU
    span = np.percentile(lung, 95) - np.percentile(lung, 5)
    assert 60 < span < 320
    assert np.median(a[:, :3, :3]) < -950
