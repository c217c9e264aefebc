"""Whole-volume lesion detection (:func:`mkunet.segmentation.candidates.detect_lesions`) and the detect path of segment.

Analytic chest phantoms on a 2 mm grid (z, y, x) = (40, 80, 100) voxels = (80, 160, 200) mm: a body
(40 HU) in room air (-1000 HU), two ellipsoidal lungs (-850 HU) either side of a soft-tissue mediastinum,
thin vessels (cylinders of radius 2-2.5 mm, 40 HU) through the lungs, seeded Gaussian noise (sd 20 HU),
and solid balls (40 HU) where a test puts a nodule. Then the real CT of ``../shared/data`` (skipped
when absent).

Phantom coordinates are mm from the centre of voxel [0, 0, 0], ordered (z, y, x); physical points
are (x, y, z) mm (identity direction: ``origin + (x, y, z)``).
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Sequence

import numpy as np
import pytest

from mkunet.segmentation.candidates import Candidate, DetectionParams, detect_lesions
from mkunet.segmentation.infer import resolve_method, segment, segment_timepoints
from mkunet.segmentation.results import save_segmentation
from mkunet.volume import Volume

SHAPE = (40, 80, 100)  # (z, y, x) voxels at 2 mm: (80, 160, 200) mm
GRID = (2.0, 2.0, 2.0)  # (z, y, x) mm
RIGHT_LUNG_X = (20.0, 90.0)  # mm, lateral (pleura at y = 80) to medial; the mediastinum is x 90..110
LEFT_LUNG_X = (110.0, 180.0)
# thin vessels: (point (z, y, x) mm, radius mm, axis it runs along (0 = z, 1 = y, 2 = x))
VESSELS = (((0.0, 70.0, 50.0), 2.5, 0), ((0.0, 100.0, 140.0), 2.5, 0), ((0.0, 60.0, 160.0), 2.0, 0))
NODULE = (40.0, 80.0, 55.0)  # (z, y, x) mm, in the right lung, between voxel centres in x


def _coordinates(shape: Sequence[int], spacing: Sequence[float], shift_mm: Sequence[float]) -> list[np.ndarray]:
    """Per-voxel (z, y, x) mm from voxel [0, 0, 0], minus ``shift_mm`` (the anatomy moves by +shift)."""
    axes = [np.arange(n) * s - d for n, s, d in zip(shape, spacing, shift_mm)]
    return list(np.meshgrid(*axes, indexing="ij"))


def chest_phantom(
    balls: Sequence[tuple[Sequence[float], float]] = (),
    tubes: Sequence[tuple[Sequence[float], float, int]] = VESSELS,
    *,
    lungs: bool = True,
    noise_hu: float = 20.0,
    seed: int = 0,
    shape: Sequence[int] = SHAPE,
    spacing: tuple[float, float, float] = GRID,
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    shift_mm: Sequence[float] = (0.0, 0.0, 0.0),
    ball_hu: float = 40.0,
) -> Volume:
    """An analytic chest CT (HU) on a (z, y, x) grid (module docstring).

    Args:
        balls: ((z, y, x) centre mm, radius mm) solid balls of ``ball_hu`` (nodules, or masses elsewhere).
        tubes: ((z, y, x) point mm, radius mm, axis) cylinders of 40 HU along the axis, drawn in the lungs only.
        lungs: False: the body is a soft-tissue block without lungs.
        noise_hu: sd of the Gaussian noise (HU), seeded by ``seed``.
        shape, spacing, origin: the grid ((z, y, x) voxels, (z, y, x) mm, physical (x, y, z) mm).
        shift_mm: the whole anatomy moved by this (z, y, x) mm (a follow-up scan positioned differently).
    """
    z, y, x = _coordinates(shape, spacing, shift_mm)
    hu = np.full(tuple(shape), -1000.0, np.float32)
    hu[((y - 80.0) / 70.0) ** 2 + ((x - 100.0) / 96.0) ** 2 <= 1.0] = 40.0  # body, 160 x 192 mm in-plane
    if lungs:
        for x0, x1 in (RIGHT_LUNG_X, LEFT_LUNG_X):
            lung = (z >= 10.0) & (z <= 70.0)
            lung &= ((y - 80.0) / 50.0) ** 2 + ((x - 0.5 * (x0 + x1)) / (0.5 * (x1 - x0))) ** 2 <= 1.0
            hu[lung] = -850.0
    for point, radius, axis in tubes:
        d2 = [(z - point[0]) ** 2, (y - point[1]) ** 2, (x - point[2]) ** 2]
        d2[axis] = np.zeros_like(z)
        hu[(d2[0] + d2[1] + d2[2] <= radius**2) & (hu < -500.0)] = 40.0
    for centre, radius in balls:
        hu[(z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2] = ball_hu
    if noise_hu:
        hu += np.random.default_rng(seed).normal(0.0, noise_hu, hu.shape).astype(np.float32)
    return Volume(hu, spacing, origin=origin)


def ball_mask(volume: Volume, centre: Sequence[float], radius: float) -> np.ndarray:
    """bool (z, y, x): the voxels within ``radius`` mm of ``centre`` ((z, y, x) mm from voxel [0, 0, 0])."""
    z, y, x = _coordinates(volume.shape, volume.spacing, (0.0, 0.0, 0.0))
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def distance_mm(cand: Candidate, centre_zyx_mm: Sequence[float], origin: Sequence[float] = (0.0, 0.0, 0.0)) -> float:
    """Distance (mm) from a candidate's physical centroid to a phantom point ((z, y, x) mm from voxel 0)."""
    point_xyz = np.asarray(origin, float) + np.asarray(centre_zyx_mm, float)[::-1]
    return float(np.linalg.norm(np.asarray(cand.centroid_mm) - point_xyz))


@pytest.fixture(scope="module")
def nodule_volume() -> Volume:
    """The chest phantom with a 6 mm-radius solid ball in the right lung (at :data:`NODULE`)."""
    return chest_phantom(balls=[(NODULE, 6.0)])


@pytest.fixture(scope="module")
def free_volume() -> Volume:
    """The chest phantom without a tumour: lungs and thin vessels only."""
    return chest_phantom()


# ----------------------------------------------------------------------------- detect_lesions


def test_ball_in_the_lung_is_the_top_candidate(nodule_volume):
    cands = detect_lesions(nodule_volume)
    assert cands, "the 12 mm solid nodule was not detected"
    top = cands[0]
    assert top.rank == 1 and top.source == "image" and top.reportable and top.location == "lung"
    assert distance_mm(top, NODULE) <= 2.0  # the ball's centre lies between voxel centres (x = 27.5 voxels)
    assert np.allclose(top.centroid_zyx, np.asarray(NODULE) / 2.0, atol=1.0)
    assert top.radius_mm == pytest.approx(6.0, abs=2.0)  # one grid step
    assert top.blobness > 0.5 and top.air_fraction > 0.6
    # image candidates carry no probability; the ball's volume is the inscribed ball's
    assert top.max_probability is None and top.mean_probability is None
    assert top.ball_volume_cm3 == pytest.approx(4.0 / 3.0 * np.pi * top.radius_mm**3 / 1000.0)
    assert [c.rank for c in cands] == list(range(1, len(cands) + 1))
    assert all(a.score >= b.score for a, b in zip(cands, cands[1:]))


def test_thick_vessel_ranks_below_the_ball():
    """A 9 mm vessel is as deep as the 12 mm ball (inscribed radius ~5.7 mm): its blobness tells them apart."""
    tube_zyx = (0.0, 80.0, 150.0)  # along z through the left lung, radius 4.5 mm
    volume = chest_phantom(balls=[(NODULE, 6.0)], tubes=(*VESSELS, (tube_zyx, 4.5, 0)))

    def on_tube(cands: list[Candidate]) -> list[Candidate]:
        return [c for c in cands if np.hypot(c.centroid_mm[0] - 150.0, c.centroid_mm[1] - 80.0) <= 6.0]

    params = DetectionParams()
    cands = detect_lesions(volume, params)
    assert cands and distance_mm(cands[0], NODULE) <= 2.0, "the ball is no longer the top candidate"
    assert not on_tube(cands), [c.describe() for c in on_tube(cands)]
    # without the blobness floor the tube's peaks are listed, below the ball and far less round
    everything = detect_lesions(volume, DetectionParams(min_blobness=0.0))
    ball, tube = everything[0], on_tube(everything)
    assert distance_mm(ball, NODULE) <= 2.0 and tube
    for c in tube:
        assert c.rank > ball.rank and c.blobness < params.min_blobness < ball.blobness, c.describe()
        assert c.radius_mm == pytest.approx(ball.radius_mm, abs=2.0)


@pytest.mark.parametrize(
    ("radius", "inside_mm"),
    [
        (8.0, 4.0),
        (6.0, 4.0),
        (6.0, 5.0),  # tied distance peaks: the first fails the blobness test and must not hide the second
    ],
)
def test_juxtapleural_ball(radius, inside_mm):
    """A ball against the lateral chest wall, its centre ``inside_mm`` into the lung from the pleura."""
    centre = (40.0, 80.0, RIGHT_LUNG_X[0] + inside_mm)  # it cuts radius - inside_mm into the wall
    cands = detect_lesions(chest_phantom(balls=[(centre, radius)]))
    near = [c for c in cands if distance_mm(c, centre) <= 0.5 * radius + 2.0]
    assert near, f"the juxtapleural ball was not found: {[c.describe() for c in cands]}"
    cand = near[0]
    assert cand.rank == 1 and cand.reportable
    assert cand.location in ("pleura", "lung")
    assert 0.2 <= cand.air_fraction <= 0.8  # part of its surface is the chest wall


def test_tumour_free_chest_has_no_reportable_candidate(free_volume):
    cands = detect_lesions(free_volume)
    assert not [c for c in cands if c.reportable], [c.describe() for c in cands]


@pytest.mark.parametrize("radius", [2.0, 3.0])  # a 4 mm and a 6 mm nodule
def test_small_nodules_are_not_reportable(radius):
    """Reportable from an inscribed radius of ``report_radius_mm`` = 4 mm (an 8 mm nodule); listed from 3 mm."""
    params = DetectionParams()
    assert radius < params.report_radius_mm
    cands = detect_lesions(chest_phantom(balls=[(NODULE, radius)]), params)
    assert not [c for c in cands if c.reportable], [c.describe() for c in cands]
    if radius < params.min_radius_mm:  # a 4 mm nodule is not even listed
        assert not [c for c in cands if distance_mm(c, NODULE) <= 6.0]


def test_reportable_rule():
    """``reportable`` iff radius >= report_radius_mm and score >= min_score_cm3 (module docstring)."""
    params = DetectionParams()
    # an 8 mm nodule between voxel centres: inscribed radius 2 sqrt(3) = 3.5 mm (2 mm grid): listed, not reportable
    small = (40.0, 80.0, 155.0)
    cands = detect_lesions(chest_phantom(balls=[(NODULE, 6.0), (small, 4.0)]), params)
    assert len(cands) >= 2
    listed = [c for c in cands if distance_mm(c, small) <= 2.0]
    assert len(listed) == 1 and listed[0].radius_mm < params.report_radius_mm and not listed[0].reportable
    for c in cands:
        expected = c.radius_mm >= params.report_radius_mm and c.score >= params.min_score_cm3
        assert c.reportable == expected, c.describe()
        assert c.radius_mm >= params.min_radius_mm
        assert c.air_fraction >= params.min_air and c.blobness >= params.min_blobness
        ball = 4.0 / 3.0 * np.pi * c.radius_mm**3 / 1000.0
        assert c.score == pytest.approx(ball * min(1.0, c.blobness / 0.5) * min(1.0, c.air_fraction / 0.5))


def test_soft_tissue_outside_the_lungs_is_not_listed():
    mediastinum = (40.0, 80.0, 100.0)  # between the lungs
    body_wall = (40.0, 20.0, 100.0)  # anterior, between the skin (y = 10) and the lungs (y = 30)
    skin = (40.0, 10.0, 60.0)  # half in the room air: that air is not lung
    volume = chest_phantom(balls=[(NODULE, 6.0), (mediastinum, 6.0), (body_wall, 6.0), (skin, 8.0)], ball_hu=120.0)
    cands = detect_lesions(volume)
    assert cands and distance_mm(cands[0], NODULE) <= 2.0
    for where in (mediastinum, body_wall, skin):
        assert not [c for c in cands if distance_mm(c, where) <= 10.0], where


def test_deterministic(nodule_volume):
    first = detect_lesions(nodule_volume)
    assert first and first == detect_lesions(nodule_volume)


def test_no_lungs_gives_nothing():
    volume = chest_phantom(balls=[((40.0, 80.0, 100.0), 6.0)], lungs=False)
    assert detect_lesions(volume) == []


@pytest.mark.parametrize(
    ("kwargs", "quoted"),
    [
        ({"dense_hu": (100, -100)}, "(100, -100)"),
        ({"min_air": 1.5}, "1.5"),
        ({"min_blobness": -0.1}, "-0.1"),
        ({"grid_mm": 0}, "got 0"),
        ({"shell_mm": -3.0}, "-3.0"),
        ({"smooth_mm": -1.0}, "-1.0"),
        ({"shell_points": 8}, "got 8"),
    ],
)
def test_detection_params_validation(kwargs, quoted):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=re.escape(name) + ".*" + re.escape(quoted)):
        DetectionParams(**kwargs)


def test_detect_rejects_an_array():
    with pytest.raises(ValueError, match="Volume"):
        detect_lesions(np.zeros(SHAPE, np.float32))  # type: ignore[arg-type]


def test_anisotropic_grid_with_an_origin():
    spacing = (2.5, 1.5, 1.5)  # (z, y, x) mm
    origin = (10.0, -20.0, 30.0)  # (x, y, z) mm
    shape = (32, 107, 133)  # the same (80, 160, 200) mm field of view
    centre = (41.0, 79.0, 56.0)  # (z, y, x) mm from voxel [0, 0, 0]
    volume = chest_phantom(balls=[(centre, 6.0)], shape=shape, spacing=spacing, origin=origin)
    cands = detect_lesions(volume)
    assert cands and cands[0].reportable
    top = cands[0]
    assert np.allclose(top.centroid_mm, volume.index_to_physical(top.centroid_zyx), atol=1e-6)
    assert distance_mm(top, centre, origin) <= 2.0
    assert all(0 <= v <= n - 1 for v, n in zip(top.centroid_zyx, shape))


# ----------------------------------------------------------------------------- segment (detect path)


def test_resolve_method_without_a_roi():
    assert resolve_method("auto", None) == "detect"
    assert resolve_method("network", None) == "network"
    with pytest.raises(ValueError, match="Use method='auto'"):
        resolve_method("image", None)


def test_segment_whole_volume_detects_and_segments(nodule_volume, tmp_path):
    seg = segment(nodule_volume)  # no model: the image path does not load the network
    truth = ball_mask(nodule_volume, NODULE, 6.0)
    assert not seg.empty and seg.method == "image"
    assert dice(seg.mask, truth) > 0.85
    assert seg.candidates and seg.candidates[0].source == "image"
    assert seg.roi.startswith("whole volume: detected candidate #1")
    written = save_segmentation(seg, tmp_path)
    with open(written["candidates"], newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    assert {"source", "radius_mm", "blobness", "air_fraction"} <= set(columns)
    assert len(rows) == len(seg.candidates)
    top = rows[0]
    assert top["source"] == "image" and top["reportable"] == "True"
    assert float(top["radius_mm"]) == pytest.approx(seg.candidates[0].radius_mm)
    assert top["max_probability"] == "" and top["mean_probability"] == ""
    assert not any(v == "None" for row in rows for v in row.values())


def test_segment_tumour_free_chest_is_empty(free_volume):
    with pytest.warns(UserWarning, match="No tumour found"):
        seg = segment(free_volume)
    assert seg.empty and not seg.mask.any()
    assert any("no tumour found" in note for note in seg.notes)


# ----------------------------------------------------------------------------- segment_timepoints (detect + track)


def test_timepoints_detect_on_the_baseline_and_track(nodule_volume):
    shift = (2.0, 3.0, -2.0)  # (z, y, x) mm: the follow-up is positioned differently
    follow = chest_phantom(balls=[(NODULE, 7.0)], shift_mm=shift, seed=1)  # the nodule grows, 6 -> 7 mm
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: found on both scans
        result = segment_timepoints([nodule_volume, follow], [0, 60])
    base, later = result.segmentations
    assert base.candidates and base.candidates[0].source == "image"
    assert "detected" in base.roi
    assert dice(base.mask, ball_mask(nodule_volume, NODULE, 6.0)) > 0.85
    grown = ball_mask(follow, np.add(NODULE, shift), 7.0)
    assert not later.empty and dice(later.mask, grown) > 0.8
    assert result.lvcr_per_day is not None and result.lvcr_per_day > 0
    assert any("detected" in note for note in result.notes)


# ----------------------------------------------------------------------------- real CT (../shared/data)


def test_lung1_top_candidate_is_the_labelled_tumour(shared_data):
    from mkunet.io import read_mask, read_volume

    volume = read_volume(shared_data / "pyradiomics" / "lung1_image.nrrd")
    label = read_mask(shared_data / "pyradiomics" / "lung1_label.nrrd", volume)
    cands = detect_lesions(volume)
    assert cands and cands[0].reportable
    centre = tuple(int(v) for v in np.rint(cands[0].centroid_zyx))
    assert label[centre], cands[0].describe()


def test_totalsegmentator_example_has_no_reportable_candidate(shared_data):
    from mkunet.io import read_volume

    volume = read_volume(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")
    assert not [c for c in detect_lesions(volume) if c.reportable]


@pytest.mark.slow
def test_lidc0314_top_candidate_is_the_luna16_nodule(shared_data):
    from mkunet.io import read_volume

    folder = shared_data / "realct"
    with open(folder / "lidc0314_luna16_nodules.csv", newline="") as f:
        row = next(csv.DictReader(f))
    centre = np.array([float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])])  # (x, y, z) mm
    radius = 0.5 * float(row["diameter_mm"])
    cands = detect_lesions(read_volume(folder / "lidc0314.nii.gz"))
    assert cands and cands[0].reportable
    assert np.linalg.norm(np.asarray(cands[0].centroid_mm) - centre) <= radius, cands[0].describe()
