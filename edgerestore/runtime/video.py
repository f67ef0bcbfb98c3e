"""Video for the runtime: frame sources, the newest-frame grabber, the inference worker, overlay, display and
recorder.

Three threads, so capture never waits for the model and the model never waits for the screen:

* `FrameGrabber` reads a `FrameSource` (camera index, video file, RTSP/HTTP URL, GStreamer pipeline, image
  folder or glob) on its own thread and keeps only the newest frame; a frame the consumer did not take in
  time is dropped and counted. A live source that fails is reopened with exponential back-off. With
  ``drop_stale=False`` (benchmarks on files) it blocks instead of dropping, so every frame is processed.
* `RestorePipeline` takes frames from the grabber on its own thread, runs the restorer (anything callable as
  ``restorer(frame_bgr_uint8) -> result`` with ``image, condition, confidence, restored, timings, flags``),
  keeps the statistics and hands each result to callbacks (the recorder) and to the display.
* The caller's (main) thread shows the newest result (`Window`, with `draw_overlay`) or prints a status line.

Accounting invariant: ``frames_in == frames_out + dropped`` once the pipeline has stopped.

Imports numpy and OpenCV only: never torch, never the training or export code.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgerestore.conditions import CONDITIONS
from edgerestore.errors import SourceError, UserError

log = logging.getLogger("edgerestore.video")

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4",
    ".avi",
    ".mkv",
    ".mov",
    ".m4v",
    ".webm",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".ts",
)
#: The largest camera index taken (OpenCV adds the index to an API id, and larger numbers overflow it).
MAX_CAMERA_INDEX = 9999
# FourCC codes tried per container, in order. opencv-python's FFmpeg writes MPEG-4 Part 2 ("mp4v") everywhere;
# H.264 ("avc1") needs an encoder that pip wheels usually lack, so it is only a fallback.
FOURCCS: dict[str, tuple[str, ...]] = {
    ".mp4": ("mp4v", "avc1"),
    ".m4v": ("mp4v", "avc1"),
    ".mov": ("mp4v", "avc1"),
    ".mkv": ("mp4v", "XVID", "MJPG"),
    ".avi": ("MJPG", "XVID", "mp4v"),
    ".webm": ("VP80", "VP90"),
}


def quiet_video_logs() -> None:
    """Keep OpenCV's and FFmpeg's own warnings (a missing camera, "moov atom not found") off the terminal,
    where they would repeat our one-line errors. For command-line verbs; call before opening any video.
    `OPENCV_FFMPEG_LOGLEVEL` and `OPENCV_LOG_LEVEL` set by the user win. OpenCV's ERROR level is silenced
    too: a missing camera index logs "Camera index out of range" there, before our own message."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


# ----------------------------------------------------------------------------------------------- sources


class FrameSource:
    """Something frames come from. `open` raises `SourceError`; `read` returns None at the end of the stream
    or when the source fails (a `live` source is then reopened by the grabber; a file has simply ended)."""

    name: str = "source"
    live: bool = False

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def rewind(self) -> bool:
        """Start again from the first frame (for ``--loop``); False if the source cannot."""
        self.close()
        self.open()
        return True

    @property
    def fps(self) -> float:
        """Native frame rate if known, else 0."""
        return 0.0

    @property
    def lost_frames(self) -> int:
        """Frames the source held but could not decode (skipped), as far as it knows."""
        return 0


class CaptureSource(FrameSource):
    """A `cv2.VideoCapture`: camera index or device path, video file, stream URL or GStreamer pipeline."""

    def __init__(
        self,
        target: int | str,
        *,
        kind: str,
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        fourcc: str | None = None,
        api: int = cv2.CAP_ANY,
    ) -> None:
        self.target = target
        self.kind = kind  # "device" | "file" | "stream" | "gstreamer"
        self.live = kind != "file"
        self.width, self.height, self.requested_fps, self.fourcc, self.api = width, height, fps, fourcc, api
        self.name = f"camera {target}" if kind == "device" else str(target)
        self._cap: cv2.VideoCapture | None = None
        self._fps = 0.0
        self._container_frames = 0
        self.decoded = 0  # frames returned since open()
        self._failed_reads = 0
        self._ended = False

    def open(self) -> None:
        self.close()
        cap = cv2.VideoCapture(self.target, self.api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(self._open_hint())
        if self.kind == "device":
            if self.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.requested_fps:
                cap.set(cv2.CAP_PROP_FPS, self.requested_fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of old ones (where supported)
        self._fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not np.isfinite(self._fps) or self._fps > 1000:
            self._fps = 0.0
        self._container_frames = (
            max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0) if self.kind == "file" else 0
        )
        self.decoded, self._failed_reads, self._ended = 0, 0, False
        self._cap = cap

    def _open_hint(self) -> str:
        if self.kind == "device":
            return (
                f"cannot open camera {self.target}: no such device or it is busy; "
                "list cameras with `v4l2-ctl --list-devices` (Linux) and pass --device N or --device /dev/videoN"
            )
        if self.kind == "file":
            return f"cannot open video {self.target}: not a video OpenCV's FFmpeg can decode (try converting it to .mp4)"
        if self.kind == "gstreamer":
            gst = "YES" in re.findall(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())[:1]
            extra = (
                ""
                if gst
                else " (this OpenCV build has no GStreamer support; use JetPack's OpenCV on a Jetson)"
            )
            return f"cannot open GStreamer pipeline {self.target!r}{extra}"
        return (
            f"cannot open stream {self.target}: unreachable, wrong URL/credentials, or unsupported protocol"
        )

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end. A file keeps being read past frames that do not decode (a
        damaged stretch) until its position stops moving; `lost_frames` says how many were skipped."""
        if self._cap is None:
            return None
        stuck, last_pos, failed = 0, -1.0, 0
        while True:
            ok, frame = self._cap.read()
            if ok and frame is not None and frame.size:
                break
            if self.kind != "file":
                return None
            pos = float(self._cap.get(cv2.CAP_PROP_POS_FRAMES) or 0.0)
            stuck = stuck + 1 if pos <= last_pos else 0
            last_pos = pos
            if (self._container_frames and pos >= self._container_frames) or stuck >= 2:
                self._ended = True
                return None
            failed += 1
        self._failed_reads += failed  # failures followed by a frame: a damaged stretch, not the end
        self.decoded += 1
        if frame.ndim == 2 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            from edgerestore.imageio import to_bgr_uint8

            frame = to_bgr_uint8(frame, self.name)
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def lost_frames(self) -> int:
        """Frames of a file that did not decode and were skipped (known once the file has ended: the
        container's frame count minus the frames decoded, or the failed reads when it has no count)."""
        if not self._ended:
            return self._failed_reads
        if self._container_frames:
            return max(self._container_frames - self.decoded, 0)
        return self._failed_reads

    def frame_count(self) -> int:
        """Frames in a file according to its container (may be approximate; 0 if unknown)."""
        if self._cap is None:
            return 0
        return max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)

    @property
    def fps(self) -> float:
        return self._fps


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


class ImageSequenceSource(FrameSource):
    """Still images from a folder or a glob, in natural order (frame2 before frame10), read with
    `edgerestore.imageio.read_image`. An unreadable image, or one with a side under `min_side` (default: the
    smallest frame the `Restorer` takes; 0 when frames are resized before the model), is skipped with a
    warning."""

    live = False

    def __init__(
        self, paths: Sequence[Path], *, name: str, fps: float = 0.0, min_side: int | None = None
    ) -> None:
        if not paths:
            raise SourceError(f"{name}: no images found (extensions: .png .jpg .jpeg .tif .tiff .bmp .webp)")
        if min_side is None:
            from edgerestore.contract import MIN_SIDE

            min_side = MIN_SIDE
        self.paths = list(paths)
        self.name = name
        self.min_side = min_side
        self._fps = fps
        self._pos = 0

    def open(self) -> None:
        self._pos = 0

    def read(self) -> np.ndarray | None:
        from edgerestore.imageio import read_image

        while self._pos < len(self.paths):
            path = self.paths[self._pos]
            self._pos += 1
            try:
                image = read_image(path)
            except UserError as exc:
                log.warning("skipping %s", exc)
                continue
            if min(image.shape[:2]) < self.min_side:
                log.warning(
                    "skipping %s: %dx%d is too small; both sides must be at least %d pixels",
                    path,
                    image.shape[0],
                    image.shape[1],
                    self.min_side,
                )
                continue
            return image
        return None

    @property
    def fps(self) -> float:
        return self._fps


def list_images(folder_or_glob: str | Path) -> list[Path]:
    """Image files of a folder (not recursive) or matching a glob, in natural order."""
    from edgerestore.imageio import is_image_file

    text = str(folder_or_glob)
    if Path(text).is_dir():
        candidates = list(Path(text).iterdir())
    else:
        candidates = [Path(p) for p in glob.glob(text, recursive=True)]
    return sorted((p for p in candidates if is_image_file(p)), key=_natural_key)


def open_source(
    *,
    device: str | int | None = None,
    source: str | None = None,
    width: int = 0,
    height: int = 0,
    fps: float = 0.0,
    fourcc: str | None = None,
) -> FrameSource:
    """Build and open a source from the CLI's `--device` / `--source` forms; `SourceError` if it cannot open.

    Both are input URIs or paths as `edgerestore.runtime.sources.parse_input` reads them. `device` must name
    a camera: an index (``0``), a device path (``/dev/video0``, ``v4l2:///dev/video0``), ``csi://0`` or a
    GStreamer pipeline. `source`: anything else too — a video file, an image folder, a glob
    (``'frames/*.png'``), a stream URL (``rtsp://…``, ``http://…``). `fps` for a camera is the requested
    capture rate; for files and images it is not used here (the grabber paces them).
    """
    from edgerestore.runtime.sources import gstreamer_status, parse_input

    if (device is None) == (source is None):
        raise UserError("give exactly one of --device N (a camera) or --source PATH|URL|GLOB")
    src: FrameSource
    text = str(device if device is not None else source)
    if device is not None and text.strip().isdigit() and int(text) > MAX_CAMERA_INDEX:
        raise SourceError(
            f"camera index {text} is out of range (0 to {MAX_CAMERA_INDEX}); "
            "list cameras with `v4l2-ctl --list-devices` (Linux)"
        )
    if source is not None and text.isdigit():
        raise SourceError(f"no file named {source!r}; for camera {source} use --device {source}")
    if (
        device is not None
        and not text.isdigit()
        and "://" not in text
        and "!" not in text
        and not Path(text).exists()
    ):
        raise SourceError(
            f"camera {text} does not exist; pass a camera index (--device 0) or an existing device path"
        )
    spec = parse_input(text, width=width, height=height, fps=fps)
    if device is not None and spec.kind not in ("device", "gstreamer"):
        raise SourceError(f"--device {text} is not a camera; give a video, folder or stream with --source")
    if spec.kind == "gstreamer":
        ok, why = gstreamer_status()
        if not ok:
            raise SourceError(f"cannot open GStreamer source {spec.uri!r}: {why}")
    if spec.kind == "images":
        target = str(spec.target)
        paths = [Path(target)] if Path(target).is_file() else list_images(target)
        src = ImageSequenceSource(paths, name=target, fps=fps)
    elif spec.kind == "device":
        src = CaptureSource(
            spec.target, kind="device", width=width, height=height, fps=fps, fourcc=fourcc, api=spec.api
        )
    else:
        src = CaptureSource(spec.target, kind=spec.kind, api=spec.api)
    src.open()
    return src


# ----------------------------------------------------------------------------------------------- grabber


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


# ----------------------------------------------------------------------------------------------- pipeline


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


def _set_forced(restorer: Any, condition: str | None) -> None:
    """Force a condition (None: automatic) through the restorer's `force` attribute (or method)."""
    if callable(getattr(restorer, "force", None)):
        restorer.force(condition)
    elif hasattr(restorer, "force"):
        restorer.force = condition
    else:
        raise UserError("this restorer cannot force a condition")


def describe_restorer(restorer: Any) -> tuple[str, str]:
    """(backend, precision) names of a restorer, from its bundle's manifest when it has one."""
    manifest = getattr(getattr(restorer, "bundle", None), "manifest", None)
    backend = getattr(manifest, "backend", None) or getattr(restorer, "backend", None)
    precision = getattr(manifest, "precision", None) or getattr(restorer, "precision", None)
    return (backend if isinstance(backend, str) else "?", precision if isinstance(precision, str) else "?")


class RestorePipeline:
    """Inference on its own thread: frames from a `FrameGrabber`, results to callbacks and to `latest()`.

    Controls (safe to call from the display thread): `restoring` (False passes frames through without the
    model), `force(condition or None)`, `set_paused`. `max_frames` stops after that many processed frames.
    """

    def __init__(
        self,
        grabber: FrameGrabber,
        restorer: Any,
        *,
        backend: str = "",
        precision: str = "",
        max_frames: int = 0,
        on_result: Sequence[Callable[[FrameResult], None]] = (),
        window: int = 300,
    ) -> None:
        self.grabber, self.restorer = grabber, restorer
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
        _set_forced(self.restorer, condition)
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
    def _process(self, frame: Frame) -> FrameResult:
        t0 = time.perf_counter()
        if self.restoring:
            res = self.restorer(frame.image)
            wall = (time.perf_counter() - t0) * 1000.0
            timings = {k: float(v) for k, v in dict(getattr(res, "timings", {}) or {}).items()}
            image = res.image
            if image.shape != frame.image.shape:
                image = cv2.resize(
                    image, (frame.image.shape[1], frame.image.shape[0]), interpolation=cv2.INTER_AREA
                )
            confidence = getattr(res, "confidence", None)
            result = FrameResult(
                frame=frame,
                image=image,
                condition=getattr(res, "condition", None),
                confidence=None if confidence is None else float(confidence),
                restored=bool(getattr(res, "restored", True)),
                forced=self.forced is not None,
                timings=timings,
                flags=tuple(str(f) for f in (getattr(res, "flags", ()) or ())),
                latency_ms=timings.get("total", wall),
                e2e_ms=0.0,
                sequence=0,
            )
        else:
            result = FrameResult(frame, frame.image, None, None, False, False, {}, ("off",), 0.0, 0.0, 0)
        result.e2e_ms = (time.perf_counter() - frame.t_capture) * 1000.0
        return result

    def _run(self) -> None:
        frame: Frame | None = None
        try:
            while not self._stop.is_set():
                frame = None
                if self.max_frames and self.frames_out >= self.max_frames:
                    break
                if self.paused:  # the grabber keeps a live source current (its frames drop) or waits (files)
                    self._stop.wait(0.05)
                    continue
                frame = self.grabber.get(timeout=0.1)
                if frame is None:
                    if self.grabber.finished:
                        break
                    continue
                result = self._process(frame)
                self.frames_out += 1
                frame = None  # counted as processed from here on
                result.sequence = self.frames_out
                self._record(result)
                for callback in self.on_result:
                    callback(result)
                with self._cond:
                    self._latest = result
                    self._cond.notify_all()
        except BaseException as exc:  # re-raised on the caller's thread by `raise_error`
            self.error = exc
            if frame is not None:  # taken but never finished: counts as dropped, so in = out + dropped
                self.grabber.count_dropped(1)
            if not isinstance(exc, UserError):
                log.error("inference stopped: %s: %s", type(exc).__name__, exc)
        finally:
            self._t_end = time.perf_counter()
            self._done.set()
            with self._cond:
                self._cond.notify_all()

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


# ----------------------------------------------------------------------------------------------- overlay

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
            _text_box(
                out, [(text, WHITE)], (x_right - 6, out.shape[0] - 6), scale, anchor="bottom", align="right"
            )
    return out


def _font_scale(image: np.ndarray) -> float:
    return float(np.clip(min(image.shape[0], image.shape[1] * 0.75) / 720.0, 0.35, 1.0))


def _text_box(
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
    _text_box(out, overlay_lines(stats), (6, 6), scale)
    if help_line:
        _text_box(out, [(KEY_HELP, WHITE)], (6, out.shape[0] - 6), scale * 0.8, anchor="bottom")
    return out


def compose_view(result: FrameResult, *, side: bool) -> np.ndarray:
    """The picture to show or record: the restored image, or raw | restored."""
    if side:
        right = "restored" if result.restored else "passed through"
        return side_by_side(result.frame.image, result.image, ("raw", right))
    return result.image


# ----------------------------------------------------------------------------------------------- display


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


# ----------------------------------------------------------------------------------------------- recorder


def probe_fourcc(suffix: str, candidates: Sequence[str] | None = None) -> str | None:
    """The first FourCC this OpenCV build can write into a `suffix` container (writes two tiny frames)."""
    candidates = candidates or FOURCCS.get(suffix.lower(), ("mp4v",))
    with tempfile.TemporaryDirectory() as tmp:
        for code in candidates:
            path = str(Path(tmp) / f"probe{suffix}")
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*code), 10, (32, 32))
            ok = writer.isOpened()
            if ok:
                for _ in range(2):
                    writer.write(np.zeros((32, 32, 3), np.uint8))
            writer.release()
            if ok and Path(path).stat().st_size > 0:
                return code
    return None


def _check_free_space(folder: Path) -> None:
    """OSError(ENOSPC) when the file system of `folder` has no block left for an unprivileged writer."""
    import errno

    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows) or the folder vanished: nothing to tell
        return
    if st.f_bavail == 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class VideoRecorder:
    """Writes frames to a video on its own thread. The file is written under a temporary name beside the
    target and renamed by `close()`, which also releases the writer so the container is finalised (call it
    in a `finally:` — Ctrl-C and errors still leave a playable file). Frames whose size differs from the
    first one are resized to it. No frames → no file. OpenCV's writer reports no write error, so the
    recorder checks the free space as it goes and `close()` reopens the finished file (frame count, last
    frame decodes) before renaming it: a full disk or a broken container is a one-line `UserError` and
    leaves no file."""

    def __init__(
        self, path: str | Path, fps: float, *, fourcc: str | None = None, queue_size: int = 64
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCCS:
            raise UserError(f"cannot record to {self.path.name}: use one of {', '.join(FOURCCS)}")
        if not self.path.parent.is_dir():
            what = "is not a folder" if self.path.parent.exists() else "does not exist"
            raise UserError(f"cannot record to {self.path}: {self.path.parent} {what}")
        if self.path.is_dir():
            raise UserError(f"cannot record to {self.path}: it is a folder; give a video file name")
        if fourcc and probe_fourcc(suffix, (fourcc,)) is None:
            raise UserError(
                f"this OpenCV build cannot write {fourcc} into {suffix} video; choose another codec"
            )
        self.fourcc = fourcc or probe_fourcc(suffix)
        if self.fourcc is None:
            raise UserError(f"this OpenCV build cannot write {suffix} video; record to .avi (MJPG) instead")
        self.fps = fps if fps and fps > 0 else 30.0
        self.frames = 0
        self.aborted = False
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        # a hidden temporary name with the real suffix (the writer picks the container from it), created by
        # the writer with the usual permissions; renamed into place by close()
        self._tmp = (
            self.path.parent / f".{self.path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{suffix}"
        )
        try:  # fail now, in one line, if the folder is not writable (not after the first processed frame)
            open(self._tmp, "xb").close()
            self._tmp.unlink()
        except OSError as exc:
            raise UserError(
                f"cannot record to {self.path}: {exc.strerror or exc}; choose a writable folder"
            ) from None
        self._queue: deque[np.ndarray | None] = deque()
        self._qcond = threading.Condition()
        self._capacity = queue_size
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="edgerestore-recorder", daemon=True)
        self._thread.start()

    @property
    def error(self) -> UserError | None:
        """Why the encoder thread stopped (a one-line `UserError`), or None."""
        if self._error is None:
            return None
        detail = getattr(self._error, "strerror", None) or self._error
        return UserError(f"recording to {self.path} failed: {detail}")

    def write(self, image: np.ndarray) -> None:
        """Queue a frame (waits if the encoder is `queue_size` frames behind, so nothing is lost)."""
        if (error := self.error) is not None:
            raise error
        with self._qcond:
            while len(self._queue) >= self._capacity and self._thread.is_alive():
                self._qcond.wait(0.1)
            self._queue.append(image)
            self._qcond.notify_all()

    def _run(self) -> None:
        while True:
            with self._qcond:
                while not self._queue:
                    self._qcond.wait()
                image = self._queue.popleft()
                self._qcond.notify_all()
            if image is None:
                return
            try:
                self._write_now(image)
            except BaseException as exc:  # reported by the next write(), close() or `error`
                self._error = exc
                with self._qcond:
                    self._queue.clear()
                    self._qcond.notify_all()
                return

    def _write_now(self, image: np.ndarray) -> None:
        if self._writer is None:
            h, w = image.shape[:2]
            w, h = w - w % 2, h - h % 2  # most encoders want even sizes
            self._size = (w, h)
            self._writer = cv2.VideoWriter(
                str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self._size
            )
            if not self._writer.isOpened():
                raise OSError(f"cannot open a {self.fourcc} writer for {self.path}")
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(image))
        self.frames += 1
        if self.frames % 25 == 1:  # OpenCV's writer says nothing when the disk fills: look every 25 frames
            _check_free_space(self.path.parent)

    def _verify(self) -> None:
        """Reopen the finished temporary file: it must hold every frame written and its last one must decode
        (OpenCV's writer reports neither a full disk nor a container it could not finalise)."""
        size = self._tmp.stat().st_size if self._tmp.exists() else 0
        cap = cv2.VideoCapture(str(self._tmp), cv2.CAP_FFMPEG)
        try:
            counted = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
            last_ok = False
            if counted >= self.frames:
                cap.set(cv2.CAP_PROP_POS_FRAMES, self.frames - 1)
                ok, frame = cap.read()
                last_ok = bool(ok) and frame is not None
        finally:
            cap.release()
        if counted < self.frames or not last_ok:
            _check_free_space(self.path.parent)  # name the usual cause when it is the cause
            found = f"{counted} readable frames" if counted > 0 else "no readable video"
            raise OSError(
                f"the written file holds {found} of {self.frames} ({size} bytes); is the disk full?"
            )

    def close(self) -> Path | None:
        """Flush, finalise the container and move it into place; returns the path (None if no frames).
        If the encoder failed, deletes the temporary file and raises the failure as a `UserError`."""
        if self._closed:
            return self.path if self.path.exists() and self.frames else None
        self._closed = True
        with self._qcond:
            self._queue.append(None)
            self._qcond.notify_all()
        self._thread.join()
        if self._writer is not None:
            self._writer.release()
        if self._error is None and self.frames:
            try:
                self._verify()
            except OSError as exc:
                self._error = exc
        if (error := self.error) is not None:
            self.aborted = True
            self._tmp.unlink(missing_ok=True)
            raise error
        if self.frames and self._tmp.exists() and self._tmp.stat().st_size > 0:
            os.replace(self._tmp, self.path)
            return self.path
        self._tmp.unlink(missing_ok=True)
        return None

    def abort(self) -> None:
        """Stop without keeping anything: release the writer and delete the temporary file."""
        if self._closed:
            return
        self._closed = True
        self.aborted = True
        with self._qcond:
            self._queue.clear()
            self._queue.append(None)
            self._qcond.notify_all()
        self._thread.join()
        if self._writer is not None:
            self._writer.release()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoRecorder:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and exc_type is not KeyboardInterrupt and self.frames == 0:
            self.abort()
        else:
            self.close()


# ----------------------------------------------------------------------------------------------- helpers


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Every frame of a video file, uint8 BGR; `SourceError` if it cannot be opened."""
    src = CaptureSource(str(path), kind="file", api=cv2.CAP_FFMPEG)
    src.open()
    try:
        while (frame := src.read()) is not None:
            yield frame
    finally:
        src.close()


def count_video_frames(path: str | Path) -> int:
    """Frames that actually decode (not the container's claim)."""
    return sum(1 for _ in iter_video_frames(path))


@dataclass
class KeyActions:
    """What a key press asks for; `handle_key` fills it."""

    quit: bool = False
    toggled_side: bool = False
    messages: list[str] = field(default_factory=list)


def handle_key(key: int, pipeline: RestorePipeline, view: dict[str, bool]) -> KeyActions:
    """Apply a key press: q/Esc quit, s side-by-side, r restoration on/off, 1–5 force CONDITIONS[i],
    a automatic, p pause. `view` holds the display's toggles ("side")."""
    act = KeyActions()
    if key < 0:
        return act
    ch = chr(key).lower() if key < 256 else ""
    if ch == "q" or key == 27:
        act.quit = True
    elif ch == "s":
        view["side"] = not view.get("side", False)
        act.toggled_side = True
    elif ch == "r":
        pipeline.restoring = not pipeline.restoring
        act.messages.append(f"restoration {'on' if pipeline.restoring else 'off'}")
    elif ch and ch in "12345":
        condition = CONDITIONS[int(ch) - 1]
        pipeline.force(condition)
        act.messages.append(f"forcing {condition}")
    elif ch == "a":
        pipeline.force(None)
        act.messages.append("automatic condition")
    elif ch == "p":
        pipeline.set_paused(not pipeline.paused)
        act.messages.append("paused" if pipeline.paused else "resumed")
    return act


# ----------------------------------------------------------------------------------------------- the loop


@dataclass
class LoopOptions:
    """How `run_loop` shows and records. `status_every` seconds between headless status lines (0: none)."""

    headless: bool = True
    side_by_side: bool = False
    record: Path | None = None
    record_view: str = "restored"  # "restored" | "side-by-side"
    record_overlay: bool = False
    record_fourcc: str | None = None
    record_fps: float = 0.0
    status_every: float = 1.0
    window_title: str = "edgerestore"
    echo: Callable[[str], None] = print


def status_line(stats: LiveStats) -> str:
    """One headless status line."""
    if not stats.restoring:
        cond = "restoration off"
    elif stats.condition is None:
        cond = "waiting"
    else:
        known = stats.confidence is not None and np.isfinite(stats.confidence)
        cond = (
            stats.condition
            + (f" {stats.confidence:.2f}" if known else "")
            + (" (forced)" if stats.forced else "")
        )
    text = (
        f"{stats.frames_out} frames ({stats.dropped} dropped) | {stats.fps:.1f} FPS | "
        f"p50 {stats.latency_p50:.1f} ms p99 {stats.latency_p99:.1f} ms | {cond}"
    )
    return text + (f" | {stats.status}" if stats.status else "")


def _waiting_image(pipeline: RestorePipeline, size: tuple[int, int] = (640, 360)) -> np.ndarray:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    _text_box(image, [(f"waiting for {pipeline.grabber.source.name}", WHITE)], (6, 6), 0.6)
    return image


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Ignore SIGINT inside the block (main thread only); a Ctrl-C that arrives meanwhile is dropped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_loop(pipeline: RestorePipeline, options: LoopOptions) -> PipelineSummary:
    """Run `pipeline` to its end (source ended, `max_frames`, `q`, window closed, Ctrl-C) while showing a
    window on this thread (or printing status lines) and recording; returns the summary. The recording
    is finalised on every exit path; Ctrl-C is reported as `summary.interrupted`, not raised."""
    recorder: VideoRecorder | None = None
    window: Window | None = None
    interrupted = False
    stopped_by: str | None = None
    try:
        if options.record is not None:
            src = pipeline.grabber
            fps = options.record_fps or src.pace_fps or src.source.fps or 30.0
            recorder = VideoRecorder(options.record, fps, fourcc=options.record_fourcc)
            side = options.record_view == "side-by-side"

            def record(result: FrameResult) -> None:
                view = compose_view(result, side=side)
                if options.record_overlay:
                    view = draw_overlay(view, pipeline.live_stats(), help_line=False)
                recorder.write(view)  # type: ignore[union-attr]

            pipeline.on_result.append(record)
        if not options.headless:
            window = Window(options.window_title)
        pipeline.start()
        view = {"side": options.side_by_side}
        seen, last, last_status = 0, None, time.monotonic()
        while True:
            result = pipeline.latest(after=seen, timeout=0.02 if window else 0.2)
            if result is not None:
                seen, last = result.sequence, result
            if window is not None:
                stats = pipeline.live_stats()
                image = (
                    draw_overlay(compose_view(last, side=view["side"]), stats)
                    if last
                    else _waiting_image(pipeline)
                )
                act = handle_key(window.show(image), pipeline, view)
                for message in act.messages:
                    log.info("%s", message)
                if act.quit or window.closed():
                    break
            elif options.status_every and time.monotonic() - last_status >= options.status_every:
                last_status = time.monotonic()
                options.echo(status_line(pipeline.live_stats()))
            # an error (e.g. a failed recording callback) can leave the last counted frame unpublished
            if pipeline.done and (pipeline.error is not None or last is None or seen >= pipeline.frames_out):
                break
    except KeyboardInterrupt as exc:
        interrupted = True
        stopped_by = getattr(exc, "signal_name", None) or "Ctrl-C"
    finally:
        with _sigint_deferred():  # a second Ctrl-C must not cut the container's finalisation short
            try:
                pipeline.stop()
            finally:
                try:
                    recorded = recorder.close() if recorder is not None else None
                except UserError as exc:  # the encoder failed: the run ends with that error
                    recorded = None
                    if pipeline.error is None:
                        pipeline.error = exc
                finally:
                    if window is not None:
                        window.close()
    summary = pipeline.summary()
    summary.interrupted = interrupted
    summary.stopped_by = stopped_by
    if recorder is not None:
        summary.recording = str(recorded) if recorded else None
        summary.recorded_frames = recorder.frames
    return summary
