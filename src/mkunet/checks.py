"""Field checks for the parameter classes (``LesionParams``, ``DetectionParams``, ``QCParams``, ...).

Each check raises a :class:`ValueError` that names the field (``LesionParams.iso_fraction``),
quotes the bad value and says what is allowed, e.g. ``"LesionParams.iso_fraction must be a
number in (0, 1), got 1.5."``. The classes call them from ``__post_init__``, so that a bad value
fails where it is given, not deep inside a segmentation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

__all__ = ["check_number", "check_int", "check_flag", "check_pair", "check_increasing"]


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "finite"


def check_number(
    owner: str,
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    unit: str = "",
    allow_none: bool = False,
) -> None:
    """``value`` is a finite real number within the given bounds (``None`` too when ``allow_none``).

    Args:
        owner: the class name the message starts with (``"LesionParams"``).
        name: the field's name.
        value: the value to check (a bool is refused: ``True`` is not a number of mm).
        low, high: the bounds (None: unbounded on that side).
        low_open, high_open: the bound itself is excluded.
        unit: the unit the message gives after the range (``"mm"``, ``"HU"``).
        allow_none: ``None`` is a valid value (e.g. "no such pass").

    Raises:
        ValueError: not a number, not finite, or out of range; the message quotes ``value``.
    """
    if value is None and allow_none:
        return
    what = f"a number {_range_text(low, high, low_open, high_open)}" + (f" {unit}" if unit else "")
    if allow_none:
        what += " (or None)"
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)  # type: ignore[arg-type]
        if low is not None and (v < low or (low_open and v == low)):
            ok = False
        if high is not None and (v > high or (high_open and v == high)):
            ok = False
    if not ok:
        raise ValueError(f"{owner}.{name} must be {what}, got {value!r}.")


def check_int(owner: str, name: str, value: object, *, low: int | None = None, high: int | None = None) -> None:
    """``value`` is an integer (not a bool, not a float) within ``[low, high]``.

    Raises:
        ValueError: the message names the field and quotes ``value``.
    """
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    if ok and low is not None and int(value) < low:  # type: ignore[call-overload]
        ok = False
    if ok and high is not None and int(value) > high:  # type: ignore[call-overload]
        ok = False
    if not ok:
        raise ValueError(f"{owner}.{name} must be an integer {_range_text(low, high, False, False)}, got {value!r}.")


def check_flag(owner: str, name: str, value: object) -> None:
    """``value`` is ``True`` or ``False`` (not 0, 1 or a string such as ``"no"``).

    Raises:
        ValueError: the message names the field and quotes ``value``.
    """
    if not isinstance(value, bool):
        raise ValueError(f"{owner}.{name} must be True or False, got {value!r}.")


def check_pair(owner: str, name: str, value: object, *, unit: str = "") -> tuple[float, float]:
    """``value`` is a ``(low, high)`` pair of finite numbers with ``low < high``; returns it as floats.

    Raises:
        ValueError: the message names the field and quotes ``value``.
    """
    pair: Sequence[object] = value if isinstance(value, Sequence) and not isinstance(value, str) else ()
    ok = len(pair) == 2 and all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in pair)
    low = high = math.nan
    if ok:
        low, high = (float(v) for v in pair)  # type: ignore[arg-type]
        ok = low < high
    if not ok:
        unit_text = f" {unit}" if unit else ""
        raise ValueError(f"{owner}.{name} must be (low, high){unit_text} with low < high, got {value!r}.")
    return low, high


def check_increasing(owner: str, fields: Sequence[tuple[str, float]], meaning: str) -> None:
    """The values of ``fields`` (name, value) increase strictly, in that order.

    Args:
        owner: the class name the message starts with.
        fields: (name, value) pairs that must satisfy ``value_1 < value_2 < ...``.
        meaning: what the order means, for the message (e.g. "room air < aerated lung < ...").

    Raises:
        ValueError: the first pair out of order, both values quoted.
    """
    for (a, va), (b, vb) in zip(fields, fields[1:]):
        if not float(va) < float(vb):
            raise ValueError(f"{owner}.{a} must be below {owner}.{b} ({meaning}), got {a}={va!r} and {b}={vb!r}.")
