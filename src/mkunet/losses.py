"""Training loss of MK-UNet (paper 5.2; SPEC "Loss").

.. math::

    L = w_D \\, \\mathrm{DiceLoss}(\\sigma(z), y) + w_B \\, \\mathrm{BCE}(\\sigma(z), y),
    \\qquad w_D = 0.6,\\ w_B = 0.4

on logits ``z``. The paper's printed formula adds the Dice coefficient to the Dice
loss, a typo; we use 0.6 Dice loss + 0.4 BCE. The Dice term is MONAI's ``DiceLoss``
with ``sigmoid=True`` (soft Dice per case and channel, averaged, smoothing 1e-5 in
numerator and denominator); the BCE term is torch's ``binary_cross_entropy_with_logits``
(numerically stable, mean over voxels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

__all__ = ["DiceBCELoss"]


class DiceBCELoss(nn.Module):
    """Weighted sum of soft Dice loss and binary cross-entropy, on logits.

    Args:
        dice_weight: weight of the Dice loss (>= 0; paper 0.6).
        bce_weight: weight of the BCE (>= 0; paper 0.4). The two may not both be 0.
        batch: compute Dice over the whole batch as one volume (MONAI ``batch=True``)
            instead of per case; useful when many patches contain no tumour.
        smooth_nr, smooth_dr: Dice smoothing constants (MONAI defaults 1e-5).

    Call:
        ``loss(logits, target)``: ``logits`` (B, C, Z, Y, X) float (no sigmoid applied),
        ``target`` same shape, values in {0, 1} (bool or float). Returns a scalar tensor.
    """

    def __init__(
        self,
        dice_weight: float = 0.6,
        bce_weight: float = 0.4,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
    ) -> None:
        super().__init__()
        for name, value in (("dice_weight", dice_weight), ("bce_weight", bce_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
        if dice_weight == 0 and bce_weight == 0:
            raise ValueError("`dice_weight` and `bce_weight` are both 0: the loss would be constant; set at least one > 0.")
        self.dice_weight = float(dice_weight)
        self.bce_weight = float(bce_weight)
        self.dice = DiceLoss(sigmoid=True, batch=batch, smooth_nr=smooth_nr, smooth_dr=smooth_dr)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` against the binary ``target`` (same shape (B, C, Z, Y, X))."""
        if logits.shape != target.shape:
            raise ValueError(
                f"logits and target must have the same shape (B, C, Z, Y, X); got {tuple(logits.shape)} and "
                f"{tuple(target.shape)}. Add the channel axis to the mask (mask[:, None])."
            )
        target = target.to(dtype=logits.dtype)
        loss = logits.new_zeros(())
        if self.dice_weight:
            loss = loss + self.dice_weight * self.dice(logits, target)
        if self.bce_weight:
            loss = loss + self.bce_weight * F.binary_cross_entropy_with_logits(logits, target)
        return loss

    def extra_repr(self) -> str:
        return f"dice_weight={self.dice_weight}, bce_weight={self.bce_weight}"
