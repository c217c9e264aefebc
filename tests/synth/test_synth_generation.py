"""Synthetic cases and cohorts: determinism, masks, kinetics."""

from __future__ import annotations

import numpy as np
import pytest

from mkunet.synth import make_case, make_cohort
from mkunet.synth._fields import Grid, ramp, render_segments
from mkunet.synth.anatomy import render_anatomy, sample_anatomy
from mkunet.synth.growth import diameter_to_volume, sample_lvcr, volumes
from mkunet.synth.tumour import place_tumour, render_tumour, sample_tumour

SMALL = (24, 64, 64)


def test_make_case_same_seed_same_bytes_different_seed_differs():
    v1, m1 = make_case(7, shape=SMALL)
    v2, m2 = make_case(7, shape=SMALL)
    v3, _ = make_case(8, shape=SMALL)
    assert v1.array.tobytes() == v2.array.tobytes()
    assert m1.tobytes() == m2.tobytes()
    assert v1.spacing == v2.spacing and v1.origin == v2.origin
    assert v1.array.shape == v3.array.shape
    assert v1.array.tobytes() != v3.array.tobytes()


def test_make_cohort_deterministic_and_patients_independent_of_cohort_size():
    c1 = make_cohort(2, seed=11, shape=SMALL, timepoints=(2, 2))
    c2 = make_cohort(1, seed=11, shape=SMALL, timepoints=(2, 2))
    a = c1.patients[0].scans[1]
    b = c2.patients[0].scans[1]
    assert a.volume.array.tobytes() == b.volume.array.tobytes()
    assert a.mask.tobytes() == b.mask.tobytes()
    assert c1.patients[0].lvcr == c2.patients[0].lvcr


def test_make_case_values_are_integer_hu_in_ct_range_with_air_outside():
    v, m = make_case(3, shape=(24, 96, 96), fit_body=True, wide_scanner=False)
    a = v.array
    assert a.dtype == np.float32
    assert np.array_equal(a, np.rint(a))
    assert a.min() >= -1024 and a.max() <= 3071
    # corners of the field of view are outside the body: air
    assert np.median(a[:, :4, :4]) < -950
    assert m.any()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_tumour_mask_nonempty_inside_lung_and_body(seed):
    rng = np.random.default_rng(seed)
    anat = sample_anatomy(rng)
    tumour = sample_tumour(rng, contact=("none", "pleura", "mediastinum", "vessel")[seed])
    vol = float(diameter_to_volume(20.0))
    tumour.centre = place_tumour(tumour, anat, tumour.max_extent(vol), rng)
    sp = (2.0, 1.5, 1.5)
    shape = (40, 64, 64)
    half = np.array([(shape[2] - 1) * sp[2], (shape[1] - 1) * sp[1], (shape[0] - 1) * sp[0]]) / 2
    grid = Grid(shape, sp, tuple(tumour.centre - half))
    a = render_anatomy(anat, grid, rng)
    mask = render_tumour(tumour, vol, grid, a.hu, a.lung, rng)
    assert mask.any()
    assert np.all(a.lung[mask] > 0.4), "tumour voxels must lie in the lung"
    assert np.all(a.body[mask] > 0.99)
    # the rendered tumour is visible: its HU differ from the lung's
    assert np.median(a.hu[mask]) > -750


def test_mask_volume_matches_requested_volume():
    """Without clipping, the mask (occupancy >= 0.5) volume equals the analytic volume."""
    rng = np.random.default_rng(5)
    tumour = sample_tumour(rng, kind="solid", surface="lobulated")
    tumour.centre = np.zeros(3)
    for d in (10.0, 30.0):
        vol = float(diameter_to_volume(d))
        sp = (1.0, 0.7, 0.7)
        n = int(np.ceil(2 * tumour.max_extent(vol) / 0.7)) + 6
        nz = int(np.ceil(2 * tumour.max_extent(vol) / 1.0)) + 6
        shape = (nz, n, n)
        grid = Grid(shape, sp, tuple(-np.array([(n - 1) * 0.7, (n - 1) * 0.7, (nz - 1) * 1.0]) / 2))
        hu = np.full(shape, -850.0, np.float32)
        mask = render_tumour(tumour, vol, grid, hu, np.ones(shape, np.float32), rng)
        got = mask.sum() * np.prod(sp)
        assert got == pytest.approx(vol, rel=0.05), (d, got, vol)


def test_capsule_partial_volume_sums_to_the_analytic_volume():
    grid = Grid((40, 40, 40), (1.0, 1.0, 1.0), (-20.0, -20.0, -20.0))
    occ = render_segments(
        grid, np.array([[-8.0, 0.3, 0.1]]), np.array([[8.0, 0.3, 0.1]]), np.array([4.0]), np.array([4.0])
    )
    analytic = np.pi * 16 * 16 + 4 / 3 * np.pi * 64
    assert occ.sum() == pytest.approx(analytic, rel=0.04)
    assert ramp(np.array([-1.0, 0.0, 1.0]), 2.0).tolist() == [1.0, 0.5, 0.0]


def test_volumes_follow_exponential_kinetics_with_stated_noise():
    rng = np.random.default_rng(0)
    days = np.array([0, 60, 120, 200])
    true, rendered = volumes(1000.0, 0.004, days, 0.0, rng)
    np.testing.assert_allclose(true, 1000.0 * np.exp(0.004 * days))
    np.testing.assert_allclose(rendered, true)
    eps = []
    for _ in range(500):
        t, r = volumes(500.0, -0.002, days, 0.08, rng)
        eps.append(np.log(r / t))
    assert np.std(eps) == pytest.approx(0.08, rel=0.1)
    assert abs(np.mean(eps)) < 0.01


def test_lvcr_distribution_realistic():
    rng = np.random.default_rng(1)
    draws = [sample_lvcr(rng, "solid", 0.25) for _ in range(2000)]
    lv = np.array([d[0] for d in draws])
    resp = np.array([d[1] for d in draws])
    assert 0.2 < resp.mean() < 0.3
    assert np.all(lv[resp] < 0) and np.all(lv[~resp] > 0)
    vdt = np.log(2) / lv[~resp]
    assert vdt.min() >= 30 - 1e-9 and vdt.max() <= 800 + 1e-9
    assert 120 < np.median(vdt) < 260


def test_cohort_mask_volumes_track_true_volumes_and_lvcr():
    cohort = make_cohort(
        3, seed=2, shape=(32, 96, 96), timepoints=(3, 3), diameter_mm=(15, 35), measurement_sigma=0.0, reposition_mm=2.0
    )
    for p in cohort.patients:
        days = np.array([s.days for s in p.scans], float)
        true = np.array([s.true_volume_mm3 for s in p.scans])
        np.testing.assert_allclose(true, true[0] * np.exp(p.lvcr * days), rtol=1e-9)
        mvol = np.array([s.mask_volume_mm3 for s in p.scans])
        assert np.all(np.abs(np.log(mvol / true)) < 0.15), (p.patient_id, mvol, true)
        slope = np.polyfit(days, np.log(mvol), 1)[0]
        assert abs(slope - p.lvcr) < 0.0015, (p.patient_id, slope, p.lvcr)
        assert days[0] == 0 and np.all(np.diff(days) >= 14)
        assert all(s.mask.any() for s in p.scans)


def test_bad_parameters_raise_value_error_naming_them():
    with pytest.raises(ValueError, match="shape"):
        make_case(0, shape=(4, 64, 64))
    with pytest.raises(ValueError, match="diameter_mm"):
        make_case(0, shape=SMALL, diameter_mm=(30, 10))
    with pytest.raises(ValueError, match="kind"):
        make_case(0, shape=SMALL, kind="glassy")
    with pytest.raises(ValueError, match="n_patients"):
        make_cohort(0, seed=1)
