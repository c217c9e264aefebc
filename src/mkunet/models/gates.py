"""Attention gates for the skip connections of MK-UNet (paper 2.2, 2.7.2, Figure 4).

The gate is the additive attention gate of Oktay et al. 2018 ("Attention U-Net:
Learning Where to Look for the Pancreas", https://arxiv.org/abs/1804.03999) with,
for the *immune-aware* variant, the patient's LVCR (log volume change rate, the
normalised value of column 5 of the clinical vector) broadcast over the grid as an
extra input:

.. math::

    q = \\mathrm{ReLU}\\big(W_x * x + \\mathrm{up}(W_g * g) + w_l\\,\\mathrm{LVCR}\\big),\\qquad
    \\alpha = \\sigma\\big(\\psi * q + b\\big),\\qquad \\hat x = \\mathrm{up}(\\alpha) \\odot x

* ``x`` (B, C_x, Z, Y, X): the encoder feature map of the skip connection;
* ``g`` (B, C_g, Z', Y', X'): the gating signal, the coarser decoder feature map
  (usually Z' = Z / 2 ...);
* ``W_x``: a bias-free convolution with kernel = stride = ``subsample`` (Oktay's
  strided theta_x), taking ``x`` to the grid of ``g``;
* ``W_g``: a 1x1x1 convolution (with bias) of ``g``; resampled trilinearly to the grid
  of ``W_x * x`` when the two differ (Oktay's phi_g);
* ``w_l``: a learnable vector of length ``inter_channels`` multiplying the scalar LVCR
  of each case (``use_lvcr=True`` only);
* ``psi``: 1x1x1 convolution to one channel with bias ``b``; sigma the logistic sigmoid;
* ``up``: trilinear resampling of alpha back to the grid of ``x``.

With ``use_lvcr=False`` this is the plain Oktay gate (the "without LVCR" ablation).
The gate returns the gated skip and ``alpha`` on the grid of ``x`` (B, 1, Z, Y, X),
values in (0, 1), for export as an attention map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Norm
from torch import nn

__all__ = ["ImmuneAttentionGate"]


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


class ImmuneAttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018), optionally fed with LVCR.

    Args:
        x_channels: channels of the skip feature map ``x``.
        g_channels: channels of the gating signal ``g``.
        inter_channels: channels of the intermediate sum ``q`` (Oktay: ``x_channels // 2``).
        use_lvcr: add ``w_l * LVCR`` inside the ReLU (the immune-aware gate). ``False``
            gives the plain gate; ``lvcr`` is then ignored.
        subsample: kernel size and stride of ``W_x`` (2 when ``g`` lives on a grid
            twice as coarse as ``x``, as in MK-UNet; 1 when both share a grid).
        norm: optional normalisation applied to ``W_x x + W_g g`` before the LVCR term,
            a MONAI ``Norm`` name or ``(name, kwargs)``; ``None`` (default) as in Oktay's
            grid-attention block.

    Shapes:
        ``x`` (B, x_channels, Z, Y, X); ``g`` (B, g_channels, Z', Y', X');
        ``lvcr`` (B,) or (B, 1) float, the normalised LVCR of each case.
        Returns ``(x * alpha, alpha)`` with ``alpha`` (B, 1, Z, Y, X) in (0, 1).

    Example:
        >>> gate = ImmuneAttentionGate(8, 16, 4)
        >>> x, g = torch.rand(2, 8, 16, 16, 16), torch.rand(2, 16, 8, 8, 8)
        >>> y, alpha = gate(x, g, lvcr=torch.tensor([0.1, 0.9]))
        >>> tuple(alpha.shape)
        (2, 1, 16, 16, 16)
    """

    def __init__(
        self,
        x_channels: int,
        g_channels: int,
        inter_channels: int,
        use_lvcr: bool = True,
        subsample: int = 2,
        norm: tuple | str | None = None,
    ) -> None:
        super().__init__()
        self.x_channels = _check_positive_int(x_channels, "x_channels")
        self.g_channels = _check_positive_int(g_channels, "g_channels")
        self.inter_channels = _check_positive_int(inter_channels, "inter_channels")
        self.subsample = _check_positive_int(subsample, "subsample")
        self.use_lvcr = bool(use_lvcr)
        self.theta_x = Convolution(
            spatial_dims=3,
            in_channels=x_channels,
            out_channels=inter_channels,
            strides=subsample,
            kernel_size=subsample,
            padding=0,
            bias=False,
            conv_only=True,
        )
        self.phi_g = Convolution(
            spatial_dims=3,
            in_channels=g_channels,
            out_channels=inter_channels,
            kernel_size=1,
            padding=0,
            conv_only=True,
        )
        self.norm: nn.Module = nn.Identity()
        if norm is not None:
            norm = tuple(norm) if isinstance(norm, list) else norm
            name, kwargs = (norm, {}) if isinstance(norm, str) else (norm[0], dict(norm[1]))
            self.norm = Norm[name, 3](inter_channels, **kwargs)
        # w_l: one weight per intermediate channel. The default Linear init draws it from
        # U(-1, 1), so LVCR influences alpha from the first step (zeros would not).
        self.w_l = nn.Linear(1, inter_channels, bias=False) if self.use_lvcr else None
        self.psi = Convolution(
            spatial_dims=3, in_channels=inter_channels, out_channels=1, kernel_size=1, padding=0, conv_only=True
        )

    def forward(
        self, x: torch.Tensor, g: torch.Tensor, lvcr: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate ``x`` with ``g`` (and LVCR); see the class docstring for shapes."""
        if x.ndim != 5 or g.ndim != 5:
            raise ValueError(
                f"ImmuneAttentionGate expects 5-D tensors (B, C, Z, Y, X); got x {tuple(x.shape)}, g {tuple(g.shape)}."
            )
        if x.shape[0] != g.shape[0]:
            raise ValueError(f"x and g must have the same batch size, got x {tuple(x.shape)} and g {tuple(g.shape)}.")
        theta = self.theta_x(x)
        phi = self.phi_g(g)
        if phi.shape[2:] != theta.shape[2:]:
            phi = F.interpolate(phi, size=theta.shape[2:], mode="trilinear", align_corners=False)
        q = self.norm(theta + phi)
        if self.w_l is not None:
            if lvcr is None:
                raise ValueError(
                    "This attention gate is immune-aware (use_lvcr=True) and needs `lvcr` (B,), the normalised LVCR "
                    "of each case; pass it, or build the gate with use_lvcr=False for the plain Oktay gate."
                )
            lvcr = torch.as_tensor(lvcr, dtype=q.dtype, device=q.device).reshape(-1, 1)
            if lvcr.shape[0] != x.shape[0]:
                raise ValueError(f"`lvcr` must hold one value per case ({x.shape[0]}), got shape {tuple(lvcr.shape)}.")
            q = q + self.w_l(lvcr)[:, :, None, None, None]  # (B, inter, 1, 1, 1) broadcast over the grid
        alpha = torch.sigmoid(self.psi(F.relu(q)))
        if alpha.shape[2:] != x.shape[2:]:
            alpha = F.interpolate(alpha, size=x.shape[2:], mode="trilinear", align_corners=False)
        return x * alpha, alpha
