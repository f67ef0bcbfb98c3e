"""What every synthetic-weather renderer shares (`edgerestore.data.degrade`): smooth random fields, blur, the
guided filter, mixing towards a colour and scattering veils, tints. numpy + OpenCV only; a pure function of
the `numpy.random.Generator` it is given.
"""

from __future__ import annotations

import cv2
import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi - lo > 1e-6 else np.zeros_like(x)


def smooth_field(
    height: int, width: int, rng: np.random.Generator, cells: tuple[int, int] = (2, 6)
) -> np.ndarray:
    """A smooth random field in [0, 1] (two octaves of bicubically upsampled noise), float32 H×W."""
    out = np.zeros((height, width), np.float32)
    base = int(rng.integers(cells[0], cells[1] + 1))
    for octave, weight in ((1, 1.0), (2, 0.5)):
        n = base * octave
        grid = rng.random((n + 1, n + 1)).astype(np.float32)
        out += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return normalise(out)


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.25:
        return x
    return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def guided_filter(
    guide: np.ndarray, src: np.ndarray, radius: int, eps: float, subsample: int = 1
) -> np.ndarray:
    """He et al.'s guided filter with a gray guide (`src` smoothed, its edges taken from `guide`); with
    `subsample` > 1 the fast variant: coefficients on a coarser grid, applied to the full-resolution guide."""
    h, w = guide.shape
    g, p = guide, src
    if subsample > 1:
        size = (max(1, w // subsample), max(1, h // subsample))
        g = cv2.resize(guide, size, interpolation=cv2.INTER_AREA)
        p = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
        radius = max(1, round(radius / subsample))
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, k, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(g), box(p)
    a = (box(g * p) - mean_i * mean_p) / (box(g * g) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    mean_a, mean_b = box(a), box(b)
    if subsample > 1:
        mean_a = cv2.resize(mean_a, (w, h), interpolation=cv2.INTER_LINEAR)
        mean_b = cv2.resize(mean_b, (w, h), interpolation=cv2.INTER_LINEAR)
    return mean_a * guide + mean_b


def _scalar(colour: np.ndarray) -> tuple[float, float, float, float]:
    return (float(colour[0]), float(colour[1]), float(colour[2]), 0.0)


def mix(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``image·(1 − alpha) + colour·alpha`` with alpha H×W and one RGB colour (OpenCV ops: several times
    faster than numpy broadcasting on H×W×3)."""
    alpha3 = cv2.merge([alpha, alpha, alpha])
    return cv2.subtract(image, cv2.multiply(cv2.subtract(image, _scalar(colour)), alpha3))


def scatter(image: np.ndarray, t: np.ndarray, airlight: np.ndarray) -> np.ndarray:
    """Scattering: ``I·t + A·(1 − t)`` with t H×W and A per channel."""
    return mix(image, airlight, 1.0 - t)


def tint(rng: np.random.Generator, grey: float, spread: float) -> np.ndarray:
    return np.clip(grey + rng.normal(0.0, spread, 3), 0.0, 1.0).astype(np.float32)
