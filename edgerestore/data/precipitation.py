"""Synthetic rain and snow (`edgerestore.data.degrade`): particle layers falling in front of a veil.

* rain — streak layers drawn as anti-aliased segments around one wind direction (a dense fine far layer, a
  crisp middle layer, a wide faint near layer), or (with a `StreakBank`) photographed Garg–Nayar streaks;
  heavy rain adds a veil of mist.
* snow — flakes in several layers (dense fine far flakes, opaque middle flakes, large out-of-focus near
  flakes) and the veil of snowfall.

numpy + OpenCV only; a pure function of the `numpy.random.Generator` it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edgerestore.data.render import gaussian_blur, mix, scatter, smooth_field, tint
from edgerestore.data.streaks import StreakBank, StreakLayer, render_streak_layer, sample_streak_layers

#: Of rain scenes when a `StreakBank` is given: photographed streaks; the rest are drawn segments.
STREAK_SHARE = 0.7


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


def coverage(layers: list[ParticleLayer], maps: list[np.ndarray], frame: int) -> np.ndarray:
    """Combined opacity of same-coloured layers: ``1 − Π(1 − opacity·map)``."""
    clear = None
    for layer, layer_map in zip(layers, maps):
        term = 1.0 - layer.opacity * roll_layer(layer_map, layer, frame)
        clear = term if clear is None else cv2.multiply(clear, term)
    return 1.0 - clear


class _Precipitation:
    """What rain and snow render alike: particle layers (`maps`, one per layer) of one `colour` in front of
    a veil that scatters towards `airlight` with transmission ``1 − veil·(base + spread·smooth field)``
    (none when `veil` is 0); `apply` veils the frame, then mixes in the particles by their combined
    coverage at video frame `frame`."""

    def __init__(self, layers, maps, colour, veil, airlight, base, spread, height, width, rng) -> None:
        self.layers, self.maps, self.colour, self.airlight = layers, maps, colour, airlight
        self.veil_t = None
        if veil > 0:
            self.veil_t = 1.0 - veil * (base + spread * smooth_field(height, width, rng))

    def apply(self, image: np.ndarray, frame: int = 0) -> np.ndarray:
        out = image if self.veil_t is None else scatter(image, self.veil_t, self.airlight)
        return mix(out, self.colour, coverage(self.layers, self.maps, frame))


# ----------------------------------------------------------------------------------------------- rain
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


class _Rain(_Precipitation):
    def __init__(
        self, height, width, rng, severity, scale, wrap=False, params: RainParams | None = None, streaks=None
    ):
        p = self.params = params or RainParams.sample(rng, severity, scale, streaks)
        maps = [
            render_streak_layer(streaks, layer, height, width)
            if isinstance(layer, StreakLayer)
            else render_particles(layer, height, width, rng, wrap)
            for layer in p.layers
        ]
        super().__init__(p.layers, maps, p.colour, p.mist, p.mist_airlight, 0.6, 0.4, height, width, rng)


# ----------------------------------------------------------------------------------------------- snow
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


class _Snow(_Precipitation):
    def __init__(self, height, width, rng, severity, scale, wrap=False, params: SnowParams | None = None):
        p = self.params = params or SnowParams.sample(rng, severity, scale)
        maps = [render_particles(layer, height, width, rng, wrap) for layer in p.layers]
        # flakes are opaque: mixed "over" the veiled frame
        super().__init__(p.layers, maps, p.colour, p.veil, p.airlight, 0.5, 0.5, height, width, rng)
