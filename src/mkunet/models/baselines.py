"""Baseline networks of paper Table 1, wrapped to MK-UNet's calling convention.

Every model of the package has ``forward(image, clinical=None, return_attention=False)``:
image (B, C, Z, Y, X) float32 with Z, Y, X multiples of 16 (a clear ValueError
otherwise; see :func:`mkunet.models.pad_to_multiple`), returns logits (B, 1, Z, Y, X)
or ``(logits, attention_maps)``. Baselines ignore ``clinical``.

* ``UNet3D``: MONAI ``UNet`` (3-D; channels (16, 32, 64, 128, 256), four stride-2 steps,
  ``num_res_units=2``: two 3x3x3 convolutions per level as in Cicek et al. 2016, with
  MONAI's residual shortcut; PReLU, instance norm). ``attention`` is ``[]``.
* ``ResNet3D``: MONAI ``SegResNet`` (Myronenko 2018): a residual encoder-decoder of
  ResNet blocks (group norm, ReLU), ``init_filters=16`` and five levels
  (blocks_down (1, 1, 1, 1, 1), blocks_up (1, 1, 1, 1); one ResNet block of two 3x3x3
  convolutions per level, like the U-Nets): channels 16..256, four
  down-sampling steps, like the other models. ``attention`` is ``[]``.
* ``AttentionUNet3D``: MONAI ``AttentionUnet`` (Oktay et al. 2018; batch norm as MONAI
  hard-codes it), channels (16, 32, 64, 128, 256). Its gate maps are captured with
  forward hooks and returned finest first, each (B, 1, z_i, y_i, x_i).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import AttentionUnet, SegResNet, UNet
from monai.networks.nets.attentionunet import AttentionBlock
from torch import nn

from mkunet.models.mkunet import check_layer_arg, check_spatial_multiple

__all__ = ["UNet3D", "ResNet3D", "AttentionUNet3D"]


def _check_channels(channels: Sequence[int]) -> tuple[int, ...]:
    channels = tuple(channels)
    if len(channels) < 2 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
        raise ValueError(f"`channels` must list at least 2 positive integers (finest level first), got {channels!r}.")
    return channels


class _Wrapped(nn.Module):
    """Common checks and calling convention around a MONAI network stored as ``self.net``."""

    in_channels: int
    down_factor: int
    net: nn.Module

    def _check(self, image: torch.Tensor) -> None:
        if image.ndim != 5 or image.shape[1] != self.in_channels:
            raise ValueError(
                f"`image` must be (B, {self.in_channels}, Z, Y, X) for this model (in_channels={self.in_channels}), "
                f"got shape {tuple(image.shape)}."
            )
        check_spatial_multiple(image.shape, self.down_factor)

    def _attention(self) -> list[torch.Tensor]:
        return []

    def forward(
        self, image: torch.Tensor, clinical: torch.Tensor | None = None, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Segment ``image`` (B, C, Z, Y, X); ``clinical`` is ignored. Returns logits (B, 1, Z, Y, X)."""
        self._check(image)
        logits = self.net(image)
        if return_attention:
            return logits, self._attention()
        return logits


class UNet3D(_Wrapped):
    """3-D U-Net baseline (MONAI ``UNet``). See the module docstring.

    Args:
        in_channels: image channels (4 or 1).
        out_channels: output channels (1).
        channels: channels per level, finest first (``len - 1`` stride-2 steps).
        num_res_units: residual units per level (MONAI); 2 gives two convolutions per level.
        act, norm: MONAI layer names or (name, kwargs).
        dropout: dropout probability.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        num_res_units: int = 2,
        act: tuple | str | list = "PRELU",
        norm: tuple | str | list = "INSTANCE",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = _check_channels(channels)
        self.in_channels = in_channels
        self.down_factor = 2 ** (len(channels) - 1)
        self.net = UNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            strides=(2,) * (len(channels) - 1),
            num_res_units=num_res_units,
            act=check_layer_arg(act, "act"),
            norm=check_layer_arg(norm, "norm"),
            dropout=dropout,
        )


class ResNet3D(_Wrapped):
    """3-D residual encoder-decoder baseline (MONAI ``SegResNet``). See the module docstring.

    Args:
        in_channels: image channels (4 or 1).
        out_channels: output channels (1).
        init_filters: channels of the first level (doubled at each of the ``len(blocks_down) - 1``
            down-sampling steps); must be divisible by the group-norm ``num_groups`` (8).
        blocks_down: ResNet blocks per encoder level.
        blocks_up: ResNet blocks per decoder level (``len(blocks_down) - 1`` entries).
        num_groups: groups of the group normalisation.
        dropout_prob: dropout after the first convolution, or None.
        upsample_mode: ``"deconv"`` (transposed convolution), ``"nontrainable"`` (trilinear)
            or ``"pixelshuffle"``.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 1,
        init_filters: int = 16,
        blocks_down: Sequence[int] = (1, 1, 1, 1, 1),
        blocks_up: Sequence[int] = (1, 1, 1, 1),
        num_groups: int = 8,
        dropout_prob: float | None = None,
        upsample_mode: str = "deconv",
    ) -> None:
        super().__init__()
        blocks_down, blocks_up = tuple(blocks_down), tuple(blocks_up)
        if len(blocks_up) != len(blocks_down) - 1:
            raise ValueError(
                f"`blocks_up` needs len(blocks_down) - 1 = {len(blocks_down) - 1} entries, got {blocks_up!r}."
            )
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"`num_groups` must be a positive integer, got {num_groups!r}.")
        if (
            isinstance(init_filters, bool)
            or not isinstance(init_filters, int)
            or init_filters < 1
            or init_filters % num_groups
        ):
            raise ValueError(
                f"`init_filters` must be a positive multiple of num_groups={num_groups} (group norm), "
                f"got {init_filters!r}."
            )
        self.in_channels = in_channels
        self.down_factor = 2 ** (len(blocks_down) - 1)
        self.net = SegResNet(
            spatial_dims=3,
            init_filters=init_filters,
            in_channels=in_channels,
            out_channels=out_channels,
            dropout_prob=dropout_prob,
            norm=("GROUP", {"num_groups": num_groups}),
            blocks_down=blocks_down,
            blocks_up=blocks_up,
            upsample_mode=upsample_mode,
        )


class AttentionUNet3D(_Wrapped):
    """Attention U-Net baseline (MONAI ``AttentionUnet``). See the module docstring.

    Args:
        in_channels: image channels (4 or 1).
        out_channels: output channels (1).
        channels: channels per level, finest first (``len - 1`` stride-2 steps).
        dropout: dropout probability.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = _check_channels(channels)
        self.in_channels = in_channels
        self.down_factor = 2 ** (len(channels) - 1)
        self.net = AttentionUnet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            strides=(2,) * (len(channels) - 1),
            dropout=dropout,
        )
        for block in self._gate_blocks():
            block.psi.register_forward_hook(_store_alpha)

    def _gate_blocks(self) -> list[AttentionBlock]:
        # Registration order of MONAI's AttentionBlocks is outermost (finest) first.
        return [m for m in self.net.modules() if isinstance(m, AttentionBlock)]

    def forward(
        self, image: torch.Tensor, clinical: torch.Tensor | None = None, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Segment ``image`` (B, C, Z, Y, X); ``clinical`` is ignored. Returns logits (B, 1, Z, Y, X)."""
        try:
            return super().forward(image, clinical, return_attention)
        finally:
            for block in self._gate_blocks():  # keep no tensors alive between calls
                block.psi.last_alpha = None

    def _attention(self) -> list[torch.Tensor]:
        return [block.psi.last_alpha for block in self._gate_blocks()]


def _store_alpha(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
    """Forward hook on an AttentionBlock's ``psi``: keep alpha (B, 1, z, y, x), after the sigmoid.

    A plain function (no closure over the wrapper) so that copies of the model
    (``copy.deepcopy``, EMA, DDP) keep working.
    """
    module.last_alpha = output
