"""LVCR, error model, truth recovery, lesion matching, volumetric / iRECIST response."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mkunet.analysis import kinetics
from mkunet.analysis.kinetics import lvcr


@pytest.mark.parametrize("weights", ["interval", "uniform", "inverse_variance"])
def test_two_scans_give_sgr_for_any_weights(weights):
    sig = [0.05, 0.2] if weights == "inverse_variance" else None
    r = lvcr([10, 73], [2.0, 3.1], weights=weights, sigmas=sig)
    assert r.lvcr_per_day == pytest.approx(math.log(3.1 / 2.0) / 63, rel=1e-12)
    assert r.n_scans == 2 and r.se_residual is None
    assert r.vdt_days == pytest.approx(math.log(2) / r.lvcr_per_day)


def test_two_scan_error_model_se():
    r = lvcr([0, 60], [1.0, 2.0], sigma_log_volume=0.08)
    assert r.se == pytest.approx(math.sqrt(2) * 0.08 / 60)  # DOMAIN 1
    assert r.ci_low == pytest.approx(r.lvcr_per_day - 1.959964 * r.se, rel=1e-6)


def test_exact_exponential_and_independent_wls():
    t = np.array([0, 35, 90, 160, 200.0])
    v = 1.7 * np.exp(0.006 * t)
    for w in ("interval", "uniform"):
        r = lvcr(t, v, weights=w, se_method="residual")
        assert r.lvcr_per_day == pytest.approx(0.006, rel=1e-10)
        assert r.se == pytest.approx(0.0, abs=1e-12)
    # noisy: compare with numpy's weighted polyfit (weights are sqrt(w) in polyfit)
    rng = np.random.default_rng(1)
    y = np.log(v) + rng.normal(0, 0.1, t.size)
    w = np.r_[35, np.diff(t)]
    slope = np.polyfit(t, y, 1, w=np.sqrt(w))[0]
    assert lvcr(t, np.exp(y), weights="interval").lvcr_per_day == pytest.approx(slope, rel=1e-9)
    assert lvcr(t, np.exp(y), weights="interval").weights == pytest.approx(tuple(w / w.sum()))
    # the residual SE equals statsmodels-style WLS SE: check against the normal-equations formula
    r = lvcr(t, np.exp(y), weights="uniform", se_method="residual")
    X = np.c_[np.ones_like(t), t]
    beta, res, *_ = np.linalg.lstsq(X, y, rcond=None)
    s2 = res[0] / (t.size - 2)
    assert r.se == pytest.approx(math.sqrt(s2 * np.linalg.inv(X.T @ X)[1, 1]), rel=1e-9)


def test_inverse_variance_weights_and_vdt_conventions():
    r = lvcr([0, 50, 100], [1, 1.2, 1.9], weights="inverse_variance", sigmas=[0.1, 0.1, 0.1])
    u = lvcr([0, 50, 100], [1, 1.2, 1.9], weights="uniform", sigma_log_volume=0.1)
    assert r.lvcr_per_day == pytest.approx(u.lvcr_per_day)
    assert r.se == pytest.approx(u.se)
    assert lvcr([0, 50], [2, 1]).vdt_days < 0
    assert kinetics.vdt_days(0.0) == math.inf


@pytest.mark.parametrize(
    "days, vols, match",
    [
        ([0], [1.0], "at least two scans"),
        ([0, 10, 10], [1, 2, 3], "strictly increasing"),
        ([0, 20, 10], [1, 2, 3], "strictly increasing"),
        ([0, 10], [1, 0], "> 0"),
        ([0, 10], [1, -2], "> 0"),
        ([0, 10, 20], [1, 2], "3 scan days but 2 volumes"),
        ([0, np.nan], [1, 2], "NaN"),
    ],
)
def test_errors_name_the_patient(days, vols, match):
    with pytest.raises(ValueError, match=match) as err:
        lvcr(days, vols, patient_id="LUNG-007")
    assert "LUNG-007" in str(err.value)


def test_option_errors():
    with pytest.raises(ValueError, match="sigmas"):
        lvcr([0, 1], [1, 2], weights="inverse_variance")
    with pytest.raises(ValueError, match="weights must be"):
        lvcr([0, 1], [1, 2], weights="bogus")
    with pytest.raises(ValueError, match=">= 3 scans"):
        lvcr([0, 1], [1, 2], se_method="residual")


def test_fitter_and_table():
    f = kinetics.LVCRFitter(weights="uniform").fit([0, 30, 60], [1, 1.5, 2.2])
    assert f.lvcr_ == f.result_.lvcr_per_day
    assert f.predict_volume([0])[0] == pytest.approx(math.exp(f.result_.intercept_log_cm3))
    df = pd.DataFrame(
        {"patient_id": ["a", "a", "b", "b", "b"], "days": [0, 60, 0, 30, 90], "volume_cm3": [1, 2, 3, 3, 3]}
    )
    tab = kinetics.lvcr_table(df)
    assert tab.loc["a", "lvcr_per_day"] == pytest.approx(math.log(2) / 60)
    assert tab.loc["b", "lvcr_per_day"] == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="volume_cm3"):
        kinetics.lvcr_table(df.drop(columns="volume_cm3"))
    with pytest.raises(ValueError, match="'c'"):
        kinetics.lvcr_table(pd.concat([df, pd.DataFrame({"patient_id": ["c"], "days": [0], "volume_cm3": [1]})]))


@pytest.mark.parametrize("weights", ["interval", "uniform"])
def test_truth_recovery_ci_coverage(weights):
    """400 simulated patients, 2-5 scans, sigma(ln V) known: 95 % CI covers the true LVCR ~95 %."""
    rng = np.random.default_rng(20240601)
    sigma = 0.08
    n, covered = 400, 0
    for i in range(n):
        k = int(rng.integers(2, 6))
        days = np.r_[0, np.cumsum(rng.integers(30, 120, k - 1))]
        true = rng.normal(0.003, 0.004)
        vols = rng.uniform(0.5, 40) * np.exp(true * days + rng.normal(0, sigma, k))
        r = lvcr(days, vols, weights=weights, sigma_log_volume=sigma, patient_id=str(i))
        covered += r.ci_low <= true <= r.ci_high
    coverage = covered / n
    print(f"LVCR 95% CI coverage ({weights} weights, n={n}): {coverage:.3f}")
    assert 0.92 <= coverage <= 0.98


def test_misspecified_sigma_undercovers():
    """The test above can fail: an error model with too small a sigma must undercover."""
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(200):
        days = np.array([0, 60, 120.0])
        true = 0.004
        vols = np.exp(true * days + rng.normal(0, 0.1, 3))
        r = lvcr(days, vols, sigma_log_volume=0.02)
        covered += r.ci_low <= true <= r.ci_high
    assert covered / 200 < 0.6


# ----------------------------------------------------------------------------- response
def test_response_thresholds_are_recist_equivalent():
    assert 0.7**3 - 1 == pytest.approx(kinetics.RESPONSE_THRESHOLDS["pr"], abs=0.01)
    assert 1.2**3 - 1 == pytest.approx(kinetics.RESPONSE_THRESHOLDS["pd"], abs=0.01)


def test_response_plain_recist():
    cats = kinetics.response_over_time([0, 1, 2, 3, 4], [10, 3, 3.4, 6.0, 0], immune=False)
    # 3 = -70 % -> PR; 3.4 vs nadir 3: +13 % -> SD...; 6.0 vs nadir 3: +100 % -> PD; 0 -> CR
    assert cats == ["baseline", "PR", "PR", "PD", "CR"]


def test_irecist_confirmation_and_reset():
    # iUPD then further increase -> iCPD (and final)
    assert kinetics.response_over_time([0, 1, 2, 3], [1, 2, 2.5, 0.1]) == ["baseline", "iUPD", "iCPD", "iCPD"]
    # iUPD then back to SD -> reset; a later PD is again unconfirmed
    assert kinetics.response_over_time([0, 1, 2, 3], [1, 2, 1.5, 2.8]) == ["baseline", "iUPD", "iSD", "iUPD"]
    # pseudo-progression: iUPD then response
    assert kinetics.response_over_time([0, 1, 2], [1, 1.8, 0.3]) == ["baseline", "iUPD", "iPR"]
    # iUPD, stable at the progressed size without further increase: stays iUPD
    assert kinetics.response_over_time([0, 1, 2], [1, 2, 1.9]) == ["baseline", "iUPD", "iUPD"]
    with pytest.raises(ValueError, match="P9"):
        kinetics.response_over_time([0, 0], [1, 2], patient_id="P9")


def test_cutoff_default_median_never_hidden_constant():
    vals = pd.Series([0.001, 0.002, 0.003, 0.2])
    high, cut = kinetics.split_by_cutoff(vals)
    assert cut == pytest.approx(0.0025)
    assert high.tolist() == [False, False, True, True]
    high, cut = kinetics.split_by_cutoff(vals, 0.15)
    assert high.sum() == 1 and cut == 0.15
    with pytest.raises(ValueError, match="median"):
        kinetics.split_by_cutoff(vals, "optimal")


# ----------------------------------------------------------------------------- se_method="auto", lvcr_from_masks
def test_auto_se_two_scans_is_the_error_model_formula():
    r = lvcr([0, 60], [1.0, 2.0], se_method="auto")
    assert r.se_method == "error_model"
    assert r.se == pytest.approx(math.sqrt(2) * 0.08 / 60, rel=1e-12)
    assert r.ci_high - r.lvcr_per_day == pytest.approx(1.959964 * r.se, rel=1e-6)


def test_auto_se_three_scans_residual_larger_than_error_model():
    # uniform weights, days 0/30/60, ln V = 0, 0.5, 0.6: slope 0.01, residuals (-1, 2, -1)/15
    r = lvcr([0, 30, 60], np.exp([0.0, 0.5, 0.6]), weights="uniform", se_method="auto")
    assert r.se_method == "max" and r.lvcr_per_day == pytest.approx(0.01, rel=1e-12)
    assert r.se_error_model == pytest.approx(math.sqrt(2) * 0.08 / 60, rel=1e-12)
    assert r.se_residual == pytest.approx(math.sqrt(1 / 67500), rel=1e-9)
    assert r.se == pytest.approx(math.sqrt(1 / 67500), rel=1e-9)  # the residual wins
    assert r.ci_high - r.lvcr_per_day == pytest.approx(12.7062047 * r.se, rel=1e-6)  # t, 1 df
    assert lvcr([0, 30, 60], np.exp([0.0, 0.5, 0.6]), weights="uniform").se == pytest.approx(r.se_error_model)


def test_auto_se_three_scans_residual_smaller_than_error_model():
    # ln V = 0, 0.31, 0.6: residuals (-1, 2, -1)/300, SE 1/sqrt(27e6) < the error model's
    r = lvcr([0, 30, 60], np.exp([0.0, 0.31, 0.6]), weights="uniform", se_method="auto")
    assert r.se_residual == pytest.approx(math.sqrt(1 / 27e6), rel=1e-9)
    assert r.se == pytest.approx(math.sqrt(2) * 0.08 / 60, rel=1e-12)  # the error model wins
    assert r.ci_high - r.lvcr_per_day == pytest.approx(1.959964 * r.se, rel=1e-6)  # normal
    with pytest.raises(ValueError, match="se_method must be one of"):
        lvcr([0, 1, 2], [1, 2, 3], se_method="bogus")


def _ball(shape, centre, radius):
    z, y, x = np.indices(shape)
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def test_lvcr_from_masks_uses_mesh_volumes_and_the_given_weights():
    from mkunet.analysis.shape import shape_features

    spacing = (2.0, 1.0, 1.0)
    masks = [_ball((20, 40, 40), (10, 20, 20), r) for r in (4, 5, 7)]
    days = [0, 10, 90]
    mesh = [shape_features(m, spacing)["volume_cm3"] for m in masks]
    voxels = [m.sum() * 2.0 / 1000 for m in masks]
    assert kinetics.mask_volume_cm3(masks[0], spacing) == pytest.approx(mesh[0], rel=1e-12)
    assert kinetics.mask_volume_cm3(np.zeros((3, 3, 3), bool), spacing) == 0.0
    for weights in ("interval", "uniform"):
        r = kinetics.lvcr_from_masks(days, masks, [spacing] * 3, weights=weights)
        assert r.lvcr_per_day == pytest.approx(lvcr(days, mesh, weights=weights).lvcr_per_day, rel=1e-12)
        assert r.lvcr_per_day != pytest.approx(lvcr(days, voxels, weights=weights).lvcr_per_day, rel=1e-6)
        assert r.method == weights and r.se_method == "max"  # automatic masks, 3 scans
    assert kinetics.lvcr_from_masks(days, masks, [spacing] * 3, weights="uniform").lvcr_per_day != pytest.approx(
        kinetics.lvcr_from_masks(days, masks, [spacing] * 3).lvcr_per_day, rel=1e-6
    )
    with pytest.raises(ValueError, match="> 0"):
        kinetics.lvcr_from_masks([0, 30], [masks[0], np.zeros_like(masks[0])], [spacing] * 2)
    with pytest.raises(ValueError, match="spacings"):
        kinetics.lvcr_from_masks([0, 30], masks[:2], [spacing])
