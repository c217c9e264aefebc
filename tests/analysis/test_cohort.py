"""The whole cohort analysis (analyse_cohort): tables, files, stored curves, landmark and cut-off."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mkunet.analysis import cohort


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
    res = cohort.analyse_cohort(meas, clin, out, out_dir=tmp_path, n_boot=100)
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
    res = cohort.analyse_cohort(meas, clin, out, out_dir=tmp_path, n_boot=20, figures=False)
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
    res = cohort.analyse_cohort(meas, clin, out, landmark_days=100, cutoff=0.0, n_boot=50, figures=False)
    p = res.tables["patients"]
    assert (p["last_scan_days"] <= 100).all()
    alive = out.set_index("patient_id").loc[p.index, "os_days"]
    np.testing.assert_allclose(p["os_days"], alive - 100)
    assert res.groups["IES"].cutoff == 0.0
    with pytest.raises(ValueError, match="landmark_days"):
        cohort.analyse_cohort(meas, clin, out, landmark_days="soon", figures=False)
    with pytest.raises(ValueError, match="volume_cm3"):
        cohort.analyse_cohort(meas.drop(columns="volume_cm3"), clin, out)
