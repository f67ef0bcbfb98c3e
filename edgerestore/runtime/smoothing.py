"""Temporal smoothing of the router's verdict for video (hysteresis, so the branch does not flicker).

Must not import torch.
"""

from __future__ import annotations

import numpy as np

from edgerestore.errors import UserError


class ConditionSmoother:
    """Hysteresis for video: the current condition changes only when a different one wins `dwell`
    consecutive routed frames, or (if `margin` is set) beats the current one's probability by at least
    `margin` in a single frame. The first routed frame sets the condition directly."""

    def __init__(self, dwell: int = 3, margin: float | None = None) -> None:
        if dwell < 1:
            raise UserError(f"dwell must be >= 1 frame, got {dwell}")
        if margin is not None and not 0.0 < margin <= 1.0:
            raise UserError(f"margin must be in (0, 1], got {margin}")
        self.dwell = dwell
        self.margin = margin
        self.reset()

    def reset(self) -> None:
        self.current: int | None = None
        self._candidate: int | None = None
        self._streak = 0

    def update(self, probs: np.ndarray) -> int:
        winner = int(np.argmax(probs))
        if self.current is None or winner == self.current:
            self.current = winner
            self._candidate, self._streak = None, 0
            return self.current
        if winner == self._candidate:
            self._streak += 1
        else:
            self._candidate, self._streak = winner, 1
        by_margin = self.margin is not None and probs[winner] - probs[self.current] >= self.margin
        if self._streak >= self.dwell or by_margin:
            self.current = winner
            self._candidate, self._streak = None, 0
        return self.current
