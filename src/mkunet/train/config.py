"""The configuration of a training run (:class:`TrainConfig`, stored as ``config.json``) and its outcome.

:class:`TrainConfig` validates every field when built (a ValueError names the field and the
bad value); :func:`width_kwargs` turns the base width into constructor arguments of the model.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["LR_SCHEDULES", "WINDOW_MODES", "TrainConfig", "TrainResult", "width_kwargs"]

LR_SCHEDULES = ("constant", "poly")
WINDOW_MODES = ("symmetric", "paper")
"""The modes of :class:`mkunet.preprocess.AdaptiveWindow`."""


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
    window_mode: Literal["symmetric", "paper"] = "symmetric"
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
        if self.window_mode not in WINDOW_MODES:
            raise ValueError(f"`window_mode` must be one of {WINDOW_MODES}, got {self.window_mode!r}.")
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
