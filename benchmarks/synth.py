"""Benchmark: synthetic cohort of 20 patients x 3 time points at 64 x 256 x 256 (z, y, x).

Times (1) generation in memory (``make_cohort``) and (2) generation plus writing NIfTI and
DICOM (``synthesise``, streaming), median of ``--repeats`` runs, printed as a table.

    .venv/bin/python benchmarks/synth.py [--repeats 3] [--patients 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--timepoints", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="processes (the target is for 2 CPU cores)")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from mkunet.synth import make_cohort
    from mkunet.synth.writers import synthesise

    opts = dict(shape=(64, 256, 256), timepoints=(args.timepoints, args.timepoints))
    mem, disk = [], []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        cohort = make_cohort(args.patients, seed=r, workers=args.workers, **opts)
        mem.append(time.perf_counter() - t0)
        n_scans = sum(len(p.scans) for p in cohort.patients)
        del cohort
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            synthesise(tmp, args.patients, seed=r, formats=("nifti", "dicom"), workers=args.workers, **opts)
            disk.append(time.perf_counter() - t0)
    import os

    load = os.getloadavg()[0]
    table = Table(
        title=f"mkunet.synth: {args.patients} patients x {args.timepoints} time points, 64x256x256, {args.workers} workers, median of {args.repeats} (load average {load:.1f}, {os.cpu_count()} CPUs)"  # noqa: E501
    )
    table.add_column("task")
    table.add_column("seconds", justify="right")
    table.add_column("per scan (s)", justify="right")
    table.add_column("runs")
    for name, ts in (("generate in memory", mem), ("generate + write NIfTI + DICOM", disk)):
        med = statistics.median(ts)
        table.add_row(name, f"{med:.1f}", f"{med / n_scans:.2f}", ", ".join(f"{t:.1f}" for t in ts))
    Console().print(table)


if __name__ == "__main__":
    main()
