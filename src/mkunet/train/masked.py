"""The training loss with ignored voxels (real tumours and unknown regions of real backgrounds).

:class:`MaskedDiceBCELoss` is :class:`mkunet.train.losses.DiceBCELoss` (0.6 soft Dice + 0.4 BCE on
logits, MONAI ``DiceCELoss``) with a weight map ``w`` in {0, 1}: voxels with ``w = 0``
contribute nothing, neither to the Dice sums nor to the BCE, and get no gradient::

    Dice = 1 - (2 sum(w p y) + s_nr) / (sum(w p) + sum(w y) + s_dr)
    BCE  = sum(w * bce(z, y)) / N

(``p = sigmoid(z)``; the sums per case, or over the batch with ``batch=True``; ``N`` the
number of voxels, so that with ``w = 1`` everywhere it equals ``DiceBCELoss`` to rounding).
"""

from __future__ import annotations

import torch

from mkunet.train.losses import DiceBCELoss

__all__ = ["MaskedDiceBCELoss"]


class MaskedDiceBCELoss(DiceBCELoss):
    """:class:`~mkunet.train.losses.DiceBCELoss` that skips voxels of weight 0 (module docstring).

    Call:
        ``loss(logits, target, weight=None)``: tensors (B, 1, Z, Y, X); ``weight`` in {0, 1}
        (None: the unmasked ``DiceBCELoss``). Returns a scalar tensor.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """Loss of ``logits`` against ``target`` over the voxels where ``weight`` is 1."""
        if weight is None:
            return super().forward(logits, target)
        if weight.shape != logits.shape or target.shape != logits.shape:
            raise ValueError(
                f"logits, target and weight must have the same shape (B, 1, Z, Y, X); got {tuple(logits.shape)}, "
                f"{tuple(target.shape)} and {tuple(weight.shape)}."
            )
        w = weight.to(dtype=logits.dtype)
        y = target.to(dtype=logits.dtype)
        p = torch.sigmoid(logits) * w
        dims = tuple(range(2, logits.ndim))
        if self.dice.batch:
            dims = (0, *dims)
        inter = torch.sum(p * y, dim=dims)
        denom = torch.sum(p, dim=dims) + torch.sum(y * w, dim=dims)
        dice = 1.0 - (2.0 * inter + self.dice.smooth_nr) / (denom + self.dice.smooth_dr)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        bce = torch.sum(bce * w) / bce.numel()
        return self.dice_weight * dice.mean() + self.bce_weight * bce
