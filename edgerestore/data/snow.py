"""Synthetic snow (`edgerestore.data.degrade`): flakes in several layers (dense fine far flakes, opaque
middle flakes, large out-of-focus near flakes) and the veil of snowfall. numpy + OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgerestore.data.render import (
    ParticleLayer,
    coverage,
    mix,
    render_particles,
    scatter,
    smooth_field,
    tint,
)


@dataclass
class SnowParams:
    """Flake layers, the flakes' colour and the veil of snowfall (`veil` = 1 − minimum transmission)."""

    layers: list[ParticleLayer]
    colour: np.ndarray
    veil: float
    airlight: np.ndarray

    @classmethod
    def sample(cls, rng: np.random.Generator, severity: float, scale: float = 1.0) -> SnowParams:
        s = severity
        angle = float(np.clip(rng.normal(0.0, 20.0), -50.0, 50.0))
        dens = 0.3 + 1.2 * s
        layers: list[ParticleLayer] = []

        def add(density, thickness, elongation, blur, opacity, amplitude, speed):
            thickness_px = max(1, round(thickness * scale))
            layers.append(
                ParticleLayer(
                    density=density / scale**2,
                    length=elongation * thickness * scale,
                    thickness=thickness_px,
                    blur=blur * scale,
                    angle=angle + float(rng.normal(0.0, 6.0)),
                    opacity=opacity,
                    amplitude=amplitude,
                    speed=max(1.0, thickness_px * speed),
                )
            )

        # fine far flakes: the dense, translucent speckle of Snow100K / CSD
        add(
            rng.uniform(30.0, 150.0) * dens,
            1,
            rng.uniform(0.0, 2.0),
            rng.uniform(0.4, 1.0),
            rng.uniform(0.35, 0.8),
            (0.2, 1.0),
            rng.uniform(1.0, 3.0),
        )
        add(
            rng.uniform(4.0, 40.0) * dens,
            int(rng.integers(2, 4)),
            rng.uniform(0.0, 1.0),
            rng.uniform(0.5, 1.0),
            rng.uniform(0.5, 0.9),
            (0.3, 1.0),
            rng.uniform(1.0, 2.5),
        )
        if rng.random() < 0.3 + 0.5 * s:  # opaque middle flakes
            add(
                rng.uniform(0.3, 4.0) * dens,
                int(rng.integers(3, 7)),
                rng.uniform(0.0, 0.8),
                rng.uniform(0.8, 1.6),
                rng.uniform(0.6, 0.95),
                (0.5, 1.0),
                rng.uniform(1.0, 2.0),
            )
        if rng.random() < 0.4:  # large out-of-focus flakes right in front of the lens
            size = rng.uniform(10.0, 28.0)
            add(
                rng.uniform(0.03, 0.3) * dens,
                size,
                rng.uniform(0.0, 0.4),
                size * rng.uniform(0.2, 0.4),
                rng.uniform(0.25, 0.6),
                (0.6, 1.0),
                rng.uniform(0.5, 1.0),
            )
        veil = float(rng.uniform(0.05, 0.4) * (0.3 + 0.7 * s)) if rng.random() < 0.85 else 0.0
        return cls(
            layers=layers,
            colour=tint(rng, rng.uniform(0.88, 1.0), 0.01),
            veil=veil,
            airlight=tint(rng, rng.uniform(0.8, 1.0), 0.015),
        )


class _Snow:
    def __init__(self, height, width, rng, severity, scale, wrap=False, params: SnowParams | None = None):
        self.params = params or SnowParams.sample(rng, severity, scale)
        self.maps = [render_particles(layer, height, width, rng, wrap) for layer in self.params.layers]
        self.veil_t = None
        if self.params.veil > 0:
            self.veil_t = 1.0 - self.params.veil * (0.5 + 0.5 * smooth_field(height, width, rng))

    def apply(self, image: np.ndarray, frame: int = 0) -> np.ndarray:
        p = self.params
        out = image if self.veil_t is None else scatter(image, self.veil_t, p.airlight)
        return mix(out, p.colour, coverage(p.layers, self.maps, frame))  # flakes are opaque: "over"
