"""Test doubles for the video tests: a `FakeRestorer` with the `Restorer` interface (configurable latency
and condition, no model), a generated-video helper, and a CLI driver that runs `edgerestore` with the fake
restorer in a subprocess:

    python tests/video_fakes.py camera --source clip.mp4 --headless   (env: FAKE_LATENCY_MS, FAKE_CONDITION)
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np


@dataclass
class FakeResult:
    image: np.ndarray
    condition: str
    confidence: float
    restored: bool
    timings: dict[str, float]
    flags: frozenset[str] = field(default_factory=frozenset)


class FakeRestorer:
    """Brightens non-clean frames by 40 after sleeping `latency_ms`; `force` works like `Restorer.force`."""

    def __init__(self, latency_ms: float = 0.0, condition: str = "rain", confidence: float = 0.9) -> None:
        self.latency_ms, self.condition, self.confidence = latency_ms, condition, confidence
        self.force: str | None = None
        manifest = SimpleNamespace(profile="fake", family="uffn", backend="fakeruntime", precision="fp32")
        self.bundle = SimpleNamespace(path=Path("fake-bundle"), manifest=manifest)
        self.calls = 0
        self.resets = 0
        self.closed = False
        self._lock = threading.Lock()

    def __call__(self, frame: np.ndarray) -> FakeResult:
        if min(frame.shape[:2]) < 8:  # like the real Restorer's input check: the message names no file
            from edgerestore.errors import UserError

            raise UserError(
                f"frame of {frame.shape[0]}x{frame.shape[1]} is too small; both sides must be at least 8 pixels"
            )
        t0 = time.perf_counter()
        with self._lock:
            self.calls += 1
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        condition = self.force or self.condition
        flags = frozenset({"forced"} if self.force else set())
        confidence = math.nan if self.force else self.confidence
        total = (time.perf_counter() - t0) * 1000.0
        if condition == "clean":
            return FakeResult(frame, condition, confidence, False, {"total": total}, flags | {"clean"})
        image = cv2.add(frame, np.full_like(frame, 40))
        return FakeResult(image, condition, confidence, True, {"router": 0.1, "total": total}, flags)

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed = True


def frame_level(i: int) -> int:
    """Gray level of frame i of `make_video` (distinct after lossy compression)."""
    return 20 + 6 * (i % 35)


def make_video(path: Path, frames: int, size: tuple[int, int] = (96, 64), fps: float = 25.0) -> Path:
    """A small MJPG .avi (or mp4v .mp4) whose frame i is uniform gray `frame_level(i)` with a white bar."""
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        image = np.full((size[1], size[0], 3), frame_level(i), np.uint8)
        image[:, (i * 3) % size[0]] = 255
        writer.write(image)
    writer.release()
    return path


def simple_degrade(frame: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """Stand-in for `edgerestore.data.degrade.degrade_uint8_bgr` while that module is absent: visibly
    different per condition, deterministic per seed."""
    rng = np.random.default_rng(seed)
    out = frame.astype(np.float32)
    if condition == "haze":
        out = out * 0.6 + 0.4 * 220
    else:
        mask = rng.random(frame.shape[:2]) < {"rain": 0.03, "snow": 0.02, "raindrop": 0.005}.get(condition, 0)
        out[mask] = 255
    return np.clip(out, 0, 255).astype(np.uint8)


def ensure_degrade() -> None:
    """Make `edgerestore.data.degrade` importable: the real one, or `simple_degrade` if it is not there."""
    try:
        import edgerestore.data.degrade  # noqa: F401
    except ImportError:
        import types

        module = types.ModuleType("edgerestore.data.degrade")
        module.degrade_uint8_bgr = simple_degrade  # type: ignore[attr-defined]
        sys.modules["edgerestore.data.degrade"] = module


def fake_from_env() -> FakeRestorer:
    return FakeRestorer(
        latency_ms=float(os.environ.get("FAKE_LATENCY_MS", "0")),
        condition=os.environ.get("FAKE_CONDITION", "rain"),
    )


def _fail_recordings_after(frames: int) -> None:
    """Make every VideoRecorder fail like a full disk once it has written `frames` frames."""
    import errno

    from edgerestore.runtime.video import VideoRecorder

    write_now = VideoRecorder._write_now

    def failing(self, image):
        if self.frames >= frames:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_now(self, image)

    VideoRecorder._write_now = failing


def main(argv: list[str]) -> int:
    """`edgerestore` with every verb's restorer replaced by a FakeRestorer."""
    import edgerestore.commands._bundle as bundle_args

    def _open(args, **kwargs):
        fake = fake_from_env()
        fake.force = getattr(args, "force", None)
        return fake

    bundle_args.open_restorer = _open
    for module in ("camera", "restore", "demo"):
        try:
            mod = __import__(f"edgerestore.commands.{module}", fromlist=["open_restorer"])
        except ImportError:
            continue
        if hasattr(mod, "open_restorer"):
            mod.open_restorer = _open
    if (fail_after := int(os.environ.get("FAKE_RECORD_FAIL_AFTER", "0"))) > 0:
        _fail_recordings_after(fail_after)
    from edgerestore.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1)  # a hung test can ask for every thread's stack
    sys.exit(main(sys.argv[1:]))
