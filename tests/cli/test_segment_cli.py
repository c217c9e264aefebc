"""`mkunet segment`: files written for NIfTI and DICOM input, errors, ROI options.

``--method network`` runs the shipped model (``src/mkunet/weights``, loaded as the CLI loads it:
no ``--model``) on the analytic chest phantom of tests/segmentation/test_lesion.py, with Dice
pinned near the measured values. The seed, box and previous-mask runs use the default method
(the image-driven lesion model, no network) on a small two-ball phantom whose masks are exact.
Only :func:`test_lung_prior_flag` keeps an HU oracle (see its docstring).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import torch
from typer.testing import CliRunner

from mkunet.cli import app
from mkunet.cli.segment import parse_clinical
from mkunet.io import read_mask, read_volume, write_volume
from mkunet.segmentation import network
from mkunet.synth.writers import write_ct_series
from mkunet.volume import Volume
from tests.bundle_stubs import ClinicalVectorMixin

DCIODVFY = shutil.which("dciodvfy")
SHAPE, SPACING = (10, 40, 36), (2.5, 0.8, 0.75)  # (z, y, x), mm


class Oracle(torch.nn.Module):
    def forward(self, image, clinical=None, return_attention=False):
        logits = 0.05 * (image[:, :1] * 1000.0 + 300.0)
        if return_attention:
            return logits, [torch.sigmoid(torch.nn.functional.avg_pool3d(logits, 2))]
        return logits


@dataclass
class Bundle(ClinicalVectorMixin):
    model: Any = field(default_factory=Oracle)
    preprocessor: Any = staticmethod(lambda v: (v.array / 1000.0)[None].astype(np.float32))
    clinical_encoder: Any = None
    target_spacing: tuple = SPACING
    patch_size: tuple = (16, 32, 32)
    threshold: float = 0.5


def oracle_model(monkeypatch):
    monkeypatch.setattr(network, "load_model", lambda model=None: Bundle())


CHEST_SMALL_XYZ = (28.0, -10.0, 5.0)  # mm: a 5 mm ball in the left lung, beside the 8 mm one at test_lesion.FREE


def chest_phantom() -> tuple[Volume, np.ndarray, np.ndarray]:
    """test_lesion's chest phantom with an 8 mm ball in the right lung and a 5 mm one in the left;
    returns (volume, large, small), the balls as the voxels whose centre lies inside them."""
    from tests.segmentation.test_lesion import FREE, LESION_HU, ball, chest, inside_mask, render

    volume = render(chest() + [(ball(FREE, 8.0), LESION_HU), (ball(CHEST_SMALL_XYZ, 5.0), LESION_HU)])
    return volume, inside_mask(volume, ball(FREE, 8.0)), inside_mask(volume, ball(CHEST_SMALL_XYZ, 5.0))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def test_network_on_a_chest_phantom_writes_nifti(tmp_path):
    """The shipped model over the whole volume keeps the larger ball (measured Dice 0.937)."""
    volume, large, small = chest_phantom()
    path = write_volume(volume, tmp_path / "ct.nii.gz")
    res = run([path, "--out", tmp_path / "out", "--attention", "--method", "network"])
    assert res.exit_code == 0, res.output
    assert "tumour volume:" in res.output and "mask.nii.gz" in res.output
    ref = read_volume(path)
    mask = read_mask(tmp_path / "out" / "mask.nii.gz", ref)
    assert dice(mask, large) >= 0.937 - 0.02 and not (mask & small).any()
    prob = read_volume(tmp_path / "out" / "probability.nii.gz")
    assert prob.shape == ref.shape and np.allclose(prob.origin, ref.origin)
    assert (tmp_path / "out" / "attention_0.nii.gz").exists()
    assert f"{mask.sum() * np.prod(ref.spacing) / 1000.0:.3f} cm^3" in res.output


def phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU array with a large and a small ball; returns (hu, large, small) on SHAPE / SPACING."""
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")

    def ball(c, r):
        return ((zz - c[0]) * SPACING[0]) ** 2 + ((yy - c[1]) * SPACING[1]) ** 2 + (
            (xx - c[2]) * SPACING[2]
        ) ** 2 <= r * r

    large, small = ball((5, 14, 12), 7.0), ball((5, 30, 27), 4.0)
    hu = np.full(SHAPE, -850, np.int16)
    hu[large | small] = 30
    return hu, large, small


def write_series(folder: Path, hu: np.ndarray, spacing=SPACING, origin=(-12.0, -20.5, 40.0)) -> Path:
    """Write ``hu`` (z, y, x) as a CT series, one file per slice."""
    volume = Volume(hu.astype(np.float32), spacing=spacing, origin=origin)
    write_ct_series(
        volume,
        folder,
        patient_id="CLI-1",
        patient_name="Test^Cli",
        birth_date="19600101",
        sex="M",
        study_date="20240102",
        uid_entropy=("segment-cli", str(folder)),
    )
    return folder


def run(args: list[str]):
    return CliRunner().invoke(app, ["segment", *[str(a) for a in args]])


def test_parse_clinical():
    assert parse_clinical(["age=64", "sex=M", "grade=2", "lvcr=0.004"]) == {
        "age": 64.0,
        "sex": "M",
        "grade": 2,
        "lvcr": 0.004,
    }
    assert parse_clinical(None) is None
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_clinical(["age64"])
    with pytest.raises(ValueError, match="number"):
        parse_clinical(["age=old"])


def test_nifti_input_writes_nifti(tmp_path):
    hu, large, small = phantom()
    vol = Volume(hu.astype(np.float32), spacing=SPACING, origin=(5.0, -3.0, 12.0))
    path = write_volume(vol, tmp_path / "ct.nii.gz")
    ref = read_volume(path)
    # seed in voxel units (x y z = column row slice) picks the small ball
    res = run([path, "--out", tmp_path / "seed", "--seed-point", 27, 30, 5, "--seed-units", "voxel"])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(read_mask(tmp_path / "seed" / "mask.nii.gz", ref), small)
    # the same seed in mm, negative coordinates included (x y z = LPS)
    neg = write_volume(
        Volume(hu.astype(np.float32), spacing=SPACING, origin=(-50.0, -40.0, -30.0)), tmp_path / "neg.nii.gz"
    )
    x, y, z = -50.0 + 27 * SPACING[2], -40.0 + 30 * SPACING[1], -30.0 + 5 * SPACING[0]
    res = run([neg, "--out", tmp_path / "seedmm", "--seed-point", x, y, z])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(read_mask(tmp_path / "seedmm" / "mask.nii.gz", read_volume(neg)), small)
    # previous mask (a NIfTI label map) picks the small ball too
    write_volume(ref, tmp_path / "prev.nii.gz", small.astype(np.uint8))
    res = run([path, "--out", tmp_path / "prev", "--roi", "previous-mask", "--previous-mask", tmp_path / "prev.nii.gz"])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(read_mask(tmp_path / "prev" / "mask.nii.gz", ref), small)
    # a box, x y z like the seed: voxel ranges (column, row, slice) ...
    res = run([path, "--out", tmp_path / "box", "--box", 20, 36, 20, 40, 0, 10, "--box-units", "voxel"])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(read_mask(tmp_path / "box" / "mask.nii.gz", ref), small)
    assert "region: box x 20..36, y 20..40, z 0..10 (voxel)" in res.output
    # ... and in mm (the default): the same voxels, origin (5, -3, 12) mm
    res = run([path, "--out", tmp_path / "boxmm", "--box", 20.3, 31.8, 13.3, 28.5, 12.5, 34.9])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(read_mask(tmp_path / "boxmm" / "mask.nii.gz", ref), small)
    assert "region: box x 20.3..31.8, y 13.3..28.5, z 12.5..34.9 (mm)" in res.output


def test_errors_are_one_line(tmp_path):
    hu, _, _ = phantom()
    path = write_volume(Volume(hu.astype(np.float32), spacing=SPACING), tmp_path / "ct.nii.gz")
    res = run([path, "--out", tmp_path / "o", "--formats", "nifti,seg"])
    assert res.exit_code == 2 and "DICOM input" in res.output
    assert not (tmp_path / "o" / "mask.nii.gz").exists()
    res = run([path, "--out", tmp_path / "o", "--roi", "seed"])
    assert res.exit_code == 2 and "--seed-point" in res.output
    res = run([path, "--out", tmp_path / "o", "--clinical", "age"])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output
    res = run([path, "--out", tmp_path / "o", "--box", 30, 20, 0, 10, 0, 10])  # x start above its stop
    assert res.exit_code == 2 and "--box 30 20 0 10 0 10" in res.output and "along x" in res.output
    res = run([path, "--out", tmp_path / "o", "--box", 0, 1, 0, 1, 0, 1, "--box-units", "cm"])
    assert res.exit_code == 2 and "'cm'" in res.output
    res = run([tmp_path / "missing.nii.gz", "--out", tmp_path / "o"])
    assert res.exit_code == 2


@pytest.mark.parametrize(
    "option, message",
    [
        (["--keep", "all"], "`--keep='all'` applies to --method='network' only"),
        (["--no-lung-prior"], "`--lung-prior=False` applies to --method='network' only"),
        (["--threshold", "0.3"], "`--threshold=0.3` applies to --method='network' only"),
        (["--overlap", "0.5"], "`--overlap=0.5` applies to --method='network' only"),
        (["--seed-point", 27, 30, 5, "--seed-units", "voxel", "--seed-size-mm", 30], "`--seed-size-mm=30.0`"),
        (["--method", "image"], "Use method='auto' (CLI: --method auto)"),
        (["--method", "network", "--no-lung-prior", "--keep", "all"], "applies to --keep='component' only"),
    ],
)
def test_options_the_method_ignores_are_refused(tmp_path, option, message):
    """An option that does not apply to the chosen method: exit 2, one line, nothing read or written."""
    hu, _, _ = phantom()
    path = write_volume(Volume(hu.astype(np.float32), spacing=SPACING), tmp_path / "ct.nii.gz")
    res = run([path, "--out", tmp_path / "o", *option])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output
    assert not (tmp_path / "o").exists()


def _dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def test_dicom_input_writes_seg_and_rtstruct(tmp_path):
    volume, large, small = chest_phantom()
    folder = write_series(tmp_path / "ct", np.rint(volume.array).astype(np.int16), volume.spacing, volume.origin)
    res = run([folder, "--out", tmp_path / "out", "--method", "network"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    for name in ("mask.nii.gz", "probability.nii.gz", "seg.dcm", "rtstruct.dcm"):
        assert (out / name).exists(), name
    ref = read_volume(folder)
    mask = read_mask(out / "mask.nii.gz", ref)
    assert dice(mask, large) >= 0.937 - 0.02 and not (mask & small).any()  # measured: 0.937 (shipped model)
    seg = pydicom.dcmread(out / "seg.dcm")
    assert seg.PatientID == "CLI-1" and seg.StudyInstanceUID == ref.study_uid
    from mkunet.io import read_rtstruct

    rt = read_rtstruct(out / "rtstruct.dcm", ref)
    assert dice(rt, mask) >= 0.9
    if DCIODVFY:
        assert _dciodvfy_errors(out / "seg.dcm") == []
        assert _dciodvfy_errors(out / "rtstruct.dcm") == []


def test_dicom_input_without_tumour(tmp_path):
    folder = write_series(tmp_path / "ct", np.full(SHAPE, -1000, np.int16))
    with pytest.warns(UserWarning, match="empty"):
        res = run([folder, "--out", tmp_path / "out"])
    assert res.exit_code == 0, res.output
    assert "no tumour found" in res.output
    for name in ("mask.nii.gz", "seg.dcm", "rtstruct.dcm"):
        assert (tmp_path / "out" / name).exists(), name


def test_lung_prior_flag(tmp_path, monkeypatch):
    """A soft-tissue trunk (large, tumour-like for the oracle) around one lung holding a small tumour:
    the default lung prior keeps the tumour, --no-lung-prior the largest probability mass (the trunk).

    The one test with an HU oracle (it thresholds HU at -300): the flag's effect needs a network that
    calls tissue outside the lung tumour, and the shipped model calls none on the chest phantom
    (measured: two components above threshold, the two balls, with and without the prior)."""
    oracle_model(monkeypatch)
    shape, spacing = (12, 48, 48), (2.5, 1.5, 1.5)
    hu = np.full(shape, -1000, np.int16)
    hu[:, 4:44, 4:44] = 40
    hu[1:11, 12:36, 12:36] = -850
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    tumour = ((zz - 6) * 2.5) ** 2 + ((yy - 24) * 1.5) ** 2 + ((xx - 24) * 1.5) ** 2 <= 6.0**2
    hu[tumour] = 40
    ref = Volume(hu.astype(np.float32), spacing=spacing)
    path = write_volume(ref, tmp_path / "chest.nii.gz")
    res = run([path, "--out", tmp_path / "prior", "--method", "network"])
    assert res.exit_code == 0, res.output
    kept = read_mask(tmp_path / "prior" / "mask.nii.gz", read_volume(path))
    assert 2 * (kept & tumour).sum() / (kept.sum() + tumour.sum()) > 0.9
    res = run([path, "--out", tmp_path / "plain", "--no-lung-prior", "--method", "network"])
    assert res.exit_code == 0, res.output
    plain = read_mask(tmp_path / "plain" / "mask.nii.gz", read_volume(path))
    assert not (plain & tumour).any() and plain.sum() > tumour.sum()


def test_uncertainty_option_and_sidecar(tmp_path):
    import json

    hu, large, small = phantom()
    path = write_volume(
        Volume(hu.astype(np.float32), spacing=SPACING, origin=(5.0, -3.0, 12.0)), tmp_path / "ct.nii.gz"
    )
    seed = ["--seed-point", 27, 30, 5, "--seed-units", "voxel"]
    res = run([path, "--out", tmp_path / "on", *seed])
    assert res.exit_code == 0, res.output
    side = json.loads((tmp_path / "on" / "mask.json").read_text())
    assert side["volume_cm3"] == pytest.approx(small.sum() * np.prod(SPACING) / 1000.0)
    assert side["method"] == "image" and side["sigma_log_volume_seg"] >= 0.0
    assert side["volume_se_cm3"] == pytest.approx(side["sigma_log_volume_seg"] * side["volume_cm3"])
    assert set(side["uncertainty_components"]) == {"edge", "contact"}
    assert f"+- {side['volume_se_cm3']:.3f} (SE; sigma(ln V) {side['sigma_log_volume_seg']:.3f})" in res.output
    res = run([path, "--out", tmp_path / "off", *seed, "--uncertainty", "off"])
    assert res.exit_code == 0, res.output
    assert "+-" not in res.output
    assert json.loads((tmp_path / "off" / "mask.json").read_text())["volume_se_cm3"] is None
    res = run([path, "--out", tmp_path / "bad", *seed, "--uncertainty", "maybe"])
    assert res.exit_code == 2 and "uncertainty must be one of on, off, got 'maybe'" in res.output
    assert not (tmp_path / "bad").exists()


def test_run_refuses_method_image(tmp_path):
    """``mkunet run --method image`` (the former name of auto): exit 2, one line, before any work."""
    (tmp_path / "clinical.csv").write_text("patient_id,age\n", encoding="utf-8")
    res = CliRunner().invoke(
        app,
        ["run", str(tmp_path), "--clinical", str(tmp_path / "clinical.csv"), "--out", str(tmp_path / "o")]
        + ["--method", "image"],
    )
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Use method='auto' (CLI: --method auto)" in lines[0]
    assert not (tmp_path / "o").exists()


def test_segment_prints_qc(tmp_path):
    """A click in the free nodule: "QC: ok"; a click on the mediastinum (soft tissue between the lungs): the
    contour is cut out of it, "QC: review" with the reason."""
    from tests.segmentation.test_lesion import FREE

    volume, _, _ = chest_phantom()
    path = write_volume(volume, tmp_path / "ct.nii.gz")
    res = run([path, "--out", tmp_path / "free", "--seed-point", *FREE])
    assert res.exit_code == 0, res.output
    assert "QC: ok" in res.output.splitlines()
    res = run([path, "--out", tmp_path / "mediastinum", "--seed-point", 0.0, 0.0, 0.0])
    assert res.exit_code == 0, res.output
    line = next(line for line in res.output.splitlines() if line.startswith("QC:"))
    assert line.startswith("QC: review — ") and "touches other soft tissue" in line
