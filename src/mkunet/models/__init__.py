"""Segmentation networks: MK-UNet, its attention gates, the baselines, and the clinical-vector encoder.

All networks share ``forward(image, clinical=None, return_attention=False)`` with
image (B, C, Z, Y, X) float32 (Z, Y, X multiples of 16), clinical (B, 6) float32
(column :data:`LVCR_INDEX` = 5 is the normalised LVCR) and logits (B, 1, Z, Y, X) out.
"""

from mkunet.models.baselines import AttentionUNet3D, ResNet3D, UNet3D
from mkunet.models.clinical import COLUMNS, LVCR_INDEX, ClinicalEncoder
from mkunet.models.factory import MODELS, build_model, count_parameters, model_config
from mkunet.models.gates import ImmuneAttentionGate
from mkunet.models.mkunet import MKUNet, check_spatial_multiple, pad_to_multiple

__all__ = [
    "AttentionUNet3D",
    "COLUMNS",
    "ClinicalEncoder",
    "ImmuneAttentionGate",
    "LVCR_INDEX",
    "MKUNet",
    "MODELS",
    "ResNet3D",
    "UNet3D",
    "build_model",
    "check_spatial_multiple",
    "count_parameters",
    "model_config",
    "pad_to_multiple",
]
