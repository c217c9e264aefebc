"""Synthetic longitudinal chest-CT cohorts with known ground truth (and training cases).

Public API::

    make_cohort(n_patients, *, seed, shape=(64, 256, 256), spacing=None, timepoints=(2, 5),
                diameter_mm=(5, 60), ...) -> Cohort
    write_cohort(cohort, out_dir, formats=("nifti", "dicom"), progress=None) -> Path
    make_case(seed, **options) -> (Volume, bool mask)
    insert_tumours(volume, lungs, rng, ...) -> (Volume, uint8 labels)   # into real CT
    growth_series(volume, lungs, rng, days, lvcr_per_day, ...) -> [(Volume, labels), ...]

Arrays are (z, y, x); spacing (z, y, x) mm; origin (x, y, z) mm (LPS).
"""

from mkunet.synth.cohort import Cohort, Patient, Scan, iter_patients, make_case, make_cohort
from mkunet.synth.insert import IGNORE_LABEL, growth_series, insert_tumours
from mkunet.synth.outcomes import OutcomeModel, simulate_outcomes

__all__ = [
    "Cohort",
    "Patient",
    "Scan",
    "make_cohort",
    "make_case",
    "iter_patients",
    "write_cohort",
    "OutcomeModel",
    "simulate_outcomes",
    "insert_tumours",
    "growth_series",
    "IGNORE_LABEL",
]


def __getattr__(name: str):
    if name == "write_cohort":
        from mkunet.synth.writers import write_cohort

        return write_cohort
    raise AttributeError(name)
