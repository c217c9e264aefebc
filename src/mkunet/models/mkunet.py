"""MK-UNet: 3-D U-Net with clinical fusion at the bottleneck and immune-aware attention gates.

Paper sections 2.2 and 2.7.2, Figures 3-4; our reading in SPEC.md ("MK-UNet")::

    image (B, C, Z, Y, X) ──► enc0 ─────────────────────────────── gate0 ─► dec0 ─► 1x1x1 ─► logits (B, 1, Z, Y, X)
                               │ stride 2                             ▲          ▲
                              enc1 ──────────────────────── gate1 ─► dec1 ──up──┘
                               │                                  ▲    ▲
                              enc2 ──────────────── gate2 ─► dec2 ──up─┘
                               │                          ▲    ▲
                              enc3 ──────── gate3 ─► dec3 ──up─┘
                               │                  ▲    ▲
                              enc4 (bottleneck, C4 = 256) ──┐
                               ⊕ clinical (B, 6) tiled over the bottleneck grid, concatenated,
                                 mixed by a 1x1x1 convolution back to C4 channels ──┘ (g of gate3, input of up3)

* Each encoder level after the first halves the resolution (stride-2 convolution) and
  doubles the channels (``channels`` default (16, 32, 64, 128, 256): four down-sampling
  steps and a 256-channel bottleneck). Every level is two 3x3x3 convolutions (MONAI
  ``Convolution``: conv -> instance norm -> PReLU), or a MONAI ``ResidualUnit`` with
  ``num_res_units`` sub-units.
* Clinical fusion: the clinical vector (B, 6) is broadcast to (B, 6, z4, y4, x4),
  concatenated with the bottleneck features and mixed back to C4 channels with a
  1x1x1 convolution (a 1x1x1 kernel avoids the border artefacts that zero padding
  would add to a spatially constant input).
* Decoder: up-sampling by a 2x2x2 transposed convolution (``upsample="transpose"``) or
  trilinear interpolation followed by a 1x1x1 convolution (``upsample="trilinear"``);
  the encoder skip is gated by an :class:`~mkunet.models.gates.ImmuneAttentionGate`
  whose gating signal is the coarser decoder feature map, and concatenated with the
  up-sampled features; two 3x3x3 convolutions follow.
* Output: **logits**. The sigmoid is applied by the loss (:class:`mkunet.train.losses.DiceBCELoss`
  works on logits) and at inference (``torch.sigmoid(logits) > threshold``).

Ablation switches (paper Table 2): ``clinical_fusion=False`` (no clinical vector at the
bottleneck), ``gate="plain"`` (Oktay gates without LVCR), ``gate="none"`` (plain skip
connections), ``in_channels=1`` (intensity channel only).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from mkunet.models.gates import ImmuneAttentionGate

__all__ = ["MKUNet", "pad_to_multiple", "check_spatial_multiple", "check_layer_arg"]

GATES = ("immune", "plain", "none")
UPSAMPLES = ("transpose", "trilinear")


def check_layer_arg(value: object, name: str) -> tuple | str | None:
    """A MONAI layer-factory argument (``act``, ``norm``) as a name or a ``(name, kwargs)`` tuple.

    JSON lists (a bundle's config) become tuples; None and names pass unchanged. Used by
    :class:`MKUNet` and the baselines of :mod:`mkunet.models.baselines`.

    Args:
        value: ``"INSTANCE"``, ``("GROUP", {"num_groups": 8})``, ``["PRELU", {}]`` or None.
        name: the argument's name, for the error message.

    Raises:
        ValueError: ``value`` is none of these.
    """
    if value is None or isinstance(value, str):
        return value
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], dict)
    ):
        return (value[0], dict(value[1]))
    raise ValueError(f"`{name}` must be a layer name such as 'INSTANCE' or a (name, kwargs) pair, got {value!r}.")


def check_spatial_multiple(shape: Sequence[int], multiple: int, what: str = "image") -> None:
    """Raise a ValueError when the last three sizes of ``shape`` are not multiples of ``multiple``.

    Args:
        shape: tensor shape (..., Z, Y, X).
        multiple: required divisor (16 for four down-sampling steps).
        what: name used in the message.
    """
    spatial = tuple(int(s) for s in shape[-3:])
    if any(s % multiple for s in spatial):
        raise ValueError(
            f"The spatial size (Z, Y, X) of `{what}` must be a multiple of {multiple} for this network "
            f"(one halving per down-sampling step); got shape {tuple(int(s) for s in shape)}. Pad it first with "
            f"`mkunet.models.pad_to_multiple(x, {multiple})`, which also returns the slices that crop the output back."
        )


def pad_to_multiple(
    x: torch.Tensor | np.ndarray, multiple: int = 16, value: float = 0.0
) -> tuple[torch.Tensor | np.ndarray, tuple]:
    """Pad the last three axes (Z, Y, X) of ``x`` up to multiples of ``multiple``.

    Padding is split evenly before and after (the extra voxel, if any, goes after) and
    filled with the constant ``value`` (0 = air / black in the normalised channels).

    Args:
        x: tensor or array of shape (..., Z, Y, X), e.g. (B, C, Z, Y, X) or (C, Z, Y, X).
        multiple: the divisor, e.g. 16 for MK-UNet with four down-sampling steps.
        value: constant fill value.

    Returns:
        ``(padded, crop)``: ``padded`` of the same type with shape (..., Z', Y', X');
        ``crop`` a tuple ``(Ellipsis, slice_z, slice_y, slice_x)`` such that
        ``padded[crop]`` (and any network output on the padded grid, e.g. the logits)
        returns the original grid.

    Example:
        >>> padded, crop = pad_to_multiple(torch.zeros(1, 4, 40, 50, 64), 16)
        >>> tuple(padded.shape), tuple(padded[crop].shape)
        ((1, 4, 48, 64, 64), (1, 4, 40, 50, 64))
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"`multiple` must be a positive integer, got {multiple!r}.")
    if x.ndim < 3:
        raise ValueError(f"`x` must have at least 3 axes (..., Z, Y, X), got shape {tuple(x.shape)}.")
    sizes = tuple(int(s) for s in x.shape[-3:])
    before, after, crop = [], [], []
    for n in sizes:
        total = (-n) % multiple
        b = total // 2
        before.append(b)
        after.append(total - b)
        crop.append(slice(b, b + n))
    if isinstance(x, torch.Tensor):
        # F.pad takes pairs from the last axis backwards: (x_before, x_after, y_before, ...).
        pads = [p for axis in (2, 1, 0) for p in (before[axis], after[axis])]
        padded = F.pad(x, pads, mode="constant", value=value)
    else:
        widths = [(0, 0)] * (x.ndim - 3) + list(zip(before, after))
        padded = np.pad(x, widths, mode="constant", constant_values=value)
    return padded, (Ellipsis, *crop)


def _check_architecture(
    in_channels: int,
    out_channels: int,
    channels: Sequence[int],
    gate: str,
    upsample: str,
    num_res_units: int,
    dropout: float,
) -> tuple[int, ...]:
    """Check :class:`MKUNet`'s layer arguments; ``channels`` as a tuple."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    channels = tuple(channels)
    if len(channels) < 2 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
        raise ValueError(f"`channels` must list at least 2 positive integers (finest level first), got {channels!r}.")
    if gate not in GATES:
        raise ValueError(f"`gate` must be one of {GATES}, got {gate!r}.")
    if upsample not in UPSAMPLES:
        raise ValueError(f"`upsample` must be one of {UPSAMPLES}, got {upsample!r}.")
    if isinstance(num_res_units, bool) or not isinstance(num_res_units, int) or num_res_units < 0:
        raise ValueError(f"`num_res_units` must be an integer >= 0, got {num_res_units!r}.")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
    return channels


def _check_clinical_layout(clinical_features: int, lvcr_index: int, gate: str) -> None:
    """Check the clinical vector's length and, for immune gates, that ``lvcr_index`` is one of its columns."""
    if isinstance(clinical_features, bool) or not isinstance(clinical_features, int) or clinical_features < 1:
        raise ValueError(f"`clinical_features` must be a positive integer, got {clinical_features!r}.")
    if gate == "immune" and not 0 <= lvcr_index < clinical_features:
        raise ValueError(
            f"`lvcr_index` must be a column of the clinical vector (0..{clinical_features - 1}), got {lvcr_index!r}."
        )


def _level_block(
    cin: int,
    cout: int,
    strides: int,
    *,
    kernel_size: int,
    num_res_units: int,
    act: tuple | str | None,
    norm: tuple | str | None,
    dropout: float | None,
) -> nn.Module:
    """One level: two 3-D convolutions (the first with ``strides``), or a MONAI ResidualUnit when ``num_res_units``."""
    if num_res_units > 0:
        return ResidualUnit(
            3,
            cin,
            cout,
            strides=strides,
            kernel_size=kernel_size,
            subunits=num_res_units,
            act=act,
            norm=norm,
            dropout=dropout,
        )
    return nn.Sequential(
        Convolution(3, cin, cout, strides=strides, kernel_size=kernel_size, act=act, norm=norm, dropout=dropout),
        Convolution(3, cout, cout, kernel_size=kernel_size, act=act, norm=norm, dropout=dropout),
    )


def _upsampler(c_low: int, c_skip: int, upsample: str) -> nn.Module:
    """Doubles the resolution and maps ``c_low`` to ``c_skip`` channels (2x2x2 transposed conv or trilinear + 1x1x1)."""
    if upsample == "transpose":
        return Convolution(
            3,
            c_low,
            c_skip,
            strides=2,
            kernel_size=2,
            padding=0,
            output_padding=0,
            is_transposed=True,
            conv_only=True,
        )
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
        Convolution(3, c_low, c_skip, kernel_size=1, conv_only=True),
    )


class MKUNet(nn.Module):
    """MK-UNet: 3-D attention U-Net with clinical fusion and immune-aware attention gates.

    Args:
        in_channels: image channels C (4 for the four-channel preprocessing, 1 for intensity only).
        out_channels: output channels (1: tumour logit).
        clinical_features: length of the clinical vector (6: age, sex, smoking, grade, stage, LVCR).
        channels: feature channels per level, finest first; ``len(channels) - 1`` down-sampling
            steps, so inputs must be multiples of ``2 ** (len(channels) - 1)`` (16 by default).
            The paper doubles channels at each step; we do not enforce it.
        lvcr_index: column of the clinical vector holding the normalised LVCR
            (:data:`mkunet.models.clinical.LVCR_INDEX` = 5).
        clinical_fusion: tile the clinical vector over the bottleneck and concatenate it.
        gate: ``"immune"`` (Oktay gate + LVCR), ``"plain"`` (Oktay gate) or ``"none"`` (no gates).
        upsample: ``"transpose"`` (2x2x2 transposed convolution) or ``"trilinear"``
            (interpolation + 1x1x1 convolution).
        num_res_units: 0: two plain 3x3x3 convolutions per level; >0: a MONAI ``ResidualUnit``
            with that many sub-units.
        kernel_size: convolution kernel size of the level blocks.
        act: activation, MONAI ``Act`` name or (name, kwargs) (default PReLU).
        norm: normalisation, MONAI ``Norm`` name or (name, kwargs) (default instance norm,
            which behaves with the batch size of 2 used for training).
        dropout: dropout probability inside the level blocks.

    Forward:
        ``forward(image, clinical=None, return_attention=False)``

        * ``image``: (B, in_channels, Z, Y, X) float32, Z, Y, X multiples of ``down_factor``
          (otherwise a ValueError; see :func:`pad_to_multiple`).
        * ``clinical``: (B, clinical_features) float32, normalised to [0, 1] by
          :class:`~mkunet.models.clinical.ClinicalEncoder`; required when
          ``clinical_fusion`` is on or ``gate == "immune"`` (ValueError otherwise), ignored
          when neither needs it.
        * In training mode, instance normalisation needs more than one voxel per channel
          at the bottleneck: the input must be larger than ``down_factor`` along at least
          one axis (e.g. 16 x 32 x 32, not 16^3); evaluation works down to 16^3.
        * returns logits (B, out_channels, Z, Y, X), or ``(logits, attention)`` when
          ``return_attention``: ``attention`` is the list of gate maps alpha, finest first,
          each (B, 1, z_i, y_i, x_i) on the grid of its skip connection (z_0 = Z); empty
          when ``gate == "none"``.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 1,
        clinical_features: int = 6,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        lvcr_index: int = 5,
        clinical_fusion: bool = True,
        gate: str = "immune",
        upsample: str = "transpose",
        num_res_units: int = 0,
        kernel_size: int = 3,
        act: tuple | str | list = "PRELU",
        norm: tuple | str | list = "INSTANCE",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = _check_architecture(in_channels, out_channels, channels, gate, upsample, num_res_units, dropout)
        needs_clinical = bool(clinical_fusion) or gate == "immune"
        if needs_clinical:
            _check_clinical_layout(clinical_features, lvcr_index, gate)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.clinical_features = clinical_features
        self.channels = channels
        self.lvcr_index = lvcr_index
        self.clinical_fusion = bool(clinical_fusion)
        self.gate = gate
        self.upsample = upsample
        self.needs_clinical = needs_clinical
        self.down_factor = 2 ** (len(channels) - 1)
        act = check_layer_arg(act, "act")
        norm = check_layer_arg(norm, "norm")
        block = partial(
            _level_block,
            kernel_size=kernel_size,
            num_res_units=num_res_units,
            act=act,
            norm=norm,
            dropout=float(dropout) or None,
        )
        # the layers are declared in this order (it fixes the random initialisation for a seed)
        self.encoder = nn.ModuleList(
            [block(in_channels, channels[0], 1)]
            + [block(channels[i - 1], channels[i], 2) for i in range(1, len(channels))]
        )
        bottom = channels[-1]
        self.fuse: nn.Module | None = None
        if self.clinical_fusion:
            self.fuse = Convolution(3, bottom + clinical_features, bottom, kernel_size=1, act=act, norm=norm)

        ups, gates, decoders = [], [], []
        for i in range(len(channels) - 1):  # level i receives from level i + 1
            c_skip, c_low = channels[i], channels[i + 1]
            ups.append(_upsampler(c_low, c_skip, upsample))
            if gate == "none":
                gates.append(nn.Identity())
            else:
                gates.append(ImmuneAttentionGate(c_skip, c_low, max(c_skip // 2, 1), use_lvcr=(gate == "immune")))
            decoders.append(block(2 * c_skip, c_skip, 1))
        self.ups = nn.ModuleList(ups)
        self.gates = nn.ModuleList(gates)
        self.decoders = nn.ModuleList(decoders)
        self.head = Convolution(3, channels[0], out_channels, kernel_size=1, conv_only=True)

    def _check_clinical(self, clinical: torch.Tensor | None, image: torch.Tensor) -> torch.Tensor:
        if clinical is None:
            reason = "clinical fusion is on" if self.clinical_fusion else "the immune-aware gates need LVCR"
            raise ValueError(
                f"MKUNet was built with clinical_fusion={self.clinical_fusion}, gate={self.gate!r} ({reason}) and "
                f"needs `clinical`, a (B, {self.clinical_features}) float tensor from ClinicalEncoder (column "
                f"{self.lvcr_index} = LVCR; use ClinicalEncoder.lvcr_unknown_value when LVCR is unknown). "
                "Build the model with clinical_fusion=False, gate='plain' or 'none' to run without it."
            )
        clinical = torch.as_tensor(clinical, dtype=image.dtype, device=image.device)
        expected = (image.shape[0], self.clinical_features)
        if tuple(clinical.shape) != expected:
            raise ValueError(
                f"`clinical` must have shape (B, {self.clinical_features}) = {expected} to match the image batch, "
                f"got {tuple(clinical.shape)}."
            )
        if not bool(torch.isfinite(clinical).all()):
            raise ValueError("`clinical` contains NaN or inf; encode the clinical table with ClinicalEncoder first.")
        return clinical

    def forward(
        self, image: torch.Tensor, clinical: torch.Tensor | None = None, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Segment ``image``; see the class docstring for shapes. Returns logits (no sigmoid)."""
        if image.ndim != 5 or image.shape[1] != self.in_channels:
            raise ValueError(
                f"`image` must be (B, {self.in_channels}, Z, Y, X) for this model (in_channels={self.in_channels}), "
                f"got shape {tuple(image.shape)}."
            )
        check_spatial_multiple(image.shape, self.down_factor)
        lvcr = None
        if self.needs_clinical:
            clinical = self._check_clinical(clinical, image)
            if self.gate == "immune":
                lvcr = clinical[:, self.lvcr_index]
        skips = []
        h = image
        for level in self.encoder:
            h = level(h)
            skips.append(h)
        h = skips.pop()
        if self.fuse is not None:
            tiled = clinical[:, :, None, None, None].expand(-1, -1, *h.shape[2:])
            h = self.fuse(torch.cat([h, tiled], dim=1))
        attention: list[torch.Tensor] = []
        for i in reversed(range(len(skips))):
            x = skips[i]
            gate = self.gates[i]
            if isinstance(gate, ImmuneAttentionGate):
                x, alpha = gate(x, h, lvcr)
                attention.append(alpha)
            h = self.decoders[i](torch.cat([x, self.ups[i](h)], dim=1))
        logits = self.head(h)
        if return_attention:
            return logits, attention[::-1]
        return logits

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, gate={self.gate!r}, clinical_fusion={self.clinical_fusion}, "
            f"upsample={self.upsample!r}, down_factor={self.down_factor}"
        )
