"""ModelBundle: save/load round trip (same outputs), no pickle, predict_probability geometry, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mkunet.models import ClinicalEncoder, build_model
from mkunet.models.bundle import ModelBundle, crop_volume, default_bundle, predict_probability, resample_onto
from mkunet.preprocess import AdaptiveWindow, Preprocessor
from mkunet.volume import Volume


def _clinical_table():
    import pandas as pd

    return pd.DataFrame(
        {
            "patient_id": ["a", "b", "c"],
            "age": [50, 60, 70],
            "sex": ["M", "F", "M"],
            "smoking": ["never", "former", "current"],
            "grade": [1, 2, 3],
            "stage": ["I", "II", "IV"],
            "lvcr": [0.001, 0.005, 0.01],
        }
    )


def _sphere_volume(shape=(20, 40, 40), spacing=(2.0, 1.5, 1.5), radius_mm=8.0) -> tuple[Volume, np.ndarray]:
    z, y, x = np.indices(shape)
    c = (np.asarray(shape) - 1) / 2
    d = np.sqrt(((z - c[0]) * spacing[0]) ** 2 + ((y - c[1]) * spacing[1]) ** 2 + ((x - c[2]) * spacing[2]) ** 2)
    mask = d < radius_mm
    image = np.where(mask, 20.0, -850.0).astype(np.float32) + np.random.default_rng(0).normal(0, 10, shape).astype(
        np.float32
    )
    return Volume(image, spacing, origin=(-30.0, 12.0, 100.0)), mask


def make_bundle(clinical: bool = True) -> ModelBundle:
    torch.manual_seed(0)
    kwargs = {"channels": [2, 4, 4, 8, 8], "in_channels": 4}
    if not clinical:
        kwargs.update(clinical_fusion=False, gate="none")
    model = build_model("mkunet", **kwargs)
    volume, mask = _sphere_volume()
    pre = Preprocessor(channels=4, adaptive_window=AdaptiveWindow()).fit([volume], [mask])
    encoder = ClinicalEncoder().fit(_clinical_table()) if clinical else None
    default = np.median(encoder.transform(_clinical_table()), axis=0) if clinical else None
    return ModelBundle(
        model, "mkunet", kwargs, pre, encoder, (2.0, 1.5, 1.5), (16, 32, 32), 0.5, {"seed": 0, "note": "test"}, default
    )


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    bundle = make_bundle()
    folder = bundle.save(tmp_path / "b")
    assert sorted(p.name for p in folder.iterdir()) == ["bundle.json", "model.safetensors"]
    config = json.loads((folder / "bundle.json").read_text())
    assert config["model_name"] == "mkunet" and config["target_spacing_zyx_mm"] == [2.0, 1.5, 1.5]
    assert config["patch_size_zyx"] == [16, 32, 32] and "mkunet_version" in config["metadata"]
    loaded = ModelBundle.load(folder)
    assert loaded.preprocessor.to_dict() == bundle.preprocessor.to_dict()
    assert loaded.clinical_encoder.to_dict() == bundle.clinical_encoder.to_dict()
    np.testing.assert_array_equal(loaded.default_clinical, bundle.default_clinical)
    x = torch.rand(1, 4, 16, 32, 32)
    c = torch.rand(1, 6)
    with torch.no_grad():
        assert torch.equal(bundle.model(x, c), loaded.model(x, c))
    volume, _ = _sphere_volume()
    p1 = predict_probability(bundle, volume, {"age": 55, "sex": "F", "smoking": "never", "grade": 2, "stage": "II"})
    p2 = predict_probability(loaded, volume, {"age": 55, "sex": "F", "smoking": "never", "grade": 2, "stage": "II"})
    np.testing.assert_array_equal(p1, p2)


def test_predict_probability_is_on_the_volume_grid_and_roi_restricts(tmp_path):
    bundle = make_bundle(clinical=False)
    volume, _ = _sphere_volume(shape=(15, 50, 44), spacing=(3.0, 0.8, 0.8))  # needs resampling both ways
    prob = predict_probability(bundle, volume)
    assert prob.shape == volume.shape and prob.dtype == np.float32
    assert np.all((prob >= 0) & (prob <= 1)) and np.isfinite(prob).all()
    box = ((2, 12), (10, 40), (5, 30))
    roi = predict_probability(bundle, volume, roi_box=box)
    assert roi.shape == volume.shape
    outside = np.ones(volume.shape, bool)
    outside[2:12, 10:40, 5:30] = False
    assert np.all(roi[outside] == 0) and roi[~outside].max() > 0
    with pytest.raises(ValueError, match="does not intersect"):
        predict_probability(bundle, volume, roi_box=((20, 30), (0, 5), (0, 5)))
    with pytest.raises(ValueError, match="roi_box"):
        predict_probability(bundle, volume, roi_box=((0, 1), (0, 1)))


def test_small_inputs_give_attention_maps_on_their_grid():
    """Regression: an input far smaller than the window (a tight previous-mask crop) gave coarse attention
    maps of zero voxels (MONAI pads, then scales the padded size down) and a crash."""
    from mkunet.models.bundle import sliding_window_probability

    torch.manual_seed(0)
    model = build_model("mkunet", channels=[2, 4, 4, 8, 8], in_channels=4)
    channels = np.random.default_rng(0).random((4, 8, 22, 28), dtype=np.float32)
    prob, maps = sliding_window_probability(
        model, channels, (32, 64, 64), np.zeros(6, np.float32), return_attention=True
    )
    assert prob.shape == (8, 22, 28) and np.isfinite(prob).all()
    assert maps is not None and len(maps) == 4
    assert all(m.shape == (8, 22, 28) and np.isfinite(m).all() for m in maps)
    # asking for the attention maps does not change the probability
    alone = sliding_window_probability(model, channels, (32, 64, 64), np.zeros(6, np.float32))
    np.testing.assert_allclose(alone, prob, atol=1e-6)


def test_clinical_vector_defaults_and_encoding():
    bundle = make_bundle()
    assert bundle.clinical_vector(None).shape == (6,)
    np.testing.assert_array_equal(bundle.clinical_vector(None), bundle.default_clinical)
    vec = bundle.clinical_vector({"age": 60, "sex": "M", "smoking": "former", "grade": 2, "stage": "II", "lvcr": None})
    assert vec[5] == pytest.approx(bundle.clinical_encoder.lvcr_unknown_value)
    bundle.metadata["use_lvcr"] = False  # "without LVCR" model: LVCR fixed at the training median
    vec = bundle.clinical_vector({"age": 60, "sex": "M", "smoking": "former", "grade": 2, "stage": "II", "lvcr": 0.01})
    assert vec[5] == pytest.approx(bundle.default_clinical[5])
    assert make_bundle(clinical=False).clinical_vector(None) is None


def test_crop_and_resample_keep_physical_positions():
    volume, _ = _sphere_volume()
    sub = crop_volume(volume, ((3, 10), (5, 25), (7, 30)))
    np.testing.assert_allclose(sub.index_to_physical([0, 0, 0]), volume.index_to_physical([3, 5, 7]))
    np.testing.assert_array_equal(sub.array, volume.array[3:10, 5:25, 7:30])
    # a linear ramp resampled onto a sub-grid equals the ramp there
    ramp = np.broadcast_to(np.arange(volume.shape[2], dtype=np.float32), volume.shape).copy()
    out = resample_onto(ramp, volume, sub)
    np.testing.assert_allclose(out, ramp[3:10, 5:25, 7:30], atol=1e-4)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="bundle.json"):
        ModelBundle.load(tmp_path)
    folder = make_bundle().save(tmp_path / "b")
    config = json.loads((folder / "bundle.json").read_text())
    config["format"] = "other"
    (folder / "bundle.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not an mkunet bundle"):
        ModelBundle.load(folder)
    config["format"] = "mkunet-bundle"
    config["model_kwargs"]["channels"] = [4, 4, 4, 8, 8]
    (folder / "bundle.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit"):
        ModelBundle.load(folder)
    with pytest.raises(ValueError, match="multiples of 16"):
        ModelBundle(
            build_model("unet3d", channels=[2, 4]), "unet3d", {}, Preprocessor(1), None, (1, 1, 1), (10, 16, 16)
        )


def test_default_bundle_loads_the_shipped_model_or_says_why():
    weights = Path(__file__).resolve().parents[2] / "src" / "mkunet" / "weights"
    if not (weights / "model.safetensors").is_file():
        with pytest.raises(FileNotFoundError, match="shipped model is missing"):
            default_bundle()
        return
    bundle = default_bundle()
    assert bundle.model_name == "mkunet" and "command" in bundle.metadata
    assert (weights / "model.safetensors").stat().st_size <= 25 * 1024 * 1024
