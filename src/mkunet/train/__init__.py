"""Training segmentation networks on a cohort folder: ``train(TrainConfig(...)) -> TrainResult``.

* :mod:`mkunet.train.data`: the accepted cohort layout, patient-level split, patch sampling.
* :mod:`mkunet.train.loop`: the loop itself, checkpoints (safetensors + JSON), exact resume,
  DDP under ``torchrun``, mixed precision on CUDA, time budget.
"""

from mkunet.train.data import ScanRecord, read_scans, split_patients
from mkunet.train.loop import TrainConfig, TrainResult, train, width_kwargs

__all__ = ["TrainConfig", "TrainResult", "train", "width_kwargs", "ScanRecord", "read_scans", "split_patients"]
