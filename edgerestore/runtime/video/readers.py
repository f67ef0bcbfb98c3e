"""Frame readers: `FrameSource` and its kinds — `CaptureSource` (camera index or device, video file, stream
URL, GStreamer pipeline through `cv2.VideoCapture`), `ImageSequenceSource` (an image folder or glob) and
`MemorySource` (frames in memory, paced like a camera: benchmarks) —
`open_source` for the CLI's `--device` / `--source` URIs, and whole-file helpers.

Imports numpy and OpenCV only: never torch, never the training or export code.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

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


def quiet_video_logs() -> None:
    """Keep OpenCV's and FFmpeg's own warnings (a missing camera, "moov atom not found") off the terminal,
    where they would repeat our one-line errors. For command-line verbs; call before opening any video.
    `OPENCV_FFMPEG_LOGLEVEL` and `OPENCV_LOG_LEVEL` set by the user win. OpenCV's ERROR level is silenced
    too: a missing camera index logs "Camera index out of range" there, before our own message."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


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


class MemorySource(FrameSource):
    """Frames from memory, handed out like a camera's: copies of `frames` in turn, `count` in all, paced at
    `rate` FPS in `read` (0: as fast as asked). For benchmarks and tests of the camera loop."""

    live = False

    def __init__(self, frames: Sequence[np.ndarray], count: int, rate: float = 0.0) -> None:
        if not len(frames):
            raise SourceError("a memory source needs at least one frame")
        h, w = frames[0].shape[:2]
        self.frames, self.count, self.rate = list(frames), int(count), float(rate)
        self.name = f"memory camera {w}x{h}" + (f" at {rate:g} FPS" if rate else "")
        self._i = 0
        self._t0 = 0.0
        self.open()  # open once made, like `open_source`'s sources

    def open(self) -> None:
        self._i, self._t0 = 0, time.perf_counter()

    def read(self) -> np.ndarray | None:
        if self._i >= self.count:
            return None
        if self.rate:
            wait = self._t0 + self._i / self.rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        frame = self.frames[self._i % len(self.frames)].copy()  # a camera hands out a new buffer each frame
        self._i += 1
        return frame

    @property
    def fps(self) -> float:
        return self.rate


def natural_key(path: Path) -> list[Any]:
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
    return sorted((p for p in candidates if is_image_file(p)), key=natural_key)


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
