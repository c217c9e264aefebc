"""The model's input pipeline: optional adaptive window, then 4 (or 1) channels."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from mkunet.preprocess.channels import DEFAULT_WINDOW, as_array, check_window, four_channels, intensity_channel
from mkunet.preprocess.window import AdaptiveWindow
from mkunet.volume import Volume

__all__ = ["Preprocessor"]


class Preprocessor:
    """HU volume -> model input (C, z, y, x) float32 in [0, 1]; stored with a trained model.

    Args:
        channels: 4 (intensity, edges, denoised, texture: :func:`four_channels`) or 1
            (intensity only: the ablation baseline).
        adaptive_window: optional :class:`AdaptiveWindow` applied to the HU volume
            first; it is fitted by :meth:`fit`.
        window: ``(low, high)`` HU window mapped to [0, 1].
    """

    def __init__(
        self,
        channels: int = 4,
        adaptive_window: AdaptiveWindow | None = None,
        window: tuple[float, float] = DEFAULT_WINDOW,
    ):
        if channels not in (1, 4) or isinstance(channels, bool):
            raise ValueError(
                f"Preprocessor: `channels` must be 4 (four-channel input) or 1 (intensity only), got {channels!r}."
            )
        if adaptive_window is not None and not isinstance(adaptive_window, AdaptiveWindow):
            raise ValueError(
                f"Preprocessor: `adaptive_window` must be an AdaptiveWindow or None, got {type(adaptive_window).__name__}."  # noqa: E501
            )
        self.channels = int(channels)
        self.adaptive_window = adaptive_window
        self.window = check_window(window)

    @property
    def in_channels(self) -> int:
        """Number of channels the model receives (4 or 1)."""
        return self.channels

    def fit(self, volumes: Iterable[Volume | np.ndarray], masks: Iterable[np.ndarray]) -> Preprocessor:
        """Fit the adaptive window (if any) on training volumes and tumour masks; returns self."""
        if self.adaptive_window is not None:
            self.adaptive_window.fit(volumes, masks)
        return self

    def __call__(self, volume: Volume | np.ndarray) -> np.ndarray:
        """Model input for one HU volume.

        Args:
            volume: Volume or (z, y, x) HU array.

        Returns:
            float32 (C, z, y, x) in [0, 1], C = :attr:`in_channels`.

        Raises:
            NotFittedError: the adaptive window is not fitted.
        """
        array = as_array(volume)
        if self.adaptive_window is not None:
            array = self.adaptive_window.transform(array)
        if self.channels == 1:
            return intensity_channel(array, self.window)[None]
        return four_channels(array, self.window)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable configuration (with the fitted window statistics)."""
        return {
            "channels": self.channels,
            "window": list(self.window),
            "adaptive_window": None if self.adaptive_window is None else self.adaptive_window.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        """Rebuild from :meth:`to_dict` output."""
        if not isinstance(data, dict):
            raise ValueError(f"Preprocessor.from_dict expects a dict, got {type(data).__name__}.")
        unknown = set(data) - {"channels", "window", "adaptive_window"}
        if unknown:
            raise ValueError(f"Preprocessor.from_dict: unknown keys {sorted(unknown)}.")
        aw = data.get("adaptive_window")
        return cls(
            channels=data.get("channels", 4),
            adaptive_window=None if aw is None else AdaptiveWindow.from_dict(aw),
            window=tuple(data.get("window", DEFAULT_WINDOW)),
        )

    def __repr__(self) -> str:
        return f"Preprocessor(channels={self.channels}, adaptive_window={self.adaptive_window!r}, window={self.window})"
