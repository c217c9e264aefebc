"""`mkunet run`: the whole pipeline on a cohort (segment, measure, kinetics, IES, statistics, report).

``--lesions lesions.csv`` measures the listed patients as the sum of their target lesions
(format: :func:`mkunet.run.inputs.read_lesions`; the click x_mm, y_mm, z_mm and the optional
``roi`` box ``x0 x1 y0 y1 z0 z1`` are in mm, patient LPS, x y z order, as on the command line).

Thin layer over :func:`mkunet.run.pipeline.run_cohort` and :func:`mkunet.report.write_report`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from mkunet.cli._common import PACS_CREDENTIALS, PANEL_INPUTS, PANEL_OUTPUTS, PANEL_PACS


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""
    app.command("run", epilog=PACS_CREDENTIALS)(run_command)


def _cohort_from_pacs(url: str, worklist: Path | None, formats: str, push: bool, folder: Path, timeout: float):
    """Retrieve the worklist's series into ``folder`` (scans.csv layout) -> (cohort folder, DicomWebSource)."""
    from mkunet.cli._common import progress
    from mkunet.io.pacs import DicomWebSource, SeriesChoice, fetch_worklist, read_worklist

    if worklist is None:
        raise ValueError(f"--dicomweb {url} needs --worklist CSV (patient_id, study_uid, scan_date).")
    if push and not {"seg", "rtstruct"} & {f.strip().lower() for f in formats.split(",")}:
        raise ValueError(f"--push sends SEG and RTSTRUCT, but --formats {formats} writes neither.")
    entries = read_worklist(worklist)
    source = DicomWebSource(url, timeout_s=timeout)
    with progress() as bar:
        task = bar.add_task("retrieving", total=len(entries))
        cohort, chosen = fetch_worklist(
            source,
            entries,
            folder,
            progress=lambda done, total, what: bar.update(task, completed=done, description=what),
        )
    for entry, choice in zip(entries, chosen, strict=True):
        if isinstance(choice, SeriesChoice):
            typer.echo(f"{entry.patient_id} {entry.scan_date}: {choice.chosen.describe()}; {choice.reason}")
    return cohort, source


def _cohort_source(
    cohort_dir: Path | None,
    dicomweb: str | None,
    worklist: Path | None,
    formats: str,
    push: bool,
    folder: Path,
    timeout: float,
):
    """COHORT_DIR, or the worklist retrieved from ``--dicomweb`` into ``folder`` -> (cohort folder, source or None)."""
    if cohort_dir is not None and dicomweb is None:
        if worklist is not None or push:
            raise ValueError("--worklist and --push only apply with --dicomweb URL (scans from a PACS).")
        return cohort_dir, None
    if cohort_dir is None and dicomweb is not None:
        return _cohort_from_pacs(dicomweb, worklist, formats, push, folder, timeout)
    raise ValueError(
        "Give the scans either as COHORT_DIR or as --dicomweb URL --worklist CSV, not "
        + ("both." if cohort_dir is not None else "neither.")
    )


def _push_results(source, run, out: Path) -> None:
    """STOW-RS each segmented scan's SEG and RTSTRUCT into its study and print their SOP Instance UIDs."""
    from mkunet.io.pacs import push_cohort

    for item in push_cohort(source, run.results, out):
        typer.echo(
            f"pushed {item['patient_id']} T{item['timepoint']} {item['kind']}: SOP Instance UID "
            f"{item['sop_uid']} (study {item['study_uid']})"
        )


def _check_lesions(lesions: Path) -> None:
    """Parse lesions.csv early: format errors stop before any work; unused columns are shown."""
    from mkunet.cli._common import console
    from mkunet.run.inputs import read_lesions

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_lesions(lesions)
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}")


def _print_problems(run) -> None:
    """One warning line per row of the run's errors table (patient, timepoint, stage, what was done)."""
    from mkunet.cli._common import console

    for e in run.errors.to_dict("records"):
        tp = e["timepoint"]
        where = str(e["patient_id"]) + ("" if tp is None or tp != tp else f" T{int(tp)}")
        console.print(f"[yellow]warning:[/] {where} ({e['stage']}): {e['error']} -> {e['action']}")


def run_command(
    cohort_dir: Path | None = typer.Argument(
        None,
        help="Cohort folder: scans.csv (synthetic layout) or <patient_id>/<scan>/ DICOM series folders "
        "(or --dicomweb with --worklist).",
    ),
    clinical: Path = typer.Option(
        ..., "--clinical", help="clinical.csv: patient_id, age, sex, smoking, grade, stage[, lvcr per day]."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created; a rerun resumes)."),
    outcomes: Path | None = typer.Option(
        None, "--outcomes", help="outcomes.csv (patient_id, os_days, event, pdl1_positive, ...): statistics."
    ),
    lesions: Path | None = typer.Option(
        None,
        "--lesions",
        help="lesions.csv, one row per target lesion (at most 5 per patient): patient_id, lesion_id, x_mm, "
        "y_mm, z_mm (a click in the lesion on the first scan, mm, patient LPS); optional timepoint (scan "
        "index of the click, blank = 0) and roi (a box 'x0 x1 y0 y1 z0 z1' in mm). Each lesion is tracked; "
        "the patient's volume is their sum (volumetric RECIST); per lesion: OUT/lesion_results.csv. "
        "Patients without a row: whole volume.",
        rich_help_panel=PANEL_INPUTS,
    ),
    method: str = typer.Option(
        "auto",
        "--method",
        help="auto | network. auto: the image-driven lesion model from each click (or the lesion "
        "detected on the first scan), tracked into later scans by registration. network: the trained "
        "network on the whole volume.",
        rich_help_panel=PANEL_INPUTS,
    ),
    model: Path | None = typer.Option(
        None, "--model", help="Trained bundle or run folder (default: shipped).", rich_help_panel=PANEL_INPUTS
    ),
    roi: str = typer.Option(
        "previous-mask",
        "--roi",
        help="previous-mask (timepoint k inside k-1's mask + margin) | none.",
        rich_help_panel=PANEL_INPUTS,
    ),
    margin_mm: float = typer.Option(
        15.0, "--margin-mm", help="Margin around the previous mask (mm).", rich_help_panel=PANEL_INPUTS
    ),
    formats: str = typer.Option(
        "nifti,seg,rtstruct",
        "--formats",
        help="Per-scan outputs; seg/rtstruct only for DICOM inputs.",
        rich_help_panel=PANEL_OUTPUTS,
    ),
    ies_mode: str = typer.Option(
        "standardised", "--ies-mode", help="IES mode: paper | standardised | cox.", rich_help_panel=PANEL_OUTPUTS
    ),
    uncertainty: str = typer.Option(
        "on",
        "--uncertainty",
        help="on | off. on: each scan's segmentation SE widens the LVCR interval; a patient whose interval "
        "contains 0 is 'growth not established'. off: repeat-scan error only.",
        rich_help_panel=PANEL_OUTPUTS,
    ),
    model_tables: Path | None = typer.Option(
        None,
        "--model-tables",
        help="Folder of evaluation tables (*.csv) to show in the report.",
        rich_help_panel=PANEL_OUTPUTS,
    ),
    report: bool = typer.Option(
        True, "--report/--no-report", help="Write OUT/report.html.", rich_help_panel=PANEL_OUTPUTS
    ),
    qc: str = typer.Option(
        "exclude",
        "--qc",
        help="exclude | include. exclude: patients whose scans the quality control flagged for review (and no "
        "one accepted) are left out of the IES / Cox / KM / ROC statistics and listed in OUT/excluded.csv. "
        "include: they are kept (rejected ones are still left out).",
        rich_help_panel=PANEL_OUTPUTS,
    ),
    qc_overrides: Path | None = typer.Option(
        None,
        "--qc-overrides",
        help="qc_overrides.csv: patient_id, lesion_id, timepoint, decision (accept | reject), note; blank "
        "lesion_id / timepoint = all. Applied after the cache: a rerun recomputes no segmentation.",
        rich_help_panel=PANEL_OUTPUTS,
    ),
    no_resume: bool = typer.Option(
        False, "--no-resume", help="Recompute every patient (ignore the cache).", rich_help_panel=PANEL_OUTPUTS
    ),
    dicomweb: str | None = typer.Option(
        None,
        "--dicomweb",
        metavar="URL",
        help="Take the scans from a PACS: its DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web (with --worklist).",
        rich_help_panel=PANEL_PACS,
    ),
    worklist: Path | None = typer.Option(
        None,
        "--worklist",
        help="worklist.csv, one row per scan: patient_id, study_uid[, series_uid], scan_date (YYYY-MM-DD; "
        "without series_uid the study's CT series is chosen and printed).",
        rich_help_panel=PANEL_PACS,
    ),
    push: bool = typer.Option(
        False,
        "--push",
        help="Store each segmented scan's SEG and RTSTRUCT in its study (STOW-RS).",
        rich_help_panel=PANEL_PACS,
    ),
    cache: Path | None = typer.Option(
        None,
        "--cache",
        help="Folder for the retrieved series, reused by reruns (default: OUT/pacs_inputs). The files carry "
        "patient identity.",
        rich_help_panel=PANEL_PACS,
    ),
    timeout: float = typer.Option(
        30.0, "--timeout", help="Seconds to wait for the server per request.", rich_help_panel=PANEL_PACS
    ),
) -> None:
    """Segment every scan of a cohort, measure, compute LVCR / VDT / response / IES and the statistics."""
    from mkunet.cli._common import progress, user_errors

    with user_errors():
        from mkunet.report import write_report
        from mkunet.run.overrides import check_qc_mode
        from mkunet.run.pipeline import run_cohort
        from mkunet.segmentation.infer import check_method

        check_method(method)  # typos and the retired "image": exit 2 before any work
        check_qc_mode(qc)
        folder = cache if cache is not None else out / "pacs_inputs"
        cohort, source = _cohort_source(cohort_dir, dicomweb, worklist, formats, push, folder, timeout)
        if lesions is not None:
            _check_lesions(lesions)

        with progress() as bar, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # problems are listed after the bar (errors.csv)
            task = bar.add_task("starting", total=None)

            def hook(done: int, total: int, description: str) -> None:
                bar.update(task, completed=done, total=total, description=description)

            run = run_cohort(
                cohort,
                clinical,
                out,
                model=model,
                outcomes=outcomes,
                formats=formats.split(","),
                roi=roi,
                margin_mm=margin_mm,
                ies_mode=ies_mode,
                resume=not no_resume,
                progress=hook,
                lesions=lesions,
                method=method,
                uncertainty=uncertainty,
                qc=qc,
                qc_overrides=qc_overrides,
            )
            path = None
            if report:
                bar.update(task, description="writing the report")
                path = write_report(run, out / "report.html", model_tables=model_tables)
        _print_problems(run)
        typer.echo(run.summary())
        if source is not None and push:
            _push_results(source, run, out)
        if path is not None:
            typer.echo(f"report: {path}")
