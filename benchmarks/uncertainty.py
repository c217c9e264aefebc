"""Does the LVCR interval of automatic masks cover the true LVCR? With and without the segmentation term.

A seeded synthetic cohort (default 64 patients x 3-4 scans, the demo's grid) runs through the
pipeline (:func:`mkunet.run.pipeline.run_cohort` with the cohort's ``lesions.csv``: one click on the
first scan, tracked to the others; method auto = the image lesion model), i.e. **automatic** masks,
never the truth. From its ``results.csv`` each patient's LVCR interval is recomputed with the
pipeline's own rule (``kinetics.lvcr``, interval weights, ``se_method="auto"``) and

* ``error model only``: today's interval (repeat-scan sigma(ln V) 0.08, residual SE with >= 3 scans);
* ``+ edge``, ``+ edge + contact (default)``: each scan's segmentation sigma(ln V), rebuilt from the
  stored components (``sigma_edge``, ``sigma_contact``), joins the error model;
* ``+ edge + contact + click``: the same plus the click term (``--click-shifts 1``; off by default);
* ``--contact-layers``: calibration rows with the contact term for other m (exact, from the stored term).

Coverage = the share of patients whose 95 % CI contains the generator's true LVCR; its binomial
SE is shown. Then the time cost per seeded segmentation (uncertainty on / off), and the one-click
volume +- SE on the public real tumours against their true volume.

Usage::

    python benchmarks/uncertainty.py [--patients 64] [--seed 101] [--work /tmp/mkunet-unc] [--click-shifts 1]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
REAL = {
    "lung1 (pyradiomics)": ("pyradiomics/lung1_image.nrrd", "pyradiomics/lung1_label.nrrd"),
    "lung2 (pyradiomics)": ("pyradiomics/lung2_image.nrrd", "pyradiomics/lung2_label.nrrd"),
    "IBSI CT phantom GTV": ("ibsi/ct_phantom/image.nii.gz", "ibsi/ct_phantom/mask.nii.gz"),
}


def run_cohort_once(work: Path, n: int, seed: int, click_shifts: int) -> Path:
    """The synthetic cohort and the pipeline's run on it (both cached under ``work``)."""
    from mkunet import synth
    from mkunet.run.demo import DEMO_SHAPE
    from mkunet.run.pipeline import run_cohort
    from mkunet.segmentation import infer
    from mkunet.segmentation.uncertainty import UncertaintyParams

    cohort = work / "cohort"
    if not (cohort / "scans.csv").is_file():
        c = synth.make_cohort(n, seed=seed, shape=DEMO_SHAPE, spacing=None, timepoints=(3, 4))
        synth.write_cohort(c, cohort, formats=("nifti",))
    if click_shifts:  # the pipeline uses the default parameters; widen them for this run only
        default = infer.UncertaintyParams
        infer.UncertaintyParams = lambda: default(click_shifts=click_shifts)  # type: ignore[assignment,misc]
    try:
        t0 = time.perf_counter()
        run_cohort(
            cohort,
            cohort / "clinical.csv",
            work / "run",
            formats=("nifti",),
            lvcr_max_iter=1,
            synthetic=True,
            lesions=cohort / "lesions.csv",
            cohort_figures=False,
            n_boot=10,
        )
        print(f"pipeline: {time.perf_counter() - t0:.0f} s")
    finally:
        if click_shifts:
            infer.UncertaintyParams = UncertaintyParams  # type: ignore[misc]
    return cohort


def _component(g: pd.DataFrame, name: str) -> np.ndarray:
    col = f"sigma_{name}"
    return pd.to_numeric(g[col], errors="coerce").fillna(0.0).to_numpy(float) if col in g else np.zeros(len(g))


def coverage_table(
    cohort: Path, results: pd.DataFrame, contact_layers: tuple[float, ...] = (), stored_layers: float | None = None
) -> pd.DataFrame:
    """Coverage of the true LVCR and mean CI width, per interval variant (the segmentation sigma rebuilt
    from the stored components: edge, contact with m layers, click).

    ``stored_layers``: the ``contact_layers`` the run used (default: today's default); the contact term
    for another m is exact: atanh(m n_c / V) = atanh((m / m_run) tanh(sigma_stored)).
    """
    from mkunet.analysis import kinetics
    from mkunet.segmentation.uncertainty import UncertaintyParams

    default_m = UncertaintyParams().contact_layers
    m_run = default_m if stored_layers is None else stored_layers

    truth = {p["patient_id"]: p["lvcr_per_day"] for p in json.loads((cohort / "truth.json").read_text())["patients"]}
    ok = results[results["status"] == "ok"]
    has_click = "sigma_click" in ok and ok["sigma_click"].notna().any()
    variants: dict[str, tuple[float, float, float]] = {  # weights of (edge, contact, click)
        "error model only": (0.0, 0.0, 0.0),
        "+ edge": (1.0, 0.0, 0.0),
        f"+ edge + contact m={default_m:g} (default)": (1.0, default_m / m_run, 0.0),
    }
    for m in contact_layers:
        if m != default_m:
            variants[f"+ edge + contact m={m:g}"] = (1.0, m / m_run, 0.0)
    if has_click:
        variants[f"+ edge + contact m={default_m:g} + click"] = (1.0, default_m / m_run, 1.0)
    rows = []
    for name, (we, wc, wk) in variants.items():
        hit, width, n = 0, [], 0
        for pid, g in ok.groupby("patient_id"):
            g = g.sort_values("days")
            if len(g) < 2:
                continue
            # the contact term is atanh(m n_c / V) for m layers: rescale it exactly from the stored m = default
            contact = np.arctanh(np.minimum(wc * np.tanh(_component(g, "contact")), 1.0 - 1e-9))
            sig = np.sqrt((we * _component(g, "edge")) ** 2 + contact**2 + (wk * _component(g, "click")) ** 2)
            r = kinetics.lvcr(g["days"], g["volume_cm3"], weights="interval", se_method="auto", sigma_segmentation=sig)
            n += 1
            hit += r.ci_low <= truth[str(pid)] <= r.ci_high
            width.append((r.ci_high - r.ci_low) * 1000.0)
        cov = hit / n
        rows.append(
            {
                "interval": name,
                "patients": n,
                "coverage": cov,
                "coverage SE": math.sqrt(cov * (1 - cov) / n),
                "mean CI width (1e-3/day)": float(np.mean(width)),
                "median CI width (1e-3/day)": float(np.median(width)),
            }
        )
    return pd.DataFrame(rows)


def real_table(repeats: int) -> pd.DataFrame | None:
    """One click (deepest tumour voxel) on each public tumour: volume +- SE vs truth, time on / off."""
    from scipy import ndimage

    from mkunet.io import read_volume
    from mkunet.segmentation import infer

    if not DATA.is_dir():
        print(f"{DATA} not found: real-tumour table skipped")
        return None
    rows = []
    for name, (img, lab) in REAL.items():
        vol = read_volume(DATA / img)
        truth = read_volume(DATA / lab).array > 0
        depth = ndimage.distance_transform_edt(truth, sampling=vol.spacing)
        k = np.unravel_index(int(np.argmax(depth)), truth.shape)
        seed = infer.Seed(tuple(float(i) for i in k[::-1]), units="voxel")
        times: dict[str, list[float]] = {"off": [], "on": []}
        seg = None
        for _ in range(repeats):
            for mode in ("off", "on"):
                t0 = time.perf_counter()
                seg = infer.segment(vol, roi=seed, uncertainty=mode)  # type: ignore[arg-type]
                times[mode].append(time.perf_counter() - t0)
        assert seg is not None and seg.uncertainty is not None
        true_cm3 = float(truth.sum()) * vol.voxel_volume_mm3 / 1000.0
        u = seg.uncertainty
        rows.append(
            {
                "case": name,
                "true cm3": true_cm3,
                "volume cm3": seg.voxel_volume_cm3,
                "SE cm3": u.se_cm3,
                "sigma(ln V)": u.sigma_log_volume,
                "|ln(V/true)| / sigma": abs(math.log(seg.voxel_volume_cm3 / true_cm3)) / max(u.sigma_log_volume, 1e-9),
                "estimate s": u.seconds,
                "s off": float(np.median(times["off"])),
                "s on": float(np.median(times["on"])),
                "ratio": float(np.median(times["on"]) / np.median(times["off"])),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=64)
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mkunet-unc"))
    parser.add_argument("--click-shifts", type=int, default=1, help="for the '+ click' row (0: skip it)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats on the real tumours")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument(
        "--contact-layers", type=float, nargs="*", default=[], help="calibration rows: the contact term with m layers"
    )
    parser.add_argument(
        "--stored-contact-layers", type=float, default=None, help="the run's m, if not today's default (a cached run)"
    )
    args = parser.parse_args()

    work = args.work / f"seed{args.seed}_n{args.patients}_click{args.click_shifts}"
    cohort = run_cohort_once(work, args.patients, args.seed, args.click_shifts)
    # per target lesion (one per synthetic patient): its rows carry the uncertainty components
    lesion_table = work / "run" / "lesion_results.csv"
    results = pd.read_csv(lesion_table if lesion_table.is_file() else work / "run" / "results.csv")
    pd.set_option("display.width", 200)
    print(f"\n## Coverage of the true LVCR by the 95 % CI (seed {args.seed}, {args.patients} patients, auto masks)")
    table = coverage_table(cohort, results, tuple(args.contact_layers), args.stored_contact_layers)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    ok = results[results["status"] == "ok"]
    if "uncertainty_seconds" in ok:
        seg_s = ok["seconds_segment"].to_numpy(float)
        unc_s = ok["uncertainty_seconds"].to_numpy(float)
        print(
            f"\nper scan (pipeline, click_shifts={args.click_shifts}): segmentation {np.median(seg_s - unc_s):.2f} s "
            f"median, uncertainty {np.median(unc_s):.2f} s (ratio {np.median(seg_s / (seg_s - unc_s)):.2f}); "
            f"sigma_seg median {ok['sigma_log_volume_seg'].median():.3f}, "
            f"IQR {ok['sigma_log_volume_seg'].quantile(0.25):.3f}-{ok['sigma_log_volume_seg'].quantile(0.75):.3f}"
        )
    if not args.skip_real:
        real = real_table(args.repeats)
        if real is not None:
            print("\n## One click on the public real tumours (default parameters)")
            print(real.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
