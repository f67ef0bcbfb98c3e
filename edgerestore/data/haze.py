"""Synthetic haze (`edgerestore.data.degrade`): the atmospheric scattering model ``I = J·t + A·(1 − t)``
over a depth proxy mixed from a scene layout, a smooth field and the image's dark channel, refined with an
edge-aware guided filter. numpy + OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgerestore.data.render import guided_filter, mix, normalise, smooth_field, tint


@dataclass
class HazeParams:
    """Scattering coefficient β (per unit of normalised depth), airlight A (RGB) and the depth proxy's mix."""

    beta: float
    airlight: np.ndarray
    layout: str  # "ground", "room" or "ramp"
    near: float  # normalised depth of the nearest point

    @classmethod
    def sample(cls, rng: np.random.Generator, severity: float, scale: float = 1.0) -> HazeParams:
        beta = 0.6 + 1.6 * severity
        # SOTS indoor measures A ≈ 1.0; outdoor haze is greyer (down to ~0.7), sometimes bluish or yellowish
        grey = 1.0 - 0.3 * rng.random() ** 1.5 if rng.random() < 0.7 else rng.uniform(0.95, 1.0)
        airlight = tint(rng, grey, 0.01) + rng.uniform(-0.03, 0.03) * np.array([-1.0, 0.0, 1.0], np.float32)
        return cls(
            beta=float(beta),
            airlight=np.clip(airlight, 0.0, 1.0).astype(np.float32),
            layout=str(rng.choice(["ground", "room", "ramp"], p=[0.45, 0.35, 0.2])),
            near=float(rng.uniform(0.0, 0.25)),
        )


def _layout_depth(layout: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = u / max(w - 1, 1), v / max(h - 1, 1)
    if layout == "ground":  # sky and far scene above a horizon, a ground plane coming closer below it
        below = v - rng.uniform(0.15, 0.65) - rng.normal(0.0, 0.1) * (u - 0.5)
        return np.where(
            below <= 0, 1.0, 1.0 / (1.0 + np.maximum(below, 0.0) / rng.uniform(0.05, 0.3))
        ).astype(np.float32)
    if layout == "room":  # walls, floor and ceiling receding to a back wall around a vanishing point
        vx, vy = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.65)
        box = np.maximum(np.abs(u - vx) / max(vx, 1 - vx), np.abs(v - vy) / max(vy, 1 - vy))
        return (1.0 - np.clip(box, 0, 1) ** rng.uniform(0.6, 1.5)).astype(np.float32)
    a = rng.uniform(-np.pi, 0.0)  # a ramp, mostly getting farther towards the top
    return normalise(np.cos(a) * u + np.sin(a) * v).astype(np.float32)


def haze_depth(
    height: int, width: int, rng: np.random.Generator, layout: str = "ground", guide: np.ndarray | None = None
) -> np.ndarray:
    """A normalised depth proxy in [0, 1] (1 = far), float32 H×W: a scene layout, a smooth random field and,
    given the clean image as `guide`, its dark channel and brightness (bright, colourless regions such as sky
    and walls are far), mixed with random weights and refined with an edge-aware guided filter."""
    scale = min(1.0, 96.0 / max(height, width))
    h, w = max(2, round(height * scale)), max(2, round(width * scale))
    parts = [_layout_depth(layout, h, w, rng), smooth_field(h, w, rng)]
    concentration = [1.5, 1.0]
    if guide is not None:
        small = cv2.resize(guide, (w, h), interpolation=cv2.INTER_AREA)
        dark = cv2.erode(small.min(axis=2), np.ones((3, 3), np.uint8))
        parts.append(normalise(0.7 * dark + 0.3 * small.mean(axis=2)))
        concentration.append(1.5)
    weights = rng.dirichlet(concentration)
    depth = normalise(sum(wt * p for wt, p in zip(weights, parts)).astype(np.float32))
    depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_LINEAR)
    if guide is not None:
        gray = cv2.cvtColor(guide, cv2.COLOR_RGB2GRAY)
        radius = max(2, round(min(height, width) / 40))
        depth = guided_filter(gray, depth, radius, 1e-3, subsample=max(1, min(height, width) // 160))
    return np.clip(depth, 0.0, 1.0)


class _Haze:
    def __init__(self, height, width, rng, severity, scale, guide=None, params: HazeParams | None = None):
        self.params = p = params or HazeParams.sample(rng, severity, scale)
        depth = haze_depth(height, width, rng, p.layout, guide)
        self.t = np.exp(-p.beta * (p.near + (1.0 - p.near) * depth)).astype(np.float32)
        self._one_minus_t = 1.0 - self.t

    def apply(self, image: np.ndarray, frame: int = 0) -> np.ndarray:
        return mix(image, self.params.airlight, self._one_minus_t)
