"""Candidate list of a whole-volume probability map: scores, ranks, locations, minimum rule, CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from mkunet.segmentation.candidates import MIN_VOXEL_VOLUME_CM3, format_candidates, list_candidates, write_candidates
from mkunet.volume import Volume


def _ball(shape, centre, radius):
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


@pytest.fixture()
def scene():
    """A 2 mm grid: two 'lungs' (boxes), a region = lungs grown, and blobs of known probability."""
    shape = (30, 60, 80)
    volume = Volume(np.zeros(shape, np.float32), (2.0, 2.0, 2.0), origin=(10.0, 20.0, 30.0))
    lungs = np.zeros(shape, bool)
    lungs[5:25, 10:50, 5:35] = True  # right lung, x 5..35
    lungs[5:25, 10:50, 45:75] = True  # left lung, x 45..75
    region = np.zeros(shape, bool)
    region[3:27, 8:52, 3:77] = True  # lungs closed: includes the mediastinum between them
    prob = np.zeros(shape, np.float32)
    prob[_ball(shape, (15, 30, 20), 4)] = 0.9  # in the lung: 257 voxels
    prob[_ball(shape, (15, 30, 40), 3)] = 0.8  # between the lungs: mediastinum
    prob[_ball(shape, (15, 55, 40), 5)] = 0.95  # outside the region (posterior, larger)
    return volume, prob, region, lungs


def test_scores_ranks_and_locations(scene):
    volume, prob, region, lungs = scene
    cands = list_candidates(volume, prob, region=region, lungs=lungs)
    assert [c.rank for c in cands] == [1, 2, 3]
    voxel = volume.voxel_volume_mm3 / 1000.0
    n_lung = int(_ball(prob.shape, (15, 30, 20), 4).sum())
    top = cands[0]
    # score = mass x inside^2; the lung blob is wholly inside: score = mass = 0.9 x n x voxel
    assert top.location == "lung"
    assert top.score == pytest.approx(0.9 * n_lung * voxel, rel=1e-5)
    assert top.voxel_volume_cm3 == pytest.approx(n_lung * voxel)
    assert top.max_probability == pytest.approx(0.9) and top.mean_probability == pytest.approx(0.9)
    assert top.centroid_zyx == pytest.approx((15, 30, 20))
    assert top.centroid_mm == pytest.approx((10.0 + 2 * 20, 20.0 + 2 * 30, 30.0 + 2 * 15))  # (x, y, z) mm
    by_loc = {c.location: c for c in cands}
    assert set(by_loc) == {"lung", "mediastinum", "outside"}
    # the larger, more confident blob that only grazes the region scores mass x inside^2 and ranks last
    out = by_loc["outside"]
    assert out.inside < 0.1 and out.mass_cm3 > top.mass_cm3
    assert out.score == pytest.approx(out.mass_cm3 * out.inside**2) and out.rank == 3
    assert not by_loc["outside"].reportable and top.reportable


def test_pleura_location(scene):
    volume, _, region, lungs = scene
    prob = np.zeros(volume.shape, np.float32)
    prob[10:20, 25:35, 0:5] = 0.7  # lateral, in the region but not in the aerated lung
    region = region.copy()
    region[:, :, 0:3] = True
    (cand,) = list_candidates(volume, prob, region=region, lungs=lungs)
    assert cand.location == "pleura"


def test_tumour_free_and_small(scene):
    volume, prob, region, lungs = scene
    assert list_candidates(volume, np.zeros_like(prob), region=region, lungs=lungs) == []
    tiny = np.zeros_like(prob)
    tiny[15, 30, 20] = 0.9  # 0.008 cm3 < the minimum volume
    assert 0.008 < MIN_VOXEL_VOLUME_CM3
    assert list_candidates(volume, tiny, region=region, lungs=lungs) == []
    assert format_candidates([]) == ["no candidate lesion found"]


def test_errors(scene):
    volume, prob, region, lungs = scene
    with pytest.raises(ValueError, match="shape"):
        list_candidates(volume, prob[:-1], region=region, lungs=lungs)
    with pytest.raises(ValueError, match="threshold"):
        list_candidates(volume, prob, threshold=1.5, region=region, lungs=lungs)


def test_csv(scene, tmp_path):
    volume, prob, region, lungs = scene
    cands = list_candidates(volume, prob, region=region, lungs=lungs)
    path = write_candidates(cands, tmp_path / "candidates.csv")
    rows = list(csv.DictReader(open(path)))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    assert rows[0]["location"] == "lung" and float(rows[0]["centroid_x_mm"]) == pytest.approx(50.0)
    lines = format_candidates(cands, top=2)
    assert len(lines) == 2 and lines[0].startswith("#1 ")


@pytest.mark.slow
def test_whole_volume_segment_lists_candidates_and_saves_them(tmp_path):
    from mkunet.segmentation.infer import Seed, save_segmentation, segment
    from tests.segmentation.test_infer import StubBundle, chest_with_wall_blob

    vol, tumour, _ = chest_with_wall_blob()
    seg = segment(vol, StubBundle(), method="network")
    assert len(seg.candidates) >= 2  # the tumour and the trunk wall the oracle also fires on
    top = seg.candidates[0]
    # the top candidate is the kept mask: the tumour, in the lung
    assert top.location == "lung"
    assert top.voxel_volume_cm3 == pytest.approx(seg.voxel_volume_cm3, rel=1e-6)
    assert np.allclose(top.centroid_zyx, np.argwhere(seg.mask).mean(0), atol=1e-6)
    assert seg.candidates[1].score < top.score and seg.candidates[1].location != "lung"
    written = save_segmentation(seg, tmp_path / "out")
    assert written["candidates"] == tmp_path / "out" / "candidates.csv"
    assert len(list(csv.DictReader(open(written["candidates"])))) == len(seg.candidates)
    seeded = segment(vol, StubBundle(), roi=Seed((40, 40, 10), units="voxel"), method="network")
    assert seeded.candidates == []  # ROI runs list no candidates
    assert "candidates" not in save_segmentation(seeded, tmp_path / "seeded")
