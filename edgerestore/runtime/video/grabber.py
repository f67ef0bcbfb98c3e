"""The newest-frame grabber: reads a `FrameSource` on its own thread so capture never waits for the model.
With ``drop_stale`` a frame the consumer did not take in time is replaced (and counted as dropped); without
it a bounded queue makes capture wait (every frame of a file processed). A live source that fails is
reopened with exponential back-off (`ReconnectPolicy`).

Imports numpy and OpenCV only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from edgerestore.errors import UserError
from edgerestore.runtime.video.readers import FrameSource

log = logging.getLogger("edgerestore.video")


@dataclass
class Frame:
    """One captured frame: its number in the source (from 0), pixels (uint8 BGR), capture time."""

    index: int
    image: np.ndarray
    t_capture: float


@dataclass
class ReconnectPolicy:
    """Exponential back-off for a live source that failed: wait `initial_delay`, then ×`factor` each failed
    attempt up to `max_delay`; give up after `max_attempts` consecutive failures (None: never)."""

    initial_delay: float = 0.5
    max_delay: float = 8.0
    factor: float = 2.0
    max_attempts: int | None = None
    #: The back-off starts again from `initial_delay` only after the reopened source has delivered frames
    #: for this long (a source that fails again right after each reopen keeps backing off).
    healthy_after: float = 5.0

    def delay(self, attempt: int) -> float:
        """Delay before attempt number `attempt` (1-based)."""
        return min(self.max_delay, self.initial_delay * self.factor ** max(attempt - 1, 0))


class FrameGrabber:
    """Reads a source on its own thread. `drop_stale=True`: a one-frame slot, a newer frame replaces one the
    consumer did not take (counted in `dropped`). `drop_stale=False`: a bounded queue; capture waits.

    `pace_fps` > 0 paces a non-live source (file, images) at that rate, like a camera; 0 reads as fast as
    it decodes. `loop` restarts a non-live source at its end. `resize` (width, height) scales every frame.
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        drop_stale: bool = True,
        pace_fps: float = 0.0,
        loop: bool = False,
        reconnect: ReconnectPolicy | None = None,
        queue_size: int = 4,
        resize: tuple[int, int] | None = None,
    ) -> None:
        self.source = source
        self.resize = resize  # (width, height) applied on the capture thread
        self.drop_stale = drop_stale
        self.pace_fps = 0.0 if source.live else max(pace_fps, 0.0)
        self.loop = loop
        self.policy = reconnect or ReconnectPolicy()
        self.capacity = 1 if drop_stale else max(queue_size, 1)
        self.grabbed = 0
        self.dropped = 0
        self.reconnects = 0
        self.status = ""  # non-empty while something is wrong (shown on screen)
        self.error: str | None = None  # why the grabber ended, if it was not the end of the source
        self._buffer: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._ended = False
        self._failures = 0
        self._healthy_since: float | None = None  # when frames resumed after the last reconnect
        self._thread = threading.Thread(target=self._run, name="edgerestore-grabber", daemon=True)

    # -- control
    def start(self) -> FrameGrabber:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop capturing, close the source and count frames never taken as dropped."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
        with self._cond:
            self.dropped += len(self._buffer)
            self._buffer.clear()
            self._ended = True
        self.source.close()

    def count_dropped(self, n: int) -> None:
        """Count frames the consumer took but could not process (so frames in = out + dropped holds)."""
        with self._cond:
            self.dropped += n

    def set_paused(self, paused: bool) -> None:
        """Pause reading a file (a live source keeps being read so it stays current; its frames drop)."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    @property
    def finished(self) -> bool:
        """True once the source ended (or the grabber gave up or was stopped) and every frame was taken."""
        with self._cond:
            return self._ended and not self._buffer

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame (the newest one with `drop_stale`), or None on timeout or when finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._buffer:
                if self._ended:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame = self._buffer.popleft()
            self._cond.notify_all()
            return frame

    # -- thread
    def _put(self, frame: Frame) -> None:
        with self._cond:
            if self.drop_stale:
                self.dropped += len(self._buffer)
                self._buffer.clear()
            else:
                while len(self._buffer) >= self.capacity and not self._stop.is_set():
                    self._cond.wait(0.1)
                if self._stop.is_set():
                    self.dropped += 1
                    return
            self._buffer.append(frame)
            self._cond.notify_all()

    def _run(self) -> None:
        index = 0
        t0 = time.perf_counter()
        paced = 0
        try:
            while not self._stop.is_set():
                if self._paused.is_set() and not self.source.live:
                    self._stop.wait(0.05)
                    t0, paced = time.perf_counter(), 0
                    continue
                image = self.source.read()
                if image is None:
                    if not self.source.live:
                        if self.loop and self.grabbed and self.source.rewind():
                            continue
                        break
                    if not self._reconnect():
                        break
                    continue
                if self._failures:
                    now = time.monotonic()
                    if self._healthy_since is None:
                        self._healthy_since = now
                        self.status = ""
                    elif now - self._healthy_since >= self.policy.healthy_after:
                        log.info("%s: receiving frames again", self.source.name)
                        self._failures = 0
                        self._healthy_since = None
                if self.pace_fps:
                    due = t0 + paced / self.pace_fps
                    paced += 1
                    wait = due - time.perf_counter()
                    if wait > 0 and self._stop.wait(wait):
                        break
                if self.resize and (image.shape[1], image.shape[0]) != self.resize:
                    image = cv2.resize(image, self.resize, interpolation=cv2.INTER_AREA)
                self.grabbed += 1
                self._put(Frame(index, image, time.perf_counter()))
                index += 1
        except Exception as exc:  # a failing backend must end the stream visibly, not kill the process
            self.error = f"{self.source.name}: capture failed: {exc}"
            log.error("%s", self.error)
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _reconnect(self) -> bool:
        """Reopen a live source with back-off; False if stopped or out of attempts."""
        self.source.close()
        self._healthy_since = None
        while not self._stop.is_set():
            self._failures += 1
            attempt = self._failures
            if self.policy.max_attempts is not None and attempt > self.policy.max_attempts:
                self.error = (
                    f"{self.source.name}: lost, gave up after {self.policy.max_attempts} reconnect attempts"
                )
                self.status = self.error
                log.error("%s", self.error)
                return False
            delay = self.policy.delay(attempt)
            self.status = f"{self.source.name} lost: reconnecting (attempt {attempt}, in {delay:.1f} s)"
            log.warning("%s", self.status)
            if self._stop.wait(delay):
                return False
            try:
                self.source.open()
            except UserError as exc:
                log.warning("reconnect attempt %d failed: %s", attempt, exc)
                continue
            self.reconnects += 1
            self.status = f"{self.source.name}: reconnected, waiting for frames"
            log.warning("%s: reconnected (attempt %d)", self.source.name, attempt)
            return True
        return False
