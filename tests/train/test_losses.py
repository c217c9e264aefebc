"""DiceBCELoss (MONAI DiceCELoss) against MONAI's DiceLoss + torch's BCE and a hand-written soft Dice."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss

from mkunet.train.losses import DiceBCELoss


def _case(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 1, 8, 8, 8, generator=gen) * 3
    target = (torch.rand(2, 1, 8, 8, 8, generator=gen) > 0.7).float()
    return logits, target


def test_matches_monai_dice_and_torch_bce():
    logits, target = _case()
    expected = 0.6 * DiceLoss(sigmoid=True)(logits, target) + 0.4 * torch.nn.BCELoss()(torch.sigmoid(logits), target)
    torch.testing.assert_close(DiceBCELoss()(logits, target), expected)


def test_matches_hand_written_formula():
    logits, target = _case(1)
    p = torch.sigmoid(logits).double()
    t = target.double()
    inter = (p * t).sum(dim=(1, 2, 3, 4))
    dice_loss = (1 - (2 * inter + 1e-5) / (p.sum(dim=(1, 2, 3, 4)) + t.sum(dim=(1, 2, 3, 4)) + 1e-5)).mean()
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
    for wd, wb in ((0.6, 0.4), (1.0, 0.0), (0.0, 1.0), (0.25, 2.0)):
        got = DiceBCELoss(wd, wb)(logits, target)
        assert float(got) == pytest.approx(float(wd * dice_loss + wb * bce), rel=1e-5)


def test_perfect_prediction_and_gradient():
    target = torch.zeros(1, 1, 8, 8, 8)
    target[..., 2:6, 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 30
    assert float(DiceBCELoss()(perfect, target)) < 1e-6
    logits = torch.zeros_like(target, requires_grad=True)
    DiceBCELoss()(logits, target.bool()).backward()  # bool target accepted
    assert torch.isfinite(logits.grad).all() and float(logits.grad.abs().sum()) > 0


def test_validation():
    with pytest.raises(ValueError, match="dice_weight"):
        DiceBCELoss(dice_weight=-0.1)
    with pytest.raises(ValueError, match="bce_weight"):
        DiceBCELoss(bce_weight=float("nan"))
    with pytest.raises(ValueError, match="both 0"):
        DiceBCELoss(0, 0)
    logits, target = _case()
    with pytest.raises(ValueError, match="same shape"):
        DiceBCELoss()(logits, target[:, 0])


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("smooth", [(1e-5, 1e-5), (0.0, 1e-6), (1.0, 1.0)])
def test_equals_the_former_dice_plus_bce_to_1e6(batch, smooth):
    """The MONAI DiceCELoss it now is equals the former 0.6 DiceLoss + 0.4 BCE-with-logits (per case / batch Dice)."""
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        logits = torch.randn(3, 1, 6, 7, 5, generator=gen, dtype=torch.float64) * 4
        target = (torch.rand(3, 1, 6, 7, 5, generator=gen, dtype=torch.float64) > 0.7).double()
        if seed == 3:
            target[0] = 0  # a patch without tumour
        for wd, wb in ((0.6, 0.4), (1.0, 0.0), (0.0, 1.0), (0.25, 2.0)):
            dice = DiceLoss(sigmoid=True, batch=batch, smooth_nr=smooth[0], smooth_dr=smooth[1])(logits, target)
            former = wd * dice + wb * F.binary_cross_entropy_with_logits(logits, target)
            loss = DiceBCELoss(wd, wb, batch=batch, smooth_nr=smooth[0], smooth_dr=smooth[1])
            assert abs(float(loss(logits, target)) - float(former)) < 1e-6
        monai = DiceCELoss(
            sigmoid=True, lambda_dice=0.6, lambda_ce=0.4, batch=batch, smooth_nr=smooth[0], smooth_dr=smooth[1]
        )
        got = DiceBCELoss(batch=batch, smooth_nr=smooth[0], smooth_dr=smooth[1])(logits, target)
        assert abs(float(got) - float(monai(logits, target))) < 1e-12


def test_more_than_one_channel_is_refused():
    """DiceCELoss would use a softmax cross-entropy for C > 1, not a sigmoid BCE: refused with the reason."""
    logits = torch.zeros(1, 2, 4, 4, 4)
    with pytest.raises(ValueError, match="one output channel"):
        DiceBCELoss()(logits, torch.zeros_like(logits))
