"""Frames beyond a bundle: a frame that, once padded, exceeds the bundle's max shape or `tile_pixels` runs
in overlapping tiles (`tile_grid`: the fewest tiles within both limits, core edges on multiples of the
stride, `overlap` px of context on inner sides, only the cores kept; `run_in_tiles`), in bounded memory.

Must not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgerestore.contract import pad_to
from edgerestore.errors import UserError

#: Frames (once padded) of more pixels than this, or beyond the bundle's max shape, run in overlapping tiles
#: of at most this many pixels, so memory stays bounded whatever the frame size (1088x1920: the default
#: bundle's max shape).
TILE_PIXELS = 1088 * 1920
#: Context each tile reads beyond the part of the output it writes (pixels on every inner side). Measured on
#: uffn-tiny (README, *Frames of any size*): tiled vs whole-frame output >= 45 dB PSNR from 32 px on.
TILE_OVERLAP = 48


@dataclass(frozen=True)
class Tile:
    """One tile of a frame: the graphs read rows `y0:y1`, columns `x0:x1` (the core plus `overlap` of
    context on every side that has a neighbour) and the result keeps only the core `cy0:cy1`, `cx0:cx1`."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


def padded_side(n: int, stride: int, minimum: int) -> int:
    """A side of n pixels padded up to the stride and to `minimum` (itself rounded up to the stride)."""
    return max(-(-n // stride) * stride, -(-minimum // stride) * stride)


def tile_grid(
    h: int,
    w: int,
    *,
    stride: int,
    overlap: int,
    max_pixels: int,
    max_hw: tuple[int, int] | None = None,
    min_hw: tuple[int, int] = (1, 1),
) -> list[Tile]:
    """The fewest equal-ish tiles covering an h x w frame whose padded inputs fit `max_hw` and `max_pixels`.
    Core edges (and so tile origins, `overlap` being rounded up to the stride) fall on multiples of `stride`,
    so each tile sees the same pixel phase as the whole frame and only the overlap differs."""
    max_h, max_w = max_hw if max_hw is not None else (1 << 30, 1 << 30)
    # a small max shape takes a smaller overlap: a tile's core stays at least half of it
    room = min(max_h, max_w, math.isqrt(max_pixels)) // 4
    overlap = min(-(-max(overlap, 0) // stride) * stride, room // stride * stride)

    def edges(n: int, parts: int) -> list[int]:
        return [min(n, stride * round(i * n / (parts * stride))) for i in range(parts)] + [n]

    def span(n: int, parts: int, minimum: int) -> int:  # padded side of the largest of `parts` tiles of n
        e = edges(n, parts)
        largest = max(min(n, e[i + 1] + overlap) - max(0, e[i] - overlap) for i in range(parts))
        return padded_side(largest, stride, minimum)

    best: tuple[int, int] | None = None
    for rows in range(1, min(max(1, h // stride), 512) + 1):
        if best is not None and rows > best[0] * best[1]:
            break
        th = span(h, rows, min_hw[0])
        if th > max_h:
            continue
        for cols in range(1, min(max(1, w // stride), 512) + 1):
            if best is not None and rows * cols >= best[0] * best[1]:
                break
            tw = span(w, cols, min_hw[1])
            if tw <= max_w and th * tw <= max_pixels:
                best = (rows, cols)
                break
    if best is None:
        raise UserError(
            f"frame of {h}x{w} cannot be cut into tiles of at most {max_pixels} pixels within the bundle's "
            f"max shape {max_h}x{max_w} with {overlap} px of overlap; rebuild the bundle with a larger --max"
        )
    rows, cols = best

    ys, xs = edges(h, rows), edges(w, cols)
    tiles = []
    for i in range(rows):
        for j in range(cols):
            cy0, cy1, cx0, cx1 = ys[i], ys[i + 1], xs[j], xs[j + 1]
            tiles.append(
                Tile(
                    max(0, cy0 - overlap),
                    min(h, cy1 + overlap),
                    max(0, cx0 - overlap),
                    min(w, cx1 + overlap),
                    cy0,
                    cy1,
                    cx0,
                    cx1,
                )
            )
    return tiles


def run_in_tiles(
    image: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    *,
    stride: int,
    overlap: int,
    max_pixels: int,
    max_hw: tuple[int, int] | None,
    min_hw: tuple[int, int],
) -> np.ndarray:
    """`image` (uint8 BGR HxWx3) restored tile by tile (`tile_grid`): each tile reflect-padded to the stride
    and `min_hw`, run by `run` ([1, H', W', 3] in, its output [1, H', W', 3] out), and only its core kept, so
    memory is bounded by `max_pixels`, not by the frame."""
    h, w = image.shape[:2]
    tiles = tile_grid(
        h, w, stride=stride, overlap=overlap, max_pixels=max_pixels, max_hw=max_hw, min_hw=min_hw
    )
    restored = np.empty((h, w, 3), np.uint8)
    for t in tiles:
        part = np.ascontiguousarray(pad_to(image[t.y0 : t.y1, t.x0 : t.x1], stride, min_hw))
        out = run(part[None])
        restored[t.cy0 : t.cy1, t.cx0 : t.cx1] = out[
            0, t.cy0 - t.y0 : t.cy1 - t.y0, t.cx0 - t.x0 : t.cx1 - t.x0
        ]
    return restored
