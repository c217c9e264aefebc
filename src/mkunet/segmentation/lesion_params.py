"""Parameters of the image-driven lesion model (:func:`mkunet.segmentation.lesion.segment_lesion`).

:class:`LesionParams` lives here so that its checks do not crowd the model's module;
:mod:`mkunet.segmentation.lesion` re-exports it (``from mkunet.segmentation.lesion import
LesionParams`` keeps working). Its HU defaults come from :mod:`mkunet.constants`; a default that
differs from a constant on purpose says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from mkunet.checks import check_flag, check_increasing, check_int, check_number, check_pair
from mkunet.constants import AERATED_LUNG_HU, CANCELLOUS_BONE_HU, GROUND_GLASS_MAX_HU, ROOM_AIR_HU

__all__ = ["LesionParams"]


@dataclass(frozen=True)
class LesionParams:
    """Parameters of :func:`segment_lesion` (one set for every lesion kind; mm and HU).

    Every field is checked when the object is made: a bad value raises a :class:`ValueError`
    that names the field, quotes the value and says what is allowed.

    Attributes:
        iso_fraction: edge iso-level as a fraction of the way from lung HU to lesion HU, in (0, 1).
        lesion_radius_mm: radius of the ball whose median HU is the lesion's HU.
        lung_min_dist_mm: lung voxels closer than this to the seed are not the background.
        lung_hu_range: the lung HU estimate is clipped to this range. Default
            (:data:`~mkunet.constants.ROOM_AIR_HU`, :data:`~mkunet.constants.AERATED_LUNG_HU`):
            a lung estimate in dense dependent lung still sits at aerated lung's HU.
        lesion_cap_hu: the lesion HU used for the edge is capped here (40 HU, mid soft tissue:
            contrast enhancement or calcium inside the lesion does not lift the edge into it).
        bone_hu: voxels above this are never lesion. Default: the top of cancellous bone
            (``CANCELLOUS_BONE_HU[1]``, 400 HU), not :data:`~mkunet.constants.BONE_HU` (300): a
            lesion's own densest voxels (calcification, or enhancing tissue partial-volumed with
            it) reach cancellous bone's range, and only above it is a voxel surely not lesion.
            (Measured: 300 HU changes the IBSI phantom's mask.)
        air_seed_hu: a seed whose 3 x 3 x 3 median is below is in air or aerated lung and is
            refused. -800 HU: below ground glass (-760 and denser) and above aerated parenchyma
            on inspiration (-850 to -910 HU), so that a click on a faint ground-glass nodule is
            still taken.
        bone_seed_hu: a seed whose 3 x 3 x 3 median is above is in bone and is refused. 500 HU,
            above :data:`~mkunet.constants.BONE_HU` by cancellous bone's range (+300 to +400):
            a click on a calcified or enhancing part of a lesion is taken, one in a rib or
            vertebra is not.
        aerated_hu: below this is aerated lung (ground glass is above). Default
            :data:`~mkunet.constants.AERATED_LUNG_HU`.
        room_air_hu: on a 1.5 mm-smoothed image, below this is room air, not lung (HU). Default
            :data:`~mkunet.constants.ROOM_AIR_HU`.
        skin_band_mm: voxels within this distance (mm) of room air (on the smoothed image) are
            the skin's partial-volume edge, not lung; 0 turns the rule off. 3.5 mm: the smoothed
            skin edge passes through lung HU over 2-3 mm on its way from body to air.
        ground_glass_max_hu: a lesion whose median HU is below this is ground glass, above it
            solid. Default :data:`~mkunet.constants.GROUND_GLASS_MAX_HU`.
        ground_glass_contrast_hu: ground glass surrounds a solid core when the shell 1-4 mm
            outside it has its 25th percentile this much above the lung's median (HU).
        ground_glass_iso_fraction: iso-level of that ground glass (fraction from lung HU to the
            shell's HU), in (0, 1).
        ground_glass_min_gain: the ground glass is joined when it adds at least this fraction of
            the core.
        ground_glass_smooth_mm: a ground-glass lesion is thresholded on an image smoothed this
            much (mm).
        ground_glass_max_crop_mm: largest window for a ground-glass lesion (mm).
        use_hull, use_rib_cage: the local lung-hull constraint, and its limit to the rib cage.
        open_fraction, open_min_mm, open_max_mm: opening radius = fraction x inscribed radius, clipped.
        rin_climb_steps: climbing steps on the distance map from the seed to the lesion's own
            inscribed ball (its radius scales the opening).
        n_rays, star_ratio, star_angle_deg: rays from the core; a ray longer than ``star_ratio``
            x the median of its neighbours within ``star_angle_deg`` is cut.
        star_global_ratio, star_global_quantile, star_free_rays: every ray is also cut at
            ``star_global_ratio`` x that quantile of the rays ending on lung ("free"; all rays
            when fewer than 10 % are free); ``star_global_ratio`` 0 switches this cut off.
        star_passes: the core is recomputed from the star-shaped result this many times.
        initial_crop_mm, air_window_factor: the first window's edge (mm): at least
            ``initial_crop_mm``, and ``air_window_factor`` x twice the seed's distance to lung.
        hull_margin_mm, context_mm: a grown window is the object's box + ``hull_margin_mm``;
            the crop adds ``context_mm`` of context around the window.
        grow_before_star: the object before the star constraint decides the growth.
        grow_factor, max_crop_mm, max_grow_steps: growth when the seed is outside the lung
            hull, the largest window edge (mm), the most growth steps.
        small_rin_mm, window_rin_factor: around a nodule of inscribed radius below
            ``small_rin_mm`` the window stays within ``window_rin_factor`` x that radius.
        reseed, reseed_max_growth: run again from the lesion's core (click independence),
            unless that grows the lesion more than this factor (a leak).
        grid_mm: isotropic work grid; None = from the lesion's size (0.6 to 1.5 mm).

    Raises:
        ValueError: a field has the wrong type or is out of range, or the HU thresholds are
            out of order (room air < aerated lung < ground glass < bone).
    """

    iso_fraction: float = 0.5
    lesion_radius_mm: float = 4.0
    lung_min_dist_mm: float = 10.0
    lung_hu_range: tuple[float, float] = (ROOM_AIR_HU, AERATED_LUNG_HU)
    lesion_cap_hu: float = 40.0
    bone_hu: float = CANCELLOUS_BONE_HU[1]
    air_seed_hu: float = -800.0
    bone_seed_hu: float = 500.0
    aerated_hu: float = AERATED_LUNG_HU
    room_air_hu: float = ROOM_AIR_HU
    skin_band_mm: float = 3.5
    ground_glass_max_hu: float = GROUND_GLASS_MAX_HU
    ground_glass_smooth_mm: float = 1.0
    ground_glass_contrast_hu: float = 150.0
    ground_glass_iso_fraction: float = 0.5
    ground_glass_min_gain: float = 0.25
    ground_glass_max_crop_mm: float = 120.0
    use_hull: bool = True
    use_rib_cage: bool = True
    open_fraction: float = 0.35
    open_min_mm: float = 1.0
    open_max_mm: float = 10.0
    rin_climb_steps: int = 8
    n_rays: int = 512
    star_ratio: float = 1.35
    star_angle_deg: float = 45.0
    star_global_ratio: float = 1.6
    star_global_quantile: float = 0.5
    star_free_rays: bool = True
    star_passes: int = 2
    initial_crop_mm: float = 60.0
    air_window_factor: float = 1.5
    hull_margin_mm: float = 30.0
    context_mm: float = 12.0
    grow_before_star: bool = True
    grow_factor: float = 1.6
    max_crop_mm: float = 260.0
    max_grow_steps: int = 6
    small_rin_mm: float = 6.0
    window_rin_factor: float = 12.0
    reseed: bool = True
    reseed_max_growth: float = 10.0
    grid_mm: float | None = None

    def __post_init__(self) -> None:
        own = "LesionParams"
        for name in ("iso_fraction", "ground_glass_iso_fraction"):
            check_number(own, name, getattr(self, name), low=0.0, high=1.0, low_open=True, high_open=True)
        for name in ("star_global_quantile",):
            check_number(own, name, getattr(self, name), low=0.0, high=1.0)
        for name in (
            "lesion_radius_mm",
            "ground_glass_max_crop_mm",
            "initial_crop_mm",
            "max_crop_mm",
            "air_window_factor",
            "window_rin_factor",
        ):
            check_number(own, name, getattr(self, name), low=0.0, low_open=True)
        for name in (
            "lung_min_dist_mm",
            "skin_band_mm",
            "ground_glass_smooth_mm",
            "ground_glass_min_gain",
            "open_fraction",
            "open_min_mm",
            "hull_margin_mm",
            "context_mm",
            "small_rin_mm",
        ):
            check_number(own, name, getattr(self, name), low=0.0)
        check_number(own, "ground_glass_contrast_hu", self.ground_glass_contrast_hu, low=0.0, low_open=True, unit="HU")
        for name in (
            "lesion_cap_hu",
            "bone_hu",
            "air_seed_hu",
            "bone_seed_hu",
            "aerated_hu",
            "room_air_hu",
            "ground_glass_max_hu",
        ):
            check_number(own, name, getattr(self, name), unit="HU")
        lung_lo, lung_hi = check_pair(own, "lung_hu_range", self.lung_hu_range, unit="HU")
        check_number(own, "open_max_mm", self.open_max_mm, low=float(self.open_min_mm), unit="mm (open_min_mm)")
        check_number(own, "max_crop_mm", self.max_crop_mm, low=float(self.initial_crop_mm), unit="mm (initial_crop_mm)")
        check_number(own, "star_ratio", self.star_ratio, low=1.0)
        check_number(own, "star_angle_deg", self.star_angle_deg, low=0.0, high=180.0, low_open=True)
        check_number(own, "star_global_ratio", self.star_global_ratio, low=0.0)
        if 0.0 < self.star_global_ratio < 1.0:
            raise ValueError(
                f"LesionParams.star_global_ratio must be 0 (no global cut) or >= 1, got {self.star_global_ratio!r}."
            )
        check_number(own, "grow_factor", self.grow_factor, low=1.0, low_open=True)
        check_number(own, "reseed_max_growth", self.reseed_max_growth, low=1.0)
        check_number(own, "grid_mm", self.grid_mm, low=0.0, low_open=True, unit="mm", allow_none=True)
        check_int(own, "rin_climb_steps", self.rin_climb_steps, low=0)
        check_int(own, "n_rays", self.n_rays, low=16)
        check_int(own, "star_passes", self.star_passes, low=0)
        check_int(own, "max_grow_steps", self.max_grow_steps, low=1)
        for name in ("use_hull", "use_rib_cage", "star_free_rays", "grow_before_star", "reseed"):
            check_flag(own, name, getattr(self, name))
        order = "room air < aerated lung < ground glass < bone"
        check_increasing(
            own,
            [
                ("room_air_hu", self.room_air_hu),
                ("aerated_hu", self.aerated_hu),
                ("ground_glass_max_hu", self.ground_glass_max_hu),
                ("bone_hu", self.bone_hu),
            ],
            order,
        )
        check_increasing(own, [("lesion_cap_hu", self.lesion_cap_hu), ("bone_hu", self.bone_hu)], "the cap is lesion")
        check_increasing(own, [("air_seed_hu", self.air_seed_hu), ("bone_seed_hu", self.bone_seed_hu)], "air < bone")
        if not lung_hi < self.ground_glass_max_hu:
            raise ValueError(
                f"LesionParams.lung_hu_range must end below ground_glass_max_hu = {self.ground_glass_max_hu!r} HU "
                f"(lung is darker than any lesion), got {self.lung_hu_range!r}."
            )
        if not lung_lo >= self.room_air_hu:
            raise ValueError(
                f"LesionParams.lung_hu_range must start at or above room_air_hu = {self.room_air_hu!r} HU "
                f"(lung is not room air), got {self.lung_hu_range!r}."
            )
