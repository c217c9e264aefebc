"""Sim-to-real check of a model trained on synthetic data only: Dice on three real lung tumours.

Cases (never used for training): pyradiomics ``lung1`` and ``lung2`` (NRRD image + label)
and the IBSI CT radiomics phantom (NIfTI image + GTV mask), from ``../shared/data``.

For each case it prints the Dice of
* ``whole``: whole-volume sliding-window inference, thresholded (other structures may be
  segmented too: a lower bound of what a user gets without a region of interest);
* ``roi``: inference restricted to the tumour's bounding box + MARGIN mm on every side
  (what a user gives with ``mkunet segment --roi``), thresholded;
* ``roi_cc``: as ``roi``, keeping the largest connected component.

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


def largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


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
    from mkunet.bundle import ModelBundle, default_bundle, predict_probability
    from mkunet.io import read_mask, read_volume
    from mkunet.metrics import dice

    if args.model is None:
        bundle = default_bundle()
    else:
        folder = args.model / "best" if (args.model / "best" / "bundle.json").is_file() else args.model
        bundle = ModelBundle.load(folder)
    print(f"model: {bundle!r}")
    print(f"{'case':<22} {'tumour cm3':>10} {'whole':>7} {'roi':>7} {'roi_cc':>7} {'time s':>7}")
    rows = []
    for name, (image, label) in CASES.items():
        volume = read_volume(args.data / image)
        truth = read_mask(args.data / label, volume)
        t0 = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            whole = predict_probability(bundle, volume, None, overlap=0.25) >= bundle.threshold
            box = roi_box(truth, volume.spacing, args.margin)
            roi = predict_probability(bundle, volume, None, roi_box=box, overlap=0.5) >= bundle.threshold
            scores = (dice(whole, truth), dice(roi, truth), dice(largest_component(roi), truth))
        elapsed = time.monotonic() - t0
        cm3 = float(truth.sum()) * volume.voxel_volume_mm3 / 1000
        rows.append(scores)
        print(f"{name:<22} {cm3:>10.2f} {scores[0]:>7.3f} {scores[1]:>7.3f} {scores[2]:>7.3f} {elapsed:>7.1f}")
    mean = np.mean(rows, axis=0)
    print(f"{'mean':<22} {'':>10} {mean[0]:>7.3f} {mean[1]:>7.3f} {mean[2]:>7.3f}")


if __name__ == "__main__":
    main()
