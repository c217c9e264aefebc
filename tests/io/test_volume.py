import numpy as np
import pytest

from mkunet.io import read_mask, read_volume, write_mask, write_volume
from mkunet.volume import Volume, same_grid


def _volume(direction=None):
    rng = np.random.default_rng(0)
    return Volume(
        rng.normal(size=(4, 5, 6)).astype(np.float32),
        spacing=(3.0, 0.7, 0.8),
        origin=(-10.0, 20.0, 30.0),
        direction=np.eye(3) if direction is None else direction,
    )


def test_sitk_round_trip_keeps_geometry():
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    vol = _volume(rot)
    back = Volume.from_sitk(vol.to_sitk())
    assert same_grid(vol, back)
    np.testing.assert_array_equal(vol.array, back.array)
    # physical position of an index agrees with SimpleITK
    img = vol.to_sitk()
    k, j, i = 2, 3, 4
    np.testing.assert_allclose(vol.index_to_physical([k, j, i]), img.TransformIndexToPhysicalPoint((i, j, k)))
    np.testing.assert_allclose(vol.physical_to_index(vol.index_to_physical([k, j, i])), [k, j, i], atol=1e-9)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_write_read_round_trip(tmp_path, suffix):
    vol = _volume()
    path = write_volume(vol, tmp_path / f"img{suffix}")
    back = read_volume(path)
    assert same_grid(vol, back)
    np.testing.assert_allclose(back.array, vol.array)
    mask = vol.array > 0
    write_mask(mask, vol, tmp_path / f"m{suffix}")
    np.testing.assert_array_equal(read_mask(tmp_path / f"m{suffix}", vol), mask)


def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="3-D"):
        Volume(np.zeros((2, 2)), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        Volume(np.zeros((2, 2, 2)), spacing=(1, 0, 1))
    with pytest.raises(FileNotFoundError, match="nope"):
        read_volume(tmp_path / "nope.nii.gz")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="Don't know how to read"):
        read_volume(tmp_path / "x.txt")


def test_mask_without_overlap_is_an_error(tmp_path):
    vol = _volume()
    far = Volume(np.ones((4, 5, 6)), spacing=(3.0, 0.7, 0.8), origin=(1000.0, 0.0, 0.0))
    write_mask(np.ones(far.shape, bool), far, tmp_path / "far.nii.gz")
    with pytest.raises(ValueError, match="does not overlap"):
        read_mask(tmp_path / "far.nii.gz", vol)


def test_extensionless_dicom_file_is_recognised(tmp_path, shared_data):
    import shutil

    src = shared_data / "pydicom" / "CT_small.dcm"
    dst = tmp_path / "IM0001"
    shutil.copy(src, dst)
    vol = read_volume(dst)
    assert vol.shape == (1, 128, 128)


def test_read_mask_resamples_other_grids_nearest_neighbour(tmp_path):
    """A label map on another grid: any non-zero label, nearest-neighbour onto the reference (as SimpleITK)."""
    import SimpleITK as sitk

    ref = _volume()
    c, s = np.cos(0.2), np.sin(0.2)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    other = Volume(np.zeros((6, 7, 8), np.float32), spacing=(2.0, 0.9, 0.6), origin=(-10.5, 19.5, 29.0), direction=rot)
    labels = np.zeros(other.shape, np.int16)
    labels[1:5, 2:6, 1:7] = 2
    labels[2, 3, 4] = 0
    write_volume(other, tmp_path / "labels.nii.gz", labels)
    expected = (
        sitk.GetArrayFromImage(
            sitk.Resample(
                sitk.ReadImage(str(tmp_path / "labels.nii.gz")),
                ref.to_sitk(np.zeros(ref.shape, np.uint8)),
                sitk.Transform(),
                sitk.sitkNearestNeighbor,
                0,
            )
        )
        != 0
    )
    got = read_mask(tmp_path / "labels.nii.gz", ref)
    assert got.dtype == bool and got.shape == ref.shape and got.any()
    np.testing.assert_array_equal(got, expected)
