"""Low-level vectorised rasterisation helpers shared by the synthetic-CT generator.

Conventions: arrays (z, y, x); spacing (z, y, x) in mm; points (x, y, z) in mm in the
patient frame (LPS: +x patient left, +y posterior, +z superior).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Grid", "smooth_field", "ramp", "render_segments"]


@dataclass(frozen=True)
class Grid:
    """A scan grid: ``shape`` (z, y, x) voxels, ``spacing`` (z, y, x) mm, ``origin`` (x, y, z) mm
    of voxel [0, 0, 0]; identity direction (axial, LPS)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1-D float32 coordinates (x, y, z) in mm of the voxel centres along each axis."""
        nz, ny, nx = self.shape
        sz, sy, sx = self.spacing
        ox, oy, oz = self.origin
        x = (ox + sx * np.arange(nx)).astype(np.float32)
        y = (oy + sy * np.arange(ny)).astype(np.float32)
        z = (oz + sz * np.arange(nz)).astype(np.float32)
        return x, y, z

    def broadcast(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coordinates (x, y, z) mm shaped (1,1,X), (1,Y,1), (Z,1,1) for broadcasting."""
        x, y, z = self.axes()
        return x[None, None, :], y[None, :, None], z[:, None, None]


def ramp(signed_distance: np.ndarray, width: float | np.ndarray) -> np.ndarray:
    """Partial-volume occupancy (0..1) of a voxel whose centre lies at ``signed_distance`` mm
    (negative inside) from a locally planar surface, for a voxel of extent ``width`` mm
    across the surface: ``clip(0.5 - d / width, 0, 1)`` (exact for a plane and a box voxel
    when the plane is aligned with a voxel face)."""
    out = np.asarray(signed_distance, dtype=np.float32) / np.float32(-1.0) / np.asarray(width, np.float32)
    out += np.float32(0.5)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _upsample_axis(a: np.ndarray, axis: int, factor: int, n_out: int) -> np.ndarray:
    """Linear interpolation of ``a`` along ``axis`` by an integer ``factor``, trimmed to ``n_out``."""
    if factor == 1:
        return np.take(a, np.arange(n_out), axis=axis)
    a = np.moveaxis(a, axis, -1)
    w = np.arange(factor, dtype=np.float32) / factor
    lo = a[..., :-1, None]
    hi = a[..., 1:, None]
    out = lo + (hi - lo) * w
    out = out.reshape(*a.shape[:-1], -1)[..., :n_out]
    return np.moveaxis(out, -1, axis)


def smooth_field(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    corr_mm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A smooth Gaussian random field, zero mean, unit SD, correlation length ~``corr_mm``.

    White noise on a coarse grid (integer sub-sampling factor per axis, step about
    ``corr_mm / 2`` mm), smoothed, then linearly interpolated onto the full grid.

    Args:
        shape: output shape (z, y, x).
        spacing: (z, y, x) voxel size in mm.
        corr_mm: correlation length in mm.
        rng: seeded generator.

    Returns:
        float32 array of ``shape``.
    """
    from scipy import ndimage as ndi

    factors = [max(1 if axis == 0 else 2, int(round(corr_mm / 2.0 / s))) for axis, s in enumerate(spacing)]
    coarse_shape = tuple(int(np.ceil(n / f)) + 1 for n, f in zip(shape, factors))
    c = rng.standard_normal(coarse_shape, dtype=np.float32)
    c = ndi.gaussian_filter(c, 1.0, mode="wrap", truncate=2.5)
    c /= max(float(c.std()), 1e-6)
    out = c
    for axis in (0, 1, 2):
        out = _upsample_axis(out, axis, factors[axis], shape[axis])
    return np.ascontiguousarray(out, dtype=np.float32)


def _perp_width(direction: np.ndarray, spacing_xyz: np.ndarray) -> float:
    """RMS voxel extent (mm) perpendicular to a unit ``direction`` (x, y, z)."""
    s2 = spacing_xyz**2
    along = float(np.sum(direction**2 * s2))
    return float(np.sqrt(max((s2.sum() - along) / 2.0, 1e-6)))


def render_segments(
    grid: Grid,
    p0: np.ndarray,
    p1: np.ndarray,
    r0: np.ndarray,
    r1: np.ndarray,
    out: np.ndarray | None = None,
    inner_offset: float | np.ndarray | None = None,
    out_inner: np.ndarray | None = None,
    paint: tuple[np.ndarray, float] | None = None,
    weight2d: np.ndarray | None = None,
) -> np.ndarray | None:
    """Rasterise tapered cylinders (capsules) with analytic partial volume, max-combined.

    Each segment is processed inside its own bounding box only, so the cost grows with
    the volume of the tubes, not of the image.

    Args:
        grid: scan grid.
        p0, p1: (n, 3) end points (x, y, z) mm.
        r0, r1: (n,) radii mm at p0 and p1 (linear taper).
        out: float32 (z, y, x) occupancy accumulator (max-combined); created when None.
        inner_offset: when given, also rasterise a lumen of radius ``r - inner_offset``
            into ``out_inner`` (airways: wall = out, lumen = out_inner).
        out_inner: accumulator for the lumen.

        paint: ``(image, value)``: instead of accumulating occupancy, paint each tube into
            ``image`` in place, ``image += occ * (value - image)`` inside its bounding box
            (overlaps of tubes of the same value converge to ``value``); returns None.
        weight2d: optional (y, x) factor multiplied into the occupancy (e.g. a region mask).

    Returns:
        ``out``, occupancy in [0, 1] (None when painting). Thin tubes (radius << voxel) get occupancy scaled by
        ``min(1, 2 r / w)`` (w = voxel extent across the tube), i.e. their partial volume.
    """
    if out is None and paint is None:
        out = np.zeros(grid.shape, np.float32)
    sz, sy, sx = grid.spacing
    ox, oy, oz = grid.origin
    nz, ny, nx = grid.shape
    sp_xyz = np.array([sx, sy, sz])
    org = np.array([ox, oy, oz])
    dims = np.array([nx, ny, nz])
    p0 = np.atleast_2d(np.asarray(p0, float))
    p1 = np.atleast_2d(np.asarray(p1, float))
    r0 = np.broadcast_to(np.asarray(r0, float), (len(p0),))
    r1 = np.broadcast_to(np.asarray(r1, float), (len(p0),))
    for k in range(len(p0)):
        a, b = p0[k], p1[k]
        rmax = max(r0[k], r1[k])
        lo = np.minimum(a, b) - rmax - sp_xyz
        hi = np.maximum(a, b) + rmax + sp_xyz
        ilo = np.maximum(np.floor((lo - org) / sp_xyz).astype(int), 0)
        ihi = np.minimum(np.ceil((hi - org) / sp_xyz).astype(int) + 1, dims)
        if np.any(ihi <= ilo):
            continue
        xs = (org[0] + sp_xyz[0] * np.arange(ilo[0], ihi[0])).astype(np.float32)[None, None, :]
        ys = (org[1] + sp_xyz[1] * np.arange(ilo[1], ihi[1])).astype(np.float32)[None, :, None]
        zs = (org[2] + sp_xyz[2] * np.arange(ilo[2], ihi[2])).astype(np.float32)[:, None, None]
        d = b - a
        length2 = float(d @ d)
        dx, dy, dz = (xs - a[0]), (ys - a[1]), (zs - a[2])
        if length2 > 1e-12:
            t = (dx * d[0] + dy * d[1] + dz * d[2]) / length2
            np.clip(t, 0.0, 1.0, out=t)
        else:
            t = np.zeros((1, 1, 1), np.float32)
        ex, ey, ez = dx - t * d[0], dy - t * d[1], dz - t * d[2]
        dist = np.sqrt(ex * ex + ey * ey + ez * ez)
        radius = (r0[k] + (r1[k] - r0[k]) * t).astype(np.float32)
        unit = d / np.sqrt(length2) if length2 > 1e-12 else np.array([0.0, 0.0, 1.0])
        w = _perp_width(unit, sp_xyz)
        occ = ramp(dist - radius, w)
        occ *= np.minimum(1.0, 2.0 * radius / w)
        sl = (slice(ilo[2], ihi[2]), slice(ilo[1], ihi[1]), slice(ilo[0], ihi[0]))
        if weight2d is not None:
            occ *= weight2d[sl[1], sl[2]]
        if paint is not None:
            target = paint[0][sl]
            target += occ * (np.float32(paint[1]) - target)
            continue
        np.maximum(out[sl], occ, out=out[sl])
        if inner_offset is not None and out_inner is not None:
            off = float(np.broadcast_to(np.asarray(inner_offset, float), (len(p0),))[k])
            rin = np.maximum(radius - off, 0.0)
            occ_in = ramp(dist - rin, w)
            occ_in *= np.minimum(1.0, 2.0 * rin / w)
            np.maximum(out_inner[sl], occ_in, out=out_inner[sl])
    return out
