"""Outputs off the inference thread: `ResultWriter` composes the picture of every result (restored, or raw |
restored, overlay optional) and hands it to its sinks — a `VideoRecorder`, an `ImageFolder` (one PNG per
frame) — on a thread of its own, in order, so composing and writing overlap the model's next frame instead
of adding to it. The inference thread only queues (and waits when the writer is `queue_size` results behind:
nothing is lost).

Imports numpy and OpenCV only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgerestore.runtime.video.pipeline import FrameResult
from edgerestore.runtime.video.recorder import OrderedWorker

#: A sink takes a result and the picture composed for it.
Sink = Callable[[FrameResult, np.ndarray], None]


class ImageFolder:
    """A sink writing each result's picture as `folder/NNNNNN.png`, numbered in output order."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, result: FrameResult, image: np.ndarray) -> None:
        from edgerestore.imageio import write_image

        write_image(self.folder / f"{result.sequence:06d}.png", image)


class ResultWriter:
    """Every result, in order, composed by `compose` and given to each of `sinks` on the writer's thread.
    A failure (a sink's exception) stops the writer; it is raised by the next `put` (on the inference thread,
    so the run ends with it) and by `close`."""

    def __init__(
        self,
        compose: Callable[[FrameResult], np.ndarray],
        sinks: Sequence[Sink],
        *,
        queue_size: int = 8,
    ) -> None:
        self.compose = compose
        self.sinks = list(sinks)
        self.written = 0
        self._worker = OrderedWorker(self._write, queue_size, "edgerestore-outputs")

    @property
    def error(self) -> BaseException | None:
        """The failure that stopped the writer (a sink's exception), or None."""
        return self._worker.error

    def put(self, result: FrameResult) -> None:
        """Queue `result` (a pipeline callback); waits while the writer is `queue_size` results behind."""
        if not self._worker.put(result):
            raise self._worker.error

    __call__ = put

    def _write(self, result: FrameResult) -> None:
        image = self.compose(result)
        for sink in self.sinks:
            sink(result, image)
        self.written += 1

    def close(self) -> None:
        """Write what is queued (nothing more after a failure), stop the thread and raise the failure."""
        self._worker.stop()
        if self._worker.error is not None:
            raise self._worker.error
