"""Training: a 1-epoch run, exact resume, determinism, DDP with 2 gloo processes, split, patches, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from mkunet.io import write_mask, write_volume
from mkunet.train import TrainConfig, train
from mkunet.train.data import PatchDataset, PreparedCase, ScanRecord, read_scans, sample_patch, split_patients
from mkunet.volume import Volume

pytestmark = pytest.mark.filterwarnings("ignore:ClinicalEncoder.transform")


def tiny_cohort(root: Path, n_patients: int = 4, shape=(16, 48, 48), spacing=(2.0, 1.5, 1.5), seed: int = 0) -> Path:
    """A tiny cohort in the `mkunet synth` layout (scans.csv, clinical.csv, NIfTI image + mask).

    Spherical tumours (30 HU) in noisy lung-like background (-850 HU), two scans 60 days apart
    per patient, growing with a known per-patient rate. Also used by test_bundle / test_evaluate.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    scans, clinical = [], []
    z, y, x = np.indices(shape)
    for p in range(n_patients):
        pid = f"P{p:03d}"
        r0, rate = rng.uniform(4.0, 8.0), rng.uniform(0.001, 0.01)
        for t, days in enumerate((0, 60)):
            c = np.asarray(shape) / 2 + rng.uniform(-3, 3, 3)
            radius = r0 * np.exp(rate * days / 3)  # volume grows as exp(rate * days)
            d = np.sqrt(
                ((z - c[0]) * spacing[0]) ** 2 + ((y - c[1]) * spacing[1]) ** 2 + ((x - c[2]) * spacing[2]) ** 2
            )
            mask = d < radius
            image = np.where(mask, 30.0, -850.0) + rng.normal(0, 20, shape)
            volume = Volume(image.astype(np.float32), spacing)
            folder = root / pid / f"T{t}"
            write_volume(volume, folder / "image.nii.gz")
            write_mask(mask, volume, folder / "mask.nii.gz")
            scans.append(
                {
                    "patient_id": pid,
                    "timepoint": t,
                    "days": days,
                    "image": f"{pid}/T{t}/image.nii.gz",
                    "mask": f"{pid}/T{t}/mask.nii.gz",
                }
            )
        clinical.append(
            {
                "patient_id": pid,
                "age": int(rng.integers(40, 80)),
                "sex": "MF"[p % 2],
                "smoking": ("never", "former", "current")[p % 3],
                "grade": 1 + p % 3,
                "stage": ("I", "II", "III", "IV")[p % 4],
            }
        )
    pd.DataFrame(scans).to_csv(root / "scans.csv", index=False)
    pd.DataFrame(clinical).to_csv(root / "clinical.csv", index=False)
    return root


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    options = dict(
        data=str(data),
        out=str(out),
        model="mkunet",
        width=2,
        epochs=1,
        patch_size=(16, 32, 32),
        target_spacing=(2.0, 1.5, 1.5),
        val_fraction=0.25,
        test_fraction=0.25,
        patches_per_epoch=4,
        seed=3,
        deterministic=True,
        lr=1e-3,
    )
    options.update(overrides)
    return TrainConfig(**options)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return tiny_cohort(tmp_path_factory.mktemp("cohort"))


def _weights(run: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run / which / "model.safetensors"))


def test_one_epoch_run_writes_everything(cohort, tmp_path):
    events = []
    result = train(tiny_config(cohort, tmp_path / "run"), callback=events.append)
    run = tmp_path / "run"
    for name in (
        "config.json",
        "split.json",
        "state.json",
        "state.safetensors",
        "log.csv",
        "log.json",
        "best/model.safetensors",
        "best/bundle.json",
        "last/model.safetensors",
        "last/bundle.json",
    ):
        assert (run / name).is_file(), name
    assert not list(run.rglob("*.pt")) and not list(run.rglob("*.pkl"))
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) == 2 and len(split["val"]) == 1 and len(split["test"]) == 1
    assert not set(split["train"]) & set(split["val"] + split["test"])
    log = pd.read_csv(run / "log.csv")
    assert list(log["epoch"]) == [1] and np.isfinite(log["train_loss"]).all() and 0 <= log["val_dice"][0] <= 1
    assert result.epochs_completed == 1 and result.stopped == "epochs"
    assert [e["event"] for e in events] == ["start", "epoch", "end"]
    bundle = json.loads((run / "best" / "bundle.json").read_text())
    assert bundle["model_name"] == "mkunet" and bundle["clinical_encoder"] is not None
    assert bundle["preprocessor"]["adaptive_window"] is not None  # fitted on the training split, saved
    assert bundle["metadata"]["n_patients"] == {"train": 2, "val": 1, "test": 1}


def test_same_seed_same_weights_and_other_seed_differs(cohort, tmp_path):
    train(tiny_config(cohort, tmp_path / "a"))
    train(tiny_config(cohort, tmp_path / "b"))
    train(tiny_config(cohort, tmp_path / "c", seed=4))
    wa, wb, wc = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa if wa[k].is_floating_point())


def test_resume_gives_the_uninterrupted_weights(cohort, tmp_path):
    train(tiny_config(cohort, tmp_path / "full", epochs=3))
    train(tiny_config(cohort, tmp_path / "split", epochs=2))
    with pytest.raises(ValueError, match="already holds a training run"):
        train(tiny_config(cohort, tmp_path / "split", epochs=3))
    result = train(TrainConfig.from_run(tmp_path / "split", epochs=3))
    assert result.epochs_completed == 3
    full, resumed = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert list(pd.read_csv(tmp_path / "split" / "log.csv")["epoch"]) == [1, 2, 3]
    a = pd.read_csv(tmp_path / "full" / "log.csv")["train_loss"].to_numpy()
    b = pd.read_csv(tmp_path / "split" / "log.csv")["train_loss"].to_numpy()
    np.testing.assert_array_equal(a, b)


def test_time_budget_stops_cleanly(cohort, tmp_path):
    result = train(tiny_config(cohort, tmp_path / "run", epochs=50, time_budget_min=1e-4))
    assert result.stopped == "time_budget" and result.epochs_completed == 1
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes(cohort, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(
        "import torch, sys\n"
        "torch.set_num_threads(1)\n"
        "from mkunet.train import TrainConfig, train\n"
        f"r = train(TrainConfig(data={str(cohort)!r}, out={str(tmp_path / 'ddp')!r}, width=2, epochs=1, "
        "patch_size=(16, 32, 32), val_fraction=0.25, test_fraction=0.25, patches_per_epoch=4, seed=3, "
        "device='cpu', augment=False))\n"
        "import os, pathlib\n"
        f"pathlib.Path({str(tmp_path)!r}, 'done_' + os.environ['RANK']).write_text(str(r.epochs_completed))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _attempt in range(2):  # a second try with a new port if the first one was taken meanwhile
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                str(_free_port()),
                str(script),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        if proc.returncode == 0:
            break
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(tmp_path / f"done_{r}").read_text() for r in (0, 1)] == ["1", "1"]
    state = json.loads((tmp_path / "ddp" / "state.json").read_text())
    assert state["world_size"] == 2 and state["epoch"] == 1
    assert (tmp_path / "ddp" / "best" / "model.safetensors").is_file()


def test_split_is_seeded_patient_level_and_validated():
    ids = [f"P{i}" for i in range(20)]
    a, b = split_patients(ids, 0.2, 0.1, 7), split_patients(ids, 0.2, 0.1, 7)
    assert a == b and len(a["val"]) == 4 and len(a["test"]) == 2 and len(a["train"]) == 14
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(ids)
    assert split_patients(ids, 0.2, 0.1, 8) != a
    with pytest.raises(ValueError, match="val_fraction"):
        split_patients(ids, 0.6, 0.5, 0)
    with pytest.raises(ValueError, match="cannot be split"):
        split_patients(["A", "B"], 0.4, 0.4, 0)


def test_patch_sampling_targets_tumour_and_pads_small_volumes():
    label = np.zeros((8, 40, 40), bool)
    label[4, 30:33, 5:8] = True
    case = PreparedCase(
        ScanRecord("P", 0, 0.0, Path("i"), Path("m")),
        np.zeros((1, 8, 40, 40), np.float32) + 0.5,
        label,
        None,
        np.flatnonzero(label),
    )
    rng = np.random.default_rng(0)
    hits = [sample_patch(case, (16, 16, 16), rng, 1.0)[1].any() for _ in range(20)]
    assert all(hits)  # centred on a tumour voxel every time
    image, lab = sample_patch(case, (16, 16, 16), rng, 0.0)
    assert image.shape == (1, 16, 16, 16) and lab.shape == (1, 16, 16, 16)
    # z (8 voxels) is zero-padded to 16: 4 zero slices each side
    assert np.all(image[:, :4] == 0) and np.all(image[:, 4:12] == 0.5) and np.all(image[:, 12:] == 0)
    ds1 = PatchDataset([case], (16, 16, 16), 4, seed=1, epoch=0)
    ds2 = PatchDataset([case], (16, 16, 16), 4, seed=1, epoch=0, rank=1, world_size=2)
    assert torch.equal(ds1[1]["label"], ds2[0]["label"])  # sample i is the same whoever draws it


def test_lung_fraction_centres_patches_on_lung_voxels():
    """tumour_fraction 0 + lung_fraction 1: every patch holds the (marked) lung voxels; uniform ones often miss them."""
    shape = (48, 48, 48)
    label = np.zeros(shape, bool)
    label[2, 2, 2] = True
    marker = np.zeros(shape, bool)
    marker[30:32, 30:32, 30:32] = True
    case = PreparedCase(
        ScanRecord("P", 0, 0.0, Path("i"), Path("m")),
        marker[None].astype(np.float32),
        label,
        None,
        np.flatnonzero(label),
        lung=np.flatnonzero(marker),
    )
    rng = np.random.default_rng(3)
    assert all(sample_patch(case, (16, 16, 16), rng, 0.0, 1.0)[0].sum() == 8 for _ in range(20))
    uniform = [sample_patch(case, (16, 16, 16), rng, 0.0, 0.0)[0].sum() == 8 for _ in range(20)]
    assert not all(uniform)
    case.lung = np.zeros(0, np.int64)  # no lung stored: the lung share falls back to uniform centres
    assert not all(sample_patch(case, (16, 16, 16), rng, 0.0, 1.0)[0].sum() == 8 for _ in range(20))


def test_prepared_cases_store_lung_voxels_outside_the_tumour():
    """prepare_case_from_resampled(lung_samples=True) keeps non-tumour voxels of the lung region only."""
    from mkunet.segmentation.lung import lung_region
    from mkunet.synth import make_case
    from mkunet.train.prepare import prepare_case_from_resampled

    volume, mask = make_case(5, shape=(24, 80, 80), fit_body=True, diameter_mm=20.0)
    case = prepare_case_from_resampled(
        ScanRecord("P", 0, 0.0, Path("i"), Path("m")),
        (volume, mask),
        lambda v: v.array[None],
        None,
        None,
        lung_samples=True,
    )
    region = lung_region(volume.array, volume.spacing)
    assert case.lung.size > 0
    assert region.ravel()[case.lung].all() and not mask.ravel()[case.lung].any()
    plain = prepare_case_from_resampled(
        ScanRecord("P", 0, 0.0, Path("i"), Path("m")), (volume, mask), lambda v: v.array[None], None, None
    )
    assert plain.lung.size == 0


def test_poly_lr_schedule():
    from mkunet.train.loop import poly_lr

    assert poly_lr(0.01, 0.0) == pytest.approx(0.01)
    assert poly_lr(0.01, 0.5) == pytest.approx(0.01 * 0.5**0.9)
    assert 0 < poly_lr(0.01, 1.0) < 1e-4  # floored, never exactly 0


def test_poly_schedule_lowers_the_logged_lr(cohort, tmp_path):
    result = train(tiny_config(cohort, tmp_path / "poly", epochs=2, lr=1e-3, lr_schedule="poly"))
    lrs = [row["lr"] for row in result.history]
    assert lrs[0] == pytest.approx(1e-3) and lrs[1] == pytest.approx(1e-3 * 0.5**0.9)


def test_sampling_and_schedule_options_are_checked(cohort, tmp_path):
    with pytest.raises(ValueError, match="lung_fraction"):
        tiny_config(cohort, tmp_path / "x", tumour_fraction=0.8, lung_fraction=0.3)
    with pytest.raises(ValueError, match="lr_schedule"):
        tiny_config(cohort, tmp_path / "x", lr_schedule="cosine")
    with pytest.raises(ValueError, match=r"`window_mode` must be one of .*'sym'"):
        tiny_config(cohort, tmp_path / "x", window_mode="sym")


def test_bad_inputs_give_clear_errors(cohort, tmp_path):
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny_config(cohort, tmp_path / "x", patch_size=(10, 32, 32))
    with pytest.raises(FileNotFoundError, match="scans.csv"):
        train(tiny_config(tmp_path / "nowhere", tmp_path / "y"))
    (tmp_path / "bad").mkdir()
    pd.DataFrame({"patient_id": ["A"], "image": ["a.nii.gz"]}).to_csv(tmp_path / "bad" / "scans.csv", index=False)
    with pytest.raises(ValueError, match="mask"):
        read_scans(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="Cannot resume"):
        TrainConfig.from_run(tmp_path / "nothing")


def test_crop_margin_keeps_the_tumour_box_plus_margin():
    from mkunet.train.prepare import prepare_case_from_resampled

    class Identity:
        def __call__(self, volume):
            return volume.array[None]

    label = np.zeros((20, 40, 40), bool)
    label[8:10, 15:20, 20:22] = True
    volume = Volume(np.arange(label.size, dtype=np.float32).reshape(label.shape), (2.0, 1.0, 1.0))
    case = prepare_case_from_resampled(
        ScanRecord("P", 0, 0.0, Path("i"), Path("m")),
        (volume, label),
        Identity(),
        None,
        None,
        crop_margin_mm=4.0,
        spacing=(2.0, 1.0, 1.0),
    )
    # z: 8-2 .. 10+2, y: 15-4 .. 20+4, x: 20-4 .. 22+4
    assert case.label.shape == (6, 13, 10) and case.label.sum() == label.sum()
    np.testing.assert_array_equal(case.channels[0], volume.array[6:12, 11:24, 16:26])
    assert case.foreground.size == label.sum()


def test_train_cli_runs_and_resumes(cohort, tmp_path):
    from typer.testing import CliRunner

    from mkunet.cli import app

    out = tmp_path / "cli"
    args = [
        "train",
        "--data",
        str(cohort),
        "--out",
        str(out),
        "--width",
        "2",
        "--epochs",
        "1",
        "--patch",
        "16",
        "32",
        "32",
        "--val-fraction",
        "0.25",
        "--test-fraction",
        "0.25",
        "--patches-per-epoch",
        "2",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    resumed = CliRunner().invoke(app, ["train", "--resume", str(out), "--epochs", "2"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "state.json").read_text())["epoch"] == 2
    bad = CliRunner().invoke(
        app, ["train", "--data", str(cohort), "--out", str(tmp_path / "b"), "--patch", "10", "32", "32"]
    )
    assert bad.exit_code == 2 and "multiples of 16" in bad.output


def test_validation_uses_threshold_and_the_component_rule(monkeypatch):
    """_validate: the sliding window, the threshold, then infer's component rule (not the raw map)."""
    from types import SimpleNamespace

    import mkunet.models.bundle
    from mkunet.train.loop import _validate

    label = np.zeros((12, 12, 12), bool)
    label[2:6, 2:6, 2:6] = True
    prob = np.zeros(label.shape, np.float32)
    prob[2:6, 2:6, 2:6] = 0.9  # the tumour (largest probability mass)
    prob[8:10, 8:10, 8:10] = 0.6  # a false positive blob
    prob[0, 0, 0] = 0.45  # below the threshold
    monkeypatch.setattr(mkunet.models.bundle, "sliding_window_probability", lambda *a, **k: prob)
    case = SimpleNamespace(channels=np.zeros((1, *label.shape), np.float32), clinical=None, label=label)
    total, n = _validate(None, [case], (16, 16, 16), 0.25, False, spacing=(1.0, 1.0, 1.0))  # type: ignore[arg-type]
    assert n == 1 and total == pytest.approx(1.0)  # the blob is dropped
    raw, _ = _validate(None, [case], (16, 16, 16), 0.25, False, keep="none")  # type: ignore[arg-type]
    assert raw == pytest.approx(2 * 64 / (64 + 72))
