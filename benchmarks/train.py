"""Produce the shipped model (src/mkunet/weights/): synthetic cohort -> mkunet train -> held-out Dice.

Usage (the exact command behind the shipped weights is in src/mkunet/weights/README.md)::

    python benchmarks/train.py --work /tmp/mkunet-ship --time-budget 15 --threads 2

Steps:
1. ``mkunet.synth.synthesise`` writes a synthetic longitudinal cohort (NIfTI only) with
   widely randomised scanners (domain randomisation) and tumours of 5-100 mm equivalent
   diameter (solid / part-solid / ground-glass, lobulated / spiculated, some touching the
   pleura or mediastinum), into WORK/data. Nothing real is used.
2. ``mkunet.train.train`` trains a small MK-UNet on its training split, stopping cleanly
   when the time budget is used; run folder WORK/run.
3. ``mkunet.train.evaluate.evaluate_runs`` segments the held-out (test-split) synthetic patients
   on their own grid and prints Dice / IoU / HD95; tables in WORK/eval.
Then copy WORK/run/best/{model.safetensors,bundle.json} to src/mkunet/weights/.

Real anatomy (``--real-backgrounds``): ``--shared-data ../shared/data`` writes WORK/backgrounds
(``backgrounds.csv`` + ignore masks, outside the repository) for the seven real scans of
``../shared/data`` (:data:`BACKGROUNDS`: existing tumours and the README's unknown regions
are ignore masks; the TotalSegmentator example is a tumour-free negative), and
``--fold A|B|all`` trains on the backgrounds of that fold (:data:`FOLD_GROUPS`; grouped
leave-one-background-out: fold A trains on lung1, IBSI and LIDC and is scored on lung2,
4D-CT and TotalSegmentator; fold B the reverse; ``all`` trains on every background, the
shipped model). Tumours are inserted by :mod:`mkunet.synth.insert` on the training grid,
mixed with the synthetic cohort at ``--real-fraction`` of the patches.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

BACKGROUNDS = ("lung1", "lung2", "ibsi", "lidc0314", "chest4dct", "totalseg")
"""The real backgrounds of ../shared/data (names used in bundles' metadata and by sim_to_real.py)."""
FOLD_GROUPS = {"A": ("lung2", "chest4dct", "totalseg"), "B": ("lung1", "ibsi", "lidc0314")}
"""Fold K *scores* FOLD_GROUPS[K] and trains on the other group (grouped leave-one-background-out)."""


def write_backgrounds(shared: Path, out: Path) -> Path:
    """WORK/backgrounds/backgrounds.csv and ignore masks (NIfTI) for the real scans of ``shared``.

    Ignore regions: the pyradiomics and IBSI tumour labels grown by 10 mm; LIDC-IDRI-0314 the
    LUNA16 nodule (ball of its radius + 10 mm) and a 10 mm ball around each excluded mark; the
    4D-CT a 30 mm ball around the unannotated lesion (realct/README.md). The TotalSegmentator
    example gets no tumour (insert = 0).
    """
    import csv

    import numpy as np
    from scipy import ndimage

    from mkunet.io import read_mask, read_volume, write_mask

    out.mkdir(parents=True, exist_ok=True)
    rows = []

    def balls(volume, centres_xyz, radii_mm):
        zz, yy, xx = np.indices(volume.shape, sparse=True)
        mask = np.zeros(volume.shape, bool)
        for c, r in zip(centres_xyz, radii_mm):
            kz, ky, kx = volume.physical_to_index(np.asarray(c, float))
            sz, sy, sx = volume.spacing
            mask |= ((zz - kz) * sz) ** 2 + ((yy - ky) * sy) ** 2 + ((xx - kx) * sx) ** 2 <= r * r
        return mask

    specs = {
        "lung1": ("pyradiomics/lung1_image.nrrd", "pyradiomics/lung1_label.nrrd"),
        "lung2": ("pyradiomics/lung2_image.nrrd", "pyradiomics/lung2_label.nrrd"),
        "ibsi": ("ibsi/ct_phantom/image.nii.gz", "ibsi/ct_phantom/mask.nii.gz"),
    }
    for name, (image, label) in specs.items():
        volume = read_volume(shared / image)
        truth = read_mask(shared / label, volume)
        grown = ndimage.distance_transform_edt(~truth, sampling=volume.spacing) <= 10.0
        write_mask(grown, volume, out / f"{name}_ignore.nii.gz")
        rows.append(
            {"name": name, "image": str(shared / image), "ignore": str(out / f"{name}_ignore.nii.gz"), "insert": 1}
        )
    lidc = read_volume(shared / "realct/lidc0314.nii.gz")
    centres, radii = [], []
    for table, extra in (("lidc0314_luna16_nodules.csv", 10.0), ("lidc0314_luna16_excluded.csv", None)):
        with open(shared / "realct" / table, newline="") as f:
            for row in csv.DictReader(f):
                centres.append((float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])))
                d = float(row["diameter_mm"])
                radii.append(d / 2 + 10.0 if extra is not None else max(10.0, d / 2 + 10.0))
    write_mask(balls(lidc, centres, radii), lidc, out / "lidc0314_ignore.nii.gz")
    rows.append(
        {
            "name": "lidc0314",
            "image": str(shared / "realct/lidc0314.nii.gz"),
            "ignore": str(out / "lidc0314_ignore.nii.gz"),
            "insert": 1,
        }
    )
    dct = read_volume(shared / "realct/chest4dct_phase00.nii.gz")
    # the README's lesion point, and the round ~25 mm lesion seen in the image at (-86, 84, -8) mm
    # (benchmarks/sim_to_real.py): neither may be trained as background
    write_mask(
        balls(dct, [(-53.5, 73.8, -37.6), (-86.0, 84.0, -8.0)], [30.0, 30.0]), dct, out / "chest4dct_ignore.nii.gz"
    )
    rows.append(
        {
            "name": "chest4dct",
            "image": str(shared / "realct/chest4dct_phase00.nii.gz"),
            "ignore": str(out / "chest4dct_ignore.nii.gz"),
            "insert": 1,
        }
    )
    rows.append(
        {"name": "totalseg", "image": str(shared / "totalsegmentator/example_ct_sm.nii.gz"), "ignore": "", "insert": 0}
    )
    with open(out / "backgrounds.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "image", "ignore", "insert"])
        writer.writeheader()
        writer.writerows(rows)
    return out / "backgrounds.csv"


def fold_backgrounds(table: Path, fold: str, out: Path) -> Path:
    """A backgrounds.csv with only the training backgrounds of ``fold`` (A, B or all)."""
    import pandas as pd

    from mkunet.train.data import background_folds

    frame = pd.read_csv(table, dtype={"name": str}, keep_default_na=False)
    if fold != "all":
        folds = background_folds(list(frame["name"]), [FOLD_GROUPS["A"], FOLD_GROUPS["B"]])
        keep = folds[list(FOLD_GROUPS).index(fold)]["train"]
        frame = frame[frame["name"].isin(keep)]
    path = out / f"backgrounds_{fold}.csv"
    frame.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--patients", type=int, default=48)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 160, 160))
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--patch", type=int, nargs=3, default=(16, 64, 64))
    parser.add_argument("--spacing", type=float, nargs=3, default=(2.5, 2.0, 2.0))
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--patches-per-epoch", type=int, default=32)
    parser.add_argument("--time-budget", type=float, default=15.0, help="minutes of training")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--crop-margin", type=float, default=None, help="mm kept around each training tumour")
    parser.add_argument("--tumour-fraction", type=float, default=0.5)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--run-name", default="run")
    parser.add_argument("--dice-batch", action="store_true", help="Dice over the whole batch")
    parser.add_argument("--no-adaptive-window", action="store_true", help="feed full-range HU (no tumour-HU window)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lung-fraction", type=float, default=0.0, help="patches centred on non-tumour lung")
    parser.add_argument("--lr-schedule", default="constant", choices=("constant", "poly"))
    parser.add_argument("--shared-data", type=Path, default=None, help="../shared/data: use its real scans")
    parser.add_argument("--fold", default=None, choices=("A", "B", "all"), help="backgrounds of this fold")
    parser.add_argument("--real-fraction", type=float, default=0.5, help="share of patches from real backgrounds")
    parser.add_argument("--real-cases", type=int, default=4, help="inserted-tumour cases per background")
    parser.add_argument("--init", type=Path, default=None, help="bundle folder whose weights start the run")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mkunet.synth.writers import synthesise
    from mkunet.train import TrainConfig, train
    from mkunet.train.evaluate import evaluate_runs

    data = args.work / "data"
    t0 = time.monotonic()
    if not (data / "scans.csv").is_file():
        synthesise(
            data,
            args.patients,
            seed=args.seed,
            formats=("nifti",),
            shape=tuple(args.shape),
            wide_scanner=True,
            diameter_mm=(5.0, 100.0),
            timepoints=(2, 3),
        )
    real = None
    if args.fold is not None:
        if args.shared_data is None:
            parser.error("--fold needs --shared-data (the folder with the real scans)")
        table = args.work / "backgrounds" / "backgrounds.csv"
        if not table.is_file():
            write_backgrounds(args.shared_data.resolve(), args.work / "backgrounds")
        real = str(fold_backgrounds(table, args.fold, args.work / "backgrounds"))
    print(f"data ready in {time.monotonic() - t0:.0f} s: {data}", flush=True)
    command = (
        f"python benchmarks/train.py --work {args.work} --patients {args.patients} --seed {args.seed} "
        f"--shape {' '.join(map(str, args.shape))} --width {args.width} --patch {' '.join(map(str, args.patch))} "
        f"--spacing {' '.join(map(str, args.spacing))} --lr {args.lr} --epochs {args.epochs} "
        f"--patches-per-epoch {args.patches_per_epoch} --time-budget {args.time_budget} --threads {args.threads} --tumour-fraction {args.tumour_fraction}"  # noqa: E501
        + (f" --crop-margin {args.crop_margin}" if args.crop_margin is not None else "")
        + (" --dice-batch" if args.dice_batch else "")
        + (" --no-adaptive-window" if args.no_adaptive_window else "")
        + (f" --batch-size {args.batch_size}" if args.batch_size != 2 else "")
        + (f" --lung-fraction {args.lung_fraction}" if args.lung_fraction else "")
        + (f" --lr-schedule {args.lr_schedule}" if args.lr_schedule != "constant" else "")
        + (
            f" --shared-data {args.shared_data} --fold {args.fold} --real-fraction {args.real_fraction}"
            f" --real-cases {args.real_cases}"
            if args.fold is not None
            else ""
        )
        + (f" --init {args.init}" if args.init is not None else "")
        + f" --run-name {args.run_name}"
    )
    run = args.work / args.run_name
    config = TrainConfig(
        data=str(data),
        out=str(run),
        model="mkunet",
        width=args.width,
        epochs=args.epochs,
        lr=args.lr,
        patch_size=tuple(args.patch),
        target_spacing=tuple(args.spacing),
        val_fraction=0.06,
        test_fraction=0.15,
        seed=args.seed,
        patches_per_epoch=args.patches_per_epoch,
        val_every=10**6,
        crop_margin_mm=args.crop_margin,
        dice_batch=args.dice_batch,
        tumour_fraction=args.tumour_fraction,
        time_budget_min=args.time_budget,
        threads=args.threads,
        label="MK-UNet (shipped, synthetic)" if real is None else f"MK-UNet (real backgrounds, fold {args.fold})",
        command=command,
        adaptive_window=not args.no_adaptive_window,
        batch_size=args.batch_size,
        lung_fraction=args.lung_fraction,
        lr_schedule=args.lr_schedule,
        real_backgrounds=real,
        real_fraction=args.real_fraction,
        real_cases_per_background=args.real_cases,
        init_weights=None if args.init is None else str(args.init),
        resume=(run / "state.json").is_file(),
    )

    def show(event: dict) -> None:
        if event["event"] == "epoch":
            print(
                f"epoch {event['epoch']} loss {event['loss']:.4f} val {event['val_dice']} "
                f"elapsed {event['elapsed_s'] / 60:.1f} min",
                flush=True,
            )

    t1 = time.monotonic()
    result = train(config, callback=show)
    print(
        f"trained: {result.epochs_completed} epochs, {result.stopped}, {result.elapsed_s / 60:.1f} min of training, "
        f"{(time.monotonic() - t1) / 60:.1f} min wall incl. data preparation; best val Dice {result.best_metric:.3f}",
        flush=True,
    )
    if args.skip_eval:
        return
    t2 = time.monotonic()
    evaluation = evaluate_runs([run], data)
    evaluation.write(args.work / f"eval_{args.run_name}")
    print(evaluation.to_markdown())
    print(f"evaluated in {time.monotonic() - t2:.0f} s")
    summary = {
        "command": command,
        "training_min": result.elapsed_s / 60,
        "epochs": result.epochs_completed,
        "test_dice_mean": float(evaluation.table1["dice_mean"][0]),
        "test_dice_sd": float(evaluation.table1["dice_sd"][0]),
        "n_test_scans": int(evaluation.table1["n"][0]),
    }
    (args.work / f"summary_{args.run_name}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
