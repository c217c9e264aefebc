"""`mkunet train`: train a segmentation network on a cohort folder (thin layer over mkunet.train)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from mkunet.cli._common import PANEL_ABLATION, PANEL_HARDWARE, PANEL_SAMPLING, PANEL_TRAINING


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to `app`."""
    app.command("train")(train_command)


def _new_config(
    data: Path | None,
    out: Path | None,
    model: str,
    command: str,
    options: dict[str, Any],
    clinical_fusion: bool,
    gate: str | None,
    adaptive_window: bool,
    use_lvcr: bool,
    real_backgrounds: list[str] | None,
):
    """The :class:`mkunet.train.TrainConfig` of a new run; options left as None take the config's defaults."""
    from mkunet.train import TrainConfig

    if data is None or out is None:
        raise ValueError("Give --data DIR and --out RUN_DIR (or --resume RUN_DIR).")
    model_kwargs: dict = {}
    if not clinical_fusion:
        model_kwargs["clinical_fusion"] = False
    if gate is not None:
        model_kwargs["gate"] = gate
    options = dict(options)
    if real_backgrounds:
        options["real_backgrounds"] = real_backgrounds[0] if len(real_backgrounds) == 1 else list(real_backgrounds)
    return TrainConfig(
        data=str(data),
        out=str(out),
        model=model,
        model_kwargs=model_kwargs,
        adaptive_window=adaptive_window,
        use_lvcr=use_lvcr,
        command=command,
        **{k: v for k, v in options.items() if v is not None},
    )


def _is_main_rank() -> bool:
    """True outside torchrun and on its rank 0 (the only one that draws progress and prints)."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _train_with_progress(config, main_rank: bool):
    """:func:`mkunet.train.train` with an epoch progress bar (loss, validation Dice) on the main rank only."""
    import contextlib

    from mkunet.cli._common import progress
    from mkunet.train import train

    with progress() if main_rank else contextlib.nullcontext() as bar:
        task = bar.add_task("training", total=config.epochs) if bar is not None else None

        def callback(event: dict) -> None:
            if bar is None:
                return
            if event["event"] == "start":
                bar.update(task, completed=event["epoch"], total=event["epochs"])
            elif event["event"] == "epoch":
                dice = "n/a" if event["val_dice"] is None else f"{event['val_dice']:.3f}"
                bar.update(
                    task,
                    completed=event["epoch"],
                    description=f"epoch {event['epoch']}/{event['epochs']} loss {event['loss']:.4f} val Dice {dice}",
                )

        return train(config, callback=callback)


def train_command(
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Cohort folder: scans.csv (patient_id, image, mask[, days, roi]) + clinical.csv; "
        "the layout `mkunet synth` writes. Images: NIfTI/NRRD or DICOM folder; masks: NIfTI/NRRD or RTSTRUCT.",
    ),
    model: str = typer.Option("mkunet", "--model", help="Network: mkunet, unet3d, resnet3d, attention_unet."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (checkpoints, logs, split)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs (default: 150).", rich_help_panel=PANEL_TRAINING),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Patches per step (default: 2).", rich_help_panel=PANEL_TRAINING
    ),
    lr: float | None = typer.Option(
        None, "--lr", help="Adam learning rate (default: 1e-4).", rich_help_panel=PANEL_TRAINING
    ),
    patch: tuple[int, int, int] | None = typer.Option(
        None,
        "--patch",
        metavar="Z Y X",
        help="Patch size in voxels, array order (z, y, x), multiples of 16 (default: 32 96 96).",
        rich_help_panel=PANEL_SAMPLING,
    ),
    spacing: tuple[float, float, float] | None = typer.Option(
        None,
        "--spacing",
        metavar="Z Y X",
        help="Voxel size in mm, array order (z, y, x), cases are resampled to (default: 2 1.5 1.5).",
        rich_help_panel=PANEL_SAMPLING,
    ),
    val_fraction: float | None = typer.Option(
        None, "--val-fraction", help="Validation patients (default: 0.15).", rich_help_panel=PANEL_TRAINING
    ),
    test_fraction: float | None = typer.Option(
        None, "--test-fraction", help="Test patients (default: 0.15).", rich_help_panel=PANEL_TRAINING
    ),
    seed: int | None = typer.Option(
        None,
        "--seed",
        help="Seed of split, weights, patches, augmentation (default: 0).",
        rich_help_panel=PANEL_TRAINING,
    ),
    width: int | None = typer.Option(
        None,
        "--width",
        help="Base width w (levels w..16w) (default: model default 16).",
        rich_help_panel=PANEL_ABLATION,
    ),
    channels: int | None = typer.Option(
        None, "--channels", help="Input channels: 4 or 1 (default: 4).", rich_help_panel=PANEL_ABLATION
    ),
    no_adaptive_window: bool = typer.Option(
        False, "--no-adaptive-window", help="Skip the adaptive HU window.", rich_help_panel=PANEL_ABLATION
    ),
    no_clinical_fusion: bool = typer.Option(
        False, "--no-clinical-fusion", help="MK-UNet without clinical fusion.", rich_help_panel=PANEL_ABLATION
    ),
    gate: str | None = typer.Option(
        None, "--gate", help="MK-UNet gates: immune, plain, none.", rich_help_panel=PANEL_ABLATION
    ),
    no_lvcr: bool = typer.Option(
        False, "--no-lvcr", help="Fix the LVCR input at the training median (ablation).", rich_help_panel=PANEL_ABLATION
    ),
    patches_per_epoch: int | None = typer.Option(
        None,
        "--patches-per-epoch",
        help="Patches per epoch (default: 4 x training scans).",
        rich_help_panel=PANEL_SAMPLING,
    ),
    tumour_fraction: float | None = typer.Option(
        None,
        "--tumour-fraction",
        help="Share of patches centred on the tumour (default: 0.667).",
        rich_help_panel=PANEL_SAMPLING,
    ),
    lung_fraction: float | None = typer.Option(
        None,
        "--lung-fraction",
        help="Share of patches centred on non-tumour lung: hard negatives (default: 0).",
        rich_help_panel=PANEL_SAMPLING,
    ),
    lr_schedule: str | None = typer.Option(
        None, "--lr-schedule", help="constant or poly (default: constant).", rich_help_panel=PANEL_TRAINING
    ),
    num_workers: int | None = typer.Option(
        None, "--num-workers", help="DataLoader workers (default: 0).", rich_help_panel=PANEL_HARDWARE
    ),
    device: str | None = typer.Option(
        None, "--device", help="auto, cpu, cuda (default: auto).", rich_help_panel=PANEL_HARDWARE
    ),
    threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads.", rich_help_panel=PANEL_HARDWARE),
    label: str | None = typer.Option(None, "--label", help="Name of the run in evaluation tables."),
    time_budget: float | None = typer.Option(
        None,
        "--time-budget",
        metavar="MIN",
        help="Stop cleanly before MIN minutes of training are used.",
        rich_help_panel=PANEL_TRAINING,
    ),
    real_backgrounds: list[str] | None = typer.Option(
        None,
        "--real-backgrounds",
        help="Real CTs into which synthetic tumours are inserted (mkunet.synth.insert) and mixed with the cohort: "
        "a folder with backgrounds.csv (name, image[, ignore, insert]), that CSV, or CT files (repeat the option).",
        rich_help_panel=PANEL_SAMPLING,
    ),
    real_fraction: float | None = typer.Option(
        None,
        "--real-fraction",
        help="Share of patches from the real-background cases (default: 0.5).",
        rich_help_panel=PANEL_SAMPLING,
    ),
    real_cases: int | None = typer.Option(
        None,
        "--real-cases",
        help="Inserted-tumour cases made from each real background (default: 4).",
        rich_help_panel=PANEL_SAMPLING,
    ),
    init: Path | None = typer.Option(
        None, "--init", help="Start from the weights of this bundle folder (fine-tuning; same model and width)."
    ),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="Continue the run in this folder exactly where it stopped (other options: "
        "--epochs / --time-budget may be raised).",
    ),
) -> None:
    """Train a segmentation network; writes RUN_DIR/best, RUN_DIR/last (safetensors + JSON), log.csv, split.json.

    Under `torchrun --nproc_per_node N mkunet train ...` it trains with DDP (gloo on CPU, NCCL on CUDA).
    """
    from mkunet.cli._common import console, user_errors
    from mkunet.train import TrainConfig

    command = "mkunet " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with user_errors():
        if resume is not None:
            config = TrainConfig.from_run(
                resume,
                epochs=epochs,
                time_budget_min=time_budget,
                threads=threads,
                num_workers=num_workers,
                device=device,
            )
        else:
            options: dict[str, Any] = {
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "patch_size": patch,
                "target_spacing": spacing,
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "seed": seed,
                "width": width,
                "channels": channels,
                "patches_per_epoch": patches_per_epoch,
                "num_workers": num_workers,
                "device": device,
                "threads": threads,
                "label": label,
                "time_budget_min": time_budget,
                "tumour_fraction": tumour_fraction,
                "lung_fraction": lung_fraction,
                "lr_schedule": lr_schedule,
                "real_fraction": real_fraction,
                "real_cases_per_background": real_cases,
                "init_weights": None if init is None else str(init),
            }
            config = _new_config(
                data,
                out,
                model,
                command,
                options,
                clinical_fusion=not no_clinical_fusion,
                gate=gate,
                adaptive_window=not no_adaptive_window,
                use_lvcr=not no_lvcr,
                real_backgrounds=real_backgrounds,
            )
        main_rank = _is_main_rank()
        result = _train_with_progress(config, main_rank)
        if main_rank:
            console.print(
                f"{result.epochs_completed} epochs ({result.stopped}), {result.elapsed_s / 60:.1f} min; best "
                f"validation Dice {result.best_metric:.3f} at epoch {result.best_epoch}; model: {result.best_dir}"
            )
