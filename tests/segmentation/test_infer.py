"""Tests of mkunet.segmentation.infer and the modules it drives (prompts, network, results, tracking): ROI
cropping, component rule, empty input, attention, fixed-point LVCR, options that do not apply refused.

The model is an "oracle": a torch module that thresholds the HU channel (shifted by
the LVCR entry of the clinical vector), so the expected mask is known exactly.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from mkunet.segmentation import results
from mkunet.segmentation.infer import segment, segment_timepoints
from mkunet.segmentation.network import keep_tumour_component
from mkunet.segmentation.prompts import Box, PreviousMask, Seed, body_box
from mkunet.volume import Volume
from tests.bundle_stubs import ClinicalVectorMixin, HUOracle, hu_preprocessor

COLUMNS = ("age", "sex", "smoking", "grade", "stage", "lvcr")


class OracleNet(HUOracle):
    """The HU oracle with this file's default threshold (-300 HU)."""

    def __init__(self, thr_hu: float = -300.0, gain: float = 0.05, lvcr_gain: float = 0.0) -> None:
        super().__init__(thr_hu, gain, lvcr_gain)


class StubEncoder:
    """Minimal ClinicalEncoder: the raw LVCR in column 5, zeros elsewhere."""

    COLUMNS = COLUMNS

    def encode_one(self, mapping, impute=None):
        missing = [c for c in COLUMNS if c != "lvcr" and mapping.get(c) is None]
        if missing and impute != "median":
            raise ValueError(f"missing {missing}")
        lv = mapping.get("lvcr")
        return np.array([0, 0, 0, 0, 0, 0.0 if lv is None else lv], np.float32)


@dataclass
class StubBundle(ClinicalVectorMixin):
    model: Any = field(default_factory=OracleNet)
    preprocessor: Any = hu_preprocessor
    clinical_encoder: Any = None
    target_spacing: tuple = (2.0, 1.0, 1.0)
    patch_size: tuple = (16, 32, 32)
    threshold: float = 0.5
    default_clinical: Any = None


def ball(shape, spacing, centre_zyx, radius_mm):
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip((zz, yy, xx), centre_zyx, spacing))
    return d2 <= radius_mm**2


SHAPE, SPACING = (20, 64, 64), (2.0, 1.0, 1.0)
BIG_C, SMALL_C = (10, 20, 20), (10, 44, 46)


@pytest.fixture()
def two_blobs() -> tuple[Volume, np.ndarray, np.ndarray]:
    big = ball(SHAPE, SPACING, BIG_C, 10.0)
    small = ball(SHAPE, SPACING, SMALL_C, 5.0)
    arr = np.full(SHAPE, -850.0, np.float32)
    arr[big | small] = 40.0
    vol = Volume(arr, spacing=SPACING, origin=(-30.0, -40.0, 100.0), series_uid=None)
    return vol, big, small


def test_whole_volume_keeps_largest(two_blobs):
    vol, big, small = two_blobs
    seg = segment(vol, StubBundle(), method="network")
    assert seg.mask.shape == vol.shape and seg.mask.dtype == bool
    assert seg.probability.dtype == np.float32 and seg.probability.shape == vol.shape
    np.testing.assert_array_equal(seg.mask, big)
    assert not seg.empty and seg.roi == "whole volume"
    assert seg.voxel_volume_cm3 == pytest.approx(big.sum() * 2.0 / 1000.0)


def chest_with_wall_blob() -> tuple[Volume, np.ndarray, np.ndarray]:
    """Air, a soft-tissue trunk with one lung; a small tumour in the lung, a larger soft blob far out in the wall."""
    shape, spacing = (20, 80, 80), (2.0, 1.5, 1.5)
    arr = np.full(shape, -1000.0, np.float32)
    arr[:, 8:72, 8:72] = 40.0  # trunk (soft tissue, as the oracle sees it: tumour-like)
    lung = np.zeros(shape, bool)
    lung[2:18, 20:60, 20:60] = True
    arr[lung] = -850.0
    tumour = ball(shape, spacing, (10, 40, 40), 6.0)
    arr[tumour] = 40.0
    return Volume(arr, spacing=spacing), tumour, lung


def test_whole_volume_prefers_the_component_in_the_lung():
    """The oracle fires on the whole trunk wall (bigger) and the tumour; the lung prior picks the tumour."""
    vol, tumour, _ = chest_with_wall_blob()
    seg = segment(vol, StubBundle(), method="network")
    assert 2 * (seg.mask & tumour).sum() / (seg.mask.sum() + tumour.sum()) > 0.95  # resampling blurs the edge
    plain = segment(vol, StubBundle(), lung_prior=False, method="network")  # largest probability mass: the wall
    assert not (plain.mask & tumour).any() and plain.mask.sum() > tumour.sum()


def test_keep_component_scores_probability_mass_in_the_region():
    binary = np.zeros((10, 30, 30), bool)
    binary[2:8, 2:12, 2:12] = True  # 600 voxels
    binary[2:8, 18:24, 18:24] = True  # 216 voxels
    probability = np.where(binary, 0.6, 0.0)
    probability[2:8, 18:24, 18:24] = 1.0  # small but confident: mass 216 < 360
    region = np.zeros_like(binary)
    region[:, 15:, 15:] = True
    assert keep_tumour_component(binary, (1, 1, 1), probability=probability)[3, 5, 5]  # largest mass
    assert keep_tumour_component(binary, (1, 1, 1), probability=probability, region=region)[3, 20, 20]
    # a region that touches no component is ignored
    far = np.zeros_like(binary)
    far[0, 0, 29] = True
    assert keep_tumour_component(binary, (1, 1, 1), probability=probability, region=far)[3, 5, 5]
    # voxel counts without a probability map
    assert keep_tumour_component(binary, (1, 1, 1), region=region)[3, 20, 20]


def test_body_box_skips_air_but_not_the_patient():
    arr = np.full((6, 60, 80), -1000.0, np.float32)
    arr[:, 10:41, 20:51] = 40.0  # body
    arr[:, 55:57, 5:35] = 100.0  # small object below (60 px < 10 % of the body's 961): dropped
    arr[:, 0:2, 70:80] = 100.0  # and another one
    vol = Volume(arr, spacing=(3.0, 1.0, 2.0))
    assert body_box(vol, margin_mm=4.0) == ((0, 6), (6, 45), (18, 53))
    empty = Volume(np.full((3, 8, 8), -1000.0, np.float32), spacing=(1, 1, 1))
    assert body_box(empty) == ((0, 3), (0, 8), (0, 8))
    # segmenting without ROI keeps the probability at 0 outside the body box
    arr[2:4, 20:25, 30:35] = 40.0
    seg = segment(vol, StubBundle(target_spacing=(3.0, 1.0, 2.0)), method="network")
    assert seg.roi_box == ((0, 6), (0, 51), (15, 56)) and seg.roi == "whole volume"
    assert seg.probability[:, 55:57].max() == 0.0


def test_keep_all_and_min_volume(two_blobs):
    vol, big, small = two_blobs
    seg = segment(vol, StubBundle(), keep="all", method="network")
    np.testing.assert_array_equal(seg.mask, big | small)
    small_cm3 = small.sum() * 2.0 / 1000.0
    seg = segment(vol, StubBundle(), keep="all", min_component_cm3=small_cm3 + 1e-6, method="network")
    np.testing.assert_array_equal(seg.mask, big)


@pytest.mark.parametrize("units", ["mm", "voxel"])
def test_seed_selects_its_component_and_crops(two_blobs, units):
    vol, big, small = two_blobs
    zyx = np.array(SMALL_C, float)
    point = vol.index_to_physical(zyx) if units == "mm" else zyx[::-1]
    roi = Seed(tuple(point), units=units, size_mm=30.0)
    seg = segment(vol, StubBundle(), method="network", roi=roi)
    np.testing.assert_array_equal(seg.mask, small)
    # crop geometry: a 30 mm cube around the seed -> 15 slices at 2 mm, 31 rows/cols at 1 mm (clipped)
    (z0, z1), (y0, y1), (x0, x1) = seg.roi_box
    assert (z0, z1) == (max(0, 10 - 8), min(20, 10 + 8 + 1))
    assert (y0, y1) == (44 - 15, min(64, 44 + 15 + 1))
    outside = np.ones(vol.shape, bool)
    outside[z0:z1, y0:y1, x0:x1] = False
    assert np.all(seg.probability[outside] == 0)
    inside = seg.probability[z0:z1, y0:y1, x0:x1]
    assert inside.min() < 0.01 and inside.max() > 0.99


def test_seed_cube_grows_until_the_tumour_fits(two_blobs):
    vol, big, small = two_blobs
    seed = Seed(tuple(vol.index_to_physical(np.array(BIG_C, float))), size_mm=12.0)
    seg = segment(vol, StubBundle(), method="network", roi=seed)
    np.testing.assert_array_equal(seg.mask, big)  # a 12 mm cube would cut it
    assert not seg.touches_roi_edge
    assert not any("reaches the edge" in n for n in seg.notes)


def test_seed_in_air_is_an_error_naming_the_point(two_blobs):
    from mkunet.segmentation.lesion import SeedError

    vol, big, small = two_blobs
    # 8 mm from the small ball's centre (radius 5): in air
    seed_xyz = vol.index_to_physical(np.array([10, 44, 54.0]))
    for method in ("network", "auto"):
        with pytest.raises(SeedError, match=r"in air.*mm.*voxel \(x, y, z\) = \[54, 44, 10\]"):
            segment(vol, StubBundle(), method=method, roi=Seed(tuple(seed_xyz)))


def test_seed_outside_volume_is_an_error(two_blobs):
    vol, _, _ = two_blobs
    with pytest.raises(ValueError, match=r"outside the image.*10000.0, 0.0, 0.0\] mm.*voxel \(x, y, z\)"):
        segment(vol, StubBundle(), roi=Seed((1e4, 0.0, 0.0)))


def test_box_voxel_and_mm(two_blobs):
    vol, big, small = two_blobs
    box = Box((0, 20), (30, 60), (30, 62))
    seg = segment(vol, StubBundle(), method="network", roi=box)
    np.testing.assert_array_equal(seg.mask, small)
    assert seg.roi_box == ((0, 20), (30, 60), (30, 62))
    # the same box in physical mm (origin (x, y, z) = (-30, -40, 100), identity direction)
    mm = Box((100.0, 100.0 + 2 * 19), (-40.0 + 30, -40.0 + 59), (-30.0 + 30, -30.0 + 61), units="mm")
    seg_mm = segment(vol, StubBundle(), method="network", roi=mm)
    assert seg_mm.roi_box == seg.roi_box
    np.testing.assert_array_equal(seg_mm.mask, small)
    with pytest.raises(ValueError, match="does not overlap"):
        segment(vol, StubBundle(), method="network", roi=Box((30, 40), (0, 5), (0, 5)))


def test_previous_mask_on_other_grid(two_blobs):
    vol, big, small = two_blobs
    # previous scan: coarser grid, shifted origin; its mask = the small ball drawn there
    prev_spacing = (3.0, 1.5, 1.5)
    prev_origin = (-32.0, -41.0, 98.0)
    prev_shape = (16, 46, 46)
    centre_phys = vol.index_to_physical(np.array(SMALL_C, float))
    ref = Volume(np.zeros(prev_shape, np.float32), spacing=prev_spacing, origin=prev_origin)
    prev_mask = ball(prev_shape, prev_spacing, ref.physical_to_index(centre_phys), 4.0)
    assert prev_mask.any()
    seg = segment(vol, StubBundle(), method="network", roi=PreviousMask(prev_mask, ref, margin_mm=6.0))
    np.testing.assert_array_equal(seg.mask, small)
    (z0, z1), (y0, y1), (x0, x1) = seg.roi_box
    # the crop is the previous mask's box (radius 4 mm around (z, y, x) = (10, 44, 46)) + 6 mm
    assert y0 == pytest.approx(44 - 10, abs=2) and y1 == pytest.approx(44 + 11, abs=2)
    assert z0 == pytest.approx(10 - 5, abs=1) and z1 == pytest.approx(10 + 6, abs=1)


def test_previous_mask_picks_overlapping_component():
    binary = np.zeros((10, 30, 30), bool)
    binary[2:8, 2:12, 2:12] = True  # large
    binary[3:6, 20:25, 20:25] = True  # small
    prev = np.zeros_like(binary)
    prev[4, 22, 22] = True
    out = keep_tumour_component(binary, (1, 1, 1), previous=prev)
    assert out.sum() == 3 * 5 * 5 and out[4, 22, 22]
    prev2 = np.zeros_like(binary)
    prev2[4, 27:29, 27:29] = True  # touches nothing: nearest to its centroid is the small one
    out2 = keep_tumour_component(binary, (1, 1, 1), previous=prev2)
    assert out2.sum() == 75
    # seed nearest in mm, not in voxels: anisotropic spacing flips the answer
    b = np.zeros((20, 1, 20), bool)
    b[0, 0, 0] = True  # component A at (z=0, x=0)
    b[0, 0, 19] = True  # component B at (z=0, x=19)
    seed = (6.0, 0.0, 10.0)
    near_a = keep_tumour_component(b, (1.0, 1.0, 1.0), seed_zyx=seed)
    assert near_a[0, 0, 19]  # |dx|=9 < sqrt(36+100)
    near_b_iso = keep_tumour_component(b, (0.1, 1.0, 1.0), seed_zyx=(0.0, 0.0, 9.0))
    assert near_b_iso[0, 0, 0]
    assert not keep_tumour_component(np.zeros((3, 3, 3), bool), (1, 1, 1)).any()
    with pytest.raises(ValueError, match="keep"):
        keep_tumour_component(b, (1, 1, 1), keep="biggest")


def test_resampling_to_model_spacing(two_blobs):
    vol, big, small = two_blobs
    seg = segment(vol, StubBundle(target_spacing=(3.0, 1.5, 1.5)), method="network")
    assert seg.mask.shape == vol.shape
    dice = 2 * (seg.mask & big).sum() / (seg.mask.sum() + big.sum())
    assert dice > 0.9


def test_empty_input_warns_and_writes(tmp_path):
    vol = Volume(np.full((12, 40, 40), -1000.0, np.float32), spacing=(2.5, 0.8, 0.8))
    with pytest.warns(UserWarning, match="No tumour found"):
        seg = segment(vol, StubBundle(), method="network")
    assert seg.empty and not seg.mask.any() and seg.voxel_volume_cm3 == 0.0
    assert any("no tumour found" in n for n in seg.notes)
    written = results.save_segmentation(seg, tmp_path, ("nifti",))
    from mkunet.io import read_mask

    assert not read_mask(written["mask"], vol).any()
    with pytest.raises(ValueError, match="DICOM input"):
        results.save_segmentation(seg, tmp_path, ("seg",))
    with pytest.raises(ValueError, match="Unknown output format"):
        results.check_formats(["png"], vol)


def test_attention_maps_on_input_grid(two_blobs, tmp_path):
    vol, big, small = two_blobs
    seg = segment(
        vol,
        StubBundle(target_spacing=(2.0, 2.0, 2.0)),
        method="network",
        roi=Seed(tuple(vol.index_to_physical(np.array(BIG_C, float))), size_mm=40.0),
        return_attention=True,
    )
    assert seg.attention is not None and len(seg.attention) == 2
    for amap in seg.attention:
        assert amap.shape == vol.shape and amap.dtype == np.float32
        # attention = probability here (full res) or its 2x average: high in the big ball, 0 away from it
        assert amap[BIG_C] > 0.9 and amap[0, 63, 0] == 0.0
    np.testing.assert_allclose(seg.attention[0], seg.probability, atol=1e-5)
    written = results.save_segmentation(seg, tmp_path, ("nifti",), attention=True)
    assert {"mask", "probability", "attention_0", "attention_1"} <= set(written)

    # a model without gates: a note, no crash
    class NoGates(OracleNet):
        def forward(self, image, clinical=None, return_attention=False):
            return (
                super().forward(image, clinical, False)
                if not return_attention
                else (super().forward(image, clinical, False), [])
            )

    seg2 = segment(vol, StubBundle(model=NoGates()), return_attention=True, method="network")
    assert seg2.attention is None and any("no attention" in n for n in seg2.notes)


def test_clinical_handling(two_blobs):
    vol, _, _ = two_blobs
    bundle = StubBundle(clinical_encoder=StubEncoder(), default_clinical=np.zeros(6, np.float32))
    seg = segment(vol, bundle, method="network")
    assert seg.lvcr_used is None and any("training medians" in n for n in seg.notes)
    seg = segment(vol, bundle, clinical={"age": 60, "lvcr": 0.01}, method="network")
    assert seg.lvcr_used == 0.01 and any("imputed" in n and "sex" in n for n in seg.notes)
    full = {"age": 60, "sex": "M", "smoking": "never", "grade": 2, "stage": "II", "lvcr": 0.02}
    seg = segment(vol, bundle, clinical=full, method="network")
    assert seg.lvcr_used == 0.02 and not any("imputed" in n for n in seg.notes)
    with pytest.raises(ValueError, match="Unknown clinical"):
        segment(vol, bundle, clinical={"weight": 80}, method="network")
    with pytest.raises(ValueError, match="encoded vector"):
        segment(vol, bundle, clinical=[1.0, 2.0], method="network")
    seg = segment(vol, StubBundle(), clinical={"age": 60}, method="network")  # model without clinical input
    assert any("ignored" in n for n in seg.notes)


def _growth_series(peaks=(300.0, 600.0)):
    """Two scans of a cone-shaped blob (HU falls 40 HU/mm from its peak): the segmented
    radius, hence the volume, depends on the HU threshold, which the LVCR shifts."""
    shape, spacing = (24, 48, 48), (1.0, 1.0, 1.0)
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    r = np.sqrt((zz - 12) ** 2 + (yy - 24) ** 2 + (xx - 24) ** 2)
    vols = []
    for peak in peaks:
        arr = np.maximum(peak - 40.0 * r, -900.0).astype(np.float32)
        vols.append(Volume(arr, spacing=spacing))
    return vols


def test_fixed_point_lvcr_converges():
    vols = _growth_series()
    days = [0.0, 60.0]
    net = OracleNet(thr_hu=-100.0, gain=1.0, lvcr_gain=5000.0)  # LVCR 0.01/day lowers the threshold by 50 HU
    bundle = StubBundle(
        model=net,
        clinical_encoder=StubEncoder(),
        target_spacing=(1.0, 1.0, 1.0),
        patch_size=(32, 48, 48),
        default_clinical=np.zeros(6, np.float32),
    )
    result = segment_timepoints(vols, days, bundle, tol=1e-4, max_iter=8, method="network")
    assert result.converged and result.iterations >= 2
    t0 = result.trace[0]
    assert t0["lvcr_in"] is None and t0["change"] is None
    # every pass: lvcr_out is the two-scan formula on that pass's volumes (independent check)
    for entry in result.trace:
        v1, v2 = entry["volumes_cm3"]
        assert entry["lvcr_out"] == pytest.approx(math.log(v2 / v1) / 60.0, rel=1e-9)
    # the LVCR fed the model changed the volumes (the loop did something)
    assert result.trace[1]["volumes_cm3"] != t0["volumes_cm3"]
    assert result.trace[-1]["change"] < 1e-4
    assert result.lvcr_per_day == pytest.approx(result.trace[-1]["lvcr_out"])
    assert all(s.lvcr_used == result.trace[-1]["lvcr_in"] for s in result.segmentations)
    # the fixed point: segmenting with the final LVCR reproduces it
    again = [segment(v, bundle, {"lvcr": result.lvcr_per_day}, method="network").voxel_volume_cm3 for v in vols]
    assert math.log(again[1] / again[0]) / 60.0 == pytest.approx(result.lvcr_per_day, abs=2e-4)


def test_fixed_point_not_run_when_lvcr_given_or_single_timepoint():
    vols = _growth_series()
    bundle = StubBundle(
        model=OracleNet(thr_hu=-100.0, gain=1.0, lvcr_gain=5000.0),
        clinical_encoder=StubEncoder(),
        target_spacing=(1.0, 1.0, 1.0),
        default_clinical=np.zeros(6, np.float32),
    )
    res = segment_timepoints(vols, [0, 30], bundle, clinical={"lvcr": 0.005}, method="network")
    assert res.trace == [] and all(s.lvcr_used == 0.005 for s in res.segmentations)
    res1 = segment_timepoints(vols[:1], [0], bundle, method="network")
    assert res1.lvcr_per_day is None and any("single timepoint" in n for n in res1.notes)
    with pytest.raises(ValueError, match="strictly increasing"):
        segment_timepoints(vols, [10, 10], bundle, method="network")
    with pytest.raises(ValueError, match="days"):
        segment_timepoints(vols, [0], bundle, method="network")


def test_fixed_point_previous_mask_roi_and_empty_stop():
    vols = _growth_series()
    bundle = StubBundle(
        model=OracleNet(thr_hu=-100.0, gain=1.0, lvcr_gain=5000.0),
        clinical_encoder=StubEncoder(),
        target_spacing=(1.0, 1.0, 1.0),
        default_clinical=np.zeros(6, np.float32),
    )
    res = segment_timepoints(
        vols, [0, 60], bundle, previous_mask_roi=True, margin_mm=15.0, max_iter=8, method="network"
    )
    assert res.segmentations[1].roi.startswith("previous mask")
    assert res.converged and res.iterations >= 2
    assert res.segmentations[0].roi.startswith("previous mask")  # later passes: the earlier pass's own mask
    plain = segment_timepoints(vols, [0, 60], bundle, max_iter=8, method="network")
    assert res.lvcr_per_day == pytest.approx(plain.lvcr_per_day, abs=1e-12)  # the crop lost nothing
    air = Volume(np.full((16, 32, 32), -1000.0, np.float32), spacing=(1.0, 1.0, 1.0))
    with pytest.warns(UserWarning):
        res2 = segment_timepoints([vols[0], air], [0, 60], bundle, method="network")
    assert res2.lvcr_per_day is None and not res2.converged and len(res2.trace) == 1
    assert res2.segmentations[1].empty


TOTALSEG_NETWORK_CM3 = (41.69, 41.80)
"""The shipped model on the tumour-free TotalSegmentator example (``method="network"``, overlap
0.25): the kept mask and every voxel above the threshold, cm^3. The scan is stored RAS; segmentation
now runs it in the canonical LPS orientation (mkunet.segmentation.orientation), i.e. flipped in x
and y from what the shipped model was fine-tuned on, and the model keeps 41.7 cm^3 there (15.5
kept, 20.95 above threshold in the scan's own RAS orientation, before the canonical orientation).
The README's 0.08 cm^3 is the fold A2 model's, which never saw this scan. The default path keeps
nothing either way."""


@pytest.mark.slow  # the shipped network over a whole-body CT: 1-3 min on 1 shared core
def test_shipped_model_on_totalsegmentator_example(shared_data):
    """The real whole-body CT without lung tumour: the false-positive volume of the shipped network
    and of the default (whole-volume detector) path, pinned near their measured values."""
    from mkunet.io import read_volume

    try:
        from mkunet.models.bundle import default_bundle

        bundle = default_bundle()
    except (ImportError, FileNotFoundError) as err:
        pytest.skip(f"shipped model not available yet: {err}")
    vol = read_volume(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = segment(vol, uncertainty="off")
        seg = segment(vol, bundle, method="network", overlap=0.25, uncertainty="off")
    # the default path: no candidate, nothing kept (measured 0.00 cm^3)
    assert default.empty and default.voxel_volume_cm3 == 0.0, default.notes
    assert seg.mask.shape == vol.shape
    assert np.isfinite(seg.probability).all() and 0.0 <= seg.probability.min() <= seg.probability.max() <= 1.0
    # the network's false positives, cm^3 (every voxel is false here): kept mask and all above threshold
    above_cm3 = float((seg.probability >= seg.threshold).sum() * np.prod(vol.spacing) / 1000.0)
    kept_cm3, above_measured = TOTALSEG_NETWORK_CM3
    assert seg.voxel_volume_cm3 == pytest.approx(kept_cm3, rel=0.05)
    assert above_cm3 == pytest.approx(above_measured, rel=0.05)
    # what the component rule promises, checked independently of how segment computed it:
    # every kept voxel is above the threshold, and the kept voxels form one 26-connected component
    assert (seg.probability[seg.mask] >= seg.threshold).all()
    from scipy import ndimage

    assert ndimage.label(seg.mask, structure=np.ones((3, 3, 3), bool))[1] == (0 if seg.empty else 1)
    assert seg.voxel_volume_cm3 == pytest.approx(seg.mask.sum() * np.prod(vol.spacing) / 1000.0)


def test_real_bundle_round_trip_with_attention(tmp_path):
    """A tiny real MK-UNet + ClinicalEncoder bundle, saved and loaded from a folder."""
    import pandas as pd

    from mkunet.models import build_model
    from mkunet.models.bundle import ModelBundle
    from mkunet.models.clinical import ClinicalEncoder
    from mkunet.preprocess import Preprocessor

    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "channels": [2, 4, 4, 8, 8]}
    df = pd.DataFrame(
        {
            "age": [50, 60, 70],
            "sex": ["M", "F", "M"],
            "smoking": ["never", "former", "current"],
            "grade": [1, 2, 3],
            "stage": ["I", "II", "III"],
            "lvcr": [0.001, 0.004, 0.01],
        }
    )
    encoder = ClinicalEncoder().fit(df)
    bundle = ModelBundle(
        model=build_model("mkunet", **kwargs),
        model_name="mkunet",
        model_kwargs=kwargs,
        preprocessor=Preprocessor(channels=1),
        clinical_encoder=encoder,
        target_spacing=(2.0, 2.0, 2.0),
        patch_size=(16, 32, 32),
        default_clinical=encoder.transform(df).mean(axis=0),
    )
    folder = bundle.save(tmp_path / "bundle")
    vol = Volume(
        np.random.default_rng(0).normal(-500, 300, (12, 40, 36)).astype(np.float32),
        spacing=(2.5, 1.5, 1.7),
        origin=(1.0, 2.0, 3.0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = segment(
            vol,
            folder,
            clinical={"age": 64, "sex": "M", "lvcr": 0.003},
            return_attention=True,
            threshold=0.5,
            method="network",
        )
    assert seg.mask.shape == vol.shape and seg.probability.shape == vol.shape
    assert 0.0 <= seg.probability.min() and seg.probability.max() <= 1.0
    assert seg.lvcr_used == 0.003 and any("smoking" in n for n in seg.notes)
    assert seg.attention is not None and len(seg.attention) >= 1
    assert all(a.shape == vol.shape and a.dtype == np.float32 for a in seg.attention)


def test_estimate_lvcr_is_the_one_kinetics_definition():
    """Fixed-point LVCR: mesh volumes (as the pipeline) and the user's weights, not voxel counts."""
    from types import SimpleNamespace

    from mkunet.analysis import kinetics
    from mkunet.analysis.shape import shape_features
    from mkunet.segmentation.tracking import estimate_lvcr as _estimate_lvcr

    spacing = (2.0, 0.8, 0.8)
    z, y, x = np.indices((16, 40, 40))
    masks = [(z - 8) ** 2 * 4 + ((y - 20) ** 2 + (x - 20) ** 2) * 0.64 <= r**2 for r in (5.0, 6.5, 9.0)]
    segs = [SimpleNamespace(mask=m, volume=SimpleNamespace(spacing=spacing)) for m in masks]
    days = [0.0, 20.0, 100.0]
    mesh = [shape_features(m, spacing)["volume_cm3"] for m in masks]
    voxels = [m.sum() * 1.28 / 1000 for m in masks]
    for weights in ("interval", "uniform"):
        got = _estimate_lvcr(days, segs, weights)
        assert got == pytest.approx(kinetics.lvcr(days, mesh, weights=weights).lvcr_per_day, rel=1e-12)
        assert got != pytest.approx(kinetics.lvcr(days, voxels, weights=weights).lvcr_per_day, rel=1e-6)
    assert _estimate_lvcr(days, segs) == pytest.approx(_estimate_lvcr(days, segs, "interval"))
    assert _estimate_lvcr(days, segs, "uniform") != pytest.approx(_estimate_lvcr(days, segs, "interval"), rel=1e-6)


# ----------------------------------------------------------------------------- options that would be ignored


@pytest.mark.parametrize(
    "option, reason",
    [
        (dict(threshold=0.3), "HU iso-level"),
        (dict(keep="all"), "keeps the lesion at the click"),
        (dict(keep="none"), "keeps the lesion at the click"),
        (dict(min_component_cm3=1.0), "keeps one lesion"),
        (dict(overlap=0.5), "only with return_attention=True"),
        (dict(body_crop=False), "looks in the lungs itself"),
        (dict(lung_prior=False), "looks in the lungs itself"),
    ],
)
@pytest.mark.parametrize("with_seed", [False, True], ids=["whole-volume", "seed"])
def test_network_options_with_auto_are_refused(two_blobs, option, reason, with_seed):
    """method='auto' runs the image lesion model (or detection): a network option given is an error, not ignored."""
    vol, _, _ = two_blobs
    roi = Seed(tuple(vol.index_to_physical(np.array(BIG_C, float)))) if with_seed else None
    ((name, value),) = option.items()
    with pytest.raises(ValueError, match=rf"`{name}={value!r}` applies to method='network' only \(.*{reason}"):
        segment(vol, StubBundle(), roi=roi, **option)
    with pytest.raises(ValueError, match=rf"`{name}={value!r}` applies to method='network' only"):
        segment_timepoints([vol, vol], [0, 30], StubBundle(), rois=[roi, None], **option)


def test_defaults_and_attention_overlap_are_accepted_with_auto():
    from mkunet.segmentation.infer import NETWORK_DEFAULTS, check_options

    check_options("auto", **NETWORK_DEFAULTS)  # the defaults given explicitly are not an error
    check_options("auto", overlap=0.5, return_attention=True)  # the network runs on the lesion's crop then
    check_options("network", keep="all", min_component_cm3=1.0, threshold=0.3, overlap=0.5, body_crop=False)


def test_seed_size_with_auto_is_refused(two_blobs):
    vol, _, _ = two_blobs
    seed = Seed(tuple(vol.index_to_physical(np.array(BIG_C, float))), size_mm=30.0)
    with pytest.raises(ValueError, match=r"cube size \(`size_mm=30.0`\) applies to method='network' only"):
        segment(vol, StubBundle(), roi=seed)


def test_method_image_is_refused_with_the_replacement(two_blobs):
    vol, _, _ = two_blobs
    seed = Seed(tuple(vol.index_to_physical(np.array(BIG_C, float))))
    with pytest.raises(ValueError, match=r"method='image'.*Use method='auto'"):
        segment(vol, StubBundle(), roi=seed, method="image")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Use method='auto'"):
        segment_timepoints([vol, vol], [0, 30], StubBundle(), rois=[seed, None], method="image")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"must be one of auto, network; got 'nework'"):
        segment(vol, StubBundle(), method="nework")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(min_component_cm3=1.0), r"`min_component_cm3=1.0` applies to keep='all' only"),
        (dict(keep="none", min_component_cm3=1.0), r"`min_component_cm3=1.0` applies to keep='all' only"),
        (dict(keep="all", lung_prior=False), r"`lung_prior=False` applies to keep='component' only"),
        (dict(detection=object()), r"`detection` applies to method='auto' only"),
        (dict(uncertainty="off", uncertainty_params=object()), r"`uncertainty_params` applies with uncertainty='on'"),
        (dict(keep="largest"), r"`keep` must be one of component, all, none; got 'largest'"),
    ],
)
def test_network_options_that_do_not_combine_are_refused(two_blobs, options, message):
    vol, _, _ = two_blobs
    with pytest.raises(ValueError, match=message):
        segment(vol, StubBundle(), method="network", **options)


def test_segment_timepoints_refuses_before_any_work(two_blobs, monkeypatch):
    from mkunet.segmentation import infer, network

    def no_work(*args, **kwargs):
        raise AssertionError("work was done before the options were checked")

    monkeypatch.setattr(infer, "segment", no_work)
    monkeypatch.setattr(network, "load_model", no_work)
    vol, _, _ = two_blobs
    with pytest.raises(ValueError, match="applies to method='network' only"):
        segment_timepoints([vol, vol], [0, 30], StubBundle(), keep="all")
    with pytest.raises(ValueError, match="Unknown option"):
        segment_timepoints([vol, vol], [0, 30], StubBundle(), method="network", kepp="all")
