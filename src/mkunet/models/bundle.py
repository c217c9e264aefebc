"""A trained model with everything needed to run it: weights, preprocessing, clinical encoder, geometry.

A :class:`ModelBundle` is stored as a folder of two files, never a pickle::

    DIR/model.safetensors   the network's state dict (float32 tensors, safetensors format)
    DIR/bundle.json         model name + constructor kwargs, preprocessor.to_dict(),
                            clinical_encoder.to_dict(), target spacing (z, y, x) mm,
                            patch size (z, y, x) voxels, threshold, default clinical vector,
                            metadata (how it was made: command, seed, data, time, metrics,
                            mkunet version)

:func:`predict_probability` is the one inference primitive shared by evaluation,
training-time validation and :mod:`mkunet.segmentation.infer`: resample the volume to the bundle's
spacing, preprocess, run MONAI's sliding-window inference with Gaussian blending, apply
the sigmoid and resample the probability back (linear) onto the volume's own grid.

:func:`default_bundle` loads the shipped model from ``mkunet/weights/`` (trained on
synthetic data only; see that folder's README; not a medical device).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mkunet.utils import to_jsonable
from mkunet.volume import Volume

if TYPE_CHECKING:  # imported lazily at run time (sibling modules)
    from mkunet.models.clinical import ClinicalEncoder
    from mkunet.preprocess import Preprocessor

__all__ = [
    "ModelBundle",
    "default_bundle",
    "predict_probability",
    "crop_volume",
    "resample_onto",
    "WEIGHTS_FILE",
    "CONFIG_FILE",
    "FORMAT_VERSION",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "bundle.json"
FORMAT_VERSION = 1
_LVCR_INDEX = 5  # mkunet.models.clinical.LVCR_INDEX

RoiBox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def _triplet(values: Sequence[float], name: str, kind: type = float) -> tuple:
    out = tuple(kind(v) for v in values)
    if len(out) != 3:
        raise ValueError(f"`{name}` must have 3 values (z, y, x), got {values!r}.")
    return out


@dataclass
class ModelBundle:
    """Everything needed to run a trained segmentation model.

    Args:
        model: the network (``torch.nn.Module``), kept in eval mode.
        model_name: name for :func:`mkunet.models.build_model` (``"mkunet"``, ``"unet3d"``, ...).
        model_kwargs: constructor keyword arguments of the network (JSON-serialisable).
        preprocessor: the fitted :class:`mkunet.preprocess.Preprocessor` (channels, adaptive window).
        clinical_encoder: the fitted :class:`mkunet.models.clinical.ClinicalEncoder`, or ``None``
            for models that take no clinical vector.
        target_spacing: voxel spacing (z, y, x) in mm the model works at.
        patch_size: sliding-window size (z, y, x) in voxels, multiples of 16.
        threshold: probability threshold turning the sigmoid output into a mask.
        metadata: provenance (command, seed, data, training time, metrics, ``mkunet_version``).
        default_clinical: encoded (6,) float32 vector used when a case's clinical values are
            unknown: the column-wise median of the encoded training vectors (so LVCR unknown
            means "the training median LVCR"). ``None`` for models without clinical input.
    """

    model: torch.nn.Module
    model_name: str
    model_kwargs: dict[str, Any]
    preprocessor: Preprocessor
    clinical_encoder: ClinicalEncoder | None
    target_spacing: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    threshold: float = 0.5
    metadata: dict[str, Any] = field(default_factory=dict)
    default_clinical: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.target_spacing = _triplet(self.target_spacing, "target_spacing", float)
        if min(self.target_spacing) <= 0:
            raise ValueError(f"`target_spacing` (z, y, x) mm must be > 0, got {self.target_spacing}.")
        self.patch_size = _triplet(self.patch_size, "patch_size", int)
        if any(p <= 0 or p % 16 for p in self.patch_size):
            raise ValueError(f"`patch_size` (z, y, x) voxels must be positive multiples of 16, got {self.patch_size}.")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"`threshold` must lie in (0, 1), got {self.threshold!r}.")
        self.threshold = float(self.threshold)
        if self.default_clinical is not None:
            vec = np.asarray(self.default_clinical, dtype=np.float32).reshape(-1)
            if not np.all(np.isfinite(vec)):
                raise ValueError(f"`default_clinical` must be finite, got {vec.tolist()}.")
            self.default_clinical = vec
        self.model.eval()

    # ------------------------------------------------------------------ clinical vector
    def clinical_vector(self, values: Mapping[str, Any] | np.ndarray | None = None) -> np.ndarray | None:
        """The encoded (6,) float32 clinical vector for one scan, or ``None`` without an encoder.

        Args:
            values: ``None`` (everything unknown: :attr:`default_clinical`), an already encoded
                (6,) vector, or a mapping ``{"age", "sex", "smoking", "grade", "stage", "lvcr"}``
                for :meth:`ClinicalEncoder.encode_one` (``lvcr=None`` = training median).
        """
        if self.clinical_encoder is None and self.default_clinical is None:
            return None
        if values is None:
            if self.default_clinical is not None:
                return self.default_clinical.copy()
            return None
        if isinstance(values, np.ndarray):
            vec = np.asarray(values, dtype=np.float32).reshape(-1)
        else:
            if self.clinical_encoder is None:
                raise ValueError("This model has no clinical encoder; pass clinical=None.")
            vec = np.asarray(self.clinical_encoder.encode_one(dict(values)), dtype=np.float32).reshape(-1)
        if self.metadata.get("use_lvcr") is False and self.default_clinical is not None and vec.size > _LVCR_INDEX:
            vec = vec.copy()  # a "without LVCR" model was trained with LVCR fixed at the training median
            vec[_LVCR_INDEX] = self.default_clinical[_LVCR_INDEX]
        return vec

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        """The JSON-serialisable configuration written to ``bundle.json``."""
        from mkunet import __version__

        meta = dict(self.metadata)
        meta.setdefault("mkunet_version", __version__)
        return {
            "format": "mkunet-bundle",
            "format_version": FORMAT_VERSION,
            "model_name": self.model_name,
            "model_kwargs": to_jsonable(self.model_kwargs, strict=True),
            "preprocessor": to_jsonable(self.preprocessor.to_dict(), strict=True),
            "clinical_encoder": None
            if self.clinical_encoder is None
            else to_jsonable(self.clinical_encoder.to_dict(), strict=True),
            "target_spacing_zyx_mm": list(self.target_spacing),
            "patch_size_zyx": list(self.patch_size),
            "threshold": self.threshold,
            "default_clinical": None if self.default_clinical is None else [float(v) for v in self.default_clinical],
            "metadata": to_jsonable(meta, strict=True),
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` + ``bundle.json`` into ``directory`` (created); returns it.

        Files are written to temporary names and renamed, so an interrupted save never
        leaves a half-written bundle behind.
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in _unwrap(self.model).state_dict().items()}
        tmp_weights = directory / (WEIGHTS_FILE + ".tmp")
        save_file(state, str(tmp_weights), metadata={"format": "mkunet-bundle"})
        tmp_config = directory / (CONFIG_FILE + ".tmp")
        tmp_config.write_text(json.dumps(self.config(), indent=2) + "\n", encoding="utf-8")
        tmp_weights.replace(directory / WEIGHTS_FILE)
        tmp_config.replace(directory / CONFIG_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> ModelBundle:
        """Load a bundle written by :meth:`save` (no pickle involved).

        Raises:
            FileNotFoundError: the folder or one of its two files is missing.
            ValueError: the JSON is not an mkunet bundle or the weights do not fit the model.
        """
        from safetensors.torch import load_file

        from mkunet.models import build_model
        from mkunet.preprocess import Preprocessor

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"Not a model bundle: '{path}' is missing (a bundle folder holds {CONFIG_FILE} and {WEIGHTS_FILE})."
                )
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"'{config_path}' is not valid JSON: {err}") from err
        if not isinstance(config, dict) or config.get("format") != "mkunet-bundle":
            raise ValueError(f'\'{config_path}\' is not an mkunet bundle config (missing "format": "mkunet-bundle").')
        if int(config.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(
                f"'{config_path}' has bundle format {config.get('format_version')}, newer than this mkunet "
                f"understands ({FORMAT_VERSION}): upgrade mkunet."
            )
        model = build_model(config["model_name"], **config["model_kwargs"])
        state = load_file(str(weights_path))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(
                f"The weights in '{weights_path}' do not fit model {config['model_name']!r}: {err}"
            ) from err
        model.to(device).eval()
        encoder = None
        if config.get("clinical_encoder") is not None:
            from mkunet.models.clinical import ClinicalEncoder

            encoder = ClinicalEncoder.from_dict(config["clinical_encoder"])
        default = config.get("default_clinical")
        return cls(
            model=model,
            model_name=config["model_name"],
            model_kwargs=dict(config["model_kwargs"]),
            preprocessor=Preprocessor.from_dict(config["preprocessor"]),
            clinical_encoder=encoder,
            target_spacing=tuple(config["target_spacing_zyx_mm"]),
            patch_size=tuple(config["patch_size_zyx"]),
            threshold=float(config.get("threshold", 0.5)),
            metadata=dict(config.get("metadata", {})),
            default_clinical=None if default is None else np.asarray(default, dtype=np.float32),
        )

    def __repr__(self) -> str:
        return (
            f"ModelBundle(model_name={self.model_name!r}, target_spacing(z,y,x)mm={self.target_spacing}, "
            f"patch_size(z,y,x)={self.patch_size}, channels={getattr(self.preprocessor, 'in_channels', '?')}, "
            f"clinical={'yes' if self.clinical_encoder is not None else 'no'})"
        )


def default_bundle(device: str | torch.device = "cpu") -> ModelBundle:
    """The model shipped with mkunet (``mkunet/weights/``): a small MK-UNet trained on synthetic data only.

    Research use only, not a medical device; see ``mkunet/weights/README.md`` for how it was made.

    Raises:
        FileNotFoundError: the package was installed without its weights.
    """
    folder = resources.files("mkunet") / "weights"
    with resources.as_file(folder) as path:
        path = Path(path)
        if not (path / WEIGHTS_FILE).is_file() or not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"The shipped model is missing from '{path}' ({WEIGHTS_FILE} + {CONFIG_FILE}): reinstall mkunet "
                "with its package data, or pass a trained bundle folder explicitly (e.g. `--model RUN_DIR/best`)."
            )
        return ModelBundle.load(path, device=device)


# ---------------------------------------------------------------------------------- inference
def crop_volume(volume: Volume, box: RoiBox) -> Volume:
    """The sub-volume ``array[z0:z1, y0:y1, x0:x1]`` with its geometry (origin moved; spacing kept).

    Args:
        volume: the full volume.
        box: ((z0, z1), (y0, y1), (x0, x1)) voxel indices on ``volume``'s grid, half-open;
            clipped to the volume.

    Raises:
        ValueError: the box is malformed or does not intersect the volume.
    """
    lo, hi = _check_box(box, volume.shape)
    origin = volume.index_to_physical(np.asarray(lo, dtype=np.float64))
    sub = volume.array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return Volume(
        array=np.ascontiguousarray(sub),
        spacing=volume.spacing,
        origin=tuple(float(v) for v in origin),
        direction=volume.direction,
        patient_id=volume.patient_id,
        study_uid=volume.study_uid,
        series_uid=volume.series_uid,
        frame_of_reference_uid=volume.frame_of_reference_uid,
        meta=dict(volume.meta),
    )


def _check_box(box: Any, shape: tuple[int, int, int]) -> tuple[list[int], list[int]]:
    try:
        pairs = [(int(a), int(b)) for a, b in box]
    except (TypeError, ValueError) as err:
        raise ValueError(f"`roi_box` must be ((z0, z1), (y0, y1), (x0, x1)) voxel indices, got {box!r}.") from err
    if len(pairs) != 3:
        raise ValueError(f"`roi_box` must have 3 (start, stop) pairs (z, y, x), got {box!r}.")
    lo = [max(0, a) for a, _ in pairs]
    hi = [min(n, b) for (_, b), n in zip(pairs, shape)]
    if any(h <= a for a, h in zip(lo, hi)):
        raise ValueError(
            f"`roi_box` {box!r} (z, y, x voxels, half-open) does not intersect the volume of shape {shape}."
        )
    return lo, hi


def resample_onto(array: np.ndarray, source: Volume, target: Volume, interpolator: str = "linear") -> np.ndarray:
    """Resample ``array`` (on ``source``'s grid) onto ``target``'s grid (float32, outside -> 0).

    A thin array-in, array-out form of :func:`mkunet.preprocess.resample_to`.

    Args:
        array: float (z, y, x) array of ``source.shape``.
        source: grid of ``array``.
        target: grid to resample onto.
        interpolator: ``"linear"`` or ``"nearest"``.
    """
    from mkunet.preprocess import resample_to

    return resample_to(
        np.asarray(array, dtype=np.float32), target, source=source, interpolator=interpolator, default_value=0.0
    ).array


def _window_size(patch: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """Sliding-window size (z, y, x): the bundle's patch, shrunk for small inputs.

    A shrunk side stays a multiple of 16 and at least 32 voxels (never more than the
    patch), so that four 2x down-samplings leave more than one bottleneck voxel
    (instance normalisation needs several).
    """
    return tuple(int(min(int(p), max(32, 16 * math.ceil(int(s) / 16)))) for p, s in zip(patch, shape))


@torch.no_grad()
def sliding_window_probability(
    model: torch.nn.Module,
    channels: np.ndarray | torch.Tensor,
    patch_size: Sequence[int],
    clinical: np.ndarray | None = None,
    *,
    overlap: float = 0.5,
    sw_batch_size: int = 2,
    amp: bool | None = None,
    return_attention: bool = False,
) -> np.ndarray | tuple[np.ndarray, list[np.ndarray] | None]:
    """Sigmoid probability of a preprocessed (C, z, y, x) array, by blended sliding windows.

    MONAI :func:`~monai.inferers.sliding_window_inference` with Gaussian blending of the
    sigmoid probabilities; the window is ``patch_size`` (z, y, x) voxels, shrunk to the
    input (rounded up to a multiple of 16) when the input is smaller. An input smaller than
    the window is zero-padded at its far end (0 = air / no edge / no texture in every
    channel) and the outputs cropped back: MONAI's own padding would round the coarse
    attention maps of a small input down to zero voxels.

    Returns:
        float32 (z, y, x) probability on the input array's grid; with ``return_attention``
        a tuple (probability, list of attention maps (z, y, x) float32 on the same grid,
        finest gate first, or None when the model has no gates).
    """
    from monai.inferers import sliding_window_inference

    first = next(model.parameters(), None)  # parameter-free models (oracles, tests) run on the CPU
    device = first.device if first is not None else torch.device("cpu")
    x = torch.as_tensor(np.asarray(channels, dtype=np.float32))[None].to(device)
    shape = tuple(int(n) for n in x.shape[2:])
    window = _window_size(patch_size, shape)
    pad = [max(0, w - n) for w, n in zip(window, shape)]
    if any(pad):
        x = torch.nn.functional.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
    crop = (0, 0, slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    clin = (
        None if clinical is None else torch.as_tensor(np.asarray(clinical, dtype=np.float32).reshape(1, -1)).to(device)
    )

    def predictor(window: torch.Tensor):
        c = None if clin is None else clin.expand(window.shape[0], -1)
        if return_attention:
            logits, maps = model(window, c, return_attention=True)
            return (torch.sigmoid(logits.float()), *[m.float() for m in maps])
        out = model(window, c)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return torch.sigmoid(out.float())

    was_training = model.training
    model.eval()
    use_amp = (device.type == "cuda") if amp is None else bool(amp)
    try:
        with torch.autocast(device_type=device.type, enabled=use_amp and device.type == "cuda"):
            out = sliding_window_inference(
                x,
                roi_size=window,
                sw_batch_size=sw_batch_size,
                predictor=predictor,
                overlap=overlap,
                mode="gaussian",
            )
    finally:
        if was_training:
            model.train()
    outputs = list(out) if isinstance(out, (tuple, list)) else [out]
    prob = torch.as_tensor(outputs[0]).float()[crop].cpu().numpy().astype(np.float32, copy=False)
    if not return_attention:
        return prob
    if len(outputs) == 1:
        return prob, None
    padded = tuple(x.shape[2:])
    maps = []
    for amap in outputs[1:]:
        amap = torch.as_tensor(amap).float()
        if tuple(amap.shape[2:]) != padded:
            amap = torch.nn.functional.interpolate(amap, size=padded, mode="trilinear", align_corners=False)
        maps.append(amap[crop].cpu().numpy().astype(np.float32, copy=False))
    return prob, maps


def predict_probability(
    bundle: ModelBundle,
    volume: Volume,
    clinical: np.ndarray | Mapping[str, Any] | None = None,
    roi_box: RoiBox | None = None,
    *,
    overlap: float = 0.5,
    sw_batch_size: int = 2,
    return_attention: bool = False,
    timings: dict[str, float] | None = None,
) -> np.ndarray | tuple[np.ndarray, list[np.ndarray] | None]:
    """Tumour probability for every voxel of ``volume`` (on its own grid).

    Steps: crop to ``roi_box`` (if given) -> resample (linear, air outside) to
    ``bundle.target_spacing`` -> ``bundle.preprocessor`` (C channels in [0, 1]) ->
    sliding-window inference with Gaussian blending (window ``bundle.patch_size``,
    ``overlap``) and the clinical vector -> sigmoid -> resample the probability (linear)
    back onto the (cropped) volume grid. Voxels outside ``roi_box`` get probability 0.
    Threshold with ``bundle.threshold``.

    Args:
        bundle: the trained model.
        volume: CT in HU, array (z, y, x), spacing (z, y, x) mm.
        clinical: encoded (6,) float32 clinical vector, a mapping of raw clinical values
            for the bundle's encoder, or ``None`` (unknown: the encoder's defaults, i.e.
            the training medians, LVCR included). Ignored by models without clinical input.
        roi_box: optional ((z0, z1), (y0, y1), (x0, x1)) half-open voxel box on ``volume``'s
            grid restricting inference (faster; avoids other structures).
        overlap: sliding-window overlap fraction in [0, 1).
        sw_batch_size: windows per forward pass.
        return_attention: also return the attention maps (finest gate first) on
            ``volume``'s grid (0 outside ``roi_box``), or None for models without gates.
        timings: optional dict receiving seconds per step (``resample``, ``preprocess``,
            ``network``, ``resample_back``).

    Returns:
        float32 array of ``volume.shape`` (z, y, x), values in [0, 1]; with
        ``return_attention`` the tuple (probability, attention maps or None).
    """
    from mkunet.preprocess import resample

    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"`overlap` must lie in [0, 1), got {overlap!r}.")
    clock = {} if timings is None else timings
    region = volume if roi_box is None else crop_volume(volume, roi_box)
    vector = bundle.clinical_vector(clinical)
    if vector is not None and vector.shape != (6,):
        raise ValueError(f"`clinical` must be an encoded (6,) vector, got shape {vector.shape}.")
    t = time.perf_counter()
    if np.allclose(region.spacing, bundle.target_spacing, atol=1e-4):
        resampled = region
    else:
        resampled = resample(region, bundle.target_spacing, default_value=-1000.0)
    clock["resample"] = time.perf_counter() - t
    t = time.perf_counter()
    channels = bundle.preprocessor(resampled)
    clock["preprocess"] = time.perf_counter() - t
    t = time.perf_counter()
    out = sliding_window_probability(
        bundle.model,
        channels,
        bundle.patch_size,
        vector,
        overlap=overlap,
        sw_batch_size=sw_batch_size,
        return_attention=return_attention,
    )
    clock["network"] = time.perf_counter() - t
    t = time.perf_counter()
    prob, maps = out if return_attention else (out, None)
    if resampled is not region:
        prob = resample_onto(prob, resampled, region, "linear")
        if maps is not None:
            maps = [resample_onto(m, resampled, region, "linear") for m in maps]
    np.clip(prob, 0.0, 1.0, out=prob)
    if roi_box is not None:
        lo, hi = _check_box(roi_box, volume.shape)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        prob = _paste(prob, volume.shape, sl)
        if maps is not None:
            maps = [_paste(m, volume.shape, sl) for m in maps]
    clock["resample_back"] = time.perf_counter() - t
    return (prob, maps) if return_attention else prob


def _paste(array: np.ndarray, shape: tuple[int, int, int], where: tuple[slice, ...]) -> np.ndarray:
    full = np.zeros(shape, np.float32)
    full[where] = array
    return full


# ---------------------------------------------------------------------------------- helpers
def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module under DistributedDataParallel / DataParallel wrappers."""
    return getattr(model, "module", model)
