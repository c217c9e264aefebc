"""Tests of mkunet.report.viewer: the payload (crop, encoding, registration, size) and the page it writes.

The browser side (scrolling, windows, overlays, timepoints, no network) is in
tests/test_viewer_browser.py.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from mkunet.report.viewer import (
    HU_RANGE,
    ViewerTimepoint,
    decode_array,
    encode_array,
    payload_bytes,
    render_viewer,
    viewer_payload,
    write_viewer,
)
from mkunet.volume import Volume

SPACING = (2.5, 0.8, 0.8)


def ball(shape, spacing, centre_zyx, radius_mm) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(((g - c) * s) ** 2 for g, c, s in zip((zz, yy, xx), centre_zyx, spacing)) <= radius_mm**2


def scan(shape=(40, 100, 100), spacing=SPACING, seed=0, origin=(-40.0, -40.0, -50.0)) -> Volume:
    rng = np.random.default_rng(seed)
    a = (rng.normal(-800.0, 60.0, shape)).astype(np.float32)
    a[:, :, :12] = 40.0  # a "chest wall" on one side
    a[0, 0, 0], a[0, 0, 1] = -3000.0, 3000.0  # outside HU_RANGE: clipped
    return Volume(a, spacing, origin=origin)


def test_crop_is_the_mask_slices_plus_20_mm_and_the_encoding_round_trips():
    vol = scan()
    mask = ball(vol.shape, SPACING, (20, 50, 55), 7.0)  # z radius 7 mm = 2.8 slices -> slices 18..22
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    assert (zs.min(), zs.max()) == (18, 22)
    prob = np.clip(ball(vol.shape, SPACING, (20, 50, 55), 9.0) * 0.73 + mask * 0.2, 0, 1).astype(np.float32)
    tp0 = ViewerTimepoint(vol, {"L1": mask}, probability=prob, volume_cm3=1.5)
    p = viewer_payload([tp0], patient_id="P", min_field_mm=10.0)
    pad = math.ceil(20.0 / SPACING[0])  # 8 slices = 20 mm
    z0, z1 = p["baseline_slices"]
    assert (z0, z1) == (18 - pad, 22 + 1 + pad)
    nz, ny, nx = p["shape"]
    assert nz == z1 - z0 and p["spacing"] == list(SPACING)
    # in-plane: the mask's box + 30 mm each side (the ball spans 7 mm / 0.8 = 8.75 voxels each way)
    assert ny == pytest.approx((2 * 8 + 1) + 2 * 30 / 0.8, abs=2)
    # the crop's origin is the physical position of its first voxel on the baseline
    y0 = int(round((p["origin"][1] - vol.origin[1]) / 0.8))
    x0 = int(round((p["origin"][0] - vol.origin[0]) / 0.8))
    assert p["origin"][2] == pytest.approx(vol.origin[2] + z0 * SPACING[0])
    tp = p["timepoints"][0]
    ct = decode_array(tp["ct"])
    assert ct.dtype == np.int16 and ct.shape == (nz, ny, nx)
    want = np.clip(np.rint(vol.array[z0:z1, y0 : y0 + ny, x0 : x0 + nx]), *HU_RANGE)
    assert np.array_equal(ct, want)  # exact: rounding to whole HU is the only quantisation
    assert decode_array(tp["mask"]).astype(bool).sum() == mask.sum()
    got = decode_array(tp["probability"]).astype(float) / 255.0
    assert np.abs(got - prob[z0:z1, y0 : y0 + ny, x0 : x0 + nx]).max() <= 0.5 / 255 + 1e-6
    assert tp["attention"] is None
    assert tp["lesion_slices"]["L1"] == 20 - z0 and p["default_slice"] == 20 - z0
    assert tp["lesion_volumes_cm3"]["L1"] == 1.5  # one lesion: the scan's measured volume


def test_crop_is_clipped_at_the_scan_edge_and_respects_the_margin_for_other_spacings():
    vol = scan(spacing=(3.0, 0.8, 0.8))
    mask = ball(vol.shape, vol.spacing, (2, 50, 50), 4.0)  # slices 1..3, near the bottom
    p = viewer_payload([ViewerTimepoint(vol, {"GTV": mask})])
    assert p["baseline_slices"] == [0, 3 + 1 + math.ceil(20.0 / 3.0)]


def test_encode_decode_round_trip_and_bad_dtype():
    a = np.arange(-1024, 1024, dtype=np.int16).reshape(2, 32, 32)
    assert np.array_equal(decode_array(json.loads(json.dumps(encode_array(a)))), a)
    b = np.random.default_rng(1).integers(0, 256, (3, 5, 7)).astype(np.uint8)
    assert np.array_equal(decode_array(encode_array(b)), b)
    with pytest.raises(ValueError, match="float32"):
        encode_array(np.zeros((2, 2, 2), np.float32))


def test_overlapping_lesions_keep_one_bit_each():
    vol = scan()
    a = ball(vol.shape, SPACING, (20, 50, 50), 8.0)
    b = ball(vol.shape, SPACING, (20, 50, 58), 8.0)
    p = viewer_payload([ViewerTimepoint(vol, {"A": a, "B": b})])
    bits = decode_array(p["timepoints"][0]["mask"])
    assert [les["id"] for les in p["lesions"]] == ["A", "B"]
    assert len({les["colour"] for les in p["lesions"]}) == 2
    assert ((bits & 1).astype(bool).sum(), (bits & 2).astype(bool).sum()) == (a.sum(), b.sum())
    assert ((bits & 3) == 3).sum() == (a & b).sum() > 0


def test_followups_registered_to_the_baseline_show_the_same_anatomy():
    """A follow-up moved by a known translation: through its registration the lesion lands where it is on the
    baseline; without one (scanner coordinates) it stays displaced, and the page says so."""
    import SimpleITK as sitk

    from mkunet.segmentation.register import Registration

    vol0 = scan(seed=0)
    m0 = ball(vol0.shape, SPACING, (20, 50, 55), 8.0)
    shift_xyz = np.array([12.0, -8.0, 5.0])  # mm: the follow-up's anatomy = the baseline's + shift
    vol1 = Volume(vol0.array.copy(), SPACING, origin=tuple(np.asarray(vol0.origin) + shift_xyz))
    m1 = m0.copy()  # same voxels on a shifted grid = the lesion moved by shift_xyz
    reg = Registration(sitk.TranslationTransform(3, tuple(shift_xyz.tolist())), "test", float("nan"), 0.0)
    tps = [ViewerTimepoint(vol0, {"L": m0}, label="T0"), ViewerTimepoint(vol1, {"L": m1}, label="T1", timepoint=1)]
    moved = viewer_payload([tps[0], ViewerTimepoint(**{**tps[1].__dict__, "registration": reg})])
    base = decode_array(moved["timepoints"][0]["mask"]).astype(bool)
    follow = decode_array(moved["timepoints"][1]["mask"]).astype(bool)
    assert np.array_equal(base, follow) and base.sum() == m0.sum()
    ct0, ct1 = (decode_array(t["ct"]).astype(float) for t in moved["timepoints"])
    assert np.abs(ct0 - ct1)[1:-1, 1:-1, 1:-1].max() <= 1.0  # same anatomy voxel for voxel (interior)
    assert moved["timepoints"][1]["registration"] == "test"
    assert any("registered to the baseline" in n for n in moved["notes"])
    plain = viewer_payload(tps)
    follow_plain = decode_array(plain["timepoints"][1]["mask"]).astype(bool)
    assert plain["timepoints"][1]["registration"] == "none"
    assert any("Not registered" in n for n in plain["notes"])
    # by scanner coordinates the lesion appears displaced by the shift (x 12 mm = 15 voxels)
    cx = lambda m: np.argwhere(m)[:, 2].mean()  # noqa: E731
    assert cx(follow_plain) - cx(np.asarray(decode_array(plain["timepoints"][0]["mask"]), bool)) == pytest.approx(
        12.0 / 0.8, abs=0.6
    )


def test_large_crops_are_coarsened_in_plane_to_max_voxels():
    vol = scan(shape=(30, 200, 200), spacing=(2.0, 0.5, 0.5))
    mask = ball(vol.shape, vol.spacing, (15, 100, 100), 25.0)
    p = viewer_payload([ViewerTimepoint(vol, {"L": mask})], max_voxels=200_000)
    nz, ny, nx = p["shape"]
    assert nz * ny * nx <= 200_000 and nz == p["baseline_slices"][1] - p["baseline_slices"][0]
    assert p["spacing"][0] == 2.0 and p["spacing"][1] > 0.5
    assert any("coarsened" in n for n in p["notes"])
    # the lesion's volume on the coarse grid is still about right (nearest-neighbour resampling)
    bits = decode_array(p["timepoints"][0]["mask"])
    v = bits.astype(bool).sum() * np.prod(p["spacing"]) / 1000.0
    assert v == pytest.approx(mask.sum() * vol.voxel_volume_mm3 / 1000.0, rel=0.1)


def test_bad_input_is_refused_with_the_shape():
    vol = scan()
    with pytest.raises(ValueError, match=r"\(3, 3, 3\)"):
        viewer_payload([ViewerTimepoint(vol, {"L": np.zeros((3, 3, 3), bool)}, label="T0")])
    with pytest.raises(ValueError, match="no timepoint"):
        viewer_payload([])
    with pytest.raises(ValueError, match="attention"):
        viewer_payload([ViewerTimepoint(vol, {}, attention=np.zeros((2, 2, 2)))])


def test_no_mask_shows_the_scan_centre():
    vol = scan()
    p = viewer_payload([ViewerTimepoint(vol, {"L": np.zeros(vol.shape, bool)})])
    assert p["timepoints"][0]["lesion_slices"]["L"] is None
    assert any("No contour" in n for n in p["notes"])
    assert p["shape"][0] == 2 * math.ceil(20 / 2.5) + 1


def test_page_is_self_contained_and_the_data_survives_hostile_text(tmp_path):
    vol = scan()
    mask = ball(vol.shape, SPACING, (20, 50, 55), 7.0)
    pid = 'P</script><script>alert(1)</script>"&'
    p = viewer_payload([ViewerTimepoint(vol, {"x</script>": mask}, note="</script>")], patient_id=pid)
    path = write_viewer(tmp_path / "sub" / "v.html", p, back_link="../report.html#patient-P")
    text = path.read_text(encoding="utf-8")
    assert text.count("<script") == 2 and text.lower().count("</script>") == 2
    assert "http://" not in text and "https://" not in text and "eval(" not in text
    assert not re.search(r'(src|href)="(?!data:|#|\.\./report\.html)', text)
    assert "default-src 'none'" in text  # the page may not load anything
    blob = re.search(r'<script type="application/json" id="mk-data">(.*?)</script>', text, re.S).group(1)
    assert json.loads(blob) == json.loads(json.dumps(p))
    assert render_viewer(p) == render_viewer(p)


def test_payload_size_of_a_real_ct(shared_data):
    """pyradiomics lung2 (512 x 512 x 61, 0.63 x 0.63 x 5 mm, 48 cm3 tumour): one timepoint at the defaults is
    within the issue's 3 MB (CT + mask + a probability map)."""
    from mkunet.io import read_mask, read_volume

    ct = read_volume(shared_data / "pyradiomics" / "lung2_image.nrrd")
    mask = read_mask(shared_data / "pyradiomics" / "lung2_label.nrrd", ct)
    p = viewer_payload([ViewerTimepoint(ct, {"GTV": mask}, probability=mask.astype(np.float32))])
    sizes = payload_bytes(p)
    assert sizes["T0"] < 3_000_000, sizes
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    assert p["baseline_slices"] == [max(int(zs.min()) - 4, 0), min(int(zs.max()) + 1 + 4, ct.shape[0])]


def test_segment_cli_writes_a_viewer(tmp_path, monkeypatch):
    """``mkunet segment --viewer`` writes viewer.html for the single run, with the same code as the report
    (the model is test_segment_cli's oracle: HU > -300 is tumour)."""
    from mkunet.io import write_volume
    from mkunet.segmentation import network
    from tests.cli.test_segment_cli import SPACING as SEG_SPACING
    from tests.cli.test_segment_cli import Bundle, phantom
    from tests.cli.test_segment_cli import run as cli

    monkeypatch.setattr(network, "load_model", lambda model=None: Bundle())

    hu, large, _ = phantom()
    path = write_volume(Volume(hu.astype(np.float32), spacing=SEG_SPACING), tmp_path / "ct.nii.gz")
    res = cli([path, "--out", tmp_path / "out", "--attention", "--viewer", "--method", "network"])
    assert res.exit_code == 0, res.output
    page = tmp_path / "out" / "viewer.html"
    assert f"viewer: {page}" in res.output
    text = page.read_text(encoding="utf-8")
    blob = re.search(r'<script type="application/json" id="mk-data">(.*?)</script>', text, re.S).group(1)
    payload = json.loads(blob)
    (tp,) = payload["timepoints"]
    assert [les["id"] for les in payload["lesions"]] == ["GTV"]
    assert decode_array(tp["mask"]).astype(bool).sum() == large.sum()
    assert tp["probability"] is not None and tp["attention"] is not None
    assert tp["volume_cm3"] == pytest.approx(large.sum() * np.prod(SEG_SPACING) / 1000.0)
    # without --viewer, no page
    assert cli([path, "--out", tmp_path / "plain"]).exit_code == 0
    assert not (tmp_path / "plain" / "viewer.html").exists()
