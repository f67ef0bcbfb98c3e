"""The screen: whether a window can open here (`display_available`, probed in a subprocess because OpenCV's
Qt build aborts the process without a display), `Window`, an OpenCV window on the main thread, and
`OffscreenWindow`, the same display side with no screen (benchmarks).

Imports OpenCV only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np


def display_available(timeout: float = 15.0) -> tuple[bool, str]:
    """Can `cv2.imshow` open a window here? (False, why) otherwise.

    OpenCV's Qt build aborts the whole process when it cannot reach a display, with no Python exception, so
    this checks the environment and then opens a tiny window in a subprocess.
    """
    if not re.search(r"GUI:\s*(?!NONE)\w+", cv2.getBuildInformation()):
        return False, "this OpenCV build has no GUI (opencv-python-headless?)"
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False, "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
    probe = (
        "import cv2, numpy as np; cv2.namedWindow('probe'); cv2.imshow('probe', np.zeros((8, 8, 3), np.uint8)); "
        "cv2.waitKey(1); cv2.destroyAllWindows()"
    )
    env = {**os.environ, **_qt_env()}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return False, f"opening a test window took longer than {timeout:.0f} s"
    if proc.returncode != 0:
        lines = [
            ln
            for ln in proc.stderr.splitlines()
            if ln.strip() and "QFontDatabase" not in ln and "fonts" not in ln
        ]
        where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        return False, f"cannot open a window on display {where!r}" + (
            f" ({lines[0].strip()})" if lines else ""
        )
    return True, ""


def _qt_env() -> dict[str, str]:
    """OpenCV's bundled Qt ships no fonts; point it at the system's DejaVu fonts to avoid warnings."""
    if os.environ.get("QT_QPA_FONTDIR"):
        return {}
    for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/TTF", "/usr/share/fonts/dejavu"):
        if Path(folder).is_dir():
            return {"QT_QPA_FONTDIR": folder}
    return {}


class Window:
    """An OpenCV window on the calling (main) thread; `show` returns the key pressed (-1 if none)."""

    interactive = True  # polled for keys every 20 ms

    def __init__(self, title: str = "edgerestore", max_width: int = 1600) -> None:
        for k, v in _qt_env().items():
            os.environ.setdefault(k, v)
        self.title, self.max_width = title, max_width
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        cv2.waitKey(1)  # let Qt create and map the window before the first resize and image
        self._size: tuple[int, int] | None = None

    def show(self, image: np.ndarray, wait_ms: int = 1) -> int:
        h, w = image.shape[:2]
        if self._size != (w, h):
            scale = min(1.0, self.max_width / w)
            cv2.resizeWindow(self.title, int(w * scale), int(h * scale))
            self._size = (w, h)
        cv2.imshow(self.title, image)
        key = cv2.waitKey(wait_ms)
        return -1 if key < 0 else key & 0xFF

    def closed(self) -> bool:
        """True once the user closed the window with its title-bar button."""
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


class OffscreenWindow:
    """A window that shows nothing: the live loop composes every new result for it as for a screen (view,
    overlay), so a benchmark measures the display side's cost and its capture-to-display time without one."""

    interactive = False

    def show(self, image: np.ndarray, wait_ms: int = 1) -> int:
        return -1

    def closed(self) -> bool:
        return False

    def close(self) -> None:
        pass
