"""The training loop: :func:`train` runs epochs of patches, validates, checkpoints, stops on a time budget.

Works unchanged under ``torchrun`` (DDP, :mod:`mkunet.train.ddp`), with mixed precision on
CUDA; the run folder and exact resume are in :mod:`mkunet.train.checkpoint`, the cases in
:mod:`mkunet.train.prepare`, the configuration in :mod:`mkunet.train.config`.

Validation Dice is computed on whole validation cases at the model's spacing (sliding
window, Gaussian blending, overlap 0.25, threshold 0.5, then the component rule of
:func:`mkunet.segmentation.infer.segment`, :func:`mkunet.segmentation.infer.keep_tumour_component`) against the
resampled masks: the steps of :func:`mkunet.segmentation.infer.segment` without the final resampling
back to the scan grid (cheaper; the selection criterion, not the reported figure; see
``_validate``).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from mkunet.train.checkpoint import (
    STATE_JSON,
    BundleMaker,
    Optimisation,
    init_weights,
    restore_optimisation,
    save_epoch,
)
from mkunet.train.config import TrainConfig, TrainResult, width_kwargs
from mkunet.train.data import PatchDataset, PreparedCase, ScanRecord, read_scans, split_patients, write_json
from mkunet.train.ddp import Dist, all_reduce_sum, barrier, setup_distributed
from mkunet.train.prepare import TrainData, prepare_data

__all__ = ["train", "poly_lr"]

logger = logging.getLogger("mkunet.train")

Callback = Callable[[dict[str, Any]], None]


def poly_lr(lr: float, progress: float, power: float = 0.9, floor: float = 1e-3) -> float:
    """``lr * max(1 - progress, floor) ** power`` (nnU-Net's polynomial decay), progress in [0, 1]."""
    return float(lr) * max(1.0 - float(progress), floor) ** power


def train(config: TrainConfig, callback: Callback | None = None) -> TrainResult:
    """Train a segmentation network on a cohort folder; see :class:`~mkunet.train.config.TrainConfig`.

    Works unchanged under ``torchrun`` (DDP: gloo on CPU, NCCL on CUDA; rank 0 writes the
    run folder). Same config and seed on CPU give identical weights; ``config.resume``
    continues a run exactly (the final weights equal those of an uninterrupted run).

    Steps: :func:`_start_run` (run folder, split, seeded model, cases, optimiser and resumed
    state) -> :func:`_run_epoch` per epoch (train, validate, checkpoint) until the last epoch
    or the time budget -> :func:`_finish`.

    Args:
        config: the run's configuration.
        callback: called on rank 0 with a dict after every epoch (``event="epoch"``, ``epoch``,
            ``epochs``, ``loss``, ``val_dice``, ``elapsed_s``, ``eta_s``) and once with
            ``event="start"`` / ``event="end"``; used by the CLI's progress display.

    Returns:
        :class:`~mkunet.train.config.TrainResult`.
    """
    config.validate()
    wall_start = time.monotonic()
    dist, device = setup_distributed(config.device)
    try:
        run = _start_run(config, dist, device, callback)
        stopped = "epochs"
        for epoch in range(run.opt.start_epoch, config.epochs):
            over_budget = _run_epoch(run, epoch)
            if over_budget and epoch + 1 < config.epochs:
                stopped = "time_budget"
                break
        result = _finish(run, stopped)
        logger.info("training finished in %.1f s (%s)", time.monotonic() - wall_start, stopped)
        return result
    finally:
        if dist.initialised_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@dataclass
class _Run:
    """Everything one training session works with (built by :func:`_start_run`)."""

    config: TrainConfig
    run_dir: Path
    dist: Dist
    device: torch.device
    amp: bool
    model: torch.nn.Module
    net: torch.nn.Module  # the model, wrapped in DistributedDataParallel under DDP
    needs_clinical: bool
    data: TrainData
    opt: Optimisation
    bundles: BundleMaker
    samples: int  # patches per epoch
    augment: Callable[[int], Callable] | None
    budget_s: float | None
    session_start: float
    callback: Callback | None

    def elapsed(self) -> float:
        """Training time over every session (s)."""
        return self.opt.elapsed_before + (time.monotonic() - self.session_start)


def _build_model(config: TrainConfig) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network with seeded initial weights (or those of ``config.init_weights``) and its constructor kwargs."""
    from mkunet.models import build_model

    torch.manual_seed(config.seed)  # seeded initial weights
    model_kwargs = {**width_kwargs(config.model, config.width), **config.model_kwargs}
    model_kwargs["in_channels"] = int(config.channels)
    model = build_model(config.model, **model_kwargs)
    if config.init_weights and not config.resume:
        init_weights(model, config.init_weights)
    return model, model_kwargs


def _start_run(config: TrainConfig, dist: Dist, device: torch.device, callback: Callback | None) -> _Run:
    """Threads and determinism, the run folder, the split, the model, the cases and the (resumed) optimiser."""
    if config.threads:
        torch.set_num_threads(int(config.threads))
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    amp = (device.type == "cuda") if config.amp is None else bool(config.amp and device.type == "cuda")
    run_dir = Path(config.out)
    _prepare_run_dir(config, run_dir, dist)
    records = read_scans(Path(config.data))
    split = _split_step(config, run_dir, records, dist)
    model, model_kwargs = _build_model(config)
    needs_clinical = bool(getattr(model, "needs_clinical", False))
    data = prepare_data(config, run_dir, records, split, needs_clinical, dist)

    model.to(device)
    opt = restore_optimisation(config, run_dir, model, amp)
    net: torch.nn.Module = model
    if dist.active:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    data_meta = {
        "data": str(Path(config.data)),
        "n_patients": {"train": len(split["train"]), "val": len(split["val"]), "test": len(split["test"])},
        "n_scans": {"train": len(data.train_cases), "val": len(data.val_cases)},
        "real_backgrounds": sorted({c.background for c in data.real_cases if c.background}),
        "n_real_cases": len(data.real_cases),
    }
    if callback is not None and dist.main:
        callback({"event": "start", "epoch": opt.start_epoch, "epochs": config.epochs})
    return _Run(
        config=config,
        run_dir=run_dir,
        dist=dist,
        device=device,
        amp=amp,
        model=model,
        net=net,
        needs_clinical=needs_clinical,
        data=data,
        opt=opt,
        bundles=BundleMaker(config, run_dir, model, model_kwargs, data, data_meta),
        samples=config.patches_per_epoch or 4 * len(data.train_cases),
        augment=_augment_factory() if config.augment else None,
        budget_s=None if config.time_budget_min is None else 60.0 * config.time_budget_min,
        session_start=time.monotonic(),
        callback=callback,
    )


def _run_epoch(run: _Run, epoch: int) -> bool:
    """One epoch (0-based): train, validate when due, record and checkpoint; True when the time budget is spent.

    The budget is spent when the time used plus one more epoch's training time exceeds it (any
    process under DDP); that epoch is then validated as the last one.
    """
    config, opt, data, dist = run.config, run.opt, run.data, run.dist
    epoch_start = time.monotonic()
    if config.lr_schedule == "poly":
        _set_poly_lr(config, opt.optimizer, epoch, run.elapsed(), run.budget_s)
    train_loss = _train_epoch(
        config,
        run.net,
        data.train_cases,
        opt,
        epoch,
        run.samples,
        run.augment,
        dist,
        run.device,
        run.amp,
        run.needs_clinical,
        data.real_cases,
    )
    train_time = time.monotonic() - epoch_start
    over_budget = run.budget_s is not None and run.elapsed() + train_time > run.budget_s
    if dist.active:
        over_budget = all_reduce_sum([float(over_budget)], dist)[0] > 0
    last_epoch = epoch + 1 == config.epochs or over_budget
    val_dice = None
    if data.val_cases and ((epoch + 1) % config.val_every == 0 or last_epoch):
        val_dice = _val_dice(config, run.model, data.val_cases, run.amp, dist)
    _record_epoch(run, epoch, epoch_start, train_loss, val_dice)
    return over_budget


def _record_epoch(run: _Run, epoch: int, epoch_start: float, train_loss: float, val_dice: float | None) -> None:
    """The best metric, the log row, and on rank 0 the checkpoints and the callback; then every process waits."""
    config, opt, data = run.config, run.opt, run.data
    metric = val_dice if data.val_cases else -train_loss
    improved = False
    if metric is not None and metric > opt.best_metric:
        opt.best_metric, opt.best_epoch, improved = float(metric), epoch + 1, True
    elapsed = run.elapsed()
    opt.history.append(
        {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_dice": val_dice,
            "best_val_dice": opt.best_metric if data.val_cases else None,
            "lr": opt.optimizer.param_groups[0]["lr"],
            "epoch_time_s": time.monotonic() - epoch_start,
            "elapsed_s": elapsed,
        }
    )
    if run.dist.main:
        save_epoch(
            config,
            run.run_dir,
            run.model,
            opt,
            run.bundles,
            epoch,
            train_loss,
            val_dice,
            improved,
            elapsed,
            run.amp,
            run.dist,
        )
        if run.callback is not None:
            run.callback(
                {
                    "event": "epoch",
                    "epoch": epoch + 1,
                    "epochs": config.epochs,
                    "loss": train_loss,
                    "val_dice": val_dice,
                    "best": opt.best_metric,
                    "elapsed_s": elapsed,
                    "eta_s": _eta_s(config, opt.start_epoch, epoch, elapsed, run.budget_s),
                }
            )
    barrier(run.dist)
    logger.info("epoch %d/%d loss %.4f val dice %s", epoch + 1, config.epochs, train_loss, val_dice)


def _finish(run: _Run, stopped: str) -> TrainResult:
    """The :class:`~mkunet.train.config.TrainResult`; the ``end`` callback on rank 0."""
    opt = run.opt
    epochs_done = len(opt.history) and opt.history[-1]["epoch"] or opt.start_epoch
    result = TrainResult(
        run_dir=run.run_dir,
        best_dir=run.run_dir / "best",
        last_dir=run.run_dir / "last",
        epochs_completed=int(epochs_done),
        best_metric=float(opt.best_metric),
        best_epoch=int(opt.best_epoch),
        history=opt.history,
        stopped=stopped,
        elapsed_s=run.elapsed(),
    )
    if run.callback is not None and run.dist.main:
        run.callback(
            {
                "event": "end",
                "epoch": result.epochs_completed,
                "epochs": run.config.epochs,
                "stopped": stopped,
                "best": result.best_metric,
                "elapsed_s": result.elapsed_s,
            }
        )
    return result


# ---------------------------------------------------------------------------------- steps
def _prepare_run_dir(config: TrainConfig, run_dir: Path, dist: Dist) -> None:
    """Refuse to overwrite a run (or to resume a missing one); rank 0 creates the folder and config.json."""
    state_path = run_dir / STATE_JSON
    if state_path.exists() and not config.resume:
        raise ValueError(
            f"'{run_dir}' already holds a training run (state.json); resume it with --resume {run_dir} "
            "or choose a new --out folder."
        )
    if config.resume and not state_path.exists():
        raise FileNotFoundError(f"Cannot resume: '{state_path}' not found (no completed epoch in '{run_dir}').")
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not config.resume:
            write_json(run_dir / "config.json", config.to_dict())
    barrier(dist)


def _split_step(config: TrainConfig, run_dir: Path, records: Sequence[ScanRecord], dist: Dist) -> dict[str, Any]:
    """The patient-level split: read back on resume, else drawn (seeded) and written to ``split.json``."""
    data_dir = Path(config.data)
    split_file = run_dir / "split.json"
    if config.resume and split_file.exists():
        return json.loads(split_file.read_text(encoding="utf-8"))
    patients = sorted({r.patient_id for r in records})
    split = split_patients(patients, config.val_fraction, config.test_fraction, config.seed)
    if dist.main:
        write_json(
            split_file,
            {
                **split,
                "seed": config.seed,
                "val_fraction": config.val_fraction,
                "test_fraction": config.test_fraction,
                "data": str(data_dir),
            },
        )
    return split


def _train_epoch(
    config: TrainConfig,
    net: torch.nn.Module,
    train_cases: Sequence[PreparedCase],
    opt: Optimisation,
    epoch: int,
    samples: int,
    augment: Callable[[int], Callable] | None,
    dist: Dist,
    device: torch.device,
    amp: bool,
    needs_clinical: bool,
    real_cases: Sequence[PreparedCase] = (),
) -> float:
    """One epoch of ``samples`` patches (seeded from (seed, epoch)); returns the mean loss over every process.

    Ignored voxels (weight 0: real tumours and unknown regions of real backgrounds) do not
    enter the loss (:class:`mkunet.train.masked.MaskedDiceBCELoss`).
    """
    torch.manual_seed(int(np.random.default_rng([config.seed, epoch, 1]).integers(2**62)))
    dataset = PatchDataset(
        train_cases,
        config.patch_size,
        samples,
        config.seed,
        epoch,
        dist.rank,
        dist.world_size,
        config.tumour_fraction,
        augment,
        config.lung_fraction,
        real_cases,
        config.real_fraction,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=False,
        num_workers=config.num_workers,
        drop_last=False,
        pin_memory=device.type == "cuda",
    )
    net.train()
    loss_sum, n_batches = 0.0, 0
    for batch in loader:
        image = batch["image"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        clinical = batch["clinical"].to(device) if needs_clinical else None
        weight = batch["weight"].to(device, non_blocking=True)
        weight = None if bool((weight > 0).all()) else weight
        opt.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, enabled=amp):
            logits = net(image, clinical)
            if isinstance(logits, (tuple, list)):
                logits = logits[0]
        loss = opt.loss_fn(logits.float(), label, weight)
        opt.scaler.scale(loss).backward()
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        loss_sum += float(loss.detach())
        n_batches += 1
    loss_total, batches = all_reduce_sum([loss_sum, n_batches], dist)
    return loss_total / max(batches, 1)


def _set_poly_lr(
    config: TrainConfig, optimizer: torch.optim.Optimizer, epoch: int, elapsed_s: float, budget_s: float | None
) -> None:
    """Poly schedule: progress = the larger of epochs done / ``epochs`` and time used / time budget."""
    progress: float = epoch / config.epochs
    if budget_s is not None:
        progress = max(progress, elapsed_s / budget_s)
    for group in optimizer.param_groups:
        group["lr"] = poly_lr(config.lr, min(progress, 1.0))


def _val_dice(
    config: TrainConfig, model: torch.nn.Module, val_cases: Sequence[PreparedCase], amp: bool, dist: Dist
) -> float:
    """Mean validation Dice over every process (each validates its share of the cases)."""
    mine = val_cases[dist.rank :: dist.world_size]
    total, count = _validate(model, mine, config.patch_size, config.val_overlap, amp, spacing=config.target_spacing)
    dice_sum, n_cases = all_reduce_sum([total, count], dist)
    return dice_sum / max(n_cases, 1)


def _eta_s(config: TrainConfig, start_epoch: int, epoch: int, elapsed: float, budget_s: float | None) -> float:
    """Seconds left: the mean epoch time of this session times the epochs left, capped by the time budget."""
    per_epoch = elapsed / max(epoch + 1 - start_epoch, 1) if epoch >= start_epoch else 0.0
    eta = per_epoch * (config.epochs - epoch - 1)
    if budget_s is not None:
        eta = min(eta, max(budget_s - elapsed, 0.0))
    return eta


def _validate(
    model: torch.nn.Module,
    cases: Sequence[PreparedCase],
    patch: Sequence[int],
    overlap: float,
    amp: bool,
    spacing: Sequence[float] | None = None,
    threshold: float = 0.5,
    keep: str = "component",
) -> tuple[float, int]:
    """Sum of Dice over ``cases`` (at the model spacing) and the number of cases.

    Not :func:`mkunet.segmentation.infer.segment` itself: that needs a saved bundle, re-reads and
    re-resamples every scan and resamples the probability back to the scan grid, which
    costs more per epoch than the validation is worth (it picks the checkpoint; the reported
    figures come from :mod:`mkunet.train.evaluate`, which calls ``segment``). It runs the same
    steps on the cached, already resampled and preprocessed case: the sliding window of
    :func:`mkunet.models.bundle.predict_probability`, the threshold, and the component rule of
    ``segment`` without an ROI (:func:`mkunet.segmentation.infer.keep_tumour_component` with the
    probability; the lung region is not recomputed here, so the score is the probability mass).
    """
    from mkunet.analysis.metrics import dice
    from mkunet.models.bundle import sliding_window_probability
    from mkunet.segmentation.infer import keep_tumour_component

    total = 0.0
    for case in cases:
        prob = cast(
            np.ndarray,  # without return_attention: the probability map only
            sliding_window_probability(model, case.channels, patch, case.clinical, overlap=overlap, amp=amp),
        )
        pred = keep_tumour_component(
            prob >= threshold,
            tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0),
            keep=keep,  # type: ignore[arg-type]
            probability=prob,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(dice(pred, case.label))
        total += value if np.isfinite(value) else 0.0
    return total, len(cases)


def _augment_factory() -> Callable[[int], Callable]:
    """A factory seed -> MONAI dictionary transform from :func:`mkunet.preprocess.augmentation`."""
    from mkunet.preprocess import augmentation

    def make(seed: int) -> Callable:
        return augmentation(seed)

    return make
