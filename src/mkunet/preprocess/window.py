"""Adaptive HU windowing learnt from annotated tumour voxels (paper 2.1.2, SPEC "Adaptive windowing")."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from mkunet.volume import Volume

__all__ = ["AdaptiveWindow", "NotFittedError"]


class NotFittedError(ValueError, RuntimeError):
    """An adaptive window (or preprocessor) used before it was fitted."""


_MODES = ("symmetric", "paper")


class AdaptiveWindow:
    """Keep the HU range typical of tumour tissue, set everything else to a background value.

    :meth:`fit` learns the mean :math:`\\mu` and standard deviation :math:`\\sigma`
    (population, ddof=0) of the HU values of every annotated tumour voxel of the
    training set (pooled over all voxels, not averaged per scan). At inference no
    annotation is needed: the stored :math:`\\mu, \\sigma` are applied.

    * ``mode="symmetric"`` (default, our reading): keep voxels with
      :math:`\\mu - k\\sigma \\le HU \\le \\mu + k\\sigma`.
    * ``mode="paper"`` (literal rule, for the ablation): keep voxels with
      :math:`HU \\ge T = \\mu + k\\sigma` (paper: k = 1.5). This removes most of the
      tumour itself; it is offered only to compare.

    Every other voxel is set to ``background`` HU (default -1000, air, which is also
    the lower bound of the default lung window, so it maps to 0 in the intensity channel).

    Args:
        k: half-width of the kept range in standard deviations (> 0).
        mode: ``"symmetric"`` or ``"paper"``.
        background: HU value given to removed voxels.

    Attributes:
        mean_: :math:`\\mu` in HU (after :meth:`fit`).
        std_: :math:`\\sigma` in HU (after :meth:`fit`).
        n_voxels_: number of tumour voxels the statistics come from.
    """

    def __init__(self, k: float = 1.5, mode: Literal["symmetric", "paper"] = "symmetric", background: float = -1000.0):
        try:
            k = float(k)
            background = float(background)
        except (TypeError, ValueError):
            raise ValueError(
                f"AdaptiveWindow: `k` and `background` must be numbers, got k={k!r}, background={background!r}."
            ) from None
        if not (math.isfinite(k) and k > 0):
            raise ValueError(f"AdaptiveWindow: `k` must be a finite number > 0 (standard deviations), got {k!r}.")
        if not math.isfinite(background):
            raise ValueError(f"AdaptiveWindow: `background` must be a finite HU value, got {background!r}.")
        if mode not in _MODES:
            raise ValueError(f"AdaptiveWindow: `mode` must be one of {_MODES}, got {mode!r}.")
        self.k = k
        self.mode = mode
        self.background = background
        self.mean_: float | None = None
        self.std_: float | None = None
        self.n_voxels_: int = 0

    # ------------------------------------------------------------------ fitting
    def fit(self, volumes: Iterable[Volume | np.ndarray], masks: Iterable[np.ndarray]) -> AdaptiveWindow:
        """Learn :math:`\\mu, \\sigma` of tumour HU over all training scans (streaming).

        Per-scan count, mean and sum of squared deviations are combined with Chan et
        al.'s pairwise update in float64 scalars, so volumes can be a generator and no
        scan is held longer than needed.

        Args:
            volumes: Volumes or (z, y, x) HU arrays.
            masks: matching bool (z, y, x) tumour masks (same shapes, same order).

        Returns:
            self.

        Raises:
            ValueError: shapes differ, the numbers of volumes and masks differ, or no
                tumour voxel at all (an individual empty mask only warns and is skipped).
        """
        n_total, mean, m2 = 0, 0.0, 0.0
        volumes, masks = iter(volumes), iter(masks)
        index = 0
        sentinel = object()
        while True:
            volume, mask = next(volumes, sentinel), next(masks, sentinel)
            if volume is sentinel and mask is sentinel:
                break
            if volume is sentinel or mask is sentinel:
                raise ValueError(
                    f"AdaptiveWindow.fit: got a different number of volumes and masks (stopped at item {index}); "
                    "pass one mask per volume."
                )
            array = volume.array if isinstance(volume, Volume) else np.asarray(volume)
            mask = np.asarray(mask)
            name = getattr(volume, "patient_id", None) or f"item {index}"
            if array.shape != mask.shape:
                raise ValueError(
                    f"AdaptiveWindow.fit: mask shape {mask.shape} differs from volume shape {array.shape} ({name})."
                )
            values = array[mask.astype(bool, copy=False)].astype(np.float64)
            index += 1
            if values.size == 0:
                warnings.warn(f"AdaptiveWindow.fit: empty tumour mask for {name}; skipped.", stacklevel=2)
                continue
            if not np.isfinite(values).all():
                raise ValueError(f"AdaptiveWindow.fit: NaN or infinite HU inside the tumour mask of {name}.")
            n_b, mean_b = values.size, float(values.mean())
            m2_b = float(np.square(values - mean_b).sum())
            n_new = n_total + n_b
            delta = mean_b - mean
            mean += delta * n_b / n_new
            m2 += m2_b + delta * delta * n_total * n_b / n_new
            n_total = n_new
        if n_total == 0:
            raise ValueError(
                "AdaptiveWindow.fit: no tumour voxel in any mask; give annotated training scans "
                "(or use no adaptive window)."
            )
        self.mean_, self.std_, self.n_voxels_ = mean, math.sqrt(m2 / n_total), n_total
        return self

    @property
    def fitted(self) -> bool:
        """True after :meth:`fit` (or :meth:`from_dict` of a fitted window)."""
        return self.mean_ is not None and self.std_ is not None

    @property
    def bounds(self) -> tuple[float, float]:
        """Kept HU range ``(low, high)``; ``high`` is ``inf`` in paper mode."""
        self._check_fitted()
        assert self.mean_ is not None and self.std_ is not None
        if self.mode == "paper":
            return self.mean_ + self.k * self.std_, math.inf
        return self.mean_ - self.k * self.std_, self.mean_ + self.k * self.std_

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(
                "AdaptiveWindow is not fitted: call .fit(volumes, masks) on training scans first, "
                "or load a fitted one with AdaptiveWindow.from_dict()."
            )

    # ------------------------------------------------------------------ applying
    def transform(self, volume: Volume | np.ndarray) -> Volume | np.ndarray:
        """Set voxels outside the kept range to ``background``.

        Args:
            volume: Volume or (z, y, x) HU array (not modified).

        Returns:
            A new Volume on the same grid (or a float32 array when given an array).

        Raises:
            NotFittedError: not fitted (a ValueError and RuntimeError subclass).
        """
        lo, hi = self.bounds
        array = volume.array if isinstance(volume, Volume) else np.asarray(volume, dtype=np.float32)
        keep = array >= np.float32(lo)
        if math.isfinite(hi):
            keep &= array <= np.float32(hi)
        out = np.where(keep, array, np.float32(self.background)).astype(np.float32, copy=False)
        return volume.with_array(out) if isinstance(volume, Volume) else out

    __call__ = transform

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters and fitted statistics."""
        return {
            "k": self.k,
            "mode": self.mode,
            "background": self.background,
            "mean": self.mean_,
            "std": self.std_,
            "n_voxels": self.n_voxels_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptiveWindow:
        """Rebuild from :meth:`to_dict` output."""
        if not isinstance(data, dict):
            raise ValueError(f"AdaptiveWindow.from_dict expects a dict, got {type(data).__name__}.")
        unknown = set(data) - {"k", "mode", "background", "mean", "std", "n_voxels"}
        if unknown:
            raise ValueError(f"AdaptiveWindow.from_dict: unknown keys {sorted(unknown)}.")
        window = cls(
            k=data.get("k", 1.5), mode=data.get("mode", "symmetric"), background=data.get("background", -1000.0)
        )
        mean, std = data.get("mean"), data.get("std")
        if (mean is None) != (std is None):
            raise ValueError("AdaptiveWindow.from_dict: give both 'mean' and 'std' or neither.")
        if mean is not None:
            mean, std = float(mean), float(std)
            if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
                raise ValueError(f"AdaptiveWindow.from_dict: bad statistics mean={mean!r}, std={std!r}.")
            window.mean_, window.std_ = mean, std
            window.n_voxels_ = int(data.get("n_voxels", 0))
        return window

    def __repr__(self) -> str:
        stats = f", mean={self.mean_:.1f} HU, std={self.std_:.1f} HU" if self.fitted else ", unfitted"
        return f"AdaptiveWindow(k={self.k}, mode={self.mode!r}, background={self.background}{stats})"
