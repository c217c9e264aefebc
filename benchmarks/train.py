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
3. ``mkunet.evaluate.evaluate_runs`` segments the held-out (test-split) synthetic patients
   on their own grid and prints Dice / IoU / HD95; tables in WORK/eval.
Then copy WORK/run/best/{model.safetensors,bundle.json} to src/mkunet/weights/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


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
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mkunet.evaluate import evaluate_runs
    from mkunet.synth.writers import synthesise
    from mkunet.train import TrainConfig, train

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
        label="MK-UNet (shipped, synthetic)",
        command=command,
        adaptive_window=not args.no_adaptive_window,
        batch_size=args.batch_size,
        lung_fraction=args.lung_fraction,
        lr_schedule=args.lr_schedule,
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
