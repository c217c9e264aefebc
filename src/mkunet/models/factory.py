"""Build any network of the package by name (explicit registry, no dynamic look-up).

``build_model(name, **kwargs)`` with ``name`` in :data:`MODELS`. The keyword arguments
must be plain JSON types (numbers, strings, booleans, None, lists, dicts), so that a
model is fully described by ``model_config(model) == {"name": ..., "kwargs": ...}`` and
can be rebuilt from a JSON file (the weights go to safetensors, never pickle).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from torch import nn

from mkunet.models.baselines import AttentionUNet3D, ResNet3D, UNet3D
from mkunet.models.mkunet import MKUNet

__all__ = ["MODELS", "build_model", "count_parameters", "model_config"]

#: name -> class. Every class has forward(image, clinical=None, return_attention=False).
MODELS: dict[str, type[nn.Module]] = {
    "unet3d": UNet3D,
    "resnet3d": ResNet3D,
    "attention_unet": AttentionUNet3D,
    "mkunet": MKUNet,
}


def _check_json(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"model keyword `{path}` has a non-string dict key {k!r}; use plain JSON types.")
            _check_json(v, f"{path}[{k!r}]")
        return
    raise ValueError(
        f"model keyword `{path}` = {value!r} ({type(value).__name__}) is not a plain JSON type; pass numbers, "
        "strings, booleans, None, lists or dicts so the model config can be saved as JSON."
    )


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a segmentation network by name.

    Args:
        name: one of ``"unet3d"``, ``"resnet3d"``, ``"attention_unet"``, ``"mkunet"``.
        **kwargs: constructor arguments of the class (plain JSON types), e.g.
            ``channels=[4, 8, 8, 16, 16]``, ``gate="plain"``, ``in_channels=1``.

    Returns:
        the network (train mode, CPU), with attributes ``model_name`` and ``model_kwargs``
        (a JSON-round-trippable copy of ``kwargs``).

    Raises:
        ValueError: unknown name (the message lists the valid ones), an unknown keyword
            (the message lists the accepted ones) or a non-JSON keyword value.
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model name {name!r}; valid names are {sorted(MODELS)}.")
    cls = MODELS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"Model {name!r} does not accept {unknown}; accepted keywords: {accepted}.")
    for key, value in kwargs.items():
        _check_json(value, key)
    model = cls(**kwargs)
    model.model_name = name
    model.model_kwargs = json.loads(json.dumps(kwargs))
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """``{"name": ..., "kwargs": ...}`` of a model made by :func:`build_model` (JSON-serialisable)."""
    if not hasattr(model, "model_name"):
        raise ValueError("This model was not made by mkunet.models.build_model; its config is unknown.")
    return {"name": model.model_name, "kwargs": json.loads(json.dumps(model.model_kwargs))}


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) parameters of ``model``."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))
