"""`edgerestore camera`: restore a camera, stream, video file or image folder live, with a window (or
headless status lines), keys to steer it, optional recording, and a summary at the end.

Capture, inference and display run on separate threads (`edgerestore.runtime.video`); capture never waits
for the model unless `--no-drop` asks it to. Imports no torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from edgerestore.commands._bundle import add_bundle_arguments, open_restorer, restorer_label
from edgerestore.errors import UserError, raise_terminated
from edgerestore.files import check_writable, write_text_atomic


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 640x360") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be at least 16")
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("source (one of)")
    one = src.add_mutually_exclusive_group(required=True)
    one.add_argument("--device", metavar="N|PATH", help="camera index (0) or device path (/dev/video0)")
    one.add_argument(
        "--source",
        metavar="FILE|DIR|GLOB|URL",
        help="video file, image folder, glob ('frames/*.png'), rtsp:// or http(s):// URL, or a GStreamer pipeline",
    )
    src.add_argument("--width", type=int, default=0, help="capture width to request from a camera")
    src.add_argument("--height", type=int, default=0, help="capture height to request from a camera")
    src.add_argument(
        "--fps",
        type=float,
        default=None,
        help="camera: capture rate to request; file/images: playback rate (default: the file's own, images 10; 0 = as fast as decoded)",
    )
    src.add_argument(
        "--capture-fourcc",
        default=None,
        metavar="CODE",
        help="camera pixel format, e.g. MJPG for 30 FPS at 720p on USB cameras",
    )
    src.add_argument(
        "--resize",
        type=_size,
        default=None,
        metavar="WxH",
        help="scale every frame to this size before the model",
    )
    src.add_argument("--loop", action="store_true", help="restart a file or image folder at its end")
    src.add_argument(
        "--no-drop",
        action="store_true",
        help="process every frame: capture waits for the model (benchmarks on files; frames in = frames out)",
    )
    src.add_argument(
        "--reconnect-attempts",
        type=int,
        default=None,
        metavar="N",
        help="give up after N failed reconnects (default: keep trying)",
    )
    src.add_argument(
        "--reconnect-delay",
        type=float,
        default=0.5,
        metavar="S",
        help="first reconnect delay; doubles up to 8 s",
    )

    out = parser.add_argument_group("view and output")
    out.add_argument("--headless", action="store_true", help="no window; print a status line each second")
    out.add_argument(
        "--side-by-side", action="store_true", help="start the window in raw | restored view (key s)"
    )
    out.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="OUT.mp4",
        help="write the output video (.mp4, .avi, .mkv, .mov, .webm)",
    )
    out.add_argument(
        "--record-view", choices=("restored", "side-by-side"), default="restored", help="what --record writes"
    )
    out.add_argument("--record-overlay", action="store_true", help="draw the overlay into the recording too")
    out.add_argument(
        "--record-fourcc",
        default=None,
        metavar="CODE",
        help="codec, e.g. mp4v, avc1, MJPG (default: first one this OpenCV can write)",
    )
    out.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N processed frames")
    out.add_argument(
        "--summary-json", type=Path, default=None, metavar="PATH", help="also write the end summary as JSON"
    )
    out.add_argument(
        "--deadline-ms",
        type=float,
        default=None,
        help="pass a frame through raw when its result would take longer (not with --no-drop)",
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no status lines, only the summary")
    add_bundle_arguments(parser)


def _configure_logging(quiet: bool) -> None:
    logger = logging.getLogger("edgerestore")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("edgerestore camera: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING if quiet else logging.INFO)
        logger.propagate = False


def run(args: argparse.Namespace) -> int:
    from edgerestore.runtime import video

    _configure_logging(args.quiet)
    video.quiet_video_logs()
    if args.max_frames < 0:
        raise UserError("--max-frames must be ≥ 0")
    if args.deadline_ms is not None and not args.deadline_ms > 0:
        raise UserError(
            f"--deadline-ms {args.deadline_ms:g} must be > 0 (every frame would pass through raw)"
        )
    if args.no_drop and args.deadline_ms is not None:
        raise UserError(
            f"--no-drop restores every frame, but --deadline-ms {args.deadline_ms:g} passes late frames "
            "through raw; give one of them"
        )
    for option, value in (("--width", args.width), ("--height", args.height)):
        if value < 0:
            raise UserError(f"{option} {value} must be ≥ 0 (0: the camera's default)")
    if args.fps is not None and not args.fps >= 0:
        raise UserError(f"--fps {args.fps:g} must be ≥ 0 (0: as fast as decoded)")
    if not args.reconnect_delay > 0:
        raise UserError(f"--reconnect-delay {args.reconnect_delay:g} must be > 0 seconds")
    if args.reconnect_attempts is not None and args.reconnect_attempts < 0:
        raise UserError(f"--reconnect-attempts {args.reconnect_attempts} must be ≥ 0")
    if args.record is not None:
        check_writable(args.record, "--record")
    if args.summary_json is not None:
        check_writable(args.summary_json, "--summary-json")
    source = video.open_source(
        device=args.device,
        source=args.source,
        width=args.width,
        height=args.height,
        fps=args.fps or 0.0,
        fourcc=args.capture_fourcc,
    )
    try:
        if args.resize is not None and isinstance(source, video.ImageSequenceSource):
            source.min_side = 0  # every image is resized to --resize (≥ 16 px) before the model
        headless = args.headless
        if not headless:
            ok, why = video.display_available()
            if not ok:
                print(
                    f"edgerestore camera: {why}; running headless (pass --headless to skip this check)",
                    file=sys.stderr,
                )
                headless = True
        if args.no_drop:
            pace = 0.0 if args.fps is None else args.fps
        elif args.fps is not None:
            pace = args.fps
        else:
            pace = source.fps or (10.0 if isinstance(source, video.ImageSequenceSource) else 0.0)
        grabber = video.FrameGrabber(
            source,
            drop_stale=not args.no_drop,
            pace_fps=pace,
            loop=args.loop,
            reconnect=video.ReconnectPolicy(
                initial_delay=args.reconnect_delay, max_attempts=args.reconnect_attempts
            ),
            resize=args.resize,
        )
        restorer = open_restorer(args, video=True, deadline_ms=args.deadline_ms)
        print(f"bundle: {restorer_label(restorer)}", flush=True)
    except BaseException:
        source.close()
        raise
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        pipeline = video.RestorePipeline(grabber, restorer, max_frames=args.max_frames)
        options = video.LoopOptions(
            headless=headless,
            side_by_side=args.side_by_side,
            record=args.record,
            record_view=args.record_view,
            record_overlay=args.record_overlay,
            record_fourcc=args.record_fourcc,
            status_every=0.0 if args.quiet else 1.0,
            echo=lambda line: print(line, flush=True),
        )
        summary = video.run_loop(pipeline, options)
    finally:
        signal.signal(signal.SIGTERM, previous)
        close = getattr(restorer, "close", None)
        if callable(close):
            close()
    print(summary.format(), flush=True)
    if args.summary_json is not None:
        write_text_atomic(args.summary_json, json.dumps(summary.as_dict(), indent=2) + "\n")
    pipeline.raise_error()
    if summary.interrupted:
        return 143 if summary.stopped_by == "SIGTERM" else 130
    return 1 if summary.error else 0
