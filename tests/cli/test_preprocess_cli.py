"""`mkunet preprocess INPUT --out DIR` writes the four channels on the input grid."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from mkunet.cli import app
from mkunet.io import read_volume, write_volume
from mkunet.preprocess import four_channels
from mkunet.volume import Volume, same_grid


def test_cli_writes_four_channels(tmp_path):
    rng = np.random.default_rng(0)
    hu = rng.normal(-600, 300, (6, 16, 18)).astype(np.float32)
    volume = Volume(hu, spacing=(2.5, 0.7, 0.8), origin=(-5.0, 3.0, 10.0))
    path = write_volume(volume, tmp_path / "ct.nii.gz")
    result = CliRunner().invoke(
        app, ["preprocess", str(path), "--out", str(tmp_path / "out"), "--window", "-900", "300"]
    )
    assert result.exit_code == 0, result.output
    expected = four_channels(read_volume(path), window=(-900, 300))
    for k, name in enumerate(("intensity", "edges", "denoised", "texture")):
        channel = read_volume(tmp_path / "out" / f"{name}.nii.gz")
        assert same_grid(channel, volume)
        np.testing.assert_allclose(channel.array, expected[k], atol=1e-6)


def test_cli_bad_window_is_a_one_line_error(tmp_path):
    path = write_volume(Volume(np.zeros((3, 4, 5), np.float32), spacing=(1, 1, 1)), tmp_path / "ct.nii.gz")
    result = CliRunner().invoke(
        app, ["preprocess", str(path), "--out", str(tmp_path / "o"), "--window", "400", "-1000"]
    )
    assert result.exit_code == 2 and "window" in result.output
