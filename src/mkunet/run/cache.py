"""Resume: a patient's cache key (input bytes, model identity, parameters) and its cached record.

A patient's results are cached as ``OUT/cache/<pid>.json`` under :func:`cache_key`: sha256 over
the bytes (and relative names) of its input files (:func:`hash_scans`), the model identity
(:func:`model_identity`: sha256 of the network's state dict + its configuration), its clinical
row, the run parameters and (target-lesion mode) its rows of lesions.csv. A rerun of
:func:`mkunet.run.pipeline.run_cohort` reuses every patient whose key is unchanged
(:func:`cached_record`) and reruns only the others. :data:`CACHE_VERSION` is part of the
parameters: raising it recomputes every older entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mkunet.run.inputs import ScanInput, TargetLesion
from mkunet.utils import to_jsonable

__all__ = ["CACHE_VERSION", "model_identity", "hash_scans", "cache_key", "cached_record"]

CACHE_VERSION = 3
"""Part of every patient's cache key (older entries are recomputed); 2: the patient folder holds ``viewer.json``;
3: the rows hold the quality control (``qc``, ``qc_reasons``, ``qc_codes``)."""


def model_identity(bundle: Any, source: str = "object") -> dict[str, Any]:
    """Provenance of a model bundle.

    Returns:
        dict with ``model_name``, ``model_version`` (metadata label / mkunet version),
        ``model_source`` ("shipped", a path, or "object"), ``weights_sha256`` (sha256 over
        the state dict: names, dtypes, shapes and bytes, in key order) and ``identity_sha256``
        (weights + configuration: threshold, spacing, patch, preprocessing, encoder).
    """
    import torch

    model = getattr(bundle, "model", None)
    h = hashlib.sha256()
    if isinstance(model, torch.nn.Module):
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        h.update(type(model).__qualname__.encode())
    weights = h.hexdigest()
    meta = dict(getattr(bundle, "metadata", {}) or {})
    config: dict[str, Any] = {
        "weights_sha256": weights,
        "model_name": getattr(bundle, "model_name", type(model).__name__ if model is not None else None),
        "model_kwargs": getattr(bundle, "model_kwargs", None),
        "threshold": getattr(bundle, "threshold", None),
        "target_spacing": getattr(bundle, "target_spacing", None),
        "patch_size": getattr(bundle, "patch_size", None),
    }
    for attr in ("preprocessor", "clinical_encoder"):
        obj = getattr(bundle, attr, None)
        to_dict = getattr(obj, "to_dict", None)
        config[attr] = to_dict() if callable(to_dict) else (None if obj is None else repr(obj))
    default = getattr(bundle, "default_clinical", None)
    config["default_clinical"] = None if default is None else np.asarray(default, np.float64).round(8).tolist()
    identity = hashlib.sha256(json.dumps(to_jsonable(config), sort_keys=True, default=str).encode()).hexdigest()
    return {
        "model_name": str(config["model_name"]),
        "model_version": str(meta.get("label") or meta.get("version") or meta.get("mkunet_version") or "unknown"),
        "model_source": source,
        "weights_sha256": weights,
        "identity_sha256": identity,
        "metadata": to_jsonable(meta),
    }


def hash_scans(scans: Sequence[ScanInput], root: Path) -> str:
    """sha256 over the scans' timepoints, days, kinds and file bytes (by file name; a missing path and a
    reference mask included). ``root`` is not hashed (the cohort may move).

    Raises:
        OSError: a file cannot be read.
    """
    h = hashlib.sha256()
    for s in scans:
        h.update(f"scan|{s.timepoint}|{s.days!r}|{s.kind}|".encode())
        files = list(s.files()) if s.path.exists() else []
        if not files:
            h.update(f"missing|{s.path}".encode())
        for f in files:
            h.update(f"file|{f.name}|".encode())
            with open(f, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    h.update(chunk)
        if s.reference_mask is not None:
            h.update(b"reference|" + s.reference_mask.read_bytes())
    return h.hexdigest()


def cache_key(
    scans: Sequence[ScanInput],
    cohort_dir: Path,
    identity: Mapping[str, Any],
    params: Mapping[str, Any],
    clinical_row: Any,
    lesions: Sequence[TargetLesion] | None,
) -> str:
    """The patient's cache key: sha256 over its input bytes, the model identity, the run parameters, its
    clinical row and (target-lesion mode) its rows of the lesions table.

    Raises:
        OSError: an input file cannot be read.
    """
    content: dict[str, Any] = {
        "inputs": hash_scans(scans, cohort_dir),
        "model": identity["identity_sha256"],
        "params": {k: v for k, v in params.items() if k != "mkunet_version"},
        "version": params["mkunet_version"],
        "clinical": to_jsonable(clinical_row),
    }
    if lesions:
        content["lesions"] = [les.key() for les in lesions]
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def cached_record(cache_file: Path, key: str, outputs: Path) -> dict[str, Any] | None:
    """The cached record when the cache file holds ``key`` and the patient's outputs exist; else None."""
    if not cache_file.is_file():
        return None
    try:
        cached = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return cached if cached and cached.get("key") == key and outputs.is_dir() else None
