"""Synthetic bad weather on clean photographs: rain streaks, haze, adherent raindrops and snow.

Training pairs for every restoration branch and the router come from here: a clean photograph is the target
and `degrade` makes the input. Everything is a pure function of a `numpy.random.Generator`, so a seed
reproduces a sample exactly. Imports numpy and OpenCV only: never torch (the demo clip and the INT8
calibration frames are made with it on machines without PyTorch).

Images are float32 RGB ``H×W×3`` in [0, 1]; outputs are new arrays of the same shape, clipped to [0, 1].
Sizes of weather features (streak length, drop radius, flake size) are in pixels of a photograph about
500–800 px across, the size of the clean set and of the public test sets; ``scale`` multiplies them (a crop
shrunk by 2 before degrading gets ``scale=0.5``, so the model sees the weather at several scales).

The models behind each condition, with ranges checked against the real evaluation data:

* ``rain`` — streak layers drawn as anti-aliased segments (motion-blurred drops), each layer with its own
  density, length, width, defocus, opacity and angle around one wind direction: a dense fine far layer, a
  crisp middle layer (alone it looks like Rain100L), a wide faint near layer; heavy rain adds a veil of mist
  (as in Rain800/Rain100H and the real DDN photographs).
* ``haze`` — the atmospheric scattering model ``I = J·t + A·(1 − t)``, ``t = exp(−β·d)`` with a normalised
  depth proxy ``d`` mixed from a scene layout (ground plane under a horizon, a room seen towards a vanishing
  point, or a ramp), a smooth random field and the clean image's dark channel and brightness, refined with an
  edge-aware guided filter so depth steps follow object edges. β spans 0.6–2.2 (RESIDE uses 0.6–1.8) and A
  0.7–1.0, mostly near 1 (the SOTS indoor pairs measure A ≈ 1.0 and mean t 0.3–0.85).
* ``raindrop`` — drops on the lens (Qian et al. 2018): irregular domes of lognormal sizes, each an inverted,
  minified, out-of-focus view of the scene around it, with darkened rims, occasional highlights and defocused
  edges; the scene between drops stays sharp.
* ``snow`` — flakes in several layers (dense fine far flakes, opaque middle flakes, large out-of-focus
  near flakes), a little motion along the fall direction, and the veil of snowfall (as in CSD, Snow100K).
* ``clean`` — the identity. Photometric jitter (`photometric_jitter`) is applied to the clean photograph
  before any condition, so it changes input and target alike.
* ``rain+snow`` — snow then rain on one frame (for CMUDRN's mixed samples).

`WeatherSequence` renders the same weather over a video: rain and snow layers fall between frames, drops and
haze stay where they are.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgerestore.conditions import CONDITIONS
from edgerestore.data.streaks import StreakBank, StreakLayer, render_streak_layer, sample_streak_layers
from edgerestore.errors import UserError
from edgerestore.imageio import is_image_file

#: Of rain scenes when a `StreakBank` is given: photographed streaks; the rest are drawn segments.
STREAK_SHARE = 0.7

#: Conditions `degrade` accepts: the router's classes plus the mixed ``rain+snow``.
DEGRADE_CONDITIONS: tuple[str, ...] = (*CONDITIONS, "rain+snow")


# ----------------------------------------------------------------------------------------------- helpers
def _as_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {image.shape}")
    return np.ascontiguousarray(image, dtype=np.float32)


def _severity(rng: np.random.Generator, severity: float | None) -> float:
    if severity is None:
        return float(rng.uniform(0.0, 1.0))
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    return float(severity)


def _normalise(x: np.ndarray) -> np.ndarray:
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
    return _normalise(out)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.25:
        return x
    return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _guided_filter(
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


def _mix(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``image·(1 − alpha) + colour·alpha`` with alpha H×W and one RGB colour (OpenCV ops: several times
    faster than numpy broadcasting on H×W×3)."""
    alpha3 = cv2.merge([alpha, alpha, alpha])
    return cv2.subtract(image, cv2.multiply(cv2.subtract(image, _scalar(colour)), alpha3))


def _veil(image: np.ndarray, t: np.ndarray, airlight: np.ndarray) -> np.ndarray:
    """Scattering: ``I·t + A·(1 − t)`` with t H×W and A per channel."""
    return _mix(image, airlight, 1.0 - t)


def _coverage(layers: list[ParticleLayer], maps: list[np.ndarray], frame: int) -> np.ndarray:
    """Combined opacity of same-coloured layers: ``1 − Π(1 − opacity·map)``."""
    clear = None
    for layer, layer_map in zip(layers, maps):
        term = 1.0 - layer.opacity * _roll(layer_map, layer, frame)
        clear = term if clear is None else cv2.multiply(clear, term)
    return 1.0 - clear


def _tint(rng: np.random.Generator, grey: float, spread: float) -> np.ndarray:
    return np.clip(grey + rng.normal(0.0, spread, 3), 0.0, 1.0).astype(np.float32)


def photometric_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Mild exposure, gamma and saturation changes of a clean photograph (applied before degrading, so to
    input and target alike): widens the clean set without teaching the model a colour correction.

    `image`: uint8 or float32 RGB (uint8 goes through a lookup table); returns float32 in [0, 1].
    """
    gain = 1.0 + strength * rng.uniform(-0.15, 0.1)
    gamma = float(np.exp(strength * rng.uniform(-0.15, 0.15)))
    saturation = np.float32(1.0 + strength * rng.uniform(-0.15, 0.15))
    if image.dtype == np.uint8:
        lut = np.power(np.clip(np.arange(256, dtype=np.float32) / 255.0 * gain, 0.0, 1.0), gamma)
        out = lut.astype(np.float32)[image]
    else:
        out = np.power(np.clip(_as_image(image) * gain, 0.0, 1.0), gamma).astype(np.float32)
    grey = out.mean(axis=2, keepdims=True)
    out -= grey
    out *= saturation
    out += grey
    return np.clip(out, 0.0, 1.0, out=out)


def brighten_scene(
    image: np.ndarray, rng: np.random.Generator, share: float = 0.5, most: float = 0.4
) -> np.ndarray:
    """For a share `share` of the calls, blend a clean float32 RGB image towards a bright, nearly grey colour by up to
    `most`: the bright, low-contrast surfaces (white walls, overcast skies) that Kodak24, CBSD68 and McMaster
    rarely show. Used on the clean target of haze pairs: trained only on vivid scenes whose dark channel is
    near 0, the haze branch learned to darken every scene that far and over-dehazed bright indoor ones (SOTS
    indoor, whose clean dark channel has a median of 0.1–0.5). Returns float32 RGB in [0, 1].
    """
    out = _as_image(image)
    if rng.random() >= share:
        return out
    k = float(rng.uniform(0.0, most))
    colour = _tint(rng, float(rng.uniform(0.7, 1.0)), 0.01)
    return _mix(out, colour, np.full(out.shape[:2], k, np.float32))


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
        out = _blur(out, blur) * min(4.0, 1.0 + blur / max(thickness, 1))
    if factor > 1:
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0)


def _roll(layer_map: np.ndarray, layer: ParticleLayer, frame: int) -> np.ndarray:
    if frame == 0 or layer.speed == 0.0:
        return layer_map
    a = np.radians(layer.angle)
    dx, dy = round(layer.speed * frame * np.sin(a)), round(layer.speed * frame * np.cos(a))
    return np.roll(layer_map, (dy, dx), axis=(0, 1))


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
                colour=_tint(rng, rng.uniform(0.8, 1.0), 0.015),
                mist=mist,
                mist_airlight=_tint(rng, rng.uniform(0.7, 0.95), 0.015),
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
            colour=_tint(rng, rng.uniform(0.78, 1.0), 0.015),
            mist=mist,
            mist_airlight=_tint(rng, rng.uniform(0.75, 0.95), 0.015),
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
        out = image if self.mist_t is None else _veil(image, self.mist_t, p.mist_airlight)
        return _mix(out, p.colour, _coverage(p.layers, self.maps, frame))


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
            colour=_tint(rng, rng.uniform(0.88, 1.0), 0.01),
            veil=veil,
            airlight=_tint(rng, rng.uniform(0.8, 1.0), 0.015),
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
        out = image if self.veil_t is None else _veil(image, self.veil_t, p.airlight)
        return _mix(out, p.colour, _coverage(p.layers, self.maps, frame))  # flakes are opaque: "over"


# ----------------------------------------------------------------------------------------------- haze
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
        airlight = _tint(rng, grey, 0.01) + rng.uniform(-0.03, 0.03) * np.array([-1.0, 0.0, 1.0], np.float32)
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
    return _normalise(np.cos(a) * u + np.sin(a) * v).astype(np.float32)


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
        parts.append(_normalise(0.7 * dark + 0.3 * small.mean(axis=2)))
        concentration.append(1.5)
    weights = rng.dirichlet(concentration)
    depth = _normalise(sum(wt * p for wt, p in zip(weights, parts)).astype(np.float32))
    depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_LINEAR)
    if guide is not None:
        gray = cv2.cvtColor(guide, cv2.COLOR_RGB2GRAY)
        radius = max(2, round(min(height, width) / 40))
        depth = _guided_filter(gray, depth, radius, 1e-3, subsample=max(1, min(height, width) // 160))
    return np.clip(depth, 0.0, 1.0)


class _Haze:
    def __init__(self, height, width, rng, severity, scale, guide=None, params: HazeParams | None = None):
        self.params = p = params or HazeParams.sample(rng, severity, scale)
        depth = haze_depth(height, width, rng, p.layout, guide)
        self.t = np.exp(-p.beta * (p.near + (1.0 - p.near) * depth)).astype(np.float32)
        self._one_minus_t = 1.0 - self.t

    def apply(self, image: np.ndarray, frame: int = 0) -> np.ndarray:
        return _mix(image, self.params.airlight, self._one_minus_t)


# ----------------------------------------------------------------------------------------------- raindrops
@functools.lru_cache(maxsize=1)
def _drop_sprites(count: int = 24, size: int = 64) -> tuple[np.ndarray, ...]:
    """Height maps of irregular drop outlines (domes, 1 at the centre, 0 outside), made once per process."""
    rng = np.random.default_rng(20180601)
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = (xx - c) / c, (yy - c) / c
    rho, phi = np.hypot(dx, dy), np.arctan2(dy, dx)
    sprites = []
    for _ in range(count):
        radius = np.ones_like(rho)
        for k in range(1, 5):
            radius += rng.normal(0.0, 0.07 / k) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
        radius *= 0.97 / float(radius.max())
        sprites.append(np.sqrt(np.clip(1.0 - (rho / radius) ** 2, 0.0, 1.0)).astype(np.float32))
    return tuple(sprites)


@dataclass
class RaindropParams:
    """Drops per 100×100 px, their median radius (px) and spread, and how the view through them looks."""

    density: float
    radius: float
    radius_spread: float
    magnification: tuple[float, float]  # inverted, minified view: sample at centre − m·offset
    background_blur: float  # the scene seen through a drop is out of focus
    edge_blur: float  # the drop itself is out of focus
    rim: float  # edge darkening
    look_up: float  # drops show the (brighter) scene above them, this fraction of the frame higher
    contrast: float
    brightness: float
    highlight: float  # probability of a specular highlight per drop

    @classmethod
    def sample(cls, rng: np.random.Generator, severity: float, scale: float = 1.0) -> RaindropParams:
        s = severity
        return cls(
            density=float(rng.uniform(2.0, 4.0) + 8.0 * s * rng.uniform(0.6, 1.0)),
            radius=float(rng.uniform(5.0, 10.0) * (0.8 + 0.5 * s) * scale),
            radius_spread=float(rng.uniform(0.35, 0.6)),
            magnification=(float(rng.uniform(1.5, 3.0)), float(rng.uniform(4.0, 8.0))),
            background_blur=float(rng.uniform(1.5, 5.0) * scale),
            edge_blur=float(rng.uniform(0.8, 4.0) * scale),
            rim=float(rng.uniform(0.15, 0.5)),
            look_up=float(rng.uniform(0.05, 0.3)),
            contrast=float(rng.uniform(0.5, 0.9)),
            brightness=float(rng.uniform(0.0, 0.12)),
            highlight=float(rng.uniform(0.0, 0.6)),
        )


@functools.lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return xx, yy


class _Raindrops:
    """Drops are out of focus, so on frames of 192 px and more they are made at half resolution (the
    drops' geometry, the view through them, their defocus) and upsampled over the sharp frame."""

    def __init__(self, height, width, rng, severity, scale, params: RaindropParams | None = None):
        self.params = p = params or RaindropParams.sample(rng, severity, scale)
        self.shape = (height, width)
        self.factor = f = 2 if min(height, width) >= 192 else 1
        height, width, scale = -(-height // f), -(-width // f), scale / f
        self.small_shape = (height, width)
        radius, background_blur, self.edge_blur = p.radius / f, p.background_blur / f, p.edge_blur / f
        sprites = _drop_sprites()
        dome = np.zeros((height, width), np.float32)
        ids = np.zeros((height, width), np.int32)  # 0: no drop, i: drop i − 1
        highlights = np.zeros((height, width), np.uint8)
        count = int(rng.poisson(p.density * height * width / 1e4 / max(scale, 0.25) ** 2))
        count = min(count, height * width // 16 + 1)
        radii = np.sort(
            np.clip(radius * np.exp(rng.normal(0.0, p.radius_spread, count)), 1.0, 0.25 * max(height, width))
        )
        aspects = rng.uniform(0.75, 1.3, count)
        half_w, half_h = np.maximum(1.0, radii * np.sqrt(aspects)), np.maximum(1.0, radii / np.sqrt(aspects))
        centres_x = rng.uniform(-half_w, width + half_w)
        centres_y = rng.uniform(-half_h, height + half_h)
        mags = np.concatenate([[0.0], rng.uniform(*p.magnification, count)]).astype(np.float32)
        which = rng.integers(len(sprites), size=count)
        flips = rng.choice([-1, 1], size=(count, 2))
        shines = (rng.random(count) < p.highlight) & (radii > 3)
        for i in range(count - 1, -1, -1):  # big drops first, small ones sit on top
            rw, rh, x0, y0 = half_w[i], half_h[i], centres_x[i], centres_y[i]
            bw, bh = max(2, round(2 * rw)), max(2, round(2 * rh))
            left, top = round(x0 - bw / 2), round(y0 - bh / 2)
            l0, t0, l1, t1 = max(0, left), max(0, top), min(width, left + bw), min(height, top + bh)
            if l1 <= l0 or t1 <= t0:
                continue
            sprite = sprites[which[i]][:: flips[i, 0], :: flips[i, 1]]
            sprite = cv2.resize(
                sprite, (bw, bh), interpolation=cv2.INTER_AREA if bw < 64 else cv2.INTER_LINEAR
            )
            sub = sprite[t0 - top : t1 - top, l0 - left : l1 - left]
            dome_win, ids_win = dome[t0:t1, l0:l1], ids[t0:t1, l0:l1]
            take = sub > dome_win
            np.copyto(dome_win, sub, where=take)
            np.copyto(ids_win, i + 1, where=take)
            if shines[i]:
                centre = (round((x0 - 0.35 * rw) * 4), round((y0 - 0.4 * rh) * 4))
                level = int(rng.integers(80, 220))
                cv2.circle(
                    highlights, centre, max(1, round(0.12 * radii[i] * 4)), level, -1, cv2.LINE_AA, shift=2
                )
        mask = (ids > 0).astype(np.float32)
        xx, yy = _pixel_grid(height, width)
        cx = np.concatenate([[0.0], centres_x]).astype(np.float32)[ids]
        cy = np.concatenate([[0.0], centres_y]).astype(np.float32)[ids]
        mag = mags[ids]
        # an inverted, minified view of the scene around the drop, read from a blurred copy
        self.map_x = xx + mask * (cx - xx - mag * (xx - cx))
        self.map_y = yy + mask * (cy - yy - mag * (yy - cy) - p.look_up * height)
        self.background_blur = background_blur
        # darker towards the rim (light leaving the drop's edge is bent away from the lens)
        shade = mask * (1.0 - p.rim * (1.0 - dome) ** 3)
        self.gain = cv2.merge([p.contrast * shade] * 3)
        self.shade = shade
        self.highlights = _blur(highlights.astype(np.float32) / 255.0, max(0.5, 0.3 * radius)) * mask
        keep = 1.0 - _blur(mask, self.edge_blur)
        if f > 1:
            keep = cv2.resize(keep, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_LINEAR)
        self.keep = cv2.merge([keep] * 3)

    def apply(self, image: np.ndarray, frame: int = 0) -> np.ndarray:
        p, f = self.params, self.factor
        h, w = self.small_shape
        small = image if f == 1 else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        background = _blur(small, self.background_blur)
        seen = cv2.remap(background, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        level = (1.0 - p.contrast) * background.reshape(-1, 3).mean(axis=0) + p.brightness
        offset = cv2.merge([self.shade * float(c) + self.highlights for c in level])
        drop = cv2.add(cv2.multiply(seen, self.gain), offset)  # premultiplied by the drop mask
        drop = _blur(drop, self.edge_blur)  # so the drops' edges defocus too
        if f > 1:
            drop = cv2.resize(drop, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_LINEAR)
        return cv2.add(cv2.multiply(image, self.keep), drop)


# ----------------------------------------------------------------------------------------------- public API
def _make(
    condition: str,
    height: int,
    width: int,
    rng,
    severity: float,
    scale: float,
    guide=None,
    wrap=False,
    streaks: StreakBank | None = None,
):
    if condition == "rain":
        return _Rain(height, width, rng, severity, scale, wrap, streaks=streaks)
    if condition == "snow":
        return _Snow(height, width, rng, severity, scale, wrap)
    if condition == "haze":
        return _Haze(height, width, rng, severity, scale, guide)
    if condition == "raindrop":
        return _Raindrops(height, width, rng, severity, scale)
    raise ValueError(f"unknown condition {condition!r}; expected one of {', '.join(DEGRADE_CONDITIONS)}")


def degrade(
    image: np.ndarray,
    condition: str,
    rng: np.random.Generator,
    severity: float | None = None,
    scale: float = 1.0,
    streaks: StreakBank | None = None,
) -> np.ndarray:
    """`image` (float32 RGB H×W×3 in [0, 1]) with `condition`'s weather: a new float32 array in [0, 1].

    `condition` is one of `DEGRADE_CONDITIONS` (``clean`` returns a copy). `severity` in [0, 1] (drawn
    from `rng` when None) moves every parameter range from light to heavy; `scale` multiplies feature sizes
    (see the module docstring); `streaks` (a `StreakBank`) renders most rain from photographed streaks.
    The result is a pure function of the arguments and `rng`'s state.
    """
    image = _as_image(image)
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    h, w = image.shape[:2]
    if condition == "clean":
        return image.copy()
    if condition == "rain+snow":
        s = _severity(rng, severity)
        snowy = _Snow(h, w, rng, 0.7 * s, scale).apply(image)
        out = _Rain(h, w, rng, 0.7 * s, scale, streaks=streaks).apply(snowy)
    else:
        s = _severity(rng, severity)
        out = _make(condition, h, w, rng, s, scale, guide=image, streaks=streaks).apply(image)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def degrade_uint8_bgr(
    frame: np.ndarray, condition: str, seed: int, severity: float | None = None, scale: float | None = None
) -> np.ndarray:
    """`degrade` for OpenCV frames: uint8 BGR in, uint8 BGR out, seeded by `seed`. `scale` defaults to the
    frame's long side / 640 (weather features grow with the camera's resolution)."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a uint8 H×W×3 BGR frame, got {frame.dtype} {frame.shape}")
    scale = max(frame.shape[:2]) / 640.0 if scale is None else scale
    rgb = frame[:, :, ::-1].astype(np.float32) * (1.0 / 255.0)
    out = degrade(rgb, condition, np.random.default_rng(seed), severity, scale)
    return np.ascontiguousarray((out[:, :, ::-1] * 255.0 + 0.5).astype(np.uint8))


class WeatherSequence:
    """The same weather over consecutive video frames of one size: rain and snow layers fall from frame to
    frame (each layer at its own speed, so near streaks move faster), drops stay on the lens and haze keeps
    its depth (from the layout and a smooth field, not from the frames, so it does not flicker).

    ``seq = WeatherSequence(360, 640, "rain", seed=3); out = seq.apply_uint8_bgr(frame, index)``.
    """

    def __init__(
        self,
        height: int,
        width: int,
        condition: str,
        seed: int,
        severity: float | None = None,
        scale: float | None = None,
        streaks: StreakBank | None = None,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.condition, self.shape = condition, (height, width)
        s = _severity(rng, severity)
        scale = max(height, width) / 640.0 if scale is None else scale
        if condition == "clean":
            self._parts: list = []
        elif condition == "rain+snow":
            self._parts = [
                _Snow(height, width, rng, 0.7 * s, scale, True),
                _Rain(height, width, rng, 0.7 * s, scale, True, streaks=streaks),
            ]
        else:
            self._parts = [_make(condition, height, width, rng, s, scale, wrap=True, streaks=streaks)]

    def apply(self, image: np.ndarray, index: int) -> np.ndarray:
        """Frame `index` (float32 RGB H×W×3 in [0, 1]) with the weather as it is at that frame."""
        image = _as_image(image)
        if image.shape[:2] != self.shape:
            raise ValueError(
                f"this sequence is {self.shape[1]}×{self.shape[0]}, the frame {image.shape[1]}×{image.shape[0]}"
            )
        out = image.copy()
        for part in self._parts:
            out = part.apply(out, index)
        return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)

    def apply_uint8_bgr(self, frame: np.ndarray, index: int) -> np.ndarray:
        """`apply` for OpenCV frames (uint8 BGR in and out)."""
        out = self.apply(frame[:, :, ::-1].astype(np.float32) * (1.0 / 255.0), index)
        return np.ascontiguousarray((out[:, :, ::-1] * 255.0 + 0.5).astype(np.uint8))


# ----------------------------------------------------------------------------------------------- pairs
def random_crop_scaled(
    image: np.ndarray, size: int, rng: np.random.Generator, scale_range: tuple[float, float] = (0.75, 2.0)
) -> tuple[np.ndarray, float]:
    """A random square crop of side ``size·k`` (k log-uniform in `scale_range`, at most the image) resized
    to `size`; returns it and the factor (size / crop side) to pass to `degrade` as `scale`."""
    h, w = image.shape[:2]
    k = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    side = int(max(8, min(h, w, round(size * k))))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = image[y0 : y0 + side, x0 : x0 + side]
    if side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        crop = cv2.resize(crop, (size, size), interpolation=interp)
    return crop, size / side


def synthesise_pair(
    clean_rgb: np.ndarray,
    condition: str,
    rng: np.random.Generator,
    size: int,
    augment: bool = True,
    scale_range: tuple[float, float] = (0.75, 2.0),
    severity: float | None = None,
    rotate: float = 0.3,
    streaks: StreakBank | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(degraded input, clean target), float32 RGB size×size×3 in [0, 1], from a uint8 RGB photograph.

    Training (`augment`): a scale-jittered crop (`random_crop_scaled`), a random horizontal flip and, for
    a share `rotate` of the samples, a 90°/180°/270° rotation, all *before* the weather (rain keeps falling
    down), photometric jitter on both (and, for haze, `brighten_scene`), then `degrade`. Validation:
    a plain crop at the photograph's own scale (reflect-padded if smaller), no flips, no jitter.
    """
    if augment:
        crop, scale = random_crop_scaled(clean_rgb, size, rng, scale_range)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        # 90° rotations (drawn before the weather, so rain still falls down) widen a small clean set, but
        # real frames are upright: rotate only a share `rotate` of the samples
        if rng.random() < rotate:
            crop = np.rot90(crop, int(rng.integers(1, 4)))
        target = photometric_jitter(crop, rng)
        if condition == "haze":
            target = brighten_scene(target, rng)
    else:
        h, w = clean_rgb.shape[:2]
        if h < size or w < size:
            clean_rgb = np.pad(
                clean_rgb, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="reflect"
            )
            h, w = clean_rgb.shape[:2]
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        target = clean_rgb[y0 : y0 + size, x0 : x0 + size].astype(np.float32) * (1.0 / 255.0)
        scale = 1.0
    target = np.ascontiguousarray(target)
    return degrade(target, condition, rng, severity, scale, streaks), target


def find_clean_images(folder: str | Path) -> list[Path]:
    """Every image file under `folder` (recursive, sorted); `UserError` if there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"clean image folder {folder} does not exist; give a folder of clean photographs")
    files = sorted(p for p in folder.rglob("*") if is_image_file(p))
    if not files:
        raise UserError(f"no images in {folder} (looked for png/jpg/tif/bmp/webp, recursively)")
    return files
