"""The inference thread and its numbers: `RestorePipeline` takes frames from a `FrameGrabber`, runs the
restorer (a `RestorerLike`), keeps the statistics (`LiveStats` for the overlay, `PipelineSummary` at the end)
and hands every result to callbacks and the newest one to the display.

Accounting invariant: ``frames_in == frames_out + dropped`` once the pipeline has stopped.

Imports numpy and OpenCV only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgerestore.conditions import CONDITIONS
from edgerestore.errors import UserError
from edgerestore.runtime.protocol import PipelinedRestorerLike, RestorerLike, ResultLike, describe
from edgerestore.runtime.video.grabber import Frame, FrameGrabber

log = logging.getLogger("edgerestore.video")


@dataclass
class FrameResult:
    """A processed frame: the raw frame, the image to show (restored or raw), what the restorer said."""

    frame: Frame
    image: np.ndarray
    condition: str | None
    confidence: float | None
    restored: bool
    forced: bool
    timings: dict[str, float]
    flags: tuple[str, ...]
    latency_ms: float  # the restorer's own time ("total"), or wall time around the call
    e2e_ms: float  # capture → result
    sequence: int  # output number, from 1


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """{"p50": …, "p90": …, "p99": …, "mean": …} of `values` (NaN when empty)."""
    if not len(values):
        return {**{f"p{q:g}": float("nan") for q in qs}, "mean": float("nan")}
    arr = np.asarray(values, dtype=np.float64)
    out = {f"p{q:g}": float(np.percentile(arr, q)) for q in qs}
    out["mean"] = float(arr.mean())
    return out


@dataclass
class LiveStats:
    """What the overlay and the status line show, as of now."""

    frames_in: int
    frames_out: int
    dropped: int
    fps: float
    latency_p50: float
    latency_p99: float
    condition: str | None
    confidence: float | None
    forced: str | None
    restoring: bool
    paused: bool
    status: str
    backend: str
    precision: str
    flags: tuple[str, ...] = ()


@dataclass
class PipelineSummary:
    """End-of-run numbers (also written as JSON by the demo)."""

    source: str
    backend: str
    precision: str
    frames_in: int
    frames_out: int
    dropped: int
    reconnects: int
    wall_s: float
    fps: float
    latency_ms: dict[str, float]
    e2e_ms: dict[str, float]
    stage_ms: dict[str, dict[str, float]]
    conditions: dict[str, int]
    not_restored: int
    flags: dict[str, int]
    error: str | None = None
    interrupted: bool = False
    recording: str | None = None
    recorded_frames: int = 0
    stopped_by: str | None = None  # what interrupted the run: "Ctrl-C", "SIGTERM"
    lost_frames: int = 0  # frames of the source that did not decode and were skipped

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def format(self) -> str:
        """A few human lines."""
        lat, e2e = self.latency_ms, self.e2e_ms
        conds = (
            ", ".join(f"{c} {n}" for c, n in sorted(self.conditions.items(), key=lambda kv: -kv[1])) or "none"
        )
        lines = [
            f"source      {self.source} ({self.backend} {self.precision})",
            f"frames      {self.frames_in} in, {self.frames_out} processed, {self.dropped} dropped, "
            f"{self.reconnects} reconnects, {self.wall_s:.1f} s, {self.fps:.1f} FPS",
            f"latency     model p50 {lat['p50']:.1f} / p90 {lat['p90']:.1f} / p99 {lat['p99']:.1f} ms; "
            f"capture→result p50 {e2e['p50']:.1f} / p99 {e2e['p99']:.1f} ms",
            f"conditions  {conds}; {self.not_restored} frames passed through",
        ]
        if self.lost_frames:
            lines.append(
                f"damaged     {self.lost_frames} frames of the source do not decode and were skipped"
            )
        if self.flags:
            lines.append("flags       " + ", ".join(f"{k} {v}" for k, v in sorted(self.flags.items())))
        if self.recording:
            lines.append(f"recording   {self.recording} ({self.recorded_frames} frames)")
        if self.interrupted:
            lines.append(f"stopped     interrupted ({self.stopped_by or 'Ctrl-C'}); outputs finalised")
        if self.error:
            lines.append(f"error       {self.error}")
        return "\n".join(lines)


def describe_restorer(restorer: RestorerLike) -> tuple[str, str]:
    """(backend, precision) names of a restorer, from its bundle's manifest."""
    return describe(restorer)


def auto_prefetch(grabber: FrameGrabber, restorer: RestorerLike) -> bool:
    """Whether `RestorePipeline` keeps two frames in flight by default: every frame is kept (a file, a
    benchmark: a live camera's frame would wait a model time and be that much older), the restorer queues
    frames with no deadline, and the model runs on a GPU (TensorRT), so preparing the next frame on the CPU
    overlaps it. On ONNX Runtime the CPU work would compete with the model for the same cores: measured on 2
    cores, no gain (README, *Benchmarks*)."""
    return (
        not grabber.drop_stale
        and isinstance(restorer, PipelinedRestorerLike)
        and restorer.deadline_ms is None
        and describe(restorer)[0] == "tensorrt"
    )


class RestorePipeline:
    """Inference on its own thread: frames from a `FrameGrabber`, results to callbacks and to `latest()`.

    Controls (safe to call from the display thread): `restoring` (False passes frames through without the
    model), `force(condition or None)`, `set_paused`. `max_frames` stops after that many processed frames.
    `prefetch`: two frames in flight (see `_run`; default `auto_prefetch`).
    """

    def __init__(
        self,
        grabber: FrameGrabber,
        restorer: RestorerLike,
        *,
        backend: str = "",
        precision: str = "",
        max_frames: int = 0,
        on_result: Sequence[Callable[[FrameResult], None]] = (),
        window: int = 300,
        prefetch: bool | None = None,
    ) -> None:
        self.grabber, self.restorer = grabber, restorer
        if prefetch is None:
            prefetch = auto_prefetch(grabber, restorer)
        self.prefetch = prefetch
        named = describe_restorer(restorer)
        self.backend = backend or named[0]
        self.precision = precision or named[1]
        self.max_frames = max_frames
        self.on_result = list(on_result)
        self.restoring = True
        self.forced: str | None = None
        self.paused = False
        self.error: BaseException | None = None
        self.frames_out = 0
        self._latency: list[float] = []
        self._e2e: list[float] = []
        self._stages: dict[str, list[float]] = {}
        self._recent_latency: deque[float] = deque(maxlen=window)
        self._recent_times: deque[float] = deque(maxlen=window)
        self._conditions: Counter[str] = Counter()
        self._flags: Counter[str] = Counter()
        self._not_restored = 0
        self._latest: FrameResult | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._t_start = 0.0
        self._t_end = 0.0
        self._thread = threading.Thread(target=self._run, name="edgerestore-inference", daemon=True)

    # -- control
    def start(self) -> RestorePipeline:
        self._t_start = time.perf_counter()
        if not self.grabber._thread.is_alive() and not self.grabber.finished:
            self.grabber.start()
        self._thread.start()
        return self

    def force(self, condition: str | None) -> None:
        if condition is not None and condition not in CONDITIONS:
            raise UserError(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")
        self.restorer.force = condition
        self.forced = condition

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.grabber.set_paused(paused)

    def stop(self) -> None:
        """Stop inference and capture (idempotent); frames captured but not processed count as dropped."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        self.grabber.stop()
        if not self._t_end:
            self._t_end = time.perf_counter()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def latest(self, after: int = 0, timeout: float | None = None) -> FrameResult | None:
        """The newest result with a sequence number greater than `after` (waits up to `timeout`)."""
        with self._cond:
            self._cond.wait_for(
                lambda: (self._latest is not None and self._latest.sequence > after) or self._done.is_set(),
                timeout,
            )
            if self._latest is not None and self._latest.sequence > after:
                return self._latest
            return None

    # -- thread
    def _result(self, frame: Frame, res: ResultLike, wall_ms: float, queued: bool = False) -> FrameResult:
        """A `FrameResult` of the restorer's `res` for `frame`. `queued`: the frame was submitted behind
        another, so the restorer's `total` also counts that wait; its stages' sum is its own time then."""
        timings = {k: float(v) for k, v in res.timings.items()}
        image = res.image
        if image.shape != frame.image.shape:
            image = cv2.resize(
                image, (frame.image.shape[1], frame.image.shape[0]), interpolation=cv2.INTER_AREA
            )
        own = sum(v for k, v in timings.items() if k != "total") if queued else timings.get("total", wall_ms)
        return FrameResult(
            frame=frame,
            image=image,
            condition=res.condition,
            confidence=None if res.confidence is None else float(res.confidence),
            restored=bool(res.restored),
            forced=self.forced is not None,
            timings=timings,
            flags=tuple(str(f) for f in res.flags),
            latency_ms=own,
            e2e_ms=(time.perf_counter() - frame.t_capture) * 1000.0,
            sequence=0,
        )

    def _process(self, frame: Frame) -> FrameResult:
        if not self.restoring:
            e2e = (time.perf_counter() - frame.t_capture) * 1000.0
            return FrameResult(frame, frame.image, None, None, False, False, {}, ("off",), 0.0, e2e, 0)
        t0 = time.perf_counter()
        res = self.restorer(frame.image)
        return self._result(frame, res, (time.perf_counter() - t0) * 1000.0)

    def _publish(self, result: FrameResult) -> None:
        self.frames_out += 1
        result.sequence = self.frames_out
        self._record(result)
        for callback in self.on_result:
            callback(result)
        with self._cond:
            self._latest = result
            self._cond.notify_all()

    def _finish(self, inflight: deque[Frame]) -> None:
        """Wait for the oldest submitted frame's result and publish it."""
        restorer: PipelinedRestorerLike = self.restorer  # type: ignore[assignment]
        t0 = time.perf_counter()
        res = restorer.result()
        frame = inflight.popleft()
        self._publish(self._result(frame, res, (time.perf_counter() - t0) * 1000.0, queued=True))

    def _run(self) -> None:
        """Take frames, restore, publish. With `prefetch`, a frame already waiting in the grabber is
        submitted (prepared on this thread: colour, padding, thumbnail) while the restorer's worker runs
        the one before, and each result is published (stats, callbacks, outputs) while the next one
        runs: at most two frames in flight, in order."""
        inflight: deque[Frame] = deque()
        frame: Frame | None = None
        try:
            while not self._stop.is_set():
                frame = None
                if self.max_frames and self.frames_out + len(inflight) >= self.max_frames:
                    if not inflight:
                        break
                    self._finish(inflight)
                    continue
                if self.paused:  # the grabber keeps a live source current (its frames drop) or waits (files)
                    if inflight:
                        self._finish(inflight)
                        continue
                    self._stop.wait(0.05)
                    continue
                frame = self.grabber.get(timeout=0.0 if inflight else 0.1)
                if frame is None:
                    if inflight:  # nothing waiting: finish the frame in flight instead of idling
                        self._finish(inflight)
                    elif self.grabber.finished:
                        break
                    continue
                if self.prefetch and self.restoring:
                    self.restorer.submit(frame.image)  # type: ignore[attr-defined]
                    inflight.append(frame)
                    frame = None
                    if len(inflight) >= 2:
                        self._finish(inflight)
                    continue
                while inflight:  # restoration was switched off: the frames in flight come out first
                    self._finish(inflight)
                result = self._process(frame)
                frame = None  # counted as processed from here on
                self._publish(result)
            while inflight and not self._stop.is_set():
                self._finish(inflight)
        except BaseException as exc:  # re-raised on the caller's thread by `raise_error`
            self.error = exc
            if not isinstance(exc, UserError):
                log.error("inference stopped: %s: %s", type(exc).__name__, exc)
        finally:
            # taken but never finished: counts as dropped, so in = out + dropped
            self.grabber.count_dropped(len(inflight) + (frame is not None))
            self._drain(len(inflight))
            self._t_end = time.perf_counter()
            self._done.set()
            with self._cond:
                self._cond.notify_all()

    def _drain(self, n: int) -> None:
        """Collect (and drop) the results of `n` submitted frames, so the restorer holds none of ours."""
        for _ in range(n):
            with contextlib.suppress(BaseException):
                self.restorer.result()  # type: ignore[attr-defined]

    def _record(self, r: FrameResult) -> None:
        now = time.perf_counter()
        self._recent_times.append(now)
        self._e2e.append(r.e2e_ms)
        if self.restoring and "off" not in r.flags:
            self._latency.append(r.latency_ms)
            self._recent_latency.append(r.latency_ms)
            for k, v in r.timings.items():
                self._stages.setdefault(k, []).append(v)
            if r.condition:
                self._conditions[r.condition] += 1
        if not r.restored:
            self._not_restored += 1
        for f in r.flags:
            self._flags[f] += 1

    def raise_error(self) -> None:
        """Re-raise, on the calling thread, an exception that stopped the inference thread."""
        if self.error is not None:
            raise self.error

    # -- numbers
    def live_stats(self) -> LiveStats:
        times = list(self._recent_times)
        now = time.perf_counter()
        recent = [t for t in times if now - t <= 2.0]
        fps = (
            (len(recent) - 1) / (recent[-1] - recent[0])
            if len(recent) > 1 and recent[-1] > recent[0]
            else 0.0
        )
        lat = list(self._recent_latency)
        p = percentiles(lat, (50, 99)) if lat else {"p50": float("nan"), "p99": float("nan")}
        latest = self._latest
        return LiveStats(
            frames_in=self.grabber.grabbed,
            frames_out=self.frames_out,
            dropped=self.grabber.dropped,
            fps=fps,
            latency_p50=p["p50"],
            latency_p99=p["p99"],
            condition=latest.condition if latest else None,
            confidence=latest.confidence if latest else None,
            forced=self.forced,
            restoring=self.restoring,
            paused=self.paused,
            status=self.grabber.status,
            backend=self.backend,
            precision=self.precision,
            flags=latest.flags if latest else (),
        )

    def summary(self) -> PipelineSummary:
        wall = (self._t_end or time.perf_counter()) - self._t_start
        error = None
        if self.error is not None:
            error = f"{type(self.error).__name__}: {self.error}"
        elif self.grabber.error:
            error = self.grabber.error
        return PipelineSummary(
            source=self.grabber.source.name,
            backend=self.backend,
            precision=self.precision,
            frames_in=self.grabber.grabbed,
            frames_out=self.frames_out,
            dropped=self.grabber.dropped,
            reconnects=self.grabber.reconnects,
            wall_s=wall,
            fps=self.frames_out / wall if wall > 0 else 0.0,
            latency_ms=percentiles(self._latency),
            e2e_ms=percentiles(self._e2e),
            stage_ms={k: percentiles(v) for k, v in self._stages.items()},
            conditions=dict(self._conditions),
            not_restored=self._not_restored,
            flags=dict(self._flags),
            error=error,
            lost_frames=self.grabber.source.lost_frames,
        )
