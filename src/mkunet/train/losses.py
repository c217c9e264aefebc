"""Training loss of MK-UNet (paper 5.2; SPEC "Loss").

.. math::

    L = w_D \\, \\mathrm{DiceLoss}(\\sigma(z), y) + w_B \\, \\mathrm{BCE}(\\sigma(z), y),
    \\qquad w_D = 0.6,\\ w_B = 0.4

on logits ``z``. The paper's printed formula adds the Dice coefficient to the Dice
loss, a typo; we use 0.6 Dice loss + 0.4 BCE. The loss **is** MONAI's ``DiceCELoss``
with ``sigmoid=True, lambda_dice=0.6, lambda_ce=0.4``: for one output channel its CE term
is ``BCEWithLogitsLoss`` (numerically stable, mean over voxels) and its Dice term is
``DiceLoss(sigmoid=True)`` (soft Dice per case and channel, or over the batch with
``batch=True``; smoothing 1e-5 in numerator and denominator). ``tests/test_losses.py``
checks that it equals ``0.6 * DiceLoss + 0.4 * binary_cross_entropy_with_logits`` to 1e-6.

For more than one output channel ``DiceCELoss`` uses a *softmax* cross-entropy, which is
not the per-channel sigmoid BCE of this loss: :class:`DiceBCELoss` refuses such inputs
(every mkunet model has one output channel, the tumour logit).
"""

from __future__ import annotations

import math

import torch
from monai.losses import DiceCELoss

__all__ = ["DiceBCELoss"]


class DiceBCELoss(DiceCELoss):
    """Weighted sum of soft Dice loss and binary cross-entropy, on logits (MONAI ``DiceCELoss``).

    Args:
        dice_weight: weight of the Dice loss (>= 0; paper 0.6): ``lambda_dice``.
        bce_weight: weight of the BCE (>= 0; paper 0.4): ``lambda_ce``. The two may not both be 0.
        batch: compute Dice over the whole batch as one volume (MONAI ``batch=True``)
            instead of per case; useful when many patches contain no tumour.
        smooth_nr, smooth_dr: Dice smoothing constants (MONAI defaults 1e-5).

    Call:
        ``loss(logits, target)``: ``logits`` (B, 1, Z, Y, X) float (no sigmoid applied),
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
        for name, value in (("dice_weight", dice_weight), ("bce_weight", bce_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
        if dice_weight == 0 and bce_weight == 0:
            raise ValueError(
                "`dice_weight` and `bce_weight` are both 0: the loss would be constant; set at least one > 0."
            )
        super().__init__(
            sigmoid=True,
            batch=batch,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            lambda_dice=float(dice_weight),
            lambda_ce=float(bce_weight),
        )
        self.dice_weight = float(dice_weight)
        self.bce_weight = float(bce_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` against the binary ``target`` (same shape (B, 1, Z, Y, X))."""
        if logits.shape != target.shape:
            raise ValueError(
                f"logits and target must have the same shape (B, C, Z, Y, X); got {tuple(logits.shape)} and "
                f"{tuple(target.shape)}. Add the channel axis to the mask (mask[:, None])."
            )
        if logits.ndim < 2 or logits.shape[1] != 1:
            raise ValueError(
                f"DiceBCELoss takes one output channel (the tumour logit), got shape {tuple(logits.shape)}: for C > 1 "
                "MONAI's DiceCELoss would use a softmax cross-entropy, not a sigmoid BCE per channel."
            )
        return super().forward(logits, target.to(dtype=logits.dtype))

    def extra_repr(self) -> str:
        return f"dice_weight={self.dice_weight}, bce_weight={self.bce_weight}"
