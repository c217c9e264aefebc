"""Sim-to-real check on real CT: the whole-volume default (image-driven detection) and the network.

Two whole-volume methods are scored on every case, side by side:

* **default**: ``segment(volume, uncertainty="off")`` (``method="auto"``):
  :func:`~mkunet.segmentation.candidates.detect_lesions` ranks compact soft-tissue masses in the lungs (image
  candidates, centre = the inscribed ball's) and the image
  lesion model segments the top reportable one. Nothing is trained, so it is the same for every fold and never
  loads the network;
* **network**: ``segment(volume, bundle, method="network")`` (the network, the component rule with the lung
  prior; its candidates are the probability components of
  :func:`~mkunet.segmentation.candidates.list_candidates`), plus the
  **seeded network-only** run (``method="network"``, a seed at the voxel of the tumour nearest its centroid, cube
  of the tumour's largest extent + 2 x MARGIN mm) on the voxel-mask cases.

Cases, from ``../shared/data`` (see its README and ``realct/README.md``):

* pyradiomics ``lung1`` and ``lung2`` and the IBSI CT phantom GTV (voxel masks): Dice of each whole-volume run,
  Dice of the seeded network run, the predicted volume, the top candidate and the rank of the first candidate
  whose centre voxel lies in the true mask;
* LIDC-IDRI-0314: the **rank** of the LUNA16 nodule among each method's candidates (a candidate holds it when its
  centre is within the nodule radius + 5 mm of the nodule centre, when the nodule centre lies in an image
  candidate's inscribed ball, or when the candidate lies in the mask component that holds the nodule centre),
  the **false-positive volume** (mask voxels outside a ball of the nodule radius + 10 mm; for the network also
  every voxel above the threshold there) and the predicted volume;
* the 4D-CT phase, scored at two points (rank within 15 mm, false positives outside a 30 mm ball):

  - "README point": the README's unannotated lesion, about (-53.5, 73.8, -37.6) mm (voxel z 63, y 244, x 201).
    A visual check of the image shows hilar vessels next to the right main bronchus at that point;
  - "round lesion seen at (-86, 84, -8)": an unmistakable round solid lesion of about 25 mm in the right lung,
    about (-86, 84, -8) mm (voxel z 78, y 254, x 168). **This point comes from looking at the image, not from
    the README** (nor from any annotation); readers should judge it themselves;

* the TotalSegmentator example (no lung tumour): the predicted volume and the number of reportable candidates
  (for the network also every voxel above the threshold).

**Leave-one-background-out, grouped folds (network only).** With ``--folds RUN_A RUN_B``, each case is scored
by the first fold model whose training never saw that scan as a background (the bundle's
``metadata["real_backgrounds"]``; :func:`mkunet.train.data.unseen_model` refuses a model that saw it). With the
folds of ``benchmarks/train.py --fold A|B`` (A trains on lung1, IBSI and LIDC, B on lung2, the 4D-CT and the
TotalSegmentator example), lung2, the 4D-CT and the TotalSegmentator example are scored by fold A, the others by
fold B. One background per fold would be stricter; on 2 CPU cores two grouped folds are what fits. With
``--model`` (or the shipped model) every case is scored by that one model, and a case whose background the model
saw is marked ``SEEN`` (not an honest figure). ``--skip-network`` runs the default only (0.2-4 s a scan; the
network's whole-volume LIDC run takes about 2 min).

Arrays are (z, y, x), spacings (z, y, x) mm, physical points (x, y, z) mm; volumes in cm3, times in seconds.

Usage::

    python benchmarks/sim_to_real.py --skip-network
    python benchmarks/sim_to_real.py --folds /tmp/h14/work/foldA /tmp/h14/work/foldB [--out rows.json]
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
"""The README's unannotated 4D-CT lesion (x, y, z) mm (voxel z 63, y 244, x 201): hilar vessels on inspection."""
CHEST4DCT_ROUND_LESION_MM = (-86.0, 84.0, -8.0)
"""A round ~25 mm solid lesion (x, y, z) mm (voxel z 78, y 254, x 168), seen on the image, not in the README."""
CHEST4DCT_POINTS = (
    ("README point", CHEST4DCT_LESION_MM),
    ("round lesion seen at (-86, 84, -8)", CHEST4DCT_ROUND_LESION_MM),
)


def roi_box(mask: np.ndarray, spacing, margin_mm: float) -> tuple:
    """Bounding box of ``mask`` grown by ``margin_mm`` on every side: ((z0, z1), (y0, y1), (x0, x1))."""
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    pad = [int(math.ceil(margin_mm / s)) for s in spacing]
    return tuple((max(0, int(a) - p), min(n, int(b) + p)) for a, b, p, n in zip(lo, hi, pad, mask.shape))


def _load(path: Path):
    from mkunet.models.bundle import ModelBundle

    folder = path / "best" if (path / "best" / "bundle.json").is_file() else path
    return ModelBundle.load(folder)


def _ball(volume, centre_xyz, radius_mm: float) -> np.ndarray:
    """Boolean (z, y, x) ball of ``radius_mm`` around the physical point ``centre_xyz`` (x, y, z) mm."""
    zz, yy, xx = np.indices(volume.shape, sparse=True)
    kz, ky, kx = volume.physical_to_index(np.asarray(centre_xyz, float))
    sz, sy, sx = volume.spacing
    return ((zz - kz) * sz) ** 2 + ((yy - ky) * sy) ** 2 + ((xx - kx) * sx) ** 2 <= radius_mm**2


def _voxel_of(volume, centre_xyz) -> tuple[int, int, int]:
    """The voxel (z, y, x) nearest the physical point (x, y, z) mm, clipped to the image."""
    k = np.rint(volume.physical_to_index(np.asarray(centre_xyz, float))).astype(int)
    return tuple(int(v) for v in np.clip(k, 0, np.asarray(volume.shape) - 1))


def _lesion_rank(seg, centre_xyz, near_mm: float) -> int | None:
    """Rank of the first candidate that holds the lesion at ``centre_xyz`` (x, y, z) mm, or None.

    A candidate holds it when its centre (``centroid_mm``) is within ``near_mm`` of the point, when the point lies
    in an image candidate's inscribed ball (``radius_mm``), or when the candidate lies in the component of
    ``probability >= threshold`` that holds the point: a network candidate whose centroid is that component's, an
    image candidate whose centre voxel is in it (for the image method the probability is the mask, so only the
    segmented candidate can match this way).
    """
    from scipy import ndimage

    point = np.asarray(centre_xyz, float)
    k = _voxel_of(seg.volume, point)
    labels = holder = None
    if seg.probability[k] >= seg.threshold:
        labels, _ = ndimage.label(seg.probability >= seg.threshold, structure=np.ones((3, 3, 3), bool))
        holder = np.argwhere(labels == labels[k]).mean(0)
    for cand in seg.candidates:
        distance = float(np.linalg.norm(np.asarray(cand.centroid_mm) - point))
        if distance <= near_mm or (cand.radius_mm is not None and distance <= cand.radius_mm):
            return int(cand.rank)
        if labels is None:
            continue
        if cand.source == "image":
            c = tuple(int(v) for v in np.clip(np.rint(cand.centroid_zyx), 0, np.asarray(labels.shape) - 1))
            if labels[c] == labels[k]:
                return int(cand.rank)
        elif np.allclose(cand.centroid_zyx, holder, atol=1e-3):
            return int(cand.rank)
    return None


def _truth_rank(seg, truth: np.ndarray) -> int | None:
    """Rank of the first candidate whose centre voxel (``centroid_zyx`` rounded) lies in the true mask, or None."""
    for cand in seg.candidates:
        c = tuple(int(v) for v in np.clip(np.rint(cand.centroid_zyx), 0, np.asarray(truth.shape) - 1))
        if truth[c]:
            return int(cand.rank)
    return None


def _detection(seg, volume, centre_xyz, near_mm: float, unknown_mm: float) -> dict:
    """Rank of the lesion at ``centre_xyz`` among ``seg.candidates``, false positives outside ``unknown_mm`` (cm3)."""
    voxel_cm3 = volume.voxel_volume_mm3 / 1000.0
    rank = _lesion_rank(seg, centre_xyz, near_mm)
    outside = ~_ball(volume, centre_xyz, unknown_mm)
    above = seg.probability >= seg.threshold
    return {
        "lesion_rank": rank,
        "lesion_is_top": rank == 1,
        "lesion_in_mask": bool(seg.mask[_voxel_of(volume, centre_xyz)]),
        "lesion_max_probability": float(seg.probability[_ball(volume, centre_xyz, near_mm)].max()),
        "fp_cm3_mask": float((seg.mask & outside).sum()) * voxel_cm3,
        "fp_cm3_all_above_threshold": float((above & outside).sum()) * voxel_cm3,
    }


def _summary(seg, seconds: float) -> dict:
    """Predicted volume (cm3), candidate counts, the top three candidates, notes and time of one run."""
    return {
        "method": seg.method,
        "predicted_cm3": seg.voxel_volume_cm3,
        "empty": bool(seg.empty),
        "roi": seg.roi,
        "n_candidates": len(seg.candidates),
        "reportable_candidates": sum(bool(c.reportable) for c in seg.candidates),
        "top_candidate": seg.candidates[0].describe() if seg.candidates else None,
        "top_candidates": [c.describe() for c in seg.candidates[:3]],
        "notes": list(seg.notes),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="bundle or run folder (default: shipped model)")
    parser.add_argument("--folds", type=Path, nargs="+", default=None, help="fold runs (leave-one-background-out)")
    parser.add_argument("--skip-network", action="store_true", help="score the default (image detection) only")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--margin", type=float, default=20.0, help="seed cube margin around the tumour, mm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mkunet.analysis.metrics import dice
    from mkunet.io import read_mask, read_volume
    from mkunet.models.bundle import default_bundle
    from mkunet.segmentation.infer import Seed, segment
    from mkunet.train.data import unseen_model

    models: dict = {}
    trained: dict[str, list] = {}
    if not args.skip_network:
        if args.folds:
            models = {p.name: _load(p) for p in args.folds}
        else:
            models = {"model" if args.model else "shipped": _load(args.model) if args.model else default_bundle()}
        trained = {name: list(b.metadata.get("real_backgrounds") or []) for name, b in models.items()}
        for name, seen in trained.items():
            print(f"model {name}: trained on real backgrounds {seen or 'none'}")

    def pick(background: str) -> tuple[object, str]:
        if args.folds:
            name = unseen_model(background, trained)  # refuses a model that saw the background
            return models[name], name
        name = next(iter(models))
        return models[name], name + (" SEEN" if background in trained[name] else "")

    def default(volume):
        """The whole-volume default: detection + the image lesion model (no network)."""
        t0 = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no tumour found" is in seg.notes
            seg = segment(volume, uncertainty="off")
        return seg, time.monotonic() - t0

    def network(volume, bundle):
        """The network's whole-volume run (component rule with the lung prior)."""
        t0 = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = segment(volume, bundle, method="network", overlap=0.25, uncertainty="off")
        return seg, time.monotonic() - t0

    rows: list[dict] = []

    def emit(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    for name, (image, label) in TUMOURS.items():
        volume = read_volume(args.data / image)
        truth = read_mask(args.data / label, volume)
        row: dict = {"case": name, "tumour_cm3": float(truth.sum()) * volume.voxel_volume_mm3 / 1000.0}
        seg, seconds = default(volume)
        row["default"] = {
            "whole_dice": float(dice(seg.mask, truth)),
            "lesion_rank": _truth_rank(seg, truth),
            **_summary(seg, seconds),
        }
        if models:
            bundle, tag = pick(name)
            seg, seconds = network(volume, bundle)
            idx = np.argwhere(truth)
            centre = idx[np.argmin((((idx - idx.mean(0)) * volume.spacing) ** 2).sum(1))]
            extent = float(((idx.max(0) - idx.min(0) + 1) * np.asarray(volume.spacing)).max())
            t0 = time.monotonic()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seeded = segment(
                    volume,
                    bundle,
                    roi=Seed(tuple(float(c) for c in centre[::-1]), units="voxel", size_mm=extent + 2 * args.margin),
                    method="network",
                    overlap=0.5,
                    uncertainty="off",
                )
            row["network"] = {
                "model": tag,
                "whole_dice": float(dice(seg.mask, truth)),
                "lesion_rank": _truth_rank(seg, truth),
                "seed_network_dice": float(dice(seeded.mask, truth)),
                "seed_seconds": time.monotonic() - t0,
                **_summary(seg, seconds),
            }
        emit(row)

    realct = args.data / "realct"
    with open(realct / "lidc0314_luna16_nodules.csv", newline="") as f:
        nodule = next(csv.DictReader(f))
    n_centre = (float(nodule["coordX"]), float(nodule["coordY"]), float(nodule["coordZ"]))
    n_radius = float(nodule["diameter_mm"]) / 2
    for name, image, points, near_mm, unknown_mm in (
        ("lidc0314", "lidc0314.nii.gz", (("LUNA16 nodule", n_centre),), n_radius + 5.0, n_radius + 10.0),
        ("chest4dct", "chest4dct_phase00.nii.gz", CHEST4DCT_POINTS, 15.0, 30.0),
    ):
        volume = read_volume(realct / image)
        runs = {"default": default(volume)}
        tags = {"default": None}
        if models:
            bundle, tags["network"] = pick(name)
            runs["network"] = network(volume, bundle)
        for label, centre in points:
            row = {"case": name, "point": label, "point_mm": list(centre), "near_mm": near_mm, "unknown_mm": unknown_mm}
            row["point_voxel_zyx"] = list(_voxel_of(volume, centre))
            for method, (seg, seconds) in runs.items():
                row[method] = {**_detection(seg, volume, centre, near_mm, unknown_mm), **_summary(seg, seconds)}
                if tags[method] is not None:
                    row[method]["model"] = tags[method]
            emit(row)

    volume = read_volume(args.data / "totalsegmentator" / "example_ct_sm.nii.gz")
    row = {"case": "totalseg"}
    seg, seconds = default(volume)
    row["default"] = _summary(seg, seconds)
    if models:
        bundle, tag = pick("totalseg")
        seg, seconds = network(volume, bundle)
        above = float((seg.probability >= seg.threshold).sum()) * volume.voxel_volume_mm3 / 1000.0
        row["network"] = {"model": tag, "above_threshold_cm3": above, **_summary(seg, seconds)}
    emit(row)

    print()
    for line in table(rows):
        print(line)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


def table(rows: list[dict]) -> list[str]:
    """The markdown table (default and network side by side) and a line per case with the seconds."""

    def fmt(value, spec: str = ".3f") -> str:
        return "-" if value is None else format(value, spec)

    def rank(r: dict | None) -> str:
        if r is None or "lesion_rank" not in r:
            return "-"
        return "not found" if r["lesion_rank"] is None else f"rank {r['lesion_rank']}"

    def fp(r: dict | None, method: str) -> str:
        if r is None:
            return "-"
        if "fp_cm3_mask" in r:
            text = f"{r['fp_cm3_mask']:.1f}"
            return text + (f" ({r['fp_cm3_all_above_threshold']:.1f} above thr.)" if method == "network" else "")
        return f"{r['above_threshold_cm3']:.1f} above thr." if "above_threshold_cm3" in r else "-"

    lines = [
        "| case | network model | whole Dice default | whole Dice network | seeded network Dice | rank default | "
        "rank network | FP cm3 default | FP cm3 network | predicted cm3 default | predicted cm3 network |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    seconds, tops = [], []
    for r in rows:
        d, n = r["default"], r.get("network")
        case = r["case"] + (f" ({r['point']})" if "point" in r else "")
        if r["case"] == "totalseg":
            case += f" ({d['reportable_candidates']} reportable default / "
            case += f"{'-' if n is None else n['reportable_candidates']} network)"
        lines.append(
            f"| {case} | {'skipped' if n is None else n['model']} | {fmt(d.get('whole_dice'))} | "
            f"{fmt(None if n is None else n.get('whole_dice'))} | "
            f"{fmt(None if n is None else n.get('seed_network_dice'))} | {rank(d)} | {rank(n)} | "
            f"{fp(d, 'default')} | {fp(n, 'network')} | {d['predicted_cm3']:.2f} | "
            f"{fmt(None if n is None else n['predicted_cm3'], '.2f')} |"
        )
        if "point" in r and r is not next(x for x in rows if x["case"] == r["case"]):
            continue  # one seconds / top-candidate line per scan
        net = (
            "skipped"
            if n is None
            else f"{n['seconds']:.1f} s" + (f" + seeded {n['seed_seconds']:.1f} s" if "seed_seconds" in n else "")
        )
        seconds.append(f"- {r['case']}: default {d['seconds']:.1f} s, network {net}")
        tops.append(f"- {r['case']}: default top candidate {d['top_candidate'] or 'none'}; segmented: {d['roi']}")
    return lines + ["", "Seconds per case:", *seconds, "", "Default (image detection), top candidate:", *tops]


if __name__ == "__main__":
    main()
