"""Sim-to-real check of a model trained on synthetic data only: Dice on three real lung tumours.

Cases (never used for training): pyradiomics ``lung1`` and ``lung2`` (NRRD image + label)
and the IBSI CT radiomics phantom (NIfTI image + GTV mask), from ``../shared/data``.

Every column is a call of :func:`mkunet.infer.segment`, i.e. what a user gets:

* ``raw``: whole volume, the thresholded probability without post-processing (the network alone);
* ``whole``: whole volume, default post-processing (the component with the most probability
  mass in the lung region);
* ``box``: ``--roi`` box = the tumour's bounding box + MARGIN mm on every side;
* ``seed``: a seed at the voxel of the tumour nearest its centroid, cube of the tumour's
  largest extent + 2 x MARGIN mm (the component holding the seed is kept).

Usage::

    python benchmarks/sim_to_real.py [--model BUNDLE_OR_RUN_DIR] [--data ../shared/data] [--margin 20]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

CASES = {
    "lung1 (pyradiomics)": ("pyradiomics/lung1_image.nrrd", "pyradiomics/lung1_label.nrrd"),
    "lung2 (pyradiomics)": ("pyradiomics/lung2_image.nrrd", "pyradiomics/lung2_label.nrrd"),
    "IBSI CT phantom GTV": ("ibsi/ct_phantom/image.nii.gz", "ibsi/ct_phantom/mask.nii.gz"),
}


def roi_box(mask: np.ndarray, spacing, margin_mm: float) -> tuple:
    """Bounding box of ``mask`` grown by ``margin_mm`` on every side: ((z0, z1), (y0, y1), (x0, x1))."""
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    pad = [int(math.ceil(margin_mm / s)) for s in spacing]
    return tuple((max(0, int(a) - p), min(n, int(b) + p)) for a, b, p, n in zip(lo, hi, pad, mask.shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="bundle or run folder (default: shipped model)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--margin", type=float, default=20.0, help="ROI margin around the tumour box, mm")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import warnings

    import torch

    torch.set_num_threads(args.threads)
    from mkunet.bundle import ModelBundle, default_bundle
    from mkunet.infer import Box, Seed, segment
    from mkunet.io import read_mask, read_volume
    from mkunet.metrics import dice

    if args.model is None:
        bundle = default_bundle()
    else:
        folder = args.model / "best" if (args.model / "best" / "bundle.json").is_file() else args.model
        bundle = ModelBundle.load(folder)
    print(f"model: {bundle!r}")
    columns = ("raw", "whole", "box", "seed")
    print(f"{'case':<22} {'tumour cm3':>10} " + " ".join(f"{c:>7}" for c in columns) + f" {'time s':>7}")
    rows = []
    for name, (image, label) in CASES.items():
        volume = read_volume(args.data / image)
        truth = read_mask(args.data / label, volume)
        t0 = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            whole = segment(volume, bundle, overlap=0.25)
            box = roi_box(truth, volume.spacing, args.margin)
            in_box = segment(volume, bundle, roi=Box(*box), overlap=0.5)
            idx = np.argwhere(truth)
            centre = idx[np.argmin((((idx - idx.mean(0)) * volume.spacing) ** 2).sum(1))]
            extent = float(((idx.max(0) - idx.min(0) + 1) * np.asarray(volume.spacing)).max())
            seeded = segment(
                volume,
                bundle,
                roi=Seed(tuple(float(c) for c in centre[::-1]), units="voxel", size_mm=extent + 2 * args.margin),
                overlap=0.5,
            )
            scores = (
                dice(whole.probability >= whole.threshold, truth),
                dice(whole.mask, truth),
                dice(in_box.mask, truth),
                dice(seeded.mask, truth),
            )
        elapsed = time.monotonic() - t0
        cm3 = float(truth.sum()) * volume.voxel_volume_mm3 / 1000
        rows.append(scores)
        print(f"{name:<22} {cm3:>10.2f} " + " ".join(f"{v:>7.3f}" for v in scores) + f" {elapsed:>7.1f}")
    mean = np.mean(rows, axis=0)
    print(f"{'mean':<22} {'':>10} " + " ".join(f"{v:>7.3f}" for v in mean))


if __name__ == "__main__":
    main()
