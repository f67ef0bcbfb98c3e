"""Video for the runtime: frame sources, the newest-frame grabber, the inference thread, overlay, display,
recorder and the live loop, with one façade, `run(source, restorer, options)` (`app`), that every frame tool uses.

Three threads, so capture never waits for the model and the model never waits for the screen:

* `FrameGrabber` (`grabber`) reads a `FrameSource` (`readers`: camera index, video file, RTSP/HTTP URL,
  GStreamer pipeline, image folder or glob) on its own thread and keeps only the newest frame; a frame the
  consumer did not take in time is dropped and counted. A live source that fails is reopened with
  exponential back-off. With ``drop_stale=False`` (benchmarks on files) it blocks instead of dropping, so
  every frame is processed.
* `RestorePipeline` (`pipeline`) takes frames from the grabber on its own thread, runs the restorer (a
  `edgerestore.runtime.protocol.RestorerLike`), keeps the statistics and hands each result to callbacks
  and to the display.
* The caller's (main) thread (`live.run_loop`) shows the newest result (`display.Window`, with
  `overlay.draw_overlay`) or prints a status line; `recorder.VideoRecorder` encodes on a thread of its own.

Accounting invariant: ``frames_in == frames_out + dropped`` once the pipeline has stopped.

Imports numpy and OpenCV only: never torch, never the training or export code.
"""

from __future__ import annotations

from edgerestore.runtime.video.app import VideoOptions, VideoRun, run
from edgerestore.runtime.video.display import OffscreenWindow, Window, display_available
from edgerestore.runtime.video.grabber import Frame, FrameGrabber, ReconnectPolicy
from edgerestore.runtime.video.live import (
    KeyActions,
    LoopOptions,
    handle_key,
    run_loop,
    status_line,
)
from edgerestore.runtime.video.outputs import ImageFolder, ResultWriter
from edgerestore.runtime.video.overlay import (
    GREEN,
    KEY_HELP,
    RED,
    WHITE,
    YELLOW,
    compose_view,
    draw_overlay,
    overlay_lines,
    side_by_side,
    text_box,
)
from edgerestore.runtime.video.pipeline import (
    FrameResult,
    LiveStats,
    PipelineSummary,
    RestorePipeline,
    describe_restorer,
    percentiles,
)
from edgerestore.runtime.video.readers import (
    MAX_CAMERA_INDEX,
    VIDEO_EXTENSIONS,
    CaptureSource,
    FrameSource,
    ImageSequenceSource,
    MemorySource,
    count_video_frames,
    iter_video_frames,
    list_images,
    natural_key,
    open_source,
    quiet_video_logs,
)
from edgerestore.runtime.video.recorder import FOURCCS, VideoRecorder, probe_fourcc

__all__ = [
    "FOURCCS",
    "GREEN",
    "KEY_HELP",
    "MAX_CAMERA_INDEX",
    "RED",
    "VIDEO_EXTENSIONS",
    "WHITE",
    "YELLOW",
    "CaptureSource",
    "Frame",
    "FrameGrabber",
    "FrameResult",
    "FrameSource",
    "ImageFolder",
    "ImageSequenceSource",
    "KeyActions",
    "LiveStats",
    "LoopOptions",
    "MemorySource",
    "OffscreenWindow",
    "PipelineSummary",
    "ReconnectPolicy",
    "RestorePipeline",
    "ResultWriter",
    "VideoOptions",
    "VideoRecorder",
    "VideoRun",
    "Window",
    "compose_view",
    "count_video_frames",
    "describe_restorer",
    "display_available",
    "draw_overlay",
    "handle_key",
    "iter_video_frames",
    "list_images",
    "natural_key",
    "open_source",
    "overlay_lines",
    "percentiles",
    "probe_fourcc",
    "quiet_video_logs",
    "run",
    "run_loop",
    "side_by_side",
    "status_line",
    "text_box",
]
