"""`mkunet synth`: see the command's help."""

from __future__ import annotations

from pathlib import Path

import typer

from mkunet.cli._common import console, progress, user_errors


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to `app`."""
    app.command("synth")(synth)


def synth(
    patients: int = typer.Option(10, "--patients", "-n", help="Number of synthetic patients."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created)."),
    seed: int = typer.Option(
        0, "--seed", help="Master seed: the same seed writes the same pixels, masks, UIDs and tables."
    ),
    shape: tuple[int, int, int] = typer.Option(
        (64, 256, 256), "--shape", metavar="Z Y X", help="Scan size in voxels, array order (z, y, x)."
    ),
    spacing: tuple[float, float, float] | None = typer.Option(
        None,
        "--spacing",
        metavar="Z Y X",
        help="Voxel size in mm, array order (z, y, x) (default: random slice thickness 1-5 mm, in-plane "
        "fitted to the body).",
    ),
    formats: str = typer.Option("nifti,dicom", "--formats", help="Comma-separated subset of: nifti, dicom."),
    timepoints: tuple[int, int] = typer.Option((2, 5), "--timepoints", metavar="MIN MAX", help="Scans per patient."),
    diameter: tuple[float, float] = typer.Option(
        (5.0, 60.0), "--diameter", metavar="MIN MAX", help="Equivalent tumour diameter (mm)."
    ),
    workers: int = typer.Option(
        1, "--workers", help="Processes generating patients in parallel (same files for any value)."
    ),
) -> None:
    """Make a synthetic longitudinal chest-CT cohort with known ground truth.

    Writes DIR/clinical.csv, scans.csv, outcomes.csv, truth.json, lesions.csv (one target
    lesion per patient: the click at the tumour's centre on the first scan, for
    `mkunet run --lesions`) and per patient and time point image.nii.gz, mask.nii.gz and a
    DICOM CT series (layout: docs/cohort-runs.md).
    """
    import numpy as np
    from rich.table import Table

    from mkunet.synth.writers import synthesise

    with user_errors():
        fmts = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
        if patients < 1:
            raise ValueError(f"--patients must be >= 1, got {patients}.")
        with progress() as bar:
            task = bar.add_task("synthesising patients", total=patients)
            cohort = synthesise(
                out,
                patients,
                seed=seed,
                formats=fmts,
                shape=tuple(shape),
                spacing=None if spacing is None else tuple(spacing),
                timepoints=tuple(timepoints),
                diameter_mm=tuple(diameter),
                workers=workers,
                progress=lambda done, total: bar.update(task, completed=done),
            )
        scans = [s for p in cohort.patients for s in p.scans]
        diam = np.array([np.cbrt(6 * s.true_volume_mm3 / np.pi) for s in scans])
        lv = np.array([p.lvcr for p in cohort.patients])
        table = Table(title=f"synthetic cohort in {out}")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        table.add_row("patients", str(len(cohort.patients)))
        table.add_row("scans", str(len(scans)))
        table.add_row(
            "tumour diameter (mm), min / median / max", f"{diam.min():.1f} / {np.median(diam):.1f} / {diam.max():.1f}"
        )
        table.add_row("true LVCR (/day), min / max", f"{lv.min():+.5f} / {lv.max():+.5f}")
        table.add_row("responders (LVCR < 0)", str(int((lv < 0).sum())))
        kinds = {}
        for p in cohort.patients:
            kinds[p.tumour.kind] = kinds.get(p.tumour.kind, 0) + 1
        table.add_row("tumour types", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
        table.add_row("formats", ", ".join(fmts))
        console.print(table)
