"""Duck-typed stand-ins for ``mkunet.models.bundle.ModelBundle`` parts, used with oracle models in tests.

They follow the real interfaces (``tests/models/test_factory.py::test_bundle_stubs_follow_the_real_interfaces``
compares the signatures and runs the stubs through the real ``mkunet.models.bundle.predict_probability``):

* :class:`ClinicalVectorMixin` gives a stub bundle the real :meth:`ModelBundle.clinical_vector`
  (not a copy of it), with ``ModelBundle``'s defaults for the fields that method reads;
* :class:`HUOracle` has the calling convention of every network of ``mkunet.models.MODELS``;
* :func:`hu_preprocessor` has the signature of :meth:`mkunet.preprocess.Preprocessor.__call__`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from mkunet.models.bundle import ModelBundle
from mkunet.volume import Volume


class ClinicalVectorMixin:
    """``clinical_vector`` of :class:`mkunet.models.bundle.ModelBundle` for a stub bundle (dataclass or plain class).

    The method is the real one, so it reads ``clinical_encoder`` (``encode_one`` for mappings),
    ``default_clinical`` (an encoded (6,) float32 array or None) and ``metadata``
    (``use_lvcr``); these default to ``ModelBundle``'s defaults unless the stub sets them.
    """

    clinical_encoder: Any = None
    default_clinical: np.ndarray | None = None
    metadata: Any = MappingProxyType({})  # read-only: a shared default must not be mutated

    clinical_vector = ModelBundle.clinical_vector


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

    def forward(
        self, image: torch.Tensor, clinical: torch.Tensor | None = None, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, 1, Z, Y, X) from ``image`` (B, C, Z, Y, X); LVCR is column 5 of ``clinical`` (B, 6)."""
        self.calls += 1
        lvcr = 0.0 if clinical is None else clinical[:, 5].view(-1, 1, 1, 1, 1)
        logits = self.gain * (image[:, :1] * 1000.0 - (self.thr_hu - self.lvcr_gain * lvcr))
        if return_attention:
            p = torch.sigmoid(logits)
            return logits, [p, torch.nn.functional.avg_pool3d(p, 2)]
        return logits


def hu_preprocessor(volume: Volume | np.ndarray) -> np.ndarray:
    """One channel (1, z, y, x) float32: HU / 1000 (what the oracles expect)."""
    array = volume.array if isinstance(volume, Volume) else np.asarray(volume)
    return (array / 1000.0)[None].astype(np.float32)
