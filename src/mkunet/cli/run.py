"""`mkunet run`: the whole pipeline on a cohort (segment, measure, kinetics, IES, statistics, report).

``--lesions lesions.csv`` measures the listed patients as the sum of their target lesions
(format: :func:`mkunet.run.pipeline.read_lesions`).

Thin layer over :func:`mkunet.run.pipeline.run_cohort` and :func:`mkunet.report.write_report`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""

    @app.command("run")
    def run_command(
        cohort_dir: Path | None = typer.Argument(
            None,
            help="Cohort folder: scans.csv (synthetic layout) or <patient_id>/<scan>/ DICOM series folders (or "
            "--dicomweb with --worklist instead).",
        ),
        clinical: Path = typer.Option(
            ..., "--clinical", help="clinical.csv: patient_id, age, sex, smoking, grade, stage[, lvcr per day]."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (created; a rerun resumes)."),
        model: Path | None = typer.Option(None, "--model", help="Trained bundle / run folder (default: shipped)."),
        outcomes: Path | None = typer.Option(
            None, "--outcomes", help="outcomes.csv (patient_id, os_days, event, pdl1_positive, ...): cohort statistics."
        ),
        formats: str = typer.Option(
            "nifti,seg,rtstruct", "--formats", help="Per-scan outputs; seg/rtstruct only for DICOM inputs."
        ),
        roi: str = typer.Option(
            "previous-mask", "--roi", help="previous-mask (timepoint k inside k-1's mask + margin) | none."
        ),
        margin_mm: float = typer.Option(15.0, "--margin-mm", help="Margin around the previous mask (mm)."),
        ies_mode: str = typer.Option("standardised", "--ies-mode", help="IES mode: paper | standardised | cox."),
        model_tables: Path | None = typer.Option(
            None, "--model-tables", help="Folder of evaluation tables (*.csv) to show in the report."
        ),
        lesions: Path | None = typer.Option(
            None,
            "--lesions",
            help="lesions.csv: one row per target lesion (at most 5 per patient): patient_id, lesion_id, x_mm, y_mm, "
            "z_mm = a click inside the lesion, DICOM LPS mm, on the first scan; optional timepoint (0-based scan index "
            "of the click, blank = 0) and roi (a box 'x0 x1 y0 y1 z0 z1' in mm). Each lesion is tracked and measured; "
            "the patient's volume is the sum of its target lesions (volumetric RECIST) and its LVCR comes from those "
            "sums; per-lesion results go to OUT/lesion_results.csv. Patients without a row: whole volume.",
        ),
        method: str = typer.Option(
            "auto",
            "--method",
            help="auto | network. auto: the image-driven lesion model from each lesions.csv click (tracked "
            "into later scans by registration); without a click, the lesion detected on the first scan, tracked "
            "the same way. network: the trained network on the whole volume.",
        ),
        uncertainty: str = typer.Option(
            "on",
            "--uncertainty",
            help="on | off. on: each scan's segmentation SE (volume_se_cm3, sigma_log_volume_seg) widens the LVCR "
            "interval; a patient whose interval contains 0 is 'growth not established'. off: repeat-scan error only.",
        ),
        no_resume: bool = typer.Option(False, "--no-resume", help="Recompute every patient (ignore the cache)."),
        report: bool = typer.Option(True, "--report/--no-report", help="Write OUT/report.html."),
        dicomweb: str | None = typer.Option(
            None,
            "--dicomweb",
            help="Take the scans from a PACS: its DICOMweb root URL (e.g. http://127.0.0.1:8042/dicom-web), with "
            "--worklist. Credentials are never command-line arguments: set MKUNET_DICOMWEB_TOKEN (bearer) or "
            "MKUNET_DICOMWEB_USER and MKUNET_DICOMWEB_PASSWORD (basic), or MKUNET_DICOMWEB_CONFIG=file.toml.",
        ),
        worklist: Path | None = typer.Option(
            None,
            "--worklist",
            help="--dicomweb: worklist.csv, one row per scan: patient_id, study_uid[, series_uid], scan_date "
            "(YYYY-MM-DD; without series_uid the study's CT series is chosen and printed).",
        ),
        push: bool = typer.Option(
            False, "--push", help="--dicomweb: store each segmented scan's SEG and RTSTRUCT in its study (STOW-RS)."
        ),
        cache: Path | None = typer.Option(
            None,
            "--cache",
            help="--dicomweb: folder for the retrieved series, reused by reruns (default OUT/pacs_inputs). The files "
            "carry patient identity.",
        ),
        timeout: float = typer.Option(
            30.0, "--timeout", help="--dicomweb: seconds to wait for the server per request."
        ),
    ) -> None:
        """Segment every scan of a cohort, measure, compute LVCR / VDT / response / IES and the statistics."""
        from mkunet.cli._common import console, progress, user_errors

        with user_errors():
            from mkunet.report import write_report
            from mkunet.run.pipeline import read_lesions, run_cohort
            from mkunet.segmentation.infer import check_method

            check_method(method)  # "image" (now "auto") and typos: exit 2 before any work
            source = None
            if cohort_dir is not None and dicomweb is None:
                if worklist is not None or push:
                    raise ValueError("--worklist and --push only apply with --dicomweb URL (scans from a PACS).")
                cohort = cohort_dir
            elif cohort_dir is None and dicomweb is not None:
                from mkunet.io.pacs import DicomWebSource, SeriesChoice, fetch_worklist, read_worklist

                if worklist is None:
                    raise ValueError(f"--dicomweb {dicomweb} needs --worklist CSV (patient_id, study_uid, scan_date).")
                if push and not {"seg", "rtstruct"} & {f.strip().lower() for f in formats.split(",")}:
                    raise ValueError(f"--push sends SEG and RTSTRUCT, but --formats {formats} writes neither.")
                entries = read_worklist(worklist)
                source = DicomWebSource(dicomweb, timeout_s=timeout)
                with progress() as bar:
                    task = bar.add_task("retrieving", total=len(entries))
                    cohort, chosen = fetch_worklist(
                        source,
                        entries,
                        cache if cache is not None else out / "pacs_inputs",
                        progress=lambda done, total, what: bar.update(task, completed=done, description=what),
                    )
                for entry, choice in zip(entries, chosen, strict=True):
                    if isinstance(choice, SeriesChoice):
                        typer.echo(f"{entry.patient_id} {entry.scan_date}: {choice.chosen.describe()}; {choice.reason}")
            else:
                raise ValueError(
                    "Give the scans either as COHORT_DIR or as --dicomweb URL --worklist CSV, not "
                    + ("both." if cohort_dir is not None else "neither.")
                )
            if lesions is not None:  # parse early: format errors before any work, unused columns shown
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    read_lesions(lesions)
                for w in caught:
                    console.print(f"[yellow]warning:[/] {w.message}")

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
                )
                path = None
                if report:
                    bar.update(task, description="writing the report")
                    path = write_report(run, out / "report.html", model_tables=model_tables)
            for e in run.errors.to_dict("records"):
                where = str(e["patient_id"]) + (
                    "" if e["timepoint"] is None or e["timepoint"] != e["timepoint"] else f" T{int(e['timepoint'])}"
                )
                console.print(f"[yellow]warning:[/] {where} ({e['stage']}): {e['error']} -> {e['action']}")
            typer.echo(run.summary())
            if source is not None and push:
                from mkunet.io.pacs import push_cohort

                for item in push_cohort(source, run.results, out):
                    typer.echo(
                        f"pushed {item['patient_id']} T{item['timepoint']} {item['kind']}: SOP Instance UID "
                        f"{item['sop_uid']} (study {item['study_uid']})"
                    )
            if path is not None:
                typer.echo(f"report: {path}")
