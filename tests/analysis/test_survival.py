"""Survival statistics: Cox truth recovery, Schoenfeld test, concordance sign, KM / log-rank, landmark."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mkunet.analysis import survival


def simulate_cox(n, beta, seed, shape=1.3, scale=800.0, censor_max=1500.0):
    """Weibull proportional hazards: S(t|x) = exp(-(t/scale)^shape exp(x'beta)); uniform censoring."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(beta)))
    u = rng.uniform(size=n)
    t = scale * (-np.log(u) / np.exp(x @ np.asarray(beta))) ** (1 / shape)
    c = rng.uniform(50, censor_max, n)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(len(beta))])
    df["T"] = np.minimum(t, c)
    df["E"] = (t <= c).astype(int)
    return df


def test_cox_truth_recovery_and_coverage():
    beta = (0.7, -0.5, 0.3)
    res = survival.fit_cox(simulate_cox(800, beta, seed=11), "T", "E", ["x0", "x1", "x2"])
    hr = res.summary
    for i, b in enumerate(beta):
        assert hr.loc[f"x{i}", "hr_ci_low"] <= np.exp(b) <= hr.loc[f"x{i}", "hr_ci_high"]
    assert res.ph_test is not None and (res.ph_test["p"] > 0.001).all()  # PH holds by construction
    # coverage over replicates: 50 cohorts x 3 coefficients
    covered = total = 0
    for rep in range(50):
        s = survival.fit_cox(
            simulate_cox(200, beta, seed=1000 + rep), "T", "E", ["x0", "x1", "x2"], ph_test=False
        ).summary
        for i, b in enumerate(beta):
            covered += s.loc[f"x{i}", "hr_ci_low"] <= np.exp(b) <= s.loc[f"x{i}", "hr_ci_high"]
            total += 1
    print(f"Cox 95% CI coverage of the true coefficients: {covered}/{total} = {covered / total:.3f}")
    assert 0.89 <= covered / total <= 0.99


def test_schoenfeld_detects_non_proportional_hazards():
    rng = np.random.default_rng(2)
    n = 800
    g = rng.integers(0, 2, n)
    # group 1: early high hazard, later none (crossing survival) -> PH violated
    t = np.where(g == 1, rng.exponential(100, n) * rng.choice([1, 20], n, p=[0.5, 0.5]), rng.exponential(400, n))
    df = pd.DataFrame({"g": g, "T": np.minimum(t, 1500) + 0.1, "E": (t < 1500).astype(int)})
    res = survival.fit_cox(df, "T", "E", ["g"])
    assert res.ph_test.loc["g", "p"] < 0.01
    assert res.time_transform == "rank"


def test_fit_cox_errors():
    df = simulate_cox(50, (0.5,), seed=1)
    with pytest.raises(ValueError, match="'age'"):
        survival.fit_cox(df, "T", "E", ["age"])
    bad = df.copy()
    bad.loc[3, "x0"] = np.nan
    with pytest.raises(ValueError, match="missing"):
        survival.fit_cox(bad, "T", "E", ["x0"])
    bad = df.assign(c=1.0)
    with pytest.raises(ValueError, match="constant"):
        survival.fit_cox(bad, "T", "E", ["x0", "c"])


def test_concordance_sign_convention():
    df = simulate_cox(400, (1.0,), seed=4)
    c = survival.concordance_index(df["T"], df["x0"], df["E"])  # x0 is a risk score
    assert c > 0.6
    from lifelines.utils import concordance_index

    assert c == pytest.approx(1 - concordance_index(df["T"], df["x0"], df["E"]), abs=1e-9)
    res = survival.fit_cox(df, "T", "E", ["x0"], ph_test=False)
    assert res.concordance == pytest.approx(c, abs=1e-9)


def test_compare_groups_km_logrank():
    df = simulate_cox(300, (1.0,), seed=5)
    g = survival.compare_groups(df, "x0", "T", "E")
    assert g.cutoff == pytest.approx(df.x0.median())
    assert g.n_high + g.n_low == 300
    assert g.hr > 1.5 and g.logrank_p < 1e-3 and g.hr_ci_low > 1
    from lifelines.statistics import logrank_test

    hi = df.x0 > df.x0.median()
    lr = logrank_test(df["T"][hi], df["T"][~hi], df["E"][hi], df["E"][~hi])
    assert g.logrank_p == pytest.approx(lr.p_value)
    assert len(g.km) == 2
    with pytest.raises(ValueError, match="empty"):
        survival.compare_groups(df, "x0", "T", "E", cutoff=100.0)


def test_landmark():
    surv = pd.DataFrame({"os": [50, 100, 150, 300], "ev": [1, 0, 1, 1], "last": [60, 90, 90, 120]})
    lm = survival.landmark(surv, "os", "ev", 100)
    assert lm["os"].tolist() == [50, 200]
    lm2 = survival.landmark(surv, "os", "ev", "last")
    assert lm2["os"].tolist() == [10, 60, 180]
    with pytest.raises(ValueError, match="landmark_days"):
        survival.landmark(surv, "os", "ev", -1)
