"""mkunet.segmentation.lesion.segment_lesion (the image-driven one-click lesion model) and the image path of
mkunet.segmentation.infer.segment, on analytic chest phantoms, synthetic generator scans and real CT.

The phantom is analytic in physical space (mm, DICOM LPS, centred on the origin): a body
ellipse (40 HU), two lung ellipsoids (-850 HU), fifteen ribs (+700 HU disks along the body
wall) and a spine, in air (-1000 HU). Lesions are balls and cylinders painted on top. Each
slice is the mean of 5 sub-slices (slice-thickness partial volume), then blurred by a
0.7 mm Gaussian (in-plane partial volume), then Gaussian noise of SD 20 HU is added with a
fixed seed. The expected lesion is the set of voxels whose centre lies inside the analytic
ball, and the expected volume is 4/3 pi r^3: both come from the geometry, never from the
code under test. Helpers here are imported by tests/segmentation/test_tracking.py and
tests/cli/test_segment_cli.py.

Known failures are marked ``xfail(strict=True)`` with the reason and the measured value: a
fix makes them pass, and strict mode then asks for the marker to be removed.

Dice and volume are pinned near their measured values (:func:`assert_pinned`: Dice at least
the measured value - 0.02, volume within 5 % of the measured ratio), so that a change of the
lesion model that moves a result by more than that fails a test and has to say why
(issue #23: a juxtapleural ball fell from Dice 0.987 to 0.905 and no test noticed).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from mkunet.segmentation.infer import segment
from mkunet.segmentation.lesion import SeedError, segment_lesion
from mkunet.segmentation.prompts import Box, Seed
from mkunet.volume import Volume

Predicate = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

SMALL_SHAPE = (40, 120, 120)  # (z, y, x) voxels
SMALL_SPACING = (2.5, 1.0, 1.0)  # (z, y, x) mm
FREE = (-28.0, 0.0, 0.0)  # (x, y, z) mm: the centre of the right lung, >= 13 mm from any wall for r = 8
JUXTA = (41.5, 0.0, 0.0)  # (x, y, z) mm: a ball of r = 8 here reaches the left lung's lateral wall (x = 49)
LESION_HU = 30.0
GGO_HU = -600.0
LUNG_HU = -850.0
RIB_HU = 700.0
R = 8.0  # mm, radius of the standard ball


# ----------------------------------------------------------------------------- analytic phantom


def ball(centre_xyz: Sequence[float], radius: float) -> Predicate:
    """Points (x, y, z) mm inside a ball."""
    cx, cy, cz = (float(v) for v in centre_xyz)
    return lambda x, y, z: (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= radius * radius


def cylinder(p0: Sequence[float], p1: Sequence[float], radius: float) -> Predicate:
    """Points (x, y, z) mm within ``radius`` of the segment p0-p1."""
    a = np.asarray(p0, float)
    d = np.asarray(p1, float) - a
    length = float(np.linalg.norm(d))
    d /= length

    def inside(x, y, z):
        rx, ry, rz = x - a[0], y - a[1], z - a[2]
        t = rx * d[0] + ry * d[1] + rz * d[2]
        return (rx**2 + ry**2 + rz**2 - t**2 <= radius * radius) & (t >= 0.0) & (t <= length)

    return inside


def rib_centres(scale: float = 1.0) -> list[tuple[float, float]]:
    """In-plane (x, y) mm of the ribs' axes: 15 along the body wall."""
    rx, ry = 53.5 * scale, 45.5 * scale
    return [(rx * math.cos(a), ry * math.sin(a)) for a in np.radians(np.arange(0, 360, 24) + 12.0)]


def chest(scale: float = 1.0) -> list[tuple[Predicate, float]]:
    """The chest as (predicate, HU), painted in order; sizes in mm (x ``scale``).

    Body ellipse 58 x 50 mm (x, y); lungs centred at x = +-28 mm, semi-axes 23 x 40 x 44 mm
    (x, y, z), cut by the inner wall ellipse 49 x 41 mm; ribs of radius 2.2 mm on the
    ellipse 53.5 x 45.5 mm (between the lungs and the skin); a spine of radius 6 mm.
    """
    s = scale
    objs: list[tuple[Predicate, float]] = [(lambda x, y, z: (x / (58 * s)) ** 2 + (y / (50 * s)) ** 2 <= 1.0, 40.0)]
    for cx in (-28.0 * s, 28.0 * s):
        objs.append(
            (
                lambda x, y, z, cx=cx: (
                    (((x - cx) / (23 * s)) ** 2 + (y / (40 * s)) ** 2 + (z / (44 * s)) ** 2 <= 1.0)
                    & ((x / (49 * s)) ** 2 + (y / (41 * s)) ** 2 <= 1.0)
                ),
                LUNG_HU,
            )
        )
    for cx, cy in rib_centres(s):
        objs.append((lambda x, y, z, cx=cx, cy=cy: (x - cx) ** 2 + (y - cy) ** 2 <= (2.2 * s) ** 2, RIB_HU))
    objs.append((lambda x, y, z: x**2 + (y - 42 * s) ** 2 <= (6 * s) ** 2, RIB_HU))
    return objs


def centred_origin(shape: Sequence[int], spacing: Sequence[float]) -> tuple[float, float, float]:
    """Origin (x, y, z) mm that puts the grid's centre at (0, 0, 0)."""
    return tuple(-0.5 * (n - 1) * s for n, s in zip(shape[::-1], spacing[::-1]))  # type: ignore[return-value]


def render(
    objects: Sequence[tuple[Predicate, float]],
    shape: Sequence[int] = SMALL_SHAPE,
    spacing: Sequence[float] = SMALL_SPACING,
    *,
    air_hu: float = -1000.0,
    noise_sd: float = 20.0,
    seed: int = 0,
    blur_mm: float = 0.7,
    sub: int = 5,
    **identity,
) -> Volume:
    """The objects painted in order on a grid centred on (0, 0, 0), with partial volume and noise."""
    origin = centred_origin(shape, spacing)
    nz, ny, nx = shape
    sz, sy, sx = spacing
    z = origin[2] + ((np.arange(nz * sub) + 0.5) / sub - 0.5) * sz
    y = origin[1] + np.arange(ny) * sy
    x = origin[0] + np.arange(nx) * sx
    x, y, z = x[None, None, :], y[None, :, None], z[:, None, None]
    hu = np.full((nz * sub, ny, nx), air_hu, np.float32)
    for inside, value in objects:
        hu[np.broadcast_to(inside(x, y, z), hu.shape)] = value
    hu = hu.reshape(nz, sub, ny, nx).mean(axis=1)
    hu = ndimage.gaussian_filter(hu, [blur_mm / s for s in spacing])
    if noise_sd:
        hu += np.random.default_rng(seed).normal(0.0, noise_sd, hu.shape).astype(np.float32)
    return Volume(hu, spacing=tuple(spacing), origin=origin, **identity)


def inside_mask(volume: Volume, inside: Predicate) -> np.ndarray:
    """bool (z, y, x): the voxels whose centre satisfies ``inside``."""
    idx = np.indices(volume.shape).reshape(3, -1).T
    p = volume.index_to_physical(idx)
    return inside(p[:, 0], p[:, 1], p[:, 2]).reshape(volume.shape)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def ball_mm3(radius: float) -> float:
    return 4.0 / 3.0 * math.pi * radius**3


def mask_mm3(mask: np.ndarray, volume: Volume) -> float:
    return float(np.count_nonzero(mask)) * volume.voxel_volume_mm3


def seed_at(volume: Volume, point_xyz: Sequence[float]) -> np.ndarray:
    """A physical point (x, y, z) mm as continuous indices (z, y, x), the seed of segment_lesion."""
    return volume.physical_to_index(np.asarray(point_xyz, float))


DICE_TOLERANCE = 0.02  # a result may fall this far below its measured Dice
VOLUME_TOLERANCE = 0.05  # relative: a result's volume ratio may move this far from its measured one


def assert_pinned(
    mask: np.ndarray,
    truth: np.ndarray,
    volume: Volume,
    dice_measured: float,
    volume_ratio: float,
    reference_mm3: float | None = None,
) -> None:
    """Dice >= ``dice_measured`` - 0.02 and the volume within 5 % of ``volume_ratio`` x the reference.

    Args:
        mask, truth: bool (z, y, x) on ``volume``'s grid.
        volume: the CT (for the voxel volume).
        dice_measured: the Dice measured when the test was pinned.
        volume_ratio: the mask's volume / the reference volume measured then.
        reference_mm3: the reference volume (mm^3): the analytic 4/3 pi r^3 of a phantom;
            None: the truth's voxels.
    """
    d = dice(mask, truth)
    reference = mask_mm3(truth, volume) if reference_mm3 is None else reference_mm3
    ratio = mask_mm3(mask, volume) / reference
    assert d >= dice_measured - DICE_TOLERANCE, f"Dice {d:.4f}, measured {dice_measured:.4f} when pinned"
    assert ratio == pytest.approx(volume_ratio, rel=VOLUME_TOLERANCE), (
        f"volume {ratio:.4f} x the reference, measured {volume_ratio:.4f} x when pinned"
    )


# ----------------------------------------------------------------------------- solid balls


@pytest.fixture(scope="module")
def free_ball():
    vol = render(chest() + [(ball(FREE, R), LESION_HU)])
    return vol, inside_mask(vol, ball(FREE, R))


def test_solid_ball_free_in_the_lung(free_ball):
    vol, truth = free_ball
    res = segment_lesion(vol, seed_at(vol, FREE))
    assert res.mask.shape == vol.shape and res.mask.dtype == bool
    assert res.kind == "solid"
    assert_pinned(res.mask, truth, vol, 0.9935, 0.9873, ball_mm3(R))  # measured: Dice 0.9935, 0.9873 x 4/3 pi r^3
    # the iso-level lies between the lung and the lesion
    assert LUNG_HU < res.threshold_hu < LESION_HU
    assert res.mask[tuple(np.rint(res.core_zyx).astype(int))]


def test_clicks_anywhere_inside_give_the_same_volume(free_ball):
    vol, _ = free_ball
    rng = np.random.default_rng(1)
    # uniform points in the ball of radius R - 3 (each click >= 3 mm inside the lesion)
    d = rng.normal(size=(6, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    clicks = np.asarray(FREE) + d * (R - 3.0) * rng.uniform(0.0, 1.0, (6, 1)) ** (1.0 / 3.0)
    vols = [mask_mm3(segment_lesion(vol, seed_at(vol, c)).mask, vol) for c in clicks]
    # measured: CV 0 (every click is re-seeded at the same core)
    assert np.std(vols) / np.mean(vols) <= 0.01, vols


@pytest.mark.parametrize(
    "air",
    [
        pytest.param("clipped", id="air-1024HU"),
        pytest.param("noisy", id="air-1000HU"),  # room air with noise is not lung (smoothed lung mask)
    ],
)
def test_juxtapleural_ball_does_not_leak_into_the_chest_wall(air):
    """The ball touches the lateral chest wall (40 HU, like the lesion); the body ends 1.5 mm
    inside the scan's x border, so only a thin strip of room air lies beyond the skin.

    History (issue #23): Dice 0.987, 0.98 x the ball at fed3add (-1024 HU air; noisy -1000 HU air
    leaked, 1.32 x); 7cd0215 smoothed the lung mask so that noisy room air is not lung, but the
    smoothed skin (body to air passes through lung HU) then counted as lung and the per-slice
    lung hull took the chest wall up to the ribs: Dice 0.905, 1.10 x (noisy air 0.853, 1.22 x).
    Fixed: lung is below -400 HU on the unsmoothed image and not within ``skin_band_mm`` of
    room air (both airs now Dice 0.985, 0.977 x).
    """
    air_hu = -1024.0 if air == "clipped" else -1000.0
    vol = render(chest() + [(ball(JUXTA, R), LESION_HU)], air_hu=air_hu)
    truth = inside_mask(vol, ball(JUXTA, R))
    res = segment_lesion(vol, seed_at(vol, JUXTA))
    assert_pinned(res.mask, truth, vol, 0.9847, 0.9768, ball_mm3(R))  # measured (both airs): Dice 0.9847, 0.9768 x


def test_attached_vessel_is_cut():
    direction = np.array([0.2, 0.6, 0.77])
    direction /= np.linalg.norm(direction)
    end = np.asarray(FREE) + (R + 30.0) * direction  # 30 mm of vessel outside the ball, ending in the lung
    vol = render(chest() + [(ball(FREE, R), LESION_HU), (cylinder(FREE, end, 2.0), LESION_HU)])
    truth = inside_mask(vol, ball(FREE, R))
    res = segment_lesion(vol, seed_at(vol, FREE))
    # the vessel alone adds 377 mm^3 (18 % of the ball)
    assert_pinned(res.mask, truth, vol, 0.9906, 0.9955, ball_mm3(R))  # measured: Dice 0.9906, 0.9955 x the ball
    vessel_outside = inside_mask(vol, cylinder(FREE, end, 2.0)) & ~inside_mask(vol, ball(FREE, R + 4.0))
    assert not (res.mask & vessel_outside).any()


def test_ground_glass_ball_with_a_vessel_through_it():
    # a 1 mm-radius vessel crossing the lung, 2.5 mm from the nodule's centre
    p0 = np.asarray(FREE) + np.array([-10.0 + 2.5, -20.0, -12.0])
    p1 = np.asarray(FREE) + np.array([10.0 + 2.5, 20.0, 12.0])
    vol = render(chest() + [(ball(FREE, R), GGO_HU), (cylinder(p0, p1, 1.0), LESION_HU)])
    truth = inside_mask(vol, ball(FREE, R))
    res = segment_lesion(vol, seed_at(vol, FREE))
    assert res.kind == "ground-glass"
    assert_pinned(res.mask, truth, vol, 0.9633, 0.9407, ball_mm3(R))  # measured: Dice 0.9633, 0.9407 x the ball
    assert LUNG_HU < res.threshold_hu < GGO_HU


# ----------------------------------------------------------------------------- part-solid

R_CORE, R_GGO = 4.0, 9.0


@pytest.fixture(scope="module")
def part_solid():
    vol = render(chest() + [(ball(FREE, R_GGO), GGO_HU), (ball(FREE, R_CORE), LESION_HU)])
    return vol, inside_mask(vol, ball(FREE, R_GGO)), segment_lesion(vol, seed_at(vol, FREE))


def test_part_solid_mask_covers_most_of_the_ground_glass(part_solid):
    vol, truth, res = part_solid
    # the ground glass is kept at its own iso-level when brought back to the input grid
    assert mask_mm3(res.mask, vol) >= 0.60 * ball_mm3(R_GGO)
    assert res.mask[inside_mask(vol, ball(FREE, R_CORE))].all()


def test_part_solid_mask_is_the_whole_lesion(part_solid):
    vol, truth, res = part_solid
    assert_pinned(res.mask, truth, vol, 0.9838, 0.9882, ball_mm3(R_GGO))  # measured: Dice 0.9838, 0.9882 x


# ----------------------------------------------------------------------------- sizes


def test_big_mass_is_not_cut():
    shape, spacing = (50, 180, 200), (2.5, 1.5, 1.5)  # 125 x 270 x 300 mm
    centre, radius = (-70.0, 0.0, 0.0), 45.0  # in the right lung of the chest scaled x 2.5
    vol = render(chest(2.5) + [(ball(centre, radius), LESION_HU)], shape, spacing, sub=3)
    truth = inside_mask(vol, ball(centre, radius))
    click = np.asarray(centre) + np.array([20.0, 10.0, -10.0])  # off-centre: the window has to grow
    res = segment_lesion(vol, seed_at(vol, click))
    # 4/3 pi r^3 = 382 cm^3
    assert_pinned(res.mask, truth, vol, 0.9988, 0.9980, ball_mm3(radius))  # measured: Dice 0.9988, 0.9980 x
    assert not any("may be cut" in n for n in res.notes), res.notes


@pytest.fixture(scope="module")
def small_nodule():
    radius = 2.25  # a 4.5 mm nodule on 1 mm voxels
    vol = render(chest() + [(ball(FREE, radius), LESION_HU)], (60, 120, 120), (1.0, 1.0, 1.0))
    truth = inside_mask(vol, ball(FREE, radius))
    return vol, truth, radius, segment_lesion(vol, seed_at(vol, FREE))


def test_small_nodule_is_found(small_nodule):
    vol, truth, _, res = small_nodule
    assert res.mask[tuple(np.rint(seed_at(vol, FREE)).astype(int))]
    assert truth[res.mask].sum() >= 0.98 * truth.sum()  # measured: all of it


def test_small_nodule_volume(small_nodule):
    vol, truth, radius, res = small_nodule
    assert res.kind == "solid"
    # measured: Dice 1.0 (every truth voxel), 1.174 x 4/3 pi r^3 (the truth's voxels are 1.17 x it too)
    assert_pinned(res.mask, truth, vol, 1.0, 1.1737, ball_mm3(radius))


# ----------------------------------------------------------------------------- bad seeds


@pytest.fixture(scope="module")
def plain_chest():
    return render(chest() + [(ball(FREE, R), LESION_HU)])


def _bad_seeds(vol: Volume) -> dict[str, np.ndarray]:
    """(x, y, z) mm: outside the image, in the lung's air, in a rib."""
    rib_x, rib_y = rib_centres()[0]
    return {
        "outside": np.array([0.0, 0.0, 200.0]),
        "air": np.array([-28.0, 20.0, 20.0]),  # lung, 12 mm from the ball
        "bone": np.array([rib_x, rib_y, 0.0]),
    }


@pytest.mark.parametrize("where", ["outside", "air", "bone"])
def test_bad_seed_is_refused_naming_the_point(plain_chest, where):
    vol = plain_chest
    point = _bad_seeds(vol)[where]
    with pytest.raises(SeedError) as err:
        segment_lesion(vol, seed_at(vol, point))
    msg = str(err.value)
    assert "mm" in msg and "voxel" in msg, msg
    assert "(x, y, z)" in msg and "voxel (x, y, z)" in msg and "(z, y, x)" not in msg, msg
    assert {"outside": "outside", "air": "air", "bone": "bone"}[where] in msg, msg
    with pytest.raises(SeedError, match=r"(?s)mm.*voxel"):
        segment(vol, None, roi=Seed(tuple(point), units="mm"), method="auto")
    with pytest.raises(SeedError, match=r"(?s)mm.*voxel"):
        segment(vol, None, roi=Seed(tuple(point), units="mm"), method="auto")


def test_seed_in_the_lung_next_to_a_lesion_names_the_point_in_mm(plain_chest):
    vol = plain_chest
    point = _bad_seeds(vol)["air"]
    with pytest.raises(SeedError) as err:
        segment_lesion(vol, seed_at(vol, point))
    # the point is named in mm as given (rounded to 0.1 mm) and as the voxel it falls in, both x y z
    voxel = np.rint(seed_at(vol, point)).astype(int).tolist()
    assert f"voxel (x, y, z) = {voxel[::-1]}" in str(err.value)
    assert str(np.round(vol.index_to_physical(voxel), 1).tolist()) in str(err.value)


# ----------------------------------------------------------------------------- box ROI


def test_box_around_a_juxtapleural_ball_takes_the_ball_not_the_wall():
    vol = render(chest() + [(ball(JUXTA, R), LESION_HU)])
    truth = inside_mask(vol, ball(JUXTA, R))
    in_body = inside_mask(vol, lambda x, y, z: (x / 58.0) ** 2 + (y / 50.0) ** 2 <= 1.0)
    wall = in_body & inside_mask(vol, lambda x, y, z: (x / 49.0) ** 2 + (y / 41.0) ** 2 > 1.0) & ~truth
    c = np.rint(seed_at(vol, JUXTA)).astype(int)
    box = Box(z=(c[0] - 5, c[0] + 6), y=(c[1] - 12, c[1] + 13), x=(c[2] - 12, c[2] + 16), units="voxel")
    inside = np.zeros(vol.shape, bool)
    inside[c[0] - 5 : c[0] + 6, c[1] - 12 : c[1] + 13, c[2] - 12 : c[2] + 16] = True
    assert inside[wall].sum() > inside[truth].sum()  # the box holds more chest wall than lesion
    seg = segment(vol, None, roi=box, method="auto")
    assert seg.method == "image" and not seg.empty
    assert not (seg.mask & ~inside).any()
    # the mask is the ball, clipped to the box, not the chest wall inside the box
    # measured: Dice 0.9847 (0.853 before the skin-band fix: the chest wall inside the box)
    assert dice(seg.mask, truth) >= 0.9847 - DICE_TOLERANCE
    assert seg.voxel_volume_cm3 == pytest.approx(np.count_nonzero(seg.mask) * 2.5e-3)


# ----------------------------------------------------------------------------- synthetic generator scans

KIND_MEASURED = {"solid": (0.8864, 0.8005), "ground-glass": (0.9333, 1.0663), "part-solid": (0.2806, 0.1632)}
"""(Dice, volume / the truth's) measured on the first patient of each kind of iter_patients(seed=0):
SYN0001 (solid), SYN0003 (ground-glass), SYN0005 (part-solid). The part-solid one is pinned at its
(poor) measured value, a known weakness: its faint ground-glass halo (-650 HU) is not joined to
the solid core, so the mask is the core, 0.16 x the truth."""


@pytest.fixture(scope="module")
def one_patient_per_kind():
    from mkunet.synth.cohort import iter_patients

    found = {}
    for p in iter_patients(12, seed=0, shape=(64, 192, 192), timepoints=(2, 2), reposition_mm=0, diameter_mm=(8, 50)):
        found.setdefault(p.tumour.kind, p)
        if len(found) == 3:
            break
    assert set(found) == set(KIND_MEASURED), sorted(found)
    return found


@pytest.mark.parametrize("kind", sorted(KIND_MEASURED))
def test_synthetic_baseline_dice_per_kind(one_patient_per_kind, kind):
    from mkunet.synth.writers import baseline_lesion

    patient = one_patient_per_kind[kind]
    scan = patient.scans[0]
    click = baseline_lesion(patient)
    seg = segment(scan.volume, None, roi=Seed((click["x_mm"], click["y_mm"], click["z_mm"])), method="auto")
    assert_pinned(seg.mask, np.asarray(scan.mask, bool), scan.volume, *KIND_MEASURED[kind])


# ----------------------------------------------------------------------------- real CT


@pytest.fixture(scope="module")
def data_dir(shared_data: Path) -> Path:
    """The real CT folder (conftest's ``shared_data``: honours MKUNET_SHARED_DATA, skips without it)."""
    return shared_data


def _deepest_voxel(mask: np.ndarray, volume: Volume) -> np.ndarray:
    """The truth voxel farthest (in mm) from the truth's surface: the seed a reader would click."""
    depth = ndimage.distance_transform_edt(mask, sampling=volume.spacing)
    return np.asarray(np.unravel_index(int(np.argmax(depth)), mask.shape), dtype=np.float64)


REAL_CASES = {
    # name: (image, label, (Dice, volume / the label's)) measured with the deepest-voxel seed
    # (lung1 7-10 s and lung2 13-16 s per click on 2 shared cores: slow; ibsi 3-4 s). Before the
    # skin-band fix of the lung hull: 0.914 / 1.16, 0.898 / 0.94, 0.782 / 1.08 (IBSI took some wall).
    "lung1": ("pyradiomics/lung1_image.nrrd", "pyradiomics/lung1_label.nrrd", (0.9137, 1.1601)),
    "lung2": ("pyradiomics/lung2_image.nrrd", "pyradiomics/lung2_label.nrrd", (0.9001, 0.9470)),
    "ibsi": ("ibsi/ct_phantom/image.nii.gz", "ibsi/ct_phantom/mask.nii.gz", (0.8111, 0.7789)),
}


def _read_case(data_dir: Path, name: str) -> tuple[Volume, np.ndarray]:
    from mkunet.io import read_mask, read_volume

    image, label, _ = REAL_CASES[name]
    if not (data_dir / image).is_file():
        pytest.skip(f"{data_dir / image} not found")
    vol = read_volume(data_dir / image)
    return vol, read_mask(data_dir / label, vol)


@pytest.mark.parametrize(
    "name", [pytest.param("lung1", marks=pytest.mark.slow), pytest.param("lung2", marks=pytest.mark.slow), "ibsi"]
)
def test_real_ct_dice_from_the_deepest_click(data_dir, name):
    vol, truth = _read_case(data_dir, name)
    res = segment_lesion(vol, _deepest_voxel(truth, vol))
    assert_pinned(res.mask, truth, vol, *REAL_CASES[name][2])


def test_lidc_0314_nodule_volume(data_dir):
    from mkunet.io import read_volume

    path = data_dir / "realct" / "lidc0314.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    vol = read_volume(path)
    centre = (-57.44, 131.23, -520.36)  # the LUNA16 nodule centre (x, y, z) mm, diameter 15.49 mm
    seg = segment(vol, None, roi=Seed(centre), method="auto")
    # reference: voxels > -400 HU connected to the centre 2.03-2.19 cm^3; the 15.49 mm sphere 1.94 cm^3
    assert seg.voxel_volume_cm3 == pytest.approx(1.9495, rel=VOLUME_TOLERANCE)  # measured: 1.9495 cm^3
    assert seg.mask[tuple(np.rint(vol.physical_to_index(centre)).astype(int))]


def test_hilar_lesion_of_the_4dct_phase_does_not_take_the_mediastinum(data_dir):
    """The 4D-CT phase's unannotated 2-3 cm^3 lesion lies against the hilum: the model must not
    return the mediastinum (known weakness: today it returns nothing, with a note)."""
    from mkunet.io import read_volume

    path = data_dir / "realct" / "chest4dct_phase00.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    vol = read_volume(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = segment(vol, None, roi=Seed(tuple(vol.index_to_physical((63.0, 244.0, 201.0)))), method="auto")
    assert seg.voxel_volume_cm3 <= 6.0  # the README's lesion is 2-3 cm^3; the mediastinum is far more
    if seg.empty:
        assert any("no" in n and "found" in n for n in seg.notes), seg.notes


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lung1", "lung2"])
def test_real_ct_click_stability(data_dir, name):
    vol, truth = _read_case(data_dir, name)
    depth = ndimage.distance_transform_edt(truth, sampling=vol.spacing)
    candidates = np.argwhere(depth >= 3.0)
    clicks = candidates[np.random.default_rng(0).choice(len(candidates), 6, replace=False)]
    vols = [mask_mm3(segment_lesion(vol, c.astype(float)).mask, vol) for c in clicks]
    assert np.std(vols) / np.mean(vols) <= 0.05, vols
