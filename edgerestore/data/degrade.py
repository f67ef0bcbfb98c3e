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

One module per kind of weather renders it (`data/precipitation.py`: rain and snow, `haze.py`, `raindrops.py`,
on the shared pieces of `data/render.py`); this module is the public API over them and the training pairs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgerestore.conditions import CONDITIONS
from edgerestore.data.haze import HazeParams, _Haze
from edgerestore.data.precipitation import STREAK_SHARE, RainParams, SnowParams, _Rain, _Snow
from edgerestore.data.raindrops import RaindropParams, _Raindrops
from edgerestore.data.render import mix, tint
from edgerestore.data.streaks import StreakBank
from edgerestore.errors import UserError
from edgerestore.imageio import is_image_file

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
    colour = tint(rng, float(rng.uniform(0.7, 1.0)), 0.01)
    return mix(out, colour, np.full(out.shape[:2], k, np.float32))


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


__all__ = [
    "DEGRADE_CONDITIONS",
    "STREAK_SHARE",
    "HazeParams",
    "RainParams",
    "RaindropParams",
    "SnowParams",
    "WeatherSequence",
    "brighten_scene",
    "degrade",
    "degrade_uint8_bgr",
    "find_clean_images",
    "photometric_jitter",
    "random_crop_scaled",
    "synthesise_pair",
]
