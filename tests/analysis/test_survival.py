"""Cohort statistics: Cox truth recovery, concordance sign, KM/log-rank, ROC, landmark, whole analysis."""

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


def test_roc_auc_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y * 1.0 + rng.normal(0, 1, 200)
    s[:10] = np.round(s[:10])  # a few ties
    a = survival.roc_auc(y, s, n_boot=500, seed=3)
    from sklearn.metrics import roc_auc_score

    assert a.auc == pytest.approx(roc_auc_score(y, s))
    assert a.ci_low < a.auc < a.ci_high
    assert a.n_boot == 500
    assert survival.roc_auc(y, s, n_boot=500, seed=3).ci_low == a.ci_low  # seeded
    # the vectorised bootstrap AUC equals sklearn's on a resample (ties included)
    idx = np.random.default_rng(9).integers(0, 200, 200)
    from scipy.stats import rankdata

    r = rankdata(s[idx])
    n1 = y[idx].sum()
    n0 = 200 - n1
    assert ((r * y[idx]).sum() - n1 * (n1 + 1) / 2) / (n1 * n0) == pytest.approx(roc_auc_score(y[idx], s[idx]))
    with pytest.raises(ValueError, match="both classes"):
        survival.roc_auc(np.ones(5), np.arange(5.0))


def test_spearman_and_landmark():
    df = pd.DataFrame({"a": [1, 2, 3, 4, 5.0], "b": [2, 1, 4, 3, 5.0]})
    from scipy.stats import spearmanr

    r = survival.spearman(df, "a", "b")
    assert r.rho == pytest.approx(spearmanr(df.a, df.b).statistic) and r.n == 5
    surv = pd.DataFrame({"os": [50, 100, 150, 300], "ev": [1, 0, 1, 1], "last": [60, 90, 90, 120]})
    lm = survival.landmark(surv, "os", "ev", 100)
    assert lm["os"].tolist() == [50, 200]
    lm2 = survival.landmark(surv, "os", "ev", "last")
    assert lm2["os"].tolist() == [10, 60, 180]
    with pytest.raises(ValueError, match="landmark_days"):
        survival.landmark(surv, "os", "ev", -1)


def test_attention_concordance():
    att = np.zeros((4, 10, 10), np.float32)
    tumour = np.zeros(att.shape, bool)
    tumour[1:3, 2:8, 2:8] = True  # 72 voxels
    att[tumour] = np.linspace(0, 1, 72)
    niche = np.zeros(att.shape, bool)
    # the top 10 % of attention: the last 8 voxels in C order inside the tumour
    top = np.argwhere(tumour)[-8:]
    niche[tuple(top[:6].T)] = True
    assert survival.attention_concordance(att, tumour, niche, quantile=0.9) == pytest.approx(6 / 8)
    with pytest.raises(ValueError, match="shapes"):
        survival.attention_concordance(att[:2], tumour, niche)


def synthetic_cohort(n=30, seed=0):
    """Long measurements, clinical and outcomes tables (as the synth layout / mkunet run write them)."""
    rng = np.random.default_rng(seed)
    meas, clin, out = [], [], []
    for i in range(n):
        pid = f"P{i:03d}"
        k = int(rng.integers(2, 5))
        days = np.r_[0, np.cumsum(rng.integers(40, 90, k - 1))]
        lv = rng.normal(0.004, 0.004)
        sph = rng.uniform(0.5, 0.9)
        vols = rng.uniform(2, 30) * np.exp(lv * days + rng.normal(0, 0.08, k))
        for tp, (d, v) in enumerate(zip(days, vols)):
            meas.append({"patient_id": pid, "timepoint": tp, "days": d, "volume_cm3": v, "sphericity": sph})
        clin.append(
            {
                "patient_id": pid,
                "age": int(rng.integers(40, 85)),
                "sex": rng.choice(["M", "F"]),
                "smoking": rng.choice(["never", "former", "current"]),
                "grade": int(rng.integers(1, 4)),
                "stage": rng.choice(["I", "II", "III", "IV"]),
            }
        )
        ratio = rng.uniform(0, 1)
        t = rng.exponential(900 * np.exp(-(150 * lv + 2 * (1 - sph))))
        c = rng.uniform(300, 1500)
        out.append(
            {
                "patient_id": pid,
                "os_days": max(min(t, c), 1.0),
                "event": int(t <= c),
                "pdl1_tps": 100 * ratio,
                "pdl1_positive": int(ratio > 0.4),
                "pdl1_area_ratio": ratio,
                "cd8_density": rng.gamma(2, 100),
            }
        )
    return pd.DataFrame(meas), pd.DataFrame(clin), pd.DataFrame(out)


def test_analyse_cohort_tables_and_files(tmp_path):
    meas, clin, out = synthetic_cohort(16)
    # one patient with a single scan is excluded (named), not fatal
    meas = pd.concat(
        [meas, pd.DataFrame([{"patient_id": "LONE", "timepoint": 0, "days": 0, "volume_cm3": 3, "sphericity": 0.7}])]
    )
    res = survival.analyse_cohort(meas, clin, out, out_dir=tmp_path, n_boot=100)
    assert len(res.tables["patients"]) == 16
    assert "LONE" in res.tables["excluded"]["patient_id"].tolist()
    assert {"IES", "LVCR"} <= set(res.groups)
    assert res.cox is not None and "lvcr_z" in res.cox.summary.index
    assert any("guarantee-time" in n for n in res.notes)
    for name in ("patients", "cox", "ph_test", "groups", "auc", "correlations", "concordance", "responses"):
        assert (tmp_path / f"{name}.csv").exists() and (tmp_path / f"{name}.md").read_text().startswith("|")
    for fig in ("km_ies.png", "km_lvcr.png", "roc_pdl1.png", "forest_cox.png", "growth_01.png"):
        assert (tmp_path / fig).stat().st_size > 1000
    assert "AUC PD-L1+" in res.summary()


def test_analyse_cohort_stores_the_curves_it_computed(tmp_path):
    """km.csv and roc.csv hold the Kaplan-Meier and ROC curves, so a report draws them without recomputing."""
    from lifelines import KaplanMeierFitter
    from sklearn.metrics import roc_curve

    meas, clin, out = synthetic_cohort(16)
    res = survival.analyse_cohort(meas, clin, out, out_dir=tmp_path, n_boot=20, figures=False)
    km = pd.read_csv(tmp_path / "km.csv", index_col=0)
    assert set(km.index) == {"IES", "LVCR"}
    pts = res.tables["patients"]
    g = res.groups["IES"]
    for label, high in ((f"ies > {g.cutoff:.4g}", True), (f"ies <= {g.cutoff:.4g}", False)):
        part = km.loc["IES"][km.loc["IES", "group"] == label]
        sel = (pts["ies"] > g.cutoff) == high
        ref = KaplanMeierFitter().fit(pts.loc[sel, "os_days"], pts.loc[sel, "event"])
        np.testing.assert_allclose(part["days"], ref.survival_function_.index)
        np.testing.assert_allclose(part["survival"], ref.survival_function_.iloc[:, 0])
        assert (part["ci_low"] <= part["survival"] + 1e-12).all()
        assert (part["survival"] <= part["ci_high"] + 1e-12).all()
        assert part["events"].sum() == pts.loc[sel, "event"].sum() and part["at_risk"].iloc[0] == sel.sum()
        assert part["events"].sum() + part["censored"].sum() == sel.sum()
    roc = pd.read_csv(tmp_path / "roc.csv", index_col=0)
    assert set(roc.index) == set(res.auc)
    ok = pts["pdl1_positive"].notna()
    fpr, tpr, _ = roc_curve(pts.loc[ok, "pdl1_positive"].astype(int), pts.loc[ok, "ies_imaging_only"])
    np.testing.assert_allclose(roc.loc["imaging-only IES", "fpr"], fpr)
    np.testing.assert_allclose(roc.loc["imaging-only IES", "tpr"], tpr)


def test_analyse_cohort_landmark_and_cutoff():
    meas, clin, out = synthetic_cohort(30, seed=1)
    res = survival.analyse_cohort(meas, clin, out, landmark_days=100, cutoff=0.0, n_boot=50, figures=False)
    p = res.tables["patients"]
    assert (p["last_scan_days"] <= 100).all()
    alive = out.set_index("patient_id").loc[p.index, "os_days"]
    np.testing.assert_allclose(p["os_days"], alive - 100)
    assert res.groups["IES"].cutoff == 0.0
    with pytest.raises(ValueError, match="landmark_days"):
        survival.analyse_cohort(meas, clin, out, landmark_days="soon", figures=False)
    with pytest.raises(ValueError, match="volume_cm3"):
        survival.analyse_cohort(meas.drop(columns="volume_cm3"), clin, out)
