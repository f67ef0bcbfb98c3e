"""Whole-frame thumbnails with weather, for training the path router.

The router reads a fixed-size thumbnail of the whole frame (DESIGN.md), so it must learn from whole frames
shrunk the way the runtime shrinks them (cv2.INTER_AREA on uint8), not from training patches. Each item is a
clean photograph (or road frame) at a random camera-like size and aspect, degraded with one condition, then
shrunk; for conditions with real photographs (`real`, e.g. real fog), a share `real_share` of the items is a
random crop of one of those instead, with its own weather.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgerestore.conditions import CONDITIONS
from edgerestore.contract import router_thumbnail
from edgerestore.data.degrade import degrade
from edgerestore.data.streaks import StreakBank
from edgerestore.data.synthetic import load_clean_images


class RouterThumbnailDataset:
    """Item i: {"thumbnail": float32 [3,S,S] RGB in [0,1], "condition": int}; a pure function of (seed, i)."""

    def __init__(
        self,
        clean_dir: str | Path | None = None,
        size: int = 224,
        seed: int = 0,
        conditions: tuple[str, ...] = CONDITIONS,
        length: int = 1_000_000,
        long_side: tuple[int, int] = (256, 560),
        images: list[np.ndarray] | None = None,
        real: dict[str, list[np.ndarray]] | None = None,
        real_share: float = 0.5,
        streaks: StreakBank | None = None,
    ) -> None:
        if images is None and clean_dir is None:
            raise ValueError("give clean_dir or images")
        self.images = load_clean_images(clean_dir) if images is None else list(images)
        if not self.images:
            raise ValueError("no clean images for router thumbnails")
        self.size, self.seed, self.conditions, self.length = size, seed, conditions, length
        self.long_side = long_side
        # real weather photographs per condition (e.g. real fog): used as they are, for a share of the items
        self.real = {c: list(v) for c, v in (real or {}).items() if v}
        self.real_share = float(real_share)
        self.streaks = streaks  # a StreakBank: most rain from photographed streaks

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        import torch

        rng = np.random.default_rng([self.seed, 7, index])
        condition = self.conditions[index % len(self.conditions)]
        real = self.real.get(condition)
        use_real = bool(real) and rng.random() < self.real_share
        pool = real if use_real else self.images
        image = pool[rng.integers(len(pool))]  # uint8 RGB
        h, w = image.shape[:2]
        # a random camera-like crop (aspect 4:3 … 16:9, at least half the photo) at a random resolution
        aspect = rng.uniform(1.0, 1.78)
        cw = int(min(w, rng.uniform(0.5, 1.0) * w))
        ch = int(min(h, max(16, cw / aspect)))
        y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = image[y0 : y0 + ch, x0 : x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        scale = rng.uniform(*self.long_side) / max(crop.shape[:2])
        frame = cv2.resize(
            crop,
            (max(16, round(crop.shape[1] * scale)), max(16, round(crop.shape[0] * scale))),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
        if use_real:  # a real photograph already shows its weather
            u8 = np.ascontiguousarray(frame)
        else:  # weather features scale with the frame like a camera's (degrade's convention: long side / 640)
            degraded = degrade(
                frame.astype(np.float32) / 255.0,
                condition,
                rng,
                scale=max(frame.shape[:2]) / 640.0,
                streaks=self.streaks,
            )
            u8 = np.clip(degraded * 255.0 + 0.5, 0, 255).astype(np.uint8)
        thumb = router_thumbnail(u8, self.size)
        tensor = torch.from_numpy(np.ascontiguousarray(thumb.transpose(2, 0, 1))).float() / 255.0
        return {"thumbnail": tensor, "condition": CONDITIONS.index(condition)}
