"""Candidate tumours of a whole-volume probability map, ranked, so that a user can pick one.

:func:`list_candidates` labels the connected components (26-connectivity) of
``probability >= threshold`` and scores each:

* ``mass_cm3``: the probability mass, ``sum(p) x voxel volume`` (cm^3; the expected tumour
  volume of the component);
* ``inside``: the fraction of that mass inside the lung region (:func:`mkunet.lung.lung_region`:
  the lungs closed by a 30 mm ball, where a lung tumour can be: in the lung, on the pleura,
  against the mediastinum);
* **score** ``= mass_cm3 x inside^2`` (cm^3), i.e. ``M_in^2 / M``: the mass inside the region
  times the fraction inside. This is the rule :func:`mkunet.infer.keep_tumour_component`
  uses to keep one component (mass in the lung, discounted for components that only graze
  it: heart, chest wall), so the top candidate is the mask that :func:`mkunet.infer.segment`
  returns. Without a lung region the score is the mass.

Each candidate also has its volume (cm^3), max and mean probability, centroid (voxel
(z, y, x) and physical (x, y, z) mm) and a **location**: ``lung`` (half or more of its voxels
in the aerated lungs, :func:`mkunet.synth.insert.filled_lungs`), ``pleura`` /
``mediastinum`` (half or more in the lung region but not in the aerated lungs; mediastinum
when its centroid lies in the middle fifth of the lungs' left-right extent, between the two
lungs, else pleura) or ``outside``.

Minimum rule (documented, chosen for kinds of lesions, not for a scan): components smaller
than ``min_volume_cm3`` = 0.03 cm^3 (a 4 mm nodule; the smallest nodules followed up by the
Fleischner and Lung-RADS guidance are 4-6 mm) are not listed, and a candidate is
``reportable`` when its score is at least ``min_score_cm3`` = 0.03 cm^3 (a 4 mm nodule fully
confident and inside the lung). A tumour-free scan therefore gives no candidate, or only
small low-score ones.

Arrays are (z, y, x); spacings (z, y, x) mm; physical points (x, y, z) mm (LPS).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mkunet.volume import Volume

__all__ = [
    "Candidate",
    "list_candidates",
    "write_candidates",
    "format_candidates",
    "MIN_VOLUME_CM3",
    "MIN_SCORE_CM3",
    "LOCATIONS",
]

MIN_VOLUME_CM3 = 0.03
MIN_SCORE_CM3 = 0.03
LOCATIONS = ("lung", "pleura", "mediastinum", "outside")


@dataclass
class Candidate:
    """One candidate component (module docstring for the definitions).

    Attributes:
        rank: 1 = best score.
        score: ``mass_cm3 x inside^2`` (cm^3).
        mass_cm3: probability mass (cm^3).
        inside: fraction of the mass inside the lung region (0-1; 1 without a region).
        volume_cm3: voxel count x voxel volume (cm^3).
        max_probability, mean_probability: over the component's voxels.
        centroid_zyx: voxel indices (z, y, x).
        centroid_mm: physical point (x, y, z) mm.
        location: one of :data:`LOCATIONS`.
        reportable: ``score >= min_score_cm3``.
    """

    rank: int
    score: float
    mass_cm3: float
    inside: float
    volume_cm3: float
    max_probability: float
    mean_probability: float
    centroid_zyx: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]
    location: str
    reportable: bool

    def describe(self) -> str:
        """One line: rank, score, volume, location, centroid."""
        x, y, z = self.centroid_mm
        return (
            f"#{self.rank} score {self.score:.3f} cm3, {self.volume_cm3:.2f} cm3, p max {self.max_probability:.2f} "
            f"mean {self.mean_probability:.2f}, {self.location}, at ({x:.1f}, {y:.1f}, {z:.1f}) mm"
        )


def list_candidates(
    volume: Volume,
    probability: np.ndarray,
    *,
    threshold: float = 0.5,
    region: np.ndarray | None = None,
    lungs: np.ndarray | None = None,
    min_volume_cm3: float = MIN_VOLUME_CM3,
    min_score_cm3: float = MIN_SCORE_CM3,
    max_candidates: int = 20,
) -> list[Candidate]:
    """The ranked candidate components of ``probability`` on ``volume``'s grid (module docstring).

    Args:
        volume: the CT (HU; its grid and geometry).
        probability: float (z, y, x) tumour probability on the same grid.
        threshold: the components are those of ``probability >= threshold``.
        region: bool (z, y, x) lung region, or None (computed: :func:`mkunet.lung.lung_region`).
        lungs: bool (z, y, x) aerated lungs, or None (computed: :func:`mkunet.synth.insert.filled_lungs`).
        min_volume_cm3: smaller components are not listed.
        min_score_cm3: candidates scoring less are listed with ``reportable`` False.
        max_candidates: at most this many (the best) are returned.

    Returns:
        candidates sorted by score (best first), ranks 1, 2, ...; empty when nothing is
        above the threshold.

    Raises:
        ValueError: ``probability`` (or a mask) has another shape than the volume, or the
            threshold is not in (0, 1).
    """
    from scipy import ndimage

    prob = np.asarray(probability, np.float32)
    if prob.shape != volume.shape:
        raise ValueError(f"`probability` has shape {prob.shape}, the volume {volume.shape}; give it on the scan grid.")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"`threshold` must be in (0, 1), got {threshold!r}.")
    binary = prob >= threshold
    if not binary.any():
        return []
    labels, n = ndimage.label(binary, structure=np.ones((3, 3, 3), bool))
    voxel_cm3 = volume.voxel_volume_mm3 / 1000.0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    ids = [k for k in range(1, n + 1) if sizes[k] * voxel_cm3 >= min_volume_cm3]
    if not ids:
        return []
    if region is None:
        from mkunet.lung import lung_region

        region = lung_region(volume.array, volume.spacing)
    if lungs is None:
        from mkunet.synth.insert import filled_lungs

        lungs = filled_lungs(volume.array, volume.spacing)
    for name, arr in (("region", region), ("lungs", lungs)):
        if np.shape(arr) != volume.shape:
            raise ValueError(f"`{name}` has shape {np.shape(arr)}, the volume {volume.shape}.")
    region = np.asarray(region, bool)
    lungs = np.asarray(lungs, bool)
    flat = labels[binary]
    weights = prob[binary]
    mass = np.bincount(flat, weights=weights, minlength=n + 1)
    mass_in = np.bincount(flat, weights=weights * region[binary], minlength=n + 1)
    in_lungs = np.bincount(flat, weights=lungs[binary].astype(np.float64), minlength=n + 1)
    in_region = np.bincount(flat, weights=region[binary].astype(np.float64), minlength=n + 1)
    pmax = ndimage.maximum(prob, labels, index=ids)
    centroids = ndimage.center_of_mass(binary, labels, index=ids)
    xs = np.nonzero(lungs.any(axis=(0, 1)))[0]
    mid, half = (0.5 * (xs.min() + xs.max()), 0.5 * (xs.max() - xs.min())) if xs.size else (None, None)
    has_region = bool(region.any())
    out = []
    for k, c, m in zip(ids, centroids, pmax):
        total = float(mass[k])
        inside = float(mass_in[k] / total) if has_region and total > 0 else 1.0
        if in_lungs[k] >= 0.5 * sizes[k]:
            location = "lung"
        elif has_region and in_region[k] >= 0.5 * sizes[k]:
            central = mid is not None and abs(float(c[2]) - mid) <= 0.2 * max(half or 0.0, 1.0)
            location = "mediastinum" if central else "pleura"
        else:
            location = "outside"
        score = total * voxel_cm3 * inside * inside
        point = volume.index_to_physical(np.asarray(c, float))
        out.append(
            Candidate(
                rank=0,
                score=float(score),
                mass_cm3=float(total * voxel_cm3),
                inside=float(inside),
                volume_cm3=float(sizes[k] * voxel_cm3),
                max_probability=float(m),
                mean_probability=float(total / sizes[k]),
                centroid_zyx=(float(c[0]), float(c[1]), float(c[2])),
                centroid_mm=(float(point[0]), float(point[1]), float(point[2])),
                location=location,
                reportable=bool(score >= min_score_cm3),
            )
        )
    out.sort(key=lambda cand: -cand.score)
    out = out[: max(int(max_candidates), 0)]
    for rank, cand in enumerate(out, start=1):
        cand.rank = rank
    return out


def format_candidates(candidates: Sequence[Candidate], top: int = 5) -> list[str]:
    """Lines for a report or the CLI: the ``top`` best candidates (or a line saying there are none)."""
    if not candidates:
        return ["no candidate component above the threshold"]
    return [c.describe() + ("" if c.reportable else " (below the minimum score)") for c in list(candidates)[:top]]


def write_candidates(candidates: Sequence[Candidate], path: str | Path) -> Path:
    """Write ``candidates.csv``: one row per candidate (the :class:`Candidate` fields; centroids split by axis)."""
    path = Path(path)
    fields = [
        "rank",
        "score",
        "mass_cm3",
        "inside",
        "volume_cm3",
        "max_probability",
        "mean_probability",
        "centroid_z",
        "centroid_y",
        "centroid_x",
        "centroid_x_mm",
        "centroid_y_mm",
        "centroid_z_mm",
        "location",
        "reportable",
    ]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for c in candidates:
            row = asdict(c)
            zyx, xyz = row.pop("centroid_zyx"), row.pop("centroid_mm")
            row.update(
                centroid_z=zyx[0],
                centroid_y=zyx[1],
                centroid_x=zyx[2],
                centroid_x_mm=xyz[0],
                centroid_y_mm=xyz[1],
                centroid_z_mm=xyz[2],
            )
            writer.writerow(row)
    return path
