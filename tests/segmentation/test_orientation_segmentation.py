"""Segmentation does not depend on how the scan's array is laid out (issue #23, finding 1).

The lesion model and the detector read array axis 0 as cranio-caudal; the entry points
(:func:`segment`, :func:`segment_timepoints`, :func:`detect_lesions`) therefore run on one
canonical grid (:mod:`mkunet.segmentation.orientation`, LPS) and answer on the user's. Here
the same scan is presented in five orientations built with SimpleITK (``PermuteAxes`` and
``Flip`` keep every voxel at its physical place): axial as it is, coronal and sagittal as a
DICOM series lays them out (rows run down the patient), prone (anterior-posterior and
left-right flipped, head-first prone) and feet-first (superior-inferior and left-right
flipped, feet-first supine). The click is the same point in mm. Each orientation must give
the axial result: the same Dice against the truth (+-0.01), volume (+-1 %) and location
label, and, because the reorientation is exact, the very same voxels.

Measured before the hook (on the juxtapleural phantom of test_lesion, seed in mm): axial
Dice 0.853 / 2.623 cm^3 / top candidate "pleura"; coronal 0.843 / 2.678 cm^3; sagittal
0.750 / 3.090 cm^3 / "lung"; prone 0.850 / 2.658 cm^3; feet-first 0.854 / 2.652 cm^3. On
pyradiomics lung2 (cropped as below, deepest truth voxel as the click): axial 0.898 /
45.51 cm^3 / "pleura" at the lesion; coronal 0.868 / 41.84 cm^3; sagittal 0.000 (empty),
top candidate another lesion ("lung"); prone 0.900 / 44.36 cm^3 and feet-first 0.894 /
45.10 cm^3, each with another lesion ranked first.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from mkunet.segmentation.candidates import detect_lesions
from mkunet.segmentation.infer import Box, PreviousMask, Seed, roi_crop_box, segment, segment_timepoints
from mkunet.segmentation.lesion import SeedError
from mkunet.segmentation.orientation import (
    CANONICAL,
    Reorientation,
    orientation_code,
    roi_to_canonical,
    to_canonical,
)
from mkunet.volume import Volume
from tests.io.test_orientation import DIRECTIONS
from tests.segmentation.test_lesion import JUXTA, R, ball, chest, dice, inside_mask, mask_mm3, render

ORIENTATIONS = ("axial", "coronal", "sagittal", "prone", "feet-first")
CODES = {"axial": "LPS", "coronal": "LIP", "sagittal": "PIR", "prone": "RAS", "feet-first": "RPI"}


def present(volume: Volume, name: str) -> Volume:
    """``volume`` (axial, identity direction) laid out as ``name``; every voxel keeps its place in mm."""
    import SimpleITK as sitk

    image = volume.to_sitk()
    if name == "axial":
        out = image
    elif name == "coronal":  # image axes (x, -z, y): DICOM coronal, IOP (1, 0, 0, 0, 0, -1)
        out = sitk.Flip(sitk.PermuteAxes(image, [0, 2, 1]), [False, True, False])
    elif name == "sagittal":  # image axes (y, -z, -x): DICOM sagittal, IOP (0, 1, 0, 0, 0, -1)
        out = sitk.Flip(sitk.PermuteAxes(image, [1, 2, 0]), [False, True, True])
    elif name == "prone":  # head-first prone: x and y reversed
        out = sitk.Flip(image, [True, True, False])
    elif name == "feet-first":  # feet-first supine: x and z reversed
        out = sitk.Flip(image, [True, False, True])
    else:  # pragma: no cover - test helper
        raise ValueError(name)
    return Volume.from_sitk(out, patient_id=volume.patient_id)


def _same_place(a: Volume, b: Volume) -> None:
    """``b`` holds ``a``'s voxels at the same physical points (via the canonical grids)."""
    ca, _ = to_canonical(a)
    cb, _ = to_canonical(b)
    np.testing.assert_array_equal(ca.array, cb.array)
    np.testing.assert_allclose(ca.origin, cb.origin, atol=1e-6)
    np.testing.assert_allclose(ca.spacing, cb.spacing)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------- the map itself
GEOMETRY = dict(spacing=(2.0, 0.9, 0.8), origin=(-20.0, 35.0, -110.0))


def _random_volume(direction: np.ndarray, shape=(7, 9, 11)) -> Volume:
    values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    return Volume(values, direction=direction, **GEOMETRY)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_reorientation_is_exact_and_keeps_every_voxel_in_place(name):
    vol = _random_volume(DIRECTIONS[name])
    canonical, back = to_canonical(vol)
    assert sorted(canonical.shape) == sorted(vol.shape) and back.canonical_shape == canonical.shape
    # every voxel: the same value at the same physical point (mm)
    index = np.indices(canonical.shape).reshape(3, -1).T
    native = back.index_to_input(index)
    np.testing.assert_array_equal(native, np.rint(native))
    np.testing.assert_array_equal(canonical.array.ravel(), vol.array[tuple(native.astype(int).T)])
    np.testing.assert_allclose(canonical.index_to_physical(index), vol.index_to_physical(native), atol=1e-9)
    # and back, bit for bit, also with a leading channel axis
    np.testing.assert_array_equal(back.to_input(canonical.array), vol.array)
    stack = np.stack([canonical.array, -canonical.array])
    np.testing.assert_array_equal(back.to_input(stack)[1], -vol.array)
    np.testing.assert_allclose(back.index_to_canonical(native), index, atol=1e-12)
    # continuous indices and half-open boxes
    point = np.array([1.25, 7.5, 3.75])
    np.testing.assert_allclose(back.index_to_input(back.index_to_canonical(point)), point, atol=1e-12)
    np.testing.assert_allclose(
        canonical.index_to_physical(back.index_to_canonical(point)), vol.index_to_physical(point), atol=1e-9
    )
    box = ((1, 5), (2, 9), (0, 4))
    inside = np.zeros(vol.shape, bool)
    inside[tuple(slice(a, b) for a, b in box)] = True
    canonical_box = back.box_to_canonical(box)
    expected = np.zeros(canonical.shape, bool)
    expected[tuple(slice(a, b) for a, b in canonical_box)] = True
    np.testing.assert_array_equal(back.to_canonical(inside), expected)
    assert back.box_to_input(canonical_box) == box


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_reorientation_agrees_with_simpleitk_dicomorient(name):
    """The canonical volume is what SimpleITK's DICOMOrient(image, "LPS") gives (array and geometry)."""
    import SimpleITK as sitk

    vol = _random_volume(DIRECTIONS[name])
    canonical, back = to_canonical(vol)
    reference = sitk.DICOMOrient(vol.to_sitk(), CANONICAL)
    np.testing.assert_array_equal(canonical.array, sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(canonical.spacing, reference.GetSpacing()[::-1])
    np.testing.assert_allclose(canonical.origin, reference.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(canonical.direction.ravel(), reference.GetDirection(), atol=1e-12)
    assert back.input_code == sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
        vol.direction.ravel().tolist()
    )
    assert orientation_code(canonical) == CANONICAL
    if name != "oblique-30deg":  # an oblique scan keeps its tilt: the direction is near, not at, identity
        np.testing.assert_allclose(canonical.direction, np.eye(3), atol=1e-12)


def test_canonical_input_is_passed_through():
    vol = _random_volume(np.eye(3))
    canonical, back = to_canonical(vol)
    assert canonical is vol and back.is_identity and back.input_code == "LPS"
    oblique = _random_volume(DIRECTIONS["oblique-30deg"])  # nearest to LPS: nothing to permute
    assert to_canonical(oblique)[0] is oblique


def test_forty_five_degrees_still_gives_a_permutation():
    c = np.sqrt(0.5)
    back = Reorientation.of(_random_volume(np.array([[c, -c, 0.0], [c, c, 0.0], [0.0, 0.0, 1.0]])))
    assert sorted(back.axes) == [0, 1, 2]


def test_reorientation_rejects_bad_input():
    with pytest.raises(ValueError, match=r"permutation of \(0, 1, 2\), got \(0, 0, 2\)"):
        Reorientation((2, 3, 4), axes=(0, 0, 2))
    with pytest.raises(ValueError, match="must be a mkunet Volume, got ndarray"):
        to_canonical(np.zeros((2, 3, 4)))  # type: ignore[arg-type]
    back = Reorientation.of(_random_volume(DIRECTIONS["coronal"]))
    with pytest.raises(ValueError, match=r"to_input: .*\(7, 9, 11\)"):
        back.to_input(np.zeros((7, 9, 11)))


def test_dicom_source_files_follow_the_slices():
    files = tuple(Path(f"/ct/{k}.dcm") for k in range(7))
    vol = Volume(np.zeros((7, 4, 5)), (2.0, 1.0, 1.0), direction=DIRECTIONS["feet-first-supine"], source=files)
    assert to_canonical(vol)[0].source == files[::-1]  # slices reversed: files reversed
    coronal = Volume(np.zeros((7, 4, 5)), (2.0, 1.0, 1.0), direction=DIRECTIONS["coronal"], source=files)
    assert to_canonical(coronal)[0].source == ()  # a coronal series' files are not axial slices


@pytest.mark.parametrize("name", ["coronal", "sagittal", "feet-first-supine"])
def test_voxel_rois_refer_to_the_users_grid(name):
    vol = _random_volume(DIRECTIONS[name], shape=(12, 28, 26))
    canonical, back = to_canonical(vol)
    # a seed in voxels (x, y, z) of the user's grid: the same physical point on the canonical grid
    seed = Seed((17.0, 6.0, 9.0), units="voxel")
    moved = roi_to_canonical(seed, vol, canonical, back)
    assert isinstance(moved, Seed) and moved.units == "voxel"
    np.testing.assert_allclose(
        canonical.index_to_physical(moved.index_zyx(canonical)), vol.index_to_physical(seed.index_zyx(vol)), atol=1e-9
    )
    assert roi_to_canonical(Seed((1.0, 2.0, 3.0)), vol, canonical, back) == Seed((1.0, 2.0, 3.0))  # mm: as it is
    # a box in voxels (fractional bounds included): the same voxels are cropped
    box = Box(z=(2.0, 7.5), y=(3.2, 20.0), x=(0.0, 11.0))
    crop_user = np.zeros(vol.shape, bool)
    crop_user[tuple(slice(a, b) for a, b in roi_crop_box(vol, box)[0])] = True
    crop_canonical = np.zeros(canonical.shape, bool)
    moved_box = roi_to_canonical(box, vol, canonical, back)
    crop_canonical[tuple(slice(a, b) for a, b in roi_crop_box(canonical, moved_box)[0])] = True
    np.testing.assert_array_equal(back.to_canonical(crop_user), crop_canonical)
    # a previous mask on the user's grid (array + reference, or a label volume)
    previous = np.zeros(vol.shape, bool)
    previous[3:6, 10:15, 4:9] = True
    for roi in (PreviousMask(previous, vol), PreviousMask(vol.with_array(previous.astype(np.float32)))):
        on_canonical = roi_to_canonical(roi, vol, canonical, back).on_grid(canonical)
        np.testing.assert_array_equal(on_canonical, back.to_canonical(previous))


# ----------------------------------------------------------------------------- the juxtapleural phantom
@pytest.fixture(scope="module")
def phantom() -> Volume:
    """test_lesion's chest with the r = 8 mm ball against the left lung's lateral wall (axial)."""
    return render(chest() + [(ball(JUXTA, R), 30.0)], patient_id="phantom")


@pytest.fixture(scope="module")
def phantom_axial(phantom):
    seg = _quiet(segment, phantom, None, roi=Seed(JUXTA), method="auto", uncertainty="off")
    return seg, detect_lesions(phantom)


@pytest.mark.parametrize("name", ORIENTATIONS)
def test_phantom_gives_the_axial_result_in_every_orientation(phantom, phantom_axial, name):
    reference, reference_candidates = phantom_axial
    vol = present(phantom, name)
    _same_place(phantom, vol)
    assert orientation_code(vol) == CODES[name]
    truth = inside_mask(vol, ball(JUXTA, R))
    seg = _quiet(segment, vol, None, roi=Seed(JUXTA), method="auto", uncertainty="off")
    # on the user's grid
    assert seg.volume is vol and seg.mask.shape == vol.shape and seg.probability.shape == vol.shape
    assert seg.roi == Seed(JUXTA).describe()
    axial_truth = inside_mask(phantom, ball(JUXTA, R))
    assert dice(seg.mask, truth) == pytest.approx(dice(reference.mask, axial_truth), abs=0.01)
    assert seg.voxel_volume_cm3 == pytest.approx(reference.voxel_volume_cm3, rel=0.01)
    assert seg.voxel_volume_cm3 == pytest.approx(mask_mm3(seg.mask, vol) / 1000.0)
    # exact: the same voxels as the axial run
    np.testing.assert_array_equal(to_canonical(vol)[1].to_canonical(seg.mask), reference.mask)
    # the voxel fields are on the user's grid: the core lies at the same mm, the crop holds the lesion
    np.testing.assert_allclose(
        vol.index_to_physical(seg.lesion.core_zyx), phantom.index_to_physical(reference.lesion.core_zyx), atol=1e-6
    )
    inside = np.zeros(vol.shape, bool)
    inside[tuple(slice(a, b) for a, b in seg.roi_box)] = True
    assert seg.mask.any() and not (seg.mask & ~inside).any()
    np.testing.assert_array_equal(seg.lesion.mask, seg.mask)
    if name != "axial":
        assert any(CANONICAL in note for note in seg.notes)

    # the detector: the same top candidate, at the same place (mm), with its voxel on the user's grid
    candidates = detect_lesions(vol)
    top, ref = candidates[0], reference_candidates[0]
    assert top.location == ref.location == "pleura"
    one_voxel = np.asarray(to_canonical(vol)[0].spacing)[::-1]  # (x, y, z) mm
    assert np.all(np.abs(np.subtract(top.centroid_mm, ref.centroid_mm)) <= one_voxel)
    np.testing.assert_allclose(vol.index_to_physical(top.centroid_zyx), top.centroid_mm, atol=1e-6)
    assert [c.location for c in candidates] == [c.location for c in reference_candidates]


def test_phantom_box_in_the_users_voxels(phantom, phantom_axial):
    """A voxel Box drawn on a sagittal array around the lesion gives the axial lesion."""
    reference, _ = phantom_axial
    vol = present(phantom, "sagittal")
    centre = np.rint(vol.physical_to_index(JUXTA)).astype(int)
    half = np.ceil(14.0 / np.asarray(vol.spacing)).astype(int)  # 14 mm each side, in this grid's voxels
    lo, hi = centre - half, centre + half + 1
    box = Box(z=(lo[0], hi[0]), y=(lo[1], hi[1]), x=(lo[2], hi[2]))
    seg = _quiet(segment, vol, None, roi=box, method="auto", uncertainty="off")
    assert seg.roi == box.describe()
    assert dice(to_canonical(vol)[1].to_canonical(seg.mask), reference.mask) >= 0.97
    in_box = np.zeros(vol.shape, bool)
    in_box[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    assert seg.mask.any() and not (seg.mask & ~in_box).any()  # clipped to the box of the user's voxels
    in_crop = np.zeros(vol.shape, bool)
    in_crop[tuple(slice(a, b) for a, b in seg.roi_box)] = True  # the lesion model's window, the user's voxels
    assert not (seg.mask & ~in_crop).any()


def test_bad_seed_names_the_users_voxel(phantom):
    vol = present(phantom, "coronal")
    air = vol.index_to_physical((2.0, 3.0, 4.0))  # a corner: room air
    with pytest.raises(SeedError, match=r"voxel \(x, y, z\) = \[4, 3, 2\]"):
        segment(vol, None, roi=Seed(tuple(air)), method="auto")


def test_timepoints_in_different_orientations(phantom, phantom_axial):
    """Each timepoint comes back on its own grid; the volumes and LVCR match the axial ones."""
    reference, _ = phantom_axial
    vols = [present(phantom, "sagittal"), present(phantom, "feet-first")]
    result = _quiet(
        segment_timepoints, vols, [0.0, 30.0], rois=[Seed(JUXTA), Seed(JUXTA)], method="auto", uncertainty="off"
    )
    for seg, vol in zip(result.segmentations, vols):
        assert seg.volume is vol and seg.mask.shape == vol.shape
        np.testing.assert_array_equal(to_canonical(vol)[1].to_canonical(seg.mask), reference.mask)
    assert result.lvcr_per_day == pytest.approx(0.0, abs=1e-9)


def test_network_maps_come_back_exactly():
    """The network path (stub oracle): probability and candidates on the user's grid, as on the axial scan."""
    from tests.segmentation.test_infer import StubBundle, chest_with_wall_blob

    axial, tumour, _ = chest_with_wall_blob()
    reference = _quiet(segment, axial, StubBundle(), method="network")
    for name in ("coronal", "prone"):
        vol = present(axial, name)
        seg = _quiet(segment, vol, StubBundle(), method="network")
        back = to_canonical(vol)[1]
        np.testing.assert_array_equal(back.to_canonical(seg.probability), reference.probability)
        np.testing.assert_array_equal(back.to_canonical(seg.mask), reference.mask)
        assert len(seg.candidates) == len(reference.candidates)
        for cand, ref in zip(seg.candidates, reference.candidates):
            np.testing.assert_allclose(cand.centroid_mm, ref.centroid_mm, atol=1e-6)
            np.testing.assert_allclose(vol.index_to_physical(cand.centroid_zyx), cand.centroid_mm, atol=1e-6)
            assert cand.location == ref.location


# ----------------------------------------------------------------------------- real CT: pyradiomics lung2
LUNG2_CROP = (slice(0, 45), slice(150, 512), slice(0, 512))
"""(z, y, x): the lesion (slices 15-25) with both lungs around it (the detector needs them); full 61 x 512 x 512."""


def _crop(volume: Volume, box: tuple[slice, ...]) -> Volume:
    corner = volume.index_to_physical([s.start for s in box])
    return Volume(
        np.ascontiguousarray(volume.array[box]), volume.spacing, tuple(corner), volume.direction, patient_id="lung2"
    )


@pytest.fixture(scope="module")
def lung2(shared_data: Path):
    from mkunet.io import read_mask, read_volume

    image, label = shared_data / "pyradiomics" / "lung2_image.nrrd", shared_data / "pyradiomics" / "lung2_label.nrrd"
    if not image.is_file() or not label.is_file():
        pytest.skip(f"{image} or {label} not found")
    full = read_volume(image)
    truth = read_mask(label, full)
    depth = ndimage.distance_transform_edt(truth, sampling=full.spacing)
    click = full.index_to_physical(np.unravel_index(int(np.argmax(depth)), truth.shape))  # (x, y, z) mm
    vol = _crop(full, LUNG2_CROP)
    return vol, vol.with_array(truth[LUNG2_CROP].astype(np.float32)), tuple(float(v) for v in click)


@pytest.fixture(scope="module")
def lung2_axial(lung2):
    vol, truth, click = lung2
    seg = _quiet(segment, vol, None, roi=Seed(click), method="auto", uncertainty="off")
    return seg, dice(seg.mask, truth.array > 0), detect_lesions(vol)


@pytest.mark.slow  # about 8-10 s per orientation on one free core (the lesion model on a 5 cm mass)
@pytest.mark.parametrize("name", ORIENTATIONS[1:])  # the axial run is the fixture's reference
def test_lung2_gives_the_axial_result_in_every_orientation(lung2, lung2_axial, name):
    reference, reference_dice, reference_candidates = lung2_axial
    vol, truth, click = (present(lung2[0], name), present(lung2[1], name).array > 0, lung2[2])
    seg = _quiet(segment, vol, None, roi=Seed(click), method="auto", uncertainty="off")
    assert reference_dice >= 0.86  # test_lesion's bar for lung2 (measured 0.898)
    assert dice(seg.mask, truth) == pytest.approx(reference_dice, abs=0.01)
    assert seg.voxel_volume_cm3 == pytest.approx(reference.voxel_volume_cm3, rel=0.01)
    np.testing.assert_array_equal(to_canonical(vol)[1].to_canonical(seg.mask), reference.mask)
    # the detector ranks the lesion first, on the chest wall, wherever the array's axes point
    top, ref = detect_lesions(vol)[0], reference_candidates[0]
    assert top.location == ref.location == "pleura"
    assert truth[tuple(np.rint(top.centroid_zyx).astype(int))]  # the user's voxel lies in the lesion
    one_voxel = np.asarray(to_canonical(vol)[0].spacing)[::-1]
    assert np.all(np.abs(np.subtract(top.centroid_mm, ref.centroid_mm)) <= one_voxel)


@pytest.mark.parametrize("name", ["identity", "coronal"])
def test_warnings_point_at_the_callers_line(name):
    """The hook adds a frame: the entry points' warnings must still name the line that called them."""
    vol = Volume(np.full((6, 20, 22), 40.0, np.float32), (2.0, 1.0, 1.0), direction=DIRECTIONS[name])
    with pytest.warns(UserWarning, match="No tumour found") as record:
        seg = segment(vol, None)  # no lung: nothing detected, an empty mask and a warning
    assert seg.empty and seg.mask.shape == vol.shape
    assert {Path(w.filename).name for w in record} == {Path(__file__).name}


@pytest.mark.parametrize("name", ("coronal", "sagittal"))
def test_quality_control_envelope_in_every_orientation(phantom, name):
    """The QC's lung envelope (mkunet.qc.lung_envelope) is computed in the canonical orientation, so
    a coronal or sagittal scan gets the same envelope, voxel for voxel, as the axial one."""
    from mkunet.qc import lung_envelope
    from mkunet.segmentation.orientation import to_canonical

    axial = lung_envelope(phantom)
    other = present(phantom, name)
    _, back = to_canonical(other)
    np.testing.assert_array_equal(back.to_canonical(lung_envelope(other)), axial)
    assert axial.any()
