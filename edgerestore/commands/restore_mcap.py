"""`edgerestore restore X.mcap --out Y.mcap [--topic T ...] [--keep-original]`: ROS 2 recordings.

The `restore` verb hands MCAP inputs here (see `edgerestore.runtime.rosbag` for what is read, restored and
copied). Each image topic gets its own restorer in video mode, so every camera's condition is smoothed over
its own frames. Imports no torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgerestore.errors import UserError

SUFFIX = ".mcap"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ROS 2 recordings (.mcap)")
    group.add_argument(
        "--topic",
        action="append",
        default=None,
        metavar="TOPIC",
        help="image topic to restore (repeatable; default: every sensor_msgs Image / CompressedImage topic)",
    )
    group.add_argument(
        "--keep-original",
        action="store_true",
        help="keep the original images and write the restored ones on <topic>/restored",
    )


def wants(args: argparse.Namespace) -> bool:
    """Whether this `restore` is for MCAP recordings; `UserError` for MCAP mixed with other inputs, or for
    the MCAP-only options without an MCAP input."""
    inputs = [Path(p) for p in args.inputs]
    mcap = [p for p in inputs if p.suffix.lower() == SUFFIX]
    if mcap and len(mcap) != len(inputs):
        raise UserError("restore MCAP recordings separately from images and videos")
    if not mcap and (args.topic or args.keep_original):
        option = "--topic" if args.topic else "--keep-original"
        raise UserError(f"{option} is for MCAP recordings (.mcap inputs)")
    return bool(mcap)


def _outputs(inputs: list[Path], out: Path) -> list[tuple[Path, Path]]:
    if len(inputs) == 1 and out.suffix.lower() == SUFFIX:
        pairs = [(inputs[0], out)]
    elif out.suffix.lower() == SUFFIX:
        raise UserError(f"--out {out}: give a folder for {len(inputs)} recordings")
    else:
        pairs = [(p, out / p.name) for p in inputs]
    seen: set[Path] = set()
    for src, dst in pairs:
        if dst.resolve() == src.resolve():
            raise UserError(f"--out {dst} would overwrite the input {src}; choose another output")
        if dst.resolve() in seen:
            raise UserError(f"two recordings named {dst.name} would both be written to {dst}")
        seen.add(dst.resolve())
    return pairs


def run(args: argparse.Namespace) -> int:
    from edgerestore.commands._bundle import open_restorer
    from edgerestore.files import check_writable, write_text_atomic
    from edgerestore.progress import Progress
    from edgerestore.runtime import rosbag

    for option, value in (("--side-by-side", args.side_by_side), ("--output-codec", args.output_codec)):
        if value:
            raise UserError(f"{option} is for images and videos, not MCAP recordings")
    pairs = _outputs([Path(p) for p in args.inputs], Path(args.out))
    folder = Path(args.out).suffix.lower() != SUFFIX
    report_path = (
        args.report if args.report is not None else (args.out / "restore_report.json" if folder else None)
    )
    if report_path is not None and report_path.suffix.lower() != ".json":
        raise UserError(f"--report {report_path}: use a .json file name for MCAP recordings")
    for _, dst in pairs:
        check_writable(dst, "--out")
    if report_path is not None:
        check_writable(report_path, "--report")
    plans = []
    for src, _ in pairs:
        channels, counts = rosbag.list_channels(src)
        topics = rosbag.select_topics(src, channels, args.topic)
        plans.append(sum(counts.get(t, 0) for t in topics))
    restorers: dict[str, Any] = {}

    def restorer_for(topic: str) -> Any:
        if topic not in restorers:
            restorers[topic] = open_restorer(args, video=True)
        return restorers[topic]

    bar = Progress(not args.quiet).bar(sum(plans) or None, "restoring", "frame")
    reports = []
    try:
        for src, dst in pairs:
            for restorer in restorers.values():
                restorer.reset()
            reports.append(
                rosbag.restore_bag(
                    src,
                    dst,
                    restorer_for,
                    topics=args.topic,
                    keep_original=args.keep_original,
                    on_frame=lambda topic, result: bar.update(1),
                )
            )
    finally:
        bar.close()
        for restorer in restorers.values():
            restorer.close()
    if report_path is not None:
        write_text_atomic(report_path, json.dumps([asdict(r) for r in reports], indent=2) + "\n")
    for report in reports:
        seen: Counter[str] = Counter()
        for topic in report.topics.values():
            seen.update(topic.conditions)
        frames = sum(t.frames for t in report.topics.values())
        restored = sum(t.restored for t in report.topics.values())
        conditions = ", ".join(f"{k} {v}" for k, v in seen.most_common()) or "no frames"
        print(
            f"{report.input} -> {report.output}: {restored} of {frames} frames restored on "
            f"{', '.join(t.output_topic for t in report.topics.values())} ({conditions}); "
            f"{report.copied} messages copied; verdicts on {rosbag.CONDITION_TOPIC}",
            file=sys.stdout,
        )
    if report_path is not None:
        print(f"report: {report_path}")
    return 0
