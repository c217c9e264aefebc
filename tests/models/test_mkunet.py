"""MK-UNet: shapes, clinical fusion, LVCR path, ablation switches, input-size checks, padding helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mkunet.models import MKUNet, pad_to_multiple

TINY = (4, 8, 8, 16, 16)


def _model(**kwargs) -> MKUNet:
    torch.manual_seed(0)
    return MKUNet(channels=TINY, **kwargs).eval()


def _data(b: int = 2, c: int = 4, shape=(16, 32, 32), seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, *shape, generator=gen), torch.rand(b, 6, generator=gen)


@pytest.mark.parametrize("upsample", ["transpose", "trilinear"])
def test_forward_shapes(upsample):
    model = _model(upsample=upsample)
    image, clinical = _data()
    with torch.no_grad():
        logits = model(image, clinical)
        logits2, attention = model(image, clinical, return_attention=True)
    assert logits.shape == (2, 1, 16, 32, 32)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, logits2)
    # finest first, one per skip connection, on the skip's grid
    assert [tuple(a.shape) for a in attention] == [
        (2, 1, 16, 32, 32),
        (2, 1, 8, 16, 16),
        (2, 1, 4, 8, 8),
        (2, 1, 2, 4, 4),
    ]
    assert all(float(a.min()) > 0 and float(a.max()) < 1 for a in attention)
    # logits, not probabilities
    assert float(logits.min()) < 0 or float(logits.max()) > 1 or not torch.all((logits >= 0) & (logits <= 1))


def test_lvcr_changes_output_and_attention():
    model = _model(clinical_fusion=False, gate="immune")
    image, clinical = _data()
    other = clinical.clone()
    other[:, 5] = 1.0 - other[:, 5]
    with torch.no_grad():
        out_a, att_a = model(image, clinical, return_attention=True)
        out_b, att_b = model(image, other, return_attention=True)
        # columns other than LVCR are not used when fusion is off
        other2 = clinical.clone()
        other2[:, :5] = 0.0
        out_c = model(image, other2)
    assert float((att_a[0] - att_b[0]).abs().max()) > 1e-4
    assert float((out_a - out_b).abs().max()) > 1e-6
    torch.testing.assert_close(out_a, out_c)


def test_clinical_fusion_uses_all_columns():
    model = _model(clinical_fusion=True, gate="plain")
    image, clinical = _data()
    other = clinical.clone()
    other[:, 0] = 1.0 - other[:, 0]  # age only
    with torch.no_grad():
        a, b = model(image, clinical), model(image, other)
    assert float((a - b).abs().max()) > 1e-6


def test_no_clinical_needed_without_fusion_and_immune_gates():
    for gate in ("plain", "none"):
        model = _model(clinical_fusion=False, gate=gate)
        image, clinical = _data()
        with torch.no_grad():
            a = model(image)
            b = model(image, clinical)  # ignored
            _, att = model(image, return_attention=True)
        torch.testing.assert_close(a, b)
        assert len(att) == (0 if gate == "none" else 4)


def test_missing_or_bad_clinical_raises():
    image, clinical = _data()
    with pytest.raises(ValueError, match="needs `clinical`"):
        _model()(image)
    with pytest.raises(ValueError, match="needs `clinical`"):
        _model(clinical_fusion=False, gate="immune")(image)
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        _model()(image, clinical[:, :5])
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        _model()(image, clinical[:1])
    bad = clinical.clone()
    bad[0, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        _model()(image, bad)


def test_size_not_multiple_of_16_raises_with_shape():
    model = _model()
    image, clinical = _data(shape=(20, 32, 32))
    with pytest.raises(ValueError, match=r"multiple of 16.*\(2, 4, 20, 32, 32\).*pad_to_multiple"):
        model(image, clinical)
    with pytest.raises(ValueError, match=r"\(B, 4, Z, Y, X\)"):
        model(image[:, :1], clinical)


def test_pad_to_multiple_round_trip_and_model():
    image, clinical = _data(shape=(20, 30, 33))
    padded, crop = pad_to_multiple(image, 16)
    assert padded.shape == (2, 4, 32, 32, 48)
    torch.testing.assert_close(padded[crop], image)
    assert float(padded[:, :, :6].abs().sum()) == 0.0  # 12 slices of padding split 6 / 6
    with torch.no_grad():
        out = _model()(padded, clinical)[crop]
    assert out.shape == (2, 1, 20, 30, 33)
    arr = np.ones((2, 3, 17, 16), dtype=np.float32)  # (C, Z, Y, X): the channel axis is not padded
    padded_np, crop_np = pad_to_multiple(arr, 16)
    assert padded_np.shape == (2, 16, 32, 16) and isinstance(padded_np, np.ndarray)
    np.testing.assert_array_equal(padded_np[crop_np], arr)
    same, crop_same = pad_to_multiple(torch.zeros(1, 16, 16, 16), 16)
    assert same.shape == (1, 16, 16, 16) and crop_same[1:] == (slice(0, 16),) * 3
    with pytest.raises(ValueError, match="multiple"):
        pad_to_multiple(image, 0)


def test_one_channel_ablation_and_residual_units():
    model = _model(in_channels=1, num_res_units=2)
    image, clinical = _data(c=1)
    with torch.no_grad():
        assert model(image, clinical).shape == (2, 1, 16, 32, 32)


def test_constructor_validation():
    with pytest.raises(ValueError, match="gate"):
        MKUNet(channels=TINY, gate="lvcr")
    with pytest.raises(ValueError, match="upsample"):
        MKUNet(channels=TINY, upsample="nearest")
    with pytest.raises(ValueError, match="channels"):
        MKUNet(channels=(8,))
    with pytest.raises(ValueError, match="lvcr_index"):
        MKUNet(channels=TINY, lvcr_index=6)
    with pytest.raises(ValueError, match="norm"):
        MKUNet(channels=TINY, norm=3)


def test_default_width_architecture():
    model = MKUNet()
    assert model.channels == (16, 32, 64, 128, 256) and model.down_factor == 16
    assert model.fuse is not None
    assert model.fuse.conv.in_channels == 256 + 6 and model.fuse.conv.out_channels == 256


def test_train_step_reduces_loss():
    """A few Adam steps on one tiny case lower the loss: the graph is trainable end to end."""
    from mkunet.train.losses import DiceBCELoss

    model = _model().train()
    image, clinical = _data(b=2, shape=(16, 32, 32))  # training with instance norm: bottleneck grid > 1 voxel
    target = torch.zeros(2, 1, 16, 32, 32)
    target[:, :, 4:12, 8:24, 8:24] = 1
    loss_fn = DiceBCELoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = loss_fn(model(image, clinical), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
