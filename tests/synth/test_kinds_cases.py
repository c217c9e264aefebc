"""Smoke test of the case generator of benchmarks/kinds.py (issue #26's yardstick) on a synthetic chest."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from mkunet.segmentation.lung import filled_lungs
from mkunet.synth import make_case
from mkunet.synth.scanner import ScannerParams

KINDS_PY = Path(__file__).resolve().parents[2] / "benchmarks" / "kinds.py"


@pytest.fixture(scope="module")
def kinds():
    spec = importlib.util.spec_from_file_location("benchmarks_kinds", KINDS_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("kind", "location"), [("solid", "pleura"), ("ground-glass", "free")])
def test_insert_case_yields_the_requested_tumour(kinds, kind, location):
    volume, tumour = make_case(3, shape=(40, 96, 96), spacing=(2.5, 3.0, 3.0), diameter_mm=12.0)
    lungs = filled_lungs(volume.array, volume.spacing)
    scanner = ScannerParams((1.2, 1.5, 1.5), 20.0, 0.0, 1.0)
    bg = kinds.Background("synthetic", volume, lungs, scanner, tumour.astype(bool))
    case = kinds.insert_case(bg, kind, location, np.random.default_rng(0), diameter_mm=(12.0, 12.0))
    assert case is not None
    assert (case.kind, case.location, case.background) == (kind, location, "synthetic")
    assert case.truth.shape == case.volume.shape == case.ignore.shape
    assert case.truth.any() and not (case.truth & case.ignore).any()
    assert case.truth[case.click_zyx]
    # the click in mm is the deepest voxel's physical point
    np.testing.assert_allclose(case.volume.index_to_physical(np.asarray(case.click_zyx, float)), case.click_mm)
    assert case.truth_cm3 == pytest.approx(case.truth.sum() * case.volume.voxel_volume_mm3 / 1000.0)
