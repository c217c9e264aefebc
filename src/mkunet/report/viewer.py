"""A self-contained, offline slice viewer of CT, contours and maps across timepoints (one HTML file).

:func:`viewer_payload` turns one patient's scans (CT, one mask per lesion, optional
probability and attention maps, optional registration of each follow-up to the baseline)
into a compact, JSON-safe payload; :func:`write_viewer` writes it as one HTML page with
inline CSS and JavaScript (``viewer.css`` / ``viewer.js`` beside this module, written for
mkunet: no library, no CDN, no ``eval``, nothing fetched at view time). The report writes one
page per patient (``patient/<id>.html``); ``mkunet segment --viewer`` writes one for a single
scan with the same code.

**The viewer grid.** Every timepoint is resampled (SimpleITK) onto one grid: the baseline's
direction and slice spacing, cropped to the lesion:

* axially (z), every slice where any timepoint's mask (mapped onto the baseline) has a
  voxel, plus ``margin_mm`` (20 mm) above and below;
* in-plane (y, x), the masks' bounding box plus ``field_margin_mm`` (30 mm) on each side,
  at least ``min_field_mm`` (80 mm) wide, clipped to the baseline image;
* when the crop holds more than ``max_voxels`` voxels, the in-plane spacing is coarsened
  (the slice spacing never is, so scrolling still steps through the acquired slices).

A follow-up with a :class:`mkunet.segmentation.register.Registration` (baseline -> follow-up,
computed by the caller) is resampled through it
(:func:`mkunet.preprocess.resample.resample_array`), so the same slice shows the same anatomy
("registered"); without one it is resampled by scanner coordinates ("not registered",
labelled so in the page). Masks are resampled by nearest neighbour, CT and maps linearly
(outside a scan: -1024 HU, 0).

**Encoding** (``data`` entries of the payload; :func:`decode_array` reads them back):

* CT: int16 HU, rounded to whole HU and clipped to ``HU_RANGE`` = [-1024, 1023] (every
  pixel of both display windows, lung W1500/L-600 and mediastinum W400/L40, is unchanged
  by the clip), so one array serves every window;
* masks: uint8 bit field, bit ``i`` = lesion ``i`` (overlapping lesions keep both outlines);
* probability / attention: uint8, value x 255 rounded (step 1/255);

each zlib-compressed (level 9) and base64-encoded; the page inflates them with the browser's
``DecompressionStream("deflate")``. Arrays are ``(z, y, x)``; spacings ``(z, y, x)`` mm;
physical points ``(x, y, z)`` mm (DICOM LPS); volumes cm³; days since the first scan.
"""

from __future__ import annotations

import base64
import html
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mkunet.preprocess.resample import Grid, resample_array
from mkunet.utils import atomic_write_text, finite_or_none
from mkunet.volume import Volume

__all__ = [
    "HU_RANGE",
    "LESION_COLOURS",
    "WINDOWS",
    "ViewerTimepoint",
    "decode_array",
    "encode_array",
    "payload_bytes",
    "render_viewer",
    "viewer_grid",
    "viewer_payload",
    "write_segmentation_viewer",
    "write_viewer",
]

#: HU clip of the stored CT (int16): covers both windows' display ranges (-1350..150 and -160..240 HU).
HU_RANGE: tuple[int, int] = (-1024, 1023)

#: Display windows, name -> (width, level) HU.
WINDOWS: dict[str, tuple[float, float]] = {"lung": (1500.0, -600.0), "mediastinum": (400.0, 40.0)}

#: Outline colour of lesion i (cycled); distinguishable on grey CT.
LESION_COLOURS: tuple[str, ...] = (
    "#ff3b30",
    "#30d158",
    "#0a84ff",
    "#ffd60a",
    "#bf5af2",
    "#ff9f0a",
    "#64d2ff",
    "#ff375f",
)

_MAX_LESIONS = 8  # bits of the uint8 mask field
_ASSETS = Path(__file__).resolve().parent


@dataclass
class ViewerTimepoint:
    """One scan of a patient for :func:`viewer_payload`.

    Attributes:
        volume: the CT (HU, (z, y, x)) with its geometry.
        lesions: lesion id -> bool mask (z, y, x) on ``volume``'s grid (one entry per lesion; the
            whole-volume path has one, e.g. ``{"GTV": mask}``). An empty mask is allowed.
        label: the panel title, e.g. ``"T1"``.
        timepoint: the scan's index in the patient's series (``T<k>``; the page's ``#t=<k>``).
        days: days since the first scan.
        volume_cm3: the scan's tumour volume (cm³) as the run measured it (None: unknown).
        lesion_volumes_cm3: lesion id -> volume (cm³) as measured (missing: ``volume_cm3`` when there
            is one lesion, else the mask's voxel count x voxel volume).
        probability: float (z, y, x) in [0, 1] on ``volume``'s grid, or None.
        attention: float (z, y, x) in [0, 1] on ``volume``'s grid (finest attention gate), or None.
        registration: :class:`mkunet.segmentation.register.Registration` from the baseline (the first
            timepoint) to this scan, or None (baseline itself, or not registered). Only its
            ``transform`` (baseline -> scan points, SimpleITK) and ``kind`` are read: the caller
            registers (the tracking's own registration, or
            :func:`mkunet.segmentation.register.register`); the viewer never does.
        note: a short remark shown under the panel (e.g. "lesion not found").
        qc: the quality control's word on this scan (``"ok"``, ``"review"``, or ``""`` when not
            checked): a ``review`` panel gets a red frame and a "review: <qc_reasons>" label.
        qc_reasons: why the scan needs review (:mod:`mkunet.qc`), in words.
    """

    volume: Volume
    lesions: Mapping[str, np.ndarray]
    label: str = ""
    timepoint: int = 0
    days: float = 0.0
    volume_cm3: float | None = None
    lesion_volumes_cm3: Mapping[str, float] = field(default_factory=dict)
    probability: np.ndarray | None = None
    attention: np.ndarray | None = None
    registration: Any = None
    note: str = ""
    qc: str = ""
    qc_reasons: str = ""


# ============================================================================ encoding


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A (z, y, x) int16 or uint8 array as ``{"dtype", "shape", "codec": "zlib", "data": base64}``."""
    a = np.ascontiguousarray(array)
    if a.dtype not in (np.int16, np.uint8):
        raise ValueError(f"encode_array takes int16 or uint8 arrays, got {a.dtype}; quantise first.")
    raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    return {
        "dtype": str(a.dtype),
        "shape": [int(s) for s in a.shape],
        "codec": "zlib",
        "data": base64.b64encode(zlib.compress(raw, 9)).decode("ascii"),
    }


def decode_array(entry: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_array` (what the page does in JavaScript)."""
    dtype = np.dtype(str(entry["dtype"])).newbyteorder("<")
    raw = zlib.decompress(base64.b64decode(entry["data"]))
    return np.frombuffer(raw, dtype=dtype).reshape([int(s) for s in entry["shape"]]).astype(dtype.newbyteorder("="))


def _quantise_hu(hu: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(hu), HU_RANGE[0], HU_RANGE[1]).astype(np.int16)


def _quantise_unit(values: np.ndarray) -> np.ndarray:
    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    return np.rint(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)


# ============================================================================ the viewer grid


def _to_baseline_index(tp: ViewerTimepoint, baseline: Volume, index_zyx: np.ndarray) -> np.ndarray:
    """Indices of ``tp``'s grid -> continuous indices on the baseline grid (through the registration)."""
    pts = tp.volume.index_to_physical(index_zyx)
    reg = tp.registration
    if reg is not None:
        inverse = reg.transform.GetInverse()
        pts = np.array([inverse.TransformPoint(tuple(float(v) for v in p)) for p in np.atleast_2d(pts)])
    return baseline.physical_to_index(pts)


def _mask_box_on_baseline(tp: ViewerTimepoint, baseline: Volume) -> np.ndarray | None:
    """(2, 3) continuous baseline index bounds (z, y, x) of the union of ``tp``'s masks, or None when empty."""
    union = None
    for m in tp.lesions.values():
        m = np.asarray(m, dtype=bool)
        union = m if union is None else (union | m)
    if union is None or not union.any():
        return None
    where = np.nonzero(union)
    lo = np.array([w.min() for w in where], float) - 0.5
    hi = np.array([w.max() for w in where], float) + 0.5
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    idx = _to_baseline_index(tp, baseline, corners)
    return np.stack([idx.min(axis=0), idx.max(axis=0)])


def viewer_grid(
    timepoints: Sequence[ViewerTimepoint],
    *,
    margin_mm: float = 20.0,
    field_margin_mm: float = 30.0,
    min_field_mm: float = 80.0,
    max_voxels: int = 2_000_000,
) -> tuple[Grid, tuple[int, int], bool]:
    """The crop of the baseline (``timepoints[0]``) the viewer shows (module doc).

    Returns:
        (grid, (z0, z1) the baseline slices shown, half-open, any_mask).
    """
    base = timepoints[0].volume
    shape = np.asarray(base.shape)
    sp = np.asarray(base.spacing, dtype=np.float64)
    boxes = [b for b in (_mask_box_on_baseline(tp, base) for tp in timepoints) if b is not None]
    if boxes:
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
    else:  # nothing segmented anywhere: the centre of the scan
        centre = (shape - 1) / 2.0
        lo, hi = centre - 0.5, centre + 0.5
    # z: every slice with a mask voxel (index centres inside [lo, hi]) +- margin_mm
    zmask0 = int(math.ceil(lo[0])) if boxes else int(round(lo[0] + 0.5))
    zmask1 = int(math.floor(hi[0])) + 1 if boxes else zmask0 + 1
    zpad = int(math.ceil(margin_mm / sp[0] - 1e-9))
    z0, z1 = max(zmask0 - zpad, 0), min(zmask1 + zpad, int(shape[0]))
    if z1 <= z0:  # the masks lie outside the baseline scan (a follow-up mapped outside): its edge slice
        z0 = int(np.clip(z0, 0, shape[0] - 1))
        z1 = z0 + 1
    # in-plane: bbox + field margin, at least min_field_mm, clipped
    bounds: list[tuple[int, int]] = []
    for ax in (1, 2):
        c0, c1 = lo[ax] - field_margin_mm / sp[ax], hi[ax] + field_margin_mm / sp[ax]
        need = min_field_mm / sp[ax]
        if c1 - c0 < need:
            mid = (c0 + c1) / 2.0
            c0, c1 = mid - need / 2.0, mid + need / 2.0
        bounds.append((max(int(math.floor(c0)), 0), min(int(math.ceil(c1)), int(shape[ax]))))
    (y0, y1), (x0, x1) = bounds
    nz, ny, nx = z1 - z0, max(y1 - y0, 1), max(x1 - x0, 1)
    factor = 1.0
    if nz * ny * nx > max_voxels:
        factor = math.sqrt(nz * ny * nx / max_voxels)
    out_sp = (float(sp[0]), float(sp[1] * factor), float(sp[2] * factor))
    out_shape = (nz, max(int(math.floor(ny / factor)), 1), max(int(math.floor(nx / factor)), 1))
    # the first output voxel's centre: the crop's corner + half an output voxel
    corner = np.array([z0, y0 - 0.5 + factor / 2.0, x0 - 0.5 + factor / 2.0])
    origin = base.index_to_physical(corner)
    grid = Grid(
        out_shape,
        out_sp,
        (float(origin[0]), float(origin[1]), float(origin[2])),
        np.asarray(base.direction, dtype=np.float64),
    )
    return grid, (z0, z1), bool(boxes)


def _resample(tp: ViewerTimepoint, array: np.ndarray, grid: Grid, *, nearest: bool, default: float) -> np.ndarray:
    """``array`` on ``tp.volume``'s grid resampled onto ``grid`` (only the block that maps into it is converted).

    Through ``tp.registration`` when there is one: its transform maps baseline (viewer grid)
    points to ``tp``'s scan, the convention of :func:`mkunet.preprocess.resample.resample_array`.
    """
    vol = tp.volume
    nz, ny, nx = grid.shape
    corners = np.array([[a, b, c] for a in (-0.5, nz - 0.5) for b in (-0.5, ny - 0.5) for c in (-0.5, nx - 0.5)])
    pts = grid.index_to_physical(corners)
    if tp.registration is not None:
        pts = np.array([tp.registration.transform.TransformPoint(tuple(float(v) for v in p)) for p in pts])
    idx = vol.physical_to_index(pts)
    lo = np.maximum(np.floor(idx.min(axis=0)).astype(int) - 2, 0)
    hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 3, vol.shape)
    if np.any(hi <= lo):
        return np.full(grid.shape, default, dtype=np.float32)
    sub = array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    origin = vol.index_to_physical(lo)
    block = Grid(sub.shape, vol.spacing, (float(origin[0]), float(origin[1]), float(origin[2])), vol.direction)
    return resample_array(
        sub,
        block,
        grid,
        transform=tp.registration.transform if tp.registration is not None else None,
        interpolator="nearest" if nearest else "linear",
        default_value=default,
        dtype="uint8" if nearest else "float32",
    )


# ============================================================================ payload


def _check(timepoints: Sequence[ViewerTimepoint]) -> list[str]:
    if not timepoints:
        raise ValueError("viewer_payload: no timepoint given; pass at least the baseline scan.")
    ids: list[str] = []
    for tp in timepoints:
        for lid, m in tp.lesions.items():
            if np.shape(m) != tp.volume.shape:
                raise ValueError(
                    f"viewer_payload: lesion {lid!r} of {tp.label or 'T' + str(tp.timepoint)} has mask shape "
                    f"{np.shape(m)}, but its CT is {tp.volume.shape} (z, y, x): give the mask on the CT's grid."
                )
            if str(lid) not in ids:
                ids.append(str(lid))
        for name in ("probability", "attention"):
            m = getattr(tp, name)
            if m is not None and np.shape(m) != tp.volume.shape:
                raise ValueError(
                    f"viewer_payload: the {name} map of {tp.label or 'T' + str(tp.timepoint)} has shape "
                    f"{np.shape(m)}, but its CT is {tp.volume.shape} (z, y, x)."
                )
    if len(ids) > _MAX_LESIONS:
        raise ValueError(f"viewer_payload: at most {_MAX_LESIONS} lesions per patient, got {len(ids)}: {ids}.")
    return ids


def _lesion_bits(tp: ViewerTimepoint, ids: Sequence[str]) -> np.ndarray:
    """The lesions of ``tp`` as one uint8 (z, y, x) on its CT grid: bit ``b`` is lesion ``ids[b]``."""
    bits = np.zeros(tp.volume.shape, np.uint8)
    for b, lid in enumerate(ids):
        m = tp.lesions.get(lid)
        if m is not None:
            bits |= (np.asarray(m, dtype=bool).astype(np.uint8) << b).astype(np.uint8)
    return bits


def _lesion_positions(
    mask: np.ndarray, ids: Sequence[str]
) -> tuple[dict[str, int | None], dict[str, list[float] | None]]:
    """Per lesion of the viewer-grid ``mask`` bits: (its widest slice near the centroid, its centroid (y, x) index).

    None for a lesion absent from ``mask``.
    """
    lesion_slices: dict[str, int | None] = {}
    lesion_centres: dict[str, list[float] | None] = {}
    for b, lid in enumerate(ids):
        on = (mask >> b) & 1
        if on.any():
            where = np.argwhere(on)
            c = where.mean(axis=0)
            k = int(round(c[0]))
            # the slice with the largest area near the centroid: the lesion's widest cut
            areas = on.reshape(on.shape[0], -1).sum(axis=1)
            k = int(np.argmax(areas)) if areas[k] == 0 else k
            lesion_slices[lid] = k
            lesion_centres[lid] = [float(c[1]), float(c[2])]
        else:
            lesion_slices[lid] = None
            lesion_centres[lid] = None
    return lesion_slices, lesion_centres


def _lesion_volumes(tp: ViewerTimepoint, ids: Sequence[str]) -> dict[str, float | None]:
    """Per lesion, its volume (cm³) as measured, else the scan's (one lesion), else the mask's voxel count."""
    volumes: dict[str, float | None] = {}
    for lid in ids:
        given = finite_or_none(tp.lesion_volumes_cm3.get(lid))
        if given is None and len(tp.lesions) == 1 and lid in tp.lesions:
            given = finite_or_none(tp.volume_cm3)  # one lesion: the scan's measured volume
        m = tp.lesions.get(lid)
        if given is None and m is not None:
            given = float(np.count_nonzero(m)) * tp.volume.voxel_volume_mm3 / 1000.0
        volumes[lid] = given
    return volumes


def _timepoint_entry(j: int, tp: ViewerTimepoint, ids: Sequence[str], grid: Grid) -> dict[str, Any]:
    """The payload entry of timepoint ``j``: its CT, lesion bits and maps resampled onto the viewer ``grid``."""
    ct = _resample(tp, tp.volume.array, grid, nearest=False, default=-1024.0)
    mask = _resample(tp, _lesion_bits(tp, ids), grid, nearest=True, default=0).astype(np.uint8)
    lesion_slices, lesion_centres = _lesion_positions(mask, ids)
    entry: dict[str, Any] = {
        "label": tp.label or f"T{tp.timepoint}",
        "timepoint": int(tp.timepoint),
        "days": float(tp.days),
        "volume_cm3": finite_or_none(tp.volume_cm3),
        "lesion_volumes_cm3": _lesion_volumes(tp, ids),
        "lesion_slices": lesion_slices,
        "lesion_centres_yx": lesion_centres,
        "registration": "baseline"
        if j == 0
        else (str(getattr(tp.registration, "kind", "registered")) if tp.registration is not None else "none"),
        "note": tp.note,
        "qc": tp.qc,
        "qc_reasons": tp.qc_reasons,
        "ct": encode_array(_quantise_hu(ct)),
        "mask": encode_array(mask),
        "probability": None,
        "attention": None,
    }
    for name in ("probability", "attention"):
        arr = getattr(tp, name)
        if arr is not None:
            res = _resample(tp, np.asarray(arr, np.float32), grid, nearest=False, default=0.0)
            entry[name] = encode_array(_quantise_unit(res))
    return entry


def _viewer_notes(
    notes: Sequence[str], out_tps: list[dict[str, Any]], any_mask: bool, grid: Grid, baseline: Volume
) -> list[str]:
    """The caller's ``notes`` and what the viewer adds: registration, no contour, coarsened pixels."""
    registered = [t["registration"] for t in out_tps[1:]]
    all_notes = list(notes)
    if len(out_tps) > 1:
        if all(r != "none" for r in registered):
            all_notes.append(
                "Follow-ups are registered to the baseline and resampled onto its grid: the same slice shows the "
                "same anatomy (most accurately near the lesion)."
            )
        else:
            all_notes.append(
                "Not registered: some follow-ups are shown by scanner coordinates on the baseline's grid (no "
                "registration was available), so a slice may not show the same anatomy in every scan."
            )
    if not any_mask:
        all_notes.append("No contour at any timepoint: the viewer shows the centre of the baseline scan.")
    if grid.spacing[1] > baseline.spacing[1] * 1.001:
        all_notes.append(
            f"In-plane pixels coarsened to {grid.spacing[1]:.2f} x {grid.spacing[2]:.2f} mm to keep the page small."
        )
    return all_notes


def viewer_payload(
    timepoints: Sequence[ViewerTimepoint],
    *,
    patient_id: str = "",
    title: str = "",
    margin_mm: float = 20.0,
    field_margin_mm: float = 30.0,
    min_field_mm: float = 80.0,
    max_voxels: int = 2_000_000,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The viewer's data for one patient (JSON-safe; :func:`write_viewer` embeds it).

    Args:
        timepoints: the scans in time order; the first is the baseline whose grid the viewer
            uses (module doc).
        patient_id: shown in the page.
        title: the page title (default ``"Patient <id>"``).
        margin_mm: slices shown above and below the masks' slices (mm).
        field_margin_mm: in-plane margin around the masks' bounding box (mm).
        min_field_mm: smallest in-plane field (mm).
        max_voxels: above this many voxels per timepoint, the in-plane spacing is coarsened.
        notes: lines shown under the viewer.

    Returns:
        dict with ``shape`` (z, y, x), ``spacing`` (z, y, x) mm, ``origin`` (x, y, z) mm and
        ``direction`` (9 values) of the viewer grid, ``baseline_slices`` (z0, z1) on the
        baseline, ``lesions`` (id, bit, colour), ``timepoints`` (label, timepoint, days,
        volumes, registration, note, ``lesion_slices``, and the encoded ``ct``, ``mask``,
        ``probability``, ``attention``), ``default_slice``, ``windows`` and ``notes``.
    """
    ids = _check(timepoints)
    grid, zrange, any_mask = viewer_grid(
        timepoints,
        margin_mm=margin_mm,
        field_margin_mm=field_margin_mm,
        min_field_mm=min_field_mm,
        max_voxels=max_voxels,
    )
    out_tps = [_timepoint_entry(j, tp, ids, grid) for j, tp in enumerate(timepoints)]
    lesion_slices_all = [k for t in out_tps for k in t["lesion_slices"].values() if k is not None]
    all_notes = _viewer_notes(notes, out_tps, any_mask, grid, timepoints[0].volume)
    default_slice = int(np.median(lesion_slices_all)) if lesion_slices_all else grid.shape[0] // 2
    return {
        "format": "mkunet-viewer/1",
        "patient_id": str(patient_id),
        "title": title or (f"Patient {patient_id}" if patient_id else "mkunet viewer"),
        "shape": [int(s) for s in grid.shape],
        "spacing": [float(s) for s in grid.spacing],
        "origin": [float(v) for v in grid.origin],
        "direction": [float(v) for v in grid.direction.ravel()],
        "baseline_slices": [int(zrange[0]), int(zrange[1])],
        "margin_mm": float(margin_mm),
        "lesions": [
            {"id": lid, "bit": b, "colour": LESION_COLOURS[b % len(LESION_COLOURS)]} for b, lid in enumerate(ids)
        ],
        "timepoints": out_tps,
        "default_slice": default_slice,
        "windows": {k: {"width": w, "level": c} for k, (w, c) in WINDOWS.items()},
        "notes": all_notes,
    }


def payload_bytes(payload: Mapping[str, Any]) -> dict[str, int]:
    """Bytes of the encoded arrays (base64 text) per timepoint label, and ``"total"`` (JSON text of the payload)."""
    out: dict[str, int] = {}
    for tp in payload["timepoints"]:
        out[tp["label"]] = sum(
            len(tp[k]["data"]) for k in ("ct", "mask", "probability", "attention") if tp.get(k) is not None
        )
    out["total"] = len(json.dumps(payload))
    return out


# ============================================================================ the page


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


def render_viewer(payload: Mapping[str, Any], *, back_link: str | None = None, back_text: str = "report") -> str:
    """The viewer page as an HTML string (see :func:`write_viewer`)."""
    title = str(payload.get("title") or "mkunet viewer")
    data = json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c")  # no "</script>" or "<!--" inside
    back = (
        f'<a id="mk-back" href="{html.escape(back_link)}">&larr; back to the {html.escape(back_text)}</a>'
        if back_link
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:\">"
        f"<title>{html.escape(title)}</title><style>{_asset('viewer.css')}</style></head><body>"
        f"<header>{back}<h1>{html.escape(title)}</h1>"
        '<p class="mk-banner">Research software, not a medical device: check every contour.</p></header>'
        '<main id="mk-viewer" data-ready="0" data-slice="-1"><p id="mk-loading">Loading the viewer… '
        "(it needs JavaScript; nothing is downloaded)</p></main>"
        f'<script type="application/json" id="mk-data">{data}</script>'
        f"<script>{_asset('viewer.js')}</script></body></html>\n"
    )


def write_viewer(
    path: str | Path,
    payload: Mapping[str, Any],
    *,
    back_link: str | None = None,
    back_text: str = "report",
) -> Path:
    """Write one self-contained viewer page (inline CSS + JavaScript + data; nothing fetched at view time).

    Args:
        path: the HTML file (its folder is created).
        payload: :func:`viewer_payload`'s result.
        back_link: optional relative link shown at the top (e.g. ``../report.html#patient-P01``).
        back_text: the link's text ("back to the <back_text>").

    Returns:
        The path written (atomically).

    The page: axial slices (mouse wheel, arrow keys, slider, Home / End, PageUp / PageDown),
    lung (W1500/L-600) and mediastinal (W400/L40) windows (key ``w``), each lesion's contour as
    an outline in its colour (key ``c``), probability (``p``) and attention (``a``) maps
    (disabled with a note when absent), timepoints side by side or one at a time (keys ``0``-``9``),
    a linked cursor (mouse, or Shift + arrow keys), slice / position (mm) / HU read-outs and a
    table of volumes per timepoint whose rows jump to the lesion; ``#t=<k>&lesion=<id>`` in the URL
    does the same on load.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(target, render_viewer(payload, back_link=back_link, back_text=back_text))


def write_segmentation_viewer(segmentation: Any, path: str | Path, *, title: str | None = None) -> Path:
    """The viewer of one :class:`mkunet.segmentation.infer.Segmentation` (``mkunet segment --viewer``): its CT, the
    contour (``GTV``), the probability map and, when computed, the finest attention map.

    Returns:
        The path written (:func:`write_viewer`).
    """
    vol = segmentation.volume
    att = segmentation.attention[0] if segmentation.attention else None
    tp = ViewerTimepoint(
        volume=vol,
        lesions={"GTV": np.asarray(segmentation.mask, dtype=bool)},
        label="scan",
        volume_cm3=float(segmentation.voxel_volume_cm3),
        probability=segmentation.probability,
        attention=att,
        note="; ".join(segmentation.notes),
    )
    name = vol.patient_id or (Path(vol.source[0]).name if vol.source else "")
    payload = viewer_payload([tp], patient_id=name or "", title=title or f"mkunet segment: {name or 'scan'}")
    return write_viewer(path, payload)
