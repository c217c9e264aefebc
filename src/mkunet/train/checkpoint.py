"""Checkpoints of a training run: bundles, the resumable state and the log, written after every epoch.

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

:func:`restore_optimisation` reads them back for an exact resume (the final weights equal those
of an uninterrupted run).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mkunet.train.config import TrainConfig
from mkunet.train.data import write_json
from mkunet.train.ddp import Dist
from mkunet.train.prepare import TrainData
from mkunet.utils import atomic_write_text

__all__ = [
    "STATE_JSON",
    "STATE_TENSORS",
    "Optimisation",
    "restore_optimisation",
    "BundleMaker",
    "save_epoch",
    "save_state",
    "load_state",
    "write_log",
    "init_weights",
]

STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"


@dataclass
class Optimisation:
    """Optimiser, gradient scaler and loss, with the progress restored on resume (:func:`restore_optimisation`)."""

    optimizer: torch.optim.Optimizer
    scaler: Any
    loss_fn: torch.nn.Module
    start_epoch: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    elapsed_before: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def restore_optimisation(config: TrainConfig, run_dir: Path, model: torch.nn.Module, amp: bool) -> Optimisation:
    """Adam, the GradScaler and the loss; on resume the weights, optimiser state, best metric and log."""
    from mkunet.train.masked import MaskedDiceBCELoss

    opt = Optimisation(
        torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay),
        torch.amp.GradScaler("cuda", enabled=amp),
        MaskedDiceBCELoss(dice_weight=config.dice_weight, bce_weight=config.bce_weight, batch=config.dice_batch),
    )
    if config.resume:
        info = load_state(run_dir, model, opt.optimizer)
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


@dataclass
class BundleMaker:
    """Builds the :class:`~mkunet.models.bundle.ModelBundle` of the current weights (for ``last/`` and ``best/``)."""

    config: TrainConfig
    run_dir: Path
    model: torch.nn.Module
    model_kwargs: dict[str, Any]
    data: TrainData
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


def save_epoch(
    config: TrainConfig,
    run_dir: Path,
    model: torch.nn.Module,
    opt: Optimisation,
    bundles: BundleMaker,
    epoch: int,
    train_loss: float,
    val_dice: float | None,
    improved: bool,
    elapsed: float,
    amp: bool,
    dist: Dist,
) -> None:
    """Rank 0 after each epoch: ``last/`` (and ``best/`` when improved), the resumable state and the log."""
    from mkunet import __version__

    metrics = {"epoch": epoch + 1, "train_loss": train_loss, "val_dice": val_dice, "training_time_s": elapsed}
    bundles(metrics).save(run_dir / "last")
    if improved:
        bundles({**metrics, "best_val_dice": opt.best_metric}).save(run_dir / "best")
    save_state(
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
    write_log(run_dir, opt.history)


def save_state(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, info: dict) -> None:
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
    tmp = run_dir / (STATE_TENSORS + ".tmp")
    save_file(tensors, str(tmp), metadata={"epoch": str(info["epoch"])})
    tmp.replace(run_dir / STATE_TENSORS)
    write_json(run_dir / STATE_JSON, info)


def load_state(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    info = json.loads((run_dir / STATE_JSON).read_text(encoding="utf-8"))
    path = run_dir / STATE_TENSORS
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


def write_log(run_dir: Path, history: list[dict[str, Any]]) -> None:
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


def init_weights(model: torch.nn.Module, folder: str | Path) -> None:
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
