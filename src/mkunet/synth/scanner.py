"""CT scanner model: partial-volume blur (Gaussian PSF), correlated noise, HU offset/gain.

The noise-free image is blurred with a Gaussian point-spread function whose in-plane
sigma encodes kernel sharpness and whose z sigma encodes the slice-sensitivity profile.
White noise is added *before* the blur, so the same filter correlates it (finer grain for
sharper kernels, as on real CT); its amplitude is scaled so that the SD after the blur
equals the drawn noise SD. Finally a global HU gain/offset is applied, values are clipped
to [-1024, 3071] and rounded to integers (what a DICOM int16 series stores).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["ScannerParams", "sample_scanner", "apply_scanner", "kernel_norm"]


@dataclass
class ScannerParams:
    """Scanner settings of one scan.

    Attributes:
        psf_sigma_mm: Gaussian PSF sigma (z, y, x) in mm.
        noise_sd: noise SD in HU after blurring.
        hu_offset: additive HU offset.
        hu_gain: multiplicative gain on (HU + 1000) (1 = none).
    """

    psf_sigma_mm: tuple[float, float, float]
    noise_sd: float
    hu_offset: float
    hu_gain: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def sample_scanner(rng: np.random.Generator, spacing: tuple[float, float, float], wide: bool = False) -> ScannerParams:
    """Draw scanner settings for a scan of ``spacing`` (z, y, x) mm.

    ``wide=False`` (cohort): PSF in-plane sigma 0.4-1.0 mm, noise SD 10-40 HU, offset
    N(0, 3) HU. ``wide=True`` (training, domain randomisation, DOMAIN.md section 8): sigma
    0.3-1.6 mm, noise 5-60 HU, offset N(0, 12) HU, gain 0.97-1.03.
    """
    sz = spacing[0]
    if wide:
        s_xy = rng.uniform(0.3, 1.6)
        return ScannerParams(
            (float(rng.uniform(0.15, 0.5) * sz), s_xy, s_xy),
            float(rng.uniform(5, 60)),
            float(rng.normal(0, 12)),
            float(rng.uniform(0.97, 1.03)),
        )
    s_xy = rng.uniform(0.4, 1.0)
    return ScannerParams(
        (float(rng.uniform(0.2, 0.4) * sz), s_xy, s_xy), float(rng.uniform(10, 40)), float(rng.normal(0, 3)), 1.0
    )


def kernel_norm(sigma_vox: float) -> float:
    """L2 norm of the sampled 1-D Gaussian kernel that scipy uses (truncate 3).

    White noise of SD 1 blurred by that kernel along one axis has SD ``kernel_norm(sigma_vox)``;
    the scanner model divides by the product over the axes so that blurred noise keeps its SD
    (:func:`apply_scanner`, and :func:`mkunet.synth.insert.insert_tumours` for the noise it
    puts back under a lesion).

    Args:
        sigma_vox: Gaussian sigma in voxels (<= 0: no blur, norm 1).
    """
    from scipy import ndimage as ndi

    if sigma_vox <= 0:
        return 1.0
    n = int(4 * np.ceil(3 * sigma_vox) + 1)
    delta = np.zeros(n)
    delta[n // 2] = 1.0
    k = ndi.gaussian_filter1d(delta, sigma_vox, truncate=3.0)
    return float(np.sqrt(np.sum(k * k)))


def apply_scanner(
    hu: np.ndarray, spacing: tuple[float, float, float], params: ScannerParams, rng: np.random.Generator
) -> np.ndarray:
    """Blur, add correlated noise, apply gain/offset, clip and round.

    Args:
        hu: float32 (z, y, x) noise-free HU; consumed (modified in place).
        spacing: (z, y, x) voxel size in mm.
        params: scanner settings.
        rng: seeded generator.

    Returns:
        float32 (z, y, x) integer-valued HU in [-1024, 3071].
    """
    from scipy import ndimage as ndi

    sig = [max(s / d, 0.0) for s, d in zip(params.psf_sigma_mm, spacing)]
    norm = float(np.prod([kernel_norm(s) for s in sig]))
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise *= np.float32(params.noise_sd / max(norm, 1e-6))
    hu += noise
    del noise
    out = ndi.gaussian_filter(hu, sig, truncate=3.0, output=np.float32)
    if params.hu_gain != 1.0:
        out += 1000.0
        out *= np.float32(params.hu_gain)
        out -= 1000.0
    out += np.float32(params.hu_offset)
    np.clip(out, -1024.0, 3071.0, out=out)
    np.rint(out, out=out)
    return out
