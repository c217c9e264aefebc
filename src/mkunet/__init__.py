"""mkunet: lung-tumour segmentation on serial chest CT, growth kinetics and an immune-evasion score.

Implements the MK-UNet system (multi-channel input, clinical fusion, immune-aware
attention gates) and the Immune Evasion Score of the 2025 paper, with the fixes
documented in the README. Not a medical device.
"""

from mkunet.volume import Volume, same_grid

__version__ = "0.1.0"
__all__ = ["Volume", "same_grid", "__version__"]
