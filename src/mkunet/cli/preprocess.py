"""`mkunet preprocess`: see the command's help."""

from __future__ import annotations

from pathlib import Path

import typer

from mkunet.cli._common import console, progress, user_errors


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to `app`."""
    app.command("preprocess")(preprocess)


def preprocess(
    input: Path = typer.Argument(..., metavar="INPUT", help="CT volume: DICOM folder, .dcm file, NIfTI or NRRD."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the four channel NIfTI files."),
    window: tuple[float, float] | None = typer.Option(
        None, "--window", metavar="LOW HIGH", help="HU window mapped to [0, 1] (default: -1000 400, lung window)."
    ),
    series_uid: str | None = typer.Option(
        None, "--series-uid", help="Series to read when a DICOM folder holds several."
    ),
) -> None:
    """Write the four model input channels of a CT volume as NIfTI on the input grid.

    Files: intensity.nii.gz (windowed HU), edges.nii.gz (3-D Canny, 0/1),
    denoised.nii.gz (Gaussian, windowed), texture.nii.gz (GLCM contrast, log-scaled);
    all float32 in [0, 1], for inspection in a viewer.
    """
    from mkunet.io import read_volume, write_volume
    from mkunet.preprocess import CHANNEL_NAMES, DEFAULT_WINDOW
    from mkunet.preprocess.channels import (
        canny_edges,
        check_window,
        gaussian_denoise,
        intensity_channel,
        texture_channel,
    )

    with user_errors():
        win = check_window(DEFAULT_WINDOW if window is None else window, "--window")
        volume = read_volume(input, series_uid=series_uid)
        steps = {
            "intensity": lambda: intensity_channel(volume, win),
            "edges": lambda: canny_edges(intensity_channel(volume, win)),
            "denoised": lambda: gaussian_denoise(volume, window=win),
            "texture": lambda: texture_channel(volume, window=win),
        }
        written = []
        with progress() as bar:
            task = bar.add_task("preprocess", total=len(CHANNEL_NAMES))
            for name in CHANNEL_NAMES:
                bar.update(task, description=name)
                written.append(write_volume(volume, Path(out) / f"{name}.nii.gz", steps[name]()))
                bar.advance(task)
        for path in written:
            console.print(f"wrote {path}")
