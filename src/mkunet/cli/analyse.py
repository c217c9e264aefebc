"""`mkunet analyse`: growth kinetics, IES and cohort statistics for a cohort folder."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register", "measure_scans", "load_cohort"]


def measure_scans(cohort_dir: Path, scans, progress_bar: bool = True):
    """Measure every scan of ``scans.csv`` (columns patient_id, days, image, mask; paths relative to
    ``cohort_dir``) -> measurements DataFrame (patient_id, timepoint, days, volume_cm3, sphericity,
    surface_area_mm2, max_diameter_3d_mm, longest_axial_diameter_mm, mean_hu).

    An empty mask gets volume 0 and no shape features (a warning is logged); such a scan cannot
    enter LVCR and the patient is reported in the 'excluded' table if fewer than two scans remain.
    """
    import logging

    import pandas as pd

    from mkunet import io
    from mkunet.analysis.shape import intensity_features, is_measurable, shape_features

    log = logging.getLogger("mkunet.analyse")
    for col in ("patient_id", "days", "image", "mask"):
        if col not in scans.columns:
            raise ValueError(f"{cohort_dir / 'scans.csv'}: column {col!r} missing; it has {list(scans.columns)}.")
    rows = []

    def one(rec) -> dict:
        image = io.read_volume(cohort_dir / str(rec.image))
        mask = io.read_mask(cohort_dir / str(rec.mask), image)
        row = {
            "patient_id": str(rec.patient_id),
            "timepoint": getattr(rec, "timepoint", None),
            "days": float(rec.days),
        }
        if not is_measurable(mask):
            log.warning("empty mask for patient %s at day %s: volume 0, no shape features", rec.patient_id, rec.days)
            row["volume_cm3"] = 0.0
            return row
        shape = shape_features(mask, image)
        row.update(
            volume_cm3=shape["volume_cm3"],
            sphericity=shape["sphericity"],
            surface_area_mm2=shape["surface_area_mm2"],
            max_diameter_3d_mm=shape["max_diameter_3d_mm"],
            longest_axial_diameter_mm=shape["longest_axial_diameter_mm"],
            mean_hu=intensity_features(image, mask)["mean_hu"],
        )
        return row

    records = list(scans.itertuples(index=False))
    if progress_bar:
        from mkunet.cli._common import progress

        with progress() as bar:
            task = bar.add_task("measuring masks", total=len(records))
            for rec in records:
                rows.append(one(rec))
                bar.advance(task)
    else:
        rows = [one(rec) for rec in records]
    meas = pd.DataFrame(rows)
    return meas[meas["volume_cm3"] > 0].reset_index(drop=True) if len(meas) else meas


def load_cohort(cohort_dir: Path, progress_bar: bool = True):
    """Read clinical.csv, outcomes.csv and measurements.csv (or measure scans.csv) from ``cohort_dir``."""
    import pandas as pd

    cohort_dir = Path(cohort_dir)
    if not cohort_dir.is_dir():
        raise FileNotFoundError(f"No such cohort folder: '{cohort_dir}'.")
    tables = {}
    for name in ("clinical", "outcomes"):
        path = cohort_dir / f"{name}.csv"
        if not path.exists():
            raise FileNotFoundError(f"'{path}' not found: the cohort folder needs clinical.csv and outcomes.csv.")
        tables[name] = pd.read_csv(path, dtype={"patient_id": str})
    meas_path = cohort_dir / "measurements.csv"
    scans_path = cohort_dir / "scans.csv"
    if meas_path.exists():
        meas = pd.read_csv(meas_path, dtype={"patient_id": str})
    elif scans_path.exists():
        meas = measure_scans(cohort_dir, pd.read_csv(scans_path, dtype={"patient_id": str}), progress_bar)
    else:
        raise FileNotFoundError(
            f"'{cohort_dir}' has neither measurements.csv nor scans.csv (with a mask column): nothing to analyse."
        )
    return meas, tables["clinical"], tables["outcomes"]


def _parse_cutoff(value: str):
    if value == "median":
        return "median"
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--cutoff must be 'median' or a number, got {value!r}.") from None


def _parse_landmark(value: str | None):
    if value is None:
        return None
    if value == "last_scan":
        return "last_scan"
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--landmark-days must be a number of days or 'last_scan', got {value!r}.") from None


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to `app`."""

    @app.command("analyse")
    def analyse(
        cohort: Path = typer.Option(
            ..., "--cohort", help="Cohort folder: clinical.csv, outcomes.csv and measurements.csv or scans.csv."
        ),
        out: Path = typer.Option(..., "--out", help="Output folder for tables (CSV, Markdown) and figures (PNG)."),
        cutoff: str = typer.Option("median", "--cutoff", help="High/low IES cut-off: 'median' or a number."),
        ies_mode: str = typer.Option("standardised", "--ies-mode", help="IES mode: paper | standardised | cox."),
        landmark_days: str | None = typer.Option(
            None,
            "--landmark-days",
            help="Landmark (days since first scan) or 'last_scan'; against guarantee-time bias.",
        ),
        weights: str = typer.Option(
            "interval", "--lvcr-weights", help="LVCR weights: interval | inverse_variance | uniform."
        ),
        n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for AUC confidence intervals."),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
        no_figures: bool = typer.Option(False, "--no-figures", help="Write tables only."),
    ) -> None:
        """Growth kinetics (LVCR), Immune Evasion Score and survival / PD-L1 statistics for a cohort."""
        from mkunet.cli._common import console, user_errors

        with user_errors():
            if ies_mode not in ("paper", "standardised", "cox"):
                raise ValueError(f"--ies-mode must be paper, standardised or cox, got {ies_mode!r}.")
            meas, clinical, outcomes = load_cohort(cohort)
            from mkunet.analysis.cohort import analyse_cohort

            result = analyse_cohort(
                meas,
                clinical,
                outcomes,
                out_dir=out,
                cutoff=_parse_cutoff(cutoff),
                ies_mode=ies_mode,
                landmark_days=_parse_landmark(landmark_days),
                lvcr_weights=weights,
                n_boot=n_boot,
                seed=seed,
                figures=not no_figures,
            )
            out.mkdir(parents=True, exist_ok=True)
            meas.to_csv(out / "measurements.csv", index=False)
            typer.echo(result.summary())
            console.print(f"wrote {len(result.files) + 1} files to {out}", highlight=False, markup=False)
