"""Association statistics: ROC / AUC with its bootstrap CI, Spearman correlation, attention concordance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mkunet.analysis import association


def test_roc_auc_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y * 1.0 + rng.normal(0, 1, 200)
    s[:10] = np.round(s[:10])  # a few ties
    a = association.roc_auc(y, s, n_boot=500, seed=3)
    from sklearn.metrics import roc_auc_score

    assert a.auc == pytest.approx(roc_auc_score(y, s))
    assert a.ci_low < a.auc < a.ci_high
    assert a.n_boot == 500
    assert association.roc_auc(y, s, n_boot=500, seed=3).ci_low == a.ci_low  # seeded
    # the vectorised bootstrap AUC equals sklearn's on a resample (ties included)
    idx = np.random.default_rng(9).integers(0, 200, 200)
    from scipy.stats import rankdata

    r = rankdata(s[idx])
    n1 = y[idx].sum()
    n0 = 200 - n1
    assert ((r * y[idx]).sum() - n1 * (n1 + 1) / 2) / (n1 * n0) == pytest.approx(roc_auc_score(y[idx], s[idx]))
    with pytest.raises(ValueError, match="both classes"):
        association.roc_auc(np.ones(5), np.arange(5.0))


def test_spearman():
    df = pd.DataFrame({"a": [1, 2, 3, 4, 5.0], "b": [2, 1, 4, 3, 5.0]})
    from scipy.stats import spearmanr

    r = association.spearman(df, "a", "b")
    assert r.rho == pytest.approx(spearmanr(df.a, df.b).statistic) and r.n == 5
    with pytest.raises(ValueError, match="'c'"):
        association.spearman(df, "a", "c")


def test_attention_concordance():
    att = np.zeros((4, 10, 10), np.float32)
    tumour = np.zeros(att.shape, bool)
    tumour[1:3, 2:8, 2:8] = True  # 72 voxels
    att[tumour] = np.linspace(0, 1, 72)
    niche = np.zeros(att.shape, bool)
    # the top 10 % of attention: the last 8 voxels in C order inside the tumour
    top = np.argwhere(tumour)[-8:]
    niche[tuple(top[:6].T)] = True
    assert association.attention_concordance(att, tumour, niche, quantile=0.9) == pytest.approx(6 / 8)
    with pytest.raises(ValueError, match="shapes"):
        association.attention_concordance(att[:2], tumour, niche)
