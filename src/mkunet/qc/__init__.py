"""Automatic quality control: which segmentations and which lesion series a person should look at.

A researcher running hundreds of patients cannot look at every contour. The checks here name
the few that are probably wrong, each with a reason a reader understands (numbers and units),
so that they can be kept out of the statistics until someone has looked. Nothing here changes
a mask or a volume.

Two entry points (modules: :mod:`mkunet.qc.params` the thresholds and result types,
:mod:`mkunet.qc.scan` the per-scan checks, :mod:`mkunet.qc.series` the per-series checks):

* :func:`check_segmentation`: one :class:`mkunet.segmentation.infer.Segmentation` (one scan);
* :func:`check_series`: one lesion's volumes over time (days, cm³), with optionally the
  per-scan σ(ln V), the registered centres, the overlaps of registered masks and whether
  the lesion was found on each scan.

Both return a :class:`QCResult`: ``status`` ``"ok"`` or ``"review"``, the ``reasons``
(:class:`QCReason`: a stable ``code``, a ``message``, the ``timepoints`` involved) and the
measured ``metrics``. :meth:`QCResult.merge` combines a series' result with its scans'.

Per-scan checks (codes):

``empty``
    the mask is empty (no tumour found).
``too_large_for_click``
    the mask is far larger than the lesion at the click: its volume over the volume of the
    largest ball of soft tissue (smoothed HU above :data:`mkunet.constants.LUNG_HU`) centred
    within a few mm of the click (the lesion's inscribed radius there). A click on a 6 mm
    nodule whose contour grew into the heart gives a ratio in the hundreds.
``crop_limit``
    the mask reaches the largest window the lesion model allows, or a face of its crop that
    is not the scan's border: it may be cut, or a leak that only the window stopped.
``outside_lungs``
    most of the mask lies outside the lungs' smooth envelope
    (:func:`mkunet.segmentation.lung.lung_region`: the lungs closed by a ball, 3-D holes
    filled); a lung tumour lies in or on a lung, the heart, mediastinum, chest wall and
    abdomen do not.
``large_contact``
    most of the one-voxel shell around the mask is soft tissue: the mask was cut out of a
    larger structure (heart, great vessels, chest wall, diaphragm) by the shape rules.
``uncertain``
    the segmentation's own σ(ln V) (:mod:`mkunet.segmentation.uncertainty`) is very large.

Not checked (yet): the share of the lesion that the star constraint or the opening cut (the
lesion model does not report it), and a ground-glass rim left outside a part-solid lesion's
solid core (the main miss of the benchmark).

Series checks (codes; consecutive found scans are compared):

``growth_beyond_biology``
    a volume doubling time under :attr:`QCParams.min_vdt_days`, beyond the noise;
``shrinkage_beyond_biology``
    a volume halving time under :attr:`QCParams.min_halving_days`, beyond the noise;
``volume_jump``
    a volume ratio between consecutive scans above a bound, whatever the interval;
``centre_moved``
    the registered centre moves more than a few mm beyond the registration's error and what
    the change of size allows;
``no_overlap``
    the registered masks do not overlap at all although the lesion is larger than the
    registration's error;
``lost_follow_up`` / ``baseline_failed``
    the baseline was found and a follow-up was not (a complete response, or a failure),
    or the reverse.

Every threshold is a field of :class:`QCParams`, documented with its source or the measured
distribution it was chosen from (``benchmarks/qc.py``).

Conventions: arrays (z, y, x); spacings (z, y, x) mm; points (x, y, z) mm (DICOM LPS);
volumes cm³; days since the first scan.
"""

from __future__ import annotations

from mkunet.qc.params import QC_STATUSES, SCAN_CODES, SERIES_CODES, QCParams, QCReason, QCResult
from mkunet.qc.scan import (
    check_segmentation,
    click_inscribed_radius_mm,
    contact_fraction,
    lung_envelope,
    outside_lung_fraction,
)
from mkunet.qc.series import check_series

__all__ = [
    "QC_STATUSES",
    "SCAN_CODES",
    "SERIES_CODES",
    "QCParams",
    "QCReason",
    "QCResult",
    "check_segmentation",
    "check_series",
    "click_inscribed_radius_mm",
    "outside_lung_fraction",
    "lung_envelope",
    "contact_fraction",
]
