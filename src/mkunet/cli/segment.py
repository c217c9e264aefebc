"""`mkunet segment`: segment the lung tumour of one CT (DICOM series, NIfTI or NRRD).

Thin layer over :func:`mkunet.segmentation.infer.segment` and
:func:`mkunet.segmentation.infer.save_segmentation`. Coordinates typed on the command line are
ordered x y z (mm, patient LPS, by default) for the seed and the box alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from mkunet.cli._common import PACS_CREDENTIALS, PANEL_NETWORK, PANEL_OUTPUTS, PANEL_PACS, PANEL_ROI

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
UNITS = ("mm", "voxel")


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


def box_from_xyz(box: tuple[float, float, float, float, float, float], units: str):
    """``--box X0 X1 Y0 Y1 Z0 Z1`` -> :class:`mkunet.segmentation.infer.Box` (which is ordered z, y, x).

    Args:
        box: x0, x1, y0, y1, z0, z1: patient LPS coordinates in mm (``units="mm"``), or voxel
            indices column, row, slice, half-open (``units="voxel"``).
        units: ``"mm"`` or ``"voxel"``.

    Raises:
        ValueError: unknown units, or a start not below its stop (the message quotes the box).
    """
    from mkunet.segmentation.infer import Box

    if units not in UNITS:
        raise ValueError(f"--box-units must be mm or voxel, got {units!r}.")
    x0, x1, y0, y1, z0, z1 = (float(v) for v in box)
    bad = [axis for axis, (lo, hi) in zip("xyz", ((x0, x1), (y0, y1), (z0, z1))) if not lo < hi]
    if bad:
        raise ValueError(
            f"--box {' '.join(f'{v:g}' for v in box)} has start >= stop along {', '.join(bad)}; "
            "write X0 X1 Y0 Y1 Z0 Z1 with each start below its stop."
        )
    return Box(z=(z0, z1), y=(y0, y1), x=(x0, x1), units=units)  # type: ignore[arg-type]


def describe_region(region: Any) -> str:
    """The region of interest as the CLI prints it: coordinates in x y z order (mm unless voxel)."""
    from mkunet.segmentation.infer import Box

    if isinstance(region, Box):
        ranges = ", ".join(f"{axis} {lo:g}..{hi:g}" for axis, (lo, hi) in zip("xyz", (region.x, region.y, region.z)))
        return f"box {ranges} ({region.units})"
    return str(region)


@dataclass(frozen=True)
class RegionOptions:
    """The region-of-interest options of ``mkunet segment``, as typed (x y z order)."""

    roi: str | None = None
    box: tuple[float, float, float, float, float, float] | None = None
    box_units: str = "mm"
    seed_point: tuple[float, float, float] | None = None
    seed_units: str = "mm"
    seed_size_mm: float | None = None
    previous_mask: Path | None = None
    margin_mm: float = 15.0

    def build(self):
        """The :mod:`mkunet.segmentation.infer` region (``Box``, ``Seed``, ``PreviousMask``) or None (whole volume).

        Raises:
            ValueError: several regions without ``--roi``, an unknown kind or units, a kind without its values.
        """
        from mkunet.segmentation.infer import PreviousMask, Seed

        roi = self.roi
        if roi is None:  # inferred from the options given
            given = [
                name
                for name, v in (("box", self.box), ("seed", self.seed_point), ("previous-mask", self.previous_mask))
                if v
            ]
            if len(given) > 1:
                raise ValueError(f"Give one region of interest, got {', '.join(given)}: choose one with --roi.")
            roi = given[0] if given else None
        if roi is None:
            return None
        roi = roi.lower()
        if roi not in ROI_KINDS:
            raise ValueError(f"--roi must be one of {', '.join(ROI_KINDS)}, got {roi!r}.")
        if roi == "box":
            if self.box is None:
                raise ValueError("--roi box needs --box X0 X1 Y0 Y1 Z0 Z1 (mm; --box-units voxel for indices).")
            return box_from_xyz(self.box, self.box_units)
        if roi == "seed":
            if self.seed_point is None:
                raise ValueError("--roi seed needs --seed-point X Y Z.")
            if self.seed_units not in UNITS:
                raise ValueError(f"--seed-units must be mm or voxel, got {self.seed_units!r}.")
            return Seed(tuple(self.seed_point), units=self.seed_units, size_mm=self.seed_size_mm)  # type: ignore[arg-type]
        if self.previous_mask is None:
            raise ValueError(
                "--roi previous-mask needs --previous-mask PATH (a NIfTI/NRRD label map with its geometry)."
            )
        from mkunet.io import read_volume

        return PreviousMask(read_volume(self.previous_mask), margin_mm=self.margin_mm)


@dataclass(frozen=True)
class PacsOptions:
    """The ``--dicomweb`` options of ``mkunet segment``."""

    url: str | None = None
    study: str | None = None
    series: str | None = None
    push: bool = False
    cache: Path | None = None
    timeout: float = 30.0

    def source(self, input: Path | None):
        """The :class:`mkunet.io.pacs.DicomWebSource` of ``--dicomweb`` (None for a local INPUT), options checked."""
        if (input is None) == (self.url is None):
            raise ValueError(
                "Give the CT either as INPUT (a folder or file) or as --dicomweb URL --study UID, not "
                + ("both." if input is not None else "neither.")
            )
        if self.url is None:
            given = [
                name for name, v in (("--study", self.study), ("--series", self.series), ("--push", self.push)) if v
            ]
            if given:
                raise ValueError(f"{', '.join(given)} only apply with --dicomweb URL (the CT from a PACS).")
            return None
        if not self.study:
            raise ValueError(f"--dicomweb {self.url} needs --study STUDY_UID (the StudyInstanceUID of the CT).")
        from mkunet.io.pacs import DicomWebSource

        return DicomWebSource(self.url, timeout_s=self.timeout)

    def read(self, pacs, bar):
        """Choose / check the series, retrieve it (into CACHE/<study>/<series>/ or a temporary folder), read it.

        Returns (volume, the temporary folder to clean up or None)."""
        import tempfile

        from mkunet.io.pacs import SeriesChoice, open_series

        tmp = None
        cache = self.cache
        if cache is None:
            tmp = tempfile.TemporaryDirectory(prefix="mkunet-pacs-")
            cache = Path(tmp.name)
        bar.update(bar.task_ids[0], description=f"retrieving study {self.study}")
        volume, choice = open_series(pacs, self.study or "", self.series, cache)
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


def _output_formats(formats: str | None, volume, push: bool) -> tuple[str, ...]:
    """``--formats`` checked against the volume (default: nifti,seg,rtstruct for DICOM, nifti otherwise)."""
    from mkunet.segmentation import infer

    if formats is None:
        fmts: tuple[str, ...] = ("nifti", "seg", "rtstruct") if infer.is_dicom_volume(volume) else ("nifti",)
    else:
        fmts = tuple(formats.split(","))
    fmts = infer.check_formats(fmts, volume)  # fail before the slow part
    if push and not {"seg", "rtstruct"} & set(fmts):
        raise ValueError(f"--push sends the SEG and RTSTRUCT, but --formats {formats} writes neither.")
    return fmts


def _print_result(result, region, written: dict[str, Path]) -> None:
    """Notes, volume (+- SE), method, region, candidates and the files written."""
    from mkunet.cli._common import console

    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    unc = result.uncertainty
    typer.echo(
        f"tumour volume: {result.voxel_volume_cm3:.3f} cm^3"
        + (" (no tumour found)" if result.empty else "")
        + ("" if unc is None else f" +- {unc.se_cm3:.3f} (SE; sigma(ln V) {unc.sigma_log_volume:.3f})")
    )
    typer.echo(_qc_line(result, region))
    if result.lesion is not None:
        les = result.lesion
        typer.echo(
            f"method: image ({les.kind} lesion; edge at {les.threshold_hu:.0f} HU, halfway between lesion "
            f"{les.hu_lesion:.0f} HU and lung {les.hu_lung:.0f} HU)"
        )
    else:
        typer.echo(f"method: {result.method}; threshold {result.threshold:g}")
    where = result.roi if region is None else describe_region(region)
    typer.echo(f"region: {where}; {result.timings['total']:.1f} s")
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


def _qc_line(result, region) -> str:
    """``QC: ok`` or ``QC: review — reason; reason`` (:func:`mkunet.qc.check_segmentation`, with the click in mm)."""
    import numpy as np

    from mkunet.qc import check_segmentation
    from mkunet.segmentation.infer import Seed

    click = None
    if isinstance(region, Seed):
        point = np.asarray(region.point, np.float64)
        click = point if region.units == "mm" else result.volume.index_to_physical(point[::-1])
    try:
        qc = check_segmentation(result, click_mm=None if click is None else [float(v) for v in click])
    except Exception as err:  # noqa: BLE001 - the checks never cost the result
        return f"QC: review — the quality checks could not run: {err}"
    return "QC: ok" if qc.ok else "QC: review — " + qc.describe()


def register(app: typer.Typer) -> None:
    """Add ``segment`` to ``app``."""
    app.command("segment", epilog=PACS_CREDENTIALS)(segment_command)


def segment_command(
    input: Path | None = typer.Argument(
        None, help="CT: a DICOM series folder, a .dcm file, or a NIfTI/NRRD file (or --dicomweb)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created)."),
    method: str = typer.Option(
        "auto",
        "--method",
        help="auto | network. auto: the image-driven lesion model from a seed, box or previous mask; "
        "without one, the image-driven detector finds the lesion first. network: the trained network "
        "(the Network options apply to it only).",
    ),
    seed_point: tuple[float, float, float] | None = typer.Option(
        None,
        "--seed-point",
        metavar="X Y Z",
        help="A point in the tumour: x y z in mm (patient LPS), or column row slice with --seed-units voxel.",
        rich_help_panel=PANEL_ROI,
    ),
    seed_units: str = typer.Option("mm", "--seed-units", help="mm | voxel.", rich_help_panel=PANEL_ROI),
    box: tuple[float, float, float, float, float, float] | None = typer.Option(
        None,
        "--box",
        metavar="X0 X1 Y0 Y1 Z0 Z1",
        help="The lesion is inside this box: x, y, z ranges in mm (patient LPS), or half-open voxel index "
        "ranges (column, row, slice) with --box-units voxel.",
        rich_help_panel=PANEL_ROI,
    ),
    box_units: str = typer.Option("mm", "--box-units", help="mm | voxel.", rich_help_panel=PANEL_ROI),
    previous_mask: Path | None = typer.Option(
        None,
        "--previous-mask",
        help="Previous timepoint's mask (NIfTI/NRRD label map with its geometry).",
        rich_help_panel=PANEL_ROI,
    ),
    margin_mm: float = typer.Option(
        15.0, "--margin-mm", help="Margin around the previous mask (mm).", rich_help_panel=PANEL_ROI
    ),
    roi: str | None = typer.Option(
        None,
        "--roi",
        help="box | seed | previous-mask (default: the one given, else the whole volume).",
        rich_help_panel=PANEL_ROI,
    ),
    formats: str | None = typer.Option(
        None,
        "--formats",
        help="Comma-separated: nifti,seg,rtstruct (default: all three for DICOM input, else nifti).",
        rich_help_panel=PANEL_OUTPUTS,
    ),
    uncertainty: str = typer.Option(
        "on",
        "--uncertainty",
        help="on | off. on: the volume's segmentation SE and sigma(ln V), printed and stored in mask.json.",
        rich_help_panel=PANEL_OUTPUTS,
    ),
    viewer: bool = typer.Option(
        False,
        "--viewer",
        help="Also write viewer.html: an offline slice viewer of the CT around the contour.",
        rich_help_panel=PANEL_OUTPUTS,
    ),
    attention: bool = typer.Option(
        False,
        "--attention",
        help="Also write attention_<k>.nii.gz maps (runs the network).",
        rich_help_panel=PANEL_OUTPUTS,
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        help="Trained bundle or run folder (default: the shipped model).",
        rich_help_panel=PANEL_NETWORK,
    ),
    clinical: list[str] | None = typer.Option(
        None,
        "--clinical",
        metavar="KEY=VALUE",
        help="Repeatable: age=64 sex=M smoking=former grade=2 stage=III lvcr=0.004 (per day). "
        "Missing values: training medians (noted).",
        rich_help_panel=PANEL_NETWORK,
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Probability threshold (default: the model's).", rich_help_panel=PANEL_NETWORK
    ),
    keep: str = typer.Option(
        "component", "--keep", help="component | all | none: post-processing.", rich_help_panel=PANEL_NETWORK
    ),
    lung_prior: bool = typer.Option(
        True,
        "--lung-prior/--no-lung-prior",
        help="Whole volume: keep the component with the most probability in the lungs.",
        rich_help_panel=PANEL_NETWORK,
    ),
    overlap: float = typer.Option(
        0.25, "--overlap", help="Sliding-window overlap (0.125: ~1/3 faster).", rich_help_panel=PANEL_NETWORK
    ),
    seed_size_mm: float | None = typer.Option(
        None,
        "--seed-size-mm",
        help="First cube edge around the seed (mm; default 100; grows while the tumour touches a face).",
        rich_help_panel=PANEL_NETWORK,
    ),
    dicomweb: str | None = typer.Option(
        None,
        "--dicomweb",
        metavar="URL",
        help="Read the CT from a PACS: its DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web (with --study).",
        rich_help_panel=PANEL_PACS,
    ),
    study: str | None = typer.Option(
        None, "--study", metavar="UID", help="The StudyInstanceUID.", rich_help_panel=PANEL_PACS
    ),
    series: str | None = typer.Option(
        None,
        "--series",
        metavar="UID",
        help="The SeriesInstanceUID (default: the study's axial CT series with the most, then thinnest, slices; "
        "the choice is printed).",
        rich_help_panel=PANEL_PACS,
    ),
    push: bool = typer.Option(
        False, "--push", help="Store the SEG and RTSTRUCT in the same study (STOW-RS).", rich_help_panel=PANEL_PACS
    ),
    cache: Path | None = typer.Option(
        None,
        "--cache",
        help="Keep the series in CACHE/<study>/<series>/ and reuse it (default: a temporary folder). "
        "The files carry patient identity.",
        rich_help_panel=PANEL_PACS,
    ),
    timeout: float = typer.Option(
        30.0, "--timeout", help="Seconds to wait for the server per request.", rich_help_panel=PANEL_PACS
    ),
) -> None:
    """Segment the lung tumour of one CT; write mask, probability, DICOM SEG and RTSTRUCT on its grid.

    The CT is INPUT (a folder or file) or, with --dicomweb URL --study UID, a series retrieved from a PACS
    (--push stores the SEG and RTSTRUCT back into that study). Coordinates are x y z in mm (patient LPS).
    """
    from mkunet.cli._common import progress, user_errors

    with user_errors():
        from mkunet.io import read_volume
        from mkunet.segmentation import infer, network
        from mkunet.segmentation.uncertainty import check_uncertainty

        pacs_options = PacsOptions(dicomweb, study, series, push, cache, timeout)
        pacs = pacs_options.source(input)
        clinical_values = parse_clinical(clinical)
        region = RegionOptions(
            roi, box, box_units, seed_point, seed_units, seed_size_mm, previous_mask, margin_mm
        ).build()
        infer.check_options(  # an option the method would ignore: exit 2 before any work
            method, threshold=threshold, keep=keep, overlap=overlap, lung_prior=lung_prior,
            return_attention=attention, roi=region, names=CLI_NAMES,
        )  # fmt: skip
        resolved = infer.resolve_method(method, region)
        check_uncertainty(uncertainty)
        tmp_dir = None
        with progress() as bar:
            task = bar.add_task("reading", total=4)
            if input is not None:
                volume = read_volume(input)
            else:  # --dicomweb (checked by PacsOptions.source)
                volume, tmp_dir = pacs_options.read(pacs, bar)
            fmts = _output_formats(formats, volume, push)
            if isinstance(region, infer.Seed):  # a bad seed fails before any work
                infer.roi_crop_box(volume, region)
                infer.check_seed(volume, region.index_zyx(volume), region.describe(), infer.LesionParams())
            bar.update(task, advance=1, description="loading model")
            bundle = network.load_model(model) if (resolved == "network" or attention) else model
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
        _print_result(result, region, written)
        if pacs is not None and push:
            _push(pacs, written, result)
        if tmp_dir is not None:
            tmp_dir.cleanup()
