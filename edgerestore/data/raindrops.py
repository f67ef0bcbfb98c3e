"""Synthetic adherent raindrops on the lens (`edgerestore.data.degrade`, after Qian et al. 2018): irregular
domes of lognormal sizes, each an inverted, minified, out-of-focus view of the scene around it. numpy +
OpenCV only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from edgerestore.data.render import gaussian_blur


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
        self.highlights = gaussian_blur(highlights.astype(np.float32) / 255.0, max(0.5, 0.3 * radius)) * mask
        keep = 1.0 - gaussian_blur(mask, self.edge_blur)
        if f > 1:
            keep = cv2.resize(keep, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_LINEAR)
        self.keep = cv2.merge([keep] * 3)

    def apply(self, image: np.ndarray, frame: int = 0) -> np.ndarray:
        p, f = self.params, self.factor
        h, w = self.small_shape
        small = image if f == 1 else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        background = gaussian_blur(small, self.background_blur)
        seen = cv2.remap(background, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        level = (1.0 - p.contrast) * background.reshape(-1, 3).mean(axis=0) + p.brightness
        offset = cv2.merge([self.shade * float(c) + self.highlights for c in level])
        drop = cv2.add(cv2.multiply(seen, self.gain), offset)  # premultiplied by the drop mask
        drop = gaussian_blur(drop, self.edge_blur)  # so the drops' edges defocus too
        if f > 1:
            drop = cv2.resize(drop, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_LINEAR)
        return cv2.add(cv2.multiply(image, self.keep), drop)
