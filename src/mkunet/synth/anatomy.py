"""Analytic chest anatomy (body, chest wall, ribs, spine, lungs, vessels, airways, heart).

The anatomy of one synthetic patient is a set of random parameters (mm, patient frame
LPS: +x patient left, +y posterior, +z superior; the thorax is centred on x = y = 0) and
vessel/airway segment lists. :func:`render_anatomy` rasterises it on a scan grid with
analytic partial volume: every structure is an (approximate) signed-distance function
turned into a voxel occupancy by :func:`mkunet.synth._fields.ramp`, and the image is
painted in layers ``hu = hu * (1 - f) + value * f``. Everything is vectorised NumPy; the
vessel/airway tubes are rasterised only inside their bounding boxes.

HU by tissue (DOMAIN.md section 3; drawn per patient): outside air -1000; subcutaneous
fat -120..-80; muscle +35..+55; mediastinal fat/soft-tissue mix; ribs, sternum and
vertebrae with cortical shell +700..+1200 and cancellous bone +200..+350; intervertebral
disc ~+80; lung parenchyma -880..-820 with a smooth texture (SD 10-25 HU) and a gravity
gradient (posterior denser by 15-50 HU); blood +35..+55 (or +120..+300 with contrast);
myocardium +35..+50; airway lumen -1000 with soft-tissue walls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mkunet.synth._fields import Grid, ramp, render_segments, smooth_field

__all__ = ["AnatomyParams", "Anatomy", "sample_anatomy", "render_anatomy"]


@dataclass
class AnatomyParams:
    """Random anatomy of one patient (all lengths mm, HU in HU). See module docstring."""

    body_a: float  # body half-width (x)
    body_b: float  # body half-depth (y)
    fat: float  # subcutaneous fat thickness
    muscle: float  # chest-wall muscle thickness
    rib_band: float  # thickness of the rib layer
    mediastinum: float  # half-width of the central mediastinal band
    dome_z: tuple[float, float]  # diaphragm dome base (right, left)
    dome_h: tuple[float, float]  # dome height (right, left)
    apex_z: float
    heart: tuple[float, float, float, float, float, float]  # cx, cy, cz, ax, ay, az
    vert_r: float
    disc_pitch: float
    disc_phase: float
    rib_pitch: float
    rib_slope: float
    rib_phase: float
    rib_height: float
    rib_thick: float
    hu: dict[str, float] = field(default_factory=dict)
    vessels: dict[str, np.ndarray] = field(default_factory=dict)  # p0, p1, r0, r1 (blood)
    airways: dict[str, np.ndarray] = field(default_factory=dict)  # p0, p1, r0, r1, wall
    bones: dict[str, np.ndarray] = field(default_factory=dict)  # posterior vertebral elements
    great: dict[str, np.ndarray] = field(default_factory=dict)  # aorta, pulmonary trunk, oesophagus

    # ------------------------------------------------------------------ derived geometry
    @property
    def cavity_a(self) -> float:
        return self.body_a - self.fat - self.muscle - self.rib_band

    @property
    def cavity_b(self) -> float:
        return self.body_b - self.fat - self.muscle - self.rib_band

    @property
    def vert_y(self) -> float:
        """y (mm) of the vertebral-body centre (x = 0)."""
        return self.cavity_b - self.vert_r - 4.0

    def to_dict(self) -> dict:
        """JSON-serialisable summary (segment arrays as nested lists)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("vessels", "airways", "bones", "great")}
        out["n_vessel_segments"] = int(len(self.vessels.get("p0", ())))
        out["n_airway_segments"] = int(len(self.airways.get("p0", ())))
        return out

    # ------------------------------------------------------------------ signed distances
    def body_sd(self, x: np.ndarray, y: np.ndarray, offset: float = 0.0) -> np.ndarray:
        """Approximate signed distance (mm, < 0 inside) to the body ellipse shrunk by ``offset``."""
        return ellipse_sd(x, y, self.body_a - offset, self.body_b - offset)

    def lung_sd(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lateral, vertical) approximate signed distances (mm, < 0 inside) of both lungs.

        The lung is the intersection of both (< 0 in each). ``lateral`` collects the
        in-plane boundaries (pleura, mediastinum, heart, spine); ``vertical`` the
        diaphragm dome and the apex.
        """
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.float32)
        z = np.asarray(z, np.float32)
        cav = ellipse_sd(x, y, self.cavity_a, self.cavity_b) + 1.5
        med = self.mediastinum - np.abs(x)
        hx, hy, hz, ha, hb, hc = self.heart
        heart = -(ellipsoid_sd(x - hx, y - hy, z - hz, ha, hb, hc)) - 2.0
        vert = self.vert_r + 7.0 - np.sqrt(x * x + (y - self.vert_y) ** 2)
        lateral = np.maximum(np.maximum(cav, med), np.maximum(heart, vert))
        xl = 0.5 * self.cavity_a
        side = np.where(x < 0, 0, 1)
        dz = np.where(side == 0, self.dome_z[0], self.dome_z[1])
        dh = np.where(side == 0, self.dome_h[0], self.dome_h[1])
        q = ((np.abs(x) - xl) / (0.75 * self.cavity_a)) ** 2 + (y / self.cavity_b) ** 2
        dome = dz + dh * (1.0 - q) - z
        apex = z - (self.apex_z - 90.0 * q)
        vertical = np.maximum(dome, apex)
        return lateral.astype(np.float32), vertical.astype(np.float32)


@dataclass
class Anatomy:
    """A rasterised anatomy on ``grid``: ``hu`` float32 (z, y, x) noise-free HU (before
    tumour, blur and noise), ``lung`` and ``body`` float32 occupancies in [0, 1]."""

    grid: Grid
    hu: np.ndarray
    lung: np.ndarray
    body: np.ndarray
    params: AnatomyParams


def ellipse_sd(x, y, a: float, b: float):
    """First-order signed distance (mm) to an axis-aligned ellipse (< 0 inside).

    The ellipse's value over the norm of its gradient: exact on the ellipse, close to it near
    it. Used for the body, the thoracic cavity and the sternum here, and for the cavity that
    :mod:`mkunet.synth.tumour` keeps a tumour inside.

    Args:
        x, y: in-plane coordinates (mm, arrays of one shape) from the ellipse's centre.
        a, b: half-axes along x and y (mm; below 1 mm taken as 1 mm).

    Returns:
        float32 array of ``x``'s shape (mm).
    """
    a = max(a, 1.0)
    b = max(b, 1.0)
    u = x / np.float32(a)
    v = y / np.float32(b)
    rho = np.sqrt(u * u + v * v) + np.float32(1e-6)
    grad = np.sqrt((u / a) ** 2 + (v / b) ** 2) / rho + np.float32(1e-9)
    return (rho - 1.0) / grad


def ellipsoid_sd(x, y, z, a: float, b: float, c: float):
    """First-order signed distance (mm) to an axis-aligned ellipsoid (< 0 inside).

    Same approximation as :func:`ellipse_sd`; the heart here and in :mod:`mkunet.synth.tumour`.

    Args:
        x, y, z: coordinates (mm, arrays of one shape) from the ellipsoid's centre.
        a, b, c: half-axes along x, y and z (mm).

    Returns:
        float32 array of ``x``'s shape (mm).
    """
    u, v, w = x / np.float32(a), y / np.float32(b), z / np.float32(c)
    rho = np.sqrt(u * u + v * v + w * w) + np.float32(1e-6)
    grad = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2) / rho + np.float32(1e-9)
    return (rho - 1.0) / grad


def _rotate_towards(d: np.ndarray, angle: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two unit directions at +-``angle`` (rad) from unit ``d`` in a random plane."""
    a = rng.standard_normal(3)
    a -= a.dot(d) * d
    a /= np.linalg.norm(a) + 1e-12
    c, s = np.cos(angle), np.sin(angle)
    return c * d + s * a, c * d - s * a


def _perp_unit(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random unit vectors (n, 3) perpendicular to unit rows of ``d`` (n, 3)."""
    a = rng.standard_normal(d.shape)
    a -= np.sum(a * d, axis=1, keepdims=True) * d
    return a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-12)


def _grow_tree(
    params: AnatomyParams,
    roots: list[tuple[np.ndarray, np.ndarray, float]],
    rng: np.random.Generator,
    min_radius: float,
    max_segments: int,
    n_try: int = 5,
) -> dict[str, np.ndarray]:
    """Random bifurcating tree grown one generation at a time (vectorised), kept inside
    the lungs; ``roots`` = [(point, direction, radius)]. Each segment tries its drawn
    direction and ``n_try - 1`` deviated ones and keeps the first whose end point lies
    inside a lung; a branch that cannot stay inside ends with a short stub.

    Returns:
        segment arrays p0, p1 (n, 3) mm, r0, r1 (n,) mm, depth (n,).
    """
    p = np.array([r[0] for r in roots], float)
    d = np.array([r[1] for r in roots], float)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    r = np.array([r[2] for r in roots], float)
    out = {"p0": [], "p1": [], "r0": [], "r1": [], "depth": []}
    total = 0
    depth = 0
    while len(p) and total < max_segments:
        n = len(p)
        length = rng.uniform(0.8, 1.3, n) * (8.0 + 4.5 * r)
        r_end = r * rng.uniform(0.85, 0.95, n)
        ang = np.concatenate([np.zeros((n, 1)), rng.uniform(0.3, 1.2, (n, n_try - 1))], axis=1)  # (n, T)
        perp = np.stack([_perp_unit(d, rng) for _ in range(n_try)], axis=1)  # (n, T, 3)
        cand = np.cos(ang)[..., None] * d[:, None, :] + np.sin(ang)[..., None] * perp
        ends = p[:, None, :] + cand * length[:, None, None]
        flat = ends.reshape(-1, 3).astype(np.float32)
        lat, ver = params.lung_sd(flat[:, 0], flat[:, 1], flat[:, 2])
        inside = (np.maximum(lat, ver) < -1.0).reshape(n, n_try)
        ok = inside.any(axis=1)
        j = np.argmax(inside, axis=1)
        dsel = cand[np.arange(n), j]
        frac = np.where(ok | (depth == 0), 1.0, 0.4)
        q = p + dsel * (length * frac)[:, None]
        keep = ok | (depth == 0) | True
        m = min(int(keep.sum()), max_segments - total)
        idx = np.flatnonzero(keep)[:m]
        out["p0"].append(p[idx])
        out["p1"].append(q[idx])
        out["r0"].append(r[idx])
        out["r1"].append(r_end[idx])
        out["depth"].append(np.full(len(idx), depth))
        total += len(idx)
        grow = idx[(ok[idx]) & (r_end[idx] * 0.72 >= min_radius)]
        if not len(grow):
            break
        a1 = rng.uniform(0.35, 0.75, len(grow))
        a2 = rng.uniform(0.35, 0.75, len(grow))
        pp = _perp_unit(dsel[grow], rng)
        d1 = np.cos(a1)[:, None] * dsel[grow] + np.sin(a1)[:, None] * pp
        d2 = np.cos(a2)[:, None] * dsel[grow] - np.sin(a2)[:, None] * pp
        p = np.concatenate([q[grow], q[grow]])
        d = np.concatenate([d1, d2])
        r = np.concatenate(
            [r_end[grow] * rng.uniform(0.7, 0.85, len(grow)), r_end[grow] * rng.uniform(0.6, 0.8, len(grow))]
        )
        depth += 1
    if not out["p0"]:
        z = np.zeros((0, 3))
        return {"p0": z, "p1": z, "r0": np.zeros(0), "r1": np.zeros(0), "depth": np.zeros(0, int)}
    return {k: np.concatenate(v) for k, v in out.items()}


def _sample_body(u) -> AnatomyParams:
    """Body outline, chest wall, diaphragm, spine, ribs and heart (``u``: the generator's ``uniform``)."""
    p = AnatomyParams(
        body_a=u(140, 185),
        body_b=u(95, 130),
        fat=u(4, 24),
        muscle=u(8, 16),
        rib_band=u(11, 14),
        mediastinum=u(10, 20),
        dome_z=(u(-150, -120), u(-160, -130)),
        dome_h=(u(30, 55), u(25, 50)),
        apex_z=u(120, 160),
        heart=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        vert_r=u(14, 19),
        disc_pitch=u(24, 30),
        disc_phase=u(0, 30),
        rib_pitch=u(30, 38),
        rib_slope=u(0.35, 0.7),
        rib_phase=u(0, 40),
        rib_height=u(9, 13),
        rib_thick=u(5, 8),
    )
    cb = p.cavity_b
    p.heart = (u(12, 30), -0.22 * cb + u(-5, 5), p.dome_z[1] + p.dome_h[1] + u(25, 45), u(50, 66), u(38, 52), u(45, 60))
    return p


def _sample_hu(u, contrast: bool) -> dict[str, float]:
    """HU of every tissue (blood enhanced when ``contrast``)."""
    blood = u(120, 300) if contrast else u(35, 55)
    return {
        "air": -1000.0,
        "fat": u(-120, -85),
        "muscle": u(30, 50),
        "mediastinal_fat": u(-105, -75),
        "soft": u(25, 50),
        "abdomen": u(45, 65),
        "cortical": u(600, 1100),
        "cancellous": u(200, 350),
        "disc": u(60, 100),
        "lung": u(-880, -820),
        "lung_texture_sd": u(10, 25),
        "lung_gravity": u(15, 50),
        "blood": blood,
        "myocardium": u(35, 50),
        "airway_wall": u(0, 50),
        "contrast": float(contrast),
    }


def _sample_great_vessels(p: AnatomyParams, u) -> tuple[dict[str, np.ndarray], float, float]:
    """Aorta, pulmonary trunk and oesophagus as tube segments -> (segments, trachea y mm, carina z mm)."""
    vy = p.vert_y
    yt = vy - p.vert_r - u(12, 22)  # trachea in front of the oesophagus/spine
    z_car = u(10, 40)
    xa, ya = p.vert_r + u(4, 10), vy - u(0, 8)
    z_arch = z_car + u(15, 35)
    ra = u(10, 14)
    hx, hy, hz, ha, hb, hc = p.heart
    asc = np.array([u(-15, -5), hy - u(0, 10), hz + 0.4 * hc])
    top = np.array([asc[0], asc[1], z_arch])
    mid = np.array([0.5 * (asc[0] + xa), 0.5 * (asc[1] + ya), z_arch + 10.0])
    desc_top = np.array([xa, ya, z_arch])
    desc_bot = np.array([xa, ya, p.dome_z[1] - 80.0])
    trunk0 = np.array([hx * 0.3, hy - 5.0, hz + 0.55 * hc])
    trunk1 = np.array([6.0, yt + 8.0, z_car - 15.0])
    oes = np.array([u(0, 8), vy - p.vert_r - 7.0])
    great = {
        "p0": np.array([asc, top, mid, desc_top, trunk0, [oes[0], oes[1], 400.0]]),
        "p1": np.array([top, mid, desc_top, desc_bot, trunk1, [oes[0], oes[1], -400.0]]),
        "r0": np.array([ra + 1.5, ra, ra, ra, u(11, 14), u(6, 8)]),
        "r1": np.array([ra, ra, ra, ra - 1, u(10, 12), u(6, 8)]),
        "blood": np.array([1, 1, 1, 1, 1, 0], bool),
    }
    return great, yt, z_car


def _sample_trees(
    p: AnatomyParams, rng: np.random.Generator, yt: float, z_car: float
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Pulmonary vessel and airway trees grown from both hila -> (vessels, airways with trachea and bronchi)."""
    u = rng.uniform
    rt = u(7, 10)
    carina = np.array([0.0, yt, z_car])
    airway_roots = []
    vessel_roots = []
    bron0, bron1, br0, br1 = [np.array([0.0, yt, 400.0])], [carina], [rt], [rt]
    for sgn in (-1.0, 1.0):
        hil = np.array([sgn * (p.mediastinum + u(14, 22)), yt + u(0, 12), z_car - u(15, 30)])
        bron0.append(carina)
        bron1.append(hil)
        br0.append(rt * 0.75)
        br1.append(rt * 0.65)
        for d in (
            (0.3 * sgn, u(-0.3, 0.3), 1.0),
            (sgn, u(-0.5, 0.1), u(-0.3, 0.1)),
            (0.4 * sgn, u(0.0, 0.5), -1.0),
            (0.5 * sgn, u(-0.8, -0.4), -0.4),
        ):
            d = np.asarray(d) / np.linalg.norm(d)
            vessel_roots.append((hil + rng.normal(0, 2, 3), d, u(4.5, 6.5)))
            airway_roots.append((hil, d + rng.normal(0, 0.15, 3), u(3.0, 4.5)))
    vessels = _grow_tree(p, vessel_roots, rng, min_radius=0.4, max_segments=1500)
    tree = _grow_tree(p, airway_roots, rng, min_radius=1.1, max_segments=120)
    airways = {
        "p0": np.concatenate([np.array(bron0), tree["p0"]]),
        "p1": np.concatenate([np.array(bron1), tree["p1"]]),
        "r0": np.concatenate([np.array(br0), tree["r0"]]),
        "r1": np.concatenate([np.array(br1), tree["r1"]]),
    }
    return vessels, airways


def _posterior_elements(p: AnatomyParams) -> dict[str, np.ndarray]:
    """Lamina/spinous and transverse processes as bone tubes behind the vertebral body (and the canal's y, mm)."""
    canal_y = p.vert_y + p.vert_r + 9.0
    sp0 = np.array([[0.0, canal_y + 6.0, 400.0], [-8.0, canal_y, 400.0], [8.0, canal_y, 400.0]])
    sp1 = np.array([[0.0, canal_y + 30.0, -400.0], [-30.0, canal_y + 4.0, -400.0], [30.0, canal_y + 4.0, -400.0]])
    return {
        "p0": sp0,
        "p1": sp1,
        "r0": np.array([5.0, 4.5, 4.5]),
        "r1": np.array([5.0, 4.5, 4.5]),
        "canal_y": canal_y,
    }


def sample_anatomy(rng: np.random.Generator, contrast: bool | None = None) -> AnatomyParams:
    """Draw a random patient anatomy.

    Args:
        rng: seeded generator.
        contrast: contrast-enhanced blood (True), unenhanced (False), or random (None,
            probability 0.3).

    Returns:
        AnatomyParams (lengths in mm in the patient frame, HU values in ``hu``).
    """
    u = rng.uniform
    if contrast is None:
        contrast = bool(rng.random() < 0.3)
    p = _sample_body(u)
    p.hu = _sample_hu(u, contrast)
    # ---- great vessels, oesophagus, trachea and bronchi (mm, patient frame)
    p.great, yt, z_car = _sample_great_vessels(p, u)
    p.vessels, p.airways = _sample_trees(p, rng, yt, z_car)
    # ---- posterior vertebral elements: lamina/spinous and transverse processes (bone tubes)
    p.bones = _posterior_elements(p)
    return p


def _box(lo_xyz, hi_xyz, grid: Grid) -> tuple[slice, slice, slice]:
    """Array slices (z, y, x) of the voxels whose centres lie in the box [lo, hi] (x, y, z mm)."""
    sz, sy, sx = grid.spacing
    sp = np.array([sx, sy, sz])
    org = np.array(grid.origin)
    dims = np.array(grid.shape[::-1])
    ilo = np.clip(np.floor((np.asarray(lo_xyz) - org) / sp).astype(int), 0, dims)
    ihi = np.clip(np.ceil((np.asarray(hi_xyz) - org) / sp).astype(int) + 1, 0, dims)
    return slice(ilo[2], ihi[2]), slice(ilo[1], ihi[1]), slice(ilo[0], ihi[0])


def _sub_axes(grid: Grid, sl: tuple[slice, slice, slice]):
    x, y, z = grid.broadcast()
    return x[:, :, sl[2]], y[:, sl[1], :], z[sl[0], :, :]


@dataclass
class _Sections:
    """The z-invariant (axial) layers of the chest, each (Y, X) or broadcastable to it.

    ``value`` HU, ``amp`` fine-texture amplitude (HU), ``mix`` mediastinal soft-tissue mix weight;
    ``body`` and ``cav`` occupancies of the body and the thoracic cavity, ``s_cav`` the cavity's
    signed distance (mm), ``vert_inner`` the cancellous vertebral body's occupancy.
    """

    value: np.ndarray
    amp: np.ndarray
    mix: np.ndarray
    body: np.ndarray
    s_cav: np.ndarray
    cav: np.ndarray
    vert_inner: np.ndarray


def _axial_sections(p: AnatomyParams, x2: np.ndarray, y2: np.ndarray, sxy: float, ny: int, nx: int) -> _Sections:
    """Body, fat, muscle, thoracic cavity, sternum, vertebral body and spinal canal composited in 2-D."""
    hu_t = p.hu
    val2 = np.full((ny, nx), hu_t["air"], np.float32)
    amp2 = np.zeros((ny, nx), np.float32)
    mix2 = np.zeros((ny, nx), np.float32)

    def paint2(occ, value, amp, cav=False):
        occ = np.broadcast_to(occ, (ny, nx))
        val2[...] += occ * (value - val2)
        amp2[...] += occ * (amp - amp2)
        mix2[...] += occ * ((1.0 if cav else 0.0) - mix2)

    s_body = p.body_sd(x2, y2)  # (Y, X)
    body = ramp(s_body, sxy)
    paint2(body, hu_t["fat"], 6.0)
    paint2(ramp(s_body + p.fat, sxy), hu_t["muscle"], 8.0)
    s_cav = ellipse_sd(x2, y2, p.cavity_a, p.cavity_b)
    s_cav = np.maximum(
        s_cav, -(y2 - (p.vert_y - p.vert_r - 2.0)) * (np.abs(x2) < p.vert_r + 12) - 1e3 * (np.abs(x2) >= p.vert_r + 12)
    )
    cav = ramp(s_cav, sxy)
    paint2(cav, hu_t["mediastinal_fat"], 6.0, cav=True)
    st = ellipse_sd(x2, y2 + p.cavity_b + 0.5 * p.rib_band, 14.0, 5.5)
    paint2(ramp(st, sxy), hu_t["cortical"], 0.0)
    paint2(ramp(st + 2.0, sxy), hu_t["cancellous"], 30.0)
    rv = np.sqrt(x2 * x2 + (y2 - p.vert_y) ** 2) - p.vert_r
    paint2(ramp(rv, sxy), hu_t["cortical"], 0.0)
    vert_inner = ramp(rv + 2.0, sxy)
    paint2(vert_inner, hu_t["cancellous"], 35.0)
    paint2(ramp(np.sqrt(x2 * x2 + (y2 - p.bones["canal_y"]) ** 2) - 7.5, sxy), 25.0, 0.0)
    return _Sections(val2, amp2, mix2, body, s_cav, cav, vert_inner)


def _base_image(sections: _Sections, hu_t: dict[str, float], tex_fine: np.ndarray, tex_coarse: np.ndarray):
    """The 2-D layers broadcast over z with their textures: float32 HU (z, y, x)."""
    img = np.empty(tex_fine.shape, np.float32)
    np.multiply(tex_fine, sections.amp, out=img)
    img += sections.value
    mix = np.clip(0.5 + 1.5 * tex_coarse, 0.0, 1.0)
    mix *= sections.mix * np.float32(hu_t["soft"] - hu_t["mediastinal_fat"])
    img += mix
    return img


def _paint_discs(img: np.ndarray, p: AnatomyParams, grid: Grid, vert_inner: np.ndarray) -> None:
    """Intervertebral discs, in the vertebral-body box only."""
    z = grid.broadcast()[2]
    vb = _box((-p.vert_r - 2, p.vert_y - p.vert_r - 2, -1e4), (p.vert_r + 2, p.vert_y + p.vert_r + 2, 1e4), grid)
    disc = (np.abs(np.mod(z[vb[0]] - p.disc_phase, p.disc_pitch) - 0.5 * p.disc_pitch) < 3.5).astype(np.float32)
    sub = img[vb]
    sub += (vert_inner[vb[1], vb[2]] * disc) * (p.hu["disc"] - sub)


def _paint_abdomen(img: np.ndarray, p: AnatomyParams, grid: Grid, cav: np.ndarray, tex_fine: np.ndarray) -> None:
    """Abdomen below the diaphragm (slab below the highest dome point)."""
    sz = grid.spacing[0]
    ztop = max(p.dome_z[0] + p.dome_h[0], p.dome_z[1] + p.dome_h[1]) + 2 * sz
    ab = _box((-p.cavity_a, -p.cavity_b, -1e4), (p.cavity_a, p.cavity_b, ztop), grid)
    if all(s.stop > s.start for s in ab):
        xs, ys, zs = _sub_axes(grid, ab)
        _, ver = p.lung_sd(xs, ys, zs)
        below = ramp(-ver, sz) * (zs < 0) * cav[ab[1], ab[2]]
        sub = img[ab]
        sub += below * (p.hu["abdomen"] + 5.0 * tex_fine[ab] - sub)


def _paint_ribs(
    img: np.ndarray,
    p: AnatomyParams,
    grid: Grid,
    s_cav: np.ndarray,
    sxy: float,
    tex_fine: np.ndarray,
) -> None:
    """Ribs (cortical shell, cancellous core), computed only on the pixels of the rib band."""
    x, y, z = grid.broadcast()
    x2, y2 = x[0], y[0]  # (1, X), (Y, 1)
    shape = grid.shape
    ny, nx = shape[1], shape[2]
    s_band = s_cav - (p.rib_band * 0.5 + 0.5)
    band = (np.abs(np.broadcast_to(s_band, (ny, nx))) < 0.5 * p.rib_thick + 2 * sxy) & np.broadcast_to(
        (np.abs(x2) > 22.0) | (y2 > 0), (ny, nx)
    )
    idx = np.flatnonzero(band)
    if not len(idx):
        return
    yy = np.broadcast_to(y2, (ny, nx)).reshape(-1)[idx][None, :]
    sb = np.broadcast_to(s_band, (ny, nx)).reshape(-1)[idx][None, :]
    zz = z[:, :, 0]  # (Z, 1)
    phase = np.mod(zz - p.rib_slope * yy - p.rib_phase, p.rib_pitch) - 0.5 * p.rib_pitch
    dz_perp = phase / np.sqrt(1.0 + p.rib_slope**2)
    rho = np.sqrt((sb / (0.5 * p.rib_thick)) ** 2 + (dz_perp / (0.5 * p.rib_height)) ** 2)
    rib_scale = 0.5 * min(p.rib_thick, p.rib_height)
    flat = img.reshape(shape[0], -1)
    vals = flat[:, idx]
    tex = tex_fine.reshape(shape[0], -1)[:, idx]
    occ = ramp((rho - 1.0) * rib_scale, sxy)
    vals += occ * (p.hu["cortical"] - vals)
    occ = ramp((rho - 0.75) * rib_scale, sxy)
    vals += occ * (p.hu["cancellous"] + 30.0 * tex - vals)
    flat[:, idx] = vals


def _paint_heart(img: np.ndarray, p: AnatomyParams, grid: Grid, sxy: float, tex_fine: np.ndarray) -> None:
    """Heart (its box only): epicardial fat, myocardium, blood pool."""
    hu_t = p.hu
    hx, hy, hz, ha, hb, hc = p.heart
    hb_ = _box((hx - ha - 3, hy - hb - 3, hz - hc - 3), (hx + ha + 3, hy + hb + 3, hz + hc + 3), grid)
    if all(s.stop > s.start for s in hb_):
        xs, ys, zs = _sub_axes(grid, hb_)
        sh = ellipsoid_sd(xs - hx, ys - hy, zs - hz, ha, hb, hc)
        sub = img[hb_]
        occ = ramp(sh, sxy)
        sub += occ * (hu_t["mediastinal_fat"] - sub)
        occ = ramp(sh + 4.0, sxy)
        sub += occ * (hu_t["myocardium"] + 4.0 * tex_fine[hb_] - sub)
        occ = ramp(sh + 14.0, sxy)
        sub += occ * (hu_t["blood"] - sub)


def _paint_lungs(
    img: np.ndarray, p: AnatomyParams, grid: Grid, sxy: float, tex_fine: np.ndarray, tex_coarse: np.ndarray
) -> np.ndarray:
    """Lungs (box of the thoracic cavity between the domes and the apex) -> their float32 occupancy (z, y, x)."""
    hu_t = p.hu
    lung = np.zeros(grid.shape, np.float32)
    lb = _box((-p.cavity_a, -p.cavity_b, min(p.dome_z) - 2), (p.cavity_a, p.cavity_b, p.apex_z + 2), grid)
    if all(s.stop > s.start for s in lb):
        xs, ys, zs = _sub_axes(grid, lb)
        lat, ver = p.lung_sd(xs, ys, zs)
        sub_l = np.minimum(ramp(lat, sxy), ramp(ver, grid.spacing[0]))
        del lat, ver
        lung[lb] = sub_l
        lung_hu = hu_t["lung_texture_sd"] * (0.8 * tex_fine[lb] + 0.6 * tex_coarse[lb])
        lung_hu += hu_t["lung"] + hu_t["lung_gravity"] * (ys / max(p.cavity_b, 1.0))
        sub = img[lb]
        sub += sub_l * (lung_hu - sub)
    return lung


def _paint_great_vessels(img: np.ndarray, p: AnatomyParams, grid: Grid) -> None:
    """Aorta and pulmonary trunk (blood), oesophagus (soft tissue)."""
    g = p.great
    gb = g["blood"]
    render_segments(grid, g["p0"][gb], g["p1"][gb], g["r0"][gb], g["r1"][gb], paint=(img, p.hu["blood"]))
    render_segments(grid, g["p0"][~gb], g["p1"][~gb], g["r0"][~gb], g["r1"][~gb], paint=(img, p.hu["soft"]))


def _paint_pulmonary_vessels(img: np.ndarray, p: AnatomyParams, grid: Grid, cav: np.ndarray) -> None:
    """Pulmonary vessels (blood) inside the thoracic cavity."""
    ny, nx = grid.shape[1], grid.shape[2]
    v = p.vessels
    cav_full = np.ascontiguousarray(np.broadcast_to(cav, (ny, nx)))
    render_segments(
        grid,
        v["p0"],
        v["p1"],
        v["r0"],
        v["r1"],
        paint=(img, p.hu["blood"] * 0.85 + 0.15 * p.hu["soft"]),
        weight2d=cav_full,
    )


def _paint_airways(img: np.ndarray, p: AnatomyParams, grid: Grid) -> None:
    """Airways: soft-tissue wall, then air lumen."""
    a = p.airways
    wall_t = 0.6 + 0.18 * a["r0"]
    render_segments(grid, a["p0"], a["p1"], a["r0"] + wall_t, a["r1"] + wall_t, paint=(img, p.hu["airway_wall"]))
    render_segments(grid, a["p0"], a["p1"], a["r0"], a["r1"], paint=(img, p.hu["air"]))


def render_anatomy(params: AnatomyParams, grid: Grid, rng: np.random.Generator) -> Anatomy:
    """Rasterise ``params`` on ``grid`` with partial volume and tissue textures.

    The z-invariant layers (body, fat, muscle, thoracic cavity, sternum, vertebral body,
    spinal canal) are composited in 2-D and broadcast once; the 3-D structures are painted
    only inside their bounding boxes (heart, diaphragm, lungs) or where they are non-zero
    (ribs, vessels, airways).

    Args:
        params: from :func:`sample_anatomy`.
        grid: the scan grid (shape (z, y, x), spacing (z, y, x) mm, origin (x, y, z) mm).
        rng: seeded generator for the texture fields.

    Returns:
        Anatomy with noise-free float32 HU (before tumour, blur and scanner noise).
    """
    p = params
    _, sy, sx = grid.spacing
    sxy = float(np.sqrt(sx * sy))
    x, y, _ = grid.broadcast()
    shape = grid.shape
    tex_fine = smooth_field(shape, grid.spacing, 4.0, rng)
    tex_coarse = smooth_field(shape, grid.spacing, 18.0, rng)
    sections = _axial_sections(p, x[0], y[0], sxy, shape[1], shape[2])
    img = _base_image(sections, p.hu, tex_fine, tex_coarse)
    _paint_discs(img, p, grid, sections.vert_inner)
    _paint_abdomen(img, p, grid, sections.cav, tex_fine)
    _paint_ribs(img, p, grid, sections.s_cav, sxy, tex_fine)
    # posterior vertebral elements (bone tubes)
    b = p.bones
    render_segments(
        grid, b["p0"], b["p1"], b["r0"], b["r1"], paint=(img, p.hu["cortical"] * 0.35 + 0.65 * p.hu["cancellous"])
    )
    _paint_heart(img, p, grid, sxy, tex_fine)
    _paint_great_vessels(img, p, grid)
    lung = _paint_lungs(img, p, grid, sxy, tex_fine, tex_coarse)
    _paint_pulmonary_vessels(img, p, grid, sections.cav)
    _paint_airways(img, p, grid)
    return Anatomy(grid=grid, hu=img, lung=lung, body=np.broadcast_to(sections.body, shape), params=p)
