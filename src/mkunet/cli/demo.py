"""`mkunet demo`: the main job on built-in defaults (synthetic cohort + shipped model -> report)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

SHOWN_FLAGS = 5
"""Flagged scans printed with their reasons; the rest are counted (all are in the report and results.csv)."""


def _print_qc(run_dir: Path) -> None:
    """The run's summary line of the quality control and the first :data:`SHOWN_FLAGS` flagged scans
    with their reasons (every one is in the report and in ``run/results.csv``, column ``qc_reasons``)."""
    from mkunet.run.store import load_run

    try:
        run = load_run(run_dir)
    except (OSError, ValueError):
        return
    res = run.results
    if "qc" not in res:
        return
    for line in run.qc_summary():
        typer.echo(line)
    flagged = res[res["qc"] == "review"].to_dict("records")
    for r in flagged[:SHOWN_FLAGS]:
        typer.echo(f"  review {r['patient_id']} T{int(r['timepoint'])}: {r.get('qc_reasons')}")
    if len(flagged) > SHOWN_FLAGS:
        typer.echo(
            f"  ... and {len(flagged) - SHOWN_FLAGS} more flagged scan(s): every one with its reasons in the "
            f"report and in {run_dir / 'results.csv'} (column qc_reasons)"
        )


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""

    @app.command("demo")
    def demo_command(
        out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output folder (a rerun resumes)."),
        patients: int = typer.Option(20, "--patients", min=2, help="Synthetic patients."),
        seed: int = typer.Option(0, "--seed", help="Seed of the synthetic cohort."),
    ) -> None:
        """Make a synthetic cohort (3 scans per patient), run the whole pipeline with the shipped model,
        write report.html and one slice viewer per patient (patient/<id>.html).

        Everything shown is synthetic, and the model is a research model trained on
        synthetic CT only: not a medical device.
        """
        import warnings

        from mkunet.cli._common import console, progress, user_errors
        from mkunet.run.demo import run_demo

        start = time.perf_counter()
        with user_errors():
            with progress() as bar, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # per-case problems are listed in the report and errors.csv
                task = bar.add_task("starting", total=None)

                def hook(done: int, total: int, description: str) -> None:
                    bar.update(task, completed=done, total=total, description=description)

                report = run_demo(out, n_patients=patients, seed=seed, progress=hook)
        minutes = (time.perf_counter() - start) / 60
        _print_qc(report.parent / "run")
        console.print(f"[green]done[/] in {minutes:.1f} min. Open the report: {report.resolve()}")
        viewers = report.parent / "patient"
        if viewers.is_dir():
            console.print(f"slice viewers (one per patient, linked from the report): {viewers.resolve()}")
        typer.echo(str(report.resolve()))
