"""Candidate tumours of a whole-volume probability map, ranked, so that a user can pick one.

:func:`list_candidates` labels the connected components (26-connectivity) of
``probability >= threshold`` and scores each:

* ``mass_cm3``: the probability mass, ``sum(p) x voxel volume`` (cm^3; the expected tumour
  volume of the component);
* ``inside``: the fraction of that mass inside the lung region (:func:`mkunet.segmentation.lung.lung_region`:
  the lungs closed by a 30 mm ball, where a lung tumour can be: in the lung, on the pleura,
  against the mediastinum);
* **score** ``= mass_cm3 x inside^2`` (cm^3), i.e. ``M_in^2 / M``: the mass inside the region
  times the fraction inside. This is the rule :func:`mkunet.segmentation.infer.keep_tumour_component`
  uses to keep one component (mass in the lung, discounted for components that only graze
  it: heart, chest wall), so the top candidate is the mask that :func:`mkunet.segmentation.infer.segment`
  returns. Without a lung region the score is the mass.

Each candidate also has its voxel volume (``voxel_volume_cm3``, cm^3: voxel count x voxel
volume), max and mean probability, centroid (voxel
(z, y, x) and physical (x, y, z) mm) and a **location**: ``lung`` (half or more of its voxels
in the aerated lungs, :func:`mkunet.segmentation.lung.filled_lungs`), ``pleura`` /
``mediastinum`` (half or more in the lung region but not in the aerated lungs; mediastinum
when its centroid lies in the middle fifth of the lungs' left-right extent, between the two
lungs, else pleura) or ``outside``.

Minimum rule (documented, chosen for kinds of lesions, not for a scan): components smaller
than ``min_voxel_volume_cm3`` = 0.03 cm^3 (a 4 mm nodule; the smallest nodules followed up by the
Fleischner and Lung-RADS guidance are 4-6 mm) are not listed, and a candidate is
``reportable`` when its score is at least ``min_score_cm3`` = 0.03 cm^3 (a 4 mm nodule fully
confident and inside the lung). A tumour-free scan therefore gives no candidate, or only
small low-score ones.

**Image-driven detection** (:func:`detect_lesions`, what :func:`mkunet.segmentation.infer.segment` runs on a
whole volume by default): a lung tumour is a compact soft-tissue mass with aerated lung around at
least part of it. On an isotropic ``grid_mm`` work grid (HU smoothed by a ``smooth_mm`` Gaussian):

1. ``dense`` = soft tissue, ``dense_hu[0] < HU < dense_hu[1]`` (solid and part-solid lesions;
   fat, aerated lung and bone are out; ``dense_hu[1]`` is :data:`mkunet.constants.BONE_HU`);
2. the Euclidean distance transform of ``dense`` (mm) gives each dense voxel the radius of the
   largest ball of soft tissue centred there; its local maxima (over ``peak_mm``) of at least
   ``min_radius_mm`` inside the lung region (:func:`mkunet.segmentation.lung.lung_region`) are the candidate
   centres, radius r. A peak inside the inscribed ball of a larger one is dropped;
3. ``air_fraction``: the fraction of ``shell_points`` points on the sphere of radius
   r + ``shell_mm`` around the centre that lie in aerated lung (:func:`mkunet.segmentation.lung.lung_mask`;
   room air does not count). A nodule in the parenchyma scores about 0.6-1, a pleural or
   mediastinal one about 0.2-0.5, the heart, liver and chest wall about 0;
4. ``blobness`` = |lambda_3| / |lambda_1|, the ratio of the smallest to the largest eigenvalue
   of the Hessian of the image at scale sigma = r / sqrt(3) (Li, Sone & Doi, Med Phys
   30:2040, 2003: a ball has three equal negative curvatures, a vessel one near zero, a
   plate two), 0 unless all three are negative;
5. a candidate needs ``air_fraction >= min_air`` and ``blobness >= min_blobness``; its
   **score** (cm^3) is the inscribed ball's volume (``ball_volume_cm3``), 4/3 pi r^3, times
   ``min(1, blobness / 0.5) x min(1, air_fraction / 0.5)``: the larger, the rounder and the
   more surrounded by lung, the more suspicious. ``reportable`` when r >= ``report_radius_mm``
   (4 mm) and the score is at least ``min_score_cm3`` (0.3 cm^3): a round nodule of about
   10 mm or more with lung around half of it, RECIST 1.1's smallest measurable lesion (the
   inscribed radius on a 2 mm grid reads 0.5-1 mm under the true one). Smaller, flatter or
   more enclosed candidates are listed but not segmented: in a tumour-free chest they are
   vessel junctions (scores 0.1-0.3 cm^3 in the real scans we measured).

6. a **ground-glass pass** (candidates of kind ``"ground-glass"``) repeats 2-5 with tissue
   above ``ground_glass_min_hu`` (:data:`mkunet.constants.GROUND_GLASS_MIN_HU`, -700 HU) for
   lesions fainter than ``dense_hu[0]``, from an inscribed radius of
   ``ground_glass_min_radius_mm`` (5 mm;
   smaller ground-glass peaks are mostly vessels blurred by thick slices): a peak counts only
   when the median HU of its inscribed ball is below ``dense_hu[0]`` (else it is solid: the
   first pass's), it is not within a solid candidate's ball + ``shell_mm`` (a part-solid
   lesion's halo), and it has at least
   ``ground_glass_min_air`` (0.6) lung around it (a ground-glass nodule lies in the parenchyma; the
   dependent lung's density gradient lies against the wall); its score is multiplied by
   ``ground_glass_weight`` (0.5), so that a solid mass ranks above a ground-glass one of the same size.

Every parameter is set for a kind of lesion (the sizes above), none for a particular scan.
Limits: ground-glass lesions fainter than ``ground_glass_min_hu`` after smoothing, and a tumour that
merges with the mediastinum or chest wall over most of its surface (its centre then lies outside
the lung region, or no aerated lung surrounds it) are not found; a tumour-free chest still lists
vessel junctions of 6-9 mm (small scores) that a reader dismisses.

Arrays are (z, y, x); spacings (z, y, x) mm; physical points (x, y, z) mm (LPS).

Orientation: the lungs' slice outline and their left-right midline take array axis 0 as
cranio-caudal and axis 2 as left-right, i.e. the canonical orientation of
:mod:`mkunet.segmentation.orientation` (LPS). :func:`detect_lesions` guarantees it (it runs on
the canonical reorientation of its input and gives ``centroid_zyx`` on the input's grid;
``centroid_mm`` does not depend on the grid), and so does :func:`mkunet.segmentation.infer.segment`
for the network's candidates of :func:`list_candidates`; a direct caller of
:func:`list_candidates` should pass a canonical volume (:func:`mkunet.segmentation.orientation.to_canonical`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mkunet.checks import check_int, check_number, check_pair
from mkunet.constants import BONE_HU, GROUND_GLASS, GROUND_GLASS_MIN_HU, LUNG_HU, SOLID
from mkunet.segmentation.orientation import canonical_orientation
from mkunet.volume import Volume

__all__ = [
    "Candidate",
    "DetectionParams",
    "detect_lesions",
    "list_candidates",
    "write_candidates",
    "format_candidates",
    "MIN_VOXEL_VOLUME_CM3",
    "MIN_SCORE_CM3",
    "LOCATIONS",
]

MIN_VOXEL_VOLUME_CM3 = 0.03
"""Network components smaller than this (cm^3, voxel count x voxel volume) are not listed: a 4 mm nodule."""
MIN_SCORE_CM3 = 0.03
"""Network candidates scoring less (cm^3) are not ``reportable``: a 4 mm nodule, fully confident, in the lung."""
LOCATIONS = ("lung", "pleura", "mediastinum", "outside")


@dataclass
class Candidate:
    """One candidate lesion (module docstring for the definitions).

    Attributes:
        rank: 1 = best score.
        score: network candidates ``mass_cm3 x inside^2``; image candidates the inscribed
            ball's volume x the blobness and air factors (cm^3).
        mass_cm3: network: probability mass (cm^3); image: the inscribed ball's volume.
        inside: fraction of the mass inside the lung region (0-1; 1 without a region, and for
            image candidates, whose centre is in the region by construction).
        voxel_volume_cm3: network candidates: voxel count x voxel volume (cm^3); None for image
            candidates (they have no voxels: see ``ball_volume_cm3``).
        max_probability, mean_probability: over the component's voxels (network candidates;
            None for image candidates).
        centroid_zyx: voxel indices (z, y, x) (image candidates: the centre of the inscribed ball,
            the deepest point of the lesion, where :func:`mkunet.segmentation.infer.segment` seeds it).
        centroid_mm: physical point (x, y, z) mm.
        location: one of :data:`LOCATIONS`.
        reportable: see the module docstring.
        source: ``"network"`` (:func:`list_candidates`) or ``"image"`` (:func:`detect_lesions`).
        radius_mm: image candidates: the inscribed radius r (mm).
        blobness: image candidates: |lambda_3| / |lambda_1| of the Hessian at scale r / sqrt(3).
        air_fraction: image candidates: aerated lung on the sphere of radius r + ``shell_mm``.
        kind: image candidates: ``"solid"`` or ``"ground-glass"`` (the pass that found it; spelled as
            :data:`mkunet.constants.LESION_KINDS`); None for network candidates.
        ball_volume_cm3: image candidates: the inscribed ball's volume, 4/3 pi r^3 (cm^3; a lower
            bound of the lesion's); None for network candidates.
    """

    rank: int
    score: float
    mass_cm3: float
    inside: float
    voxel_volume_cm3: float | None
    max_probability: float | None
    mean_probability: float | None
    centroid_zyx: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]
    location: str
    reportable: bool
    source: str = "network"
    radius_mm: float | None = None
    blobness: float | None = None
    air_fraction: float | None = None
    kind: str | None = None
    ball_volume_cm3: float | None = None

    def describe(self) -> str:
        """One line: rank, score, volume, location, centroid."""
        x, y, z = self.centroid_mm
        if self.source == "image":
            what = (
                f"{self.kind}, inscribed radius {self.radius_mm:.1f} mm, blobness {self.blobness:.2f}, "
                f"lung around {self.air_fraction:.2f}"
            )
        else:
            what = f"{self.voxel_volume_cm3:.2f} cm3, p max {self.max_probability:.2f} mean {self.mean_probability:.2f}"
        return f"#{self.rank} score {self.score:.3f} cm3, {what}, {self.location}, at ({x:.1f}, {y:.1f}, {z:.1f}) mm"


def _location(
    in_lungs: float, in_region: float, size: float, centroid_x: float, lung_mid: float | None, lung_half: float | None
) -> str:
    """``lung`` / ``pleura`` / ``mediastinum`` / ``outside`` from the voxel counts (module docstring)."""
    if in_lungs >= 0.5 * size:
        return "lung"
    if in_region >= 0.5 * size:
        central = lung_mid is not None and abs(centroid_x - lung_mid) <= 0.2 * max(lung_half or 0.0, 1.0)
        return "mediastinum" if central else "pleura"
    return "outside"


def _lung_midline(lungs: np.ndarray) -> tuple[float | None, float | None]:
    """Centre and half-width of the lungs' left-right (x index) extent; (None, None) without lungs."""
    xs = np.nonzero(lungs.any(axis=(0, 1)))[0]
    if not xs.size:
        return None, None
    return 0.5 * float(xs.min() + xs.max()), 0.5 * float(xs.max() - xs.min())


def list_candidates(
    volume: Volume,
    probability: np.ndarray,
    *,
    threshold: float = 0.5,
    region: np.ndarray | None = None,
    lungs: np.ndarray | None = None,
    min_voxel_volume_cm3: float = MIN_VOXEL_VOLUME_CM3,
    min_score_cm3: float = MIN_SCORE_CM3,
    max_candidates: int = 20,
) -> list[Candidate]:
    """The ranked candidate components of ``probability`` on ``volume``'s grid (module docstring).

    Args:
        volume: the CT (HU; its grid and geometry).
        probability: float (z, y, x) tumour probability on the same grid.
        threshold: the components are those of ``probability >= threshold``.
        region: bool (z, y, x) lung region, or None (computed: :func:`mkunet.segmentation.lung.lung_region`).
        lungs: bool (z, y, x) aerated lungs, or None (computed: :func:`mkunet.segmentation.lung.filled_lungs`).
        min_voxel_volume_cm3: smaller components (voxel count x voxel volume, cm^3) are not listed.
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
    ids = [k for k in range(1, n + 1) if sizes[k] * voxel_cm3 >= min_voxel_volume_cm3]
    if not ids:
        return []
    from mkunet.segmentation.lung import filled_lungs, lung_region

    if region is None:
        region = lung_region(volume.array, volume.spacing)
    if lungs is None:
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
    mid, half = _lung_midline(lungs)
    has_region = bool(region.any())
    out = []
    for k, c, m in zip(ids, centroids, pmax):
        total = float(mass[k])
        inside = float(mass_in[k] / total) if has_region and total > 0 else 1.0
        location = _location(
            float(in_lungs[k]), float(in_region[k]) if has_region else 0.0, float(sizes[k]), float(c[2]), mid, half
        )
        score = total * voxel_cm3 * inside * inside
        point = volume.index_to_physical(np.asarray(c, float))
        out.append(
            Candidate(
                rank=0,
                score=float(score),
                mass_cm3=float(total * voxel_cm3),
                inside=float(inside),
                voxel_volume_cm3=float(sizes[k] * voxel_cm3),
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


@dataclass(frozen=True)
class DetectionParams:
    """Parameters of :func:`detect_lesions` (module docstring; mm, HU, cm^3).

    Attributes:
        grid_mm: isotropic work grid (mm).
        smooth_mm: Gaussian sigma applied to the HU before thresholding (mm).
        dense_hu: (low, high) HU of soft tissue after smoothing. Default (``LUNG_HU - 50``,
            :data:`~mkunet.constants.BONE_HU`): the smoothing (``smooth_mm``) pulls a small
            nodule's rim toward the lung's HU, so soft tissue starts 50 HU below the lung /
            soft-tissue boundary :data:`~mkunet.constants.LUNG_HU`.
        min_radius_mm: smallest inscribed radius of a candidate (mm; 3 mm = a 6 mm nodule).
        peak_mm: width of the neighbourhood a distance-transform peak is the maximum of (mm).
        shell_mm: the air fraction is read this far outside the inscribed ball (mm).
        shell_points: points on that sphere.
        min_air: least aerated-lung fraction on the shell.
        min_blobness: least |lambda_3| / |lambda_1|.
        report_radius_mm: a candidate is reportable from this inscribed radius (mm).
        min_score_cm3: and from this score (cm^3; module docstring).
        max_candidates: at most this many are returned (the best).
        ground_glass_min_hu: lower HU of the ground-glass pass (None: no such pass). Default
            :data:`mkunet.constants.GROUND_GLASS_MIN_HU`.
        ground_glass_min_air: least aerated-lung fraction on the shell for a ground-glass candidate.
        ground_glass_weight: factor on a ground-glass candidate's score.
        ground_glass_min_radius_mm: smallest inscribed radius of a ground-glass candidate (mm).

    Raises:
        ValueError: a field has the wrong type or is out of range; the message quotes the value.
    """

    grid_mm: float = 2.0
    smooth_mm: float = 1.0
    dense_hu: tuple[float, float] = (LUNG_HU - 50.0, BONE_HU)
    min_radius_mm: float = 3.0
    peak_mm: float = 10.0
    shell_mm: float = 3.0
    shell_points: int = 256
    min_air: float = 0.15
    min_blobness: float = 0.2
    report_radius_mm: float = 4.0
    min_score_cm3: float = 0.3
    max_candidates: int = 20
    ground_glass_min_hu: float | None = GROUND_GLASS_MIN_HU
    ground_glass_min_air: float = 0.6
    ground_glass_weight: float = 0.5
    ground_glass_min_radius_mm: float = 5.0

    def __post_init__(self) -> None:
        own = "DetectionParams"
        for name in ("grid_mm", "min_radius_mm", "peak_mm", "shell_mm", "ground_glass_min_radius_mm"):
            check_number(own, name, getattr(self, name), low=0.0, low_open=True, unit="mm")
        for name in ("smooth_mm", "report_radius_mm"):
            check_number(own, name, getattr(self, name), low=0.0, unit="mm")
        check_number(own, "min_score_cm3", self.min_score_cm3, low=0.0, unit="cm^3")
        low, _ = check_pair(own, "dense_hu", self.dense_hu, unit="HU")
        check_number(
            own,
            "ground_glass_min_hu",
            self.ground_glass_min_hu,
            high=low,
            high_open=True,
            unit="HU (dense_hu[0])",
            allow_none=True,
        )
        check_number(own, "ground_glass_weight", self.ground_glass_weight, low=0.0, high=1.0, low_open=True)
        for name in ("min_air", "min_blobness", "ground_glass_min_air"):
            check_number(own, name, getattr(self, name), low=0.0, high=1.0)
        check_int(own, "shell_points", self.shell_points, low=16)
        check_int(own, "max_candidates", self.max_candidates, low=0)


def _work_grid(volume: Volume, grid_mm: float) -> Volume:
    """``volume`` resampled (linear) to ``grid_mm`` isotropic, cut to the extent its voxel centres cover.

    The cut keeps resampling from padding the far faces with the image minimum, which would join
    lungs that the scan's field of view cuts to the room air.
    """
    from mkunet.preprocess.resample import resample

    grid = resample(volume, (grid_mm, grid_mm, grid_mm))
    keep = [
        min(m, int(np.floor((n - 1) * s / grid_mm + 1e-6)) + 1)
        for n, s, m in zip(volume.shape, volume.spacing, grid.shape)
    ]
    if list(grid.shape) == keep:
        return grid
    return Volume(
        np.ascontiguousarray(grid.array[: keep[0], : keep[1], : keep[2]]),
        grid.spacing,
        origin=grid.origin,
        direction=grid.direction,
    )


def _ball_values(image: np.ndarray, centre: np.ndarray, radius_vox: float) -> np.ndarray:
    """The values of ``image`` in the ball of ``radius_vox`` voxels around ``centre`` (clipped to the image)."""
    r = max(int(np.ceil(radius_vox)), 0)
    grid = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1].reshape(3, -1).T
    offsets = grid[(grid**2).sum(axis=1) <= radius_vox**2 + 1e-9]
    points = np.clip(centre + offsets, 0, np.asarray(image.shape) - 1)
    return image[tuple(points.T)]


def _hessian_eigenvalues(image: np.ndarray, point: np.ndarray, sigma_vox: float) -> np.ndarray:
    """Eigenvalues (ascending) of the scale-normalised Hessian (sigma^2 H) of ``image`` at ``point`` (voxels)."""
    from scipy import ndimage

    half = int(np.ceil(3.0 * sigma_vox)) + 2
    lo = np.maximum(point - half, 0)
    hi = np.minimum(point + half + 1, image.shape)
    crop = image[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    at = tuple(int(v) for v in point - lo)
    h = np.zeros((3, 3))
    for i in range(3):
        for j in range(i, 3):
            order = [0, 0, 0]
            order[i] += 1
            order[j] += 1
            value = ndimage.gaussian_filter(crop, sigma_vox, order=order, mode="nearest")[at]
            h[i, j] = h[j, i] = float(value) * sigma_vox * sigma_vox
    return np.linalg.eigvalsh(h)


def _peak_points(peaks: np.ndarray) -> np.ndarray:
    """The peak voxels to examine, (n, 3) (z, y, x), plateau by plateau (empty without peaks).

    A plateau of equal peaks (a ball centred between voxels) is one peak: only its (up to) 4
    voxels nearest its centroid are examined, nearest first (the first that passes the tests is
    the candidate).
    """
    from scipy import ndimage

    plateaus, n_plateaus = ndimage.label(peaks, structure=np.ones((3, 3, 3), bool))
    if n_plateaus == 0:
        return np.zeros((0, 3), int)
    all_points = np.argwhere(peaks)
    ids = plateaus[peaks]
    centroids = np.asarray(ndimage.center_of_mass(peaks, plateaus, index=np.arange(1, n_plateaus + 1)))
    gap = ((all_points - centroids[ids - 1]) ** 2).sum(axis=1)
    by_plateau = np.lexsort((gap, ids))
    starts = np.r_[0, np.flatnonzero(np.diff(ids[by_plateau])) + 1]
    rank_in = np.arange(by_plateau.size) - np.repeat(starts, np.diff(np.r_[starts, by_plateau.size]))
    return all_points[by_plateau[rank_in < 4]]


def _image_candidate(
    point: np.ndarray,
    r: float,
    blob: float,
    air: float,
    weight: float,
    kind: str,
    location: str,
    work: Volume,
    volume: Volume,
    p: DetectionParams,
) -> Candidate:
    """The candidate of a detector peak: ``point`` on the work grid, inscribed radius ``r`` (mm); its
    score is the ball's volume x ``weight`` x the blobness and air factors (module docstring)."""
    ball = 4.0 / 3.0 * np.pi * r**3 / 1000.0
    score = weight * ball * min(1.0, blob / 0.5) * min(1.0, air / 0.5)
    phys = work.index_to_physical(point.astype(np.float64))
    native = np.clip(volume.physical_to_index(phys), 0, np.asarray(volume.shape) - 1)
    return Candidate(
        rank=0,
        score=float(score),
        mass_cm3=float(ball),
        inside=1.0,
        voxel_volume_cm3=None,
        max_probability=None,
        mean_probability=None,
        centroid_zyx=(float(native[0]), float(native[1]), float(native[2])),
        centroid_mm=(float(phys[0]), float(phys[1]), float(phys[2])),
        location=location,
        reportable=bool(r >= p.report_radius_mm and score >= p.min_score_cm3),
        source="image",
        radius_mm=r,
        blobness=blob,
        air_fraction=air,
        kind=kind,
        ball_volume_cm3=float(ball),
    )


@canonical_orientation("volume")  # runs on the canonical (LPS) grid; centroid_zyx on the user's
def detect_lesions(volume: Volume, params: DetectionParams | None = None) -> list[Candidate]:
    """Image-driven candidate lung lesions of a whole CT, ranked (module docstring, "Image-driven detection").

    Args:
        volume: the CT (HU), any spacing.
        params: :class:`DetectionParams` (defaults: set for kinds of lesions).

    Returns:
        candidates with ``source="image"``, best score first, ranks 1, 2, ...; their
        ``centroid_zyx`` are (z, y, x) indices on ``volume``'s grid. Empty when the scan shows
        no lung or no soft-tissue ball in it qualifies.

    Raises:
        ValueError: ``volume`` is not a :class:`mkunet.volume.Volume`.
    """
    from scipy import ndimage

    from mkunet.segmentation.lesion import fibonacci_directions
    from mkunet.segmentation.lung import fill_slices, lung_mask, lung_region

    if not isinstance(volume, Volume):
        raise ValueError(f"`volume` must be a mkunet Volume, got {type(volume).__name__} (use mkunet.io.read_volume).")
    p = params or DetectionParams()
    g = float(p.grid_mm)
    work = _work_grid(volume, g)
    spacing = (g, g, g)
    hu = work.array.astype(np.float32, copy=False)
    smooth = ndimage.gaussian_filter(hu, p.smooth_mm / g) if p.smooth_mm > 0 else hu
    aerated = lung_mask(hu, spacing)
    if not aerated.any():
        return []
    region = lung_region(hu, spacing, fill="volume")
    directions = fibonacci_directions(int(p.shell_points))
    shape = np.asarray(hu.shape)
    filled = fill_slices(aerated)  # the lungs' outline per axial slice
    mid, half = _lung_midline(aerated)
    size = max(3, 2 * int(round(0.5 * p.peak_mm / g)) + 1)
    found: list[Candidate] = []
    balls: list[tuple[np.ndarray, float]] = []  # every solid candidate's centre and radius, for the second pass

    def one_pass(low_hu: float, min_air: float, weight: float, kind: str, min_radius: float) -> None:
        tissue = (smooth > low_hu) & (smooth < p.dense_hu[1])
        depth = ndimage.distance_transform_edt(tissue, sampling=spacing).astype(np.float32)
        peaks = (depth == ndimage.maximum_filter(depth, size=size)) & (depth >= min_radius) & region
        points = _peak_points(peaks)
        if not len(points):
            return
        radii = depth[tuple(points.T)]
        order = np.argsort(-radii, kind="stable")
        seen: list[tuple[np.ndarray, float, bool]] = []  # centre, radius, passed
        for point, r in zip(points[order], radii[order]):
            r = float(r)
            if any(float(np.linalg.norm((point - q) * g)) < rq and (passed or rq > r + 1e-3) for q, rq, passed in seen):
                continue  # inside the inscribed ball of a candidate, or of a deeper peak (a tie does not suppress)
            seen.append((point, r, False))
            if kind != SOLID:
                if any(float(np.linalg.norm((point - q) * g)) < rq + p.shell_mm for q, rq in balls):
                    continue  # the solid pass has this lesion (a part-solid lesion's halo)
                if float(np.median(_ball_values(smooth, point, r / g))) >= p.dense_hu[0]:
                    continue  # solid inside: the solid pass's business
            shell = np.rint(point + directions * (r + p.shell_mm) / g).astype(int)
            ok = np.all((shell >= 0) & (shell < shape), axis=1)
            air = float(aerated[tuple(shell[ok].T)].sum()) / len(directions)
            if air < min_air:
                continue
            lam = _hessian_eigenvalues(smooth, point, max(r / np.sqrt(3.0) / g, 1.0))
            blob = float(abs(lam[2]) / abs(lam[0])) if lam[2] < 0 else 0.0
            if blob < p.min_blobness:
                continue
            seen[-1] = (point, r, True)
            if kind == SOLID:
                balls.append((point, r))
            location = _location(
                float(filled[tuple(point)]), float(region[tuple(point)]), 1.0, float(point[2]), mid, half
            )
            found.append(_image_candidate(point, r, blob, air, weight, kind, location, work, volume, p))

    one_pass(p.dense_hu[0], p.min_air, 1.0, SOLID, p.min_radius_mm)
    if p.ground_glass_min_hu is not None:
        one_pass(
            float(p.ground_glass_min_hu),
            p.ground_glass_min_air,
            p.ground_glass_weight,
            GROUND_GLASS,
            max(p.ground_glass_min_radius_mm, p.min_radius_mm),
        )
    found.sort(key=lambda cand: -cand.score)
    found = found[: max(int(p.max_candidates), 0)]
    for rank, cand in enumerate(found, start=1):
        cand.rank = rank
    return found


def format_candidates(candidates: Sequence[Candidate], top: int = 5) -> list[str]:
    """Lines for a report or the CLI: the ``top`` best candidates (or a line saying there are none).

    A candidate that is not ``reportable`` (too small, or scoring under the minimum) is marked so.
    """
    if not candidates:
        return ["no candidate lesion found"]
    return [c.describe() + ("" if c.reportable else " (not reportable)") for c in list(candidates)[:top]]


def write_candidates(candidates: Sequence[Candidate], path: str | Path) -> Path:
    """Write ``candidates.csv``: one row per candidate (the :class:`Candidate` fields; centroids split by axis)."""
    path = Path(path)
    fields = [
        "rank",
        "score",
        "mass_cm3",
        "inside",
        "voxel_volume_cm3",
        "ball_volume_cm3",
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
        "source",
        "kind",
        "radius_mm",
        "blobness",
        "air_fraction",
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
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path
