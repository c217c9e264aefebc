"""The training loop: configuration, checkpoints, exact resume, DDP, mixed precision, time budget.

Run folder (``config.out``)::

    config.json         the TrainConfig (JSON)
    split.json          patient-level train / val / test split (seeded)
    last/, best/        ModelBundle folders (model.safetensors + bundle.json): the latest
                        epoch and the epoch with the best validation Dice
    state.safetensors   model weights + Adam state tensors of the latest epoch
    state.json          completed epochs, best metric, elapsed time, GradScaler state,
                        the per-epoch seeds (everything random is re-derived from
                        (seed, epoch, sample index), so no RNG state needs restoring)
    log.csv, log.json   one row per epoch: loss, validation Dice, times

Validation Dice is computed on whole validation cases at the model's spacing (sliding
window, Gaussian blending, overlap 0.25, threshold 0.5, then the component rule of
:func:`mkunet.segmentation.infer.segment`, :func:`mkunet.segmentation.infer.keep_tumour_component`) against the
resampled masks: the steps of :func:`mkunet.segmentation.infer.segment` without the final resampling
back to the scan grid (cheaper; the selection criterion, not the reported figure; see
``_validate``). The patients' LVCR (clinical input) comes from the ground-truth masks by
the one LVCR definition, :func:`mkunet.analysis.kinetics.lvcr_from_masks`'s mesh volumes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mkunet.train.data import (
    PatchDataset,
    PreparedCase,
    ScanRecord,
    load_scan,
    patient_lvcr,
    read_clinical,
    read_scans,
    split_patients,
    write_json,
)
from mkunet.utils import atomic_write_text

__all__ = ["TrainConfig", "TrainResult", "train", "width_kwargs", "prepare_case"]

logger = logging.getLogger("mkunet.train")

LVCR_INDEX = 5
_STATE_JSON = "state.json"
_STATE_TENSORS = "state.safetensors"


LR_SCHEDULES = ("constant", "poly")


def poly_lr(lr: float, progress: float, power: float = 0.9, floor: float = 1e-3) -> float:
    """``lr * max(1 - progress, floor) ** power`` (nnU-Net's polynomial decay), progress in [0, 1]."""
    return float(lr) * max(1.0 - float(progress), floor) ** power


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored as ``config.json`` in the run folder).

    Attributes:
        data: cohort folder (layout: :mod:`mkunet.train.data`).
        out: run folder (created).
        model: network name for :func:`mkunet.models.build_model`.
        model_kwargs: extra constructor arguments (ablation switches such as
            ``gate="plain"``, ``clinical_fusion=False``).
        width: base width w: levels (w, 2w, 4w, 8w, 16w) (``init_filters`` for resnet3d);
            None keeps the model's default (16: the paper's width).
        epochs: number of epochs (an epoch is ``patches_per_epoch`` patches).
        batch_size: patches per optimiser step (per process under DDP).
        lr: Adam learning rate (constant).
        weight_decay: Adam weight decay.
        patch_size: training patch and sliding window (z, y, x) voxels, multiples of 16.
        target_spacing: spacing (z, y, x) in mm every case is resampled to.
        val_fraction, test_fraction: fractions of patients held out (seeded split).
        seed: seed of the split, the initial weights, patch sampling and augmentation.
        num_workers: DataLoader workers (0: in the main process).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        amp: mixed precision; None = on CUDA, off on CPU.
        channels: 4 (four-channel preprocessing) or 1 (windowed intensity only).
        adaptive_window: fit and apply the adaptive HU window on the training split.
        window_k, window_mode: adaptive window parameters (see mkunet.preprocess.AdaptiveWindow).
        use_lvcr: False replaces the LVCR column by its training median ("without LVCR" ablation).
        patches_per_epoch: patches per epoch (all processes together); None = 4 per training scan.
        tumour_fraction: probability that a patch is centred on a tumour voxel.
        lung_fraction: probability that a patch is centred on a non-tumour voxel of the lung
            region (hard negatives: vessels, pleura, dense lung; :mod:`mkunet.segmentation.lung`); the
            rest are centred on uniformly drawn voxels.
        lr_schedule: ``"constant"`` or ``"poly"``: ``lr * (1 - p) ** 0.9`` with ``p`` the
            fraction of the run done, the larger of epochs done / ``epochs`` and training
            time / ``time_budget_min`` (with a time budget the schedule, like the number of
            epochs, depends on the machine's speed).
        augment: on-the-fly augmentation (rotation, scaling, translation, noise).
        crop_margin_mm: keep only the tumour's bounding box grown by this margin (mm) of each
            training scan in memory (after preprocessing the whole scan); None keeps whole scans.
            Saves memory on large cohorts; background patches then come from around the tumour.
        val_every: validate every n epochs (and at the last one).
        val_overlap: sliding-window overlap of the validation inference.
        time_budget_min: stop cleanly before this many minutes of training are used (None: no limit).
        deterministic: ``torch.use_deterministic_algorithms(True)`` (bit-identical CPU runs).
        threads: torch CPU threads (None: torch default).
        label: a name for the run in tables (e.g. "full model"); default: the folder name.
        dice_weight, bce_weight: loss = dice_weight * DiceLoss + bce_weight * BCE.
        dice_batch: Dice over the whole batch as one volume (MONAI ``batch=True``): patches
            without tumour (1 in 3 by default) then do not give a Dice loss of ~1 each.
        resume: continue the run in ``out`` (its state.json) instead of starting afresh.
        real_backgrounds: real CTs into which tumours are inserted (:mod:`mkunet.train.real`):
            a folder with ``backgrounds.csv``, that CSV, or a list of image files
            (:func:`mkunet.train.data.read_backgrounds`); None: the cohort only.
        real_fraction: share of the patches drawn from the real-background cases.
        real_cases_per_background: inserted-tumour cases made from each background.
        real_max_tumours: at most this many lesions per real-background case (1 to n).
        init_weights: a bundle folder whose network weights start the run (fine-tuning; same
            model and constructor arguments), or None (seeded random initial weights).
        command: the command line that started the run (provenance, stored in bundles).
    """

    data: str
    out: str
    model: str = "mkunet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    width: int | None = None
    epochs: int = 150
    batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 0.0
    patch_size: tuple[int, int, int] = (32, 96, 96)
    target_spacing: tuple[float, float, float] = (2.0, 1.5, 1.5)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    amp: bool | None = None
    channels: int = 4
    adaptive_window: bool = True
    window_k: float = 1.5
    window_mode: str = "symmetric"
    use_lvcr: bool = True
    patches_per_epoch: int | None = None
    tumour_fraction: float = 2.0 / 3.0
    lung_fraction: float = 0.0
    lr_schedule: str = "constant"
    augment: bool = True
    crop_margin_mm: float | None = None
    val_every: int = 1
    val_overlap: float = 0.25
    time_budget_min: float | None = None
    deterministic: bool = False
    threads: int | None = None
    label: str | None = None
    dice_weight: float = 0.6
    bce_weight: float = 0.4
    dice_batch: bool = True
    resume: bool = False
    real_backgrounds: str | list[str] | None = None
    real_fraction: float = 0.5
    real_cases_per_background: int = 4
    real_max_tumours: int = 3
    init_weights: str | None = None
    command: str | None = None

    def __post_init__(self) -> None:
        self.data, self.out = str(self.data), str(self.out)
        self.patch_size = tuple(int(p) for p in self.patch_size)  # type: ignore[assignment]
        self.target_spacing = tuple(float(s) for s in self.target_spacing)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Check every field; raises ValueError naming the parameter and the bad value."""
        if len(self.patch_size) != 3 or any(p <= 0 or p % 16 for p in self.patch_size):
            raise ValueError(f"`patch_size` (z, y, x) must be 3 positive multiples of 16, got {self.patch_size}.")
        if len(self.target_spacing) != 3 or min(self.target_spacing) <= 0:
            raise ValueError(f"`target_spacing` (z, y, x) mm must be 3 positive numbers, got {self.target_spacing}.")
        for name in ("epochs", "batch_size", "val_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
        if self.width is not None and (not isinstance(self.width, int) or self.width < 1):
            raise ValueError(f"`width` must be a positive integer, got {self.width!r}.")
        if not self.lr > 0:
            raise ValueError(f"`lr` must be > 0, got {self.lr!r}.")
        if self.channels not in (1, 4):
            raise ValueError(f"`channels` must be 4 or 1, got {self.channels!r}.")
        if not 0.0 <= self.tumour_fraction <= 1.0:
            raise ValueError(f"`tumour_fraction` must lie in [0, 1], got {self.tumour_fraction!r}.")
        if not 0.0 <= self.lung_fraction <= 1.0 - self.tumour_fraction:
            raise ValueError(
                f"`lung_fraction` must lie in [0, 1 - tumour_fraction] = [0, {1.0 - self.tumour_fraction:g}], "
                f"got {self.lung_fraction!r}."
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"`lr_schedule` must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}.")
        if self.patches_per_epoch is not None and self.patches_per_epoch < 1:
            raise ValueError(f"`patches_per_epoch` must be >= 1, got {self.patches_per_epoch!r}.")
        if self.time_budget_min is not None and not self.time_budget_min > 0:
            raise ValueError(f"`time_budget_min` must be > 0 minutes, got {self.time_budget_min!r}.")
        if self.num_workers < 0:
            raise ValueError(f"`num_workers` must be >= 0, got {self.num_workers!r}.")
        if not 0.0 <= self.real_fraction <= 1.0:
            raise ValueError(f"`real_fraction` must lie in [0, 1], got {self.real_fraction!r}.")
        for name in ("real_cases_per_background", "real_max_tumours"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of all fields."""
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        d["target_spacing"] = list(self.target_spacing)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise a ValueError)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown training option(s) {unknown}; valid: {sorted(names)}.")
        return cls(**d)

    @classmethod
    def from_run(cls, run_dir: str | Path, **overrides: Any) -> TrainConfig:
        """The config stored in ``run_dir/config.json`` with ``overrides``, set to resume."""
        path = Path(run_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"Cannot resume: '{path}' not found; is '{run_dir}' a training run folder?")
        d = json.loads(path.read_text(encoding="utf-8"))
        d.update({k: v for k, v in overrides.items() if v is not None})
        d["out"] = str(run_dir)
        d["resume"] = True
        return cls.from_dict(d)


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        run_dir: the run folder.
        best_dir: ``run_dir/best`` (bundle with the best validation Dice).
        last_dir: ``run_dir/last``.
        epochs_completed: epochs done in total (including before a resume).
        best_metric: best validation Dice (or -loss without validation cases).
        best_epoch: epoch (1-based) of the best checkpoint.
        history: one dict per epoch (the rows of log.csv).
        stopped: "epochs" (all done) or "time_budget".
        elapsed_s: training time in seconds over all sessions.
    """

    run_dir: Path
    best_dir: Path
    last_dir: Path
    epochs_completed: int
    best_metric: float
    best_epoch: int
    history: list[dict[str, Any]]
    stopped: str
    elapsed_s: float


def width_kwargs(model: str, width: int | None) -> dict[str, Any]:
    """Constructor kwargs giving base width ``width`` (levels w, 2w, 4w, 8w, 16w) to ``model``."""
    if width is None:
        return {}
    if model == "resnet3d":
        groups = math.gcd(width, 8)
        return {"init_filters": int(width), "num_groups": int(groups)}
    return {"channels": [int(width) * 2**i for i in range(5)]}


# ---------------------------------------------------------------------------------- distributed
@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_request: str) -> tuple[_Dist, torch.device]:
    """Init the process group under torchrun (env RANK / WORLD_SIZE); pick the device."""
    dist = _Dist()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" in os.environ and world > 1:
        dist.rank, dist.world_size = int(os.environ["RANK"]), world
        dist.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_request == "auto":
        device = torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_request)
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{dist.local_rank}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device` = {device_request!r} but CUDA is not available; use --device cpu or auto.")
    if dist.active and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend)
        dist.initialised_here = True
    return dist, device


def _all_reduce_sum(values: Sequence[float], dist: _Dist) -> list[float]:
    if not dist.active:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    backend = torch.distributed.get_backend()
    if backend == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t)
    return [float(v) for v in t.cpu()]


def _barrier(dist: _Dist) -> None:
    if dist.active:
        torch.distributed.barrier()


# ---------------------------------------------------------------------------------- data preparation
def prepare_case(
    record: ScanRecord,
    volume: Any,
    mask: np.ndarray,
    preprocessor: Any,
    target_spacing: Sequence[float],
    clinical: np.ndarray | None,
    lvcr: float | None,
) -> PreparedCase:
    """Resample a scan (linear) and its mask (linear on 0/1, >= 0.5) to ``target_spacing``, preprocess."""
    return prepare_case_from_resampled(
        record, _resampled(volume, mask, target_spacing), preprocessor, clinical, lvcr, spacing=target_spacing
    )


def _resampled(volume: Any, mask: np.ndarray, spacing: Sequence[float]) -> tuple[Any, np.ndarray]:
    from mkunet.models.bundle import resample_onto
    from mkunet.preprocess import resample

    if np.allclose(volume.spacing, spacing, atol=1e-4):
        return volume, mask
    out = resample(volume, tuple(spacing))
    return out, resample_onto(mask.astype(np.float32), volume, out, "linear") >= 0.5


def _clinical_frame(patients: Sequence[str], table: Any, lvcrs: dict[str, float | None]):
    import pandas as pd

    rows = []
    for pid in patients:
        if pid not in table.index:
            raise ValueError(f"Patient {pid!r} has scans but no row in clinical.csv; add one.")
        row = {c: table.loc[pid, c] for c in ("age", "sex", "smoking", "grade", "stage")}
        row["lvcr"] = lvcrs.get(pid)
        row["patient_id"] = pid
        rows.append(row)
    return pd.DataFrame(rows, index=list(patients))


# ---------------------------------------------------------------------------------- state I/O
def _save_state(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, info: dict) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous().clone()
    sd = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                plain_state.setdefault(str(pid), {})[k] = v
    info = dict(info)
    info["optimizer"] = {"param_groups": sd["param_groups"], "plain_state": plain_state}
    tmp = run_dir / (_STATE_TENSORS + ".tmp")
    save_file(tensors, str(tmp), metadata={"epoch": str(info["epoch"])})
    tmp.replace(run_dir / _STATE_TENSORS)
    write_json(run_dir / _STATE_JSON, info)


def _load_state(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    info = json.loads((run_dir / _STATE_JSON).read_text(encoding="utf-8"))
    path = run_dir / _STATE_TENSORS
    with safe_open(str(path), framework="pt") as f:
        saved_epoch = (f.metadata() or {}).get("epoch")
    if saved_epoch != str(info["epoch"]):
        raise ValueError(
            f"'{path}' (epoch {saved_epoch}) and state.json (epoch {info['epoch']}) disagree: the run was "
            "interrupted while saving; restart it from scratch or restore both files."
        )
    tensors = load_file(str(path))
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_state, strict=True)
    opt = info["optimizer"]
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, extra in opt.get("plain_state", {}).items():
        state.setdefault(int(pid), {}).update(extra)
    groups = opt["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return info


def _write_log(run_dir: Path, history: list[dict[str, Any]]) -> None:
    write_json(run_dir / "log.json", history)
    if not history:
        return
    columns = list(history[0].keys())
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    atomic_write_text(run_dir / "log.csv", text.getvalue())


# ---------------------------------------------------------------------------------- validation
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
        prob = sliding_window_probability(model, case.channels, patch, case.clinical, overlap=overlap, amp=amp)
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


# ---------------------------------------------------------------------------------- main entry
def train(config: TrainConfig, callback: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train a segmentation network on a cohort folder; see :class:`TrainConfig` and the module docstring.

    Works unchanged under ``torchrun`` (DDP: gloo on CPU, NCCL on CUDA; rank 0 writes the
    run folder). Same config and seed on CPU give identical weights; ``config.resume``
    continues a run exactly (the final weights equal those of an uninterrupted run).

    Steps: :func:`_prepare_run_dir` -> :func:`_split_step` -> model (seeded init) ->
    :func:`_data_step` (resample, fit or restore the preprocessing, prepare the cases) ->
    :func:`_optimiser_step` (optimiser, loss, resumed state) -> one :func:`_train_epoch`,
    validation (:func:`_validate`) and :func:`_save_epoch` per epoch.

    Args:
        config: the run's configuration.
        callback: called on rank 0 with a dict after every epoch (``event="epoch"``, ``epoch``,
            ``epochs``, ``loss``, ``val_dice``, ``elapsed_s``, ``eta_s``) and once with
            ``event="start"`` / ``event="end"``; used by the CLI's progress display.

    Returns:
        :class:`TrainResult`.
    """
    from mkunet.models import build_model

    config.validate()
    wall_start = time.monotonic()
    dist, device = _setup_distributed(config.device)
    try:
        if config.threads:
            torch.set_num_threads(int(config.threads))
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        amp = (device.type == "cuda") if config.amp is None else bool(config.amp and device.type == "cuda")
        run_dir = Path(config.out)
        _prepare_run_dir(config, run_dir, dist)
        records = read_scans(Path(config.data))
        split = _split_step(config, run_dir, records, dist)

        torch.manual_seed(config.seed)  # seeded initial weights
        model_kwargs = {**width_kwargs(config.model, config.width), **config.model_kwargs}
        model_kwargs["in_channels"] = int(config.channels)
        model = build_model(config.model, **model_kwargs)
        needs_clinical = bool(getattr(model, "needs_clinical", False))
        if config.init_weights and not config.resume:
            _init_weights(model, config.init_weights)
        data = _data_step(config, run_dir, records, split, needs_clinical, dist)

        model.to(device)
        opt = _optimiser_step(config, run_dir, model, amp)
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
        bundles = _BundleMaker(config, run_dir, model, model_kwargs, data, data_meta)
        samples = config.patches_per_epoch or 4 * len(data.train_cases)
        augment = _augment_factory() if config.augment else None

        if callback is not None and dist.main:
            callback({"event": "start", "epoch": opt.start_epoch, "epochs": config.epochs})
        budget_s = None if config.time_budget_min is None else 60.0 * config.time_budget_min
        session_start = time.monotonic()
        stopped = "epochs"
        for epoch in range(opt.start_epoch, config.epochs):
            epoch_start = time.monotonic()
            if config.lr_schedule == "poly":
                _set_poly_lr(config, opt.optimizer, epoch, opt.elapsed_before + epoch_start - session_start, budget_s)
            train_loss = _train_epoch(
                config,
                net,
                data.train_cases,
                opt,
                epoch,
                samples,
                augment,
                dist,
                device,
                amp,
                needs_clinical,
                data.real_cases,
            )
            train_time = time.monotonic() - epoch_start

            elapsed_now = opt.elapsed_before + (time.monotonic() - session_start)
            over_budget = budget_s is not None and elapsed_now + train_time > budget_s
            if dist.active:
                over_budget = _all_reduce_sum([float(over_budget)], dist)[0] > 0
            last_epoch = epoch + 1 == config.epochs or over_budget
            val_dice = None
            if data.val_cases and ((epoch + 1) % config.val_every == 0 or last_epoch):
                val_dice = _val_dice(config, model, data.val_cases, amp, dist)
            metric = val_dice if data.val_cases else -train_loss
            improved = metric is not None and metric > opt.best_metric
            if improved:
                opt.best_metric, opt.best_epoch = float(metric), epoch + 1
            elapsed = opt.elapsed_before + (time.monotonic() - session_start)
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
            if dist.main:
                _save_epoch(
                    config, run_dir, model, opt, bundles, epoch, train_loss, val_dice, improved, elapsed, amp, dist
                )
                if callback is not None:
                    eta = _eta_s(config, opt.start_epoch, epoch, elapsed, budget_s)
                    callback(
                        {
                            "event": "epoch",
                            "epoch": epoch + 1,
                            "epochs": config.epochs,
                            "loss": train_loss,
                            "val_dice": val_dice,
                            "best": opt.best_metric,
                            "elapsed_s": elapsed,
                            "eta_s": eta,
                        }
                    )
            _barrier(dist)
            logger.info("epoch %d/%d loss %.4f val dice %s", epoch + 1, config.epochs, train_loss, val_dice)
            if over_budget and epoch + 1 < config.epochs:
                stopped = "time_budget"
                break
        epochs_done = len(opt.history) and opt.history[-1]["epoch"] or opt.start_epoch
        result = TrainResult(
            run_dir=run_dir,
            best_dir=run_dir / "best",
            last_dir=run_dir / "last",
            epochs_completed=int(epochs_done),
            best_metric=float(opt.best_metric),
            best_epoch=int(opt.best_epoch),
            history=opt.history,
            stopped=stopped,
            elapsed_s=opt.elapsed_before + (time.monotonic() - session_start),
        )
        if callback is not None and dist.main:
            callback(
                {
                    "event": "end",
                    "epoch": result.epochs_completed,
                    "epochs": config.epochs,
                    "stopped": stopped,
                    "best": result.best_metric,
                    "elapsed_s": result.elapsed_s,
                }
            )
        logger.info("training finished in %.1f s (%s)", time.monotonic() - wall_start, stopped)
        return result
    finally:
        if dist.initialised_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


# ---------------------------------------------------------------------------------- train's steps
def _init_weights(model: torch.nn.Module, folder: str | Path) -> None:
    """Load the network weights of the bundle in ``folder`` into ``model`` (same architecture)."""
    from mkunet.models.bundle import ModelBundle

    source = ModelBundle.load(folder)
    try:
        model.load_state_dict(source.model.state_dict(), strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"init_weights '{folder}' holds a {source.model_name} {source.model_kwargs} network that does not fit "
            f"the one being trained; give a bundle of the same model and width ({err})."
        ) from err


@dataclass
class _TrainData:
    """What :func:`_data_step` prepared: the fitted (or restored) preprocessing and the cases."""

    preprocessor: Any
    encoder: Any
    default_clinical: np.ndarray | None
    train_cases: list[PreparedCase]
    val_cases: list[PreparedCase]
    real_cases: list[PreparedCase] = field(default_factory=list)


@dataclass
class _Optimisation:
    """Optimiser, gradient scaler and loss, with the progress restored on resume (:func:`_optimiser_step`)."""

    optimizer: torch.optim.Optimizer
    scaler: Any
    loss_fn: torch.nn.Module
    start_epoch: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    elapsed_before: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def _prepare_run_dir(config: TrainConfig, run_dir: Path, dist: _Dist) -> None:
    """Refuse to overwrite a run (or to resume a missing one); rank 0 creates the folder and config.json."""
    state_path = run_dir / _STATE_JSON
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
    _barrier(dist)


def _split_step(config: TrainConfig, run_dir: Path, records: Sequence[ScanRecord], dist: _Dist) -> dict[str, Any]:
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


def _data_step(
    config: TrainConfig,
    run_dir: Path,
    records: Sequence[ScanRecord],
    split: dict[str, Any],
    needs_clinical: bool,
    dist: _Dist,
) -> _TrainData:
    """Load the train / val scans, resample them, fit (or restore) the preprocessing and prepare the cases.

    Only the resampled copies stay in memory; each is released once preprocessed.
    """
    from mkunet.analysis.kinetics import mask_volume_cm3
    from mkunet.models.bundle import ModelBundle
    from mkunet.preprocess import AdaptiveWindow, Preprocessor

    data_dir = Path(config.data)
    train_ids, val_ids = set(split["train"]), set(split["val"])
    wanted = [r for r in records if r.patient_id in train_ids | val_ids]
    resampled: dict[str, tuple[Any, np.ndarray]] = {}
    by_patient: dict[str, list[tuple[ScanRecord, float]]] = {}
    for rec in wanted:  # GT volumes -> per-patient LVCR
        volume, mask = load_scan(rec)
        if not mask.any():
            warnings.warn(f"Scan {rec.key}: the tumour mask is empty; used as a tumour-free case.", stacklevel=3)
        # the one LVCR volume measure (mesh volume, kinetics.mask_volume_cm3), as inference and the pipeline
        by_patient.setdefault(rec.patient_id, []).append((rec, mask_volume_cm3(mask, volume.spacing)))
        resampled[rec.key] = _resampled(volume, mask, config.target_spacing)
        del volume, mask
    lvcrs = {
        pid: patient_lvcr([r.days for r, _ in rows], [v for _, v in rows], pid) for pid, rows in by_patient.items()
    }

    # preprocessor + clinical encoder: fitted on the training split, or restored on resume
    train_keys = [r.key for r in wanted if r.patient_id in train_ids]
    encoder, default_clinical = None, None
    if config.resume:
        restored = ModelBundle.load(run_dir / "last")
        preprocessor, encoder, default_clinical = (
            restored.preprocessor,
            restored.clinical_encoder,
            restored.default_clinical,
        )
    else:
        window = AdaptiveWindow(k=config.window_k, mode=config.window_mode) if config.adaptive_window else None
        preprocessor = Preprocessor(channels=config.channels, adaptive_window=window)
        preprocessor.fit([resampled[k][0] for k in train_keys], [resampled[k][1] for k in train_keys])
        if needs_clinical:
            encoder, default_clinical = _fit_clinical_encoder(data_dir, sorted(train_ids), lvcrs)
    vectors = _clinical_vectors(config, sorted(by_patient), lvcrs, encoder, default_clinical) if needs_clinical else {}
    cases: dict[str, PreparedCase] = {}
    for rec in wanted:  # preprocess one by one, releasing each resampled volume
        margin = config.crop_margin_mm if rec.patient_id in train_ids else None
        cases[rec.key] = prepare_case_from_resampled(
            rec,
            resampled.pop(rec.key),
            preprocessor,
            vectors.get(rec.patient_id),
            lvcrs.get(rec.patient_id),
            crop_margin_mm=margin,
            spacing=config.target_spacing,
            lung_samples=config.lung_fraction > 0 and rec.patient_id in train_ids,
        )
    train_cases = [cases[r.key] for r in wanted if r.patient_id in train_ids]
    val_cases = [cases[r.key] for r in wanted if r.patient_id in val_ids]
    if not train_cases:
        raise ValueError(f"The training split of '{data_dir}' is empty; lower --val-fraction / test fraction.")
    if not val_cases and dist.main:
        warnings.warn("No validation patients: the 'best' checkpoint is chosen by training loss.", stacklevel=3)
    real_cases: list[PreparedCase] = []
    if config.real_backgrounds:
        from mkunet.train.data import read_backgrounds
        from mkunet.train.real import prepare_real_cases

        real_cases = prepare_real_cases(
            read_backgrounds(config.real_backgrounds),
            preprocessor,
            config.target_spacing,
            config.seed,
            cases_per_background=config.real_cases_per_background,
            max_tumours=config.real_max_tumours,
            clinical=default_clinical if needs_clinical else None,
        )
    return _TrainData(preprocessor, encoder, default_clinical, train_cases, val_cases, real_cases)


def _fit_clinical_encoder(
    data_dir: Path, train_patients: Sequence[str], lvcrs: dict[str, float | None]
) -> tuple[Any, np.ndarray]:
    """The clinical encoder fitted on the training patients, and the median encoded vector (the default)."""
    from mkunet.models.clinical import ClinicalEncoder

    frame = _clinical_frame(train_patients, read_clinical(data_dir, required=True), lvcrs)
    if frame["lvcr"].isna().all():
        warnings.warn(
            "No training patient has two or more scans: LVCR cannot be computed and is set to 0 /day "
            "for the encoder fit (the LVCR input carries no information).",
            stacklevel=4,
        )
        frame["lvcr"] = 0.0
    encoder = ClinicalEncoder().fit(frame)
    encoded = np.asarray(encoder.transform(frame), dtype=np.float32)
    return encoder, np.median(encoded, axis=0).astype(np.float32)


def _clinical_vectors(
    config: TrainConfig,
    patients: Sequence[str],
    lvcrs: dict[str, float | None],
    encoder: Any,
    default_clinical: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Encoded clinical vector per patient (LVCR replaced by the training median when ``use_lvcr`` is off)."""
    frame = _clinical_frame(patients, read_clinical(Path(config.data), required=True), lvcrs)
    encoded = np.asarray(encoder.transform(frame), dtype=np.float32)
    vectors = {}
    for pid, vec in zip(patients, encoded):
        if not config.use_lvcr:
            vec = vec.copy()
            vec[LVCR_INDEX] = default_clinical[LVCR_INDEX]
        vectors[pid] = vec
    return vectors


def _optimiser_step(config: TrainConfig, run_dir: Path, model: torch.nn.Module, amp: bool) -> _Optimisation:
    """Adam, the GradScaler and the loss; on resume the weights, optimiser state, best metric and log."""
    from mkunet.train.masked import MaskedDiceBCELoss

    opt = _Optimisation(
        torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay),
        torch.amp.GradScaler("cuda", enabled=amp),
        MaskedDiceBCELoss(dice_weight=config.dice_weight, bce_weight=config.bce_weight, batch=config.dice_batch),
    )
    if config.resume:
        info = _load_state(run_dir, model, opt.optimizer)
        opt.start_epoch = int(info["epoch"])
        opt.best_metric = float(info["best_metric"]) if info.get("best_metric") is not None else -math.inf
        opt.best_epoch = int(info.get("best_epoch", 0))
        opt.elapsed_before = float(info.get("elapsed_s", 0.0))
        if info.get("scaler") and amp:
            opt.scaler.load_state_dict(info["scaler"])
        log_path = run_dir / "log.json"
        if log_path.exists():
            opt.history = [h for h in json.loads(log_path.read_text(encoding="utf-8")) if h["epoch"] <= opt.start_epoch]
    return opt


def _train_epoch(
    config: TrainConfig,
    net: torch.nn.Module,
    train_cases: Sequence[PreparedCase],
    opt: _Optimisation,
    epoch: int,
    samples: int,
    augment: Callable[[int], Callable] | None,
    dist: _Dist,
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
    loss_sum, n_batches = _all_reduce_sum([loss_sum, n_batches], dist)
    return loss_sum / max(n_batches, 1)


def _set_poly_lr(
    config: TrainConfig, optimizer: torch.optim.Optimizer, epoch: int, elapsed_s: float, budget_s: float | None
) -> None:
    """Poly schedule: progress = the larger of epochs done / ``epochs`` and time used / time budget."""
    progress = epoch / config.epochs
    if budget_s is not None:
        progress = max(progress, elapsed_s / budget_s)
    for group in optimizer.param_groups:
        group["lr"] = poly_lr(config.lr, min(progress, 1.0))


def _val_dice(
    config: TrainConfig, model: torch.nn.Module, val_cases: Sequence[PreparedCase], amp: bool, dist: _Dist
) -> float:
    """Mean validation Dice over every process (each validates its share of the cases)."""
    mine = val_cases[dist.rank :: dist.world_size]
    total, count = _validate(model, mine, config.patch_size, config.val_overlap, amp, spacing=config.target_spacing)
    total, count = _all_reduce_sum([total, count], dist)
    return total / max(count, 1)


def _eta_s(config: TrainConfig, start_epoch: int, epoch: int, elapsed: float, budget_s: float | None) -> float:
    """Seconds left: the mean epoch time of this session times the epochs left, capped by the time budget."""
    per_epoch = elapsed / max(epoch + 1 - start_epoch, 1) if epoch >= start_epoch else 0.0
    eta = per_epoch * (config.epochs - epoch - 1)
    if budget_s is not None:
        eta = min(eta, max(budget_s - elapsed, 0.0))
    return eta


@dataclass
class _BundleMaker:
    """Builds the :class:`~mkunet.models.bundle.ModelBundle` of the current weights (for ``last/`` and ``best/``)."""

    config: TrainConfig
    run_dir: Path
    model: torch.nn.Module
    model_kwargs: dict[str, Any]
    data: _TrainData
    data_meta: dict[str, Any]

    def __call__(self, metrics: dict[str, Any]) -> Any:
        from mkunet import __version__
        from mkunet.models.bundle import ModelBundle

        config, model = self.config, self.model
        was_training = model.training
        bundle = ModelBundle(
            model=model,
            model_name=config.model,
            model_kwargs=self.model_kwargs,
            preprocessor=self.data.preprocessor,
            clinical_encoder=self.data.encoder,
            target_spacing=config.target_spacing,
            patch_size=config.patch_size,
            threshold=0.5,
            metadata={
                "mkunet_version": __version__,
                "label": config.label or self.run_dir.name,
                "command": config.command,
                "seed": config.seed,
                "use_lvcr": config.use_lvcr,
                "train_config": config.to_dict(),
                **self.data_meta,
                **metrics,
            },
            default_clinical=self.data.default_clinical,
        )
        model.train(was_training)
        return bundle


def _save_epoch(
    config: TrainConfig,
    run_dir: Path,
    model: torch.nn.Module,
    opt: _Optimisation,
    bundles: _BundleMaker,
    epoch: int,
    train_loss: float,
    val_dice: float | None,
    improved: bool,
    elapsed: float,
    amp: bool,
    dist: _Dist,
) -> None:
    """Rank 0 after each epoch: ``last/`` (and ``best/`` when improved), the resumable state and the log."""
    from mkunet import __version__

    metrics = {"epoch": epoch + 1, "train_loss": train_loss, "val_dice": val_dice, "training_time_s": elapsed}
    bundles(metrics).save(run_dir / "last")
    if improved:
        bundles({**metrics, "best_val_dice": opt.best_metric}).save(run_dir / "best")
    _save_state(
        run_dir,
        model,
        opt.optimizer,
        {
            "epoch": epoch + 1,
            "best_metric": opt.best_metric if np.isfinite(opt.best_metric) else None,
            "best_epoch": opt.best_epoch,
            "elapsed_s": elapsed,
            "scaler": opt.scaler.state_dict() if amp else None,
            "seeds": {"seed": config.seed, "epoch_seed_rule": "numpy default_rng([seed, epoch, i])"},
            "world_size": dist.world_size,
            "mkunet_version": __version__,
        },
    )
    _write_log(run_dir, opt.history)


def prepare_case_from_resampled(
    record: ScanRecord,
    resampled: tuple[Any, np.ndarray],
    preprocessor: Any,
    clinical: np.ndarray | None,
    lvcr: float | None,
    crop_margin_mm: float | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    lung_samples: bool = False,
) -> PreparedCase:
    """Preprocess an already resampled (volume, mask) pair into a cached case.

    With ``crop_margin_mm``, only the tumour's bounding box grown by that margin (mm, at
    ``spacing`` (z, y, x)) is kept, after preprocessing the whole scan. With
    ``lung_samples``, every 4th non-tumour voxel of the lung region (found on the whole
    scan, :func:`mkunet.segmentation.lung.lung_region`) is stored for hard-negative patches.
    """
    from mkunet.segmentation.lung import lung_region

    volume, label = resampled
    channels = np.asarray(preprocessor(volume), dtype=np.float32)
    label = np.asarray(label, dtype=bool)
    region = lung_region(volume.array, volume.spacing) & ~label if lung_samples else None
    if crop_margin_mm is not None and label.any():
        from scipy import ndimage

        pad = [int(math.ceil(crop_margin_mm / s)) for s in spacing]
        box = tuple(  # bounding box of the tumour grown by the margin (clipped)
            slice(max(0, s.start - p), min(n, s.stop + p))
            for s, p, n in zip(ndimage.find_objects(label.view(np.uint8))[0], pad, label.shape)
        )
        channels = np.ascontiguousarray(channels[(slice(None), *box)])
        label = np.ascontiguousarray(label[box])
        region = None if region is None else region[box]
    lung = np.zeros(0, np.int64) if region is None else np.flatnonzero(region)[::4].astype(np.int64)
    return PreparedCase(record, channels, label, clinical, np.flatnonzero(label).astype(np.int64), lvcr, lung)


def _augment_factory() -> Callable[[int], Callable]:
    """A factory seed -> MONAI dictionary transform from :func:`mkunet.preprocess.augmentation`."""
    from mkunet.preprocess import augmentation

    def make(seed: int) -> Callable:
        return augmentation(seed)

    return make
