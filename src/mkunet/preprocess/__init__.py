"""Preprocessing: the four input channels, adaptive windowing, resampling, augmentation.

Arrays are (z, y, x); spacing tuples (z, y, x) in mm; HU for CT intensities.
See SPEC.md "Four input channels", "Adaptive windowing", "Augmentation".
"""

from __future__ import annotations

from mkunet.preprocess.augment import augmentation
from mkunet.preprocess.channels import (
    CHANNEL_NAMES,
    DEFAULT_WINDOW,
    canny_edges,
    four_channels,
    gaussian_denoise,
    intensity_channel,
    texture_channel,
)
from mkunet.preprocess.glcm import GLCM_DIRECTIONS, glcm_contrast, quantise
from mkunet.preprocess.pipeline import Preprocessor
from mkunet.preprocess.resample import INTERPOLATORS, Grid, resample, resample_array, resample_mask, resample_to
from mkunet.preprocess.window import AdaptiveWindow, NotFittedError

__all__ = [
    "AdaptiveWindow",
    "CHANNEL_NAMES",
    "DEFAULT_WINDOW",
    "GLCM_DIRECTIONS",
    "Grid",
    "INTERPOLATORS",
    "NotFittedError",
    "Preprocessor",
    "augmentation",
    "canny_edges",
    "four_channels",
    "gaussian_denoise",
    "glcm_contrast",
    "intensity_channel",
    "quantise",
    "resample",
    "resample_array",
    "resample_mask",
    "resample_to",
    "texture_channel",
]
