"""What every synthetic-weather renderer shares (`edgerestore.data.degrade`): smooth random fields, blur, the
guided filter, mixing towards a colour and scattering veils, tints, and particle layers (rain streaks drawn
as segments, snow flakes) with their motion between video frames. numpy + OpenCV only; a pure function of
the `numpy.random.Generator` it is given.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def coverage(layers: list[ParticleLayer], maps: list[np.ndarray], frame: int) -> np.ndarray:
    """Combined opacity of same-coloured layers: ``1 − Π(1 − opacity·map)``."""
    clear = None
    for layer, layer_map in zip(layers, maps):
        term = 1.0 - layer.opacity * roll_layer(layer_map, layer, frame)
        clear = term if clear is None else cv2.multiply(clear, term)
    return 1.0 - clear


def tint(rng: np.random.Generator, grey: float, spread: float) -> np.ndarray:
    return np.clip(grey + rng.normal(0.0, spread, 3), 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------- particles
@dataclass
class ParticleLayer:
    """One layer of rain streaks or snow flakes, in pixels at ``scale`` 1.

    Particles are segments of `length` (0 for a round flake) drawn `thickness` px wide with round caps, then
    Gaussian-blurred by `blur`; `density` is particles per 100×100 px; `angle` is degrees from vertical
    (positive falls to the right); `speed` is how far the layer falls per video frame.
    """

    density: float
    length: float
    thickness: int
    blur: float
    angle: float
    opacity: float
    amplitude: tuple[float, float] = (0.5, 1.0)
    speed: float = 0.0


def render_particles(
    layer: ParticleLayer, height: int, width: int, rng: np.random.Generator, wrap: bool = False
) -> np.ndarray:
    """The layer's coverage, float32 H×W in [0, 1] (not yet multiplied by `opacity`).

    `wrap` makes the pattern periodic (a torus), so a video can roll it without seams.
    """
    # Heavily blurred layers are drawn at a lower resolution and upsampled: same look, a fraction of the cost.
    factor = 1 if layer.blur < 2.0 else min(4, int(layer.blur // 1.2))
    h, w = max(1, -(-height // factor)), max(1, -(-width // factor))
    length, blur = layer.length / factor, layer.blur / factor
    thickness = max(1, round(layer.thickness / factor))
    margin = length + thickness
    count = int(
        rng.poisson(
            max(layer.density, 0.0) * (height + 2 * margin * factor) * (width + 2 * margin * factor) / 1e4
        )
    )
    count = min(count, h * w // 4 + 1)
    canvas = np.zeros((h, w), np.uint8)
    if count:
        a = np.radians(layer.angle)
        direction = np.array([np.sin(a), np.cos(a)])
        if wrap:
            starts = rng.uniform(0.0, 1.0, (count, 2)) * (w, h)
        else:
            starts = rng.uniform((-margin, -margin), (w + margin, h + margin), (count, 2))
        lengths = length * rng.uniform(0.7, 1.3, count)[:, None]
        ends = starts + direction * lengths
        amps = rng.uniform(*layer.amplitude, count)
        segments = np.stack([starts, ends], axis=1)  # count × 2 × 2 (x, y)
        if wrap:
            shifts = np.array([(dx * w, dy * h) for dx in (-1, 0, 1) for dy in (-1, 0, 1)])
            segments = (segments[None] + shifts[:, None, None, :]).reshape(-1, 2, 2)
            amps = np.tile(amps, len(shifts))
        fixed = np.round(segments * 16).astype(np.int32)  # 4 fractional bits: sub-pixel placement
        bins = np.minimum(
            (amps - layer.amplitude[0]) / max(layer.amplitude[1] - layer.amplitude[0], 1e-6) * 4, 3
        )
        bins = bins.astype(np.int32)
        for b in range(4):
            chosen = fixed[bins == b]
            if len(chosen):
                level = layer.amplitude[0] + (b + 0.5) / 4 * (layer.amplitude[1] - layer.amplitude[0])
                cv2.polylines(canvas, chosen, False, int(255 * level), thickness, cv2.LINE_AA, shift=4)
    out = canvas.astype(np.float32) * (1.0 / 255.0)
    if blur >= 0.25:
        # blurring spreads a thin streak: keep its peak so `opacity` means what it says
        out = gaussian_blur(out, blur) * min(4.0, 1.0 + blur / max(thickness, 1))
    if factor > 1:
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0)


def roll_layer(layer_map: np.ndarray, layer: ParticleLayer, frame: int) -> np.ndarray:
    if frame == 0 or layer.speed == 0.0:
        return layer_map
    a = np.radians(layer.angle)
    dx, dy = round(layer.speed * frame * np.sin(a)), round(layer.speed * frame * np.cos(a))
    return np.roll(layer_map, (dy, dx), axis=(0, 1))
