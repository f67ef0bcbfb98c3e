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
from edgerestore.runtime.video.display import Window
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
