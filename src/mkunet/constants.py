"""Physical constants of chest CT used across the package: one place per value, with its source.

Every value is a Hounsfield-unit (HU) boundary between tissues, fixed by physics or by
published measurements, not fitted to a scan. Modules take their defaults from here (a
parameter class may let a user change a value; the default is still the constant below).

================================  ========  ====================================================
constant                           HU        meaning and source
================================  ========  ====================================================
``AIR_HU``                         -1000     air, by the definition of the scale
``ROOM_AIR_HU``                    -950      below: air outside the body or in the airways (not
                                             parenchyma, which is -850 to -910 on inspiration;
                                             Prokop 2003 via radclass)
``PARENCHYMA_HU``                  -850      typical aerated parenchyma on inspiration (-850 to
                                             -910; Prokop 2003 via radclass): the lung's HU where
                                             too little lung is in view to measure it
``AERATED_LUNG_HU``                -760      below: clearly aerated lung (above the parenchyma's
                                             range with noise, below ground glass -681 and denser;
                                             Wang, Iran J Radiol 2018)
``LUNG_HU``                        -400      below: lung (aerated or ground glass), above: soft
                                             tissue; the usual lung-mask threshold, halfway
                                             between parenchyma (-850) and water (0)
``BODY_HU``                        -500      above: the body (soft tissue, fat, bone), below: air
                                             and lung; halfway between air (-1000) and water (0),
                                             the skin's 50 % partial-volume edge
``GROUND_GLASS_MIN_HU``            -700      ground glass is denser: AIS/MIA/invasive GGN ground-
                                             glass parts average -681 / -594 / -478 HU (Wang 2018)
``GROUND_GLASS_MAX_HU``            -300      a lesion whose median is below is ground glass, above
                                             solid: GGN solid parts average -348 / -268 / -134 HU
                                             and invasive part-solid lesions -333 HU (Wang 2018)
``FAT_HU``                         (-120,    fat, e.g. the mediastinal fat plane (radclass;
                                   -50)      Wikipedia HU table)
``SOFT_TISSUE_HU``                 (20, 80)  muscle and soft tissue (UVM; radiodaddy)
``BONE_HU``                        300       above: bone; cancellous bone is +300 to +400,
                                             cortical +700 to +1900 (Wikipedia HU table;
                                             radclass). Contrast-enhanced vessels reach about
                                             275 HU (J Comput Assist Tomogr 2010;34:52), so the
                                             threshold also keeps enhanced vessels out of "bone"
``CANCELLOUS_BONE_HU``             (300,     cancellous bone (same sources as ``BONE_HU``); above
                                   400)      its top only cortex (or metal) remains: a voxel there
                                             is surely not soft tissue or lesion
================================  ========  ====================================================

The sources are collected in the project's domain notes (``DOMAIN.md`` section 3 in the
development repository).
"""

from __future__ import annotations

__all__ = [
    "AIR_HU",
    "ROOM_AIR_HU",
    "PARENCHYMA_HU",
    "AERATED_LUNG_HU",
    "LUNG_HU",
    "BODY_HU",
    "GROUND_GLASS_MIN_HU",
    "GROUND_GLASS_MAX_HU",
    "FAT_HU",
    "SOFT_TISSUE_HU",
    "BONE_HU",
    "CANCELLOUS_BONE_HU",
    "SOLID",
    "PART_SOLID",
    "GROUND_GLASS",
    "LESION_KINDS",
]

AIR_HU: float = -1000.0
ROOM_AIR_HU: float = -950.0
PARENCHYMA_HU: float = -850.0
AERATED_LUNG_HU: float = -760.0
LUNG_HU: float = -400.0
BODY_HU: float = -500.0
GROUND_GLASS_MIN_HU: float = -700.0
GROUND_GLASS_MAX_HU: float = -300.0
FAT_HU: tuple[float, float] = (-120.0, -50.0)
SOFT_TISSUE_HU: tuple[float, float] = (20.0, 80.0)
BONE_HU: float = 300.0
CANCELLOUS_BONE_HU: tuple[float, float] = (300.0, 400.0)

SOLID: str = "solid"
PART_SOLID: str = "part-solid"
GROUND_GLASS: str = "ground-glass"
LESION_KINDS: tuple[str, ...] = (SOLID, PART_SOLID, GROUND_GLASS)
"""The lesion kinds, spelled one way everywhere (the model's ``kind``, candidates, tables)."""
