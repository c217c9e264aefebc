"""`mkunet evaluate` and `mkunet benchmark-models`: Tables 1-3 and the ablation (thin layer over train.evaluate)."""

from __future__ import annotations

from pathlib import Path

import typer

KEEP_HELP = "Post-processing: component (as `mkunet segment`), all, or none (raw network)."


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to `app`."""
    app.command("evaluate")(evaluate_command)
    app.command("benchmark-models")(benchmark_command)


def evaluate_command(
    runs: list[Path] = typer.Option(
        ...,
        "--runs",
        metavar="RUN",
        help="A training run (or bundle) folder; repeat the option for several: --runs A --runs B.",
    ),
    data: Path = typer.Option(..., "--data", help="Cohort folder (scans.csv, clinical.csv)."),
    out: Path = typer.Option(..., "--out", help="Output folder for per_case.csv, table1-3.csv, tables.md."),
    all_cases: bool = typer.Option(False, "--all", help="Evaluate every scan of DATA, not each run's test split."),
    lvcr_cutoff: float | None = typer.Option(
        None, "--lvcr-cutoff", help="High/low LVCR cut-off (/day) for Table 3 (default: median of the patients)."
    ),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or last."),
    keep: str = typer.Option("component", "--keep", help=KEEP_HELP),
) -> None:
    """Segment each run's test cases and write Table 1 (models), Table 2 (ablation), Table 3 (LVCR) + per-case rows."""
    from mkunet.cli._common import console, progress, user_errors
    from mkunet.train.evaluate import evaluate_runs

    with user_errors():
        if checkpoint not in ("best", "last"):
            raise ValueError(f"--checkpoint must be 'best' or 'last', got {checkpoint!r}.")
        with progress() as bar:
            task = bar.add_task("evaluating", total=None)

            def report(label: str, done: int, total: int) -> None:
                bar.update(task, description=f"evaluating {label}", completed=done, total=total)

            evaluation = evaluate_runs(
                runs,
                data,
                all_cases=all_cases,
                lvcr_cutoff=lvcr_cutoff,
                checkpoint=checkpoint,
                keep=keep,
                progress=report,
            )
        paths = evaluation.write(out)
        console.print(evaluation.to_markdown())
        console.print(f"written: {', '.join(str(p) for p in paths.values())}")


def benchmark_command(
    data: Path = typer.Option(..., "--data", help="Cohort folder (e.g. from `mkunet synth`)."),
    out: Path = typer.Option(..., "--out", help="Output folder: runs/<model>/ and the tables."),
    paper_settings: bool = typer.Option(False, "--paper-settings", help="Width 16 (paper) and 150 epochs."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Epochs per run (default: 10; 150 with --paper-settings)."
    ),
    width: int | None = typer.Option(None, "--width", help="Base width (default: 4; 16 with --paper-settings)."),
    seed: int = typer.Option(0, "--seed", help="The one seed of every run."),
    time_budget: float | None = typer.Option(None, "--time-budget", metavar="MIN", help="Minutes per run."),
    lvcr_cutoff: float | None = typer.Option(None, "--lvcr-cutoff", help="Table 3 cut-off (/day)."),
    keep: str = typer.Option("component", "--keep", help=KEEP_HELP),
) -> None:
    """Train and evaluate every model of Tables 1-2 with one seed and budget (one command for the whole comparison)."""
    from mkunet.cli._common import console, progress, user_errors
    from mkunet.train.evaluate import benchmark_models

    with user_errors():
        with progress() as bar:
            task = bar.add_task("benchmark", total=None)

            def callback(name: str, event: dict) -> None:
                if event.get("event") == "epoch":
                    bar.update(
                        task,
                        completed=event["epoch"],
                        total=event["epochs"],
                        description=f"{name}: epoch {event['epoch']} loss {event['loss']:.4f}",
                    )

            evaluation = benchmark_models(
                data,
                out,
                paper_settings=paper_settings,
                epochs=epochs,
                width=width,
                seed=seed,
                time_budget_min=time_budget,
                lvcr_cutoff=lvcr_cutoff,
                keep=keep,
                callback=callback,
            )
        console.print(evaluation.to_markdown())
        console.print(f"tables written to {out}")
