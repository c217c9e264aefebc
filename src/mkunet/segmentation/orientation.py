"""One canonical orientation for segmentation: the input's array permuted and flipped to LPS axial.

The lesion model (:mod:`mkunet.segmentation.lesion`: slice hulls, rib cage, the part-solid
shell) and the detector (:mod:`mkunet.segmentation.candidates`: the lungs' slice outline,
their left-right midline) read array axis 0 as the cranio-caudal axis and axis 2 as the
patient's left-right axis. Local DICOM, NIfTI and NRRD files come in any orientation
(coronal or sagittal series, prone, feet-first), so the segmentation entry points
(:func:`mkunet.segmentation.infer.segment`, :func:`mkunet.segmentation.infer.segment_timepoints`
and :func:`mkunet.segmentation.candidates.detect_lesions`) run on one canonical grid and
hand their results back on the user's own grid (decorator :func:`canonical_orientation`).

**The canonical orientation** is :data:`CANONICAL` = ``"LPS"`` in SimpleITK's
``DICOMOrient`` code (each letter names where the image index axis x, y, z *increases
towards*): the direction matrix is the identity for an axis-aligned scan, and the array
``(z, y, x)`` of a canonical :class:`~mkunet.volume.Volume` is

* axis 0 (z): axial slices, from inferior (slice 0, feet) to superior (head);
* axis 1 (y): rows, from anterior to posterior;
* axis 2 (x): columns, from the patient's right to the patient's left.

This is how a head-first supine axial series reads, so such a scan (every scan the
project's tests and synthetic data use) is already canonical: the entry points then run
on it unchanged, with no copy and bit-identical results.

**Exact, no interpolation.** Reorienting is a permutation of the array axes and a
reversal of some of them (:class:`Reorientation`); the voxel values are not touched, the
canonical volume's spacing, origin and direction are set so that every voxel keeps its
physical position (mm, LPS), and the way back (:meth:`Reorientation.to_input`) restores
the input's array exactly. Masks, probability and attention maps come back voxel for voxel
on the input grid; voxel indices (a seed or candidate centre (z, y, x), a crop box) are
mapped by :meth:`Reorientation.index_to_input` and :meth:`Reorientation.box_to_input`;
points in mm need no mapping.

**Oblique scans.** As ``DICOMOrient``, each image axis goes to the physical axis it is
nearest to (largest absolute direction cosine first, so a 45 degree tie still gives a
permutation); nothing is resampled. The segmentation then runs on the permuted array,
whose slices are tilted by the obliquity (a 30 degree gantry tilt stays a 30 degree tilt
off axial), and world coordinates stay right because the canonical volume carries the
input's true direction cosines, permuted: ``Volume.index_to_physical`` of the canonical
grid gives the same mm as the input grid for the same voxel.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import numpy as np

from mkunet.volume import Volume, same_grid

__all__ = [
    "CANONICAL",
    "Reorientation",
    "orientation_code",
    "reorientation",
    "to_canonical",
    "canonical_orientation",
    "roi_to_canonical",
    "segmentation_to_input",
    "candidates_to_input",
]

CANONICAL = "LPS"
"""The canonical orientation (SimpleITK ``DICOMOrient`` code): array (z, y, x) runs inferior to
superior, anterior to posterior, right to left; identity direction for an axis-aligned scan."""

_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # physical x, y, z: (towards -, towards +)

BoxIdx = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
P = ParamSpec("P")
R = TypeVar("R")


def _nearest_axes(direction: np.ndarray) -> tuple[list[int], list[float]]:
    """For each image axis j (x, y, z): the physical axis p (0 = x, 1 = y, 2 = z) it is nearest, and the sign.

    Greedy on the largest absolute direction cosine, so the result is always a permutation.
    """
    d = np.abs(np.asarray(direction, dtype=np.float64).reshape(3, 3))
    physical = [-1, -1, -1]
    free_p, free_j = [0, 1, 2], [0, 1, 2]
    for _ in range(3):
        p, j = max(((p, j) for p in free_p for j in free_j), key=lambda pj: (d[pj], -pj[1], -pj[0]))
        physical[j] = p
        free_p.remove(p)
        free_j.remove(j)
    signs = [1.0 if direction[physical[j], j] >= 0 else -1.0 for j in range(3)]
    return physical, signs


def orientation_code(volume_or_direction: Volume | np.ndarray) -> str:
    """The nearest axis-aligned orientation of a volume (or a 3x3 direction matrix) as a 3-letter code.

    The code of SimpleITK's ``DICOMOrient``: letter j names where image index axis j (x, y, z,
    i.e. array axes 2, 1, 0) increases towards: ``"LPS"`` for a head-first supine axial scan
    (identity direction), ``"LIP"`` for a coronal DICOM series, ``"PIR"`` for a sagittal one.

    Example:
        >>> import numpy as np
        >>> orientation_code(np.diag([-1.0, -1.0, 1.0]))  # head-first prone
        'RAS'
    """
    direction = volume_or_direction.direction if isinstance(volume_or_direction, Volume) else volume_or_direction
    direction = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    physical, signs = _nearest_axes(direction)
    return "".join(_LETTERS[p][int(s > 0)] for p, s in zip(physical, signs))


@dataclass(frozen=True)
class Reorientation:
    """The exact map between an input array (z, y, x) and its canonical (:data:`CANONICAL`) array.

    ``canonical = flip(transpose(input, axes), flip)``: canonical array axis ``a`` holds input
    array axis ``axes[a]``, reversed when ``flip[a]``. No value is interpolated; both directions
    are views plus (for :meth:`to_canonical` / :meth:`to_input` with ``copy=True``) one copy.

    Attributes:
        input_shape: the input array's shape (z, y, x), voxels.
        axes: for each canonical array axis (z, y, x), the input array axis it comes from.
        flip: for each canonical array axis, True when its order is reversed.
        input_code: the input's nearest orientation code (:func:`orientation_code`).
    """

    input_shape: tuple[int, int, int]
    axes: tuple[int, int, int] = (0, 1, 2)
    flip: tuple[bool, bool, bool] = (False, False, False)
    input_code: str = CANONICAL

    def __post_init__(self) -> None:
        if sorted(self.axes) != [0, 1, 2]:
            raise ValueError(f"Reorientation.axes must be a permutation of (0, 1, 2), got {self.axes!r}.")
        if len(self.flip) != 3 or len(self.input_shape) != 3:
            raise ValueError(
                f"Reorientation needs 3 flips and a 3-D input_shape, got flip={self.flip!r}, "
                f"input_shape={self.input_shape!r}."
            )

    @classmethod
    def of(cls, volume: Volume) -> Reorientation:
        """The reorientation that brings ``volume`` to :data:`CANONICAL` (nearest axis-aligned, see the module doc)."""
        physical, signs = _nearest_axes(volume.direction)
        axes, flip = [0, 0, 0], [False, False, False]
        for j in range(3):  # image axis j (x, y, z) is array axis 2 - j; physical axis p is canonical array 2 - p
            a = 2 - physical[j]
            axes[a] = 2 - j
            flip[a] = signs[j] < 0
        return cls(
            input_shape=volume.shape,
            axes=tuple(axes),  # type: ignore[arg-type]
            flip=tuple(flip),  # type: ignore[arg-type]
            input_code=orientation_code(volume),
        )

    # ------------------------------------------------------------------ properties
    @property
    def is_identity(self) -> bool:
        """True when the input array already is canonical (nothing to permute or flip)."""
        return self.axes == (0, 1, 2) and not any(self.flip)

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        """Shape (z, y, x) of the canonical array."""
        return tuple(self.input_shape[a] for a in self.axes)  # type: ignore[return-value]

    def _check(self, shape: Sequence[int], expected: tuple[int, int, int], what: str) -> None:
        if tuple(shape[-3:]) != expected or len(shape) < 3:
            raise ValueError(f"{what}: the array's last 3 axes {tuple(shape)} must be (z, y, x) = {expected}.")

    # ------------------------------------------------------------------ arrays
    def to_canonical(self, array: np.ndarray, *, copy: bool = True) -> np.ndarray:
        """An array (..., z, y, x) on the input grid -> the same values on the canonical grid (exact).

        Leading axes (channels) are kept. ``copy=False`` returns a (possibly non-contiguous) view.
        """
        array = np.asarray(array)
        self._check(array.shape, self.input_shape, "to_canonical")
        lead = array.ndim - 3
        out = np.transpose(array, (*range(lead), *(lead + a for a in self.axes)))
        flips = tuple(lead + a for a in range(3) if self.flip[a])
        if flips:
            out = np.flip(out, axis=flips)
        return np.ascontiguousarray(out) if copy else out

    def to_input(self, array: np.ndarray, *, copy: bool = True) -> np.ndarray:
        """An array (..., z, y, x) on the canonical grid -> the same values on the input grid (exact)."""
        array = np.asarray(array)
        self._check(array.shape, self.canonical_shape, "to_input")
        lead = array.ndim - 3
        flips = tuple(lead + a for a in range(3) if self.flip[a])
        out = np.flip(array, axis=flips) if flips else array
        inverse = np.argsort(self.axes)
        out = np.transpose(out, (*range(lead), *(lead + int(a) for a in inverse)))
        return np.ascontiguousarray(out) if copy else out

    # ------------------------------------------------------------------ indices and boxes
    def index_to_canonical(self, index_zyx: np.ndarray | Sequence[float]) -> np.ndarray:
        """Input array indices (..., 3) (z, y, x), continuous allowed -> canonical indices (..., 3)."""
        idx = np.asarray(index_zyx, dtype=np.float64)
        out = idx[..., list(self.axes)].copy()
        for a in range(3):
            if self.flip[a]:
                out[..., a] = self.canonical_shape[a] - 1 - out[..., a]
        return out

    def index_to_input(self, index_zyx: np.ndarray | Sequence[float]) -> np.ndarray:
        """Canonical array indices (..., 3) (z, y, x), continuous allowed -> input indices (..., 3)."""
        idx = np.asarray(index_zyx, dtype=np.float64).copy()
        for a in range(3):
            if self.flip[a]:
                idx[..., a] = self.canonical_shape[a] - 1 - idx[..., a]
        out = np.empty_like(idx)
        out[..., list(self.axes)] = idx
        return out

    def box_to_canonical(self, box: Sequence[Sequence[float]]) -> tuple[tuple[Any, Any], ...]:
        """A half-open box ((z0, z1), (y0, y1), (x0, x1)) in input voxels -> the same voxels' box on the canonical grid.

        A reversed axis maps ``[a, b)`` to ``[n - b, n - a)``, so integer boxes stay integer and
        the floor/ceil of a fractional box select the same voxels on both grids.
        """
        out = []
        for a in range(3):
            lo, hi = box[self.axes[a]]
            n = self.canonical_shape[a]
            out.append((n - hi, n - lo) if self.flip[a] else (lo, hi))
        return tuple(out)

    def box_to_input(self, box: Sequence[Sequence[float]]) -> tuple[tuple[Any, Any], ...]:
        """A half-open box in canonical voxels -> the same voxels' box on the input grid."""
        out: list[tuple[Any, Any]] = [(0, 0)] * 3
        for a in range(3):
            lo, hi = box[a]
            n = self.canonical_shape[a]
            out[self.axes[a]] = (n - hi, n - lo) if self.flip[a] else (lo, hi)
        return tuple(out)

    # ------------------------------------------------------------------ volumes
    def volume_to_canonical(self, volume: Volume) -> Volume:
        """``volume`` on the canonical grid: same voxels, same physical positions (mm), same identity.

        ``source`` (one file per slice) is kept, reversed when the slices are, only when the slice axis
        stays the slice axis; a coronal or sagittal series' files are not axial slices, so it is then
        empty.
        """
        if volume.shape != self.input_shape:
            raise ValueError(
                f"volume_to_canonical: the volume's shape {volume.shape} differs from this reorientation's "
                f"input_shape {self.input_shape}; use Reorientation.of(volume)."
            )
        if self.is_identity:
            return volume
        origin = volume.index_to_physical(self.index_to_input(np.zeros(3)))  # the new voxel [0, 0, 0], mm
        direction = np.empty((3, 3))
        for a in range(3):  # canonical array axis a is canonical image axis 2 - a
            j = 2 - self.axes[a]  # the input image axis it comes from
            direction[:, 2 - a] = volume.direction[:, j] * (-1.0 if self.flip[a] else 1.0)
        source: tuple[Any, ...] = ()
        if self.axes[0] == 0 and len(volume.source) == volume.shape[0]:
            source = tuple(reversed(volume.source)) if self.flip[0] else volume.source
        return dataclasses.replace(
            volume,
            array=self.to_canonical(volume.array),
            spacing=(volume.spacing[self.axes[0]], volume.spacing[self.axes[1]], volume.spacing[self.axes[2]]),
            origin=(float(origin[0]), float(origin[1]), float(origin[2])),
            direction=direction,
            source=source,
            meta=dict(volume.meta),
        )

    def describe(self) -> str:
        """One line for notes: what was done to the input."""
        return (
            f"the {self.input_code} input was segmented on its {CANONICAL} (axial, head-first supine) "
            "reorientation, an exact permutation and flip of its voxels; the results are on the input's grid"
        )


def reorientation(volume: Volume) -> Reorientation:
    """:meth:`Reorientation.of`: how ``volume`` maps onto the canonical grid."""
    return Reorientation.of(volume)


def to_canonical(volume: Volume) -> tuple[Volume, Reorientation]:
    """``volume`` on the canonical (:data:`CANONICAL`) grid, and the map back.

    Returns:
        (canonical volume, :class:`Reorientation`). A canonical input comes back as the same
        object (``reorientation.is_identity``).

    Example:
        >>> import numpy as np
        >>> from mkunet.volume import Volume
        >>> coronal = Volume(np.zeros((4, 3, 2)), (1.0, 2.0, 3.0), direction=[[1, 0, 0], [0, 0, 1], [0, -1, 0]])
        >>> canonical, back = to_canonical(coronal)
        >>> canonical.shape, canonical.spacing, back.input_code
        ((3, 4, 2), (2.0, 1.0, 3.0), 'LIP')
    """
    if not isinstance(volume, Volume):
        raise ValueError(f"`volume` must be a mkunet Volume, got {type(volume).__name__} (use mkunet.io.read_volume).")
    back = Reorientation.of(volume)
    return back.volume_to_canonical(volume), back


# ----------------------------------------------------------------------------- regions of interest
def roi_to_canonical(roi: Any, volume: Volume, canonical: Volume, back: Reorientation) -> Any:
    """A region of interest given on ``volume`` (the user's grid) as the same region on ``canonical``.

    * ``Seed`` in mm, ``Box`` in mm: unchanged (physical coordinates do not depend on the grid);
    * ``Seed(..., units="voxel")``: the point (x, y, z) is a voxel of the user's grid; it becomes
      the same voxel of the canonical grid (still ``units="voxel"``);
    * ``Box(..., units="voxel")``: the same voxels on the canonical grid (:meth:`Reorientation.box_to_canonical`);
    * ``PreviousMask`` drawn on the user's grid (an array with ``reference`` on it, or a label
      :class:`Volume` on it): the mask reoriented, exactly; a mask on another grid is left as it is
      (it is resampled through physical space, by nearest neighbour, onto whatever grid runs).

    ROIs are recognised by their fields (this module must not import :mod:`mkunet.segmentation.infer`).
    """
    if roi is None or back.is_identity or not hasattr(roi, "__dataclass_fields__"):
        return roi
    units = getattr(roi, "units", None)
    if hasattr(roi, "point") and units == "voxel":  # Seed in voxels (x, y, z)
        zyx = back.index_to_canonical(np.asarray(roi.point, dtype=np.float64)[::-1])
        return dataclasses.replace(roi, point=tuple(float(v) for v in zyx[::-1]))
    if all(hasattr(roi, name) for name in ("z", "y", "x")) and units == "voxel":  # Box in voxels
        z, y, x = back.box_to_canonical((roi.z, roi.y, roi.x))
        return dataclasses.replace(roi, z=z, y=y, x=x)
    if hasattr(roi, "mask") and hasattr(roi, "reference"):  # PreviousMask
        mask = roi.mask
        if isinstance(mask, Volume):
            if mask.shape == volume.shape and same_grid(mask, volume):
                return dataclasses.replace(roi, mask=back.volume_to_canonical(mask))
            return roi
        ref = roi.reference
        if ref is not None and np.shape(mask) == volume.shape and same_grid(ref, volume):
            return dataclasses.replace(roi, mask=back.to_canonical(np.asarray(mask)), reference=canonical)
    return roi


# ----------------------------------------------------------------------------- results
def candidates_to_input(candidates: Sequence[Any], back: Reorientation) -> list[Any]:
    """Candidates found on the canonical grid with ``centroid_zyx`` on the input grid (``centroid_mm`` unchanged)."""
    if back.is_identity:
        return list(candidates)
    out = []
    for cand in candidates:
        zyx = back.index_to_input(np.asarray(cand.centroid_zyx, dtype=np.float64))
        out.append(dataclasses.replace(cand, centroid_zyx=tuple(float(v) for v in zyx)))
    return out


def _lesion_to_input(lesion: Any, back: Reorientation) -> Any:
    if lesion is None:
        return None
    return dataclasses.replace(
        lesion,
        mask=back.to_input(lesion.mask),
        crop_box=back.box_to_input(lesion.crop_box),
        core_zyx=back.index_to_input(lesion.core_zyx),
        notes=list(lesion.notes),
    )


def segmentation_to_input(seg: Any, volume: Volume, back: Reorientation, roi_text: str | None = None) -> Any:
    """A ``Segmentation`` computed on the canonical grid, brought back to ``volume``'s (the user's) grid.

    ``mask``, ``probability`` and ``attention`` maps are reoriented exactly; ``volume`` is the
    user's volume; ``roi_box``, the lesion model's ``crop_box``, ``mask`` and ``core_zyx``, and
    the candidates' ``centroid_zyx`` are in the user's voxels. Voxel indices quoted *inside note
    texts* stay those of the canonical grid, which a note names. ``roi_text`` replaces the ROI
    description computed on the canonical grid (the user's own ROI's description).
    """
    if back.is_identity:
        return seg
    notes = list(seg.notes)
    notes.append(back.describe())
    changes: dict[str, Any] = dict(
        mask=back.to_input(seg.mask),
        probability=back.to_input(seg.probability),
        volume=volume,
        notes=notes,
    )
    if getattr(seg, "attention", None) is not None:
        changes["attention"] = [back.to_input(a) for a in seg.attention]
    if getattr(seg, "roi_box", None) is not None:
        changes["roi_box"] = tuple((int(a), int(b)) for a, b in back.box_to_input(seg.roi_box))
    if getattr(seg, "lesion", None) is not None:
        changes["lesion"] = _lesion_to_input(seg.lesion, back)
    if getattr(seg, "candidates", None):
        changes["candidates"] = candidates_to_input(seg.candidates, back)
    if roi_text is not None:
        changes["roi"] = roi_text
    return dataclasses.replace(seg, **changes)


# ----------------------------------------------------------------------------- the entry points' hook
def _check_seeds_on_input(rois: Sequence[Any], volumes: Sequence[Volume], params: Any) -> None:
    """Refuse bad seeds with the user's own voxel indices in the message (as the entry points do)."""
    from mkunet.segmentation.lesion import LesionParams, check_seed

    for k, (roi, vol) in enumerate(zip(rois, volumes)):
        if roi is None or not (hasattr(roi, "point") and hasattr(roi, "index_zyx")):
            continue
        if getattr(roi, "units", None) not in ("mm", "voxel"):
            continue  # the entry point names the bad units
        try:
            point = np.asarray(roi.point, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if point.shape != (3,) or not np.all(np.isfinite(point)):
            continue
        suffix = "" if len(volumes) == 1 else f" of timepoint {k}"
        check_seed(vol, roi.index_zyx(vol), f"{roi.describe()}{suffix}", params or LesionParams())


def canonical_orientation(volume: str = "volume", roi: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a segmentation entry point so that it runs on the canonical grid and answers on the user's.

    Args:
        volume: name of the argument holding the :class:`Volume` (``segment``, ``detect_lesions``)
            or the sequence of volumes (``segment_timepoints``).
        roi: name of the argument holding the ROI (or the per-volume sequence of ROIs); None when
            the entry point takes none.

    When every volume already is canonical (a head-first supine axial scan), the function is
    called as it is. Otherwise the volumes and ROIs are reoriented (:func:`to_canonical`,
    :func:`roi_to_canonical`), seeds are validated on the user's grid first (so an error quotes
    the user's voxel indices), the function runs, and its result is brought back by its type:
    a ``Segmentation`` (:func:`segmentation_to_input`), a ``LongitudinalSegmentation`` (each of its
    segmentations), or a list of ``Candidate`` (:func:`candidates_to_input`). Inner calls receive
    canonical volumes, on which the hook does nothing.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return _forward_warnings(run, args, kwargs)

        def run(*args: Any, **kwargs: Any) -> R:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return func(*args, **kwargs)  # the function reports the bad call
            given: Any = bound.arguments.get(volume)
            many = not isinstance(given, Volume)
            if many:  # a sequence of volumes (a generator is consumed once, here, and passed on as a list)
                try:
                    given = bound.arguments[volume] = list(given)
                except (TypeError, KeyError):
                    return func(*bound.args, **bound.kwargs)  # the function validates its input
            items = [given] if not many else list(given)
            volumes: list[Volume] = [v for v in items if isinstance(v, Volume)]
            if not volumes or len(volumes) != len(items):
                return func(*bound.args, **bound.kwargs)  # the function validates its input
            backs = [Reorientation.of(v) for v in volumes]
            if all(b.is_identity for b in backs):
                return func(*bound.args, **bound.kwargs)
            rois_given: Any = bound.arguments.get(roi) if roi is not None else None
            if many:
                if rois_given is not None:
                    rois_given = bound.arguments[roi] = list(rois_given)  # type: ignore[index]
                rois = list(rois_given) if rois_given is not None else [None] * len(volumes)
                if len(rois) != len(volumes):
                    return func(*bound.args, **bound.kwargs)  # the function names the mismatch
            else:
                rois = [rois_given]
            extra = bound.arguments.get("segment_kwargs") or {}
            params = bound.arguments.get("lesion_params", extra.get("lesion_params"))
            _check_seeds_on_input(rois, volumes, params)
            canon = [b.volume_to_canonical(v) for b, v in zip(backs, volumes)]
            canon_rois = [roi_to_canonical(r, v, c, b) for r, v, c, b in zip(rois, volumes, canon, backs)]
            bound.arguments[volume] = canon if many else canon[0]
            if roi is not None and rois_given is not None:
                bound.arguments[roi] = canon_rois if many else canon_rois[0]
            result = func(*bound.args, **bound.kwargs)
            return _result_to_input(result, volumes, backs, rois, canon_rois)

        return wrapper

    return decorate


def _forward_warnings(run: Callable[..., R], args: Any, kwargs: Any) -> R:
    """``run(*args, **kwargs)``; a warning the entry point aims at its caller (its ``stacklevel`` lands in
    this module, one frame short) is issued again at the caller's line, the others as they came."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:  # type: ignore[assignment]
            warnings.simplefilter("always")
            return run(*args, **kwargs)
    finally:
        for w in caught:
            if w.filename == __file__:
                warnings.warn(w.message, w.category, stacklevel=3)  # here, the wrapper, its caller
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _roi_text(user_roi: Any, canon_roi: Any, text: str) -> str | None:
    """The user's ROI's description where the result names the canonical ROI's."""
    if user_roi is None or user_roi is canon_roi or not hasattr(user_roi, "describe"):
        return None
    return user_roi.describe() if text == canon_roi.describe() else None


def _result_to_input(
    result: Any, volumes: list[Volume], backs: list[Reorientation], rois: list[Any], canon_rois: list[Any]
) -> Any:
    if isinstance(result, list):  # detect_lesions: the candidates
        return candidates_to_input(result, backs[0])
    if hasattr(result, "segmentations"):  # segment_timepoints
        segs = [
            segmentation_to_input(s, v, b, _roi_text(r, c, s.roi))
            for s, v, b, r, c in zip(result.segmentations, volumes, backs, rois, canon_rois)
        ]
        return dataclasses.replace(result, segmentations=segs)
    if hasattr(result, "mask") and hasattr(result, "probability"):  # segment
        return segmentation_to_input(result, volumes[0], backs[0], _roi_text(rois[0], canon_rois[0], result.roi))
    raise TypeError(f"canonical_orientation: cannot bring a {type(result).__name__} back to the input grid.")
