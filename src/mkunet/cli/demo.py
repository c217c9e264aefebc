"""`mkunet demo`: the main job on built-in defaults (synthetic cohort + shipped model -> report)."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def _print_qc(run_dir: Path) -> None:
    """The run's summary line of the quality control and every flagged scan with its reasons."""
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
    for r in res[res["qc"] == "review"].to_dict("records"):
        typer.echo(f"  review {r['patient_id']} T{int(r['timepoint'])}: {r.get('qc_reasons')}")


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
