"""Tumour insertion into real(istic) CT: masks, HU, no seam, ignore regions, growth series, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mkunet.segmentation.lung import filled_lungs
from mkunet.synth import make_case
from mkunet.synth.growth import diameter_to_volume
from mkunet.synth.insert import (
    IGNORE_LABEL,
    InsertedLesion,
    estimate_scanner,
    growth_series,
    insert_tumours,
)
from mkunet.synth.scanner import ScannerParams


@pytest.fixture(scope="module")
def background():
    """A small synthetic chest (its own tumour plays the part of an existing real tumour)."""
    volume, tumour = make_case(3, shape=(40, 96, 96), spacing=(2.5, 3.0, 3.0), diameter_mm=12.0)
    return volume, tumour, filled_lungs(volume.array, volume.spacing)


def _boundary_gradient(array: np.ndarray, mask: np.ndarray, spacing) -> float:
    """Mean gradient magnitude (HU/mm) over the mask's boundary voxels (inside, touching outside)."""
    grad = np.sqrt(sum(ndimage.sobel(array, axis=a) ** 2 / (8.0 * s) ** 2 for a, s in enumerate(spacing)))
    edge = mask & ~ndimage.binary_erosion(mask)
    return float(grad[edge].mean())


def test_solid_lesion_mask_and_hu(background):
    volume, tumour, lungs = background
    lesions: list[InsertedLesion] = []
    out, labels = insert_tumours(
        volume,
        lungs,
        np.random.default_rng(0),
        lesion_types=["solid"],
        placements=["free"],
        diameter_mm=(16.0, 16.0),
        ignore=tumour,
        lesions=lesions,
    )
    mask = labels == 1
    assert out.shape == volume.shape and out.spacing == volume.spacing and labels.dtype == np.uint8
    # the mask is the occupancy >= 0.5 set of a body of the requested volume (+- partial volume at 3 mm)
    vol_mm3 = mask.sum() * volume.voxel_volume_mm3
    assert vol_mm3 == pytest.approx(diameter_to_volume(16.0), rel=0.35)
    assert lesions[0].placement_used == "free" and lungs[tuple(np.rint(lesions[0].centre_zyx).astype(int))]
    # solid tumour HU (+15..+60 with texture and noise) inside, lung before
    core = ndimage.binary_erosion(mask)
    assert -60 < float(np.median(out.array[core])) < 120
    assert float(np.median(volume.array[core])) < -500
    assert not np.array_equal(out.array, volume.array)
    assert np.array_equal(
        volume.array, make_case(3, shape=(40, 96, 96), spacing=(2.5, 3.0, 3.0), diameter_mm=12.0)[0].array
    )


def test_no_seam_and_boundary_gradient_like_a_real_lesion(background):
    volume, tumour, lungs = background
    scanner = estimate_scanner(volume.array, volume.spacing)
    out, labels = insert_tumours(
        volume,
        lungs,
        np.random.default_rng(1),
        lesion_types=["solid"],
        placements=["free"],
        diameter_mm=(14.0, 14.0),
        ignore=tumour,
        scanner=scanner,
    )
    mask = labels == 1
    diff = out.array - volume.array
    # the image changes only near the lesion: within 3 PSF sigmas + a lobulation margin of the mask
    reach = 3.0 * max(scanner.psf_sigma_mm) + 8.0
    dist = ndimage.distance_transform_edt(~mask, sampling=volume.spacing)
    assert np.abs(diff[dist > reach]).max() == 0.0
    # no step at the edge of the changed region: the change fades out (blurred), its gradient just
    # outside the mask is well below the lesion's own edge gradient
    ring = (dist > 4.0) & (dist <= reach)
    grad_diff = np.sqrt(sum(ndimage.sobel(diff, axis=a) ** 2 / (8.0 * s) ** 2 for a, s in enumerate(volume.spacing)))
    assert grad_diff[ring].mean() < 0.5 * _boundary_gradient(out.array, mask, volume.spacing)
    # the inserted lesion's edge is as sharp as the generator's scanner-blurred tumour in the same scan
    ratio = _boundary_gradient(out.array, mask, volume.spacing) / _boundary_gradient(
        volume.array, tumour, volume.spacing
    )
    assert 0.4 < ratio < 2.5


def test_ground_glass_keeps_the_vessels(background):
    volume, tumour, lungs = background
    out, labels = insert_tumours(
        volume,
        lungs,
        np.random.default_rng(2),
        lesion_types=["ground-glass"],
        placements=["vessel"],
        diameter_mm=(20.0, 20.0),
        ignore=tumour,
        scanner=ScannerParams((1.0, 1.0, 1.0), 10.0, 0.0),
    )
    mask = labels == 1
    assert mask.any()
    assert -800 < float(np.median(out.array[mask])) < -300
    # max(parenchyma, ground glass): nothing inside gets darker than before (beyond blur and noise)
    assert np.mean(out.array[mask] >= volume.array[mask] - 40.0) > 0.95
    dense = mask & (volume.array > -300)  # vessel voxels inside the lesion stay dense
    if dense.any():
        assert np.median(out.array[dense]) > -300


def test_ignore_region_is_labelled_and_avoided(background):
    volume, tumour, lungs = background
    ignore = tumour.copy()
    ignore[:, :, :10] = True
    out, labels = insert_tumours(volume, lungs, np.random.default_rng(3), n_tumours=3, ignore=ignore)
    assert np.array_equal(labels == IGNORE_LABEL, ignore)
    mask = labels == 1
    assert mask.any()
    dist = ndimage.distance_transform_edt(~ignore, sampling=volume.spacing)
    assert dist[mask].min() >= 4.0  # lesions keep 5 mm (centres) / about that (surfaces) from the ignore region


@pytest.mark.parametrize("placement", ["pleura", "mediastinum", "fissure", "vessel"])
def test_every_placement_runs(background, placement):
    volume, tumour, lungs = background
    lesions: list[InsertedLesion] = []
    _, labels = insert_tumours(
        volume, lungs, np.random.default_rng(4), placements=[placement], diameter_mm=(10.0, 10.0), lesions=lesions
    )
    assert (labels == 1).any()
    assert lesions[0].placement == placement and lesions[0].placement_used in (placement, "free")
    if lesions[0].placement_used in ("pleura", "mediastinum"):
        depth = ndimage.distance_transform_edt(lungs, sampling=volume.spacing)
        assert depth[tuple(np.rint(lesions[0].centre_zyx).astype(int))] <= 0.9 * 5.0 + 3.0


def test_deterministic(background):
    volume, tumour, lungs = background
    a = insert_tumours(volume, lungs, np.random.default_rng(7), n_tumours=2, ignore=tumour)
    b = insert_tumours(volume, lungs, np.random.default_rng(7), n_tumours=2, ignore=tumour)
    c = insert_tumours(volume, lungs, np.random.default_rng(8), n_tumours=2, ignore=tumour)
    assert np.array_equal(a[0].array, b[0].array) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_bad_arguments(background):
    volume, _, lungs = background
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="'cloud'"):
        insert_tumours(volume, lungs, rng, lesion_types=["cloud"])
    with pytest.raises(ValueError, match="n_tumours"):
        insert_tumours(volume, lungs, rng, n_tumours=0)
    with pytest.raises(ValueError, match="shape"):
        insert_tumours(volume, lungs[:-1], rng)


def test_growth_series_known_lvcr_and_motion(background):
    volume, tumour, lungs = background
    days = [0.0, 90.0, 180.0]
    lvcr = np.log(2.0) / 90.0  # doubling every 90 days
    series = growth_series(
        volume, lungs, np.random.default_rng(5), days, lvcr, lesion_type="solid", diameter_mm=14.0, ignore=tumour
    )
    assert len(series) == 3
    vols = [float((lab == 1).sum()) * volume.voxel_volume_mm3 for _, lab in series]
    assert vols[1] / vols[0] == pytest.approx(2.0, rel=0.3)
    assert vols[2] / vols[0] == pytest.approx(4.0, rel=0.3)
    slope = np.polyfit(days, np.log(vols), 1)[0]
    assert slope == pytest.approx(lvcr, rel=0.2)
    # later timepoints moved (rigidly, a few mm): the ignore region's centroid shifts by <= ~3 mm + rotation
    c0 = np.argwhere(series[0][1] == IGNORE_LABEL).mean(0)
    c1 = np.argwhere(series[1][1] == IGNORE_LABEL).mean(0)
    shift_mm = np.abs((c1 - c0) * np.asarray(volume.spacing))
    assert shift_mm.max() < 3.0 + 6.0
    assert not np.array_equal(series[0][0].array, series[1][0].array)


def test_real_lesion_edge_on_real_ct(shared_data):
    """On lung2, an inserted solid lesion's edge gradient is comparable to the real tumour's (same scan)."""
    from mkunet.io import read_mask, read_volume
    from mkunet.models.bundle import resample_onto
    from mkunet.preprocess import resample

    raw = read_volume(shared_data / "pyradiomics" / "lung2_image.nrrd")
    truth_raw = read_mask(shared_data / "pyradiomics" / "lung2_label.nrrd", raw)
    volume = resample(raw, (2.5, 2.0, 2.0))
    truth = resample_onto(truth_raw.astype(np.float32), raw, volume, "linear") >= 0.5
    ignore = ndimage.distance_transform_edt(~truth, sampling=volume.spacing) <= 10.0
    out, labels = insert_tumours(
        volume, None, np.random.default_rng(11), lesion_types=["solid"], diameter_mm=(25.0, 25.0), ignore=ignore
    )
    mask = labels == 1
    assert mask.any() and not (mask & ignore).any()
    ratio = _boundary_gradient(out.array, mask, volume.spacing) / _boundary_gradient(
        volume.array, truth, volume.spacing
    )
    assert 0.4 < ratio < 2.5
