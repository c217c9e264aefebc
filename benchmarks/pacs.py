"""Benchmark the PACS path: pull + segment (seed) + push over DICOMweb vs the same from a local folder.

The IBSI CT phantom (60 slices of 204 x 201, 3 mm) is uploaded to an Orthanc with its DICOMweb
plugin: a fresh one on 127.0.0.1 started from ``tests/orthanc_server.py`` (temporary storage),
or the server given with ``--url``. Each repeat times, with the API the CLI uses:

* **local**: ``read_volume(folder)`` -> ``segment(seed)`` -> ``save_segmentation`` (NIfTI, SEG,
  RTSTRUCT): ``mkunet segment FOLDER --seed-point ...``;
* **pacs**: series choice (QIDO-RS + series metadata) -> WADO-RS into an empty temporary folder
  -> ``read_volume`` -> ``segment(seed)`` -> ``save_segmentation`` -> validate and STOW-RS the SEG
  and RTSTRUCT: ``mkunet segment --dicomweb URL --study UID --seed-point ... --push``.

The two paths alternate (local first, then pacs, per repeat). Prints the median of each step
and of the totals, and the overhead (pacs - local, s); the target is <= 2 s on loopback.
Every push stores new SOP instances in the study (use a throwaway server).

Usage::

    python benchmarks/pacs.py [--repeats 5] [--threads 2] [--url http://127.0.0.1:8042/dicom-web]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

SEED_XYZ = (-75.7, 17.1, -16.4)  # mm (LPS): inside the IBSI GTV (its deepest voxel)
ROOT = Path(__file__).resolve().parents[1]


def local_run(folder: Path, out: Path) -> dict[str, float]:
    from mkunet.io import read_volume
    from mkunet.segmentation.infer import Seed, save_segmentation, segment

    t = {"start": time.perf_counter()}
    volume = read_volume(folder)
    t["read"] = time.perf_counter()
    seg = segment(volume, roi=Seed(SEED_XYZ))
    t["segment"] = time.perf_counter()
    save_segmentation(seg, out, ("nifti", "seg", "rtstruct"))
    t["write"] = time.perf_counter()
    return {
        "pull": 0.0,
        "read": t["read"] - t["start"],
        "segment": t["segment"] - t["read"],
        "write": t["write"] - t["segment"],
        "push": 0.0,
        "total": t["write"] - t["start"],
        "voxels": float(seg.mask.sum()),
    }


def pacs_run(url: str, study: str, out: Path) -> dict[str, float]:
    from mkunet.io import read_volume
    from mkunet.io.pacs import DicomWebSource
    from mkunet.segmentation.infer import Seed, save_segmentation, segment

    t = {"start": time.perf_counter()}
    src = DicomWebSource(url)
    with tempfile.TemporaryDirectory() as tmp:
        choice = src.find_ct_series(study)
        folder = src.fetch_series(study, choice.chosen.series_uid, Path(tmp) / "series")
        t["pull"] = time.perf_counter()
        volume = read_volume(folder)
        t["read"] = time.perf_counter()
        seg = segment(volume, roi=Seed(SEED_XYZ))
        t["segment"] = time.perf_counter()
        written = save_segmentation(seg, out, ("nifti", "seg", "rtstruct"))
        t["write"] = time.perf_counter()
        src.store_results([written["seg"], written["rtstruct"]], volume)
        t["push"] = time.perf_counter()
    return {
        "pull": t["pull"] - t["start"],
        "read": t["read"] - t["pull"],
        "segment": t["segment"] - t["read"],
        "write": t["write"] - t["segment"],
        "push": t["push"] - t["write"],
        "total": t["push"] - t["start"],
        "voxels": float(seg.mask.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data")
    parser.add_argument("--url", default=None, help="an existing DICOMweb server (default: start a fresh Orthanc)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    folder = (args.data / "ibsi" / "ct_phantom" / "dicom" / "image").resolve()
    if not folder.is_dir():
        sys.exit(f"IBSI CT phantom series not found at {folder} (give --data)")
    files = sorted(folder.glob("*.dcm"))

    import pydicom

    from mkunet.io.pacs import Credentials, DicomWebSource

    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    server = None
    url = args.url
    tmp = tempfile.TemporaryDirectory()
    if url is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from orthanc_server import OrthancServer, missing_reason

        if missing_reason():
            sys.exit(f"cannot start Orthanc: {missing_reason()}")
        server = OrthancServer(Path(tmp.name) / "orthanc").start()
        url = server.dicomweb_url
    try:
        DicomWebSource(url, credentials=Credentials() if server else None).store(files)
        local_run(folder, Path(tmp.name) / "warm")  # imports and first-call costs out of the timings
        runs: dict[str, list[dict[str, float]]] = {"local": [], "pacs": []}
        for k in range(args.repeats):
            runs["local"].append(local_run(folder, Path(tmp.name) / f"local{k}"))
            runs["pacs"].append(pacs_run(url, study, Path(tmp.name) / f"pacs{k}"))
    finally:
        if server is not None:
            server.stop()
        tmp.cleanup()

    steps = ("pull", "read", "segment", "write", "push", "total")
    med = {path: {s: statistics.median(r[s] for r in rs) for s in steps} for path, rs in runs.items()}
    if len({r["voxels"] for r in runs["local"] + runs["pacs"]}) != 1:
        sys.exit("the masks of the two paths differ: the PACS path must give the file-based result")
    print(
        f"IBSI CT phantom, 60 x 201 x 204, seed {SEED_XYZ} mm; {args.repeats} repeats, {args.threads} threads; "
        f"server {'Orthanc (fresh, loopback)' if server else url}"
    )
    print("| path | " + " | ".join(steps) + " |")
    print("|---|" + "---:|" * len(steps))
    for path in ("local", "pacs"):
        print(f"| {path} | " + " | ".join(f"{med[path][s]:.2f}" for s in steps) + " |")
    overhead = med["pacs"]["total"] - med["local"]["total"]
    print(f"overhead (median pacs - median local): {overhead:.2f} s (target <= 2 s)")
    print(
        f"pull + push alone (median): {statistics.median(r['pull'] + r['push'] for r in runs['pacs']):.2f} s; "
        f"mask voxels {int(runs['local'][0]['voxels'])} on both paths"
    )


if __name__ == "__main__":
    main()
