"""Small numeric helpers shared by the QC modules (volumes cm³, radii mm)."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> bool:
    """True for a real number (not a bool) that is finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def ball_cm3(radius_mm: float) -> float:
    """Volume (cm³) of a ball of radius ``radius_mm`` (mm)."""
    return 4.0 / 3.0 * math.pi * radius_mm**3 / 1000.0


def equivalent_radius_mm(volume_cm3: float) -> float:
    """Equivalent-sphere radius (mm) of a volume in cm³."""
    return (3.0 * max(volume_cm3, 0.0) * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
