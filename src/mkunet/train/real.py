"""Training cases from real backgrounds: synthetic tumours inserted into real CT.

For each :class:`~mkunet.train.data.Background`, the scan (and its ignore mask) is resampled
once to the training spacing, and ``cases_per_background`` cases are made from it by
:func:`mkunet.synth.insert.insert_tumours` (1 to ``max_tumours`` lesions each; lesion types
and placements drawn), on the training grid, each with a generator seeded by
``(seed, k, crc32(name))``: the cases depend only on the seed, the background and ``k``.
A background with ``insert`` False gives one tumour-free case (a pure negative).

Each case keeps the inserted tumours as its label, the ignore region as
:attr:`PreparedCase.ignore` (the loss skips it), and hard-negative centres from real
anatomy: every 4th voxel of the lungs and of a 25 mm shell around them (heart, hilum,
vessels, diaphragm, chest wall) inside the body, minus tumour and ignore.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from mkunet.train.data import Background, PreparedCase, ScanRecord

__all__ = ["prepare_real_cases", "load_background"]


def load_background(background: Background, spacing: Sequence[float]) -> tuple[Any, np.ndarray]:
    """The background's CT in the canonical orientation that segmentation runs in
    (:func:`mkunet.segmentation.orientation.to_canonical`, LPS), resampled (linear) to ``spacing``
    (z, y, x) mm, and its bool ignore mask there. The network therefore learns the axes it sees
    at inference, whatever the scan's stored orientation."""
    from mkunet.io import read_mask, read_volume
    from mkunet.models.bundle import resample_onto
    from mkunet.preprocess import resample
    from mkunet.segmentation.orientation import to_canonical

    stored = read_volume(background.image)
    volume, back = to_canonical(stored)
    ignore = (
        np.zeros(volume.shape, bool)
        if background.ignore is None
        else back.to_canonical(np.asarray(read_mask(background.ignore, stored), bool))
    )
    if np.allclose(volume.spacing, spacing, atol=1e-4):
        return volume, ignore
    out = resample(volume, tuple(float(s) for s in spacing))
    return out, resample_onto(ignore.astype(np.float32), volume, out, "linear") > 0.01


def prepare_real_cases(
    backgrounds: Sequence[Background],
    preprocessor: Any,
    spacing: Sequence[float],
    seed: int,
    cases_per_background: int = 4,
    max_tumours: int = 3,
    clinical: np.ndarray | None = None,
    diameter_mm: tuple[float, float] = (6.0, 50.0),
) -> list[PreparedCase]:
    """Inserted-tumour training cases at ``spacing`` (z, y, x) mm (module docstring).

    Returns:
        one :class:`PreparedCase` per case, ``background`` set to the background's name,
        ``clinical`` the given default vector (the encoder's training median) or None.
    """
    from scipy import ndimage

    from mkunet.segmentation.lung import filled_lungs
    from mkunet.synth.insert import IGNORE_LABEL, insert_tumours

    cases: list[PreparedCase] = []
    for bg in backgrounds:
        volume, ignore = load_background(bg, spacing)
        sp = np.asarray(volume.spacing, float)
        lungs = filled_lungs(volume.array, volume.spacing)
        near = (
            ndimage.distance_transform_edt(~lungs, sampling=sp) <= 25.0 if lungs.any() else np.ones(lungs.shape, bool)
        )
        body = ndimage.binary_fill_holes(volume.array > -500) | lungs
        shell = near & body
        n_cases = cases_per_background if bg.insert else 1
        for k in range(n_cases):
            rng = np.random.default_rng([int(seed), k, zlib.crc32(bg.name.encode())])
            if bg.insert and lungs.any():
                n = int(rng.integers(1, max_tumours + 1))
                image, labels = insert_tumours(volume, lungs, rng, n_tumours=n, ignore=ignore, diameter_mm=diameter_mm)
            else:
                image = volume
                labels = np.where(ignore, IGNORE_LABEL, 0).astype(np.uint8)
            label = labels == 1
            ign = labels == IGNORE_LABEL
            channels = np.asarray(preprocessor(image), dtype=np.float32)
            negatives = np.flatnonzero(shell & ~label & ~ign)[::4].astype(np.int64)
            record = ScanRecord(f"real:{bg.name}", k, None, bg.image, bg.ignore or bg.image)
            cases.append(
                PreparedCase(
                    record,
                    channels,
                    label,
                    clinical,
                    np.flatnonzero(label).astype(np.int64),
                    None,
                    negatives,
                    ign if ign.any() else None,
                    bg.name,
                )
            )
    return cases
