"""Small helpers shared across the package: atomic file writes, JSON-safe values, missing values.

Atomic writes write to a temporary name next to the target (``.<name>.tmp-<pid>``) and
rename it over the target (:func:`os.replace`), so a reader never sees a half-written
file and an interrupted run leaves the previous file intact.

This module imports nothing from :mod:`mkunet` (any module may import it without a cycle).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MISSING_WORDS",
    "is_missing",
    "finite_or_none",
    "to_jsonable",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_csv",
    "atomic_write_parquet",
]

MISSING_WORDS = frozenset({"", "na", "n/a", "nan", "none", "null", "unknown", "missing"})
"""Cell texts that mean "no value" (compared after ``strip().lower()``)."""


def is_missing(value: Any) -> bool:
    """True when ``value`` means "no value".

    Missing: ``None``, ``pandas.NA``, ``pandas.NaT``, a float NaN (Python or numpy), and a
    string whose ``strip().lower()`` is one of :data:`MISSING_WORDS`
    (``"", "na", "n/a", "nan", "none", "null", "unknown", "missing"``). Everything else,
    0 and ``False`` included, is a value.
    """
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip().lower() in MISSING_WORDS
    # pandas.NA / pandas.NaT without importing pandas: both are singletons of their own type
    return type(value).__name__ in ("NAType", "NaTType")


def finite_or_none(value: Any) -> float | None:
    """``float(value)`` when that is a finite number, else None (None, NaN, inf, text, ...)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def to_jsonable(value: Any, *, strict: bool = False) -> Any:
    """A JSON-safe copy of ``value``: **NaN and +-inf become None (JSON null)**.

    Mappings -> dict with str keys; lists, tuples and arrays -> lists; numpy scalars ->
    Python scalars; :class:`~pathlib.Path` -> str. Other values are returned unchanged
    (``strict=False``) or refused (``strict=True``).

    Raises:
        ValueError: ``strict`` and a value that is not None, bool, int, float, str or one of
            the types above.
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, strict=strict) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, strict=strict) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v, strict=strict) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Path):
        return str(value)
    if strict and not (value is None or isinstance(value, str)):
        raise ValueError(f"Cannot store a value of type {type(value).__name__} as JSON: {value!r}.")
    return value


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent folders created); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(df: Any, path: str | Path, index: bool = False) -> Path:
    """Write a pandas DataFrame as CSV atomically; returns ``path``."""
    return atomic_write_text(path, df.to_csv(index=index))


def atomic_write_parquet(df: Any, path: str | Path) -> Path:
    """Write a pandas DataFrame as Parquet (pyarrow, no index) atomically; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    df.to_parquet(tmp, engine="pyarrow", index=False)
    os.replace(tmp, path)
    return path
