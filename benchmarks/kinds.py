"""Yardstick of issue #26: one click and whole volume, per location and kind, on tumours inserted into real CT.

Every case is one synthetic tumour inserted by :func:`mkunet.synth.insert.insert_tumours` into one of the real
chest CTs of ``../shared/data``, scored twice:

* **one click**: ``mkunet.segment(volume, roi=mkunet.Seed(click_mm), uncertainty="off")`` with the click at the
  truth's deepest voxel (the maximum of its distance transform, mm); Dice and volume ratio (predicted / true)
  against the inserted truth;
* **whole volume**: ``mkunet.segment(volume, uncertainty="off")`` (detection, no click). The real tumours of the
  backgrounds (their ignore regions, below) are lesions too, not false positives: when the whole-volume mask is
  one of them (more than half of it in the ignore region), the first reportable candidate whose centre is
  outside the ignore region is segmented from its centre instead (what the whole-volume run does for its first
  candidate), i.e. the score is "the inserted tumour is the first reportable lesion besides the known real
  ones". **Found** = whole-volume Dice >= 0.5 with the truth. The CSV also gives ``top_in_truth`` (the first
  reportable candidate outside the ignore region has its centre voxel in the truth) and ``truth_rank`` (the rank
  among all candidates of the first one whose centre voxel is in the truth).

Cells: location (``free``, ``pleura``, ``fissure``, ``vessel``, ``mediastinum``: :data:`mkunet.synth.insert.PLACEMENTS`)
x kind (``solid``, ``part-solid``, ``ground-glass``, ``spiculated``, ``necrotic``:
:data:`mkunet.synth.insert.LESION_TYPES`), ``--per-cell`` cases each (default 5), from a fixed seed.

**Backgrounds** (:data:`BACKGROUNDS`): pyradiomics lung1 and lung2, the IBSI CT phantom, LIDC-IDRI-0314 and the
4D-CT phase 00. Their real tumours and unknown regions are ignore regions, as in ``benchmarks/train.py``
(``write_backgrounds``): the pyradiomics and IBSI tumour labels grown by 10 mm; LIDC the LUNA16 nodule (ball of
its radius + 10 mm) and a ball of max(10, d/2 + 10) mm around each excluded mark; the 4D-CT 30 mm balls around
the README's point and the round lesion. Inserted tumours keep 5 mm away from them. The TotalSegmentator example
is left out: a 3 mm whole-body scan of 30 slices whose lungs reach the image border (no room for a placement).
Case ``i`` of cell ``j`` uses background ``(i + j) mod n`` (spread over the backgrounds; a cell's first cases are
the same for every ``--per-cell``), and its own generator ``default_rng([seed, j, i, attempt])``.

**Crop** (the case volume, also the insertion window): a slab of ``--slab`` mm (160) along z centred on a random
lung slice (one whose lung area is at least 30 % of the scan's largest), the whole scan when shorter, by the
lungs' in-plane bounding box in that slab + 20 mm (whole slices of both lungs, so that medial and lateral mean
what they should, and the detector sees the whole chest). The tumour's centre keeps at least its radius + 25 mm
from the slab's z faces (the outer 20 mm of the slab are passed to the insertion as ignore), and at least its
radius + 15 mm from the scan's own in-plane border where the lungs reach it (IBSI, lung1: a 10 mm band there is
ignored too), so that no tumour is cut by the image border. A placement the slab
cannot hold (:func:`insert_tumours` falls back to ``free``) is retried on the next background (3 attempts); the
location used is in the CSV (``location_used``), and the table counts cells by the location asked.

**Diameters** (equivalent diameter, log-uniform, :data:`DIAMETERS_MM`): the issue's population is masses of
10-400 cm3 (27-91 mm) plus smaller ground-glass and part-solid nodules. Solid, spiculated and necrotic: 27-70 mm
(10-180 cm3; the top of the range is cut at 70 mm because a larger mass does not fit inside the lungs of the
cropped public scans and the 160 mm slab); part-solid 12-35 mm (0.9-22 cm3); ground glass 8-30 mm (0.3-14 cm3).

**Realism** (``--realism``): for the mediastinum and pleura cases, the inserted truth against the real masses
(IBSI GTV against the mediastinum, lung2 on the chest wall; lung1 for reference): mean and SD of HU inside (voxels
at least 2 mm deep), the edge blur (10-90 % rise distance of the in-plane HU profile across the lung-facing
boundary, mm, median over the edge voxels' own profiles) and the contact fraction (share of the surface voxels
whose 2 mm outside neighbourhood is mostly soft tissue above -300 HU, 1.0 mm smoothed).
``--figures DIR`` writes PNGs of a few inserted mediastinal masses next to the IBSI GTV (axial slices, lung
and mediastinal windows, truth contour).

:func:`inserted_cases` is the reusable case generator (also for the simulated-user benchmark of issue #24): it
yields :class:`KindCase` (volume, truth, ignore, kind, location, click at the truth's deepest voxel).

Arrays are (z, y, x), spacings (z, y, x) mm, physical points (x, y, z) mm LPS; volumes in cm3, times in seconds.

Runtime: about 14 s a case (insertion + click + whole volume) and 1.5 min to load the five backgrounds once; the
full grid (5 per cell, 124 cases: one insertion found no room) took 33 min on 2 shared CPU cores (load 1-5).

Usage::

    python benchmarks/kinds.py [--per-cell 5] [--seed 2026] [--threads 2] [--out rows.csv]
        [--cells mediastinum:solid pleura:necrotic ...] [--backgrounds lung2 lidc0314 ...]
        [--realism] [--figures /tmp/kinds_png] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

LOCATIONS = ("free", "pleura", "fissure", "vessel", "mediastinum")
KINDS = ("solid", "part-solid", "ground-glass", "spiculated", "necrotic")
DIAMETERS_MM = {
    "solid": (27.0, 70.0),
    "spiculated": (27.0, 70.0),
    "necrotic": (27.0, 70.0),
    "part-solid": (12.0, 35.0),
    "ground-glass": (8.0, 30.0),
}
"""Equivalent-diameter range (mm, log-uniform) per kind (module docstring)."""
BACKGROUNDS = {
    "lung1": "pyradiomics/lung1_image.nrrd",
    "lung2": "pyradiomics/lung2_image.nrrd",
    "ibsi": "ibsi/ct_phantom/image.nii.gz",
    "lidc0314": "realct/lidc0314.nii.gz",
    "chest4dct": "realct/chest4dct_phase00.nii.gz",
}
LABELS = {
    "lung1": "pyradiomics/lung1_label.nrrd",
    "lung2": "pyradiomics/lung2_label.nrrd",
    "ibsi": "ibsi/ct_phantom/mask.nii.gz",
}
CHEST4DCT_POINTS_MM = ((-53.5, 73.8, -37.6), (-86.0, 84.0, -8.0))
SLAB_MM = 160.0
MARGIN_MM = 20.0
Z_BAND_MM = 20.0
EDGE_BAND_MM = 10.0
ATTEMPTS = 3
FOUND_DICE = 0.5


@dataclass
class Background:
    """A real chest CT ready for insertion: volume, filled lungs, scanner noise/PSF, ignore (real tumours)."""

    name: str
    volume: object  # mkunet.volume.Volume
    lungs: np.ndarray
    scanner: object  # mkunet.synth.scanner.ScannerParams
    ignore: np.ndarray


@dataclass
class KindCase:
    """One inserted case: the cropped volume and its truth, and where the click goes.

    Attributes:
        volume: the crop (:class:`mkunet.volume.Volume`, HU), with the tumour painted in.
        truth: bool (z, y, x) on the crop, the inserted tumour.
        ignore: bool (z, y, x) on the crop, the background's real tumours and unknown regions.
        click_zyx: the truth's deepest voxel (maximum of its distance transform, mm).
        click_mm: that voxel as a physical point (x, y, z) mm.
    """

    case_id: str
    background: str
    kind: str
    location: str
    location_used: str
    diameter_mm: float
    truth_cm3: float
    volume: object
    truth: np.ndarray
    ignore: np.ndarray
    click_zyx: tuple[int, int, int]
    click_mm: tuple[float, float, float]
    crop_zyx: tuple[tuple[int, int], ...] = field(default=())
    seconds: float = 0.0


def _balls(volume, centres_xyz, radii_mm) -> np.ndarray:
    zz, yy, xx = np.indices(volume.shape, sparse=True)
    mask = np.zeros(volume.shape, bool)
    sz, sy, sx = volume.spacing
    for c, r in zip(centres_xyz, radii_mm):
        kz, ky, kx = volume.physical_to_index(np.asarray(c, float))
        mask |= ((zz - kz) * sz) ** 2 + ((yy - ky) * sy) ** 2 + ((xx - kx) * sx) ** 2 <= r * r
    return mask


def _ignore_mask(name: str, volume, data: Path) -> np.ndarray:
    """The background's real tumours and unknown regions (as ``benchmarks/train.py``'s ``write_backgrounds``)."""
    from scipy import ndimage

    from mkunet.io import read_mask

    if name in LABELS:
        truth = read_mask(data / LABELS[name], volume)
        return ndimage.distance_transform_edt(~truth, sampling=volume.spacing) <= 10.0
    if name == "lidc0314":
        centres, radii = [], []
        for table, nodule in (("lidc0314_luna16_nodules.csv", True), ("lidc0314_luna16_excluded.csv", False)):
            with open(data / "realct" / table, newline="") as f:
                for row in csv.DictReader(f):
                    centres.append((float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])))
                    d = float(row["diameter_mm"])
                    radii.append(d / 2 + 10.0 if nodule else max(10.0, d / 2 + 10.0))
        return _balls(volume, centres, radii)
    if name == "chest4dct":
        return _balls(volume, CHEST4DCT_POINTS_MM, (30.0, 30.0))
    return np.zeros(volume.shape, bool)


def load_background(name: str, data: Path) -> Background:
    """Read one background of :data:`BACKGROUNDS`: filled lungs, scanner (noise, PSF) and ignore region."""
    from mkunet.io import read_volume
    from mkunet.segmentation.lung import filled_lungs
    from mkunet.synth.insert import estimate_scanner

    volume = read_volume(data / BACKGROUNDS[name])
    lungs = filled_lungs(volume.array, volume.spacing)
    scanner = estimate_scanner(volume.array, volume.spacing, lungs)
    return Background(name, volume, lungs, scanner, _ignore_mask(name, volume, data))


def _window(bg: Background, rng: np.random.Generator, slab_mm: float) -> tuple[slice, slice, slice]:
    """The crop: a ``slab_mm`` z slab centred on a random well-filled lung slice x the lungs' in-plane box + 20 mm."""
    sz, sy, sx = bg.volume.spacing
    area = bg.lungs.sum(axis=(1, 2))
    good = np.nonzero(area >= 0.3 * area.max())[0]
    zc = int(good[int(rng.integers(len(good)))])
    half = int(round(0.5 * slab_mm / sz))
    nz = bg.lungs.shape[0]
    z0 = max(0, min(zc - half, nz - 2 * half))
    z1 = min(nz, z0 + 2 * half)
    inplane = np.argwhere(bg.lungs[z0:z1].any(axis=0))
    lo, hi = inplane.min(0), inplane.max(0) + 1
    py, px = int(math.ceil(MARGIN_MM / sy)), int(math.ceil(MARGIN_MM / sx))
    ny, nx = bg.lungs.shape[1:]
    return (
        slice(z0, z1),
        slice(max(0, int(lo[0]) - py), min(ny, int(hi[0]) + py)),
        slice(max(0, int(lo[1]) - px), min(nx, int(hi[1]) + px)),
    )


def deepest_voxel(mask: np.ndarray, spacing) -> tuple[int, int, int]:
    """The voxel (z, y, x) of ``mask`` farthest from its border (mm): the simulated user's first click."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    k = np.unravel_index(int(np.argmax(depth)), mask.shape)
    return int(k[0]), int(k[1]), int(k[2])


def insert_case(
    bg: Background,
    kind: str,
    location: str,
    rng: np.random.Generator,
    *,
    slab_mm: float = SLAB_MM,
    diameter_mm: tuple[float, float] | None = None,
    case_id: str = "",
) -> KindCase | None:
    """Insert one tumour of ``kind`` at ``location`` into a crop of ``bg`` (module docstring); None if none fits."""
    from mkunet.synth.insert import InsertedLesion, insert_tumours

    t0 = time.perf_counter()
    sl = _window(bg, rng, slab_mm)
    sub = bg.volume.array[sl]
    origin = bg.volume.index_to_physical([s.start for s in sl])
    crop = replace(bg.volume, array=np.array(sub, np.float32), origin=tuple(float(v) for v in origin))
    ignore = bg.ignore[sl]
    keep_off = ignore.copy()
    band = int(round(Z_BAND_MM / crop.spacing[0]))
    if crop.shape[0] > 2 * band + 4:
        keep_off[:band] = True
        keep_off[-band:] = True
    for axis in (1, 2):  # the scan's own in-plane border, where the lungs reach it (cropped scans)
        edge = int(round(EDGE_BAND_MM / crop.spacing[axis]))
        index = [slice(None)] * 3
        if sl[axis].start == 0:
            index[axis] = slice(0, edge)
            keep_off[tuple(index)] = True
        if sl[axis].stop == bg.volume.shape[axis]:
            index[axis] = slice(crop.shape[axis] - edge, None)
            keep_off[tuple(index)] = True
    lo, hi = diameter_mm or DIAMETERS_MM[kind]
    d = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    lesions: list[InsertedLesion] = []
    out, labels = insert_tumours(
        crop,
        bg.lungs[sl],
        rng,
        lesion_types=[kind],
        placements=[location],
        diameter_mm=(d, d),
        ignore=keep_off,
        scanner=bg.scanner,
        lesions=lesions,
    )
    truth = labels == 1
    if not lesions or not truth.any():
        return None
    click = deepest_voxel(truth, out.spacing)
    click_mm = tuple(float(v) for v in out.index_to_physical(np.asarray(click, float)))
    return KindCase(
        case_id=case_id,
        background=bg.name,
        kind=kind,
        location=location,
        location_used=lesions[0].placement_used,
        diameter_mm=d,
        truth_cm3=float(truth.sum()) * out.voxel_volume_mm3 / 1000.0,
        volume=out,
        truth=truth,
        ignore=ignore,
        click_zyx=click,
        click_mm=(click_mm[0], click_mm[1], click_mm[2]),
        crop_zyx=tuple((int(s.start), int(s.stop)) for s in sl),
        seconds=time.perf_counter() - t0,
    )


def inserted_cases(
    data: Path,
    *,
    cells: Sequence[tuple[str, str]] | None = None,
    per_cell: int = 5,
    seed: int = 2026,
    backgrounds: Sequence[str] | None = None,
    slab_mm: float = SLAB_MM,
) -> Iterator[KindCase]:
    """Yield ``per_cell`` inserted cases for every (location, kind) cell, deterministic for a seed.

    Args:
        data: the ``shared/data`` folder.
        cells: (location, kind) pairs; default every pair of :data:`LOCATIONS` x :data:`KINDS`.
        per_cell: cases per cell.
        seed: the fixed seed; case ``i`` of cell ``j`` (index in the full 25-cell grid) draws from
            ``default_rng([seed, j, i, attempt])``, so a subset of cells or a smaller ``per_cell`` gives the
            same cases as the full run.
        backgrounds: names from :data:`BACKGROUNDS` (default all); loaded once, on first use.
        slab_mm: z extent of the crop (mm).

    Yields:
        :class:`KindCase`, cell by cell. A case whose location does not fit is retried on the next background
        (3 attempts); the last attempt is yielded whatever ``location_used`` it got. Cases that could not be
        inserted at all are skipped (a warning).
    """
    names = list(backgrounds or BACKGROUNDS)
    for name in names:
        if name not in BACKGROUNDS:
            raise ValueError(f"unknown background {name!r}; use some of {list(BACKGROUNDS)}.")
    grid = [(loc, kind) for loc in LOCATIONS for kind in KINDS]
    cells = list(cells or grid)
    loaded: dict[str, Background] = {}
    for loc, kind in cells:
        j = grid.index((loc, kind))
        for i in range(per_cell):
            case = None
            for attempt in range(ATTEMPTS):
                name = names[(i + j + attempt) % len(names)]
                if name not in loaded:
                    loaded[name] = load_background(name, data)
                rng = np.random.default_rng([seed, j, i, attempt])
                case = insert_case(loaded[name], kind, loc, rng, slab_mm=slab_mm, case_id=f"{loc}:{kind}:{i}")
                if case is not None and case.location_used == loc:
                    break
            if case is None:
                warnings.warn(f"case {loc}:{kind}:{i}: no tumour could be inserted", stacklevel=2)
                continue
            yield case


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * float((a & b).sum()) / s if s else 1.0


def _centre_voxel(cand, shape) -> tuple[int, ...]:
    return tuple(int(v) for v in np.clip(np.rint(cand.centroid_zyx), 0, np.asarray(shape) - 1))


def score_case(case: KindCase) -> dict:
    """One click and whole volume on one case (module docstring): Dice, volume ratio, found, seconds."""
    import mkunet

    row: dict = {
        "case": case.case_id,
        "background": case.background,
        "location": case.location,
        "location_used": case.location_used,
        "kind": case.kind,
        "diameter_mm": round(case.diameter_mm, 1),
        "truth_cm3": round(case.truth_cm3, 3),
        "click_x": round(case.click_mm[0], 1),
        "click_y": round(case.click_mm[1], 1),
        "click_z": round(case.click_mm[2], 1),
        "insert_s": round(case.seconds, 2),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty results are in the notes
        t0 = time.perf_counter()
        seg = mkunet.segment(case.volume, roi=mkunet.Seed(case.click_mm), uncertainty="off")
        row["click_s"] = round(time.perf_counter() - t0, 2)
        row["click_dice"] = round(_dice(seg.mask, case.truth), 4)
        row["click_volume_ratio"] = round(seg.volume_cm3 / case.truth_cm3, 3)
        t0 = time.perf_counter()
        whole = mkunet.segment(case.volume, uncertainty="off")
        mask, via = whole.mask, "whole"
        reportable = [c for c in whole.candidates if c.reportable]
        outside = [c for c in reportable if not case.ignore[_centre_voxel(c, case.truth.shape)]]
        if mask.any() and (mask & case.ignore).sum() > 0.5 * mask.sum():
            mask, via = np.zeros_like(mask), "none besides the real ones"
            if outside:
                again = mkunet.segment(case.volume, roi=mkunet.Seed(outside[0].centroid_mm), uncertainty="off")
                mask, via = again.mask, "first outside the real ones"
        row["whole_s"] = round(time.perf_counter() - t0, 2)
    row["whole_dice"] = round(_dice(mask, case.truth), 4)
    row["whole_found"] = row["whole_dice"] >= FOUND_DICE
    row["whole_via"] = via
    row["top_in_truth"] = bool(outside) and bool(case.truth[_centre_voxel(outside[0], case.truth.shape)])
    ranks = [c.rank for c in whole.candidates if case.truth[_centre_voxel(c, case.truth.shape)]]
    row["truth_rank"] = ranks[0] if ranks else ""
    row["n_reportable"] = len(reportable)
    return row


# ----------------------------------------------------------------------------------------------- realism


def _surface_profiles(array: np.ndarray, mask: np.ndarray, spacing) -> np.ndarray | None:
    """HU profiles (n, 49) along the in-plane outward normal, -6..+6 mm by 0.25 mm, at lung-facing edge voxels."""
    from scipy import ndimage

    sy, sx = float(spacing[1]), float(spacing[2])
    steps = np.arange(-6.0, 6.0 + 1e-6, 0.25)
    profiles = []
    for z in np.nonzero(mask.any(axis=(1, 2)))[0]:
        m = mask[z]
        if m.sum() < 20:
            continue
        signed = ndimage.distance_transform_edt(~m, sampling=(sy, sx)) - ndimage.distance_transform_edt(
            m, sampling=(sy, sx)
        )
        signed = ndimage.gaussian_filter(signed, 1.0)
        gy, gx = np.gradient(signed, sy, sx)
        edge = m & ~ndimage.binary_erosion(m)
        ys, xs = np.nonzero(edge)
        norm = np.hypot(gy[ys, xs], gx[ys, xs]) + 1e-6
        ny, nx = gy[ys, xs] / norm, gx[ys, xs] / norm
        py = ys[:, None] + steps[None, :] * ny[:, None] / sy
        px = xs[:, None] + steps[None, :] * nx[:, None] / sx
        prof = ndimage.map_coordinates(array[z].astype(np.float32), [py, px], order=1, mode="nearest")
        lung_out = np.median(prof[:, steps >= 4.0], axis=1) < -500.0
        profiles.append(prof[lung_out])
    return np.concatenate(profiles) if profiles else None


def edge_blur_mm(array: np.ndarray, mask: np.ndarray, spacing) -> float:
    """Median over the lung-facing edge voxels of the 10-90 % rise distance (mm) of their in-plane HU profile.

    Each profile runs -6..+6 mm along the in-plane outward normal of the mask's edge; its levels are the median HU
    at -4..-2 mm (inside) and at +4..+6 mm (outside, aerated lung); profiles with less than 100 HU between them
    are skipped. The rise is from the last step at >= 90 % inside the surface to the first step at <= 10 %
    beyond it. nan when fewer than 10 profiles qualify.
    """
    prof = _surface_profiles(array, mask, spacing)
    if prof is None or len(prof) < 10:
        return float("nan")
    steps = np.arange(-6.0, 6.0 + 1e-6, 0.25)
    inner = np.median(prof[:, (steps >= -4.0) & (steps <= -2.0)], axis=1)
    outer = np.median(prof[:, steps >= 4.0], axis=1)
    ok = inner - outer >= 100.0
    if ok.sum() < 10:
        return float("nan")
    frac = (prof[ok] - outer[ok, None]) / (inner[ok] - outer[ok])[:, None]
    k = np.arange(len(steps))[None, :]
    i90 = np.max(np.where((frac >= 0.9) & (steps[None, :] <= 0), k, 0), axis=1)
    i10 = np.min(np.where((frac <= 0.1) & (k > i90[:, None]), k, len(steps) - 1), axis=1)
    return float(np.median(steps[i10] - steps[i90]))


def contact_fraction(array: np.ndarray, mask: np.ndarray, spacing, radius_mm: float = 2.0) -> float:
    """Share of the surface voxels whose outside neighbourhood (within ``radius_mm``) is mostly soft tissue."""
    from scipy import ndimage

    idx = np.argwhere(mask)
    pad = [int(math.ceil(radius_mm / s)) + 2 for s in spacing]
    lo = [max(0, int(a) - p) for a, p in zip(idx.min(0), pad)]
    hi = [min(n, int(b) + p + 1) for b, p, n in zip(idx.max(0), pad, mask.shape)]
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    m = mask[sl]
    smooth = ndimage.gaussian_filter(array[sl].astype(np.float32), [1.0 / s for s in spacing])
    r = [int(math.ceil(radius_mm / s)) for s in spacing]
    zz, yy, xx = np.mgrid[-r[0] : r[0] + 1, -r[1] : r[1] + 1, -r[2] : r[2] + 1]
    ball = ((zz * spacing[0]) ** 2 + (yy * spacing[1]) ** 2 + (xx * spacing[2]) ** 2 <= radius_mm**2).astype(np.float32)
    out = (~m).astype(np.float32)
    soft = (out > 0) & (smooth > -300.0)
    num = ndimage.convolve(soft.astype(np.float32), ball, mode="nearest")
    den = ndimage.convolve(out, ball, mode="nearest")
    surface = m & ~ndimage.binary_erosion(m)
    s = surface & (den > 0)
    return float(np.mean(num[s] / den[s] > 0.5)) if s.any() else float("nan")


def realism_metrics(array: np.ndarray, mask: np.ndarray, spacing) -> dict:
    """HU mean and SD inside (voxels >= 2 mm deep), edge blur (mm), contact fraction, volume (cm3)."""
    from scipy import ndimage

    deep = ndimage.distance_transform_edt(mask, sampling=spacing) >= 2.0
    inside = array[deep] if deep.sum() >= 10 else array[mask]
    return {
        "cm3": float(mask.sum()) * float(np.prod(spacing)) / 1000.0,
        "hu_mean": float(np.mean(inside)),
        "hu_sd": float(np.std(inside)),
        "edge_mm": edge_blur_mm(array, mask, spacing),
        "contact": contact_fraction(array, mask, spacing),
    }


def real_references(data: Path) -> dict[str, tuple[object, np.ndarray]]:
    """The real masses: IBSI GTV (mediastinum), lung2 (chest wall), lung1 (aerated lung, reference)."""
    from mkunet.io import read_mask, read_volume

    out = {}
    for label, name in (("IBSI GTV (mediastinum)", "ibsi"), ("lung2 (chest wall)", "lung2"), ("lung1 (free)", "lung1")):
        volume = read_volume(data / BACKGROUNDS[name])
        out[label] = (volume, read_mask(data / LABELS[name], volume))
    return out


def _figure(case: KindCase, ref_volume, ref_mask: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    zr = deepest_voxel(ref_mask, ref_volume.spacing)[0]
    panels = [
        (f"inserted {case.kind}, {case.location_used}, {case.truth_cm3:.0f} cm3 ({case.background})", case, None),
        (f"IBSI GTV, {ref_mask.sum() * ref_volume.voxel_volume_mm3 / 1000:.0f} cm3", None, zr),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 10))
    for col, (title, c, z) in enumerate(panels):
        if c is not None:
            img, msk, sp = c.volume.array[c.click_zyx[0]], c.truth[c.click_zyx[0]], c.volume.spacing
        else:
            img, msk, sp = ref_volume.array[z], ref_mask[z], ref_volume.spacing
        aspect = sp[1] / sp[2]
        for row, (lo, hi, wname) in enumerate(((-1000, 200, "lung window"), (-160, 240, "mediastinal window"))):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=aspect)
            ax.contour(msk, levels=[0.5], colors="r", linewidths=0.6)
            ax.set_title(f"{title}\n{wname}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- tables


def _fmt_mean(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f} ({min(values):.2f})"


def print_tables(rows: list[dict], title: str) -> None:
    """The per-cell table (location x kind), row and column means, seconds per case."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    locs = [loc for loc in LOCATIONS if any(r["location"] == loc for r in rows)]
    kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)]
    table = Table(title=title, show_lines=False)
    for col in (
        "location",
        "kind",
        "n",
        "one click Dice mean ± sd (min)",
        "vol. ratio median",
        "whole found",
        "whole Dice mean",
        "s/case",
    ):
        table.add_column(col, justify="left" if col in ("location", "kind") else "right")

    def add(label_loc: str, label_kind: str, sel: list[dict], style: str | None = None) -> None:
        if not sel:
            return
        n_used = sum(r["location_used"] == r["location"] for r in sel)
        table.add_row(
            label_loc,
            label_kind,
            f"{len(sel)}" + ("" if n_used == len(sel) else f" ({len(sel) - n_used} fell back)"),
            _fmt_mean([r["click_dice"] for r in sel]),
            f"{statistics.median(r['click_volume_ratio'] for r in sel):.2f}",
            f"{sum(bool(r['whole_found']) for r in sel)}/{len(sel)}",
            f"{statistics.mean(r['whole_dice'] for r in sel):.3f}",
            f"{statistics.mean(r['insert_s'] + r['click_s'] + r['whole_s'] for r in sel):.1f}",
            style=style,
        )

    for loc in locs:
        for kind in kinds:
            add(loc, kind, [r for r in rows if r["location"] == loc and r["kind"] == kind])
        add(loc, "all kinds", [r for r in rows if r["location"] == loc], style="bold")
    for kind in kinds:
        add("all locations", kind, [r for r in rows if r["kind"] == kind], style="bold")
    add("all", "all", rows, style="bold")
    console.print(table)


def print_realism(real: dict[str, dict], inserted: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Realism: inserted mediastinum / pleura masses vs real masses (mean ± sd over cases)")
    for col in ("mass", "n", "cm3", "HU mean", "HU sd", "edge 10-90 % (mm)", "contact fraction"):
        table.add_column(col, justify="left" if col == "mass" else "right")
    for label, m in real.items():
        table.add_row(
            label,
            "1",
            f"{m['cm3']:.1f}",
            f"{m['hu_mean']:.0f}",
            f"{m['hu_sd']:.0f}",
            f"{m['edge_mm']:.2f}",
            f"{m['contact']:.2f}",
        )

    def ms(values: list[float], fmt: str) -> str:
        v = [x for x in values if not math.isnan(x)]
        if not v:
            return "-"
        return f"{statistics.mean(v):{fmt}} ± {statistics.stdev(v) if len(v) > 1 else 0.0:{fmt}}"

    for loc in ("mediastinum", "pleura"):
        for kind in KINDS:
            sel = [r for r in inserted if r["location_used"] == loc and r["kind"] == kind]
            if not sel:
                continue
            table.add_row(
                f"inserted {loc} {kind}",
                str(len(sel)),
                ms([r["cm3"] for r in sel], ".1f"),
                ms([r["hu_mean"] for r in sel], ".0f"),
                ms([r["hu_sd"] for r in sel], ".0f"),
                ms([r["edge_mm"] for r in sel], ".2f"),
                ms([r["contact"] for r in sel], ".2f"),
            )
    Console(width=200).print(table)


def _parse_cells(values: Sequence[str] | None) -> list[tuple[str, str]] | None:
    if not values:
        return None
    cells = []
    for v in values:
        loc, _, kind = v.partition(":")
        if loc not in LOCATIONS or kind not in KINDS:
            raise SystemExit(f"--cells: {v!r} is not LOCATION:KIND with LOCATION in {LOCATIONS}, KIND in {KINDS}")
        cells.append((loc, kind))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--cells", nargs="+", default=None, help="LOCATION:KIND cells (default: all 25)")
    parser.add_argument("--per-cell", type=int, default=5)
    parser.add_argument("--backgrounds", nargs="+", default=None, choices=list(BACKGROUNDS))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--slab", type=float, default=SLAB_MM, help="z extent of the crop, mm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the per-case rows as CSV here")
    parser.add_argument("--realism", action="store_true", help="realism check of mediastinum / pleura masses")
    parser.add_argument("--figures", type=Path, default=None, help="write PNG slices here (with --realism)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    cells = _parse_cells(args.cells)
    rows: list[dict] = []
    realism_rows: list[dict] = []
    figures: list[KindCase] = []
    t_start = time.perf_counter()
    load0 = os.getloadavg()[0]
    for case in inserted_cases(
        args.data,
        cells=cells,
        per_cell=args.per_cell,
        seed=args.seed,
        backgrounds=args.backgrounds,
        slab_mm=args.slab,
    ):
        row = score_case(case)
        rows.append(row)
        if args.out:  # row by row, so that a long run can be read while it goes
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a" if len(rows) > 1 else "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(row))
                if len(rows) == 1:
                    writer.writeheader()
                writer.writerow(row)
        print(
            f"{row['case']:<28} {row['background']:<9} used {row['location_used']:<11} {row['truth_cm3']:7.2f} cm3"
            f"  click {row['click_dice']:.3f} (x{row['click_volume_ratio']:.2f})  whole {row['whole_dice']:.3f}"
            f" [{row['whole_via']}]  {row['insert_s'] + row['click_s'] + row['whole_s']:.1f} s",
            flush=True,
        )
        if args.realism and case.location_used in ("mediastinum", "pleura"):
            m = realism_metrics(case.volume.array, case.truth, case.volume.spacing)
            realism_rows.append({"case": case.case_id, "kind": case.kind, "location_used": case.location_used, **m})
            if case.location_used == "mediastinum" and case.kind in ("solid", "necrotic", "spiculated"):
                if len(figures) < 4:
                    figures.append(case)
    n = len(rows)
    per_cell = f"{args.per_cell} per cell" + (f", cells {args.cells}" if args.cells else "")
    title = (
        f"mkunet one click / whole volume on tumours inserted into real CT: {n} cases, {per_cell}, seed {args.seed},"
        f" {args.slab:.0f} mm slab; {args.threads} threads, load average {load0:.1f} -> {os.getloadavg()[0]:.1f},"
        f" {os.cpu_count()} CPUs; {time.perf_counter() - t_start:.0f} s in all"
    )
    if rows:
        print_tables(rows, title)
    if args.realism:
        refs = real_references(args.data)
        real = {label: realism_metrics(v.array, m, v.spacing) for label, (v, m) in refs.items()}
        print_realism(real, realism_rows)
        if args.figures and figures:
            args.figures.mkdir(parents=True, exist_ok=True)
            ref_volume, ref_mask = refs["IBSI GTV (mediastinum)"]
            for case in figures:
                path = args.figures / f"kinds_{case.case_id.replace(':', '_')}_vs_ibsi.png"
                _figure(case, ref_volume, ref_mask, path)
                print(f"figure: {path}")


if __name__ == "__main__":
    main()
