"""Training with real backgrounds: ignored voxels, background folds (no leak), patch mixing, a tiny run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mkunet.io import write_mask, write_volume
from mkunet.synth import make_case
from mkunet.train import train
from mkunet.train.data import (
    IGNORE_VALUE,
    PatchDataset,
    PreparedCase,
    ScanRecord,
    background_folds,
    read_backgrounds,
    sample_patch,
    unseen_model,
)
from mkunet.train.losses import DiceBCELoss
from mkunet.train.masked import MaskedDiceBCELoss
from tests.train.test_train import tiny_cohort, tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:ClinicalEncoder.transform")


# ---------------------------------------------------------------------------------- loss
@pytest.mark.parametrize("batch", [False, True])
def test_masked_loss_equals_the_loss_with_no_ignored_voxel(batch):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 4, 6, 6, generator=g)
    target = (torch.rand(2, 1, 4, 6, 6, generator=g) > 0.6).float()
    plain = DiceBCELoss(batch=batch)(logits, target)
    masked = MaskedDiceBCELoss(batch=batch)
    assert float(masked(logits, target, torch.ones_like(logits))) == pytest.approx(float(plain), abs=1e-6)
    assert float(masked(logits, target)) == pytest.approx(float(plain), abs=1e-6)


def test_ignored_voxels_contribute_nothing():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 4, 6, 6, generator=g)
    target = (torch.rand(2, 1, 4, 6, 6, generator=g) > 0.6).float()
    weight = torch.ones_like(logits)
    weight[:, :, 1:3, 2:5, 2:5] = 0.0
    loss = MaskedDiceBCELoss(batch=True)
    base = float(loss(logits, target, weight))
    # anything at the ignored voxels (logits or labels) leaves the loss unchanged
    other = logits.clone()
    other[weight == 0] = torch.randn(int((weight == 0).sum()), generator=g) * 10
    flipped = target.clone()
    flipped[weight == 0] = 1.0 - flipped[weight == 0]
    assert float(loss(other, target, weight)) == pytest.approx(base, abs=1e-6)
    assert float(loss(logits, flipped, weight)) == pytest.approx(base, abs=1e-6)
    # and they get no gradient, while the others do
    z = logits.clone().requires_grad_(True)
    loss(z, target, weight).backward()
    assert torch.all(z.grad[weight == 0] == 0) and torch.any(z.grad[weight == 1] != 0)
    with pytest.raises(ValueError, match="same shape"):
        loss(logits, target, weight[:1])


# ---------------------------------------------------------------------------------- folds
def test_background_folds_never_leak():
    names = ["lung1", "lung2", "ibsi", "lidc0314", "chest4dct", "totalseg"]
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        from train import FOLD_GROUPS  # the grouping the benchmark and the weights README use
    finally:
        sys.path.pop(0)
    groups = [FOLD_GROUPS["A"], FOLD_GROUPS["B"]]
    folds = background_folds(names, groups)
    assert len(folds) == 2
    scored = []
    for fold in folds:
        assert not set(fold["train"]) & set(fold["score"])  # never trained and scored on one background
        assert sorted(fold["train"] + fold["score"]) == sorted(names)
        scored += fold["score"]
    assert sorted(scored) == sorted(names)  # every background is scored exactly once
    # a scan is scored by the model that never saw its background, and never by one that did
    trained = {"A": folds[0]["train"], "B": folds[1]["train"]}
    for name in names:
        model = unseen_model(name, trained)
        assert name not in trained[model]
    with pytest.raises(ValueError, match="leak"):
        unseen_model("lung1", {"all": names})


def test_background_folds_refuse_a_bad_partition():
    with pytest.raises(ValueError, match="repeated \\['a'\\]"):
        background_folds(["a", "b"], [["a"], ["a", "b"]])
    with pytest.raises(ValueError, match="missing \\['c'\\]"):
        background_folds(["a", "b", "c"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="at least 2"):
        background_folds(["a"], [["a"]])


# ---------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def backgrounds(tmp_path_factory) -> Path:
    """Two small synthetic chests as 'real' backgrounds (the first one's tumour is an ignore mask)."""
    root = tmp_path_factory.mktemp("backgrounds")
    rows = []
    for k in range(2):
        volume, tumour = make_case(10 + k, shape=(24, 64, 64), spacing=(2.5, 3.0, 3.0), diameter_mm=10.0)
        write_volume(volume, root / f"bg{k}.nii.gz")
        ignore = ""
        if k == 0:
            write_mask(tumour, volume, root / "bg0_ignore.nii.gz")
            ignore = "bg0_ignore.nii.gz"
        rows.append({"name": f"bg{k}", "image": f"bg{k}.nii.gz", "ignore": ignore, "insert": 1})
    pd.DataFrame(rows).to_csv(root / "backgrounds.csv", index=False)
    return root


def test_read_backgrounds(backgrounds, tmp_path):
    table = read_backgrounds(backgrounds)
    assert [b.name for b in table] == ["bg0", "bg1"]
    assert table[0].ignore == backgrounds / "bg0_ignore.nii.gz" and table[1].ignore is None
    assert read_backgrounds(backgrounds / "backgrounds.csv") == table
    listed = read_backgrounds([backgrounds / "bg0.nii.gz", backgrounds / "bg1.nii.gz"])
    assert [b.name for b in listed] == ["bg0", "bg1"] and listed[0].ignore is None
    with pytest.raises(FileNotFoundError, match="backgrounds.csv"):
        read_backgrounds(tmp_path)
    pd.DataFrame([{"name": "a", "image": "bg0.nii.gz"}, {"name": "a", "image": "bg1.nii.gz"}]).to_csv(
        tmp_path / "dup.csv", index=False
    )
    with pytest.raises(ValueError, match="repeats"):
        read_backgrounds(tmp_path / "dup.csv")


def _case(ignore: bool) -> PreparedCase:
    label = np.zeros((8, 8, 8), bool)
    label[2:4, 2:4, 2:4] = True
    ign = np.zeros_like(label)
    ign[5:7, 5:7, 5:7] = True
    rec = ScanRecord("P", 0, None, Path("x"), Path("y"))
    return PreparedCase(
        rec,
        np.zeros((1, 8, 8, 8), np.float32),
        label,
        foreground=np.flatnonzero(label),
        ignore=ign if ignore else None,
        background="bg" if ignore else None,
    )


def test_patches_carry_the_ignore_region_as_weight_zero():
    case = _case(ignore=True)
    _, lab = sample_patch(case, (16, 16, 16), np.random.default_rng(0), 0.0)
    assert (lab == IGNORE_VALUE).sum() == 8 and (lab == 1).sum() == 8
    item = PatchDataset([case], (16, 16, 16), 1, seed=0, epoch=0)[0]
    assert set(item) == {"image", "label", "weight", "clinical"}
    assert float((item["weight"] == 0).sum()) == 8 and float(item["label"].sum()) == 8
    assert float(item["label"][item["weight"] == 0].sum()) == 0  # ignored voxels are never tumour


def test_real_fraction_mixes_cases_and_zero_changes_nothing():
    cohort, real = _case(ignore=False), _case(ignore=True)
    plain = PatchDataset([cohort], (16, 16, 16), 6, seed=2, epoch=1)
    mixed0 = PatchDataset([cohort], (16, 16, 16), 6, seed=2, epoch=1, real_cases=[real], real_fraction=0.0)
    for a, b in zip(plain, mixed0):
        assert torch.equal(a["label"], b["label"]) and torch.equal(a["weight"], b["weight"])
    only_real = PatchDataset([cohort], (16, 16, 16), 6, seed=2, epoch=1, real_cases=[real], real_fraction=1.0)
    assert all(float((item["weight"] == 0).sum()) == 8 for item in only_real)


def test_real_cases_are_deterministic_and_respect_ignore(backgrounds):
    from mkunet.preprocess import Preprocessor
    from mkunet.train.real import prepare_real_cases

    table = read_backgrounds(backgrounds)
    pre = Preprocessor(channels=1, adaptive_window=None)
    pre.fit([], [])
    a = prepare_real_cases(table, pre, (2.5, 3.0, 3.0), seed=5, cases_per_background=2)
    b = prepare_real_cases(table, pre, (2.5, 3.0, 3.0), seed=5, cases_per_background=2)
    assert [c.background for c in a] == ["bg0", "bg0", "bg1", "bg1"]
    for x, y in zip(a, b):
        assert np.array_equal(x.channels, y.channels) and np.array_equal(x.label, y.label)
    first = a[0]
    assert first.ignore is not None and first.ignore.any() and not (first.label & first.ignore).any()
    assert first.label.any() and first.lung.size and not np.isin(first.lung, np.flatnonzero(first.ignore)).any()
    assert a[2].ignore is None  # bg1 has no ignore mask


@pytest.mark.slow
def test_tiny_training_run_with_real_backgrounds(backgrounds, tmp_path):
    data = tiny_cohort(tmp_path / "cohort")
    config = tiny_config(
        data,
        tmp_path / "run",
        real_backgrounds=str(backgrounds),
        real_fraction=0.5,
        real_cases_per_background=1,
        patch_size=(16, 32, 32),
        channels=1,
        adaptive_window=False,
    )
    result = train(config)
    assert result.epochs_completed == 1
    meta = json.loads((tmp_path / "run" / "best" / "bundle.json").read_text())["metadata"]
    assert meta["real_backgrounds"] == ["bg0", "bg1"] and meta["n_real_cases"] == 2
    # fine-tuning from that bundle loads its weights
    tuned = train(
        tiny_config(
            data,
            tmp_path / "run2",
            init_weights=str(tmp_path / "run" / "best"),
            channels=1,
            adaptive_window=False,
            epochs=1,
        )
    )
    assert tuned.epochs_completed == 1
    with pytest.raises(ValueError, match="init_weights"):
        train(
            tiny_config(
                data,
                tmp_path / "run3",
                init_weights=str(tmp_path / "run" / "best"),
                width=4,
                channels=1,
                adaptive_window=False,
            )
        )


@pytest.mark.slow
def test_train_cli_takes_real_backgrounds(backgrounds, tmp_path):
    from typer.testing import CliRunner

    from mkunet.cli import app

    data = tiny_cohort(tmp_path / "cohort")
    out = tmp_path / "cli"
    args = ["train", "--data", str(data), "--out", str(out), "--width", "2", "--epochs", "1", "--patch", "16", "32",
            "32", "--val-fraction", "0.25", "--test-fraction", "0.25", "--patches-per-epoch", "2", "--channels", "1",
            "--no-adaptive-window", "--real-backgrounds", str(backgrounds), "--real-fraction", "0.5", "--real-cases",
            "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["real_backgrounds"] == str(backgrounds) and config["real_cases_per_background"] == 1
    bad = CliRunner().invoke(app, [*args[:-6], "--real-fraction", "1.5", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "real_fraction" in bad.output
