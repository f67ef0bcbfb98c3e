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
from dataclasses import dataclass
from pathlib import Path

from edgerestore.commands._bundle import add_bundle_arguments, open_restorer, restorer_label
from edgerestore.commands._io import add_input_arguments, add_output_arguments
from edgerestore.errors import UserError, raise_terminated
from edgerestore.files import check_writable, write_text_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("source (one of)")
    one = src.add_mutually_exclusive_group(required=True)
    one.add_argument(
        "--device",
        metavar="N|URI",
        help="camera: index (0), device path (/dev/video0, v4l2:///dev/video0), csi://0 (Jetson CSI) or a "
        "GStreamer pipeline (gst://… ! appsink)",
    )
    one.add_argument(
        "--source",
        metavar="URI",
        help="video file (file://clip.mp4), image folder, glob ('frames/*.png'), rtsp:// or http(s):// URL, "
        "or any --device form",
    )
    src = add_input_arguments(parser)
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

    out = add_output_arguments(parser)
    out.add_argument(
        "--side-by-side", action="store_true", help="start the window in raw | restored view (key s)"
    )
    out.add_argument(
        "--output",
        "--record",
        dest="outputs",
        action="append",
        default=[],
        metavar="URI",
        help="where restored frames go, repeatable: a video (file://out.mp4, .avi, .mkv, .mov, .webm), an "
        "image folder (frames/: one PNG per frame) and/or a window (display://0, the default unless --headless)",
    )
    out.add_argument(
        "--record-view",
        choices=("restored", "side-by-side"),
        default="restored",
        help="what --output writes",
    )
    out.add_argument("--record-overlay", action="store_true", help="draw the overlay into the recording too")
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


@dataclass
class Outputs:
    """Where the --output URIs send frames: a video, an image folder (one PNG per frame), a window."""

    video: Path | None = None
    folder: Path | None = None
    window: bool = True


def _outputs(uris: list[str], headless: bool) -> Outputs:
    from edgerestore.runtime.sources import parse_output

    out = Outputs(window=not headless)
    for uri in uris:
        spec = parse_output(uri)
        if spec.kind == "display":
            if headless:
                raise UserError(f"--output {uri} shows a window; leave out --headless")
            if spec.target != 0:
                raise UserError(f"--output {uri}: only the default display (display://0) is supported")
            continue
        attr = "video" if spec.kind == "video" else "folder"
        if getattr(out, attr) is not None:
            raise UserError(
                f"--output: one {'video' if attr == 'video' else 'image folder'} at a time ({uri})"
            )
        setattr(out, attr, Path(str(spec.target)))
    return out


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
    if args.rate is not None and not args.rate >= 0:
        raise UserError(f"--rate {args.rate:g} must be ≥ 0 (0: as fast as decoded)")
    if not args.reconnect_delay > 0:
        raise UserError(f"--reconnect-delay {args.reconnect_delay:g} must be > 0 seconds")
    if args.reconnect_attempts is not None and args.reconnect_attempts < 0:
        raise UserError(f"--reconnect-attempts {args.reconnect_attempts} must be ≥ 0")
    outputs = _outputs(args.outputs, args.headless)
    record = outputs.video
    if record is not None:
        check_writable(record, "--output")
    if outputs.folder is not None:
        check_writable(outputs.folder, "--output", folder=True)
    if args.summary_json is not None:
        check_writable(args.summary_json, "--summary-json")
    source = video.open_source(
        device=args.device,
        source=args.source,
        width=args.size[0] if args.size else 0,
        height=args.size[1] if args.size else 0,
        fps=args.rate or 0.0,
        fourcc=args.input_codec,
    )
    try:
        if args.size is not None and isinstance(source, video.ImageSequenceSource):
            source.min_side = 0  # every image is resized to --resize (≥ 16 px) before the model
        headless = not outputs.window
        if not headless:
            ok, why = video.display_available()
            if not ok:
                print(
                    f"edgerestore camera: {why}; running headless (pass --headless to skip this check)",
                    file=sys.stderr,
                )
                headless = True
        if args.no_drop:
            pace = 0.0 if args.rate is None else args.rate
        elif args.rate is not None:
            pace = args.rate
        else:
            pace = source.fps or (10.0 if isinstance(source, video.ImageSequenceSource) else 0.0)
        restorer = open_restorer(args, video=True, deadline_ms=args.deadline_ms)
        print(f"bundle: {restorer_label(restorer)}", flush=True)
    except BaseException:
        source.close()
        raise
    options = video.VideoOptions(
        drop_stale=not args.no_drop,
        pace_fps=pace,
        loop=args.loop,
        reconnect=video.ReconnectPolicy(
            initial_delay=args.reconnect_delay, max_attempts=args.reconnect_attempts
        ),
        resize=args.size,
        max_frames=args.max_frames,
        headless=headless,
        side_by_side=args.side_by_side,
        record=record,
        record_folder=outputs.folder,
        record_view=args.record_view,
        record_overlay=args.record_overlay,
        record_fourcc=args.output_codec,
        status_every=0.0 if args.quiet else 1.0,
        echo=lambda line: print(line, flush=True),
    )
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        done = video.run(source, restorer, options)
    finally:
        signal.signal(signal.SIGTERM, previous)
        restorer.close()
    summary = done.summary
    print(summary.format(), flush=True)
    if args.summary_json is not None:
        write_text_atomic(args.summary_json, json.dumps(summary.as_dict(), indent=2) + "\n")
    done.raise_error()
    if summary.interrupted:
        return 143 if summary.stopped_by == "SIGTERM" else 130
    return 1 if summary.error else 0
