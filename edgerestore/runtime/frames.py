"""The runtime's input rule: a caller's frame as the graphs take it (uint8 BGR HxWx3, contiguous) and the
result back in the caller's format — numpy uint8 or uint16 arrays, HxW or HxWx1 (gray), HxWx3 (BGR, or RGB
with color="rgb"), HxWx4 (BGRA / RGBA), each side >= MIN_SIDE: gray in -> gray out (BGR->gray of the
restored frame), alpha passed through unchanged, 16-bit in -> 8-bit inference -> 16-bit out (x257).

Must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgerestore.contract import MIN_SIDE
from edgerestore.errors import UserError


@dataclass(frozen=True)
class FrameFormat:
    """How a caller's frame was laid out, to give the result back the same way."""

    dtype: np.dtype
    channels: int  # 1 (gray), 3, 4
    squeeze: bool  # gray given as HxW (not HxWx1)
    rgb: bool


def normalise_frame(frame: Any, color: str = "bgr") -> tuple[np.ndarray, FrameFormat]:
    """uint8 BGR HxWx3 (contiguous) for the graphs, and the caller's format. Raises UserError (one line)
    for anything the runtime does not accept."""
    if not isinstance(frame, np.ndarray):
        raise UserError(f"frame must be a numpy array (as cv2 returns), got {type(frame).__name__}")
    if frame.dtype not in (np.uint8, np.uint16):
        raise UserError(
            f"frame dtype {frame.dtype} is not supported; pass uint8 (or uint16) pixels, e.g. "
            "np.clip(x * 255, 0, 255).round().astype(np.uint8) for floats in [0, 1]"
        )
    if frame.ndim == 2:
        channels, squeeze = 1, True
    elif frame.ndim == 3 and frame.shape[2] in (1, 3, 4):
        channels, squeeze = frame.shape[2], False
    else:
        raise UserError(
            f"frame shape {frame.shape} is not an image; expected HxW, HxWx1, HxWx3 or HxWx4 (channels last)"
        )
    h, w = frame.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise UserError(f"frame of {h}x{w} is too small; both sides must be at least {MIN_SIDE} pixels")
    if color not in ("bgr", "rgb"):
        raise UserError(f"color must be 'bgr' or 'rgb', got {color!r}")
    fmt = FrameFormat(frame.dtype, channels, squeeze, color == "rgb")
    x = frame
    if x.dtype == np.uint16:
        x = ((x.astype(np.uint32) + 128) // 257).astype(np.uint8)  # 65535 -> 255, rounded
    if channels == 1:
        bgr = cv2.cvtColor(np.ascontiguousarray(x.reshape(h, w)), cv2.COLOR_GRAY2BGR)
    elif channels == 4:
        bgr = cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGBA2BGR if fmt.rgb else cv2.COLOR_BGRA2BGR)
    elif fmt.rgb:
        bgr = cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2BGR)
    else:
        bgr = np.ascontiguousarray(x)
    return bgr, fmt


def denormalise_frame(bgr: np.ndarray, fmt: FrameFormat, original: np.ndarray) -> np.ndarray:
    """The restored uint8 BGR frame in the caller's format (dtype, channels, order; alpha from `original`)."""
    if fmt.channels == 1:
        out = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        if not fmt.squeeze:
            out = out[:, :, None]
    elif fmt.channels == 4:
        out = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA if fmt.rgb else cv2.COLOR_BGR2BGRA)
    elif fmt.rgb:
        out = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        out = bgr
    if fmt.dtype == np.uint16:
        out = out.astype(np.uint16) * np.uint16(257)
    if fmt.channels == 4:
        out[:, :, 3] = original[:, :, 3]
    return out
