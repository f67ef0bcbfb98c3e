"""The one façade of the video package: `run(source, restorer, options)` wires source → `FrameGrabber` →
`RestorePipeline` → `run_loop` (display, status lines, outputs) and returns the summary. `camera`, `demo`,
`restore` and the bench's camera-pipeline timing all run through it; `VideoOptions` holds what they choose.

Imports numpy and OpenCV only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edgerestore.runtime.protocol import RestorerLike
from edgerestore.runtime.video.grabber import FrameGrabber, ReconnectPolicy
from edgerestore.runtime.video.live import LoopOptions, run_loop
from edgerestore.runtime.video.pipeline import FrameResult, PipelineSummary, RestorePipeline
from edgerestore.runtime.video.readers import FrameSource


@dataclass
class VideoOptions(LoopOptions):
    """`LoopOptions` (showing, recording, status lines) plus capture and inference.

    Capture: `drop_stale` keeps only the newest frame (a live camera; False: every frame, capture waits),
    `pace_fps` paces a file or folder like a camera (0: as fast as it decodes), `loop` restarts it at its end,
    `reconnect` the back-off of a live source, `resize` (width, height) on the capture thread. Inference:
    `max_frames` (0: to the end), `on_result` callbacks on the inference thread for every result in order
    (keep them cheap: pictures and files belong to the outputs, `record` / `record_folder`), `prefetch`
    (two frames in flight; None: when every frame is kept and the restorer can queue frames)."""

    drop_stale: bool = True
    pace_fps: float = 0.0
    loop: bool = False
    reconnect: ReconnectPolicy | None = None
    resize: tuple[int, int] | None = None
    max_frames: int = 0
    on_result: Sequence[Callable[[FrameResult], None]] = field(default_factory=tuple)
    prefetch: bool | None = None


@dataclass
class VideoRun:
    """What `run` returns: the end-of-run summary, and the exception that stopped it (inference, capture
    or an output), re-raised on the caller's thread by `raise_error`."""

    summary: PipelineSummary
    error: BaseException | None

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def run(source: FrameSource, restorer: RestorerLike, options: VideoOptions | None = None) -> VideoRun:
    """Run `source` (opened) through `restorer` to its end — source ended, `max_frames`, `q`, the window
    closed, Ctrl-C (`summary.interrupted`) — showing, printing and writing what `options` ask for. The
    source is closed at the end; the restorer is the caller's to close. Errors come back in the result
    (`raise_error`), after the outputs were finalised."""
    options = options or VideoOptions()
    grabber = FrameGrabber(
        source,
        drop_stale=options.drop_stale,
        pace_fps=options.pace_fps,
        loop=options.loop,
        reconnect=options.reconnect,
        resize=options.resize,
    )
    pipeline = RestorePipeline(
        grabber,
        restorer,
        max_frames=options.max_frames,
        on_result=options.on_result,
        prefetch=options.prefetch,
    )
    summary = run_loop(pipeline, options)
    return VideoRun(summary, pipeline.error)
