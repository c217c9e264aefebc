"""Synthetic lung tumours: shape, placement, HU and rasterisation with partial volume.

Shape (local tumour frame, mm): a lobulated "Gaussian random sphere"-like radial function
``r(u) = R0 * (1 + sum_k a_k exp(kappa_k (u . d_k - 1)))`` (von Mises-Fisher lobes) on an
anisotropically stretched and rotated frame, optionally with VICTRE-like spicules
(tapered, occasionally branching tubes leaving the surface). ``R0`` is solved so that the
analytic volume of the body, ``(1/3) * integral r(u)^3 dOmega * prod(stretch)``, equals the
requested volume exactly (spicules excluded).

Types (HU per DOMAIN.md section 3): solid +15..+60 with texture; ground-glass -700..-450
(drawn as ``max(underlying, ggo)`` so vessels stay visible); part-solid = ground-glass body
with a solid component (30-70 % of the radius, off-centre). Optional necrotic core (solid
tumours >= 20 mm): core at 0..+20 HU with an enhancing rim.

Mask rule: the tumour label is the set of voxels whose analytic tumour occupancy (body or
spicule, after clipping to the lung) is >= 0.5, i.e. voxels at least half filled by tumour.
The ground-glass part is tumour. Thin spicules (radius below about a third of the voxel
size) never reach 0.5 and are therefore visible in the image but not labelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mkunet.synth._fields import Grid, ramp, render_segments, smooth_field
from mkunet.synth.anatomy import AnatomyParams, ellipse_sd

__all__ = ["TumourParams", "sample_tumour", "place_tumour", "render_tumour", "KINDS", "CONTACTS", "DIRECTIONS"]

KINDS = ("solid", "part-solid", "ground-glass")
CONTACTS = ("none", "pleura", "mediastinum", "vessel")


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


#: 3000 unit directions (x, y, z) spread evenly over the sphere (Fibonacci lattice), float64
#: (3000, 3): where a tumour's radius function is sampled (its largest radius, its volume).
DIRECTIONS = _fibonacci_sphere(3000)


@dataclass
class TumourParams:
    """One tumour (patient frame, mm / HU). ``radius_unit(u)`` is the radial function for R0 = 1."""

    kind: str
    surface: str  # "lobulated" | "spiculated"
    contact: str
    centre: np.ndarray  # (x, y, z) mm, patient frame
    rotation: np.ndarray  # 3x3, columns = tumour axes in patient frame
    stretch: np.ndarray  # (3,) axis scale factors
    lobe_dirs: np.ndarray  # (K, 3)
    lobe_amps: np.ndarray  # (K,)
    lobe_kappa: np.ndarray  # (K,)
    hu_solid: float
    hu_ggo: float
    texture_sd: float
    texture_mm: float
    solid_offset: np.ndarray  # (3,) in units of R0 (part-solid)
    solid_scale: float
    necrosis: tuple[float, float, float] | None  # (core scale, core HU, rim boost HU)
    spicules: dict[str, np.ndarray] = field(default_factory=dict)  # dir (n,3), length (n,) in R0, radius (n,) mm

    def radius_unit(self, u: np.ndarray) -> np.ndarray:
        """Radial function for R0 = 1 at unit directions ``u`` (..., 3) in the stretched frame."""
        out = np.ones(u.shape[:-1], np.float32)
        for d, a, k in zip(self.lobe_dirs, self.lobe_amps, self.lobe_kappa):
            dot = u[..., 0] * np.float32(d[0]) + u[..., 1] * np.float32(d[1]) + u[..., 2] * np.float32(d[2])
            out += np.float32(a) * np.exp(np.float32(k) * (dot - 1.0))
        return out

    @property
    def unit_volume(self) -> float:
        """Body volume (mm^3) for R0 = 1."""
        r = self.radius_unit(DIRECTIONS.astype(np.float32)).astype(np.float64)
        return float(4.0 * np.pi / 3.0 * np.mean(r**3) * np.prod(self.stretch))

    def r0_for_volume(self, volume_mm3: float) -> float:
        """R0 (mm) giving a body volume of ``volume_mm3``."""
        return float((volume_mm3 / self.unit_volume) ** (1.0 / 3.0))

    def max_extent(self, volume_mm3: float) -> float:
        """Upper bound (mm) of the distance from the centre to any tumour point (spicules included)."""
        r0 = self.r0_for_volume(volume_mm3)
        rmax = float(self.radius_unit(DIRECTIONS.astype(np.float32)).max()) * float(np.max(self.stretch)) * r0
        if len(self.spicules.get("length", ())):
            rmax += float(np.max(self.spicules["length"])) * r0 * float(np.max(self.stretch))
        return rmax

    def to_dict(self) -> dict:
        """JSON-serialisable description."""
        out = {}
        for k, v in self.__dict__.items():
            if isinstance(v, np.ndarray):
                out[k] = v.tolist()
            elif isinstance(v, dict):
                out[k] = {kk: np.asarray(vv).tolist() for kk, vv in v.items()}
            else:
                out[k] = v
        return out


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def sample_tumour(
    rng: np.random.Generator,
    *,
    kind: str | None = None,
    surface: str | None = None,
    contact: str | None = None,
    necrosis: bool | None = None,
    diameter_mm: float = 20.0,
) -> TumourParams:
    """Draw a random tumour (shape, type, HU); the centre is set later by :func:`place_tumour`.

    Args:
        rng: seeded generator.
        kind: "solid" | "part-solid" | "ground-glass"; random (60/25/15 %) when None.
        surface: "lobulated" | "spiculated"; random (65/35 %) when None (ground-glass is
            never spiculated).
        contact: "none" | "pleura" | "mediastinum" | "vessel"; random (40/30/15/15 %).
        necrosis: necrotic core; random when None (30 % of solid tumours >= 20 mm).
        diameter_mm: the typical (largest) equivalent diameter, used for the necrosis draw.
    """
    for name, value, allowed in (
        ("kind", kind, KINDS),
        ("contact", contact, CONTACTS),
        ("surface", surface, ("lobulated", "spiculated")),
    ):
        if value is not None and value not in allowed:
            raise ValueError(f"Tumour `{name}` must be one of {allowed}, got {value!r}.")
    if kind is None:
        kind = str(rng.choice(KINDS, p=[0.6, 0.25, 0.15]))
    if surface is None:
        surface = (
            "lobulated" if kind == "ground-glass" else str(rng.choice(["lobulated", "spiculated"], p=[0.65, 0.35]))
        )
    if contact is None:
        contact = str(rng.choice(CONTACTS, p=[0.4, 0.3, 0.15, 0.15]))
    # lobes: a few broad ones (overall shape) and several narrow ones (lobulation)
    n_broad, n_narrow = int(rng.integers(2, 6)), int(rng.integers(8, 30 if surface == "lobulated" else 16))
    n_lobes = n_broad + n_narrow
    dirs = rng.standard_normal((n_lobes, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    irregular = rng.uniform(0.4, 1.4)  # per-tumour irregularity level
    amps = np.concatenate([rng.uniform(-0.2, 0.45, n_broad), rng.uniform(0.0, 0.8, n_narrow)]) * irregular
    kappa = np.concatenate([rng.uniform(1.5, 5.0, n_broad), rng.uniform(6.0, 30.0, n_narrow)])
    stretch = np.exp(rng.normal(0.0, 0.18, 3))
    stretch /= np.prod(stretch) ** (1 / 3)
    if necrosis is None:
        necrosis = kind == "solid" and diameter_mm >= 20 and rng.random() < 0.3
    spic: dict[str, np.ndarray] = {}
    if surface == "spiculated":
        n = int(rng.integers(5, 18))
        d = rng.standard_normal((n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        spic = {"dir": d, "length": rng.uniform(0.3, 0.9, n), "radius": rng.uniform(0.4, 1.6, n)}
    return TumourParams(
        kind=kind,
        surface=surface,
        contact=contact,
        centre=np.zeros(3),
        rotation=_random_rotation(rng),
        stretch=stretch,
        lobe_dirs=dirs,
        lobe_amps=amps,
        lobe_kappa=kappa,
        hu_solid=float(rng.uniform(15, 60)),
        hu_ggo=float(rng.uniform(-700, -450)),
        texture_sd=float(rng.uniform(6, 22)),
        texture_mm=float(rng.uniform(3, 8)),
        solid_offset=rng.uniform(-0.25, 0.25, 3),
        solid_scale=float(rng.uniform(0.3, 0.7)),
        necrosis=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0, 20)), float(rng.uniform(10, 40)))
        if necrosis
        else None,
        spicules=spic,
    )


def place_tumour(
    tumour: TumourParams, anatomy: AnatomyParams, extent_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """Choose the tumour centre (x, y, z) mm inside a lung according to ``tumour.contact``.

    ``extent_mm`` is the tumour's largest radius over all time points. "none": the whole
    tumour inside the lung when possible; "pleura"/"mediastinum": centre at 0.7-0.95 radius
    from the chest-wall / mediastinal boundary; "vessel": next to a pulmonary vessel of
    radius >= 1.5 mm. When no candidate fits (very large tumours), the deepest point is
    used and the tumour is clipped to the lung when rendered.
    """
    n = 6000
    a, b = anatomy.cavity_a, anatomy.cavity_b
    zlo = min(anatomy.dome_z) + 10.0
    pts = np.stack(
        [rng.uniform(-a, a, n), rng.uniform(-b, b, n), rng.uniform(zlo, anatomy.apex_z - 10.0, n)], 1
    ).astype(np.float32)
    lat, ver = anatomy.lung_sd(pts[:, 0], pts[:, 1], pts[:, 2])
    sd = np.maximum(lat, ver)
    cav = ellipse_sd(pts[:, 0], pts[:, 1], a, b) + 1.5
    med = anatomy.mediastinum - np.abs(pts[:, 1] * 0 + pts[:, 0])
    hx, hy, hz, ha, hb, hc = anatomy.heart
    from mkunet.synth.anatomy import ellipsoid_sd

    heart = -ellipsoid_sd(pts[:, 0] - hx, pts[:, 1] - hy, pts[:, 2] - hz, ha, hb, hc) - 2.0
    contact = tumour.contact
    r = extent_mm
    ok = np.zeros(n, bool)
    if contact == "pleura":
        ok = (sd <= -0.7 * r) & (sd >= -0.95 * r) & (np.abs(cav - sd) < 1.0)
    elif contact == "mediastinum":
        ok = (sd <= -0.7 * r) & (sd >= -0.95 * r) & (np.abs(np.maximum(med, heart) - sd) < 1.0)
    elif contact == "vessel":
        v = anatomy.vessels
        big = np.flatnonzero(v["r1"] >= 1.5)
        if len(big):
            k = big[rng.permutation(len(big))[:200]]
            t = rng.uniform(0.2, 0.8, len(k))[:, None]
            on = v["p0"][k] + t * (v["p1"][k] - v["p0"][k])
            axis = v["p1"][k] - v["p0"][k]
            axis /= np.linalg.norm(axis, axis=1, keepdims=True) + 1e-9
            perp = rng.standard_normal((len(k), 3))
            perp -= np.sum(perp * axis, 1, keepdims=True) * axis
            perp /= np.linalg.norm(perp, axis=1, keepdims=True) + 1e-9
            rv = (v["r0"][k] + v["r1"][k]) / 2
            cand = (on + perp * (0.85 * r + rv[:, None])).astype(np.float32)
            l2, v2 = anatomy.lung_sd(cand[:, 0], cand[:, 1], cand[:, 2])
            sd2 = np.maximum(l2, v2)
            good = np.flatnonzero(sd2 <= -r * 0.9)
            if len(good):
                return cand[good[0]].astype(float)
    if not ok.any():
        ok = sd <= -(r + 2.0)
    if ok.any():
        idx = rng.choice(np.flatnonzero(ok))
    else:
        idx = int(np.argmin(sd))
    return pts[idx].astype(float)


def render_tumour(
    tumour: TumourParams,
    volume_mm3: float,
    grid: Grid,
    hu: np.ndarray,
    lung: np.ndarray,
    rng: np.random.Generator,
    centre: np.ndarray | None = None,
) -> np.ndarray:
    """Paint the tumour of body volume ``volume_mm3`` into ``hu`` (in place) and return its mask.

    Args:
        tumour: from :func:`sample_tumour` with its centre set.
        volume_mm3: body volume (spicules excluded) in mm^3.
        grid: scan grid of ``hu`` (shape (z, y, x), spacing (z, y, x) mm).
        hu: float32 (z, y, x) noise-free image, modified in place.
        lung: float32 (z, y, x) lung occupancy (the tumour is clipped to it).
        rng: generator for the internal texture.
        centre: tumour centre (x, y, z) mm on this grid (defaults to ``tumour.centre``).

    Returns:
        bool mask (z, y, x): voxels with tumour occupancy >= 0.5 (see module docstring).
    """
    c = np.asarray(tumour.centre if centre is None else centre, float)
    r0 = tumour.r0_for_volume(volume_mm3)
    ext = tumour.max_extent(volume_mm3) + 2.0
    sz, sy, sx = grid.spacing
    ox, oy, oz = grid.origin
    sp = np.array([sx, sy, sz])
    org = np.array([ox, oy, oz])
    dims = np.array(grid.shape[::-1])
    ilo = np.maximum(np.floor((c - ext - org) / sp).astype(int), 0)
    ihi = np.minimum(np.ceil((c + ext - org) / sp).astype(int) + 1, dims)
    mask = np.zeros(grid.shape, bool)
    if np.any(ihi <= ilo):
        return mask
    sl = (slice(ilo[2], ihi[2]), slice(ilo[1], ihi[1]), slice(ilo[0], ihi[0]))
    sub = Grid(tuple(int(v) for v in (ihi - ilo)[::-1]), grid.spacing, tuple(org + ilo * sp))
    xs, ys, zs = sub.broadcast()
    px, py, pz = xs - np.float32(c[0]), ys - np.float32(c[1]), zs - np.float32(c[2])
    rot = tumour.rotation.astype(np.float32)
    st = tumour.stretch.astype(np.float32)
    # tumour-frame coordinates q = R^T p, stretched frame q' = q / s
    q = [(px * rot[0, i] + py * rot[1, i] + pz * rot[2, i]) / st[i] for i in range(3)]
    rho_s = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) + np.float32(1e-6)
    rho = np.sqrt(px * px + py * py + pz * pz) + np.float32(1e-6)
    u = np.stack([q[0] / rho_s, q[1] / rho_s, q[2] / rho_s], axis=-1)
    r_unit = tumour.radius_unit(u)
    scale = rho / rho_s  # mm per stretched unit along this ray
    width = np.sqrt((px / rho * sx) ** 2 + (py / rho * sy) ** 2 + (pz / rho * sz) ** 2)
    sd_body = (rho_s - r0 * r_unit) * scale
    lung_sub = lung[sl]
    f_body = ramp(sd_body, width) * np.minimum(lung_sub * 1.15, 1.0)
    # spicules (patient frame tubes)
    f_spic = np.zeros(sub.shape, np.float32)
    if len(tumour.spicules.get("dir", ())):
        d = tumour.spicules["dir"]
        base_unit = tumour.radius_unit(d.astype(np.float32))[:, None] * d
        to_world = tumour.rotation * tumour.stretch[None, :]
        base = c + (r0 * base_unit * 0.9) @ to_world.T
        wdir = d @ to_world.T
        wdir /= np.linalg.norm(wdir, axis=1, keepdims=True)
        tip = base + wdir * (tumour.spicules["length"] * r0 + 3.0)[:, None]
        rad = tumour.spicules["radius"]
        render_segments(sub, base, tip, rad, np.full_like(rad, 0.15), out=f_spic)
        f_spic *= np.minimum(lung_sub * 1.15, 1.0)
    tex = smooth_field(sub.shape, grid.spacing, tumour.texture_mm, rng)
    img = hu[sl]
    solid_val = tumour.hu_solid + tumour.texture_sd * tex
    if tumour.necrosis is not None:
        ncs, ncore, rim = tumour.necrosis
        core = ramp((rho_s - ncs * r0 * r_unit) * scale, 3.0)
        solid_val = solid_val + rim * (1.0 - core) - core * (tumour.hu_solid - ncore)
    if tumour.kind == "solid":
        f = np.maximum(f_body, f_spic)
        img += f * (solid_val - img)
    else:
        ggo_val = np.maximum(img, tumour.hu_ggo + 2.5 * tumour.texture_sd * tex)
        img += f_body * (ggo_val - img)
        if tumour.kind == "part-solid":
            o = tumour.solid_offset.astype(np.float32)
            qs = [q[i] - o[i] * r0 for i in range(3)]
            rs = np.sqrt(qs[0] ** 2 + qs[1] ** 2 + qs[2] ** 2) + np.float32(1e-6)
            us = np.stack([qs[0] / rs, qs[1] / rs, qs[2] / rs], axis=-1)
            f_solid = ramp((rs - tumour.solid_scale * r0 * tumour.radius_unit(us)) * scale, width) * np.minimum(
                f_body * 2, 1
            )
            f_solid = np.maximum(f_solid, f_spic)
            img += f_solid * (solid_val - img)
        f = np.maximum(f_body, f_spic)
    mask[sl] = f >= 0.5
    return mask
