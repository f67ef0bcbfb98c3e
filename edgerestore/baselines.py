"""Classical baselines the learned models are compared against. numpy + OpenCV only (no torch).

* `dehaze_dcp`: Dark Channel Prior dehazing (He, Sun, Tang, "Single Image Haze Removal Using Dark Channel
  Prior", CVPR 2009) with the transmission refined by the guided filter (He, Sun, Tang, "Guided Image
  Filtering", ECCV 2010) instead of the 2009 paper's soft matting.

The guided filter is written here with box filters (`guided_filter`): `cv2.ximgproc.guidedFilter` exists
only in opencv-contrib, which the project does not depend on.
"""

from __future__ import annotations

import cv2
import numpy as np


def _box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the (2r+1)² window clipped to the image (He et al.'s boxfilter(·)/N)."""
    k = (2 * radius + 1, 2 * radius + 1)
    total = cv2.boxFilter(x, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    count = cv2.boxFilter(np.ones_like(x), -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    return total / count


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Gray-guide guided filter (He et al. 2010, Algorithm 1): float32/64 H×W guide and source in [0, 1]."""
    guide = guide.astype(np.float64)
    src = src.astype(np.float64)
    mean_i = _box_mean(guide, radius)
    mean_p = _box_mean(src, radius)
    cov_ip = _box_mean(guide * src, radius) - mean_i * mean_p
    var_i = _box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box_mean(a, radius) * guide + _box_mean(b, radius)


def dark_channel(image: np.ndarray, patch: int) -> np.ndarray:
    """min over colour channels, then min over a patch×patch window (grey erosion)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(image.min(axis=2), kernel, borderType=cv2.BORDER_REPLICATE)


def atmospheric_light(image: np.ndarray, dark: np.ndarray, top_fraction: float = 0.001) -> np.ndarray:
    """He et al. 2009 §4.4: among the brightest `top_fraction` of the dark channel, the input pixel of
    highest intensity (sum of channels) is the atmospheric light A (per channel)."""
    flat_dark = dark.ravel()
    n = max(1, int(round(flat_dark.size * top_fraction)))
    candidates = np.argpartition(flat_dark, -n)[-n:]
    pixels = image.reshape(-1, image.shape[2])[candidates]
    return pixels[np.argmax(pixels.sum(axis=1))]


def dehaze_dcp(
    bgr_uint8: np.ndarray,
    patch: int = 15,
    omega: float = 0.95,
    t0: float = 0.1,
    radius: int = 60,
    eps: float = 1e-3,
) -> np.ndarray:
    """Dehaze a uint8 BGR image with the Dark Channel Prior; returns uint8 BGR of the same size.

    I = J·t + A(1 − t): A from the dark channel, t̃ = 1 − ω·dark(I / A), t refined by the guided filter with
    the gray input as guide (radius, eps on [0, 1] intensities), J = (I − A) / max(t, t0) + A.
    """
    image = bgr_uint8.astype(np.float64) / 255.0
    dark = dark_channel(image, patch)
    airlight = np.maximum(atmospheric_light(image, dark), 1e-3)
    transmission = 1.0 - omega * dark_channel(image / airlight, patch)
    gray = cv2.cvtColor(bgr_uint8, cv2.COLOR_BGR2GRAY).astype(np.float64) / 255.0
    transmission = guided_filter(gray, transmission, radius, eps)
    t = np.maximum(transmission, t0)[..., None]
    restored = (image - airlight) / t + airlight
    return np.rint(np.clip(restored, 0.0, 1.0) * 255.0).astype(np.uint8)
