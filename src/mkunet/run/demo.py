"""The demo: a synthetic cohort run with the shipped model, and its HTML report (``mkunet demo``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mkunet.run.pipeline import ProgressCallback, run_cohort

__all__ = ["run_demo", "DEMO_SHAPE", "DEMO_SPACING"]

#: Demo cohort geometry: (z, y, x) voxels; spacing None lets the generator fit the body per patient.
DEMO_SHAPE = (48, 128, 128)
DEMO_SPACING: tuple[float, float, float] | None = None


def run_demo(
    out_dir: str | Path,
    n_patients: int = 20,
    seed: int = 0,
    *,
    timepoints: tuple[int, int] = (3, 3),
    shape: tuple[int, int, int] = DEMO_SHAPE,
    spacing: tuple[float, float, float] | None = DEMO_SPACING,
    model: Any = None,
    formats: Sequence[str] = ("nifti", "seg", "rtstruct"),
    lvcr_max_iter: int = 1,
    progress: ProgressCallback | None = None,
) -> Path:
    """Make a synthetic cohort, run the pipeline with the shipped model and the outcomes, write the report.

    The synthetic cohort's ``lesions.csv`` (one target lesion per patient: a click at the tumour's
    centre on the first scan) is passed to :func:`run_cohort`, so the demo runs the target-lesion path.

    Args:
        out_dir: output folder: ``cohort/`` (the synthetic data), ``run/`` (the pipeline's
            outputs) and ``report.html``.
        n_patients: patients in the synthetic cohort.
        seed: seed of the generator.
        timepoints: (min, max) scans per patient.
        shape: volume shape (z, y, x) voxels.
        spacing: voxel spacing (z, y, x) mm, or None (drawn per patient so the body fits).
        model: None (the shipped model) or a bundle / run folder.
        formats: per-scan outputs.
        lvcr_max_iter: fixed-point LVCR refinement passes after the first (each pass segments every
            scan again; 1 keeps the demo within its time budget on a 2-core CPU).
        progress: ``progress(done, total, description)``.

    Returns:
        Path of ``report.html``.
    """
    from mkunet import synth
    from mkunet.report import write_report

    out = Path(out_dir)
    cohort_dir = out / "cohort"
    report = progress or (lambda done, n, desc: None)
    if not (cohort_dir / "scans.csv").is_file():
        report(0, n_patients, "making the synthetic cohort")
        cohort = synth.make_cohort(
            n_patients,
            seed=seed,
            shape=tuple(shape),
            spacing=None if spacing is None else tuple(spacing),
            timepoints=tuple(timepoints),
        )
        tmp = out / ".cohort-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        synth.write_cohort(cohort, tmp, formats=("nifti", "dicom"))
        shutil.rmtree(cohort_dir, ignore_errors=True)
        os.replace(tmp, cohort_dir)
    lesions = cohort_dir / "lesions.csv"  # the click at each tumour's centre (cohorts written before it: none)
    run = run_cohort(
        cohort_dir,
        cohort_dir / "clinical.csv",
        out / "run",
        model=model,
        outcomes=cohort_dir / "outcomes.csv",
        formats=formats,
        lvcr_max_iter=lvcr_max_iter,
        synthetic=True,
        progress=progress,
        lesions=lesions if lesions.is_file() else None,
    )
    return write_report(run, out / "report.html")
