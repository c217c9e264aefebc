"""Series choice: which series of a study is the CT to segment, and why.

Without a series UID the study's CT series is chosen by one documented rule
(:func:`find_ct_series`, :meth:`mkunet.io.pacs.DicomWebSource.find_ct_series`):

1. only series whose instances are all single-frame CT images (Modality ``CT``, SOP class CT
   Image Storage) with one orientation and one image size are candidates; a series that mixes
   modalities, SOP classes, orientations or image sizes is skipped as *mixed*;
2. localisers are skipped (``ImageType`` contains ``LOCALIZER``), and so are series that are
   not axial (slice normal more than ~18 degrees from the patient's z axis, |n_z| < 0.95);
3. among the rest: the most slices, then the thinnest slices (``SliceThickness``, mm), then the
   lowest series UID (so the choice is reproducible).

:class:`SeriesChoice` lists every series of the study with the reason it was or was not taken.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mkunet.io.pacs.client import (
    T_COLUMNS,
    T_IMAGE_TYPE,
    T_MODALITY,
    T_N_INSTANCES,
    T_NUMBER_OF_FRAMES,
    T_ORIENTATION,
    T_ROWS,
    T_SERIES_DESCRIPTION,
    T_SERIES_NUMBER,
    T_SERIES_UID,
    T_SOP_CLASS,
    T_THICKNESS,
    DicomWebConnection,
    PacsNotFoundError,
    PacsSeriesError,
    PacsServerError,
    reason_of,
    value_of,
    values_of,
)

__all__ = [
    "CT_IMAGE_STORAGE",
    "AXIAL_MIN_NZ",
    "SeriesSummary",
    "SeriesChoice",
    "summarise_series",
    "choose_series",
    "find_ct_series",
    "check_series",
]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
AXIAL_MIN_NZ = 0.95
"""A series is axial when its slice normal's z component satisfies |n_z| >= this (about 18 degrees)."""


@dataclass(frozen=True)
class SeriesSummary:
    """One series of a study as the series choice sees it.

    Attributes:
        series_uid: SeriesInstanceUID.
        modality: Modality ("CT", "MR", "SEG", ...; several joined by "/" when mixed).
        description: SeriesDescription ("" when absent).
        series_number: SeriesNumber (None when absent).
        n_instances: number of instances (slices for a CT series).
        slice_thickness_mm: SliceThickness (mm) when known and the same for every slice.
        axial: True when the slice normal is within ~18 degrees of the patient's z axis (None: unknown).
        localizer: ImageType contains LOCALIZER.
        problem: why the series is not a usable CT series ("" when it is).
    """

    series_uid: str
    modality: str
    description: str = ""
    series_number: int | None = None
    n_instances: int = 0
    slice_thickness_mm: float | None = None
    axial: bool | None = None
    localizer: bool = False
    problem: str = ""

    @property
    def usable(self) -> bool:
        """A candidate of the series choice (no problem)."""
        return not self.problem

    def describe(self) -> str:
        """One line: number, description, modality, slices, thickness and the problem if any."""
        name = f"series {self.series_number} " if self.series_number is not None else "series "
        name += f"{self.description!r} " if self.description else ""
        thick = f" of {self.slice_thickness_mm:g} mm" if self.slice_thickness_mm else ""
        text = f"{name}({self.series_uid}): {self.modality or '?'}, {self.n_instances} instance(s){thick}"
        return text + (f" -- skipped: {self.problem}" if self.problem else "")


@dataclass(frozen=True)
class SeriesChoice:
    """The series chosen in a study, every series seen, and why.

    Attributes:
        study_uid: the study.
        series: every series of the study (:class:`SeriesSummary`), in the server's order.
        chosen: the chosen series.
        reason: one sentence: why this one.
    """

    study_uid: str
    series: tuple[SeriesSummary, ...]
    chosen: SeriesSummary
    reason: str

    def describe(self) -> str:
        """Several lines: the choice and its reason, then every series with why it was skipped."""
        lines = [f"chosen: {self.chosen.describe()}", f"why: {self.reason}"]
        lines += [f"  {s.describe()}" for s in self.series if s.series_uid != self.chosen.series_uid]
        return "\n".join(lines)


def _number(value: Any, kind: type = float) -> Any:
    """``kind(value)``, or None when the value is missing or not a number."""
    try:
        return None if value in (None, "") else kind(value)
    except (TypeError, ValueError):
        return None


def series_line(record: Mapping[str, Any]) -> str:
    """One line for a QIDO-RS series record: number, description, UID, modality, instances."""
    number = value_of(record, T_SERIES_NUMBER)
    description = value_of(record, T_SERIES_DESCRIPTION)
    return (
        f"series {number if number is not None else '?'} {description or ''!r} ({value_of(record, T_SERIES_UID)}): "
        f"{value_of(record, T_MODALITY) or '?'}, {value_of(record, T_N_INSTANCES) or '?'} instance(s)"
    )


def _same_orientation(a: Sequence[float], b: Sequence[float], atol: float = 1e-3) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= atol for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class _Instances:
    """What the series choice reads from the instances' metadata of one series."""

    modalities: list[str]
    classes: list[str]
    orientations: list[tuple[float, ...]]  # distinct within 1e-3; () for a missing or bad orientation
    n_sizes: int
    thickness: float | None  # mm, when the same for every instance
    localizer: bool
    multiframe: bool

    @classmethod
    def read(cls, metadata: Sequence[Mapping[str, Any]]) -> _Instances:
        orientations: list[tuple[float, ...]] = []
        for m in metadata:
            iop = tuple(_number(v) for v in values_of(m, T_ORIENTATION))
            iop = iop if len(iop) == 6 and None not in iop else ()
            if not any(_same_orientation(iop, o) for o in orientations):
                orientations.append(iop)
        thicknesses = {_number(value_of(m, T_THICKNESS)) for m in metadata}
        return cls(
            modalities=sorted({str(value_of(m, T_MODALITY) or "?") for m in metadata}),
            classes=sorted({str(value_of(m, T_SOP_CLASS) or "?") for m in metadata}),
            orientations=orientations,
            n_sizes=len({(value_of(m, T_ROWS), value_of(m, T_COLUMNS)) for m in metadata}),
            thickness=next(iter(thicknesses)) if len(thicknesses) == 1 else None,
            localizer=any("LOCALIZER" in [str(v).upper() for v in values_of(m, T_IMAGE_TYPE)] for m in metadata),
            multiframe=any((_number(value_of(m, T_NUMBER_OF_FRAMES), int) or 1) > 1 for m in metadata),
        )

    @property
    def axial(self) -> bool | None:
        """|n_z| of the one slice normal >= :data:`AXIAL_MIN_NZ` (None: no single valid orientation)."""
        if len(self.orientations) != 1 or len(self.orientations[0]) != 6:
            return None
        r, c = self.orientations[0][:3], self.orientations[0][3:]
        nz = r[0] * c[1] - r[1] * c[0]
        norm = math.sqrt(sum(v * v for v in r) * sum(v * v for v in c)) or 1.0
        return abs(nz) / norm >= AXIAL_MIN_NZ

    def problem(self) -> str:
        """Why these instances are not one usable axial CT image series ("" when they are)."""
        if len(self.modalities) > 1 or len(self.classes) > 1:
            return f"mixed series (modalities {'/'.join(self.modalities)}, SOP classes {', '.join(self.classes)})"
        if self.modalities != ["CT"]:
            return f"modality {self.modalities[0]}, not CT"
        if self.classes != [CT_IMAGE_STORAGE] or self.multiframe:
            return f"SOP class {self.classes[0]} is not single-frame CT Image Storage ({CT_IMAGE_STORAGE})"
        if len(self.orientations) > 1:
            return f"mixed series ({len(self.orientations)} different image orientations)"
        if self.n_sizes > 1:
            return f"mixed series ({self.n_sizes} different image sizes)"
        if self.localizer:
            return "localizer (ImageType LOCALIZER)"
        if self.axial is None:
            return "no ImageOrientationPatient"
        return "" if self.axial else "not axial"


def summarise_series(record: Mapping[str, Any], metadata: Sequence[Mapping[str, Any]] | None) -> SeriesSummary:
    """A :class:`SeriesSummary` from the QIDO-RS series record and (CT only) the instances' metadata.

    Args:
        record: the series' QIDO-RS record (DICOM JSON).
        metadata: the WADO-RS metadata of every instance; None for a series that is not CT.
    """
    summary = SeriesSummary(
        series_uid=str(value_of(record, T_SERIES_UID) or ""),
        modality=str(value_of(record, T_MODALITY) or ""),
        description=str(value_of(record, T_SERIES_DESCRIPTION) or ""),
        series_number=_number(value_of(record, T_SERIES_NUMBER), int),
        n_instances=_number(value_of(record, T_N_INSTANCES), int) or 0,
    )
    if metadata is None:
        return dataclasses.replace(summary, problem=f"modality {summary.modality or '?'}, not CT")
    if not metadata:
        return dataclasses.replace(summary, n_instances=0, problem="no instance")
    found = _Instances.read(metadata)
    return dataclasses.replace(
        summary,
        modality="/".join(found.modalities),
        n_instances=len(metadata),
        slice_thickness_mm=found.thickness,
        axial=found.axial,
        localizer=found.localizer,
        problem=found.problem(),
    )


def choose_series(study_uid: str, series: Sequence[SeriesSummary], where: str) -> SeriesChoice:
    """The rule of the module docstring applied to a study's series; ``where`` (the server) is for messages.

    Raises:
        PacsSeriesError: no usable CT series (the message lists every series and why it was skipped).
    """
    candidates = [s for s in series if s.usable]
    if not candidates:
        listing = "\n".join(f"  {s.describe()}" for s in series) or "  (none)"
        raise PacsSeriesError(
            f"Study {study_uid} on {where} has no usable CT series (axial, single-frame CT images, not a "
            f"localizer, not mixed). Series found:\n{listing}\nCheck the study UID, or give --series for a series "
            "that mkunet can read."
        )

    def key(s: SeriesSummary) -> tuple[int, float, str]:
        return (-s.n_instances, s.slice_thickness_mm if s.slice_thickness_mm else math.inf, s.series_uid)

    ranked = sorted(candidates, key=key)
    best = ranked[0]
    thick = f"{best.slice_thickness_mm:g} mm" if best.slice_thickness_mm else "unknown thickness"
    reason = f"axial CT with {best.n_instances} slices of {thick}"
    if len(ranked) == 1:
        reason += "; the only usable CT series of the study"
    else:
        same_n = [s for s in ranked[1:] if s.n_instances == best.n_instances]
        reason += "; the most slices of the " + str(len(ranked)) + " usable CT series"
        if same_n:
            reason += ", and the thinnest among those with as many"
    skipped = [s for s in series if not s.usable]
    if skipped:
        reason += (
            "; skipped: "
            + "; ".join(f"{s.description or s.series_uid} ({s.problem})" for s in skipped[:6])
            + (f"; and {len(skipped) - 6} more" if len(skipped) > 6 else "")
        )
    return SeriesChoice(study_uid, tuple(series), best, reason + ".")


def _summary(conn: DicomWebConnection, study_uid: str, record: Mapping[str, Any]) -> SeriesSummary:
    """The series' summary; the instances' metadata is retrieved for a CT series only."""
    if str(value_of(record, T_MODALITY) or "") != "CT":
        return summarise_series(record, None)
    try:
        metadata = conn.series_metadata(study_uid, str(value_of(record, T_SERIES_UID) or ""))
    except (PacsServerError, PacsNotFoundError) as err:  # this series only: the others may do
        summary = summarise_series(record, None)
        return dataclasses.replace(summary, problem=f"its metadata cannot be retrieved ({reason_of(err)})")
    return summarise_series(record, metadata)


def find_ct_series(conn: DicomWebConnection, study_uid: str) -> SeriesChoice:
    """Choose the CT series of a study on ``conn`` (rule: module docstring) and say why.

    Raises:
        PacsNotFoundError: no such study.
        PacsSeriesError: no usable CT series (the message lists every series and why it was skipped).
    """
    records = conn.search_series(study_uid)
    return choose_series(study_uid, [_summary(conn, study_uid, r) for r in records], conn.url)


def check_series(conn: DicomWebConnection, study_uid: str, series_uid: str) -> SeriesSummary:
    """The given series, checked: it must be a usable CT series (not another modality, not mixed).

    Raises:
        PacsNotFoundError: no such study or series.
        PacsSeriesError: the series is not a usable CT series (the message says why).
    """
    records = conn.search_series(study_uid)
    chosen = [r for r in records if value_of(r, T_SERIES_UID) == series_uid]
    if not chosen:
        listing = "\n".join(f"  {series_line(r)}" for r in records)
        raise PacsNotFoundError(
            f"Series {series_uid} is not in study {study_uid} on {conn.url}. Series of the study:\n{listing}\n"
            "Leave out --series to let mkunet choose the CT series, or check the SeriesInstanceUID."
        )
    summary = _summary(conn, study_uid, chosen[0])
    if not summary.usable:
        raise PacsSeriesError(
            f"Series {series_uid} of study {study_uid} on {conn.url} cannot be segmented: {summary.problem}. "
            "mkunet reads one axial CT image series; leave out --series to let it choose the study's CT series."
        )
    return summary
