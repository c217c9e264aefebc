"""ImmuneAttentionGate: shapes, the Oktay formula re-derived by hand, and the LVCR input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mkunet.models.gates import ImmuneAttentionGate


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 6, 8, 16, 16, generator=gen)
    g = torch.rand(2, 12, 4, 8, 8, generator=gen)
    return x, g


def test_shapes_and_range():
    torch.manual_seed(0)
    gate = ImmuneAttentionGate(6, 12, 3)
    x, g = _inputs()
    with torch.no_grad():
        y, alpha = gate(x, g, torch.tensor([0.2, 0.8]))
    assert y.shape == x.shape
    assert alpha.shape == (2, 1, 8, 16, 16)
    assert float(alpha.min()) > 0 and float(alpha.max()) < 1
    torch.testing.assert_close(y, x * alpha)


def test_formula_matches_hand_computation():
    """alpha = sigmoid(psi(relu(W_x x + up(W_g g) + w_l LVCR)) + b), W_x strided 2x2x2, up-sampled back."""
    torch.manual_seed(1)
    gate = ImmuneAttentionGate(6, 12, 3)
    x, g = _inputs(1)
    g = g[:, :, :, :4, :]  # a gating grid that is NOT exactly half of x: exercises the resampling of W_g g
    lvcr = torch.tensor([0.1, 0.7])
    _, alpha = gate(x, g, lvcr)

    wx = gate.theta_x.conv.weight
    wg, bg = gate.phi_g.conv.weight, gate.phi_g.conv.bias
    wpsi, bpsi = gate.psi.conv.weight, gate.psi.conv.bias
    wl = gate.w_l.weight[:, 0]
    theta = F.conv3d(x, wx, stride=2)
    phi = F.interpolate(F.conv3d(g, wg, bg), size=theta.shape[2:], mode="trilinear", align_corners=False)
    q = torch.relu(theta + phi + wl[None, :, None, None, None] * lvcr[:, None, None, None, None])
    expected = torch.sigmoid(F.conv3d(q, wpsi, bpsi))
    expected = F.interpolate(expected, size=x.shape[2:], mode="trilinear", align_corners=False)
    torch.testing.assert_close(alpha, expected)


def test_lvcr_changes_alpha_only_when_immune():
    torch.manual_seed(2)
    x, g = _inputs(2)
    immune = ImmuneAttentionGate(6, 12, 3, use_lvcr=True)
    with torch.no_grad():
        _, a_low = immune(x, g, torch.tensor([0.0, 0.0]))
        _, a_high = immune(x, g, torch.tensor([1.0, 1.0]))
    assert float((a_low - a_high).abs().max()) > 1e-3

    torch.manual_seed(2)
    plain = ImmuneAttentionGate(6, 12, 3, use_lvcr=False)
    _, p_low = plain(x, g, torch.tensor([0.0, 0.0]))
    _, p_high = plain(x, g, torch.tensor([1.0, 1.0]))
    _, p_none = plain(x, g)
    torch.testing.assert_close(p_low, p_high)
    torch.testing.assert_close(p_low, p_none)
    assert plain.w_l is None


def test_lvcr_per_case():
    """Each case is gated with its own LVCR: swapping the LVCRs swaps the two maps."""
    torch.manual_seed(3)
    gate = ImmuneAttentionGate(6, 12, 3)
    x, g = _inputs(3)
    x = x[:1].expand(2, -1, -1, -1, -1)
    g = g[:1].expand(2, -1, -1, -1, -1)
    with torch.no_grad():
        _, a = gate(x, g, torch.tensor([0.1, 0.9]))
        _, b = gate(x, g, torch.tensor([0.9, 0.1]))
    torch.testing.assert_close(a[0], b[1])
    assert float((a[0] - a[1]).abs().max()) > 1e-4


def test_errors():
    gate = ImmuneAttentionGate(6, 12, 3)
    x, g = _inputs()
    with pytest.raises(ValueError, match="needs `lvcr`"):
        gate(x, g)
    with pytest.raises(ValueError, match="one value per case"):
        gate(x, g, torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="5-D"):
        gate(x[0], g[0], torch.tensor([0.1]))
    with pytest.raises(ValueError, match="inter_channels"):
        ImmuneAttentionGate(6, 12, 0)


def test_gradient_reaches_lvcr_weight():
    torch.manual_seed(4)
    gate = ImmuneAttentionGate(6, 12, 3)
    x, g = _inputs(4)
    y, _ = gate(x, g, torch.tensor([0.3, 0.6]))
    y.sum().backward()
    assert gate.w_l.weight.grad is not None and float(gate.w_l.weight.grad.abs().sum()) > 0
