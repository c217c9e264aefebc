"""`mkunet segment`: segment the lung tumour of one CT (DICOM series, NIfTI or NRRD).

Thin layer over :func:`mkunet.segmentation.infer.segment` and :func:`mkunet.segmentation.infer.save_segmentation`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

ROI_KINDS = ("box", "seed", "previous-mask")
CLI_NAMES = {
    "method": "--method",
    "threshold": "--threshold",
    "keep": "--keep",
    "overlap": "--overlap",
    "lung_prior": "--lung-prior",
    "size_mm": "--seed-size-mm",
}
"""How :func:`mkunet.segmentation.infer.check_options` names the options of `segment` here."""
PACS_CREDENTIALS_HELP = (
    "Credentials are never command-line arguments: set MKUNET_DICOMWEB_TOKEN (bearer) or MKUNET_DICOMWEB_USER and "
    "MKUNET_DICOMWEB_PASSWORD (basic) in the environment, or MKUNET_DICOMWEB_CONFIG=file.toml (token = ... or "
    "username = ... and password = ...; chmod 600)."
)


def parse_clinical(items: list[str] | None) -> dict[str, Any] | None:
    """``["age=64", "sex=M", "lvcr=0.004"]`` -> ``{"age": 64.0, "sex": "M", "lvcr": 0.004}``.

    Numbers become floats (age, lvcr) or ints (grade); everything else stays a string.
    """
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--clinical expects KEY=VALUE (e.g. --clinical age=64), got {item!r}.")
        key, value = (part.strip() for part in item.split("=", 1))
        key = key.lower()
        if not key or not value:
            raise ValueError(f"--clinical expects KEY=VALUE with both parts, got {item!r}.")
        if key in ("age", "lvcr"):
            try:
                out[key] = float(value)
            except ValueError as err:
                raise ValueError(f"--clinical {key} must be a number, got {value!r}.") from err
        elif key == "grade" and value.isdigit():
            out[key] = int(value)
        else:
            out[key] = value
    return out


def _build_roi(
    roi: str | None,
    box: tuple[float, float, float, float, float, float] | None,
    box_units: str,
    seed_point: tuple[float, float, float] | None,
    seed_units: str,
    seed_size_mm: float | None,
    previous_mask: Path | None,
    margin_mm: float,
):
    from mkunet.segmentation.infer import Box, PreviousMask, Seed

    if roi is None:  # inferred from the options given
        given = [name for name, v in (("box", box), ("seed", seed_point), ("previous-mask", previous_mask)) if v]
        if len(given) > 1:
            raise ValueError(f"Give one region of interest, got {', '.join(given)}: choose one with --roi.")
        roi = given[0] if given else None
    if roi is None:
        return None
    roi = roi.lower()
    if roi not in ROI_KINDS:
        raise ValueError(f"--roi must be one of {', '.join(ROI_KINDS)}, got {roi!r}.")
    if roi == "box":
        if box is None:
            raise ValueError("--roi box needs --box Z0 Z1 Y0 Y1 X0 X1.")
        if box_units not in ("voxel", "mm"):
            raise ValueError(f"--box-units must be voxel or mm, got {box_units!r}.")
        return Box((box[0], box[1]), (box[2], box[3]), (box[4], box[5]), units=box_units)  # type: ignore[arg-type]
    if roi == "seed":
        if seed_point is None:
            raise ValueError("--roi seed needs --seed-point X Y Z.")
        if seed_units not in ("mm", "voxel"):
            raise ValueError(f"--seed-units must be mm or voxel, got {seed_units!r}.")
        return Seed(tuple(seed_point), units=seed_units, size_mm=seed_size_mm)  # type: ignore[arg-type]
    if previous_mask is None:
        raise ValueError("--roi previous-mask needs --previous-mask PATH (a NIfTI/NRRD label map with its geometry).")
    from mkunet.io import read_volume

    return PreviousMask(read_volume(previous_mask), margin_mm=margin_mm)


def _pacs_source(
    input: Path | None, url: str | None, study: str | None, series: str | None, push: bool, timeout: float
):
    """The :class:`mkunet.io.pacs.DicomWebSource` of ``--dicomweb`` (None for a local INPUT), options checked."""
    if (input is None) == (url is None):
        raise ValueError(
            "Give the CT either as INPUT (a folder or file) or as --dicomweb URL --study UID, not "
            + ("both." if input is not None else "neither.")
        )
    if url is None:
        given = [name for name, v in (("--study", study), ("--series", series), ("--push", push)) if v]
        if given:
            raise ValueError(f"{', '.join(given)} only apply with --dicomweb URL (the CT from a PACS).")
        return None
    if not study:
        raise ValueError(f"--dicomweb {url} needs --study STUDY_UID (the StudyInstanceUID of the CT).")
    from mkunet.io.pacs import DicomWebSource

    return DicomWebSource(url, timeout_s=timeout)


def _read_from_pacs(pacs, study: str, series: str | None, cache: Path | None, bar):
    """Choose / check the series, retrieve it (into CACHE/<study>/<series>/ or a temporary folder) and read it.

    Returns (volume, the temporary folder to clean up or None)."""
    import tempfile

    from mkunet.io.pacs import SeriesChoice, open_series

    tmp = None
    if cache is None:
        tmp = tempfile.TemporaryDirectory(prefix="mkunet-pacs-")
        cache = Path(tmp.name)
    bar.update(bar.task_ids[0], description=f"retrieving study {study}")
    volume, choice = open_series(pacs, study, series, cache)
    if isinstance(choice, SeriesChoice):
        typer.echo(f"series: {choice.chosen.describe()}\n  why: {choice.reason}")
    else:
        typer.echo(f"series: {choice.describe()} (given with --series)")
    return volume, tmp


def _push(pacs, written: dict[str, Path], result) -> None:
    """STOW-RS the written SEG / RTSTRUCT into the CT's study and print their SOP Instance UIDs."""
    files = [written[k] for k in ("seg", "rtstruct") if k in written]
    if not files:
        raise ValueError("--push sends the SEG and RTSTRUCT, but --formats wrote neither; add seg,rtstruct.")
    if result.empty:
        raise ValueError(
            "No tumour was found: nothing was pushed to the PACS (an empty SEG would be misleading there). "
            "The local files are written; check the seed or region of interest."
        )
    stored = pacs.store_results(files, result.volume)
    for kind in ("seg", "rtstruct"):
        if kind in written:
            uid = stored[written[kind].name]
            typer.echo(f"pushed {kind}: SOP Instance UID {uid} (study {result.volume.study_uid})")


def register(app: typer.Typer) -> None:
    """Add ``segment`` to ``app``."""

    @app.command("segment")
    def segment_command(
        input: Path | None = typer.Argument(
            None, help="CT: a DICOM series folder, a .dcm file, or a NIfTI/NRRD file (or --dicomweb instead)."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (created)."),
        model: Path | None = typer.Option(
            None, "--model", help="Trained bundle / run folder (default: the shipped model)."
        ),
        clinical: list[str] | None = typer.Option(
            None,
            "--clinical",
            help="Clinical value KEY=VALUE, repeatable: age=64 sex=M smoking=former grade=2 stage=III lvcr=0.004 "
            "(per day). Unknown values: training medians (noted).",
        ),
        roi: str | None = typer.Option(
            None, "--roi", help="Region of interest: box | seed | previous-mask (default: inferred, else whole volume)."
        ),
        box: tuple[float, float, float, float, float, float] | None = typer.Option(
            None, "--box", help="Box Z0 Z1 Y0 Y1 X0 X1 (voxel indices, half-open; or mm with --box-units mm)."
        ),
        box_units: str = typer.Option("voxel", "--box-units", help="voxel | mm (physical LPS coordinates)."),
        seed_point: tuple[float, float, float] | None = typer.Option(
            None, "--seed-point", help="A point in the tumour, X Y Z (mm, patient LPS; or voxel column row slice)."
        ),
        seed_units: str = typer.Option("mm", "--seed-units", help="mm | voxel."),
        seed_size_mm: float | None = typer.Option(
            None,
            "--seed-size-mm",
            help="--method network only: first cube edge run around the seed (mm; default 100, grows while the "
            "tumour touches a face). The image method needs no size.",
        ),
        previous_mask: Path | None = typer.Option(
            None, "--previous-mask", help="Previous timepoint's mask (NIfTI/NRRD label map with geometry)."
        ),
        margin_mm: float = typer.Option(15.0, "--margin-mm", help="Margin around the previous mask (mm)."),
        formats: str | None = typer.Option(
            None,
            "--formats",
            help="Comma-separated: nifti,seg,rtstruct (default: all three for DICOM input, nifti otherwise).",
        ),
        threshold: float | None = typer.Option(None, "--threshold", help="Probability threshold (default: model's)."),
        keep: str = typer.Option("component", "--keep", help="component | all | none (see mkunet.segmentation.infer)."),
        lung_prior: bool = typer.Option(
            True,
            "--lung-prior/--no-lung-prior",
            help="Without a seed or previous mask, keep the component with the most probability in the lungs.",
        ),
        overlap: float = typer.Option(
            0.25, "--overlap", help="Sliding-window overlap fraction (0.125 is ~1/3 faster on a whole CT)."
        ),
        attention: bool = typer.Option(False, "--attention", help="Also write attention_<k>.nii.gz maps."),
        viewer: bool = typer.Option(
            False,
            "--viewer",
            help="Also write viewer.html: a self-contained slice viewer (offline) of the CT around the contour, "
            "lung / mediastinal windows, probability map (and attention map with --attention).",
        ),
        method: str = typer.Option(
            "auto",
            "--method",
            help="auto | network. auto: the image-driven lesion model with a seed, box or previous mask; "
            "without one, the image-driven detector finds the lesion and the lesion model segments it (both "
            "measured better on real CT than the network). network: the trained network; --threshold, --keep, "
            "--no-lung-prior, --overlap and --seed-size-mm apply to it only.",
        ),
        uncertainty: str = typer.Option(
            "on",
            "--uncertainty",
            help="on | off. on: the volume's segmentation SE and sigma(ln V) (partial-volume edge; the network's "
            "probability edge), printed and stored in mask.json; off: skip it.",
        ),
        dicomweb: str | None = typer.Option(
            None,
            "--dicomweb",
            help="Read the CT from a PACS: its DICOMweb root URL (e.g. http://127.0.0.1:8042/dicom-web), with "
            "--study. " + PACS_CREDENTIALS_HELP,
        ),
        study: str | None = typer.Option(None, "--study", help="--dicomweb: the StudyInstanceUID."),
        series: str | None = typer.Option(
            None,
            "--series",
            help="--dicomweb: the SeriesInstanceUID (default: the study's axial CT series with the most, then "
            "thinnest, slices, not a localiser; the choice is printed).",
        ),
        push: bool = typer.Option(
            False, "--push", help="--dicomweb: store the SEG and RTSTRUCT in the same study (STOW-RS) once written."
        ),
        cache: Path | None = typer.Option(
            None,
            "--cache",
            help="--dicomweb: keep the retrieved series in CACHE/<study>/<series>/ and reuse it (default: a temporary "
            "folder, removed). The files carry patient identity.",
        ),
        timeout: float = typer.Option(
            30.0, "--timeout", help="--dicomweb: seconds to wait for the server per request."
        ),
    ) -> None:
        """Segment the lung tumour of one CT and write mask, probability, DICOM SEG and RTSTRUCT on its grid.

        The CT is INPUT (a folder or file) or, with --dicomweb URL --study UID, a series retrieved from a PACS
        over DICOMweb (--push stores the SEG and RTSTRUCT back into that study).
        """
        from mkunet.cli._common import console, progress, user_errors

        with user_errors():
            from mkunet.io import read_volume
            from mkunet.segmentation import infer, network
            from mkunet.segmentation.uncertainty import check_uncertainty

            pacs = _pacs_source(input, dicomweb, study, series, push, timeout)
            tmp_dir = None
            clinical_values = parse_clinical(clinical)
            region = _build_roi(roi, box, box_units, seed_point, seed_units, seed_size_mm, previous_mask, margin_mm)
            infer.check_options(  # an option the method would ignore: exit 2 before any work
                method, threshold=threshold, keep=keep, overlap=overlap, lung_prior=lung_prior,
                return_attention=attention, roi=region, names=CLI_NAMES,
            )  # fmt: skip
            check_uncertainty(uncertainty)
            with progress() as bar:
                task = bar.add_task("reading", total=4)
                if input is not None:
                    volume = read_volume(input)
                else:  # --dicomweb (checked by _pacs_source)
                    volume, tmp_dir = _read_from_pacs(pacs, study or "", series, cache, bar)
                if formats is None:
                    fmts = ("nifti", "seg", "rtstruct") if infer.is_dicom_volume(volume) else ("nifti",)
                else:
                    fmts = tuple(f for f in formats.split(","))
                fmts = infer.check_formats(fmts, volume)  # fail before the slow part
                if push and not {"seg", "rtstruct"} & set(fmts):
                    raise ValueError(f"--push sends the SEG and RTSTRUCT, but --formats {formats} writes neither.")
                if region is not None and isinstance(region, infer.Seed):  # a bad seed fails before any work
                    infer.roi_crop_box(volume, region)
                    infer.check_seed(volume, region.index_zyx(volume), region.describe(), infer.LesionParams())
                bar.update(task, advance=1, description="loading model")
                bundle = (
                    network.load_model(model)
                    if (infer.resolve_method(method, region) == "network" or attention)
                    else model
                )
                bar.update(task, advance=1, description="segmenting")
                result = infer.segment(
                    volume,
                    bundle,
                    clinical_values,
                    region,
                    threshold=threshold,
                    return_attention=attention,
                    keep=keep,  # type: ignore[arg-type]
                    lung_prior=lung_prior,
                    overlap=overlap,
                    method=method,  # type: ignore[arg-type]
                    uncertainty=uncertainty,  # type: ignore[arg-type]
                )
                bar.update(task, advance=1, description="writing")
                written = infer.save_segmentation(result, out, fmts, attention=attention)
                if viewer:
                    from mkunet.report.viewer import write_segmentation_viewer

                    written["viewer"] = write_segmentation_viewer(result, out / "viewer.html")
                bar.update(task, advance=1, description="done")
            for note in result.notes:
                console.print(f"[yellow]note:[/] {note}")
            unc = result.uncertainty
            typer.echo(
                f"tumour volume: {result.volume_cm3:.3f} cm^3"
                + (" (no tumour found)" if result.empty else "")
                + ("" if unc is None else f" +- {unc.se_cm3:.3f} (SE; sigma(ln V) {unc.sigma_log_volume:.3f})")
            )
            if result.lesion is not None:
                les = result.lesion
                typer.echo(
                    f"method: image ({les.kind} lesion; edge at {les.threshold_hu:.0f} HU, halfway between lesion "
                    f"{les.hu_lesion:.0f} HU and lung {les.hu_lung:.0f} HU)"
                )
            else:
                typer.echo(f"method: {result.method}; threshold {result.threshold:g}")
            typer.echo(f"region: {result.roi}; {result.timings['total']:.1f} s")
            if result.candidates:  # whole-volume run: the top candidates, to pick from
                from mkunet.segmentation.candidates import format_candidates

                typer.echo(
                    "candidates (score in cm^3: inscribed ball x roundness x lung around; click another with "
                    "--seed-point X Y Z):"
                    if result.candidates[0].source == "image"
                    else "candidates (score = probability mass in the lung region x fraction inside, cm^3):"
                )
                for line in format_candidates(result.candidates, top=5):
                    typer.echo(f"  {line}")
            for name, path in written.items():
                typer.echo(f"{name}: {path}")
            if pacs is not None and push:
                _push(pacs, written, result)
            if pacs is not None and tmp_dir is not None:
                tmp_dir.cleanup()
