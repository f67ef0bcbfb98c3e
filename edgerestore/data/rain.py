"""Synthetic rain (`edgerestore.data.degrade`): streak layers drawn as anti-aliased segments around one
wind direction, or (with a `StreakBank`) photographed Garg–Nayar streaks, and heavy rain's veil of mist.
numpy + OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
from edgerestore.data.streaks import StreakBank, StreakLayer, render_streak_layer, sample_streak_layers

#: Of rain scenes when a `StreakBank` is given: photographed streaks; the rest are drawn segments.
STREAK_SHARE = 0.7


@dataclass
class RainParams:
    """Streak layers, the streaks' colour, and the mist of heavy rain (`mist` = 1 − minimum transmission)."""

    layers: list[ParticleLayer | StreakLayer]
    colour: np.ndarray
    mist: float = 0.0
    mist_airlight: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))

    @classmethod
    def sample(
        cls, rng: np.random.Generator, severity: float, scale: float = 1.0, streaks: StreakBank | None = None
    ) -> RainParams:
        """Rain at `severity`; with a `StreakBank`, a share `STREAK_SHARE` of the scenes is photographed
        streaks (`edgerestore.data.streaks`) with heavy rain's accumulation veil, the rest drawn segments."""
        s = severity
        angle = float(np.clip(rng.normal(0.0, 15.0), -40.0, 40.0))
        if streaks is not None and rng.random() < STREAK_SHARE:
            # heavy rain's accumulation veil: the scattering of drops too small to see one by one
            mist = float(rng.uniform(0.1, 0.45) * s) if rng.random() < 1.6 * s - 0.3 else 0.0
            return cls(
                layers=sample_streak_layers(streaks, rng, s, scale, angle),
                colour=tint(rng, rng.uniform(0.8, 1.0), 0.015),
                mist=mist,
                mist_airlight=tint(rng, rng.uniform(0.7, 0.95), 0.015),
            )
        dens = 0.5 + 1.2 * s
        layers: list[ParticleLayer] = []

        def add(density, length, thickness, blur, opacity, amplitude, speed):
            length_px = length * scale
            layers.append(
                ParticleLayer(
                    density=density / scale**2,
                    length=length_px,
                    thickness=max(1, round(thickness * scale)),
                    blur=blur * scale,
                    angle=angle + float(rng.normal(0.0, 2.5)),
                    opacity=opacity,
                    amplitude=amplitude,
                    speed=length_px * speed,
                )
            )

        # the crisp middle layer: alone at low severity it looks like Rain100L
        add(
            rng.uniform(10.0, 35.0) * dens,
            rng.uniform(12.0, 38.0) * (0.8 + 0.5 * s),
            1,
            rng.uniform(0.0, 0.7),
            rng.uniform(0.4, 0.9),
            (0.4, 1.0),
            rng.uniform(1.2, 2.0),
        )
        if rng.random() < 0.5 + 0.5 * s:  # dense fine far rain (DDN's drizzle texture)
            add(
                rng.uniform(20.0, 80.0) * dens,
                rng.uniform(5.0, 16.0),
                1,
                rng.uniform(0.0, 0.5),
                rng.uniform(0.15, 0.4),
                (0.3, 1.0),
                rng.uniform(1.0, 1.5),
            )
        if rng.random() < 0.15 + 0.6 * s:  # wide out-of-focus streaks close to the camera
            add(
                rng.uniform(0.5, 2.5) * dens,
                rng.uniform(40.0, 100.0),
                int(rng.integers(2, 4)),
                rng.uniform(1.0, 3.0),
                rng.uniform(0.08, 0.3),
                (0.5, 1.0),
                rng.uniform(1.5, 2.5),
            )
        if rng.random() < s:  # a second middle layer at another length (Rain800's mixed streaks)
            add(
                rng.uniform(3.0, 15.0) * dens,
                rng.uniform(25.0, 70.0),
                int(rng.integers(1, 3)),
                rng.uniform(0.3, 1.2),
                rng.uniform(0.3, 0.7),
                (0.4, 1.0),
                rng.uniform(1.2, 2.0),
            )
        mist = float(rng.uniform(0.05, 0.35) * s) if rng.random() < 1.6 * s - 0.5 else 0.0
        return cls(
            layers=layers,
            colour=tint(rng, rng.uniform(0.78, 1.0), 0.015),
            mist=mist,
            mist_airlight=tint(rng, rng.uniform(0.75, 0.95), 0.015),
        )


class _Rain:
    def __init__(
        self, height, width, rng, severity, scale, wrap=False, params: RainParams | None = None, streaks=None
    ):
        self.params = params or RainParams.sample(rng, severity, scale, streaks)
        self.maps = [
            render_streak_layer(streaks, layer, height, width)
            if isinstance(layer, StreakLayer)
            else render_particles(layer, height, width, rng, wrap)
            for layer in self.params.layers
        ]
        self.mist_t = None
        if self.params.mist > 0:
            self.mist_t = 1.0 - self.params.mist * (0.6 + 0.4 * smooth_field(height, width, rng))

    def apply(self, image: np.ndarray, frame: int = 0) -> np.ndarray:
        p = self.params
        out = image if self.mist_t is None else scatter(image, self.mist_t, p.mist_airlight)
        return mix(out, p.colour, coverage(p.layers, self.maps, frame))
