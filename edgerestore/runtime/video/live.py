"""The live loop: keys, the headless status line and `run_loop`, which runs a `RestorePipeline` to its end
while this (main) thread shows the newest result or prints status lines, and recording is finalised on
every exit path.

Imports numpy and OpenCV only.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgerestore.conditions import CONDITIONS
from edgerestore.errors import UserError
from edgerestore.runtime.video.display import OffscreenWindow, Window
from edgerestore.runtime.video.outputs import ImageFolder, ResultWriter, Sink
from edgerestore.runtime.video.overlay import WHITE, compose_view, draw_overlay, text_box
from edgerestore.runtime.video.pipeline import FrameResult, LiveStats, PipelineSummary, RestorePipeline
from edgerestore.runtime.video.recorder import VideoRecorder

log = logging.getLogger("edgerestore.video")


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


@dataclass
class LoopOptions:
    """How `run_loop` shows and records. `status_every` seconds between headless status lines (0: none).

    `record` (a video) and `record_folder` (one PNG per frame) get every result's picture — `record_view`,
    with the overlay if `record_overlay`, or `record_compose(result)` — composed and written on the outputs
    thread. `keep_partial`: on Ctrl-C or an error the recording so far is finalised (a camera's), or deleted
    (False: no half file). `offscreen`: with `headless`, compose every new result as a window would (a
    benchmark's display side); `on_shown(result)` is called once each new result has been shown."""

    headless: bool = True
    side_by_side: bool = False
    record: Path | None = None
    record_view: str = "restored"  # "restored" | "side-by-side"
    record_overlay: bool = False
    record_fourcc: str | None = None
    record_fps: float = 0.0
    record_folder: Path | None = None
    record_compose: Callable[[FrameResult], np.ndarray] | None = None
    keep_partial: bool = True
    offscreen: bool = False
    on_shown: Callable[[FrameResult], None] | None = None
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
    text_box(image, [(f"waiting for {pipeline.grabber.source.name}", WHITE)], (6, 6), 0.6)
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


def _outputs(
    pipeline: RestorePipeline, options: LoopOptions
) -> tuple[VideoRecorder | None, ResultWriter | None]:
    """The recorder and the outputs thread that `options` ask for (None, None: no output)."""
    if options.record is None and options.record_folder is None:
        return None, None
    recorder = None
    sinks: list[Sink] = []
    if options.record is not None:
        src = pipeline.grabber
        fps = options.record_fps or src.pace_fps or src.source.fps or 30.0
        recorder = VideoRecorder(options.record, fps, fourcc=options.record_fourcc)
        sinks.append(lambda result, image: recorder.write(image))
    if options.record_folder is not None:
        try:
            sinks.append(ImageFolder(options.record_folder))
        except BaseException:
            if recorder is not None:
                recorder.abort()
            raise
    side = options.record_view == "side-by-side"

    def compose(result: FrameResult) -> np.ndarray:
        if options.record_compose is not None:
            return options.record_compose(result)
        view = compose_view(result, side=side)
        if options.record_overlay:
            view = draw_overlay(view, pipeline.live_stats(), help_line=False)
        return view

    writer = ResultWriter(compose, sinks)
    pipeline.on_result.append(writer.put)
    return recorder, writer


def _finish_outputs(
    pipeline: RestorePipeline,
    recorder: VideoRecorder | None,
    writer: ResultWriter | None,
    *,
    keep_partial: bool,
    interrupted: bool,
) -> Path | None:
    """Drain the outputs thread and finalise the recording (deleted instead when the run was interrupted or
    failed — inference, an output, or capture — and not `keep_partial`); a failure here ends the run with
    that error (`pipeline.error`)."""
    recorded = None
    try:
        if writer is not None:
            writer.close()
    except BaseException as exc:
        if pipeline.error is None:
            pipeline.error = exc
    if recorder is None:
        return None
    if not keep_partial and (interrupted or pipeline.error is not None or pipeline.grabber.error):
        recorder.abort()
        return None
    try:
        recorded = recorder.close()
    except UserError as exc:  # the encoder failed: the run ends with that error
        if pipeline.error is None:
            pipeline.error = exc
    return recorded


def run_loop(pipeline: RestorePipeline, options: LoopOptions) -> PipelineSummary:
    """Run `pipeline` to its end (source ended, `max_frames`, `q`, window closed, Ctrl-C) while showing a
    window on this thread (or printing status lines) and recording; returns the summary. The recording
    is finalised on every exit path (deleted instead on Ctrl-C or an error without `keep_partial`);
    Ctrl-C is reported as `summary.interrupted`, not raised.

    The window is redrawn when a new result arrives, a key changed the view, or 0.25 s passed (the
    overlay's numbers); keys are polled every 20 ms."""
    recorder: VideoRecorder | None = None
    writer: ResultWriter | None = None
    window: Window | OffscreenWindow | None = None
    interrupted = False
    stopped_by: str | None = None
    recorded: Path | None = None
    try:
        recorder, writer = _outputs(pipeline, options)
        if not options.headless:
            window = Window(options.window_title)
        elif options.offscreen:
            window = OffscreenWindow()
        pipeline.start()
        view = {"side": options.side_by_side}
        seen, last, last_status = 0, None, time.monotonic()
        image: np.ndarray | None = None
        drawn_at = 0.0
        poll = 0.02 if window is not None and window.interactive else 0.2
        while True:
            result = pipeline.latest(after=seen, timeout=poll)
            fresh = result is not None
            if fresh:
                seen, last = result.sequence, result
            if window is not None:
                if fresh or image is None or time.monotonic() - drawn_at >= 0.25:
                    stats = pipeline.live_stats()
                    image = (
                        draw_overlay(compose_view(last, side=view["side"]), stats)
                        if last
                        else _waiting_image(pipeline)
                    )
                    drawn_at = time.monotonic()
                act = handle_key(window.show(image), pipeline, view)
                if fresh and options.on_shown is not None:
                    options.on_shown(result)  # type: ignore[arg-type]
                for message in act.messages:
                    log.info("%s", message)
                if act.messages or act.toggled_side:
                    image = None  # redraw with the new view or state
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
                    recorded = _finish_outputs(
                        pipeline,
                        recorder,
                        writer,
                        keep_partial=options.keep_partial,
                        interrupted=interrupted,
                    )
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
