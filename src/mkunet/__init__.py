"""mkunet: lung-tumour segmentation on serial chest CT, growth kinetics and an immune-evasion score.

Implements the MK-UNet system (multi-channel input, clinical fusion, immune-aware
attention gates) and the Immune Evasion Score of the 2025 paper, with the fixes
documented in docs/paper.md. Not a medical device.

The names a user needs import from here, as torchio's do::

    from mkunet import read_volume, segment, Seed, shape_features, lvcr

Arrays are (z, y, x), spacings (z, y, x) in mm, points (x, y, z) in mm (DICOM patient
coordinates, LPS). The package is laid out by concern:

* :mod:`mkunet.io`: volumes and masks in and out (DICOM, NIfTI, NRRD, SEG, RTSTRUCT, PACS);
* :mod:`mkunet.preprocess`: the four input channels, windowing, resampling, augmentation;
* :mod:`mkunet.segmentation`: the lesion model, detection, lungs, registration, tracking, uncertainty;
* :mod:`mkunet.analysis`: shape, kinetics, IES, survival statistics, metrics;
* :mod:`mkunet.qc`: automatic quality control of each segmentation and each lesion series;
* :mod:`mkunet.run`: cohort inputs, the resumable pipeline, the run folder;
* :mod:`mkunet.report`, :mod:`mkunet.models`, :mod:`mkunet.train`, :mod:`mkunet.synth`, :mod:`mkunet.cli`.

Names are imported on first use (PEP 562), so ``import mkunet`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mkunet.volume import Volume, same_grid

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "read_volume": "mkunet.io.files",
    "write_volume": "mkunet.io.files",
    "read_mask": "mkunet.io.files",
    "write_mask": "mkunet.io.files",
    "read_rtstruct": "mkunet.io.files",
    "DicomSeriesError": "mkunet.io.dicom_in",
    "write_seg": "mkunet.io.dicom_out",
    "write_rtstruct": "mkunet.io.dicom_out",
    "segment": "mkunet.segmentation.infer",
    "segment_timepoints": "mkunet.segmentation.infer",
    "Seed": "mkunet.segmentation.prompts",
    "Box": "mkunet.segmentation.prompts",
    "PreviousMask": "mkunet.segmentation.prompts",
    "Segmentation": "mkunet.segmentation.results",
    "LongitudinalSegmentation": "mkunet.segmentation.results",
    "SeedError": "mkunet.segmentation.lesion",
    "LesionParams": "mkunet.segmentation.lesion",
    "save_segmentation": "mkunet.segmentation.results",
    "detect_lesions": "mkunet.segmentation.candidates",
    "DetectionParams": "mkunet.segmentation.candidates",
    "shape_features": "mkunet.analysis.shape",
    "lvcr": "mkunet.analysis.kinetics",
    "vdt_days": "mkunet.analysis.kinetics",
    "response_over_time": "mkunet.analysis.kinetics",
    "immune_evasion_score": "mkunet.analysis.ies",
    "dice": "mkunet.analysis.metrics",
    "hd95": "mkunet.analysis.metrics",
    "check_segmentation": "mkunet.qc",
    "check_series": "mkunet.qc",
    "QCParams": "mkunet.qc",
    "QCResult": "mkunet.qc",
    "run_cohort": "mkunet.run.pipeline",
    "load_run": "mkunet.run.store",
}

__all__ = [
    "Volume",
    "same_grid",
    "__version__",
    "Box",
    "DetectionParams",
    "DicomSeriesError",
    "LesionParams",
    "LongitudinalSegmentation",
    "PreviousMask",
    "QCParams",
    "QCResult",
    "Seed",
    "SeedError",
    "Segmentation",
    "check_segmentation",
    "check_series",
    "detect_lesions",
    "dice",
    "hd95",
    "immune_evasion_score",
    "load_run",
    "lvcr",
    "read_mask",
    "read_rtstruct",
    "read_volume",
    "response_over_time",
    "run_cohort",
    "save_segmentation",
    "segment",
    "segment_timepoints",
    "shape_features",
    "vdt_days",
    "write_mask",
    "write_rtstruct",
    "write_seg",
    "write_volume",
]

if TYPE_CHECKING:  # static checkers see the real objects
    from mkunet.analysis.ies import immune_evasion_score
    from mkunet.analysis.kinetics import lvcr, response_over_time, vdt_days
    from mkunet.analysis.metrics import dice, hd95
    from mkunet.analysis.shape import shape_features
    from mkunet.io.dicom_in import DicomSeriesError
    from mkunet.io.dicom_out import write_rtstruct, write_seg
    from mkunet.io.files import read_mask, read_rtstruct, read_volume, write_mask, write_volume
    from mkunet.qc import QCParams, QCResult, check_segmentation, check_series
    from mkunet.run.pipeline import run_cohort
    from mkunet.run.store import load_run
    from mkunet.segmentation.candidates import DetectionParams, detect_lesions
    from mkunet.segmentation.infer import segment, segment_timepoints
    from mkunet.segmentation.lesion import LesionParams, SeedError
    from mkunet.segmentation.prompts import Box, PreviousMask, Seed
    from mkunet.segmentation.results import LongitudinalSegmentation, Segmentation, save_segmentation


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mkunet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
