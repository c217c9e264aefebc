"""The image-driven path of :func:`mkunet.segmentation.infer.segment` (``method="auto"``).

* :func:`segment_image`: the lesion model of :func:`mkunet.segmentation.lesion.segment_lesion` from a
  :class:`~mkunet.segmentation.prompts.Seed`, a :class:`~mkunet.segmentation.prompts.Box` (seeded at
  the deepest soft-tissue point of its central part, the lesion clipped to the box) or a
  :class:`~mkunet.segmentation.prompts.PreviousMask` (seeded at its deepest soft-tissue voxel).
  The network runs only for ``return_attention`` (its probability and attention maps on the
  lesion's crop, for the report).
* :func:`segment_detect`: the whole volume: :func:`mkunet.segmentation.candidates.detect_lesions`
  ranks the candidates and the lesion model segments the first reportable one that gives a lesion.

Both return a :class:`~mkunet.segmentation.results.Segmentation` with ``method="image"``.
Axis conventions: arrays (z, y, x); spacings (z, y, x) in mm; points (x, y, z) mm LPS.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from mkunet.segmentation.candidates import DetectionParams
from mkunet.segmentation.lesion import LesionParams, LesionResult, SeedError, segment_lesion
from mkunet.segmentation.network import segment_network
from mkunet.segmentation.prompts import Box, BoxIdx, PreviousMask, Roi, Seed, roi_crop_box, seed_in_box, seed_in_mask
from mkunet.segmentation.results import Segmentation
from mkunet.volume import Volume

__all__ = ["segment_image", "segment_detect"]

ProgressHook = Callable[[str], None]


def segment_detect(
    volume: Volume,
    model: Any,
    clinical: Any,
    params: LesionParams,
    detection: DetectionParams | None,
    *,
    return_attention: bool,
    overlap: float,
    progress: ProgressHook | None,
    tries: int = 3,
) -> tuple[Segmentation, Seed | None]:
    """Whole volume, image-driven: detect, then segment the best reportable candidate (module doc).

    Returns the segmentation (its ``candidates`` set, ``roi`` naming the candidate) and the seed
    it came from (None when nothing was found).
    """
    from mkunet.segmentation.candidates import detect_lesions

    t0 = time.perf_counter()
    (progress or (lambda name: None))("detect")
    candidates = detect_lesions(volume, detection)
    seconds = time.perf_counter() - t0
    for cand in [c for c in candidates if c.reportable][: max(int(tries), 1)]:
        z, y, x = (float(v) for v in cand.centroid_zyx)
        seed = Seed((x, y, z), units="voxel")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                seg = segment_image(
                    volume, seed, params, model=model, clinical=clinical, return_attention=return_attention,
                    overlap=overlap, progress=progress,
                )  # fmt: skip
        except SeedError:
            continue
        if seg.empty:
            continue
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=3)
        x, y, z = cand.centroid_mm
        seg.roi = f"whole volume: detected candidate #{cand.rank} at ({x:.1f}, {y:.1f}, {z:.1f}) mm"
        seg.notes.insert(0, f"whole volume: the lesion was detected ({cand.describe()}) and segmented from its centre")
        seg.candidates = candidates
        seg.timings["detect"] = seconds
        seg.timings["total"] = seg.timings.get("total", 0.0) + seconds
        return seg, seed
    reportable = sum(c.reportable for c in candidates)
    why = (
        "no candidate lesion found"
        if not candidates
        else f"{len(candidates)} candidate(s), none reportable"
        if not reportable
        else f"the lesion model found nothing at the {min(reportable, tries)} best candidate(s)"
    )
    warnings.warn(f"No tumour found in {volume!r} ({why}); the mask is empty.", UserWarning, stacklevel=3)
    seg = Segmentation(
        mask=np.zeros(volume.shape, bool),
        probability=np.zeros(volume.shape, np.float32),
        volume=volume,
        roi="whole volume",
        threshold=0.5,
        empty=True,
        notes=[f"no tumour found: {why}; the mask is empty"],
        timings={"detect": seconds, "total": time.perf_counter() - t0},
        method="image",
        candidates=candidates,
    )
    return seg, None


def segment_image(
    volume: Volume,
    roi: Roi,
    params: LesionParams,
    *,
    model: Any,
    clinical: Any,
    return_attention: bool,
    overlap: float,
    progress: ProgressHook | None,
) -> Segmentation:
    """The lesion model from a Seed, Box or PreviousMask (module doc; arguments as in
    :func:`mkunet.segmentation.infer.segment`)."""
    t0 = time.perf_counter()
    step = progress or (lambda name: None)
    step("lesion model")
    result, mask, box_idx, notes = _lesion_at_roi(volume, roi, params)
    timings = {"lesion": time.perf_counter() - t0}
    probability = mask.astype(np.float32)
    attention = None
    lvcr_used = None
    if return_attention and mask.any():
        # the network on the lesion's crop, for its probability and attention maps (the report shows them)
        step("network (attention)")
        (z0, z1), (y0, y1), (x0, x1) = result.crop_box if result is not None else box_idx  # type: ignore[misc]
        net = segment_network(
            volume,
            model,
            clinical,
            Box((z0, z1), (y0, y1), (x0, x1)),
            return_attention=True,
            overlap=overlap,
            keep="none",
        )
        probability, attention, lvcr_used = net.probability, net.attention, net.lvcr_used
        timings["network"] = net.timings.get("total", float("nan"))
    empty = not mask.any()
    if empty:
        if "no tumour found" not in " ".join(notes):
            notes.append("no tumour found: the mask is empty")
        warnings.warn(
            f"No lesion found at the {roi.describe()} in {volume!r}; the mask is empty.", UserWarning, stacklevel=3
        )
    timings["total"] = time.perf_counter() - t0
    return Segmentation(
        mask=mask,
        probability=probability,
        volume=volume,
        attention=attention,
        lvcr_used=lvcr_used,
        roi=roi.describe(),
        roi_box=result.crop_box if result is not None else box_idx,
        threshold=0.5,
        empty=empty,
        notes=notes,
        timings=timings,
        method="image",
        lesion=result,
    )


def _lesion_at_roi(
    volume: Volume, roi: Roi, params: LesionParams
) -> tuple[LesionResult | None, np.ndarray, BoxIdx | None, list[str]]:
    """The lesion model seeded from ``roi``: (its result or None, mask, the Box's voxel box or None, notes)."""
    notes: list[str] = []
    box_idx: BoxIdx | None = None
    if isinstance(roi, Seed):
        seed_zyx: np.ndarray | None = roi.index_zyx(volume)
    elif isinstance(roi, Box):
        box_idx, _ = roi_crop_box(volume, roi)
        seed_zyx = seed_in_box(volume, box_idx)
        voxel = np.rint(seed_zyx).astype(int)
        mm = np.round(volume.index_to_physical(voxel), 1).tolist()
        notes.append(f"box: the lesion was seeded at (x, y, z) = {mm} mm, voxel (x, y, z) = {voxel[::-1].tolist()}")
    elif isinstance(roi, PreviousMask):
        seed_zyx = seed_in_mask(volume, roi.on_grid(volume))
    else:  # pragma: no cover - resolve_method sends no-ROI calls to the detection
        raise ValueError(f"The image method needs a Seed, Box or PreviousMask, got {roi!r}.")
    if seed_zyx is None:
        notes.append("no soft tissue left inside the previous mask: the lesion is gone or moved (no tumour found)")
        return None, np.zeros(volume.shape, bool), box_idx, notes
    result = segment_lesion(volume, seed_zyx, params, describe=roi.describe())  # type: ignore[arg-type]
    mask = result.mask
    notes.extend(result.notes)
    if box_idx is not None:
        inside = np.zeros(volume.shape, bool)
        inside[tuple(slice(a, b) for a, b in box_idx)] = True
        if (mask & ~inside).any():
            notes.append("the lesion was clipped to the box")
        mask = mask & inside
    return result, mask, box_idx, notes
