"""Benchmark `mkunet segment`: a 512x512x40 DICOM CT series -> mask -> DICOM SEG + RTSTRUCT.

Measures, on a fixed number of CPU threads (default 2, the issue's "2 CPU cores"), the
median wall time of the whole user-facing path (read the DICOM series, segment, write
SEG and RTSTRUCT) for

* ROI-guided: a seed point in the tumour (default 100 mm cube), target <= 15 s;
* whole volume: sliding window over the whole scan, target <= 60 s;

with the shipped model (``mkunet.models.bundle.default_bundle``), or ``--model DIR``; when
neither exists, a stand-in bundle with the default MK-UNet architecture
(channels 16-32-64-128-256, 4 input channels, random weights, target spacing
2 x 1.5 x 1.5 mm, patch 32 x 96 x 96: the training defaults) so the compute is
representative, its output replaced by an HU oracle so the written contours are too. Prints a table of
per-step medians; ``--profile`` adds a cProfile
listing of one whole-volume run.

Usage::

    python benchmarks/segment.py [--repeats 3] [--threads 2] [--model DIR] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def synthetic_ct(
    shape=(40, 512, 512), spacing=(5.0, 0.7, 0.7), seed=0
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A chest-like HU volume (z, y, x): body ellipse, two lungs, spine, a 30 mm tumour in the right lung.

    Returns (int16 HU array, tumour centre (z, y, x) voxel indices).
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    z, y, x = np.ogrid[:nz, :ny, :nx]
    ym, xm = (y - ny / 2) * spacing[1], (x - nx / 2) * spacing[2]
    hu = np.full(shape, -1000, np.float32)
    body = (xm / 170.0) ** 2 + (ym / 120.0) ** 2 <= 1.0
    hu[np.broadcast_to(body, shape)] = 40.0
    for cx in (-80.0, 80.0):
        lung = ((xm - cx) / 65.0) ** 2 + (ym / 90.0) ** 2 <= 1.0
        hu[np.broadcast_to(lung, shape)] = -850.0
    spine = (xm / 20.0) ** 2 + ((ym - 90.0) / 20.0) ** 2 <= 1.0
    hu[np.broadcast_to(spine, shape)] = 700.0
    centre = (nz // 2, ny // 2 - 20, int(nx / 2 - 80.0 / spacing[2]))
    r2 = ((z - centre[0]) * spacing[0]) ** 2 + ((y - centre[1]) * spacing[1]) ** 2 + ((x - centre[2]) * spacing[2]) ** 2
    hu[r2 <= 15.0**2] = 30.0
    hu += rng.normal(0.0, 15.0, size=shape).astype(np.float32)
    return np.clip(hu, -1024, 3000).astype(np.int16), centre


def write_series(folder: Path, hu: np.ndarray, spacing: tuple[float, float, float]) -> Path:
    """Write ``hu`` (z, y, x) int16 as a CT series, one file per slice."""
    from mkunet.synth.writers import write_ct_series
    from mkunet.volume import Volume

    nz, ny, nx = hu.shape
    origin = (-nx * spacing[2] / 2, -ny * spacing[1] / 2, -100.0)
    write_ct_series(
        Volume(hu, spacing=spacing, origin=origin),
        folder,
        patient_id="BENCH-1",
        patient_name="Bench^Mark",
        birth_date="19600101",
        sex="F",
        study_date="20240102",
        uid_entropy=("benchmark-segment",),
    )
    return folder


def stand_in_bundle():
    """Default MK-UNet architecture (random weights, seeded) with the training defaults.

    The network runs in full (its cost is what is measured), but its random output is
    replaced by an oracle (tissue above -300 HU), so the masks, and hence the SEG /
    RTSTRUCT writing times, are those of a plausible segmentation rather than noise.
    """
    import torch

    from mkunet.models import build_model
    from mkunet.models.bundle import ModelBundle
    from mkunet.preprocess import Preprocessor

    class CostOfNetworkOracleOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = build_model("mkunet", in_channels=4)

        def forward(self, image, clinical=None, return_attention=False):
            logits = self.net(image, clinical)
            oracle = 40.0 * (image[:, :1] - 0.5)  # intensity channel: window (-1000, 400) HU -> 0.5 = -300 HU
            return logits * 0.0 + oracle

    torch.manual_seed(0)
    model = CostOfNetworkOracleOutput().eval()
    return ModelBundle(
        model=model,
        model_name="mkunet",
        model_kwargs={"in_channels": 4},
        preprocessor=Preprocessor(channels=4),
        clinical_encoder=None,
        target_spacing=(2.0, 1.5, 1.5),
        patch_size=(32, 96, 96),
        metadata={"note": "benchmark stand-in, random weights"},
        default_clinical=np.full(6, 0.5, np.float32),
    )


def one_run(folder: Path, out: Path, bundle, roi, overlap: float = 0.25) -> dict[str, float]:
    from mkunet.io import read_volume
    from mkunet.segmentation import infer

    t: dict[str, float] = {}
    start = time.perf_counter()
    volume = read_volume(folder)
    t["read DICOM"] = time.perf_counter() - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = infer.segment(volume, bundle, None, roi, method="network", overlap=overlap)
    for key in ("resample", "preprocess", "network", "resample_back", "postprocess"):
        t[key] = seg.timings.get(key, 0.0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        infer.save_segmentation(seg, out, ("seg",))
    t["write SEG"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        infer.save_segmentation(seg, out, ("rtstruct",))
    t["write RTSTRUCT"] = time.perf_counter() - t0
    t["total"] = time.perf_counter() - start
    t["volume_cm3"] = seg.voxel_volume_cm3
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="bundle folder (default: shipped, else stand-in)")
    parser.add_argument("--slice-mm", type=float, default=5.0, help="slice spacing of the synthetic series (mm)")
    parser.add_argument("--profile", action="store_true", help="cProfile one whole-volume run")
    parser.add_argument("--only", choices=("roi", "whole"), default=None)
    parser.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap")
    args = parser.parse_args(argv)

    import SimpleITK as sitk
    import torch

    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)

    from mkunet.segmentation.infer import Seed, load_model

    if args.model is not None:
        bundle, model_desc = load_model(args.model), str(args.model)
    else:
        try:
            bundle, model_desc = load_model(None), "shipped default model"
        except FileNotFoundError:
            bundle, model_desc = stand_in_bundle(), "stand-in: default MK-UNet (16..256) cost, oracle output"
    n_params = sum(p.numel() for p in bundle.model.parameters())

    spacing = (args.slice_mm, 0.7, 0.7)
    hu, centre = synthetic_ct(spacing=spacing)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = write_series(tmp / "ct", hu, spacing)
        from mkunet.io import read_volume

        vol = read_volume(folder)
        seed_xyz = tuple(float(v) for v in vol.index_to_physical(np.array(centre, float)))
        cases = {"ROI-guided (seed)": Seed(seed_xyz, units="mm"), "whole volume": None}
        if args.only == "roi":
            cases.pop("whole volume")
        elif args.only == "whole":
            cases.pop("ROI-guided (seed)")
        targets = {"ROI-guided (seed)": 15.0, "whole volume": 60.0}
        results: dict[str, list[dict[str, float]]] = {}
        one_run(folder, tmp / "warm", bundle, Seed(seed_xyz, units="mm", size_mm=40.0))  # warm-up: imports, allocator
        for name, roi in cases.items():
            results[name] = [one_run(folder, tmp / f"out{r}", bundle, roi, args.overlap) for r in range(args.repeats)]
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            one_run(folder, tmp / "prof", bundle, None, args.overlap)
            prof.disable()

    keys = [
        "read DICOM",
        "resample",
        "preprocess",
        "network",
        "resample_back",
        "postprocess",
        "write SEG",
        "write RTSTRUCT",
        "total",
    ]
    print(
        f"mkunet segment benchmark: 512x512x40 CT, spacing (z,y,x) {spacing} mm; model: {model_desc} "
        f"({n_params / 1e6:.2f} M params, target spacing {bundle.target_spacing} mm, patch {bundle.patch_size}); "
        f"{args.threads} threads; overlap {args.overlap}; median of {args.repeats}"
    )
    header = f"{'step (s)':<16}" + "".join(f"{name:>22}" for name in results)
    print(header)
    print("-" * len(header))
    for key in keys:
        print(f"{key:<16}" + "".join(f"{statistics.median(r[key] for r in runs):>22.2f}" for runs in results.values()))
    print(f"{'target':<16}" + "".join(f"{'<= ' + format(targets[n], 'g'):>22}" for n in results))
    print(f"{'volume (cm^3)':<16}" + "".join(f"{runs[0]['volume_cm3']:>22.2f}" for runs in results.values()))
    if args.profile:
        stream = io.StringIO()
        pstats.Stats(prof, stream=stream).sort_stats("cumulative").print_stats(30)
        print(stream.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
