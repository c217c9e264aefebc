"""Synthetic longitudinal cohorts and single training cases.

Conventions: arrays (z, y, x); spacing tuples (z, y, x) in mm; origins (x, y, z) in mm
(LPS); days since the patient's first scan; volumes in mm^3 internally, cm^3 in tables.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mkunet.synth._fields import Grid
from mkunet.synth.anatomy import AnatomyParams, render_anatomy, sample_anatomy
from mkunet.synth.growth import (
    DEFAULT_MEASUREMENT_SIGMA,
    baseline_diameter,
    diameter_to_volume,
    sample_lvcr,
    sample_schedule,
    volume_to_diameter,
    volumes,
)
from mkunet.synth.outcomes import OutcomeModel, sample_clinical, simulate_outcomes
from mkunet.synth.scanner import apply_scanner, sample_scanner
from mkunet.synth.tumour import TumourParams, place_tumour, render_tumour, sample_tumour
from mkunet.volume import Volume

__all__ = [
    "Scan",
    "Patient",
    "Cohort",
    "make_case",
    "make_cohort",
    "iter_patients",
    "tumour_sphericity",
    "SLICE_THICKNESSES",
]

SLICE_THICKNESSES = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)


@dataclass
class Scan:
    """One CT scan of a patient: ``volume`` (float32 HU, (z, y, x)) and bool tumour ``mask``."""

    timepoint: int
    days: int
    date: _dt.date
    volume: Volume
    mask: np.ndarray
    true_volume_mm3: float  # V0 exp(LVCR t)
    rendered_volume_mm3: float  # true volume x exp(measurement noise), the body drawn
    mask_volume_mm3: float  # voxel count x voxel volume
    scanner: dict[str, Any]
    shift_mm: tuple[float, float, float]  # repositioning (x, y, z) mm vs the patient frame

    @property
    def study_date(self) -> str:
        return self.date.strftime("%Y%m%d")


@dataclass
class Patient:
    """A synthetic patient: clinical covariates, true kinetics, tumour, scans and outcomes."""

    patient_id: str
    clinical: dict[str, Any]
    lvcr: float  # true LVCR, per day
    responder: bool
    sphericity: float  # of the tumour body (spicules excluded)
    tumour: TumourParams
    anatomy: AnatomyParams
    spacing: tuple[float, float, float]  # (z, y, x) mm
    scans: list[Scan] = field(default_factory=list)
    outcomes: dict[str, Any] = field(default_factory=dict)
    seed_entropy: int = 0


@dataclass
class Cohort:
    """A synthetic cohort; ``params`` holds every generator parameter (for truth.json)."""

    patients: list[Patient]
    params: dict[str, Any]
    outcome_model: OutcomeModel

    def truth(self) -> dict[str, Any]:
        """Everything a pipeline should recover, JSON-serialisable."""
        return {
            "generator": self.params,
            "outcome_model": self.outcome_model.to_dict(),
            "patients": [patient_truth(p) for p in self.patients],
        }


def patient_truth(p: Patient) -> dict[str, Any]:
    """One patient's ground truth as a JSON-safe dict (the ``patients`` entries of ``truth.json``).

    Patient id, LVCR (1/day), VDT (days; None without growth), responder, sphericity, spacing
    (z, y, x mm), clinical variables, outcomes, tumour and anatomy parameters and, per scan, its
    day, date, true, rendered and mask volumes (cm^3), equivalent diameter (mm), scanner and
    shift (x, y, z mm). Used by :meth:`Cohort.truth` and :func:`mkunet.synth.writers.write_cohort`.
    """
    return {
        "patient_id": p.patient_id,
        "lvcr_per_day": p.lvcr,
        "vdt_days": float(np.log(2) / p.lvcr) if p.lvcr != 0 else None,
        "responder": p.responder,
        "sphericity": p.sphericity,
        "spacing_zyx_mm": list(p.spacing),
        "clinical": p.clinical,
        "outcomes": {k: (v.item() if hasattr(v, "item") else v) for k, v in p.outcomes.items()},
        "tumour": p.tumour.to_dict(),
        "anatomy": p.anatomy.to_dict(),
        "scans": [
            {
                "timepoint": s.timepoint,
                "days": s.days,
                "scan_date": s.date.isoformat(),
                "true_volume_cm3": s.true_volume_mm3 / 1000.0,
                "rendered_volume_cm3": s.rendered_volume_mm3 / 1000.0,
                "mask_volume_cm3": s.mask_volume_mm3 / 1000.0,
                "equivalent_diameter_mm": float(volume_to_diameter(s.true_volume_mm3)),
                "scanner": s.scanner,
                "shift_xyz_mm": list(s.shift_mm),
            }
            for s in p.scans
        ],
    }


def tumour_sphericity(tumour: TumourParams, n: int = 40) -> float:
    """Sphericity pi^(1/3) (6V)^(2/3) / A of the tumour body (spicules excluded), from a
    marching-cubes mesh of the body rasterised on an ``n``^3 grid (scale invariant)."""
    from skimage.measure import marching_cubes, mesh_surface_area

    ext = tumour.max_extent(1.0) if not len(tumour.spicules.get("dir", ())) else None
    r0 = 1.0
    from mkunet.synth.tumour import DIRECTIONS

    rmax = float(tumour.radius_unit(DIRECTIONS.astype(np.float32)).max() * np.max(tumour.stretch)) * 1.05
    del ext
    ax = np.linspace(-rmax, rmax, n, dtype=np.float32)
    step = float(ax[1] - ax[0])
    pz, py, px = np.meshgrid(ax, ax, ax, indexing="ij")
    rot = tumour.rotation.astype(np.float32)
    st = tumour.stretch.astype(np.float32)
    q = [(px * rot[0, i] + py * rot[1, i] + pz * rot[2, i]) / st[i] for i in range(3)]
    rho_s = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) + np.float32(1e-6)
    u = np.stack([q[0] / rho_s, q[1] / rho_s, q[2] / rho_s], axis=-1)
    f = rho_s - r0 * tumour.radius_unit(u)
    f = np.pad(f, 1, constant_values=1.0)
    verts, faces, _, _ = marching_cubes(f, 0.0, spacing=(step, step, step))
    area = mesh_surface_area(verts, faces)
    vol = tumour.unit_volume
    return float(np.pi ** (1 / 3) * (6 * vol) ** (2 / 3) / area)


def _grid_for(
    centre: np.ndarray,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    anatomy: AnatomyParams,
    extent: float,
    rng: np.random.Generator,
    centre_body: bool,
) -> Grid:
    """A scan grid of ``shape``/``spacing`` containing the tumour (centre, radius ``extent`` mm)."""
    nz, ny, nx = shape
    sz, sy, sx = spacing
    half = np.array([(nx - 1) * sx, (ny - 1) * sy, (nz - 1) * sz]) / 2.0
    c = np.array(centre, float)
    fov_c = np.empty(3)
    for i, (limit_body) in enumerate((anatomy.body_a, anatomy.body_b, None)):
        slack = max(half[i] - extent - 3.0, 0.0)
        if centre_body and limit_body is not None and half[i] >= limit_body:
            fov_c[i] = float(np.clip(rng.uniform(-0.03, 0.03) * half[i], c[i] - slack, c[i] + slack))
        else:
            fov_c[i] = c[i] + rng.uniform(-0.6, 0.6) * slack
    origin = fov_c - half
    return Grid(tuple(int(s) for s in shape), tuple(float(s) for s in spacing), tuple(float(o) for o in origin))


def _check_shape_spacing(shape, spacing) -> None:
    if len(shape) != 3 or min(int(s) for s in shape) < 8:
        raise ValueError(f"`shape` must be (z, y, x) with every size >= 8 voxels, got {tuple(shape)!r}.")
    if spacing is not None and (len(spacing) != 3 or min(float(s) for s in spacing) <= 0):
        raise ValueError(f"`spacing` must be (z, y, x) mm, all > 0, or None (random), got {spacing!r}.")


def _draw_spacing(
    rng: np.random.Generator, shape, spacing, fit_body: AnatomyParams | None, max_diameter: float
) -> tuple[float, float, float]:
    if spacing is not None:
        return tuple(float(s) for s in spacing)  # type: ignore[return-value]
    nz = shape[0]
    choices = [t for t in SLICE_THICKNESSES if nz * t >= 1.3 * max_diameter + 10] or [max(SLICE_THICKNESSES)]
    sz = float(rng.choice(choices))
    if fit_body is not None:
        sxy = float(np.ceil(2.15 * max(fit_body.body_a, fit_body.body_b) / max(shape[1], shape[2]) * 100) / 100)
        sxy = max(sxy, 0.6)
    else:
        sxy = float(np.round(rng.uniform(0.6, 1.0), 3))
    return (sz, sxy, sxy)


def _shift_array(a: np.ndarray, shift: tuple[int, int, int]) -> np.ndarray:
    """Content moved by integer voxels ``shift`` (z, y, x), edges replicated."""
    if not any(shift):
        return a.copy()
    pad = [(max(s, 0), max(-s, 0)) for s in shift]
    p = np.pad(a, pad, mode="edge")
    sl = tuple(slice(max(-s, 0) + 0 if s < 0 else 0, None) for s in shift)
    out = p[tuple(slice(max(-s, 0), max(-s, 0) + n) if s < 0 else slice(0, n) for s, n in zip(shift, a.shape))]
    del sl
    return np.ascontiguousarray(out)


def make_case(
    seed: int | np.random.Generator,
    *,
    shape: tuple[int, int, int] = (64, 160, 160),
    spacing: tuple[float, float, float] | None = None,
    diameter_mm: tuple[float, float] | float = (5.0, 60.0),
    kind: str | None = None,
    surface: str | None = None,
    contact: str | None = None,
    necrosis: bool | None = None,
    contrast: bool | None = None,
    wide_scanner: bool = True,
    fit_body: bool = False,
) -> tuple[Volume, np.ndarray]:
    """One random training case: anatomy + one tumour + randomised scanner.

    Args:
        seed: int seed or a numpy Generator.
        shape: output (z, y, x) voxels.
        spacing: (z, y, x) mm; None = random (slice thickness from
            :data:`SLICE_THICKNESSES`, in-plane 0.6-1.0 mm; the field of view is centred
            near the tumour and may crop the body, like a real cropped CT).
        diameter_mm: (min, max) equivalent diameter, log-uniform, or one value; up to
            ~100 mm is supported (very large tumours are clipped to the lung).
        kind, surface, contact, necrosis: tumour options (see
            :func:`mkunet.synth.tumour.sample_tumour`); random when None.
        contrast: contrast-enhanced blood; random when None.
        wide_scanner: widely randomised scanner (domain randomisation) when True.
        fit_body: choose the in-plane spacing so the whole body fits (when ``spacing`` is None).

    Returns:
        (Volume with float32 integer-valued HU, bool tumour mask), both (z, y, x).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    _check_shape_spacing(shape, spacing)
    dr = (float(diameter_mm), float(diameter_mm)) if np.isscalar(diameter_mm) else tuple(float(d) for d in diameter_mm)  # type: ignore[arg-type]
    if len(dr) != 2 or not 0 < dr[0] <= dr[1] or dr[1] > 150:
        raise ValueError(f"`diameter_mm` must be a value or (min, max) in (0, 150] mm, got {diameter_mm!r}.")
    anat = sample_anatomy(rng, contrast=contrast)
    d = float(np.exp(rng.uniform(np.log(dr[0]), np.log(dr[1]))))
    tumour = sample_tumour(rng, kind=kind, surface=surface, contact=contact, necrosis=necrosis, diameter_mm=d)
    vol = float(diameter_to_volume(d))
    extent = tumour.max_extent(vol)
    tumour.centre = place_tumour(tumour, anat, extent, rng)
    sp = _draw_spacing(rng, shape, spacing, anat if fit_body else None, 2 * extent)
    grid = _grid_for(tumour.centre, shape, sp, anat, extent, rng, centre_body=fit_body)
    a = render_anatomy(anat, grid, rng)
    hu = a.hu
    mask = render_tumour(tumour, vol, grid, hu, a.lung, rng)
    scanner = sample_scanner(rng, sp, wide=wide_scanner)
    out = apply_scanner(hu, sp, scanner, rng)
    volume = Volume(
        out,
        spacing=sp,
        origin=grid.origin,
        patient_id="synthetic",
        meta={
            "Modality": "CT",
            "synthetic": True,
            "tumour_kind": tumour.kind,
            "diameter_mm": d,
            "scanner": scanner.to_dict(),
        },
    )
    if not mask.any():
        import warnings

        warnings.warn(
            f"make_case: the tumour (diameter {d:.1f} mm) left no voxel >= half filled on spacing {sp}; the mask is empty.",  # noqa: E501
            stacklevel=2,
        )
    return volume, mask


def iter_patients(
    n_patients: int,
    *,
    seed: int,
    shape: tuple[int, int, int] = (64, 256, 256),
    spacing: tuple[float, float, float] | None = None,
    timepoints: tuple[int, int] = (2, 5),
    diameter_mm: tuple[float, float] = (5.0, 60.0),
    interval_days: tuple[int, int] = (42, 84),
    responder_fraction: float = 0.25,
    measurement_sigma: float = DEFAULT_MEASUREMENT_SIGMA,
    reposition_mm: float = 3.0,
    wide_scanner: bool = False,
    workers: int = 1,
    on_patient: Callable[[Patient], None] | None = None,
) -> Iterator[Patient]:
    """Generate patients one at a time (same arguments as :func:`make_cohort`; outcomes are
    filled in by :func:`make_cohort`). Patient ``i`` depends only on (seed, i), so the
    result does not depend on ``workers``.

    Args:
        workers: > 1 generates patients in that many forked processes (in order).
        on_patient: with ``workers`` > 1, called *in the worker* on each new patient
            (e.g. to write its files there); the patient is then sent back.
    """
    if int(n_patients) < 1:
        raise ValueError(f"`n_patients` must be >= 1, got {n_patients!r}.")
    _check_shape_spacing(shape, spacing)
    children = np.random.SeedSequence(int(seed)).spawn(int(n_patients))
    args = [
        (
            i,
            ss,
            shape,
            spacing,
            timepoints,
            diameter_mm,
            interval_days,
            responder_fraction,
            measurement_sigma,
            reposition_mm,
            wide_scanner,
        )
        for i, ss in enumerate(children)
    ]
    if workers <= 1 or n_patients == 1:
        for a in args:
            yield _make_patient(*a)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=int(workers), mp_context=mp.get_context("fork")) as pool:
        yield from pool.map(_patient_job, [(a, on_patient) for a in args])


def _patient_job(job) -> Patient:
    args, on_patient = job
    patient = _make_patient(*args)
    if on_patient is not None:
        on_patient(patient)
    return patient


def _make_patient(
    i,
    ss,
    shape,
    spacing,
    timepoints,
    diameter_mm,
    interval_days,
    responder_fraction,
    sigma,
    reposition_mm,
    wide_scanner,
) -> Patient:
    rng = np.random.default_rng(ss)
    anat = sample_anatomy(rng)
    tumour = sample_tumour(rng, diameter_mm=float(np.sqrt(diameter_mm[0] * diameter_mm[1])))
    lvcr, responder = sample_lvcr(rng, tumour.kind, responder_fraction)
    days = sample_schedule(rng, timepoints, interval_days)
    d0 = baseline_diameter(rng, lvcr, float(days[-1]), diameter_mm)
    v_true, v_rend = volumes(float(diameter_to_volume(d0)), lvcr, days, sigma, rng)
    extent = tumour.max_extent(float(v_rend.max()))
    tumour.centre = place_tumour(tumour, anat, extent, rng)
    sp = _draw_spacing(rng, shape, spacing, anat, 2 * extent + 2 * reposition_mm)
    grid = _grid_for(tumour.centre, shape, sp, anat, extent + 2 * reposition_mm, rng, centre_body=True)
    a = render_anatomy(anat, grid, rng)
    clinical = sample_clinical(rng, d0)
    base_date = _dt.date(2015, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 3000)))
    pid = f"SYN{i + 1:04d}"
    patient = Patient(
        pid,
        clinical,
        float(lvcr),
        bool(responder),
        tumour_sphericity(tumour),
        tumour,
        anat,
        sp,
        seed_entropy=int(ss.entropy) if isinstance(ss.entropy, int) else 0,
    )
    sz, sy, sx = sp
    for k, day in enumerate(days):
        if k == 0 or reposition_mm <= 0:
            shift = (0, 0, 0)
        else:
            shift = tuple(int(np.rint(rng.normal(0.0, reposition_mm) / s)) for s in sp)
        hu = _shift_array(a.hu, shift)
        lung = _shift_array(a.lung, shift) if any(shift) else a.lung
        shift_xyz = np.array([shift[2] * sx, shift[1] * sy, shift[0] * sz])
        mask = render_tumour(tumour, float(v_rend[k]), grid, hu, lung, rng, centre=tumour.centre + shift_xyz)
        scanner = sample_scanner(rng, sp, wide=wide_scanner)
        img = apply_scanner(hu, sp, scanner, rng)
        date = base_date + _dt.timedelta(days=int(day))
        vol = Volume(
            img,
            spacing=sp,
            origin=grid.origin,
            patient_id=pid,
            meta={"Modality": "CT", "StudyDate": date.strftime("%Y%m%d"), "synthetic": True},
        )
        patient.scans.append(
            Scan(
                k,
                int(day),
                date,
                vol,
                mask,
                float(v_true[k]),
                float(v_rend[k]),
                float(mask.sum() * np.prod(sp)),
                scanner.to_dict(),
                tuple(float(v) for v in shift_xyz),
            )
        )
    return patient


def make_cohort(
    n_patients: int,
    *,
    seed: int,
    shape: tuple[int, int, int] = (64, 256, 256),
    spacing: tuple[float, float, float] | None = None,
    timepoints: tuple[int, int] = (2, 5),
    diameter_mm: tuple[float, float] = (5.0, 60.0),
    interval_days: tuple[int, int] = (42, 84),
    responder_fraction: float = 0.25,
    measurement_sigma: float = DEFAULT_MEASUREMENT_SIGMA,
    reposition_mm: float = 3.0,
    wide_scanner: bool = False,
    outcome_model: OutcomeModel | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> Cohort:
    """Generate a synthetic longitudinal chest-CT cohort with known ground truth.

    Args:
        n_patients: number of patients (>= 1).
        seed: master seed; the same seed gives the same pixels, masks and tables.
        shape: scan size (z, y, x) voxels.
        spacing: (z, y, x) mm for every scan, or None: per patient, slice thickness drawn
            from :data:`SLICE_THICKNESSES` (those for which the z field of view holds the
            tumour) and in-plane spacing chosen so the whole body fits the x/y field of view.
        timepoints: (min, max) scans per patient.
        diameter_mm: (min, max) equivalent tumour diameter over follow-up.
        interval_days: (min, max) nominal interval between scans (+- 7 d jitter).
        responder_fraction: probability that the tumour shrinks (negative LVCR).
        measurement_sigma: per-scan SD of ln V of the rendered volume around V0 exp(LVCR t).
        reposition_mm: SD (mm) of the integer-voxel patient translation between scans.
        wide_scanner: widely randomised scanner settings (training) instead of clinical ones.
        outcome_model: the outcome model (default :class:`OutcomeModel`).
        progress: called as ``progress(done, total)`` after each patient.
        workers: processes generating patients in parallel (same result for any value).

    Returns:
        Cohort (patients with scans, clinical covariates, outcomes; ``truth()``).
    """
    model = outcome_model or OutcomeModel()
    params = generator_params(
        n_patients,
        seed,
        shape=shape,
        spacing=spacing,
        timepoints=timepoints,
        diameter_mm=diameter_mm,
        interval_days=interval_days,
        responder_fraction=responder_fraction,
        measurement_sigma=measurement_sigma,
        reposition_mm=reposition_mm,
        wide_scanner=wide_scanner,
    )
    patients = []
    for p in iter_patients(
        n_patients,
        seed=seed,
        shape=shape,
        spacing=spacing,
        timepoints=timepoints,
        diameter_mm=diameter_mm,
        interval_days=interval_days,
        responder_fraction=responder_fraction,
        measurement_sigma=measurement_sigma,
        reposition_mm=reposition_mm,
        wide_scanner=wide_scanner,
        workers=workers,
    ):
        patients.append(p)
        if progress is not None:
            progress(len(patients), int(n_patients))
    attach_outcomes(patients, model, seed)
    return Cohort(patients, params, model)


def generator_params(
    n_patients: int,
    seed: int,
    *,
    shape,
    spacing,
    timepoints,
    diameter_mm,
    interval_days,
    responder_fraction,
    measurement_sigma,
    reposition_mm,
    wide_scanner,
) -> dict[str, Any]:
    """The generator parameters recorded in truth.json."""
    return {
        "n_patients": int(n_patients),
        "seed": int(seed),
        "shape_zyx": list(shape),
        "spacing_zyx_mm": None if spacing is None else list(spacing),
        "timepoints": list(timepoints),
        "diameter_mm": list(diameter_mm),
        "interval_days": list(interval_days),
        "responder_fraction": responder_fraction,
        "measurement_sigma_lnV": measurement_sigma,
        "reposition_sd_mm": reposition_mm,
        "wide_scanner": wide_scanner,
        "volume_model": "V(t) = V0 * exp(LVCR * t); rendered V_k = V(t_k) * exp(N(0, measurement_sigma))",
        "mask_rule": "voxel is tumour when its analytic tumour occupancy (body or spicule, clipped to the lung) is >= 0.5",  # noqa: E501
        "slice_thickness_choices_mm": list(SLICE_THICKNESSES),
    }


def attach_outcomes(patients: list[Patient], model: OutcomeModel, seed: int) -> None:
    """Draw each patient's outcomes from ``model`` and store them in ``Patient.outcomes`` (in place).

    The outcomes depend on the whole cohort's LVCR, sphericity, age and stage
    (:func:`mkunet.synth.outcomes.simulate_outcomes`), with a generator seeded by ``seed``
    alone, so a cohort written patient by patient (:func:`mkunet.synth.writers.write_cohort`)
    gets the same outcomes as one made in memory (:func:`make_cohort`).
    """
    table = pd.DataFrame(
        {
            "lvcr": [p.lvcr for p in patients],
            "sphericity": [p.sphericity for p in patients],
            "age": [p.clinical["age"] for p in patients],
            "stage": [p.clinical["stage"] for p in patients],
        }
    )
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x0C0C]))
    out = simulate_outcomes(table, rng, model)
    for p, (_, row) in zip(patients, out.iterrows()):
        p.outcomes = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.to_dict().items()}
