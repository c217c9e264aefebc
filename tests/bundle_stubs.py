"""A duck-typed stand-in for ``mkunet.bundle.ModelBundle`` used with oracle models in tests."""

from __future__ import annotations

import numpy as np


class ClinicalVectorMixin:
    """``clinical_vector`` as :class:`mkunet.bundle.ModelBundle` defines it, for already-encoded values."""

    default_clinical = None

    def clinical_vector(self, values=None):
        if values is None:
            return None if self.default_clinical is None else np.asarray(self.default_clinical, np.float32)
        return np.asarray(values, np.float32).reshape(-1)
