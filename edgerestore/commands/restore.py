"""`edgerestore restore`: images, folders and videos in, restored files out under `--out` with the same
names (folders keep their sub-folders), a progress bar, and a report of the condition found per file.
Images keep their bit depth and channels (16-bit, gray, alpha passed through); a layout the output format
cannot store is refused for that file. Videos are 8-bit BGR.

Every output is written under a temporary name and renamed when complete, so an error or Ctrl-C never
leaves half a file. A file that cannot be read is reported in one line and skipped; the exit status is then
1. Imports no torch.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import signal
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgerestore.commands import restore_mcap
from edgerestore.commands._bundle import add_bundle_arguments, open_restorer, restorer_label
from edgerestore.commands._io import add_output_arguments
from edgerestore.errors import UserError, first_line, raise_terminated
from edgerestore.files import check_writable, write_text_atomic
from edgerestore.progress import Progress
from edgerestore.runtime.protocol import RestorerLike


@dataclass
class Job:
    """One input file and where its output goes."""

    src: Path
    dst: Path
    kind: str  # "image" | "video"


@dataclass
class FileReport:
    """One line of the report. For videos, `condition` is the most frequent one and `conditions` counts
    every frame's; `confidence` is the mean over frames where the router ran."""

    input: str
    output: str | None
    kind: str
    condition: str | None = None
    confidence: float | None = None
    restored: bool | None = None
    frames: int = 0
    conditions: dict[str, int] = field(default_factory=dict)
    ms_per_frame: float | None = None
    lost_frames: int = 0  # video frames that did not decode (a damaged stretch) and were skipped
    error: str | None = None


def _input_path(text: str) -> Path:
    """An input as a path: `file://x` is `x`; other URIs (cameras, streams) belong to `edgerestore camera`."""
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.lower() != "file":
            raise UserError(
                f"{text!r}: restore reads files and folders (or file:// URIs); live sources go to "
                f"`edgerestore camera --source {text}`"
            )
        text = rest
    return Path(text)


def _output_folder(text: str) -> Path:
    """--out as a folder: `file://DIR` is `DIR`; a display:// or another scheme is refused in one line."""
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.lower() != "file" or not rest:
            raise argparse.ArgumentTypeError(f"{text!r}: restore writes into a folder (DIR or file://DIR)")
        text = rest
    return Path(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image or video files, folders (recursive), globs, file:// URIs, or ROS 2 recordings (.mcap)",
    )
    parser.add_argument(
        "-o",
        "--out",
        type=_output_folder,
        required=True,
        metavar="DIR",
        help="output folder, or file://DIR (same file names as the inputs); for one .mcap input, a .mcap file",
    )
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="write raw | restored (8-bit BGR) instead of the restored image",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="PATH",
        help="per-file report, .json or .csv (default: OUT/restore_report.json)",
    )
    add_output_arguments(parser, window=False)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_bundle_arguments(parser)
    restore_mcap.add_arguments(parser)


def collect_jobs(inputs: list[Path], out: Path) -> list[Job]:
    """Files to restore and their outputs; `UserError` for a missing input, an output that would overwrite an
    input, or two inputs that map to the same output."""
    from edgerestore.imageio import IMAGE_EXTENSIONS
    from edgerestore.runtime.video import VIDEO_EXTENSIONS, natural_key

    def kind_of(path: Path) -> str | None:
        suffix = path.suffix.lower()
        return "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None

    jobs: list[Job] = []
    out_resolved = out.resolve()

    def outside_out(p: Path) -> bool:  # an --out inside an input folder: never restore earlier outputs
        return out_resolved not in p.resolve().parents or out_resolved == item.resolve()

    skipped_links: list[Path] = []
    for item in inputs:
        text = str(item)
        if item.is_dir():
            skipped_links += [p for p in item.rglob("*") if p.is_symlink() and not p.exists()]
            files = sorted(
                (p for p in item.rglob("*") if p.is_file() and not p.name.startswith(".") and outside_out(p)),
                key=natural_key,
            )
            jobs += [Job(p, out / p.relative_to(item), k) for p in files if (k := kind_of(p))]
        elif item.is_file():
            kind = kind_of(item)
            if kind is None:
                raise UserError(
                    f"{item}: not an image ({' '.join(IMAGE_EXTENSIONS)}) or a video ({' '.join(VIDEO_EXTENSIONS)})"
                )
            jobs.append(Job(item, out / item.name, kind))
        elif any(ch in text for ch in "*?["):
            import glob

            files = sorted((Path(p) for p in glob.glob(text, recursive=True)), key=natural_key)
            matched = [
                Job(p, out / p.name, k) for p in files if p.is_file() and outside_out(p) and (k := kind_of(p))
            ]
            if not matched:
                raise UserError(f"{text}: the pattern matches no image or video")
            jobs += matched
        else:
            raise UserError(f"{item}: no such file or folder")
    for link in skipped_links:
        print(f"edgerestore restore: warning: skipping {link}: a broken symbolic link", file=sys.stderr)
    if not jobs:
        raise UserError(f"no images or videos in {', '.join(map(str, inputs))}")
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.dst.resolve() == job.src.resolve():
            raise UserError(f"--out {out} would overwrite the input {job.src}; choose another output folder")
        other = seen.setdefault(job.dst.resolve(), job.src)
        if other != job.src:
            raise UserError(
                f"{other} and {job.src} would both be written to {job.dst}; restore them separately"
            )
    return jobs


def _result_view(raw: Any, result: Any, side: bool) -> Any:
    from edgerestore.imageio import to_bgr_uint8
    from edgerestore.runtime.video import side_by_side

    if not side:
        return result.image
    # a comparison picture: 8-bit BGR, whatever the input's depth and channels
    return side_by_side(
        to_bgr_uint8(raw), to_bgr_uint8(result.image), ("raw", f"restored: {result.condition}")
    )


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def restore_image(job: Job, restorer: RestorerLike, side: bool) -> FileReport:
    from edgerestore.imageio import check_storable, read_image_as_stored, write_image

    # restored with the input's bit depth and channels (alpha kept), upright (EXIF orientation applied)
    raw = read_image_as_stored(job.src, upright=True)
    if not side:
        # before the work: refuse what the output format would convert
        check_storable(job.dst, raw, "the output keeps the input's name, so save the input as {fits}")
    restorer.reset()
    t0 = time.perf_counter()
    result = restorer(raw)
    ms = (time.perf_counter() - t0) * 1000.0
    write_image(job.dst, _result_view(raw, result, side))
    return FileReport(
        input=str(job.src),
        output=str(job.dst),
        kind="image",
        condition=result.condition,
        confidence=None if (c := _finite(result.confidence)) is None else round(c, 4),
        restored=bool(result.restored),
        frames=1,
        conditions={result.condition: 1},
        ms_per_frame=round(ms, 3),
    )


def restore_video(job: Job, restorer: RestorerLike, side: bool, fourcc: str | None, bar: Any) -> FileReport:
    """Every frame of a video through the camera pipeline (`edgerestore.runtime.video.run`: decoding,
    the model and encoding each on a thread of their own), recorded to the output; a failure or Ctrl-C
    leaves no file."""
    from edgerestore.errors import SourceError
    from edgerestore.runtime import video

    dst = job.dst if job.dst.suffix.lower() in video.FOURCCS else job.dst.with_suffix(".mp4")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write {dst}: {exc.strerror or exc}") from None
    source = video.CaptureSource(str(job.src), kind="file")
    source.open()
    restorer.reset()
    counts: Counter[str] = Counter()
    confidences: list[float] = []
    restored: list[bool] = []
    total_ms = 0.0

    def count(result: video.FrameResult) -> None:
        nonlocal total_ms
        total_ms += result.latency_ms
        counts[result.condition or "?"] += 1
        if (c := _finite(result.confidence)) is not None:
            confidences.append(c)
        restored.append(result.restored)
        bar.update(1)

    options = video.VideoOptions(
        drop_stale=False,
        on_result=[count],
        record=dst,
        record_fps=source.fps or 25.0,
        record_fourcc=fourcc,
        record_compose=lambda r: _result_view(r.frame.image, r, side),
        keep_partial=False,
        status_every=0.0,
    )
    done = video.run(source, restorer, options)
    if done.summary.interrupted:  # Ctrl-C or SIGTERM: the recording is gone; the run stops here
        from edgerestore.errors import Terminated

        stopped_by = done.summary.stopped_by
        raise KeyboardInterrupt if stopped_by in (None, "Ctrl-C") else Terminated(stopped_by)
    done.raise_error()
    if done.summary.error:  # capture failed part-way (the recording is gone)
        raise SourceError(done.summary.error)
    if not counts:
        raise SourceError(f"cannot read video {job.src}: no frame decodes")
    frames = sum(counts.values())
    if (lost := done.summary.lost_frames) > 0:
        bar.write(
            f"edgerestore restore: warning: {job.src}: {lost} of {frames + lost} frames do not decode and "
            "were skipped (the file is damaged)",
            file=sys.stderr,
        )
    return FileReport(
        input=str(job.src),
        output=done.summary.recording,
        kind="video",
        condition=counts.most_common(1)[0][0],
        confidence=round(sum(confidences) / len(confidences), 4) if confidences else None,
        restored=any(restored),
        frames=frames,
        conditions=dict(counts),
        ms_per_frame=round(total_ms / frames, 3),
        lost_frames=lost,
    )


def write_report(path: Path, reports: list[FileReport]) -> Path:
    """JSON (a list of objects) or CSV (one row per file; video condition counts as `rain:12 haze:3`)."""
    rows = [asdict(r) for r in reports]
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=list(rows[0]) if rows else list(FileReport.__dataclass_fields__)
        )
        writer.writeheader()
        for row in rows:
            row["conditions"] = " ".join(f"{k}:{v}" for k, v in row["conditions"].items())
            writer.writerow(row)
        return write_text_atomic(path, buf.getvalue())
    if path.suffix.lower() != ".json":
        raise UserError(f"--report {path}: use a .json or .csv file name")
    return write_text_atomic(path, json.dumps(rows, indent=2) + "\n")


def _video_frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
    finally:
        cap.release()


def run(args: argparse.Namespace) -> int:
    if restore_mcap.wants(args):  # ROS 2 recordings: their own output (a new .mcap) and report
        return restore_mcap.run(args)
    report_path = args.report if args.report is not None else args.out / "restore_report.json"
    if report_path.suffix.lower() not in (".json", ".csv"):
        raise UserError(f"--report {report_path}: use a .json or .csv file name")
    check_writable(args.out, "--out", folder=True)
    check_writable(report_path, "--report")
    from edgerestore.runtime.video import quiet_video_logs

    quiet_video_logs()
    jobs = collect_jobs([_input_path(text) for text in args.inputs], args.out)
    restorer = open_restorer(args, video=True)
    print(f"bundle: {restorer_label(restorer)}", flush=True)
    reports: list[FileReport] = []
    total = sum(1 if j.kind == "image" else max(_video_frames(j.src), 1) for j in jobs)
    bar = Progress(not args.quiet).bar(total, "restoring", "frame")
    stopped: KeyboardInterrupt | None = None
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        for job in jobs:
            try:
                if job.kind == "image":
                    reports.append(restore_image(job, restorer, args.side_by_side))
                    bar.update(1)
                else:
                    reports.append(restore_video(job, restorer, args.side_by_side, args.output_codec, bar))
            except Exception as exc:  # this file fails (bad input, or e.g. out of memory); the rest go on
                text = str(exc) if isinstance(exc, UserError) else first_line(exc)
                message = text if str(job.src) in text else f"{job.src}: {text}"
                bar.write(f"edgerestore restore: error: {message}", file=sys.stderr)
                bar.update(1 if job.kind == "image" else 0)
                reports.append(FileReport(str(job.src), None, job.kind, error=message))
            if reports[-1].condition:
                bar.set_postfix_str(f"{job.src.name}: {reports[-1].condition}")
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the report still lists the files already done
        stopped = exc
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
        restorer.close()
    if stopped is not None:
        write_report(report_path, reports)
        print(
            f"edgerestore restore: stopped after {len(reports)} of {len(jobs)} files; report: {report_path}",
            file=sys.stderr,
        )
        raise stopped
    write_report(report_path, reports)
    failed = [r for r in reports if r.error]
    done = len(reports) - len(failed)
    seen = Counter(r.condition for r in reports if r.condition)
    conditions = ", ".join(f"{k} {v}" for k, v in seen.most_common()) or "none"
    print(f"restored {done} of {len(jobs)} files into {args.out} ({conditions}); report: {report_path}")
    if failed:
        print(
            f"edgerestore restore: {len(failed)} file(s) failed (listed above and in the report)",
            file=sys.stderr,
        )
        return 1
    return 0
