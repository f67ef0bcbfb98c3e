"""A soak of one `Restorer`: many frames of mixed sizes and conditions from several threads at once, with
the process's resident memory sampled as it goes, to show that memory stays flat (no leak per frame, per
size or per branch) and that no frame fails.

Used by `benchmarks/soak.py` (10 000 frames, 4 threads, a real bundle) and by the tests (a short soak with
the synthetic bundle). Imports no torch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def resident_mib() -> float:
    """The process's resident memory now (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class SoakResult:
    frames: int
    threads: int
    seconds: float
    errors: list[str]
    rss_mib: list[tuple[int, float]] = field(default_factory=list)  # (frames done, resident MiB)
    conditions: dict[str, int] = field(default_factory=dict)
    tiled: int = 0

    def growth_mib(self) -> float:
        """Median resident memory of the last fifth of the samples minus that of the second fifth (after
        warm-up: arenas and buffers have reached the largest frame by then)."""
        values = [v for _, v in self.rss_mib]
        n = len(values)
        if n < 10:
            return float("nan")
        return float(np.median(values[4 * n // 5 :]) - np.median(values[n // 5 : 2 * n // 5]))


def soak(
    restorer: Any,
    sources: Sequence[np.ndarray],
    *,
    frames: int,
    threads: int = 4,
    sizes: Sequence[tuple[int, int]] = ((96, 128), (360, 640), (123, 457), (33, 47)),
    large: tuple[int, int] | None = None,
    large_every: int = 0,
    samples: int = 100,
    seed: int = 0,
) -> SoakResult:
    """Run `frames` frames through `restorer` from `threads` threads. Frame i is source i % len(sources)
    resized to a size drawn from `sizes` (every `large_every`-th one to `large`, e.g. a frame that runs in
    tiles). Returns what ran, every error (type: message) and resident-memory samples."""
    counter = iter(range(frames))
    lock = threading.Lock()
    errors: list[str] = []
    conditions: dict[str, int] = {}
    done = [0, 0]  # frames finished, tiled frames
    rss: list[tuple[int, float]] = [(0, resident_mib())]
    every = max(1, frames // samples)
    rng = np.random.default_rng(seed)
    plan = rng.integers(0, len(sizes), size=frames)

    def frame_for(i: int) -> np.ndarray:
        src = sources[i % len(sources)]
        h, w = (
            large
            if large_every and large is not None and i % large_every == large_every - 1
            else sizes[plan[i]]
        )
        return cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA if h < src.shape[0] else cv2.INTER_LINEAR)

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                result = restorer(frame_for(i))
                key, tiled = result.condition, "tiled" in result.flags
            except Exception as exc:  # every failure is reported, none stops the soak
                key, tiled = None, False
                with lock:
                    errors.append(f"frame {i}: {type(exc).__name__}: {exc}")
            with lock:
                done[0] += 1
                done[1] += tiled
                if key is not None:
                    conditions[key] = conditions.get(key, 0) + 1
                if done[0] % every == 0:
                    rss.append((done[0], resident_mib()))

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker, name=f"soak-{k}") for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return SoakResult(done[0], threads, time.perf_counter() - t0, errors, rss, conditions, done[1])


def calibration_frames(folder: Path) -> list[np.ndarray]:
    """The frames of a calibration folder (e.g. calibration/default: clean, rain, haze, raindrop, snow)."""
    from edgerestore.imageio import read_image

    return [read_image(p) for p in sorted(Path(folder).glob("*.jpg"))]
