"""Sim-to-real check of the network on real CT, scored leave-one-background-out.

Cases, from ``../shared/data`` (see its README and ``realct/README.md``):

* pyradiomics ``lung1`` and ``lung2`` and the IBSI CT phantom GTV (voxel masks): Dice of the
  **whole-volume** run (``segment(volume)``: the network, the component rule with the lung
  prior) and of the **seeded network-only** run (``method="network"``, a seed at the voxel of
  the tumour nearest its centroid, cube of the tumour's largest extent + 2 x MARGIN mm);
* LIDC-IDRI-0314: is the LUNA16 nodule the **top candidate** (:mod:`mkunet.candidates`; the
  candidate holds the nodule centre or its centroid lies within the nodule radius + 5 mm)?
  Its rank, and the false-positive volume: every voxel above the threshold outside a ball of
  the nodule radius + 10 mm;
* the 4D-CT phase: is the unannotated lesion (README: about (-53.5, 73.8, -37.6) mm) the top
  candidate (centroid within 15 mm)? Its rank and the false-positive volume outside a 30 mm
  ball;
* the TotalSegmentator example (no lung tumour): the predicted volume (the returned mask) and
  every voxel above the threshold.

**Leave-one-background-out, grouped folds.** With ``--folds RUN_A RUN_B``, each case is scored
by the first fold model whose training never saw that scan as a background (the bundle's
``metadata["real_backgrounds"]``; :func:`mkunet.train.data.unseen_model` refuses a model that
saw it). With the folds of ``benchmarks/train.py --fold A|B`` (A trains on lung1, IBSI and
LIDC, B on lung2, the 4D-CT and the TotalSegmentator example), lung2, the 4D-CT and the
TotalSegmentator example are scored by fold A, the others by fold B. One background per fold
would be stricter; on 2 CPU cores two grouped folds are what fits. With ``--model`` (or the
shipped model) every case is scored by that one model, and a case whose background the model
saw is marked ``SEEN`` (not an honest figure).

Usage::

    python benchmarks/sim_to_real.py --folds /tmp/h14/work/foldA /tmp/h14/work/foldB
    python benchmarks/sim_to_real.py [--model BUNDLE_OR_RUN_DIR] [--data ../shared/data] [--margin 20]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

TUMOURS = {
    "lung1": ("pyradiomics/lung1_image.nrrd", "pyradiomics/lung1_label.nrrd"),
    "lung2": ("pyradiomics/lung2_image.nrrd", "pyradiomics/lung2_label.nrrd"),
    "ibsi": ("ibsi/ct_phantom/image.nii.gz", "ibsi/ct_phantom/mask.nii.gz"),
}
CHEST4DCT_LESION_MM = (-53.5, 73.8, -37.6)


def roi_box(mask: np.ndarray, spacing, margin_mm: float) -> tuple:
    """Bounding box of ``mask`` grown by ``margin_mm`` on every side: ((z0, z1), (y0, y1), (x0, x1))."""
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    pad = [int(math.ceil(margin_mm / s)) for s in spacing]
    return tuple((max(0, int(a) - p), min(n, int(b) + p)) for a, b, p, n in zip(lo, hi, pad, mask.shape))


def _load(path: Path):
    from mkunet.bundle import ModelBundle

    folder = path / "best" if (path / "best" / "bundle.json").is_file() else path
    return ModelBundle.load(folder)


def _ball(volume, centre_xyz, radius_mm: float) -> np.ndarray:
    zz, yy, xx = np.indices(volume.shape, sparse=True)
    kz, ky, kx = volume.physical_to_index(np.asarray(centre_xyz, float))
    sz, sy, sx = volume.spacing
    return ((zz - kz) * sz) ** 2 + ((yy - ky) * sy) ** 2 + ((xx - kx) * sx) ** 2 <= radius_mm**2


def _lesion_rank(seg, centre_xyz, near_mm: float) -> int | None:
    """Rank of the first candidate whose component holds the point or whose centroid is within ``near_mm``."""
    from scipy import ndimage

    point = np.asarray(centre_xyz, float)
    k = tuple(np.clip(np.rint(seg.volume.physical_to_index(point)).astype(int), 0, np.asarray(seg.volume.shape) - 1))
    holder = None
    if seg.probability[k] >= seg.threshold:
        labels, _ = ndimage.label(seg.probability >= seg.threshold, structure=np.ones((3, 3, 3), bool))
        holder = np.argwhere(labels == labels[k]).mean(0)
    for cand in seg.candidates:
        if float(np.linalg.norm(np.asarray(cand.centroid_mm) - point)) <= near_mm:
            return int(cand.rank)
        if holder is not None and np.allclose(cand.centroid_zyx, holder, atol=1e-3):
            return int(cand.rank)
    return None


def _no_uncertainty() -> dict:
    """``uncertainty="off"`` where :func:`mkunet.infer.segment` has that option (not needed here)."""
    import inspect

    from mkunet.infer import segment

    return {"uncertainty": "off"} if "uncertainty" in inspect.signature(segment).parameters else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="bundle or run folder (default: shipped model)")
    parser.add_argument("--folds", type=Path, nargs="+", default=None, help="fold runs (leave-one-background-out)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--margin", type=float, default=20.0, help="seed cube margin around the tumour, mm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mkunet.bundle import default_bundle
    from mkunet.infer import Seed, segment
    from mkunet.io import read_mask, read_volume
    from mkunet.metrics import dice
    from mkunet.train.data import unseen_model

    if args.folds:
        models = {p.name: _load(p) for p in args.folds}
    else:
        models = {"model" if args.model else "shipped": _load(args.model) if args.model else default_bundle()}
    trained = {name: list(b.metadata.get("real_backgrounds") or []) for name, b in models.items()}
    for name, seen in trained.items():
        print(f"model {name}: trained on real backgrounds {seen or 'none'}")

    def pick(background: str) -> tuple[str, object, str]:
        if args.folds:
            name = unseen_model(background, trained)  # refuses a model that saw the background
            return name, models[name], name
        name = next(iter(models))
        return name, models[name], name + (" SEEN" if background in trained[name] else "")

    rows: list[dict] = []
    extra = _no_uncertainty()

    def whole(volume, bundle):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return segment(volume, bundle, overlap=0.25, **extra)

    voxel = lambda v: v.voxel_volume_mm3 / 1000.0  # noqa: E731
    for name, (image, label) in TUMOURS.items():
        _, bundle, tag = pick(name)
        volume = read_volume(args.data / image)
        truth = read_mask(args.data / label, volume)
        t0 = time.monotonic()
        seg = whole(volume, bundle)
        idx = np.argwhere(truth)
        centre = idx[np.argmin((((idx - idx.mean(0)) * volume.spacing) ** 2).sum(1))]
        extent = float(((idx.max(0) - idx.min(0) + 1) * np.asarray(volume.spacing)).max())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seeded = segment(
                volume,
                bundle,
                roi=Seed(tuple(float(c) for c in centre[::-1]), units="voxel", size_mm=extent + 2 * args.margin),
                method="network",
                overlap=0.5,
                **extra,
            )
        top = seg.candidates[0] if seg.candidates else None
        rows.append(
            {
                "case": name,
                "model": tag,
                "tumour_cm3": float(truth.sum()) * voxel(volume),
                "whole_dice": float(dice(seg.mask, truth)),
                "seed_network_dice": float(dice(seeded.mask, truth)),
                "predicted_cm3": seg.volume_cm3,
                "top_candidate": None if top is None else top.describe(),
                "seconds": time.monotonic() - t0,
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    realct = args.data / "realct"
    with open(realct / "lidc0314_luna16_nodules.csv", newline="") as f:
        nodule = next(csv.DictReader(f))
    n_centre = (float(nodule["coordX"]), float(nodule["coordY"]), float(nodule["coordZ"]))
    n_radius = float(nodule["diameter_mm"]) / 2
    for name, image, centre, near_mm, unknown_mm in (
        ("lidc0314", "lidc0314.nii.gz", n_centre, n_radius + 5.0, n_radius + 10.0),
        ("chest4dct", "chest4dct_phase00.nii.gz", CHEST4DCT_LESION_MM, 15.0, 30.0),
    ):
        _, bundle, tag = pick(name)
        volume = read_volume(realct / image)
        t0 = time.monotonic()
        seg = whole(volume, bundle)
        rank = _lesion_rank(seg, centre, near_mm)
        outside = ~_ball(volume, centre, unknown_mm)
        above = seg.probability >= seg.threshold
        rows.append(
            {
                "case": name,
                "model": tag,
                "lesion_rank": rank,
                "lesion_is_top": rank == 1,
                "lesion_max_probability": float(seg.probability[_ball(volume, centre, near_mm)].max()),
                "fp_cm3_all_above_threshold": float((above & outside).sum()) * voxel(volume),
                "fp_cm3_mask": float((seg.mask & outside).sum()) * voxel(volume),
                "n_candidates": len(seg.candidates),
                "top_candidates": [c.describe() for c in seg.candidates[:3]],
                "seconds": time.monotonic() - t0,
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    _, bundle, tag = pick("totalseg")
    volume = read_volume(args.data / "totalsegmentator" / "example_ct_sm.nii.gz")
    t0 = time.monotonic()
    seg = whole(volume, bundle)
    rows.append(
        {
            "case": "totalseg",
            "model": tag,
            "predicted_cm3": seg.volume_cm3,
            "above_threshold_cm3": float((seg.probability >= seg.threshold).sum()) * voxel(volume),
            "n_candidates": len(seg.candidates),
            "reportable_candidates": sum(c.reportable for c in seg.candidates),
            "seconds": time.monotonic() - t0,
        }
    )
    print(json.dumps(rows[-1]), flush=True)

    print("\n| case | model | whole-volume Dice | seeded network Dice | detection | FP cm3 | predicted cm3 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "whole_dice" in r:
            print(
                f"| {r['case']} | {r['model']} | {r['whole_dice']:.3f} | {r['seed_network_dice']:.3f} | | | "
                f"{r['predicted_cm3']:.2f} |"
            )
        elif "lesion_rank" in r:
            found = "top candidate" if r["lesion_is_top"] else f"rank {r['lesion_rank']}"
            print(f"| {r['case']} | {r['model']} | | | {found} | {r['fp_cm3_all_above_threshold']:.1f} | |")
        else:
            print(
                f"| {r['case']} | {r['model']} | | | | {r['above_threshold_cm3']:.1f} (above threshold) | "
                f"{r['predicted_cm3']:.2f} |"
            )
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
