"""Evaluation: per-case rows and Tables 1-3 on two tiny runs, ablation pairing, cut-off, CLI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mkunet.train import train
from mkunet.train.evaluate import ABLATION, _tables, evaluate_runs, format_mean_sd
from tests.train.test_train import tiny_cohort, tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:ClinicalEncoder.transform")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = tiny_cohort(root / "data", n_patients=4, shape=(16, 32, 32))
    full = root / "full"
    base = root / "base"
    train(tiny_config(data, full, label="full model", epochs=1))
    train(
        tiny_config(
            data,
            base,
            label="baseline",
            epochs=1,
            channels=1,
            adaptive_window=False,
            model_kwargs={"clinical_fusion": False, "gate": "none"},
        )
    )
    return data, full, base


def test_tables_on_two_tiny_runs(two_runs, tmp_path):
    data, full, base = two_runs
    ev = evaluate_runs([full, base], data, all_cases=True)
    assert len(ev.per_case) == 2 * 8  # 4 patients x 2 scans, per run
    assert set(ev.per_case.columns) >= {"label", "patient_id", "timepoint", "dice", "iou", "hd95_mm", "lvcr_per_day"}
    assert ev.per_case["dice"].between(0, 1).all() and ev.per_case["iou"].between(0, 1).all()
    assert (ev.per_case["iou"] <= ev.per_case["dice"] + 1e-12).all()  # IoU <= Dice always
    # Table 1 equals an independent summary of the per-case rows
    t1 = ev.table1.set_index("label")
    for label in ("full model", "baseline"):
        values = ev.per_case.loc[ev.per_case["label"] == label, "dice"].to_numpy()
        assert t1.loc[label, "dice_mean"] == pytest.approx(values.mean())
        assert t1.loc[label, "dice_sd"] == pytest.approx(values.std(ddof=1))
        assert t1.loc[label, "n"] == 8
    # Table 2: baseline vs full, paired on the same 8 scans
    t2 = ev.table2.set_index("variant")
    assert list(t2.index) == ["baseline", "full model"]
    assert t2.loc["baseline", "n_paired"] == 8 and math.isnan(t2.loc["full model", "dice_p"])
    # Table 3: median cut-off over the 4 patients splits them 2 / 2
    lvcr = ev.per_case.drop_duplicates("patient_id")["lvcr_per_day"].to_numpy()
    assert ev.lvcr_cutoff == pytest.approx(np.median(lvcr))
    t3 = ev.table3[ev.table3["label"] == "full model"].set_index("group")
    assert t3.loc["high", "n_patients"] == 2 and t3.loc["low", "n_patients"] == 2
    paths = ev.write(tmp_path / "out")
    md = paths["markdown"].read_text()
    assert "Table 1" in md and "Table 2" in md and "Table 3" in md and "±" in md
    assert pd.read_csv(paths["per_case"]).shape[0] == 16


def test_test_split_and_explicit_cutoff(two_runs):
    data, full, _ = two_runs
    ev = evaluate_runs([full], data, lvcr_cutoff=-1.0)
    assert ev.per_case["patient_id"].nunique() == 1  # the run's one test patient
    assert set(ev.table3["group"]) == {"high", "low"}
    assert int(ev.table3.set_index("group").loc["low", "n"]) == 0


def test_paired_ttest_against_the_full_model_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(1)
    scans = [f"P{i}/T0" for i in range(6)]
    rows = []
    full_d, base_d = rng.uniform(0.7, 0.9, 6), rng.uniform(0.5, 0.8, 6)
    for label, run, values in (("full model", "r1", full_d), ("baseline", "r2", base_d)):
        for s, v in zip(scans, values):
            rows.append(
                {
                    "run": run,
                    "label": label,
                    "model": "mkunet",
                    "patient_id": s[:2],
                    "timepoint": 0,
                    "scan": s,
                    "dice": v,
                    "iou": v / (2 - v),
                    "hd95_mm": 10 * (1 - v),
                    "lvcr_per_day": float(s[1]) / 1000,
                    "truth_cm3": 1.0,
                    "predicted_cm3": 1.0,
                }
            )
    runs = pd.DataFrame(
        {"run": ["r1", "r2"], "label": ["full model", "baseline"], "model": ["mkunet"] * 2, "parameters": [10, 10]}
    )
    ev = _tables(pd.DataFrame(rows), runs, None)
    row = ev.table2.set_index("variant").loc["baseline"]
    t, p = stats.ttest_rel(base_d, full_d)
    assert row["dice_t"] == pytest.approx(t) and row["dice_p"] == pytest.approx(p)


def test_helpers_and_errors(tmp_path):
    assert format_mean_sd(0.81234, 0.0345) == "0.812 ± 0.035"
    assert format_mean_sd(float("nan"), 1.0) == "n/a"
    assert list(ABLATION)[3] == "full model"
    with pytest.raises(ValueError, match="at least one"):
        evaluate_runs([], tmp_path)
    tiny_cohort(tmp_path / "d", n_patients=1, shape=(16, 16, 16))
    with pytest.raises(FileNotFoundError, match="neither a training run"):
        evaluate_runs([tmp_path / "nope"], tmp_path / "d")
    with pytest.raises(ValueError, match="`keep` must be one of component, all, none; got 'largest'"):
        evaluate_runs([tmp_path / "nope"], tmp_path / "d", keep="largest")
    from mkunet.train.evaluate import benchmark_models

    with pytest.raises(ValueError, match="`keep`"):  # refused before any training
        benchmark_models(tmp_path / "d", tmp_path / "bench", keep="largest")
    assert not (tmp_path / "bench").exists()


def test_evaluate_cli(two_runs, tmp_path):
    from mkunet.cli import app

    data, full, base = two_runs
    result = CliRunner().invoke(
        app, ["evaluate", "--runs", str(full), "--runs", str(base), "--data", str(data), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "table1.csv").is_file() and (tmp_path / "o" / "tables.md").is_file()
    bad = CliRunner().invoke(
        app, ["evaluate", "--runs", str(tmp_path / "x"), "--data", str(data), "--out", str(tmp_path / "o2")]
    )
    assert bad.exit_code == 2


def test_evaluation_is_infer_segment_with_the_users_lvcr(two_runs, tmp_path):
    """The scores are those of mkunet.segmentation.infer.segment (network, whole volume) with the LVCR a user has."""
    import shutil

    from mkunet.analysis.metrics import dice
    from mkunet.models.bundle import ModelBundle
    from mkunet.segmentation.infer import segment, segment_timepoints
    from mkunet.train.data import load_scan, read_scans

    data, full, base = two_runs
    ev = evaluate_runs([full, base], data, all_cases=True)
    assert {"lvcr_source", "lvcr_input_per_day"} <= set(ev.per_case.columns)
    by_label = ev.per_case.groupby("label")["lvcr_source"].unique()
    assert list(by_label["full model"]) == ["fixed-point estimate"]  # two scans, no LVCR in clinical.csv
    assert list(by_label["baseline"]) == ["not used (no clinical input)"]
    assert ev.table1.set_index("label").loc["full model", "lvcr_source"] == "fixed-point estimate: 8"
    assert "lvcr_source" in ev.table3.columns and "LVCR input" in ev.to_markdown()
    # the full model's first patient: exactly segment_timepoints(..., method="network") of its scans
    recs = [r for r in read_scans(data) if r.patient_id == ev.per_case["patient_id"].iloc[0]]
    pairs = [load_scan(r) for r in recs]
    bundle = ModelBundle.load(full / "best")
    clinical_row = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str}).set_index("patient_id")
    clinical = {c: clinical_row.loc[recs[0].patient_id, c] for c in ("age", "sex", "smoking", "grade", "stage")}
    longi = segment_timepoints([v for v, _ in pairs], [r.days for r in recs], bundle, clinical, method="network")
    rows = ev.per_case[(ev.per_case["label"] == "full model") & (ev.per_case["patient_id"] == recs[0].patient_id)]
    for (_, truth), seg, score in zip(pairs, longi.segmentations, rows["dice"]):
        assert dice(seg.mask, truth) == pytest.approx(score, abs=1e-12)
    assert rows["lvcr_input_per_day"].iloc[0] == pytest.approx(longi.segmentations[0].lvcr_used)
    # clinical.csv with an LVCR column: that value is fed, and said so
    data2 = tmp_path / "data"
    shutil.copytree(data, data2)
    table = pd.read_csv(data2 / "clinical.csv", dtype={"patient_id": str})
    table["lvcr"] = 0.0123
    table.to_csv(data2 / "clinical.csv", index=False)
    ev2 = evaluate_runs([full], data2, all_cases=True)
    assert set(ev2.per_case["lvcr_source"]) == {"clinical.csv"}
    assert np.allclose(ev2.per_case["lvcr_input_per_day"], 0.0123)
    volume, truth = pairs[0]
    seg = segment(volume, bundle, dict(clinical, lvcr=0.0123), None, method="network")
    row = ev2.per_case[ev2.per_case["scan"] == recs[0].key].iloc[0]
    assert dice(seg.mask, truth) == pytest.approx(row["dice"], abs=1e-12)
    # the Table 3 stratifier stays the ground-truth LVCR
    assert np.allclose(ev2.per_case["lvcr_per_day"], ev.per_case[ev.per_case["label"] == "full model"]["lvcr_per_day"])
