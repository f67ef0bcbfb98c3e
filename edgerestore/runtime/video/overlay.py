"""Drawing: the overlay (condition, confidence, FPS, latency, drops, backend), raw | restored side by side,
and `compose_view`, the picture a window shows or a recording holds. Pure functions of images and stats.

Imports numpy and OpenCV only.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edgerestore.runtime.video.pipeline import FrameResult, LiveStats

GREEN = (80, 255, 80)
WHITE = (255, 255, 255)
YELLOW = (0, 220, 255)
RED = (60, 60, 255)


def side_by_side(
    raw: np.ndarray, restored: np.ndarray, labels: tuple[str, str] | None = ("raw", "restored")
) -> np.ndarray:
    """raw | restored, same height, labelled in each half's bottom-right corner (the overlay uses the left)."""
    if restored.shape[:2] != raw.shape[:2]:
        restored = cv2.resize(restored, (raw.shape[1], raw.shape[0]), interpolation=cv2.INTER_AREA)
    out = cv2.hconcat([raw, restored])
    if labels:
        w = raw.shape[1]
        scale = _font_scale(out)
        for x_right, text in ((w, labels[0]), (2 * w, labels[1])):  # bottom-right of each half
            text_box(
                out, [(text, WHITE)], (x_right - 6, out.shape[0] - 6), scale, anchor="bottom", align="right"
            )
    return out


def _font_scale(image: np.ndarray) -> float:
    return float(np.clip(min(image.shape[0], image.shape[1] * 0.75) / 720.0, 0.35, 1.0))


def text_box(
    image: np.ndarray,
    lines: Sequence[tuple[str, tuple[int, int, int]]],
    origin: tuple[int, int],
    scale: float,
    anchor: str = "top",
    align: str = "left",
) -> None:
    """Draw lines of text on a darkened box, in place. `origin` is the box's top (`anchor="top"`) or bottom
    corner, on its left (`align="left"`) or right side."""
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, int(round(scale * 1.6)))
    sizes = [cv2.getTextSize(t, font, scale, thick)[0] for t, _ in lines]
    line_h = int(max((s[1] for s in sizes), default=10) * 1.7) + 2
    box_w = max((s[0] for s in sizes), default=0) + 12
    box_h = line_h * len(lines) + 6
    x, y = origin
    if anchor == "bottom":
        y -= box_h
    if align == "right":
        x -= box_w
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + box_w, w), min(y + box_h, h)
    if x1 <= x0 or y1 <= y0:
        return
    roi = image[y0:y1, x0:x1]
    roi[:] = (roi.astype(np.uint16) * 3 // 10).astype(np.uint8)  # darken to 30 %
    for i, (text, color) in enumerate(lines):
        baseline = y + 4 + line_h * (i + 1) - line_h // 4
        cv2.putText(image, text, (x + 6, baseline), font, scale, color, thick, cv2.LINE_AA)


def overlay_lines(stats: LiveStats) -> list[tuple[str, tuple[int, int, int]]]:
    """The overlay's text: condition/confidence, FPS/latency, drops/backend, then warnings."""
    if not stats.restoring:
        head = ("restoration OFF (r)", YELLOW)
    elif stats.condition is None:
        head = ("waiting for frames", WHITE)
    else:
        known = stats.confidence is not None and np.isfinite(stats.confidence)
        conf = f" {stats.confidence:.2f}" if known else ""
        mode = f"forced {stats.forced}" if stats.forced else "auto"
        head = (f"{stats.condition}{conf} ({mode})", GREEN)
    lines = [
        head,
        (f"{stats.fps:.1f} FPS  p50 {stats.latency_p50:.1f} ms  p99 {stats.latency_p99:.1f} ms", WHITE),
        (f"dropped {stats.dropped}/{stats.frames_in}  {stats.backend} {stats.precision}", WHITE),
    ]
    shown_flags = [f for f in stats.flags if f != "off"]
    if shown_flags:
        lines.append(("flags: " + ", ".join(shown_flags), YELLOW))
    if stats.paused:
        lines.append(("PAUSED (p)", YELLOW))
    if stats.status:
        lines.append((stats.status, RED))
    return lines


KEY_HELP = "q quit  s side-by-side  r restore on/off  1-5 force  a auto  p pause"


def draw_overlay(image: np.ndarray, stats: LiveStats, *, help_line: bool = True) -> np.ndarray:
    """A copy of `image` with the overlay drawn top-left (and the key help bottom-left)."""
    out = image.copy()
    scale = _font_scale(out)
    text_box(out, overlay_lines(stats), (6, 6), scale)
    if help_line:
        text_box(out, [(KEY_HELP, WHITE)], (6, out.shape[0] - 6), scale * 0.8, anchor="bottom")
    return out


def compose_view(result: FrameResult, *, side: bool) -> np.ndarray:
    """The picture to show or record: the restored image, or raw | restored."""
    if side:
        right = "restored" if result.restored else "passed through"
        return side_by_side(result.frame.image, result.image, ("raw", right))
    return result.image
