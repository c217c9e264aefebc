"""The names a user needs import from ``mkunet`` itself (lazily, PEP 562), and each is the object its
defining module holds, so the README's ``from mkunet import ...`` tour cannot drift from the code."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import mkunet


@pytest.mark.parametrize("name", sorted(set(mkunet.__all__) - {"__version__"}))
def test_every_public_name_resolves_to_its_defining_module(name):
    value = getattr(mkunet, name)
    module = mkunet._EXPORTS.get(name)
    if module is not None:
        assert value is getattr(importlib.import_module(module), name)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'segmnet'"):
        mkunet.segmnet  # noqa: B018


def test_import_mkunet_stays_light():
    """``import mkunet`` loads neither torch nor the segmentation code until a name is used."""
    code = "import sys, mkunet; print('torch' in sys.modules, 'mkunet.segmentation.infer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_readme_tour_imports():
    """The README's Python tour: these names come from the top-level package."""
    from mkunet import Seed, immune_evasion_score, lvcr, read_volume, segment, segment_timepoints, shape_features  # noqa: F401
