"""mkunet.segmentation.register: follow-up -> baseline registration, checked against known transforms.

The phantom is analytic in physical space (mm), so a follow-up "taken" with the patient
moved by a known rigid transform is sampled exactly (no resampling blur), with its own
noise; the ground-truth lesion centre in the follow-up is the transform of the baseline one.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from mkunet.segmentation.register import KINDS, Registration, register
from mkunet.volume import Volume

BALL_CENTRE = np.array([-42.0, -8.0, 6.0])  # (x, y, z) mm, in the right lung of the phantom
BALL_RADIUS = 6.0  # mm (a 12 mm lesion)
SHIFT = (8.0, -12.0, 6.0)  # mm
ANGLE_Z = np.radians(4.0)


def _phantom_hu(pts: np.ndarray, contents_offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """HU at physical points (n, 3) (x, y, z) mm of a small chest phantom.

    ``contents_offset`` (mm) moves what is inside the lungs (vessels, lesion) but not the
    lungs' walls or the body: a crude model of breathing.
    """
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    hu = np.full(len(pts), -1000.0, np.float32)
    body = (x / 88.0) ** 2 + (y / 66.0) ** 2 <= 1.0
    hu[body] = 40.0
    lung = np.zeros(len(pts), bool)
    for cx in (-42.0, 42.0):
        lung |= ((x - cx) / 32.0) ** 2 + ((y + 4.0) / 44.0) ** 2 + ((z + 8.0) / 52.0) ** 2 <= 1.0
    hu[lung] = -850.0
    spine = ((x / 13.0) ** 2 + ((y - 50.0) / 11.0) ** 2 <= 1.0) & body
    hu[spine] = 400.0
    c = pts - np.asarray(contents_offset)
    vessels = np.zeros(len(pts), bool)
    # tubes through the lungs: (a point on the axis, direction)
    for p0, d in [
        ((-42.0, 0.0, 0.0), (0.2, 0.3, 1.0)),
        ((-30.0, -20.0, 0.0), (1.0, 0.4, 0.5)),
        ((-50.0, 15.0, -10.0), (0.3, -1.0, 0.6)),
        ((42.0, 0.0, 0.0), (-0.3, 0.2, 1.0)),
        ((35.0, 10.0, 10.0), (1.0, -0.5, 0.2)),
        ((48.0, -20.0, -20.0), (0.2, 1.0, 0.7)),
        ((-38.0, 20.0, 20.0), (0.6, 0.1, -1.0)),
    ]:
        d = np.asarray(d) / np.linalg.norm(d)
        r = c - np.asarray(p0)
        dist2 = np.sum(r**2, axis=1) - (r @ d) ** 2
        vessels |= dist2 <= 2.5**2
    hu[vessels & lung] = 40.0
    ball = np.sum((c - BALL_CENTRE) ** 2, axis=1) <= BALL_RADIUS**2
    hu[ball & lung] = 40.0
    return hu


def _grid(shape, spacing, origin) -> np.ndarray:
    """Physical points (x, y, z) of every voxel of an identity-direction grid, in (z, y, x) C order."""
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    return np.stack([origin[0] + i * spacing[2], origin[1] + j * spacing[1], origin[2] + k * spacing[0]], -1).reshape(
        -1, 3
    )


SHAPE = (48, 96, 96)
SPACING = (2.5, 2.0, 2.0)
ORIGIN = tuple(-(n - 1) / 2.0 * s for n, s in zip(reversed(SHAPE), reversed(SPACING)))


def _true_transform() -> sitk.Euler3DTransform:
    """The patient motion: baseline (x, y, z) mm -> follow-up (x, y, z) mm."""
    t = sitk.Euler3DTransform()
    t.SetCenter((0.0, 0.0, 0.0))
    t.SetRotation(0.0, 0.0, float(ANGLE_Z))
    t.SetTranslation(SHIFT)
    return t


def _volume(hu: np.ndarray, shape=SHAPE, spacing=SPACING, origin=ORIGIN, seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    array = hu.reshape(shape) + rng.normal(0.0, 15.0, shape).astype(np.float32)
    return Volume(array, spacing, origin)


@pytest.fixture(scope="module")
def pair() -> tuple[Volume, Volume, sitk.Transform]:
    """Baseline phantom, follow-up with the patient moved by a known rigid motion, and that motion."""
    truth = _true_transform()
    baseline = _volume(_phantom_hu(_grid(SHAPE, SPACING, ORIGIN)), seed=1)
    # follow-up voxel q shows the anatomy at baseline point truth^-1(q); a slightly different grid
    f_shape, f_spacing = (44, 100, 100), (2.5, 1.9, 1.9)
    f_origin = (-90.0, -100.0, -50.0)
    inverse = truth.GetInverse()
    p = _apply(inverse, _grid(f_shape, f_spacing, f_origin))
    followup = _volume(_phantom_hu(p), f_shape, f_spacing, f_origin, seed=2)
    return baseline, followup, truth


def _apply(transform: sitk.Transform, pts: np.ndarray) -> np.ndarray:
    """Apply a rigid/affine SimpleITK transform to (n, 3) points, vectorised."""
    origin = np.asarray(transform.TransformPoint((0.0, 0.0, 0.0)))
    m = np.stack([np.asarray(transform.TransformPoint(tuple(e))) - origin for e in np.eye(3)], axis=1)
    return pts @ m.T + origin


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


# ---------------------------------------------------------------------------- synthetic
@pytest.mark.parametrize("kind", ["rigid", "rigid+affine"])
def test_recovers_known_rigid_motion(pair, kind):
    baseline, followup, truth = pair
    reg = register(baseline, followup, kind=kind)
    assert isinstance(reg, Registration)
    assert reg.kind == kind, reg.notes
    truth_xyz = np.asarray(truth.TransformPoint(tuple(BALL_CENTRE)))
    error = np.linalg.norm(reg.map_point(BALL_CENTRE) - truth_xyz)
    assert error < 2.0, (error, reg)
    # without registration the click would be this far off: the test can fail
    assert np.linalg.norm(BALL_CENTRE - truth_xyz) > 12.0
    assert np.isfinite(reg.metric) and reg.seconds > 0


def test_map_mask_overlaps_true_followup_ball(pair):
    baseline, followup, truth = pair
    reg = register(baseline, followup)
    pts = _grid(SHAPE, SPACING, ORIGIN)
    ball = (np.sum((pts - BALL_CENTRE) ** 2, axis=1) <= BALL_RADIUS**2).reshape(SHAPE)
    mapped = reg.map_mask(ball, baseline, followup)
    assert mapped.shape == followup.shape and mapped.dtype == bool
    q = _grid(followup.shape, followup.spacing, followup.origin)
    true_centre = np.asarray(truth.TransformPoint(tuple(BALL_CENTRE)))
    true_ball = (np.sum((q - true_centre) ** 2, axis=1) <= BALL_RADIUS**2).reshape(followup.shape)
    assert _dice(mapped, true_ball) > 0.8
    identity = register(baseline, followup, kind="identity").map_mask(ball, baseline, followup)
    assert _dice(identity, true_ball) < 0.3


def test_followup_with_flipped_direction(pair):
    """The same follow-up stored with its y axis reversed (direction diag(1, -1, 1)): same answer."""
    baseline, followup, truth = pair
    ny = followup.shape[1]
    flipped = Volume(
        np.ascontiguousarray(followup.array[:, ::-1, :]),
        followup.spacing,
        tuple(followup.index_to_physical((0, ny - 1, 0))),
        np.diag([1.0, -1.0, 1.0]),
    )
    reg = register(baseline, flipped, centre_xyz=BALL_CENTRE)
    target = np.asarray(truth.TransformPoint(tuple(BALL_CENTRE)))
    assert np.linalg.norm(reg.map_point(BALL_CENTRE) - target) < 2.0, reg
    pts = _grid(SHAPE, SPACING, ORIGIN)
    ball = (np.sum((pts - BALL_CENTRE) ** 2, axis=1) <= BALL_RADIUS**2).reshape(SHAPE)
    mapped = reg.map_mask(ball, baseline, flipped)
    index = np.argwhere(np.ones(flipped.shape, bool))
    true_ball = (np.sum((flipped.index_to_physical(index) - target) ** 2, axis=1) <= BALL_RADIUS**2).reshape(
        flipped.shape
    )
    assert _dice(mapped, true_ball) > 0.8


def test_local_stage_follows_breathing(pair):
    """Lung contents move 9 mm more than the chest wall: the click-centred stage follows them."""
    baseline, _, truth = pair
    offset = np.array([0.0, 4.0, -8.0])
    f_shape, f_spacing, f_origin = (44, 100, 100), (2.5, 1.9, 1.9), (-90.0, -100.0, -50.0)
    p = _apply(truth.GetInverse(), _grid(f_shape, f_spacing, f_origin))
    followup = _volume(_phantom_hu(p, contents_offset=offset), f_shape, f_spacing, f_origin, seed=3)
    target = np.asarray(truth.TransformPoint(tuple(BALL_CENTRE + offset)))
    glob = register(baseline, followup, kind="rigid")
    local = register(baseline, followup, kind="rigid", centre_xyz=BALL_CENTRE)
    assert local.kind == "rigid+local", local.notes
    local_error = np.linalg.norm(local.map_point(BALL_CENTRE) - target)
    global_error = np.linalg.norm(glob.map_point(BALL_CENTRE) - target)
    assert local_error < 2.0, (local_error, global_error, local)
    assert global_error > 4.0


def test_identity_returns_points_unchanged(pair):
    baseline, followup, _ = pair
    reg = register(baseline, followup, kind="identity", centre_xyz=BALL_CENTRE)
    assert reg.kind == "identity"
    np.testing.assert_allclose(reg.map_point(BALL_CENTRE), BALL_CENTRE)
    pts = np.array([BALL_CENTRE, [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(reg.map_point(pts), pts)


def test_map_point_shapes_and_errors(pair):
    baseline, followup, _ = pair
    reg = register(baseline, followup, kind="identity")
    assert reg.map_point([1, 2, 3]).shape == (3,)
    assert reg.map_point(np.zeros((5, 3))).shape == (5, 3)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        reg.map_point(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="baseline"):
        reg.map_mask(np.zeros((3, 3, 3), bool), baseline, followup)


def test_deterministic(pair):
    baseline, followup, _ = pair
    a = register(baseline, followup, centre_xyz=BALL_CENTRE, seed=5)
    b = register(baseline, followup, centre_xyz=BALL_CENTRE, seed=5)
    np.testing.assert_array_equal(a.map_point(BALL_CENTRE), b.map_point(BALL_CENTRE))
    assert a.transform.GetParameters() == b.transform.GetParameters()


def test_no_physical_overlap_still_registers(pair):
    """A follow-up in another frame of reference (1 m away) is aligned by the initialiser."""
    baseline, followup, truth = pair
    far = Volume(followup.array, followup.spacing, tuple(np.asarray(followup.origin) + (0.0, 0.0, 1000.0)))
    reg = register(baseline, far, kind="rigid")
    target = np.asarray(truth.TransformPoint(tuple(BALL_CENTRE))) + (0.0, 0.0, 1000.0)
    assert np.linalg.norm(reg.map_point(BALL_CENTRE) - target) < 2.0, reg
    assert any("initialiser" in n for n in reg.notes)


def test_shorter_followup_field_of_view(pair):
    """A follow-up that covers only 70 mm of the baseline's 120 mm (z) still registers."""
    baseline, followup, truth = pair
    k0, k1 = 8, 36
    origin = followup.index_to_physical((k0, 0, 0))
    short = Volume(followup.array[k0:k1], followup.spacing, tuple(origin))
    reg = register(baseline, short)
    assert reg.kind == "rigid+affine", reg.notes
    target = np.asarray(truth.TransformPoint(tuple(BALL_CENTRE)))
    assert np.linalg.norm(reg.map_point(BALL_CENTRE) - target) < 2.0, reg


def test_failure_falls_back_to_initialiser(pair, monkeypatch):
    baseline, followup, _ = pair

    def broken(self, fixed, moving):
        raise RuntimeError("simulated ITK failure")

    monkeypatch.setattr(sitk.ImageRegistrationMethod, "Execute", broken)
    reg = register(baseline, followup, centre_xyz=BALL_CENTRE)
    assert reg.kind == "initialiser"
    assert any("simulated ITK failure" in n for n in reg.notes)
    assert np.all(np.isfinite(reg.map_point(BALL_CENTRE)))


def test_bad_arguments(pair):
    baseline, followup, _ = pair
    with pytest.raises(ValueError, match="'bspline'"):
        register(baseline, followup, kind="bspline")
    with pytest.raises(ValueError, match="outside the baseline"):
        register(baseline, followup, centre_xyz=(0.0, 0.0, 5000.0))
    with pytest.raises(ValueError, match="grid_mm"):
        register(baseline, followup, grid_mm=0)
    assert KINDS == ("identity", "rigid", "rigid+affine")


def test_threads_setting_is_restored(pair):
    baseline, followup, _ = pair
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    register(baseline, followup, kind="rigid", threads=1)
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == before


# ---------------------------------------------------------------------------- real CT
def test_real_ct_known_motion(shared_data):
    """pyradiomics lung2 (512x512x61, 0.63x0.63x5 mm) moved 3 deg / 15 mm: the tumour centroid is found."""
    image_path = shared_data / "pyradiomics" / "lung2_image.nrrd"
    label_path = shared_data / "pyradiomics" / "lung2_label.nrrd"
    from mkunet.io import read_mask, read_volume

    baseline = read_volume(image_path)
    label = read_mask(label_path, baseline)
    centroid = baseline.index_to_physical(np.argwhere(label).mean(axis=0))

    truth = sitk.Euler3DTransform()  # baseline -> follow-up, about the scan centre
    centre = baseline.index_to_physical((np.asarray(baseline.shape) - 1) / 2.0)
    truth.SetCenter(tuple(centre))
    truth.SetRotation(np.radians(1.0), np.radians(-1.0), np.radians(3.0))
    truth.SetTranslation((9.0, -10.0, 6.0))  # 15 mm
    # follow-up on the same grid: voxel q shows the baseline at truth^-1(q)
    image = baseline.to_sitk()
    moved = sitk.Resample(image, image, truth.GetInverse(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    followup = Volume.from_sitk(moved)

    reg = register(baseline, followup, centre_xyz=centroid)
    target = np.asarray(truth.TransformPoint(tuple(centroid)))
    error = np.linalg.norm(reg.map_point(centroid) - target)
    assert error < 3.0, (error, reg)
    assert np.linalg.norm(centroid - target) > 10.0
