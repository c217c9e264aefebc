"""mkunet.segmentation.infer.segment_timepoints with one click on the baseline: the lesion is followed into
later scans by registration (mkunet.segmentation.tracking, mkunet.segmentation.register) and segmented there
by the image model.

The phantom is the analytic chest of tests/test_lesion.py on a wider grid (room for the
patient to move). A follow-up "taken" with the patient moved by a known rigid motion M
(3 deg about z, then a translation, in mm) is the noise-free source phantom resampled by
SimpleITK with M's inverse (ITK maps each OUTPUT point p to the INPUT point M^-1(p), so a
structure at c in the source appears at M(c) in the follow-up), plus fresh noise. The true
follow-up lesion is the ball around M(c): expected values come from the geometry.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from mkunet.segmentation.infer import segment_timepoints
from mkunet.segmentation.lesion import SeedError
from mkunet.segmentation.prompts import Seed
from mkunet.volume import Volume
from tests.segmentation.test_lesion import FREE, LESION_HU, LUNG_HU, R, ball, chest, cylinder, dice, inside_mask, render

SHAPE = (48, 144, 144)  # (z, y, x) voxels: 120 x 144 x 144 mm
SPACING = (2.5, 1.0, 1.0)
ANGLE_DEG = 3.0  # about z, centred at the origin
SHIFT = (12.0, -8.0, 10.0)  # (x, y, z) mm
DAYS = [0, 60]
# background vessels (away from the lesion) give the registration some texture inside the lungs
VESSELS = [
    (cylinder((-40.0, -30.0, -30.0), (-15.0, 30.0, 35.0), 1.5), 40.0),
    (cylinder((20.0, -30.0, 20.0), (35.0, 30.0, -25.0), 1.5), 40.0),
]


def motion() -> sitk.Euler3DTransform:
    """M: the patient's rigid motion between the scans (a baseline point -> its follow-up point)."""
    m = sitk.Euler3DTransform()
    m.SetCenter((0.0, 0.0, 0.0))
    m.SetRotation(0.0, 0.0, math.radians(ANGLE_DEG))
    m.SetTranslation(SHIFT)
    return m


def moved(objects, m: sitk.Euler3DTransform, seed: int, **identity) -> Volume:
    """The phantom of ``objects`` with the patient moved by ``m``, with its own noise."""
    src = render(objects, SHAPE, SPACING, noise_sd=0.0)
    img = src.to_sitk()
    out = Volume.from_sitk(sitk.Resample(img, img, m.GetInverse(), sitk.sitkLinear, -1000.0), **identity)
    noise = np.random.default_rng(seed).normal(0.0, 20.0, out.shape).astype(np.float32)
    return out.with_array(out.array + noise)


def test_motion_convention():
    """The follow-up builder puts a structure at c in the source at M(c) (checks the test's own maths)."""
    m = motion()
    c = np.array([10.0, 20.0, 0.0])
    expected = (
        np.array(
            [
                [math.cos(math.radians(ANGLE_DEG)), -math.sin(math.radians(ANGLE_DEG))],
                [math.sin(math.radians(ANGLE_DEG)), math.cos(math.radians(ANGLE_DEG))],
            ]
        )
        @ c[:2]
    )
    np.testing.assert_allclose(m.TransformPoint(tuple(c)), [*(expected + SHIFT[:2]), SHIFT[2]], atol=1e-9)


@pytest.fixture(scope="module")
def grown_and_moved():
    m = motion()
    r1 = R * 1.2 ** (1.0 / 3.0)  # the lesion grew by 20 % in volume
    c1 = np.asarray(m.TransformPoint(FREE))
    base = render(chest() + VESSELS + [(ball(FREE, R), LESION_HU)], SHAPE, SPACING, seed=0)
    follow = moved(chest() + VESSELS + [(ball(FREE, r1), LESION_HU)], m, seed=1)
    res = segment_timepoints([base, follow], DAYS, rois=[Seed(FREE), None])
    return base, follow, c1, r1, res


def test_repositioned_follow_up_is_found_and_segmented(grown_and_moved):
    base, follow, c1, r1, res = grown_and_moved
    # the follow-up's lesion really moved: the ball's baseline place is lung there
    assert np.linalg.norm(c1 - np.asarray(FREE)) > 15.0
    assert follow.array[tuple(np.rint(follow.physical_to_index(FREE)).astype(int))] < -700.0
    s0, s1 = res.segmentations
    assert res.tracked[0] is None
    assert res.tracked[1].found
    # measured: the mapped core is 0.74 mm from M(c)
    assert np.linalg.norm(np.asarray(res.tracked[1].point_xyz) - c1) <= 3.0
    # the registration itself is kept (the slice viewer reuses it): it maps the baseline centre to c1
    reg = res.tracked[1].result
    assert reg is not None and reg.kind == res.tracked[1].registration
    assert np.linalg.norm(np.asarray(reg.map_point(np.asarray(FREE, float))) - c1) <= 3.0
    # measured: Dice 0.9894 (baseline), 0.9741 (follow-up); pinned within 0.02
    assert dice(s0.mask, inside_mask(base, ball(FREE, R))) >= 0.9894 - 0.02
    assert dice(s1.mask, inside_mask(follow, ball(c1, r1))) >= 0.9741 - 0.02
    assert not s1.empty and s1.method == "image"


def test_repositioned_follow_up_lvcr(grown_and_moved):
    *_, res = grown_and_moved
    truth = math.log(1.2) / (DAYS[1] - DAYS[0])
    # measured: 0.880 x the truth (0.00267 vs 0.00304 per day); pinned within 5 %
    assert res.lvcr_per_day == pytest.approx(0.880 * truth, rel=0.05)


@pytest.mark.filterwarnings("ignore:No lesion found at the seed")
@pytest.mark.parametrize("vessel_mm", [10.0, 5.0], ids=["vessel-2mm-outside", "vessel-through-the-ball"])
def test_vanished_lesion_is_not_found(vessel_mm):
    """The ball is gone at follow-up (lung there); a vessel that passed near (or through) it stays."""
    c = np.asarray(FREE)
    vessel = [(cylinder(c + (vessel_mm, -40.0, -20.0), c + (vessel_mm, 40.0, 20.0), 1.5), 40.0)]
    base = render(chest() + vessel + [(ball(FREE, R), LESION_HU)], SHAPE, SPACING, seed=0)
    follow = moved(chest() + vessel, motion(), seed=1)
    with pytest.warns(UserWarning, match="not found"):
        res = segment_timepoints([base, follow], DAYS, rois=[Seed(FREE), None])
    s0, s1 = res.segmentations
    # measured: baseline Dice 0.9888 / 0.9836 (the vessel is cut off the ball); pinned within 0.02
    assert dice(s0.mask, inside_mask(base, ball(FREE, R))) >= {10.0: 0.9888, 5.0: 0.9836}[vessel_mm] - 0.02
    assert s1.empty and not s1.mask.any()
    assert res.tracked[1].found is False
    assert any("lesion not found" in n for n in s1.notes), s1.notes
    assert res.lvcr_per_day is None


@pytest.fixture(scope="module")
def two_static_scans():
    """The same patient, not moved, scanned twice (different noise)."""
    objs = chest() + VESSELS + [(ball(FREE, R), LESION_HU)]
    return render(objs, SHAPE, SPACING, seed=0), render(objs, SHAPE, SPACING, seed=1)


def test_tracking_none_warns_when_frames_of_reference_differ(two_static_scans):
    a, b = two_static_scans
    base = a.with_array(a.array, frame_of_reference_uid="1.2.826.0.1.1")
    follow = b.with_array(b.array, frame_of_reference_uid="1.2.826.0.1.2")
    with pytest.warns(UserWarning, match="FrameOfReferenceUID"):
        res = segment_timepoints([base, follow], DAYS, rois=[Seed(FREE), None], tracking="none")
    assert res.tracked[1].registration == "none" and res.tracked[1].result is None
    assert any("FrameOfReferenceUID" in n for n in res.tracked[1].notes)
    # looked for at the same scanner coordinates, where the (unmoved) lesion is
    assert res.tracked[1].found
    assert dice(res.segmentations[1].mask, inside_mask(follow, ball(FREE, R))) >= 0.85


def test_tracking_none_same_frame_of_reference_does_not_warn(two_static_scans):
    a, b = two_static_scans
    base = a.with_array(a.array, frame_of_reference_uid="1.2.826.0.1.1")
    follow = b.with_array(b.array, frame_of_reference_uid="1.2.826.0.1.1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = segment_timepoints([base, follow], DAYS, rois=[Seed(FREE), None], tracking="none")
    assert not [w for w in caught if "FrameOfReferenceUID" in str(w.message)]
    assert res.tracked[1].found


@pytest.mark.parametrize("timepoint", [0, 1])
def test_bad_seed_stops_before_any_work(two_static_scans, monkeypatch, timepoint):
    import mkunet.segmentation.infer
    import mkunet.segmentation.network
    import mkunet.segmentation.register

    def no_work(*args, **kwargs):
        raise AssertionError("work was done before the seeds were checked")

    monkeypatch.setattr(mkunet.segmentation.infer, "segment", no_work)
    monkeypatch.setattr(mkunet.segmentation.network, "load_model", no_work)
    monkeypatch.setattr(mkunet.segmentation.register, "register", no_work)
    air = (-28.0, 20.0, 20.0)  # (x, y, z) mm: aerated lung, 12 mm from the lesion
    assert two_static_scans[0].array[tuple(np.rint(two_static_scans[0].physical_to_index(air)).astype(int))] < (
        LUNG_HU + 200.0
    )
    rois = [Seed(FREE), Seed(air)] if timepoint else [Seed(air), None]
    with pytest.raises(SeedError, match=rf"(?s)timepoint {timepoint}.*air.*mm.*voxel"):
        segment_timepoints(list(two_static_scans), DAYS, rois=rois)


# ----------------------------------------------------------------------------- synthetic generator


@pytest.fixture(scope="module")
def solid_patients():
    """The first two patients with a solid tumour of iter_patients(seed=0), three scans each (about 1.5 s)."""
    from mkunet.synth.cohort import iter_patients

    found = []
    for p in iter_patients(12, seed=0, shape=(64, 192, 192), timepoints=(3, 3), reposition_mm=10, diameter_mm=(8, 50)):
        if p.tumour.kind == "solid":
            found.append(p)
        if len(found) == 2:
            break
    assert len(found) == 2
    return found


@pytest.mark.filterwarnings("ignore:Tracked lesion not found")
@pytest.mark.parametrize(
    "which",
    [
        pytest.param(0, id="SYN0001"),  # register's local stage may move the click by 25 mm at most
        pytest.param(1, id="SYN0002"),
    ],
)
def test_synthetic_patient_is_followed(solid_patients, which):
    from mkunet.synth.writers import baseline_lesion

    p = solid_patients[which]
    click = baseline_lesion(p)
    res = segment_timepoints(
        [s.volume for s in p.scans],
        [s.days for s in p.scans],
        rois=[Seed((click["x_mm"], click["y_mm"], click["z_mm"])), None, None],
    )
    # measured, per scan: SYN0001 0.929, 0.910, 0.904; SYN0002 (2.9 -> 4.1 cm^3) 0.965, 0.953, 0.981
    measured = {0: (0.929, 0.910, 0.904), 1: (0.965, 0.953, 0.981)}[which]
    for k, (seg, scan) in enumerate(zip(res.segmentations, p.scans)):
        d = dice(seg.mask, np.asarray(scan.mask, bool))
        assert d >= measured[k] - 0.02, (p.patient_id, k, d, scan.shift_mm)
