"""mkunet.segmentation.uncertainty (segmentation sigma(ln V)) and its propagation into the LVCR interval.

* the edge term against hand counts on analytic fields (a step has no partial-volume voxel, a
  linear ramp has a known number of them);
* monotonicity on the analytic chest phantom of tests/test_lesion.py: a blurrier scan and a
  smaller lesion give a larger sigma(ln V); ``uncertainty="off"`` gives none and the same mask;
* the propagation algebra of ``kinetics.lvcr(..., sigma_segmentation=...)``: zeros give today's
  interval exactly, hand cases, wider with noisier scans;
* coverage on a seeded simulated cohort (4000 series) within its binomial tolerance: with the
  segmentation term the 95 % interval covers the true LVCR, without it it undercovers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mkunet.analysis import kinetics
from mkunet.segmentation.infer import Seed, segment
from mkunet.segmentation.uncertainty import UncertaintyParams, click_seed, click_sigma, combine, edge_sigma
from tests.segmentation.test_lesion import FREE, JUXTA, LESION_HU, ball, chest, inside_mask, render, seed_at

# ----------------------------------------------------------------------------- edge term, analytic


def test_edge_sigma_is_zero_on_a_step_and_counts_a_ramp():
    shape = (9, 20, 20)
    mask = np.zeros(shape, bool)
    mask[:, :, :10] = True  # a half space x < 10
    step = np.where(mask, 100.0, -900.0)
    assert edge_sigma(mask, step, -400.0, 100.0) == 0.0  # no voxel within +-100 HU of the level
    # a ramp of 100 HU per voxel along x centred on the edge: x = 9 holds 50, x = 10 holds -50
    ramp = np.broadcast_to(50.0 - 100.0 * (np.arange(20) - 9.0), shape).copy()
    # level 0, delta 120: outside, x = 10 (-50) and 11 (-150 < -120, no) -> 1 column; inside x = 9 (50) -> 1 column
    n, col = int(mask.sum()), 9 * 20
    expected = 0.5 * (math.log(n + col) - math.log(n - col))
    assert edge_sigma(mask, ramp, 0.0, 120.0) == pytest.approx(expected, rel=1e-12)
    # a wider level SD reaches one more column on each side (within the 2-voxel band)
    expected2 = 0.5 * (math.log(n + 2 * col) - math.log(n - 2 * col))
    assert edge_sigma(mask, ramp, 0.0, 220.0) == pytest.approx(expected2, rel=1e-12)
    # the band limits it: a third column is out of reach with band_voxels=2, in reach with 3
    assert edge_sigma(mask, ramp, 0.0, 320.0) == pytest.approx(expected2, rel=1e-12)
    assert edge_sigma(mask, ramp, 0.0, 320.0, band_voxels=3) > expected2
    assert edge_sigma(np.zeros(shape, bool), ramp, 0.0, 120.0) == 0.0
    assert edge_sigma(mask, ramp, 0.0, 0.0) == 0.0


def test_edge_sigma_rejects_bad_input():
    with pytest.raises(ValueError, match=r"same \(z, y, x\) shape"):
        edge_sigma(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3)), 0.0, 1.0)
    with pytest.raises(ValueError, match="delta must be"):
        edge_sigma(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2)), 0.0, -1.0)
    with pytest.raises(ValueError, match="edge_fraction"):
        UncertaintyParams(edge_fraction=0.7)
    with pytest.raises(ValueError, match="uncertainty must be one of on, off, got 'maybe'"):
        segment(render(chest()), roi=Seed((0.0, 0.0, 0.0)), uncertainty="maybe")  # type: ignore[arg-type]


def test_click_terms_by_hand():
    assert click_sigma(100, 100) == 0.0
    assert click_sigma(100, 150) == pytest.approx(math.log(1.5) / math.sqrt(2))
    assert click_sigma(100, 0) == pytest.approx(math.log(2) / math.sqrt(2))  # nothing found: capped
    assert click_sigma(100, 1000) == pytest.approx(math.log(2) / math.sqrt(2))
    assert combine({"a": 0.03, "b": 0.04}) == pytest.approx(0.05)
    mask = np.zeros((20, 20, 20), bool)
    mask[4:16, 4:16, 4:16] = True
    rng = np.random.default_rng(0)
    picks = [click_seed(mask, (1.0, 1.0, 1.0), 3.0, rng) for _ in range(20)]
    assert all(np.all(p >= 6) and np.all(p <= 13) for p in picks)  # >= 3 mm from the faces
    assert len({tuple(p) for p in picks}) > 5
    assert click_seed(np.zeros((3, 3, 3), bool), (1.0, 1.0, 1.0), 3.0, rng) is None


# ----------------------------------------------------------------------------- on the chest phantom


def _sigma(radius: float, blur_mm: float, **kw):
    vol = render(chest() + [(ball(FREE, radius), LESION_HU)], blur_mm=blur_mm)
    seg = segment(vol, roi=Seed(FREE), **kw)
    return vol, seg


def test_segmentation_carries_its_uncertainty_and_off_switches_it_off():
    vol, on = _sigma(8.0, 0.7)
    _, off = _sigma(8.0, 0.7, uncertainty="off")
    np.testing.assert_array_equal(on.mask, off.mask)  # the estimate never changes the mask
    assert off.uncertainty is None and "uncertainty" not in off.timings
    u = on.uncertainty
    assert u is not None and set(u.components) == {"edge", "contact"}  # click term off by default
    assert u.components["contact"] < 0.01  # free in the lung: no cut surface (a few noisy voxels)
    assert 0.0 < u.sigma_log_volume < 0.2
    assert u.se_cm3 == pytest.approx(u.sigma_log_volume * on.voxel_volume_cm3)
    truth = inside_mask(vol, ball(FREE, 8.0))
    true_cm3 = truth.sum() * vol.voxel_volume_mm3 / 1000
    assert abs(math.log(on.voxel_volume_cm3 / true_cm3)) < 3 * u.sigma_log_volume  # the truth is within 3 SE
    clicked = segment(vol, roi=Seed(FREE), uncertainty_params=UncertaintyParams(click_shifts=1))
    assert set(clicked.uncertainty.components) == {"edge", "contact", "click"}
    assert clicked.uncertainty.components["click"] < 0.05  # the lesion model re-seeds at the core
    assert seed_at(vol, FREE) is not None


def test_blurrier_scans_and_smaller_lesions_are_less_certain():
    _, sharp = _sigma(8.0, 0.7)
    _, blurred = _sigma(8.0, 2.0)
    _, small = _sigma(4.5, 0.7)
    assert blurred.uncertainty.sigma_log_volume > 1.3 * sharp.uncertainty.sigma_log_volume
    assert small.uncertainty.sigma_log_volume > 1.3 * sharp.uncertainty.sigma_log_volume


def test_a_lesion_on_the_chest_wall_has_a_contact_term():
    _, free = _sigma(8.0, 0.7)
    vol = render(chest() + [(ball(JUXTA, 8.0), LESION_HU)])
    wall = segment(vol, roi=Seed((JUXTA[0] - 4.0, JUXTA[1], JUXTA[2])))
    # measured: 0.0155 (above 0.02 before the lesion model's skin-band fix, when the mask leaked
    # into the chest wall and touched more of it); free in the lung it is < 0.01
    assert wall.uncertainty.components["contact"] == pytest.approx(0.0155, rel=0.05)
    assert wall.uncertainty.components["contact"] > 10 * free.uncertainty.components["contact"]  # free: 0.0006
    # the total is not larger than the free ball's any more (measured 0.0586 vs 0.0631): the surface
    # against the wall has no partial-volume edge, so the edge term is smaller (0.0565 vs 0.0631) by
    # more than the one-layer contact term adds; with the leak into the wall it was larger


def test_contact_sigma_by_hand():
    from mkunet.segmentation.uncertainty import contact_sigma

    mask = np.zeros((10, 10, 10), bool)
    mask[2:5, 2:5, 2:5] = True  # 27 voxels
    hu = np.full(mask.shape, -850.0)
    hu[mask] = 30.0
    assert contact_sigma(mask, hu, -400.0) == 0.0
    hu[2:5, 2:5, 5] = 30.0  # a 3 x 3 wall of dense tissue against the +x face: 9 shell voxels
    assert contact_sigma(mask, hu, -400.0) == pytest.approx(0.5 * (math.log(36) - math.log(18)))
    assert contact_sigma(mask, hu, -400.0, layers=0.5) == pytest.approx(0.5 * (math.log(31.5) - math.log(22.5)))
    assert contact_sigma(mask, hu, -400.0, layers=0.0) == 0.0


# ----------------------------------------------------------------------------- propagation into the LVCR


def test_zero_segmentation_term_gives_todays_interval_exactly():
    days, vols = [0, 60, 130, 200], [1.0, 1.4, 2.3, 2.9]
    for se_method in ("error_model", "auto"):
        for weights in ("interval", "uniform"):
            a = kinetics.lvcr(days, vols, weights=weights, se_method=se_method)
            b = kinetics.lvcr(days, vols, weights=weights, se_method=se_method, sigma_segmentation=[0.0] * 4)
            assert (a.lvcr_per_day, a.se, a.ci_low, a.ci_high) == (b.lvcr_per_day, b.se, b.ci_low, b.ci_high)
            assert b.sigma_segmentation == (0.0,) * 4


def test_segmentation_term_by_hand():
    # two scans: Var(slope) = (s0^2 + s1^2) / dt^2 whatever the weights, s_i^2 = 0.08^2 + seg_i^2
    r = kinetics.lvcr([0, 100], [1.0, 2.0], sigma_segmentation=[0.06, 0.0])
    assert r.se == pytest.approx(math.sqrt(0.08**2 + 0.06**2 + 0.08**2) / 100, rel=1e-12)
    assert r.sigma_log_volume == pytest.approx((0.1, 0.08))
    assert r.lvcr_per_day == pytest.approx(math.log(2) / 100, rel=1e-12)  # the slope is unchanged
    # three scans, uniform weights, error-model SE: sqrt(sum dtc^2 s_i^2) / sum dtc^2, dtc = (-50, 0, 50)
    s = np.sqrt(0.08**2 + np.array([0.1, 0.2, 0.0]) ** 2)
    r = kinetics.lvcr([0, 50, 100], [1, 1.5, 2], weights="uniform", sigma_segmentation=[0.1, 0.2, 0.0])
    assert r.se_error_model == pytest.approx(math.sqrt(2500 * s[0] ** 2 + 2500 * s[2] ** 2) / 5000, rel=1e-12)
    # inverse-variance weights can use the segmentation term alone
    r = kinetics.lvcr([0, 50, 100], [1, 1.5, 2], weights="inverse_variance", sigma_segmentation=[0.1, 0.2, 0.0])
    w = 1 / s**2
    np.testing.assert_allclose(r.weights, w / w.sum(), rtol=1e-12)
    with pytest.raises(kinetics.KineticsError, match=r"patient 'P7': `sigma_segmentation` must be 2 SDs"):
        kinetics.lvcr([0, 10], [1, 2], sigma_segmentation=[0.1], patient_id="P7")
    with pytest.raises(kinetics.KineticsError, match="got \\[-0.1, 0.0\\]"):
        kinetics.lvcr([0, 10], [1, 2], sigma_segmentation=[-0.1, 0.0])


def test_noisier_scans_give_wider_intervals():
    days, vols = [0, 60, 130], [1.0, 1.5, 2.2]
    widths = [
        (lambda r: r.ci_high - r.ci_low)(kinetics.lvcr(days, vols, se_method="auto", sigma_segmentation=[s] * 3))
        for s in (0.0, 0.05, 0.1, 0.2, 0.4)
    ]
    assert all(b >= a for a, b in zip(widths, widths[1:])) and widths[-1] > 2 * widths[0]


def test_growth_call():
    assert kinetics.growth_call(0.001, 0.004) == "growing"
    assert kinetics.growth_call(-0.004, -0.001) == "shrinking"
    assert kinetics.growth_call(-0.001, 0.004) == "growth not established"
    assert kinetics.growth_call(None, 0.1) is None and kinetics.growth_call(float("nan"), 0.1) is None


def test_coverage_on_a_seeded_simulated_cohort():
    """4000 series of 3-4 scans: repeat-scan noise 0.08 (the error model's) and a per-scan segmentation
    error whose SD (known to the estimate) varies 0-0.3 between scans. The error-model 95 % CI with the
    term covers the true LVCR within 3 binomial SE of 0.95; the pipeline's ``se_method="auto"`` (the
    larger of that and the residual SE) covers at least as well; without the term it undercovers."""
    rng = np.random.default_rng(2026)
    n = 4000
    hits = {"on": 0, "auto": 0, "off": 0}
    for _ in range(n):
        k = int(rng.integers(3, 5))
        days = np.concatenate([[0], np.cumsum(rng.integers(42, 85, k - 1))])
        lvcr = float(rng.normal(0.004, 0.003))
        seg_sd = rng.uniform(0.0, 0.3, k)
        y = math.log(rng.uniform(0.5, 50)) + lvcr * days + rng.normal(0, 0.08, k) + rng.normal(0, 1, k) * seg_sd
        for name, kw in (
            ("on", dict(se_method="error_model", sigma_segmentation=seg_sd)),
            ("auto", dict(se_method="auto", sigma_segmentation=seg_sd)),
            ("off", dict(se_method="error_model")),
        ):
            r = kinetics.lvcr(days, np.exp(y), **kw)
            hits[name] += r.ci_low <= lvcr <= r.ci_high
    cover = {k: v / n for k, v in hits.items()}
    se = math.sqrt(0.95 * 0.05 / n)
    assert abs(cover["on"] - 0.95) < 3 * se, cover
    assert cover["auto"] >= cover["on"] - 1e-12, cover
    assert cover["off"] < 0.85, cover
