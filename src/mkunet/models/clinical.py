"""The 6-D clinical vector of MK-UNet (paper 2.2; SPEC "Clinical vector").

Column order (:data:`COLUMNS`), every value in [0, 1]:

====  =========  ===================================================================
idx   column     encoding
====  =========  ===================================================================
0     age        years, min-max over the training set: (a - a_min) / (a_max - a_min)
1     sex        one bit: M / male = 1, F / female = 0 (case-insensitive)
2     smoking    ordinal: never = 0, former = 0.5, current = 1
3     grade      ordinal: 1 / G1 = 0, 2 / G2 = 0.5, 3 / G3 = 1
4     stage      ordinal: I = 0, II = 1/3, III = 2/3, IV = 1 (sub-stages IIIA/IIIB -> III,
                 "Stage IV", arabic 1..4 accepted)
5     lvcr       log volume change rate (per day), min-max over the training set
====  =========  ===================================================================

LVCR is column :data:`LVCR_INDEX` = 5 (the immune-aware gates read it there).
Continuous values outside the fitted range are clipped to [0, 1] (with a warning when
they lie more than 10 % of the range outside it). When the fitted range is degenerate
(one distinct value), the column encodes as 0.0 (warned at fit time).

Missing values (:func:`mkunet.utils.is_missing`: None, NaN, pandas NA, and the texts "", "NA",
"N/A", "nan", "none", "null", "unknown", "missing", any case):

* ``lvcr`` missing, or no ``lvcr`` column at all, means *LVCR unknown* (e.g. a single
  scan, or the first pass of the fixed-point inference): encoded as the training
  median, :attr:`ClinicalEncoder.lvcr_unknown_value`. This is explicit and documented,
  never a NaN.
* any other missing value raises a ValueError naming the patient and column, unless
  ``impute="median"``: then the training median (age; lower median of the codes for
  smoking, grade, stage) or mode (sex) is used, with a warning.
* malformed values (e.g. sex "X", grade "4", age -3) always raise a ValueError naming
  the patient, the column and the value: imputation does not hide typos.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mkunet.utils import is_missing

__all__ = ["COLUMNS", "LVCR_INDEX", "ClinicalEncoder"]

COLUMNS: tuple[str, ...] = ("age", "sex", "smoking", "grade", "stage", "lvcr")
LVCR_INDEX = 5
_REQUIRED = COLUMNS[:5]
_CONTINUOUS = ("age", "lvcr")
_SEX = {"m": 1.0, "male": 1.0, "f": 0.0, "female": 0.0}
_SMOKING = {
    "never": 0.0,
    "never smoker": 0.0,
    "never-smoker": 0.0,
    "non-smoker": 0.0,
    "nonsmoker": 0.0,
    "former": 0.5,
    "ex": 0.5,
    "ex-smoker": 0.5,
    "former smoker": 0.5,
    "current": 1.0,
    "current smoker": 1.0,
}
_GRADE_RE = re.compile(r"^(?:grade\s*)?g?\s*([123])(?:\.0+)?$", re.IGNORECASE)
_STAGE_RE = re.compile(r"^(?:stage\s*)?(iv|iii|ii|i|[1-4])(?:[abc]\d?)?$", re.IGNORECASE)
_STAGE_VALUE = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "1": 1, "2": 2, "3": 3, "4": 4}
_EXPECTED = {
    "age": "age in years, a number >= 0",
    "sex": "M / F / male / female",
    "smoking": "never / former / current",
    "grade": "1 / 2 / 3 (or G1 / G2 / G3)",
    "stage": "I / II / III / IV (sub-stages such as IIIA, 'Stage IV' or 1..4 accepted)",
    "lvcr": "log volume change rate per day, a finite number",
}
_OUTSIDE_TOLERANCE = 0.1  # fraction of the fitted range beyond which a clipped value is warned about


class _Bad(Exception):
    """Internal: a malformed cell."""


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _Bad
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise _Bad from None
    if not math.isfinite(out):
        raise _Bad
    return out


def _parse(column: str, value: Any) -> float:
    """Raw value -> float (raw units for age / lvcr, code in [0, 1] otherwise); NaN when missing."""
    if is_missing(value):
        return math.nan
    if column == "age":
        age = _number(value)
        if age < 0:
            raise _Bad
        return age
    if column == "lvcr":
        return _number(value)
    if column == "sex":
        if not isinstance(value, str) or value.strip().lower() not in _SEX:
            raise _Bad
        return _SEX[value.strip().lower()]
    if column == "smoking":
        if not isinstance(value, str) or value.strip().lower() not in _SMOKING:
            raise _Bad
        return _SMOKING[value.strip().lower()]
    if column == "grade":
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            if float(value) in (1.0, 2.0, 3.0):
                return (float(value) - 1.0) / 2.0
            raise _Bad
        match = _GRADE_RE.match(str(value).strip())
        if not match:
            raise _Bad
        return (int(match.group(1)) - 1) / 2.0
    if column == "stage":
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            if float(value) in (1.0, 2.0, 3.0, 4.0):
                return (float(value) - 1.0) / 3.0
            raise _Bad
        match = _STAGE_RE.match(str(value).strip())
        if not match:
            raise _Bad
        return (_STAGE_VALUE[match.group(1).lower()] - 1) / 3.0
    raise KeyError(column)  # pragma: no cover - internal


def _patient_ids(df: pd.DataFrame) -> list[str]:
    if "patient_id" in df.columns:
        return [str(p) for p in df["patient_id"]]
    return [f"row {i}" for i in df.index]


def _parse_table(df: pd.DataFrame, what: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Parse every column; missing -> NaN; collect malformed cells into one ValueError."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame with columns {list(COLUMNS)}, got {type(df).__name__}.")
    absent = [c for c in _REQUIRED if c not in df.columns]
    if absent:
        raise ValueError(
            f"{what}: the clinical table lacks column(s) {absent}; it needs {list(_REQUIRED)} "
            f"(+ optional 'lvcr' per day and 'patient_id'); found {list(df.columns)}."
        )
    ids = _patient_ids(df)
    parsed: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for column in COLUMNS:
        if column not in df.columns:
            parsed[column] = np.full(len(df), np.nan)
            continue
        out = np.empty(len(df))
        for i, value in enumerate(df[column].tolist()):
            try:
                out[i] = _parse(column, value)
            except _Bad:
                out[i] = np.nan
                problems.append(
                    f"patient {ids[i]!r} column {column!r} has value {value!r} (expected {_EXPECTED[column]})"
                )
        parsed[column] = out
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ValueError(f"{what}: malformed clinical value(s): {shown}. Correct the table.")
    return parsed, ids


class ClinicalEncoder:
    """Turn a clinical table into the float32 (n, 6) vector of MK-UNet (sklearn-style fitter).

    See the module docstring for the encoding of each column and for missing values.

    Attributes:
        ranges_: ``{"age": (min, max) years, "lvcr": (min, max) per day}`` fitted on the training set.
        fill_values_: encoded value (in [0, 1]) per column used by ``impute="median"``
            (age / lvcr median, sex mode, lower median of the smoking / grade / stage codes).
        lvcr_median_: training median LVCR, per day.

    Example:
        >>> enc = ClinicalEncoder().fit(train_df)                      # doctest: +SKIP
        >>> x = enc.transform(test_df)                                 # (n, 6) float32
        >>> v = enc.encode_one({"age": 64, "sex": "F", "smoking": "former",
        ...                     "grade": 2, "stage": "IIIA", "lvcr": None})  # LVCR unknown
    """

    COLUMNS = COLUMNS
    LVCR_INDEX = LVCR_INDEX

    def __init__(self) -> None:
        self.ranges_: dict[str, tuple[float, float]] | None = None
        self.fill_values_: dict[str, float] | None = None
        self.lvcr_median_: float | None = None

    # ------------------------------------------------------------------ fitting
    @property
    def is_fitted(self) -> bool:
        return self.ranges_ is not None

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise ValueError("ClinicalEncoder is not fitted; call .fit(training_table) or load it with from_dict().")

    def fit(self, df: pd.DataFrame) -> ClinicalEncoder:
        """Learn the age and LVCR ranges and the imputation values from the training table.

        Args:
            df: one row per training patient with columns age (years), sex, smoking, grade,
                stage, lvcr (per day) and optionally patient_id. Missing cells are skipped
                when computing ranges / medians; malformed cells raise a ValueError.

        Returns:
            self.
        """
        parsed, _ = _parse_table(df, "ClinicalEncoder.fit")
        if "lvcr" not in df.columns:
            raise ValueError(
                "ClinicalEncoder.fit: the training table needs an 'lvcr' column (log volume change rate, per day) "
                "to learn its range; compute it with mkunet.analysis.kinetics.lvcr from the serial volumes."
            )
        ranges: dict[str, tuple[float, float]] = {}
        fill: dict[str, float] = {}
        for column in COLUMNS:
            values = parsed[column][~np.isnan(parsed[column])]
            if values.size == 0:
                raise ValueError(
                    f"ClinicalEncoder.fit: column {column!r} has no usable value in the training table; "
                    "it cannot be fitted."
                )
            if column in _CONTINUOUS:
                lo, hi = float(values.min()), float(values.max())
                if hi == lo:
                    warnings.warn(
                        f"ClinicalEncoder.fit: column {column!r} has a single value ({lo}) in the training table; "
                        "it will encode as 0.0 for every patient.",
                        stacklevel=2,
                    )
                ranges[column] = (lo, hi)
                fill[column] = float(np.median(values))  # raw units; normalised below
            elif column == "sex":
                counts = [(values == 0.0).sum(), (values == 1.0).sum()]
                fill[column] = float(np.argmax(counts))  # mode, F on ties
            else:
                fill[column] = float(np.sort(values)[(values.size - 1) // 2])  # lower median: a valid category
        self.ranges_ = ranges
        self.lvcr_median_ = fill["lvcr"]
        self.fill_values_ = {c: (self._scale(c, np.array([v]))[0] if c in _CONTINUOUS else v) for c, v in fill.items()}
        return self

    # ------------------------------------------------------------------ encoding
    def _scale(self, column: str, raw: np.ndarray) -> np.ndarray:
        lo, hi = self.ranges_[column]  # type: ignore[index]
        if hi == lo:
            return np.zeros_like(raw)
        return (raw - lo) / (hi - lo)

    @property
    def lvcr_unknown_value(self) -> float:
        """Encoded value (column 5) used when LVCR is unknown: the normalised training median."""
        self._require_fitted()
        return float(self.fill_values_["lvcr"])  # type: ignore[index]

    def transform(self, df: pd.DataFrame, impute: str | None = None) -> np.ndarray:
        """Encode a clinical table.

        Args:
            df: one row per patient with columns age, sex, smoking, grade, stage, optional
                lvcr (per day; absent or missing = unknown) and optional patient_id (used in
                error messages).
            impute: ``None`` (missing value -> ValueError naming patient and column) or
                ``"median"`` (fill with the training median / mode, with a warning).

        Returns:
            float32 array (n, 6) in [0, 1], columns in :data:`COLUMNS` order.
        """
        self._require_fitted()
        if impute not in (None, "median"):
            raise ValueError(f"`impute` must be None or 'median', got {impute!r}.")
        parsed, ids = _parse_table(df, "ClinicalEncoder.transform")
        out = np.empty((len(df), len(COLUMNS)), dtype=np.float32)
        missing: list = []
        imputed = 0
        outside: list[str] = []
        for j, column in enumerate(COLUMNS):
            values = parsed[column].copy()
            if column in _CONTINUOUS:
                scaled = self._scale(column, values)
                lo, hi = self.ranges_[column]  # type: ignore[index]
                tol = _OUTSIDE_TOLERANCE * (hi - lo)
                far = ~np.isnan(values) & ((values < lo - tol) | (values > hi + tol))
                outside += [f"{ids[i]!r} {column}={values[i]:g}" for i in np.flatnonzero(far)]
                values = np.clip(scaled, 0.0, 1.0)
            gaps = np.isnan(values)
            if gaps.any():
                if column == "lvcr":
                    values[gaps] = self.fill_values_["lvcr"]  # type: ignore[index]  # unknown LVCR: documented
                elif impute == "median":
                    values[gaps] = self.fill_values_[column]  # type: ignore[index]
                    imputed += int(gaps.sum())
                else:
                    missing += [(int(i), j, f"patient {ids[i]!r} column {column!r}") for i in np.flatnonzero(gaps)]
            out[:, j] = values
        if missing:
            missing = [text for _, _, text in sorted(missing)]  # row by row
            shown = "; ".join(missing[:10]) + (f"; ... and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise ValueError(
                f"ClinicalEncoder.transform: missing clinical value(s): {shown}. Fill them in, or pass "
                "impute='median' to use the training median / mode."
            )
        if imputed:
            warnings.warn(
                f"ClinicalEncoder.transform: imputed {imputed} missing value(s) with training medians/modes.",
                stacklevel=2,
            )
        if outside:
            warnings.warn(
                "ClinicalEncoder.transform: value(s) far outside the training range were clipped to [0, 1]: "
                + ", ".join(outside[:10]),
                stacklevel=2,
            )
        return out

    def fit_transform(self, df: pd.DataFrame, impute: str | None = None) -> np.ndarray:
        """``fit(df)`` then ``transform(df, impute)``."""
        return self.fit(df).transform(df, impute=impute)

    def encode_one(self, mapping: Mapping[str, Any], impute: str | None = None) -> np.ndarray:
        """Encode one patient given as a mapping (column -> raw value); returns float32 (6,).

        ``lvcr`` may be omitted or None (unknown -> :attr:`lvcr_unknown_value`). A
        ``patient_id`` key, if present, is used in error messages.
        """
        if not isinstance(mapping, Mapping):
            raise ValueError(f"encode_one expects a mapping column -> value, got {type(mapping).__name__}.")
        row = dict(mapping)
        row.setdefault("lvcr", None)
        frame = pd.DataFrame([row], dtype=object)
        return self.transform(frame, impute=impute)[0]

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (ranges in years and per day; fill values encoded)."""
        self._require_fitted()
        return {
            "type": "ClinicalEncoder",
            "version": 1,
            "columns": list(COLUMNS),
            "lvcr_index": LVCR_INDEX,
            "ranges": {k: [float(v[0]), float(v[1])] for k, v in self.ranges_.items()},  # type: ignore[union-attr]
            "fill_values": {k: float(v) for k, v in self.fill_values_.items()},  # type: ignore[union-attr]
            "lvcr_median": float(self.lvcr_median_),  # type: ignore[arg-type]
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClinicalEncoder:
        """Rebuild an encoder saved with :meth:`to_dict`."""
        if not isinstance(d, Mapping) or d.get("type") != "ClinicalEncoder":
            raise ValueError("Not a ClinicalEncoder state: expected a dict with type='ClinicalEncoder'.")
        if list(d.get("columns", [])) != list(COLUMNS):
            raise ValueError(
                f"ClinicalEncoder state has columns {d.get('columns')!r}; this version expects {list(COLUMNS)}."
            )
        try:
            ranges = {k: (float(d["ranges"][k][0]), float(d["ranges"][k][1])) for k in _CONTINUOUS}
            fill = {k: float(d["fill_values"][k]) for k in COLUMNS}
            median = float(d["lvcr_median"])
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"ClinicalEncoder state is incomplete or malformed: {exc!r}.") from exc
        enc = cls()
        enc.ranges_, enc.fill_values_, enc.lvcr_median_ = ranges, fill, median
        return enc

    def __repr__(self) -> str:
        if not self.is_fitted:
            return "ClinicalEncoder(unfitted)"
        return f"ClinicalEncoder(age={self.ranges_['age']}, lvcr={self.ranges_['lvcr']} /day)"  # type: ignore[index]
