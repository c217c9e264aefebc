"""Immune Evasion Score: paper / standardised / cox modes, missing PD-L1, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mkunet.analysis.ies import immune_evasion_score


def _table(n=60, seed=0, pdl1=True):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "lvcr": rng.normal(0.004, 0.004, n),
            "sphericity": rng.uniform(0.5, 0.9, n),
        },
        index=[f"P{i:02d}" for i in range(n)],
    )
    if pdl1:
        df["pdl1_area_ratio"] = rng.uniform(0, 1, n)
    lp = 0.8 * (df.lvcr - df.lvcr.mean()) / df.lvcr.std()
    t = rng.exponential(500 * np.exp(-lp))
    c = rng.uniform(100, 1500, n)
    df["os_days"] = np.maximum(np.minimum(t, c), 1)
    df["event"] = (t <= c).astype(int)
    return df


def test_paper_mode_is_raw_weighted_sum():
    df = _table()
    r = immune_evasion_score(df, mode="paper")
    expected = 0.6 * df.lvcr + 0.3 * (1 - df.sphericity) + 0.1 * df.pdl1_area_ratio
    np.testing.assert_allclose(r.scores, expected)
    np.testing.assert_allclose(r.imaging_only, (0.6 * df.lvcr + 0.3 * (1 - df.sphericity)) / 0.9)
    assert r.terms == ("lvcr", "one_minus_sphericity", "pdl1_area_ratio")
    assert any("raw weighted sum" in n for n in r.notes)


def test_standardised_mode():
    df = _table()
    r = immune_evasion_score(df, mode="standardised", weights=(0.6, 0.3, 0.1))
    z = lambda s: (s - s.mean()) / s.std(ddof=1)  # noqa: E731
    expected = 0.6 * z(df.lvcr) + 0.3 * z(1 - df.sphericity) + 0.1 * z(df.pdl1_area_ratio)
    np.testing.assert_allclose(r.scores, expected)
    assert r.scores.mean() == pytest.approx(0, abs=1e-12)
    assert r.standardisation["lvcr"] == pytest.approx((df.lvcr.mean(), df.lvcr.std()))


def test_pdl1_missing_for_cohort_drops_term_and_renormalises():
    df = _table(pdl1=False)
    r = immune_evasion_score(df, mode="paper")
    assert r.terms == ("lvcr", "one_minus_sphericity")
    assert r.weights == pytest.approx({"lvcr": 0.6 / 0.9, "one_minus_sphericity": 0.3 / 0.9})
    assert any("(0.667, 0.333)" in n for n in r.notes)
    np.testing.assert_allclose(r.scores, r.imaging_only)
    df["pdl1_area_ratio"] = np.nan
    r2 = immune_evasion_score(df, mode="standardised")
    assert "pdl1_area_ratio" not in r2.terms and any("empty" in n for n in r2.notes)


def test_pdl1_missing_for_some_patients():
    df = _table()
    df.loc[["P03", "P07"], "pdl1_area_ratio"] = np.nan
    r = immune_evasion_score(df, mode="paper")
    assert r.scores["P03"] == pytest.approx(r.imaging_only["P03"])
    assert r.scores["P04"] == pytest.approx(
        0.6 * df.lvcr["P04"] + 0.3 * (1 - df.sphericity["P04"]) + 0.1 * df.pdl1_area_ratio["P04"]
    )
    assert any("2 of 60" in n and "P03" in n for n in r.notes)
    assert not r.scores.isna().any()
    rc = immune_evasion_score(df, mode="cox", duration_col="os_days", event_col="event")
    assert "pdl1_area_ratio" not in rc.terms and any("whole cohort" in n for n in rc.notes)


def test_cox_mode_refits_weights():
    df = _table(n=300, seed=3)
    r = immune_evasion_score(df, mode="cox", duration_col="os_days", event_col="event")
    from lifelines import CoxPHFitter

    z = lambda s: (s - s.mean()) / s.std(ddof=1)  # noqa: E731
    data = pd.DataFrame(
        {
            "lvcr": z(df.lvcr),
            "one_minus_sphericity": z(1 - df.sphericity),
            "pdl1_area_ratio": z(df.pdl1_area_ratio),
            "T": df.os_days,
            "E": df.event,
        }
    )
    cph = CoxPHFitter().fit(data, "T", "E")
    assert r.weights == pytest.approx(cph.params_.to_dict(), rel=1e-6)
    assert r.weights["lvcr"] == pytest.approx(0.8, abs=0.25)  # the simulated log-HR per SD
    np.testing.assert_allclose(
        r.scores, cph.predict_log_partial_hazard(data) + (cph.params_ * cph._norm_mean).sum(), rtol=1e-6, atol=1e-9
    )
    with pytest.raises(ValueError, match="duration_col"):
        immune_evasion_score(df, mode="cox")


def test_errors():
    df = _table()
    with pytest.raises(ValueError, match="mode"):
        immune_evasion_score(df, mode="fancy")
    bad = df.copy()
    bad.loc["P05", "lvcr"] = np.nan
    with pytest.raises(ValueError, match="P05"):
        immune_evasion_score(bad)
    bad = df.copy()
    bad.loc["P02", "sphericity"] = 1.4
    with pytest.raises(ValueError, match="P02"):
        immune_evasion_score(bad)
    bad = df.copy()
    bad.loc["P01", "pdl1_area_ratio"] = 45.0
    with pytest.raises(ValueError, match="fraction"):
        immune_evasion_score(bad)
    with pytest.raises(ValueError, match="sphericity"):
        immune_evasion_score(df.drop(columns="sphericity"))
