"""Rain rendered from photographed streaks (the Garg–Nayar photometric rain-streak database).

Garg & Nayar (SIGGRAPH 2006) photographed and rendered the appearance of falling drops — oscillating,
motion-blurred, lit from several directions; the database's images are grayscale streak fields, additive on
black. Streaks from it look like real rain in a way anti-aliased segments do not (uneven brightness along
a streak, tapered ends, the occasional bright glint), and they are how the public heavy-rain benchmarks were
made. `StreakBank` loads such a folder once; `sample_streak_layers` draws a rain scene's layers (a crisp
middle layer, a fine dense far one, wide defocused near streaks, more and wider layers as rain gets heavy),
`render_streak_layer` renders one at a frame's size: one streak image zoomed (anisotropically: heavy rain's
wide streaks), tiled, rotated to the wind's angle and defocused. Heavy rain also gets the rain-accumulation
veil (`RainParams.mist`), the scattering of the many drops too small to see one by one.

Like the rest of `edgerestore.data.degrade` this is numpy + OpenCV only and a pure function of the
generator; the streak images are training material (`--rain-streaks DIR`), never package data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgerestore.errors import UserError
from edgerestore.imageio import is_image_file


class StreakBank:
    """The streak images of a folder (recursive), grayscale uint8, each read once.

    ``bank = StreakBank("../shared/data/render/rain_streaks_garg_nayar")``; pass it to `degrade` (or a
    dataset) as ``streaks=bank``. Pickles cheaply enough for DataLoader workers (the images, ≈ 90 MB for the
    495 of the Garg–Nayar database)."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(
                f"rain streak folder {folder} does not exist (give --rain-streaks a folder of streak images)"
            )
        files = sorted(p for p in folder.rglob("*") if is_image_file(p))
        images = []
        for path in files:
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise UserError(f"cannot read rain streak image {path}")
            if min(image.shape) < 16:
                raise UserError(
                    f"rain streak image {path} is {image.shape[1]}×{image.shape[0]}; need ≥ 16 px"
                )
            images.append(image)
        if not images:
            raise UserError(f"no streak images in {folder} (looked for png/jpg/tif/bmp/webp, recursively)")
        self.folder = folder
        self.images = images

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class StreakLayer:
    """One layer of photographed streaks, in pixels at the frame's scale: streak image `image` of the bank
    (mirrored when `mirror`), zoomed by `zoom` vertically and ``zoom·stretch`` horizontally (wide streaks),
    shifted by `offset` (fractions of the tile), rotated `angle` degrees from vertical, defocused by `blur`,
    composited at `opacity`; `speed` is how far it falls per video frame (as `ParticleLayer`'s)."""

    image: int
    mirror: bool
    zoom: float
    stretch: float
    offset: tuple[float, float]
    angle: float
    blur: float
    opacity: float
    speed: float = 0.0


def sample_streak_layers(
    bank: StreakBank, rng: np.random.Generator, severity: float, scale: float, angle: float
) -> list[StreakLayer]:
    """A rain scene's layers at `severity` in [0, 1]: light rain is one crisp middle layer (sometimes a fine
    far one), heavy rain adds more middle layers (density), wider streaks and close defocused ones."""
    s = severity
    layers: list[StreakLayer] = []

    def add(zoom, stretch, blur, opacity, speed):
        layers.append(
            StreakLayer(
                image=int(rng.integers(len(bank))),
                mirror=bool(rng.random() < 0.5),
                zoom=zoom * scale,
                stretch=stretch,
                offset=(float(rng.random()), float(rng.random())),
                angle=angle + float(rng.normal(0.0, 2.0)),
                blur=blur * scale,
                opacity=opacity,
                speed=zoom * scale * speed,
            )
        )

    # the middle layer; heavy rain stacks one to two more (dense) with wider streaks
    for _ in range(1 + int(rng.random() < s) + int(rng.random() < s * s)):
        add(
            rng.uniform(0.45, 1.1),
            rng.uniform(1.0, 1.3 + 1.7 * s),
            rng.uniform(0.0, 0.6),
            rng.uniform(0.25, 0.45) * (0.75 + 0.6 * s),
            rng.uniform(40.0, 70.0),
        )
    if rng.random() < 0.35 + 0.5 * s:  # fine, dense, far rain
        add(
            rng.uniform(0.22, 0.45),
            1.0,
            rng.uniform(0.3, 0.8),
            rng.uniform(0.12, 0.3),
            rng.uniform(25.0, 40.0),
        )
    if rng.random() < 0.1 + 0.5 * s:  # close to the camera: long, wide, out of focus, faint
        add(
            rng.uniform(1.3, 2.4),
            rng.uniform(1.5, 3.0),
            rng.uniform(1.5, 3.5),
            rng.uniform(0.08, 0.25),
            rng.uniform(70.0, 110.0),
        )
    return layers


def render_streak_layer(bank: StreakBank, layer: StreakLayer, height: int, width: int) -> np.ndarray:
    """`layer`'s coverage at height × width, float32 in [0, 1] (not yet multiplied by its opacity). The tile
    repeats, so a video can roll the result without a visible seam at the streak scale."""
    image = bank.images[layer.image]
    if layer.mirror:
        image = image[:, ::-1]
    ih, iw = image.shape
    th = max(8, round(ih * layer.zoom))
    tw = max(8, round(iw * layer.zoom * layer.stretch))
    tile = cv2.resize(
        np.ascontiguousarray(image),
        (tw, th),
        interpolation=cv2.INTER_AREA if layer.zoom < 1 else cv2.INTER_LINEAR,
    )
    # cover the frame's diagonal, so that rotating about the centre leaves no empty corner
    side = int(math.ceil(math.hypot(height, width))) + 2
    reps_y, reps_x = -(-(side + th) // th), -(-(side + tw) // tw)
    big = np.tile(tile, (reps_y, reps_x))
    oy, ox = int(layer.offset[0] * th), int(layer.offset[1] * tw)
    big = big[oy : oy + side, ox : ox + side]
    centre = (side / 2.0, side / 2.0)
    rotation = cv2.getRotationMatrix2D(centre, layer.angle, 1.0)
    rotation[:, 2] += (width / 2.0 - centre[0], height / 2.0 - centre[1])
    out = cv2.warpAffine(
        big, rotation, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    out = out.astype(np.float32) * (1.0 / 255.0)
    if layer.blur >= 0.25:
        sigma = layer.blur
        # defocus spreads a streak: keep its peak so `opacity` means what it says (as render_particles does)
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        out *= min(3.0, 1.0 + 0.5 * sigma)
    return np.clip(out, 0.0, 1.0, out=out)
