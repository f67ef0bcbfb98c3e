"""A reduced-resolution branch's result at full resolution, as the model's `UFFN.restore` composes it: the
local affine map the branch applied at the reduced size (`contract.guided_coefficients`: gain a and offset b
per pixel and channel) upsampled bilinearly and applied to the frame, ``a·frame + b``.

Must not import torch.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgerestore.contract import GUIDED_EPS, guided_coefficients


class GuidedUpsampler:
    """Applies reduced branches' guided maps to full-size frames, keeping its full-size float work images
    while frames keep their size (fresh ones each frame cost their first-touch page faults, ≈ 2.5 ms of a
    640×360 haze frame's 5 ms). Not thread-safe: one per restorer, used under its lock."""

    def __init__(self) -> None:
        self._scratch: np.ndarray | None = None

    def apply(
        self, bgr: np.ndarray, small: np.ndarray, restored_small: np.ndarray, tile_pixels: int
    ) -> np.ndarray:
        """`bgr` (uint8 BGR HxWx3) with the map that took `small` (its downscaled copy) to `restored_small`.
        A frame above `tile_pixels` is done in strips of rows (the same bilinear map, as an affine warp), so
        no full-size float copy is made."""
        gain, offset = guided_coefficients(small, restored_small, GUIDED_EPS * 255.0**2)
        big_h, big_w = bgr.shape[:2]
        if big_h * big_w <= tile_pixels:
            # three full-size float work images, kept while frames keep their size
            if self._scratch is None or self._scratch.shape[1:] != bgr.shape:
                self._scratch = np.empty((3, *bgr.shape), np.float32)
            a, b, scaled = self._scratch
            cv2.resize(gain, (big_w, big_h), dst=a, interpolation=cv2.INTER_LINEAR)
            cv2.resize(offset, (big_w, big_h), dst=b, interpolation=cv2.INTER_LINEAR)
            # rounded and saturated; OpenCV's ops: ~10x numpy's here
            cv2.multiply(bgr, a, dst=scaled, dtype=cv2.CV_32F)
            return cv2.add(scaled, b, dtype=cv2.CV_8U)
        sx, sy = small.shape[1] / big_w, small.shape[0] / big_h
        out = np.empty_like(bgr)
        step = max(1, tile_pixels // big_w)
        for y0 in range(0, big_h, step):
            y1 = min(big_h, y0 + step)
            to_small = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, (y0 + 0.5) * sy - 0.5]])
            a, b = (
                cv2.warpAffine(
                    coefficients,
                    to_small,
                    (big_w, y1 - y0),
                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                    borderMode=cv2.BORDER_REPLICATE,
                )
                for coefficients in (gain, offset)
            )
            out[y0:y1] = cv2.add(cv2.multiply(bgr[y0:y1], a, dtype=cv2.CV_32F), b, dtype=cv2.CV_8U)
        return out
