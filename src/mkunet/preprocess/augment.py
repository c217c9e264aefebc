"""On-the-fly training augmentation of image channels and tumour mask together (MONAI)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = ["augmentation"]


def _triplet(value: float | Sequence[float], name: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        values = (float(value),) * 3
    else:
        try:
            values = tuple(float(v) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(f"`{name}` must be a number or 3 numbers (z, y, x), got {value!r}.") from None
    if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"`{name}` must be a number or 3 numbers (z, y, x), each finite and >= 0, got {value!r}.")
    return values  # type: ignore[return-value]


def augmentation(
    seed: int = 0,
    rotate_deg: float | Sequence[float] = 15.0,
    scale: float | Sequence[float] = 0.1,
    translate_vox: float | Sequence[float] = 8.0,
    noise_std: float = 0.02,
    affine_prob: float = 1.0,
    noise_prob: float = 0.5,
) -> Callable[[dict], dict]:
    """A seeded MONAI dictionary transform for training samples.

    Applied to ``{"image": (C, z, y, x) float32, "label": (1, z, y, x)}`` (arrays or
    tensors); returns the same keys as plain float32 ``torch.Tensor`` (no MetaTensor).

    1. ``RandAffined`` on image and label together (one draw for both):
       rotation by an angle uniform in :math:`[-r_a, r_a]` about each array axis
       (z, y, x), scaling by :math:`1 + U(-s_a, s_a)`, translation by
       :math:`U(-t_a, t_a)` voxels; image bilinear, label nearest (stays 0/1);
       zero padding outside (0 = air / no edge / no texture in every channel).
       Angles and translations are in voxel space (resample to the model spacing first).
    2. ``RandGaussianNoised`` on the image only: additive N(0, ``noise_std``) noise, with
       probability ``noise_prob``.

    Args:
        seed: seed of the transforms' random state (same seed -> same sequence of draws).
        rotate_deg: maximum rotation in degrees, one value or (z, y, x).
        scale: maximum relative scaling, one value or (z, y, x).
        translate_vox: maximum translation in voxels, one value or (z, y, x).
        noise_std: standard deviation of the noise (image units, i.e. [0, 1] channels).
        affine_prob: probability of applying the affine transform.
        noise_prob: probability of adding noise.

    Returns:
        The transform (a ``monai.transforms.Compose``), callable on one sample dict.
    """
    import torch
    from monai.transforms import Compose, EnsureTyped, RandAffined, RandGaussianNoised

    rotate = tuple(math.radians(v) for v in _triplet(rotate_deg, "rotate_deg"))
    scales = _triplet(scale, "scale")
    shifts = _triplet(translate_vox, "translate_vox")
    for name, value in (("noise_std", noise_std), ("affine_prob", affine_prob), ("noise_prob", noise_prob)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
    if affine_prob > 1 or noise_prob > 1:
        raise ValueError(f"probabilities must be <= 1, got affine_prob={affine_prob!r}, noise_prob={noise_prob!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"`seed` must be an integer, got {seed!r}.")
    transform = Compose(
        [
            EnsureTyped(keys=("image", "label"), data_type="tensor", dtype=None, track_meta=False),
            RandAffined(
                keys=("image", "label"),
                prob=float(affine_prob),
                rotate_range=rotate,
                scale_range=scales,
                translate_range=shifts,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandGaussianNoised(keys=("image",), prob=float(noise_prob), mean=0.0, std=float(noise_std)),
            EnsureTyped(keys=("image", "label"), data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    )
    transform.set_random_state(seed=seed)
    return transform
