"""Benchmark of :func:`mkunet.segmentation.register.register`: time per pair and error at the lesion.

For each real chest CT in ``../shared/data`` (or, when the folder is absent, the synthetic
512 x 512 x 100 chest of ``benchmarks/preprocess.py``: good for timing only, its lungs and
vessels do not vary along z, so the global z shift is ill-posed there), follow-ups are
made from the scan itself with known motions:

* ``rigid``: the patient moved by a random rigid motion (shift 5-30 mm, rotations up to
  4 deg about each axis, seeded);
* ``rigid+breath``: the same, plus a smooth breathing displacement inside the lungs that
  grows from 0 at the apex to ``--breath-mm`` (default 15 mm, cranio-caudal, plus 30 %
  antero-posterior) at the base, so lower-lobe lesions move against the chest wall.

The error is the distance (mm) between ``map_point(click)`` and the true follow-up position
of the click (the known lesion centre of each scan). Prints a table of medians.

Run:  .venv/bin/python benchmarks/register.py [--repeats 3] [--threads 2] [--breath-mm 15]
Target: <= 3 s per pair on 2 CPU cores for 512 x 512 x ~100 inputs; error <= 2 mm.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from mkunet.segmentation.register import register
from mkunet.volume import Volume

SHARED = Path(os.environ.get("MKUNET_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def cases() -> list[tuple[str, Volume, np.ndarray]]:
    """(name, baseline, lesion centre (x, y, z) mm) for each available scan."""
    from mkunet.io import read_mask, read_volume

    out = []
    lung2 = SHARED / "pyradiomics" / "lung2_image.nrrd"
    if lung2.exists():
        volume = read_volume(lung2)
        label = read_mask(SHARED / "pyradiomics" / "lung2_label.nrrd", volume)
        out.append(("pyradiomics lung2", volume, volume.index_to_physical(np.argwhere(label).mean(axis=0))))
    chest = SHARED / "realct" / "chest4dct_phase00.nii.gz"
    if chest.exists():
        out.append(("4D-CT phase 00", read_volume(chest), np.array([-53.5, 73.8, -37.6])))
    lidc = SHARED / "realct" / "lidc0314.nii.gz"
    if lidc.exists():
        out.append(("LIDC-0314", read_volume(lidc), np.array([-57.44, 131.23, -520.36])))
    if not out:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from preprocess import synthetic_ct  # noqa: PLC0415

        volume = Volume(synthetic_ct((100, 512, 512)), (2.5, 0.7, 0.7), (-179.0, -179.0, -125.0))
        out.append(("synthetic", volume, volume.index_to_physical((50, 0.4 * 512, 0.35 * 512))))
    return out


def rigid_motion(rng: np.random.Generator, centre: np.ndarray) -> sitk.Euler3DTransform:
    """A random patient motion, baseline (x, y, z) mm -> follow-up (x, y, z) mm."""
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(float(c) for c in centre))
    t.SetRotation(*(float(a) for a in np.radians(rng.uniform(-4.0, 4.0, 3))))
    direction = rng.normal(size=3)
    t.SetTranslation(tuple(float(v) for v in direction / np.linalg.norm(direction) * rng.uniform(5.0, 30.0)))
    return t


def breathing_field(baseline: Volume, amplitude_mm: float) -> sitk.DisplacementFieldTransform:
    """Displacement u(p) (baseline mm) inside the lungs, 0 at the apex to ``amplitude_mm`` at the base.

    The weight is the lung region (lungs closed, so tumours inside move with them) smoothed
    by a 10 mm Gaussian: the chest wall, mediastinum and spine do not move.
    """
    from scipy import ndimage

    from mkunet.segmentation.lung import lung_region

    step = [max(1, int(round(4.0 / s))) for s in baseline.spacing]
    coarse = baseline.array[:: step[0], :: step[1], :: step[2]]
    spacing = np.asarray(baseline.spacing) * step
    lungs = lung_region(coarse, spacing, grid_mm=0.0)  # lungs with their tumours: a tumour moves as one
    weight = ndimage.gaussian_filter(lungs.astype(np.float32), sigma=10.0 / spacing)
    z_world = baseline.origin[2] + np.arange(coarse.shape[0]) * spacing[0] * baseline.direction[2, 2]
    rows = np.nonzero(lungs.any(axis=(1, 2)))[0]
    top, bottom = (z_world[rows].max(), z_world[rows].min()) if rows.size else (z_world.max(), z_world.min())
    ramp = np.clip((top - z_world) / max(top - bottom, 1.0), 0.0, 1.0)[:, None, None]
    field = np.zeros(coarse.shape + (3,), np.float64)
    field[..., 2] = amplitude_mm * weight * ramp  # cranial in LPS (+z): exhalation lifts the base
    field[..., 1] = -0.3 * amplitude_mm * weight * ramp
    image = sitk.GetImageFromArray(field, isVector=True)
    image.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    image.SetOrigin(baseline.origin)
    image.SetDirection(tuple(baseline.direction.ravel()))
    return sitk.DisplacementFieldTransform(image)


def make_followup(baseline: Volume, motion: sitk.Transform, breath: sitk.Transform | None, click: np.ndarray):
    """Follow-up voxel q shows the baseline at breath(motion^-1(q)); returns (followup, true click position)."""
    inverse = motion.GetInverse()
    to_baseline = inverse if breath is None else sitk.CompositeTransform([breath, inverse])
    image = baseline.to_sitk()
    followup = Volume.from_sitk(sitk.Resample(image, image, to_baseline, sitk.sitkLinear, -1024.0, sitk.sitkFloat32))
    s = np.asarray(click, dtype=np.float64)
    if breath is not None:  # solve s + u(s) = click
        for _ in range(30):
            s = click - (np.asarray(breath.TransformPoint(tuple(s))) - s)
    return followup, np.asarray(motion.TransformPoint(tuple(s)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="random motions per scan and scenario")
    parser.add_argument("--threads", type=int, default=2, help="SimpleITK threads")
    parser.add_argument("--breath-mm", type=float, default=15.0, help="breathing displacement at the lung base (mm)")
    args = parser.parse_args()

    rows = []
    for name, baseline, click in cases():
        rng = np.random.default_rng(0)
        centre = baseline.index_to_physical((np.asarray(baseline.shape) - 1) / 2.0)
        breath = breathing_field(baseline, args.breath_mm)
        for scenario in ("rigid", "rigid+breath"):
            results: dict[str, list[tuple[float, float]]] = {}
            offsets = []
            for _ in range(args.repeats):
                motion = rigid_motion(rng, centre)
                followup, truth = make_followup(baseline, motion, breath if scenario == "rigid+breath" else None, click)
                offsets.append(float(np.linalg.norm(truth - click)))
                for label, kwargs in [
                    ("rigid", dict(kind="rigid")),
                    ("rigid+affine", dict(kind="rigid+affine")),
                    ("rigid+affine+local", dict(kind="rigid+affine", centre_xyz=click)),
                ]:
                    cpu = time.process_time()
                    reg = register(baseline, followup, threads=args.threads, **kwargs)
                    cpu = time.process_time() - cpu
                    error = float(np.linalg.norm(reg.map_point(click) - truth))
                    results.setdefault(label, []).append((reg.seconds, error, cpu))
            for label, values in results.items():
                seconds = [v[0] for v in values]
                errors = [v[1] for v in values]
                cpus = [v[2] for v in values]
                rows.append(
                    (
                        name,
                        "x".join(map(str, baseline.shape)),
                        scenario,
                        label,
                        statistics.median(seconds),
                        statistics.median(cpus),
                        statistics.median(errors),
                        max(errors),
                        statistics.median(offsets),
                    )
                )

    header = (
        "scan",
        "shape z*y*x",
        "follow-up",
        "register",
        "median wall s",
        "median CPU s",
        "median err mm",
        "max err mm",
        "click moved mm",
    )
    load = os.getloadavg()[0]
    print(f"threads={args.threads}, {os.cpu_count()} CPUs, load average {load:.1f} (wall times grow with other load)")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in rows:
        print(f"{r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.2f} | {r[8]:.1f}")


if __name__ == "__main__":
    main()
