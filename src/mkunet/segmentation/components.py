"""Connected components: the component at a point, else the one nearest to it.

One rule, used by the network's post-processing (:func:`mkunet.segmentation.network.keep_tumour_component`,
a click or the previous mask's centroid) and by the image lesion model
(:mod:`mkunet.segmentation.lesion`, the lesion at the seed):

* the component whose label is at the point (rounded to the nearest voxel, clipped to the array);
* if the point lies in the background, the component of the foreground voxel nearest to it,
  the distance measured in mm when a spacing is given (voxel units otherwise); ties go to the
  first such voxel in C order.

Arrays are (z, y, x) label maps as :func:`scipy.ndimage.label` returns them (0 = background);
points are continuous array indices (z, y, x).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["component_at", "nearest_component"]


def nearest_component(
    labels: np.ndarray,
    point_zyx: Sequence[float] | np.ndarray,
    spacing_zyx: Sequence[float] | np.ndarray | None = None,
) -> int:
    """Label of the foreground voxel nearest to ``point_zyx``.

    Args:
        labels: int (z, y, x) label map (0 = background) with at least one labelled voxel.
        point_zyx: the point as array indices (z, y, x), continuous allowed.
        spacing_zyx: (z, y, x) voxel size in mm for the distance, or None for voxel units.

    Returns:
        The label (> 0).

    Raises:
        ValueError: ``labels`` has no labelled voxel.
    """
    coords = np.argwhere(labels)  # (n, 3) z, y, x
    if len(coords) == 0:
        raise ValueError(f"nearest_component: the label map (shape {labels.shape}) has no component.")
    diff = coords - np.asarray(point_zyx)
    if spacing_zyx is not None:
        diff = diff * np.asarray(spacing_zyx, dtype=np.float64)
    d2 = (diff**2).sum(axis=1)
    return int(labels[tuple(coords[int(np.argmin(d2))])])


def component_at(
    labels: np.ndarray,
    point_zyx: Sequence[float] | np.ndarray,
    spacing_zyx: Sequence[float] | np.ndarray | None = None,
) -> int:
    """Label of the component at ``point_zyx``, else of the one nearest to it (module doc).

    Args:
        labels: int (z, y, x) label map (0 = background) with at least one labelled voxel.
        point_zyx: the point as array indices (z, y, x), continuous allowed (rounded to a voxel,
            clipped to the array, to read the label there).
        spacing_zyx: (z, y, x) voxel size in mm for the nearest-voxel distance, or None for voxel units.

    Returns:
        The label (> 0).
    """
    point = np.asarray(point_zyx)
    idx = tuple(np.clip(np.rint(point).astype(int), 0, np.asarray(labels.shape) - 1))
    return int(labels[idx]) or nearest_component(labels, point, spacing_zyx)
