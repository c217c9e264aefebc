"""Lung fields from HU (segmentation.lung): analytic chest phantom and synthetic cases with every tumour contact."""

from __future__ import annotations

import numpy as np
import pytest

from mkunet.constants import LUNG_HU, ROOM_AIR_HU
from mkunet.segmentation.lung import aerated_lung, fill_slices, filled_lungs, lung_mask, lung_region


def ellipsoid(shape, spacing, centre_mm, radii_mm) -> np.ndarray:
    """bool (z, y, x): voxel centres inside the axis-aligned ellipsoid (mm, z y x)."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    r2 = sum(((g * s - c) / r) ** 2 for g, s, c, r in zip(grids, spacing, centre_mm, radii_mm))
    return r2 <= 1.0


@pytest.fixture(scope="module")
def chest():
    """Air around a soft-tissue trunk holding two lungs; a tumour inside the right lung,
    one on the left lung's lateral pleura (half in the chest wall) and a 'heart' between them.

    Returns (hu, spacing, parts) with bool masks in ``parts``.
    """
    spacing = (4.0, 2.0, 2.0)
    shape = (30, 120, 160)  # 120 x 240 x 320 mm
    hu = np.full(shape, -1000.0, np.float32)
    trunk = ellipsoid(shape, spacing, (60, 120, 160), (200, 100, 150))
    hu[trunk] = 40.0
    right = ellipsoid(shape, spacing, (60, 120, 95), (45, 60, 45))
    left = ellipsoid(shape, spacing, (60, 120, 225), (45, 60, 45))
    hu[right | left] = -850.0
    inside = ellipsoid(shape, spacing, (60, 120, 95), (12, 12, 12))
    pleural = ellipsoid(shape, spacing, (60, 120, 264), (10, 10, 10))  # on the left lung's lateral pleura (x 270 mm)
    hu[inside | pleural] = 35.0
    far = ellipsoid(shape, spacing, (60, 200, 160), (10, 10, 10))  # anterior chest wall / soft tissue far from lung
    return hu, spacing, {"lungs": right | left, "inside": inside, "pleural": pleural, "trunk": trunk, "far": far}


def test_lung_mask_is_the_internal_air(chest):
    hu, spacing, parts = chest
    mask = lung_mask(hu, spacing, grid_mm=0.0)
    lungs = parts["lungs"] & ~parts["inside"] & ~parts["pleural"]
    assert not (mask & ~parts["trunk"]).any()  # the room's air is not lung
    dice = 2 * (mask & lungs).sum() / (mask.sum() + lungs.sum())
    assert dice > 0.99


def test_lung_mask_on_a_coarse_grid_matches(chest):
    hu, spacing, parts = chest
    fine = lung_mask(hu, spacing, grid_mm=0.0)
    coarse = lung_mask(hu, spacing, grid_mm=4.0)
    assert coarse.shape == hu.shape
    assert 2 * (fine & coarse).sum() / (fine.sum() + coarse.sum()) > 0.9


def test_lung_region_holds_intrapulmonary_and_pleural_tumours(chest):
    hu, spacing, parts = chest
    region = lung_region(hu, spacing)
    assert region[parts["inside"]].all()
    # a tumour on the pleura: its part inside the lung's outline is a dent the closing fills
    lung_side = parts["pleural"] & parts["lungs"]
    assert region[lung_side].mean() > 0.8  # the notch's mouth, wider than the ball, stays partly open
    assert region[parts["pleural"]].mean() > 0.6
    assert not region[parts["far"]].any()
    assert not region[~parts["trunk"]].any()


def test_no_internal_air_gives_an_empty_region():
    hu = np.full((8, 20, 20), 40.0, np.float32)
    assert not lung_region(hu, (2.0, 1.0, 1.0)).any()
    assert not lung_mask(hu, (2.0, 1.0, 1.0)).any()


def test_small_gas_pockets_are_not_lungs():
    spacing = (2.0, 2.0, 2.0)
    hu = np.full((20, 40, 40), 40.0, np.float32)
    hu[:, :2] = hu[:, -2:] = -1000.0
    hu[8:11, 18:21, 18:21] = -900.0  # 0.2 cm^3 of bowel gas
    assert not lung_mask(hu, spacing, min_cm3=20.0).any()
    assert lung_mask(hu, spacing, min_cm3=0.1, grid_mm=0.0).sum() == 27


@pytest.mark.parametrize("bad", [(1.0, 1.0), (0.0, 1.0, 1.0), (-1.0, 1.0, 1.0)])
def test_bad_spacing_is_refused(bad):
    with pytest.raises(ValueError, match="spacing"):
        lung_region(np.zeros((4, 4, 4)), bad)


def test_2d_input_is_refused():
    with pytest.raises(ValueError, match="3-D"):
        lung_mask(np.zeros((4, 4)), (1.0, 1.0, 1.0))


@pytest.mark.parametrize("contact", ["none", "pleura", "mediastinum", "vessel"])
def test_synthetic_tumours_lie_in_the_lung_region(contact):
    """Every tumour contact of the generator (solid, 10-40 mm) falls inside the region."""
    from mkunet.synth import make_case

    inside = []
    for seed in range(3):
        volume, mask = make_case(
            100 + seed, shape=(32, 96, 96), contact=contact, kind="solid", diameter_mm=(10.0, 40.0), fit_body=True
        )
        if not mask.any():
            continue
        region = lung_region(volume.array, volume.spacing)
        inside.append(region[mask].mean())
    assert inside, "no synthetic tumour rendered"
    assert min(inside) > 0.9, inside


def test_aerated_lung_is_the_voxel_rule():
    hu = np.array([[[-1000.0, -960.0, -950.0, -800.0, -400.0, -399.0, 40.0]]])
    np.testing.assert_array_equal(aerated_lung(hu), [[[True, True, True, True, False, False, False]]])
    np.testing.assert_array_equal(
        aerated_lung(hu, room_air_hu=ROOM_AIR_HU), [[[False, False, False, True, False, False, False]]]
    )
    assert LUNG_HU == -400.0


def test_fill_slices_fills_in_plane_holes_only():
    ring = np.zeros((3, 9, 9), bool)
    ring[1, 2:7, 2:7] = True
    ring[1, 3:6, 3:6] = False  # a hole inside one slice
    filled = fill_slices(ring)
    assert filled[1, 4, 4] and filled[1].sum() == 25
    tube = np.ones((3, 9, 9), bool)
    tube[:, 4, 4] = False  # a hole in every slice, open at both z faces: a 3-D fill keeps it
    assert fill_slices(tube).all()


def test_filled_lungs_holds_the_vessels_and_keeps_the_room_out(chest):
    hu, spacing, parts = chest
    hu = hu.copy()
    vessel = np.zeros(hu.shape, bool)
    vessel[:, 58:62, 45:49] = True  # a vessel through the right lung, along z
    hu[vessel] = 40.0
    lungs = filled_lungs(hu, spacing)
    assert lungs[vessel & parts["lungs"]].mean() > 0.9  # inside the lung's outline
    assert not (lungs & ~parts["trunk"]).any()
    dice = 2 * (lungs & parts["lungs"]).sum() / (lungs.sum() + parts["lungs"].sum())
    assert dice > 0.95
