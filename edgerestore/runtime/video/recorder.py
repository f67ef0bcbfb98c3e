"""Recording: `VideoRecorder` encodes frames on its own thread into a temporary file renamed into place when
finalised and verified (a full disk or a broken container is one line and no file); `probe_fourcc` finds a
codec this OpenCV build can write per container.

Imports numpy and OpenCV only.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgerestore.errors import UserError

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


class OrderedWorker:
    """A thread of its own that hands queued items, in order, to `handle`: the one writer thread of the
    recorder and of `outputs.ResultWriter`. `put` waits while `capacity` items are queued (nothing is lost);
    the first exception from `handle` stops the thread, is kept in `error` and drops what is queued.
    `stop()` lets the thread finish the queue (nothing after a failure; `drop=True`: nothing at all) and joins
    it."""

    def __init__(self, handle: Callable[[Any], None], capacity: int, name: str) -> None:
        self.handle = handle
        self.error: BaseException | None = None
        self._queue: deque[Any] = deque()
        self._cond = threading.Condition()
        self._capacity = max(capacity, 1)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: Any) -> bool:
        """Queue `item`, waiting for room; False (not queued) once the worker has failed."""
        with self._cond:
            while len(self._queue) >= self._capacity and self.error is None and self._thread.is_alive():
                self._cond.wait(0.1)
            if self.error is not None:
                return False
            self._queue.append(item)
            self._cond.notify_all()
        return True

    def stop(self, drop: bool = False) -> None:
        with self._cond:
            if drop or self.error is not None:
                self._queue.clear()
            self._queue.append(None)
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
                self._cond.notify_all()  # wakes the producer waiting for room
            if item is None:
                return
            try:
                self.handle(item)
            except BaseException as exc:  # reported to the producer by its next put(), and by stop()'s caller
                with self._cond:
                    self.error = exc
                    self._queue.clear()
                    self._cond.notify_all()
                return


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
        self._error: BaseException | None = None  # the finished file's check (`_verify`) failed
        self._closed = False
        # the encoder thread; a failure is reported by the next write(), close() or `error`
        self._worker = OrderedWorker(self._write_now, queue_size, "edgerestore-recorder")

    @property
    def error(self) -> UserError | None:
        """Why the encoder thread stopped (a one-line `UserError`), or None."""
        failure = self._worker.error or self._error
        if failure is None:
            return None
        detail = getattr(failure, "strerror", None) or failure
        return UserError(f"recording to {self.path} failed: {detail}")

    def write(self, image: np.ndarray) -> None:
        """Queue a frame (waits if the encoder is `queue_size` frames behind, so nothing is lost)."""
        if (error := self.error) is not None or not self._worker.put(image):
            raise error or self.error

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
        self._worker.stop()
        if self._writer is not None:
            self._writer.release()
        if self._worker.error is None and self.frames:
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
        self._worker.stop(drop=True)
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
