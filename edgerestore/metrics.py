"""PSNR and SSIM in the conventions restoration papers report (BasicSR's `calculate_psnr/ssim`).

numpy + OpenCV only (no torch, no scikit-image): evaluation, the precision guard and the runtime's
accuracy checks all score images here.

Conventions (BasicSR `basicsr/metrics/psnr_ssim.py`, which reproduces the MATLAB numbers papers quote):

* Images are H×W×C BGR (OpenCV order) with values on the 0–255 scale (uint8, or float already ×255).
* `crop_border`: that many pixels are dropped from each edge before scoring (super-resolution habit; 0 for
  deraining / dehazing).
* `test_y_channel=True` scores only Y of ITU-R BT.601 as MATLAB's `rgb2ycbcr` computes it:
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` on 0–255 values, unrounded. Deraining papers
  (Rain100L/H, Rain1400, …) report Y; dehazing papers (SOTS) report RGB (`test_y_channel=False`).
* PSNR: ``10 log10(255² / MSE)`` with the MSE over all pixels and channels together; identical images → inf.
* SSIM (Wang et al. 2004): 11×11 Gaussian window, σ = 1.5, statistics over the valid region only
  (5 pixels trimmed each side), C1 = (0.01·255)², C2 = (0.03·255)², computed per channel and averaged.
  Matches scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)`.

Also `wilson_interval`, the 95 % interval of an accuracy measured on n images: router accuracies come from
a hundred-odd images, where ±8 points is the honest resolution.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

#: side of SSIM's Gaussian window: images (after cropping) must be at least this large
SSIM_WINDOW = 11
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def bgr_to_y(img: np.ndarray) -> np.ndarray:
    """Y of BT.601 (MATLAB `rgb2ycbcr`) from BGR on the 0–255 scale; float64 H×W in [16, 235]."""
    img = np.asarray(img, dtype=np.float64)
    return img @ np.array([24.966, 128.553, 65.481]) / 255.0 + 16.0


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool):
    if img.shape != img2.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {img2.shape}")
    a = np.asarray(img, dtype=np.float64)
    b = np.asarray(img2, dtype=np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        if a.shape[2] != 3:
            raise ValueError("test_y_channel needs 3-channel BGR images")
        a, b = bgr_to_y(a)[..., None], bgr_to_y(b)[..., None]
    return a, b


def calculate_psnr(
    img: np.ndarray, img2: np.ndarray, crop_border: int = 0, test_y_channel: bool = False
) -> float:
    """PSNR in dB on the 0–255 scale (BasicSR convention); `inf` for identical images."""
    a, b = _prepare(img, img2, crop_border, test_y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / mse)


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, 1.5)
    window = kernel @ kernel.T

    def filt(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, window)[5:-5, 5:-5]

    mu1, mu2 = filt(a), filt(b)
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    sigma1_sq = filt(a**2) - mu1_sq
    sigma2_sq = filt(b**2) - mu2_sq
    sigma12 = filt(a * b) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + _C1) * (2 * sigma12 + _C2)) / (
        (mu1_sq + mu2_sq + _C1) * (sigma1_sq + sigma2_sq + _C2)
    )
    return float(ssim_map.mean())


def calculate_ssim(
    img: np.ndarray, img2: np.ndarray, crop_border: int = 0, test_y_channel: bool = False
) -> float:
    """SSIM (BasicSR convention): per-channel Gaussian SSIM on the valid region, averaged; 1.0 if identical."""
    a, b = _prepare(img, img2, crop_border, test_y_channel)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} after cropping, got {a.shape[:2]}"
        )
    return float(np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[2])]))


@dataclass(frozen=True)
class Scores:
    """PSNR/SSIM of one image against its target in both conventions (Y: deraining, RGB: dehazing)."""

    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    ssim_rgb: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def score(img: np.ndarray, target: np.ndarray, crop_border: int = 0) -> Scores:
    """Both conventions for one uint8 BGR image against its target."""
    return Scores(
        psnr_y=calculate_psnr(img, target, crop_border, test_y_channel=True),
        ssim_y=calculate_ssim(img, target, crop_border, test_y_channel=True),
        psnr_rgb=calculate_psnr(img, target, crop_border, test_y_channel=False),
        ssim_rgb=calculate_ssim(img, target, crop_border, test_y_channel=False),
    )


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (default 95 %) for a proportion of `correct` out of `n` (Wilson 1927)."""
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n > 0, got {correct}/{n}")
    p = correct / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
