"""A duck-typed stand-in for ``mkunet.bundle.ModelBundle`` used with oracle models in tests."""

from __future__ import annotations

import numpy as np
import torch

from mkunet.volume import Volume


class ClinicalVectorMixin:
    """``clinical_vector`` as :class:`mkunet.bundle.ModelBundle` defines it, for already-encoded values."""

    default_clinical = None

    def clinical_vector(self, values=None):
        if values is None:
            return None if self.default_clinical is None else np.asarray(self.default_clinical, np.float32)
        return np.asarray(values, np.float32).reshape(-1)


class HUOracle(torch.nn.Module):
    """logit = gain * (HU - (thr_hu - lvcr_gain * lvcr)); channel 0 carries HU / 1000. Counts forward calls.

    With ``return_attention`` it returns two "gate" maps: the probability at full and at half
    resolution (average pooled). ``thr_hu`` is a buffer, so it is part of the weights' identity.
    """

    def __init__(self, thr_hu: float, gain: float = 0.05, lvcr_gain: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("thr_hu", torch.tensor(float(thr_hu)))
        self.gain, self.lvcr_gain = gain, lvcr_gain
        self.calls = 0

    def forward(self, image, clinical=None, return_attention=False):
        self.calls += 1
        lvcr = 0.0 if clinical is None else clinical[:, 5].view(-1, 1, 1, 1, 1)
        logits = self.gain * (image[:, :1] * 1000.0 - (self.thr_hu - self.lvcr_gain * lvcr))
        if return_attention:
            p = torch.sigmoid(logits)
            return logits, [p, torch.nn.functional.avg_pool3d(p, 2)]
        return logits


def hu_preprocessor(volume: Volume) -> np.ndarray:
    """One channel: HU / 1000 (what the oracles expect)."""
    return (volume.array / 1000.0)[None].astype(np.float32)
