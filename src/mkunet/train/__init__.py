"""Training segmentation networks on a cohort folder: ``train(TrainConfig(...)) -> TrainResult``.

* :mod:`mkunet.train.config`: :class:`TrainConfig` (every option, validated) and :class:`TrainResult`.
* :mod:`mkunet.train.data`: the accepted cohort layout, patient-level split, patch sampling.
* :mod:`mkunet.train.prepare`: the cases: resampled, preprocessed, clinical vectors and LVCR.
* :mod:`mkunet.train.loop`: the loop itself, mixed precision on CUDA, time budget.
* :mod:`mkunet.train.checkpoint`: the run folder's checkpoints (safetensors + JSON), exact resume.
* :mod:`mkunet.train.ddp`: DDP under ``torchrun``.
"""

from mkunet.train.config import TrainConfig, TrainResult, width_kwargs
from mkunet.train.data import ScanRecord, read_scans, split_patients
from mkunet.train.loop import train

__all__ = ["TrainConfig", "TrainResult", "train", "width_kwargs", "ScanRecord", "read_scans", "split_patients"]
