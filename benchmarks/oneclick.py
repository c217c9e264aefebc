"""One-click segmentation on real CT: Dice, volume, time per click, click stability, tracking.

Every number is a call of :func:`mkunet.segmentation.infer.segment` (or ``segment_timepoints``), i.e.
what a user gets from ``mkunet segment INPUT --seed-point X Y Z``:

* **Table 1** - Dice and volume (predicted / true, cm^3) per method (``network``,
  ``auto``: the image lesion model) on the three public real tumours (pyradiomics lung1, lung2, IBSI
  CT phantom GTV), with the click at the tumour's deepest voxel (largest distance to its
  border), and seconds per click (median of the click repeats).
* **Table 2** - click stability: the volume's coefficient of variation over ``--clicks``
  random clicks at least 3 mm inside each tumour (seeded), and the Dice range.
* **LIDC-IDRI-0314** - the click at the LUNA16 centre; expected about 2 cm^3
  (LUNA16 diameter 15.5 mm: a 1.94 cm^3 sphere; voxels > -400 HU connected to it 2.03-2.19).
* **4D-CT phase** - the click at the README's lesion voxel; expected 2-3 cm^3.
* **Table 3** - tracking: a synthetic cohort with repositioning (``--reposition`` mm per
  axis, SD), a click on the first scan only; Dice of every later scan against its truth.

Usage::

    python benchmarks/oneclick.py [--data ../shared/data] [--clicks 6] [--threads 2]
        [--patients 8] [--reposition 10] [--skip-network] [--skip-tracking]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

CASES = {
    "lung1 (pyradiomics)": ("pyradiomics/lung1_image.nrrd", "pyradiomics/lung1_label.nrrd"),
    "lung2 (pyradiomics)": ("pyradiomics/lung2_image.nrrd", "pyradiomics/lung2_label.nrrd"),
    "IBSI CT phantom GTV": ("ibsi/ct_phantom/image.nii.gz", "ibsi/ct_phantom/mask.nii.gz"),
}
LUNA16_XYZ = (-57.43923954, 131.2325201, -520.3592267)
CHEST4D_ZYX = (63, 244, 201)  # the README's point: hilar vessels beside the right main bronchus
CHEST4D_ROUND_ZYX = (78, 254, 168)  # the round ~25 mm lesion seen in the image, (-86, 84, -8) mm


def deepest_voxel(mask: np.ndarray, spacing) -> np.ndarray:
    """The voxel (z, y, x) of ``mask`` farthest from its border (mm)."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    return np.asarray(np.unravel_index(int(np.argmax(depth)), mask.shape))


def inner_clicks(mask: np.ndarray, spacing, n: int, rng: np.random.Generator, depth_mm: float = 3.0) -> list:
    """``n`` random voxels at least ``depth_mm`` inside ``mask``."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    inner = np.argwhere(depth >= depth_mm)
    return [inner[i] for i in rng.choice(len(inner), size=min(n, len(inner)), replace=False)]


def click(volume, zyx, method: str, bundle):
    from mkunet.segmentation.infer import Seed, segment

    seed = Seed(tuple(float(v) for v in volume.index_to_physical(np.asarray(zyx, float))))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = segment(volume, bundle, roi=seed, method=method)
    return seg, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--model", type=Path, default=None, help="bundle or run folder (default: shipped model)")
    parser.add_argument("--clicks", type=int, default=6, help="random inner clicks per tumour (stability)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--patients", type=int, default=8, help="synthetic patients for the tracking table")
    parser.add_argument("--reposition", type=float, default=10.0, help="repositioning SD per axis (mm)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--skip-network", action="store_true")
    parser.add_argument("--skip-tracking", action="store_true")
    args = parser.parse_args()

    import SimpleITK as sitk
    import torch

    torch.set_num_threads(args.threads)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(args.threads)
    from mkunet.analysis.metrics import dice
    from mkunet.io import read_mask, read_volume
    from mkunet.segmentation.infer import load_model

    bundle = load_model(args.model)
    methods = ("auto",) if args.skip_network else ("network", "auto")  # ("image" was "auto" by another name)
    rng = np.random.default_rng(args.seed)

    print("\nTable 1: click at the deepest voxel (Dice; volume predicted / true cm^3; s per click)")
    print(
        f"{'case':<22} {'true cm3':>9} "
        + " ".join(f"{m + ' Dice':>13} {m + ' cm3':>12}" for m in methods)
        + " "
        + " ".join(f"{m + ' s':>9}" for m in methods)
    )
    stability = []
    for name, (image, label) in CASES.items():
        volume = read_volume(args.data / image)
        truth = read_mask(args.data / label, volume)
        true_cm3 = float(truth.sum()) * volume.voxel_volume_mm3 / 1000.0
        centre = deepest_voxel(truth, volume.spacing)
        cells, times = [], []
        for m in methods:
            seg, dt = click(volume, centre, m, bundle)
            cells.append(f"{dice(seg.mask, truth):>13.3f} {seg.voxel_volume_cm3:>12.2f}")
            times.append(f"{dt:>9.1f}")
        print(f"{name:<22} {true_cm3:>9.2f} " + " ".join(cells) + " " + " ".join(times), flush=True)
        vols, dices, secs = [], [], []
        for zyx in inner_clicks(truth, volume.spacing, args.clicks, rng):
            seg, dt = click(volume, zyx, "auto", bundle)
            vols.append(seg.voxel_volume_cm3)
            dices.append(dice(seg.mask, truth))
            secs.append(dt)
        cv = statistics.pstdev(vols) / statistics.mean(vols) if vols and statistics.mean(vols) > 0 else float("nan")
        stability.append((name, len(vols), cv, min(dices), max(dices), statistics.median(secs)))

    print(f"\nTable 2: click stability, method auto, {args.clicks} random clicks >= 3 mm inside")
    print(f"{'case':<22} {'clicks':>6} {'volume CV':>10} {'Dice min':>9} {'Dice max':>9} {'median s':>9}")
    for name, n, cv, dmin, dmax, sec in stability:
        print(f"{name:<22} {n:>6} {100 * cv:>9.1f}% {dmin:>9.3f} {dmax:>9.3f} {sec:>9.1f}")

    print("\nUnannotated real scans (method auto)")
    lidc = args.data / "realct" / "lidc0314.nii.gz"
    if lidc.is_file():
        vol = read_volume(lidc)
        seg, dt = click(vol, vol.physical_to_index(LUNA16_XYZ), "auto", bundle)
        print(
            f"LIDC-IDRI-0314 LUNA16 nodule: {seg.voxel_volume_cm3:.2f} cm3 (expected ~2.0; sphere of 15.49 mm 1.94), "
            f"{dt:.1f} s"
        )
    chest = args.data / "realct" / "chest4dct_phase00.nii.gz"
    if chest.is_file():
        vol = read_volume(chest)
        seg, dt = click(vol, CHEST4D_ZYX, "auto", bundle)
        print(f"4D-CT phase 00, README point (hilar vessels): {seg.voxel_volume_cm3:.2f} cm3 (README: 2-3), {dt:.1f} s")
        seg, dt = click(vol, CHEST4D_ROUND_ZYX, "auto", bundle)
        print(f"4D-CT phase 00, round lesion at (-86, 84, -8) mm: {seg.voxel_volume_cm3:.2f} cm3, {dt:.1f} s")

    if args.skip_tracking:
        return
    from mkunet.segmentation.infer import Seed, segment_timepoints
    from mkunet.synth.cohort import iter_patients
    from mkunet.synth.writers import baseline_lesion

    print(
        f"\nTable 3: tracking, {args.patients} synthetic patients x 3 scans, repositioning SD {args.reposition:g} mm "
        "per axis, one click on the first scan"
    )
    print(f"{'patient':<9} {'kind':<13} {'cm3':>7} {'baseline':>9} {'follow-ups':>20} {'s':>6}")
    follow, base = [], []
    for p in iter_patients(
        args.patients,
        seed=args.seed,
        shape=(64, 192, 192),
        timepoints=(3, 3),
        reposition_mm=args.reposition,
        diameter_mm=(6.0, 50.0),
    ):
        row = baseline_lesion(p)
        if row is None:
            continue
        vols = [s.volume for s in p.scans]
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = segment_timepoints(
                vols,
                [s.days for s in p.scans],
                bundle,
                rois=[Seed((row["x_mm"], row["y_mm"], row["z_mm"]))] + [None] * (len(vols) - 1),
            )
        ds = [dice(seg.mask, s.mask) for seg, s in zip(res.segmentations, p.scans)]
        base.append(ds[0])
        follow.extend(ds[1:])
        print(
            f"{p.patient_id:<9} {p.tumour.kind:<13} {p.scans[0].mask_volume_mm3 / 1000:>7.2f} {ds[0]:>9.3f} "
            f"{' '.join(f'{d:.3f}' for d in ds[1:]):>20} {time.perf_counter() - t0:>6.1f}",
            flush=True,
        )
    if follow:
        print(
            f"mean Dice: baseline {np.mean(base):.3f}, follow-ups {np.mean(follow):.3f} "
            f"(median {np.median(follow):.3f}, min {np.min(follow):.3f})"
        )


if __name__ == "__main__":
    main()
