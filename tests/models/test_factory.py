"""build_model registry, uniform calling convention, JSON configs, parameter counts."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from mkunet.models import MODELS, build_model, count_parameters, model_config

TINY = {
    "unet3d": {"channels": [4, 8, 8, 16, 16]},
    "resnet3d": {"init_filters": 8},
    "attention_unet": {"channels": [4, 8, 8, 16, 16]},
    "mkunet": {"channels": [4, 8, 8, 16, 16]},
}


def _data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 4, 16, 32, 32, generator=gen), torch.rand(1, 6, generator=gen)


def test_registry_names():
    assert set(MODELS) == {"unet3d", "resnet3d", "attention_unet", "mkunet"}


@pytest.mark.parametrize("name", sorted(TINY))
def test_uniform_forward(name):
    torch.manual_seed(0)
    model = build_model(name, **TINY[name]).eval()
    image, clinical = _data()
    with torch.no_grad():
        logits = model(image, clinical)
        logits2, attention = model(image, clinical=clinical, return_attention=True)
    assert logits.shape == (1, 1, 16, 32, 32)
    torch.testing.assert_close(logits, logits2)
    assert isinstance(attention, list)
    if name in ("unet3d", "resnet3d"):
        assert attention == []
    else:
        assert [tuple(a.shape) for a in attention] == [
            (1, 1, 16, 32, 32),
            (1, 1, 8, 16, 16),
            (1, 1, 4, 8, 8),
            (1, 1, 2, 4, 4),
        ]
        assert all(float(a.min()) >= 0 and float(a.max()) <= 1 for a in attention)
    if name != "mkunet":
        with torch.no_grad():
            torch.testing.assert_close(model(image), logits)  # baselines ignore clinical
    with pytest.raises(ValueError, match="multiple of 16"):
        model(torch.rand(1, 4, 16, 32, 24), clinical)


def test_attention_unet_maps_are_its_gates():
    """The hooked maps are the sigmoid outputs of MONAI's AttentionBlocks: gate k multiplies its skip by map k."""
    from monai.networks.nets.attentionunet import AttentionBlock

    torch.manual_seed(0)
    model = build_model("attention_unet", **TINY["attention_unet"]).eval()
    image, _ = _data()
    seen = []
    blocks = [m for m in model.modules() if isinstance(m, AttentionBlock)]
    handles = [
        b.register_forward_hook(lambda m, args, kwargs, out: seen.append((kwargs, out)), with_kwargs=True)
        for b in blocks
    ]
    with torch.no_grad():
        _, attention = model(image, return_attention=True)
    for h in handles:
        h.remove()
    outer = [s for s in seen if s[1].shape[2:] == (16, 32, 32)]
    kwargs, out = outer[0]
    torch.testing.assert_close(out, kwargs["x"] * attention[0])
    assert all(b.psi.last_alpha is None for b in blocks)  # nothing kept alive between calls


def test_attention_unet_copy_keeps_its_maps():
    import copy

    torch.manual_seed(0)
    model = build_model("attention_unet", **TINY["attention_unet"]).eval()
    clone = copy.deepcopy(model)
    image, _ = _data()
    with torch.no_grad():
        _, a = model(image, return_attention=True)
        _, b = clone(image, return_attention=True)
    assert len(b) == 4
    torch.testing.assert_close(a[0], b[0])


def test_unknown_name_and_kwargs():
    with pytest.raises(ValueError, match=r"'vnet'.*attention_unet.*mkunet.*resnet3d.*unet3d"):
        build_model("vnet")
    with pytest.raises(ValueError, match=r"does not accept \['chanels'\].*channels"):
        build_model("mkunet", chanels=[4, 8])
    with pytest.raises(ValueError, match="not a plain JSON type"):
        build_model("mkunet", channels=torch.tensor([4, 8, 8, 16, 16]))


def test_config_json_round_trip_reproduces_model():
    torch.manual_seed(0)
    model = build_model(
        "mkunet", channels=(4, 8, 8, 16, 16), gate="plain", upsample="trilinear", norm=["INSTANCE", {"affine": True}]
    ).eval()
    config = json.loads(json.dumps(model_config(model)))
    assert config == {
        "name": "mkunet",
        "kwargs": {
            "channels": [4, 8, 8, 16, 16],
            "gate": "plain",
            "upsample": "trilinear",
            "norm": ["INSTANCE", {"affine": True}],
        },
    }
    clone = build_model(config["name"], **config["kwargs"]).eval()
    clone.load_state_dict(model.state_dict())
    image, clinical = _data()
    with torch.no_grad():
        torch.testing.assert_close(model(image, clinical), clone(image, clinical))
    with pytest.raises(ValueError, match="build_model"):
        model_config(torch.nn.Linear(2, 2))


def test_count_parameters():
    layer = torch.nn.Conv3d(2, 3, 3)  # 2*3*27 + 3
    assert count_parameters(layer) == 165
    layer.bias.requires_grad_(False)
    assert count_parameters(layer) == 162 and count_parameters(layer, trainable_only=False) == 165


def _conv(c_in: int, c_out: int, kernel: int, bias: bool = True) -> int:
    """Parameters of a 3-D convolution: c_in * c_out * kernel^3 weights (+ c_out biases)."""
    return c_in * c_out * kernel**3 + (c_out if bias else 0)


def _mkunet_parameters(channels=(16, 32, 64, 128, 256), in_channels=4, clinical=6, gate="immune") -> int:
    """MK-UNet's parameter count from its layer list (module docstrings of mkunet.models.mkunet / gates).

    MONAI ``Convolution`` = conv (bias) -> instance norm (affine=False: 0 parameters) -> PReLU
    (1 shared slope); a level block is two 3x3x3 such convolutions.
    """
    prelu = 1

    def block(c_in: int, c_out: int) -> int:
        return _conv(c_in, c_out, 3) + prelu + _conv(c_out, c_out, 3) + prelu

    levels = range(len(channels) - 1)
    encoder = block(in_channels, channels[0]) + sum(block(channels[i], channels[i + 1]) for i in levels)
    fuse = _conv(channels[-1] + clinical, channels[-1], 1) + prelu  # 1x1x1 mix of bottleneck + tiled clinical
    ups = sum(_conv(channels[i + 1], channels[i], 2) for i in levels)  # 2x2x2 transposed convolutions
    gates = 0
    for i in levels:  # Oktay gate: W_x (2x2x2, stride 2, no bias), W_g (1x1x1), psi (1x1x1 -> 1), w_l
        c_x, c_g, c_int = channels[i], channels[i + 1], channels[i] // 2
        gates += _conv(c_x, c_int, 2, bias=False) + _conv(c_g, c_int, 1) + _conv(c_int, 1, 1)
        gates += c_int if gate == "immune" else 0
    decoder = sum(block(2 * channels[i], channels[i]) for i in levels)
    head = _conv(channels[0], 1, 1)
    return encoder + fuse + ups + gates + decoder + head


def test_default_widths_are_comparable():
    """Default widths: every model has channels 16..256 and 1.9-8 M parameters (figures in the README)."""
    counts = {name: count_parameters(build_model(name)) for name in MODELS}
    assert counts["mkunet"] == _mkunet_parameters() == 5_822_720  # the figure in the README's table
    assert all(1.9e6 < c < 8e6 for c in counts.values()), counts
    plain = count_parameters(build_model("mkunet", gate="plain"))
    assert plain == _mkunet_parameters(gate="plain")
    assert counts["mkunet"] - plain == 8 + 16 + 32 + 64  # w_l: one weight per intermediate channel
    tiny = TINY["mkunet"]["channels"]
    assert count_parameters(build_model("mkunet", channels=tiny)) == _mkunet_parameters(tuple(tiny))


# ---------------------------------------------------------------------------- test doubles
def _parameters(function) -> list[tuple]:
    """(name, kind, default, annotation) of each parameter after ``self``, and the return annotation."""
    signature = inspect.signature(function)
    params = [p for p in signature.parameters.values() if p.name != "self"]
    return [(p.name, p.kind, p.default, p.annotation) for p in params] + [("return", signature.return_annotation)]


def test_bundle_stubs_follow_the_real_interfaces():
    """tests/bundle_stubs.py stands in for a ModelBundle: its parts must keep the real signatures, so drift fails."""
    from mkunet.models.bundle import ModelBundle, predict_probability
    from mkunet.preprocess import Preprocessor
    from mkunet.volume import Volume
    from tests.bundle_stubs import ClinicalVectorMixin, HUOracle, hu_preprocessor

    for name, cls in MODELS.items():
        assert _parameters(HUOracle.forward) == _parameters(cls.forward), name
    assert _parameters(hu_preprocessor) == _parameters(Preprocessor.__call__)
    assert _parameters(ClinicalVectorMixin.clinical_vector) == _parameters(ModelBundle.clinical_vector)
    assert ClinicalVectorMixin.default_clinical is inspect.signature(ModelBundle).parameters["default_clinical"].default

    # and they run through the real inference primitive, as a ModelBundle does
    class Stub(ClinicalVectorMixin):
        model = HUOracle(thr_hu=-300.0)
        preprocessor = staticmethod(hu_preprocessor)
        target_spacing, patch_size, threshold = (2.0, 1.0, 1.0), (16, 32, 32), 0.5
        default_clinical = np.zeros(6, np.float32)

    array = np.full((10, 24, 20), -800.0, np.float32)
    array[3:7, 8:16, 6:12] = 100.0
    volume = Volume(array, spacing=Stub.target_spacing)
    prob, maps = predict_probability(Stub(), volume, None, return_attention=True)
    assert prob.shape == volume.shape and len(maps) == 2
    np.testing.assert_array_equal(prob > 0.5, array > -300.0)
    assert Stub.model.calls >= 1
