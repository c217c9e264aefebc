"""Parameter classes of the segmentation (LesionParams, DetectionParams, UncertaintyParams) and the constants.

Every kind of bad value raises a ValueError that names the field and quotes the value; the
defaults come from :mod:`mkunet.constants`; lesion kinds are spelled one way.
"""

from __future__ import annotations

import re

import pytest

from mkunet import constants
from mkunet.segmentation.candidates import DetectionParams
from mkunet.segmentation.lesion import LesionParams
from mkunet.segmentation.uncertainty import UncertaintyParams


@pytest.mark.parametrize(
    ("kwargs", "field", "quoted"),
    [
        ({"iso_fraction": 1.5}, "iso_fraction", "1.5"),  # range
        ({"iso_fraction": 0.0}, "iso_fraction", "0.0"),  # open bound
        ({"iso_fraction": float("nan")}, "iso_fraction", "nan"),  # not finite
        ({"lesion_radius_mm": "4"}, "lesion_radius_mm", "'4'"),  # type
        ({"lesion_radius_mm": True}, "lesion_radius_mm", "True"),  # a bool is not a number
        ({"lung_min_dist_mm": -1.0}, "lung_min_dist_mm", "-1.0"),
        ({"ground_glass_iso_fraction": 1.0}, "ground_glass_iso_fraction", "1.0"),
        ({"ground_glass_contrast_hu": 0.0}, "ground_glass_contrast_hu", "0.0"),
        ({"ground_glass_smooth_mm": -0.5}, "ground_glass_smooth_mm", "-0.5"),
        ({"open_min_mm": 5.0, "open_max_mm": 2.0}, "open_max_mm", "2.0"),  # ordering of a range
        ({"max_crop_mm": 50.0}, "max_crop_mm", "50.0"),  # below initial_crop_mm
        ({"star_ratio": 0.9}, "star_ratio", "0.9"),
        ({"star_angle_deg": 200.0}, "star_angle_deg", "200.0"),
        ({"star_global_ratio": 0.5}, "star_global_ratio", "0.5"),
        ({"star_global_quantile": 1.5}, "star_global_quantile", "1.5"),
        ({"grow_factor": 1.0}, "grow_factor", "1.0"),
        ({"reseed_max_growth": 0.5}, "reseed_max_growth", "0.5"),
        ({"grid_mm": 0.0}, "grid_mm", "0.0"),
        ({"n_rays": 8}, "n_rays", "got 8"),
        ({"n_rays": 512.0}, "n_rays", "512.0"),  # an integer field
        ({"star_passes": -1}, "star_passes", "-1"),
        ({"max_grow_steps": 0}, "max_grow_steps", "got 0"),
        ({"use_hull": 1}, "use_hull", "got 1"),  # a flag
        ({"reseed": "no"}, "reseed", "'no'"),
        ({"lung_hu_range": (-700.0, -900.0)}, "lung_hu_range", "(-700.0, -900.0)"),
        ({"lung_hu_range": (-900.0,)}, "lung_hu_range", "(-900.0,)"),
        ({"lung_hu_range": (-900.0, -200.0)}, "lung_hu_range", "(-900.0, -200.0)"),  # reaches ground glass
        ({"lung_hu_range": (-990.0, -800.0)}, "lung_hu_range", "(-990.0, -800.0)"),  # reaches room air
        ({"room_air_hu": -700.0}, "room_air_hu", "-700.0"),  # room air < aerated lung
        ({"aerated_hu": -200.0}, "aerated_hu", "-200.0"),  # aerated lung < ground glass
        ({"ground_glass_max_hu": 500.0}, "ground_glass_max_hu", "500.0"),  # ground glass < bone
        ({"bone_hu": -350.0}, "bone_hu", "-350.0"),
        ({"lesion_cap_hu": 450.0}, "lesion_cap_hu", "450.0"),
        ({"air_seed_hu": 600.0}, "air_seed_hu", "600.0"),
    ],
)
def test_lesion_params_validation(kwargs, field, quoted):
    with pytest.raises(ValueError, match=r"LesionParams\." + re.escape(field) + ".*" + re.escape(quoted)) as err:
        LesionParams(**kwargs)
    assert "must" in str(err.value)  # says what is allowed


@pytest.mark.parametrize(
    ("kwargs", "field", "quoted"),
    [
        ({"grid_mm": -2.0}, "grid_mm", "-2.0"),
        ({"peak_mm": "10"}, "peak_mm", "'10'"),
        ({"report_radius_mm": -1.0}, "report_radius_mm", "-1.0"),
        ({"min_score_cm3": -0.1}, "min_score_cm3", "-0.1"),
        ({"dense_hu": (300.0, -450.0)}, "dense_hu", "(300.0, -450.0)"),
        ({"ground_glass_min_hu": -400.0}, "ground_glass_min_hu", "-400.0"),  # above dense_hu[0]
        ({"ground_glass_weight": 0.0}, "ground_glass_weight", "0.0"),
        ({"ground_glass_min_air": 2.0}, "ground_glass_min_air", "2.0"),
        ({"ground_glass_min_radius_mm": 0.0}, "ground_glass_min_radius_mm", "0.0"),
        ({"shell_points": 100.0}, "shell_points", "100.0"),
        ({"max_candidates": -1}, "max_candidates", "-1"),
    ],
)
def test_detection_params_validation_every_kind(kwargs, field, quoted):
    with pytest.raises(ValueError, match=r"DetectionParams\." + re.escape(field) + ".*" + re.escape(quoted)):
        DetectionParams(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field", "quoted"),
    [
        ({"edge_fraction": 0.7}, "edge_fraction", "0.7"),
        ({"probability_delta": -0.1}, "probability_delta", "-0.1"),
        ({"band_voxels": 0}, "band_voxels", "got 0"),
        ({"band_voxels": 2.0}, "band_voxels", "2.0"),
        ({"contact_layers": float("inf")}, "contact_layers", "inf"),
        ({"click_shifts": -1}, "click_shifts", "-1"),
        ({"click_depth_mm": "3"}, "click_depth_mm", "'3'"),
        ({"seed": -5}, "seed", "-5"),
    ],
)
def test_uncertainty_params_validation(kwargs, field, quoted):
    with pytest.raises(ValueError, match=r"UncertaintyParams\." + re.escape(field) + ".*" + re.escape(quoted)):
        UncertaintyParams(**kwargs)


def test_valid_values_pass():
    LesionParams(grid_mm=1.0, star_global_ratio=0.0, star_passes=0, rin_climb_steps=0)
    DetectionParams(ground_glass_min_hu=None, smooth_mm=0.0)
    UncertaintyParams(click_shifts=1, contact_layers=0.0)


def test_defaults_come_from_the_constants():
    p = LesionParams()
    assert p.room_air_hu == constants.ROOM_AIR_HU
    assert p.aerated_hu == constants.AERATED_LUNG_HU
    assert p.lung_hu_range == (constants.ROOM_AIR_HU, constants.AERATED_LUNG_HU)
    assert p.ground_glass_max_hu == constants.GROUND_GLASS_MAX_HU
    assert p.bone_hu == constants.CANCELLOUS_BONE_HU[1]
    d = DetectionParams()
    assert d.ground_glass_min_hu == constants.GROUND_GLASS_MIN_HU
    assert d.dense_hu[1] == constants.BONE_HU
    assert constants.ROOM_AIR_HU < constants.AERATED_LUNG_HU < constants.LUNG_HU < constants.GROUND_GLASS_MAX_HU
    assert constants.GROUND_GLASS_MIN_HU < constants.GROUND_GLASS_MAX_HU < constants.BONE_HU


def test_lesion_kinds_are_spelled_one_way():
    assert constants.LESION_KINDS == ("solid", "part-solid", "ground-glass")
    assert (constants.SOLID, constants.PART_SOLID, constants.GROUND_GLASS) == constants.LESION_KINDS
