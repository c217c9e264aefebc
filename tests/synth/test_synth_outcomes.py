"""The outcome model: a Cox fit recovers the true coefficients; PD-L1 distribution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mkunet.synth.growth import sample_lvcr
from mkunet.synth.outcomes import COX_COVARIATES, OutcomeModel, covariate_matrix, sample_clinical, simulate_outcomes


def draw_table(n: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for _ in range(n):
        lv, _ = sample_lvcr(rng)
        d = float(np.exp(rng.uniform(np.log(5), np.log(60))))
        rows.append({"lvcr": lv, "sphericity": rng.uniform(0.7, 0.98), **sample_clinical(rng, d)})
    return pd.DataFrame(rows)


def test_cox_fit_recovers_true_coefficients():
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(1)  # unbiased over 30 seeds (mean estimates 0.50, 0.30, 0.20, 0.36)
    model = OutcomeModel()
    table = draw_table(400, rng)
    out = simulate_outcomes(table, rng, model)
    x = covariate_matrix(table, model)
    df = pd.concat([x, out[["os_days", "event"]]], axis=1)
    assert 0.3 < df["event"].mean() < 0.95
    cph = CoxPHFitter().fit(df, "os_days", "event")
    ci = cph.confidence_intervals_
    for c in COX_COVARIATES:
        lo, hi = ci.loc[c].to_numpy()
        assert lo <= model.beta[c] <= hi, (c, lo, hi, model.beta[c])
    # and the effects are detectable (CI excludes zero for the strong ones)
    assert ci.loc["lvcr_z"].iloc[0] > 0 and ci.loc["stage"].iloc[0] > 0


def test_pdl1_distribution_and_correlations():
    rng = np.random.default_rng(3)
    table = draw_table(4000, rng)
    out = simulate_outcomes(table, rng)
    tps = out["pdl1_tps"].to_numpy()
    frac = [(tps < 1).mean(), ((tps >= 1) & (tps < 50)).mean(), (tps >= 50).mean()]
    np.testing.assert_allclose(frac, [0.48, 0.30, 0.22], atol=0.04)
    assert np.array_equal(out["pdl1_positive"].to_numpy(), (tps >= 1).astype(int))
    ratio = out["pdl1_area_ratio"].to_numpy()
    assert ratio.min() >= 0 and ratio.max() <= 1
    assert np.corrcoef(ratio, tps)[0, 1] > 0.8
    irregularity = 1 - table["sphericity"].to_numpy()
    assert np.corrcoef(irregularity, tps)[0, 1] > 0.1
    assert np.corrcoef(table["sphericity"], np.log(out["cd8_density"]))[0, 1] > 0.15
    assert set(out["response"]) <= {"responder", "non-responder"}
    np.testing.assert_array_equal(out["response"] == "responder", table["lvcr"] < 0)


def test_bad_table_raises():
    with pytest.raises(ValueError, match="sphericity"):
        simulate_outcomes(pd.DataFrame({"lvcr": [0.0], "age": [60], "stage": ["I"]}), np.random.default_rng(0))
    with pytest.raises(ValueError, match="stage"):
        simulate_outcomes(
            pd.DataFrame({"lvcr": [0.0], "sphericity": [0.9], "age": [60], "stage": ["V"]}), np.random.default_rng(0)
        )
