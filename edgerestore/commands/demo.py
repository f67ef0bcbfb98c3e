"""`edgerestore demo`: the README's first command. Makes (once, cached) a short weather clip — clean, rain,
haze, raindrop and snow segments panned over still photos and degraded by `edgerestore.data.degrade` — runs
it through the camera pipeline headless, every frame, and writes a side-by-side video, a contact sheet PNG
and the latency summary (with the router's accuracy against the clip's known conditions).

`run_demo(bundle_dir, out_dir, ...)` is the reusable part; `run(args)` resolves the bundle first.
Imports no torch (the clip needs numpy/OpenCV; scikit-image's bundled photos are used when installed).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgerestore.commands._bundle import (
    add_bundle_arguments,
    add_precision_argument,
    default_bundle_path,
    open_restorer,
    restorer_label,
)
from edgerestore.commands._io import add_output_arguments
from edgerestore.conditions import CONDITIONS
from edgerestore.errors import UserError
from edgerestore.files import check_writable, write_text_atomic
from edgerestore.progress import Progress, as_progress
from edgerestore.runtime.protocol import RestorerLike

CLIP_VERSION = 2
# Photos shipped inside scikit-image (no download), one per segment; outdoor scenes first.
SCENE_FILES = ("rocket.jpg", "motorcycle_left.png", "coffee.png", "chelsea.png", "astronaut.png")
# Conditions whose look stays put from frame to frame (drops on the lens, haze); rain and snow fall. Used only
# when the degrade module has no `WeatherSequence` (which renders falling weather itself).
STATIC_CONDITIONS = ("haze", "raindrop")


def default_data_dir() -> Path:
    """`$EDGERESTORE_DATA`, else `$XDG_CACHE_HOME/edgerestore`, else `~/.cache/edgerestore`."""
    if os.environ.get("EDGERESTORE_DATA"):
        return Path(os.environ["EDGERESTORE_DATA"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "edgerestore"


@dataclass
class DemoClip:
    """A generated clip: the video file and the true condition of every frame."""

    path: Path
    labels: list[str]
    fps: float
    size: tuple[int, int]  # (width, height)
    scenes: list[str] = field(default_factory=list)

    @property
    def segments(self) -> list[tuple[str, int, int]]:
        """(condition, first frame, end frame) runs of `labels`."""
        runs: list[tuple[str, int, int]] = []
        for i, label in enumerate(self.labels):
            if runs and runs[-1][0] == label and runs[-1][2] == i:
                runs[-1] = (label, runs[-1][1], i + 1)
            else:
                runs.append((label, i, i + 1))
        return runs


def _scene_images() -> list[tuple[str, np.ndarray]]:
    """Photos from scikit-image's data folder (read from disk, never downloaded); [] without skimage."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return []
    from edgerestore.imageio import read_image

    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    found = []
    for name in SCENE_FILES:
        if (folder / name).is_file():
            found.append((f"skimage:{name}", read_image(folder / name)))
    return found


def _procedural_scene(seed: int, size: tuple[int, int] = (640, 420)) -> np.ndarray:
    """A street-like picture (sky, buildings with windows, road) for machines without scikit-image."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    sky = np.linspace(235, 150, h // 2)[:, None]
    img[: h // 2] = np.stack(
        [np.repeat(sky, w, 1), np.repeat(sky * 0.85, w, 1), np.repeat(sky * 0.7, w, 1)], -1
    )
    img[h // 2 :] = (70, 72, 75)
    x = 0
    while x < w:
        bw, bh = int(rng.integers(50, 120)), int(rng.integers(h // 4, int(h * 0.6)))
        color = tuple(int(c) for c in rng.integers(60, 200, 3))
        cv2.rectangle(img, (x, h * 3 // 4 - bh), (x + bw, h * 3 // 4), color, -1)
        for wy in range(h * 3 // 4 - bh + 8, h * 3 // 4 - 12, 18):
            for wx in range(x + 6, x + bw - 10, 16):
                cv2.rectangle(
                    img,
                    (wx, wy),
                    (wx + 8, wy + 10),
                    (40, 60, 90) if rng.random() < 0.7 else (120, 220, 250),
                    -1,
                )
        x += bw + int(rng.integers(0, 12))
    cv2.rectangle(img, (0, h * 3 // 4), (w, h), (60, 60, 62), -1)
    for lx in range(0, w, 60):
        cv2.rectangle(img, (lx, h * 7 // 8), (lx + 30, h * 7 // 8 + 4), (220, 220, 220), -1)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _pan(scene: np.ndarray, t: float, size: tuple[int, int]) -> np.ndarray:
    """A (w, h) crop of `scene` scaled to cover it with room to move, at pan position t ∈ [0, 1]."""
    import cv2

    w, h = size
    scale = max(1.35 * w / scene.shape[1], 1.15 * h / scene.shape[0])
    big = cv2.resize(
        scene, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    )
    x = int(round(t * (big.shape[1] - w)))
    y = int(round((0.5 + 0.5 * np.sin(2 * np.pi * t)) * (big.shape[0] - h)))
    return np.ascontiguousarray(big[y : y + h, x : x + w])


def make_demo_clip(
    data_dir: Path | None = None,
    *,
    size: tuple[int, int] = (320, 240),
    frames_per_segment: int = 24,
    fps: float = 12.0,
    conditions: tuple[str, ...] = CONDITIONS,
    seed: int = 0,
    refresh: bool = False,
    progress: Progress | bool = True,
) -> DemoClip:
    """Generate the demo clip once and cache it under `data_dir/demo/` (an MJPG .avi plus a .json with the
    per-frame conditions); later calls with the same parameters load the cache."""
    import cv2

    try:
        from edgerestore.data import degrade
    except ImportError as exc:
        raise UserError(
            f"the demo clip needs edgerestore.data.degrade ({exc}); reinstall edgerestore"
        ) from None

    def weather(condition: str, seed: int) -> Callable[[np.ndarray, int], np.ndarray]:
        """Frame i with the segment's weather: `WeatherSequence` (rain and snow fall, drops and haze stay
        put) where the degrade module has it, else independent `degrade_uint8_bgr` draws."""
        if hasattr(degrade, "WeatherSequence"):
            return degrade.WeatherSequence(h, w, condition, seed=seed).apply_uint8_bgr
        static = condition in STATIC_CONDITIONS
        return lambda frame, i: degrade.degrade_uint8_bgr(frame, condition, seed if static else seed + i)

    for c in conditions:
        if c not in CONDITIONS:
            raise UserError(f"unknown condition {c!r}; expected one of {', '.join(CONDITIONS)}")
    folder = (data_dir or default_data_dir()) / "demo"
    w, h = size
    stem = f"weather_clip_v{CLIP_VERSION}_{w}x{h}_{frames_per_segment}f_{fps:g}fps_s{seed}_{'-'.join(conditions)}"
    video_path, meta_path = folder / f"{stem}.avi", folder / f"{stem}.json"
    if not refresh and video_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return DemoClip(video_path, meta["labels"], meta["fps"], tuple(meta["size"]), meta.get("scenes", []))  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    scenes = _scene_images() or [
        (f"procedural:{i}", _procedural_scene(seed + i)) for i in range(len(SCENE_FILES))
    ]
    labels: list[str] = []
    tmp = folder / f".{stem}.{os.getpid()}.partial.avi"
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise UserError(f"cannot write {tmp}: this OpenCV build has no MJPG encoder")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    bar = as_progress(progress).bar(len(conditions) * frames_per_segment, "making the demo clip", "frame")
    try:
        for s, condition in enumerate(conditions):
            scene = scenes[s % len(scenes)][1]
            apply = weather(condition, seed * 1000 + s * 100) if condition != "clean" else None
            for i in range(frames_per_segment):
                frame = _pan(scene, i / max(frames_per_segment - 1, 1), size)
                if apply is not None:
                    frame = apply(frame, i)
                writer.write(frame)
                labels.append(condition)
                bar.update(1)
        writer.release()
        os.replace(tmp, video_path)
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    names = [scenes[s % len(scenes)][0] for s in range(len(conditions))]
    meta = {
        "version": CLIP_VERSION,
        "labels": labels,
        "fps": fps,
        "size": [w, h],
        "scenes": names,
        "seed": seed,
    }
    write_text_atomic(meta_path, json.dumps(meta) + "\n")
    return DemoClip(video_path, labels, fps, size, names)


@dataclass
class SegmentResult:
    """How the runtime handled one segment of the clip."""

    condition: str
    frames: int
    detected: dict[str, int]
    router_accuracy: float | None  # None for an --input clip: its true conditions are unknown
    sample_raw: Any = None
    sample_restored: Any = None
    sample_detected: str | None = None
    sample_confidence: float | None = None


@dataclass
class DemoReport:
    clip: str
    video: str | None
    contact_sheet: str
    summary_json: str
    summary: dict[str, Any]
    segments: list[dict[str, Any]]

    def format(self) -> str:
        lat = self.summary["latency_ms"]
        lines = [
            "| segment | frames | detected (frames) | router accuracy |",
            "|---|---|---|---|",
        ]
        for seg in self.segments:
            found = ", ".join(f"{k} {v}" for k, v in sorted(seg["detected"].items(), key=lambda kv: -kv[1]))
            acc = seg["router_accuracy"]
            acc_text = "—" if acc is None else f"{acc:.0%}"
            lines.append(f"| {seg['condition']} | {seg['frames']} | {found} | {acc_text} |")
        lines += [
            "",
            f"{self.summary['frames_out']} frames, {self.summary['backend']} {self.summary['precision']}: "
            f"latency p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, "
            f"{self.summary['fps']:.1f} FPS end to end",
            f"side-by-side video  {self.video}",
            f"contact sheet       {self.contact_sheet}",
            f"latency summary     {self.summary_json}",
        ]
        return "\n".join(lines)


def contact_sheet(segments: list[SegmentResult], width: int = 320) -> np.ndarray:
    """One row per segment: raw | restored, labelled with the true and the detected condition."""
    import cv2

    from edgerestore.runtime.video import side_by_side

    rows = []
    for seg in segments:
        if seg.sample_raw is None:
            continue
        raw, restored = seg.sample_raw, seg.sample_restored
        scale = width / raw.shape[1]
        raw = cv2.resize(raw, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        restored = cv2.resize(restored, (raw.shape[1], raw.shape[0]), interpolation=cv2.INTER_AREA)
        conf = seg.sample_confidence
        detected = f"{seg.sample_detected}" + (
            f" {conf:.2f}" if conf is not None and np.isfinite(conf) else ""
        )
        label = "input" if seg.router_accuracy is None and seg.frames else f"input: {seg.condition}"
        rows.append(side_by_side(raw, restored, (label, f"restored ({detected})")))
    if not rows:
        raise UserError("no frames were processed, so there is no contact sheet to draw")
    return cv2.vconcat(rows)


def _discard(paths: list[str | None]) -> None:
    """Remove what a failed run wrote: no half set of outputs (a video without its sheet and summary)."""
    for path in paths:
        if path:
            with contextlib.suppress(OSError):
                Path(path).unlink(missing_ok=True)


def run_demo(
    bundle_dir: str | Path | None,
    out_dir: str | Path,
    *,
    clip: DemoClip | None = None,
    data_dir: Path | None = None,
    restorer: RestorerLike | None = None,
    max_frames: int = 0,
    record: bool = True,
    output_codec: str | None = None,
    input_uri: str | None = None,
    echo: Callable[[str], None] = print,
    progress: Progress | bool = True,
    **restorer_options: Any,
) -> DemoReport:
    """Run the demo clip (made if needed) through the camera pipeline headless, every frame, and write into
    `out_dir`: `demo_side_by_side.mp4` (raw | restored with the overlay), `demo_contact_sheet.png` and
    `demo_latency.json`. `restorer` (a `RestorerLike`: a `Restorer` or a stand-in) overrides `bundle_dir`.
    `input_uri` (a video file, image folder, camera or stream URI) replaces the clip: its segments are then
    the router's verdicts, with the most confident frame of each as the sample, and no router accuracy."""
    from edgerestore.imageio import write_image
    from edgerestore.runtime import video

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = None if input_uri is not None else clip or make_demo_clip(data_dir, progress=progress)
    own = restorer is None
    if own:
        if bundle_dir is None:
            raise UserError("run_demo needs a bundle_dir or a restorer")
        from edgerestore.runtime.restorer import Restorer

        restorer = Restorer.open(bundle_dir, video=True, **restorer_options)
    segments = [] if clip is None else [SegmentResult(c, 0, {}, 0.0) for c, _, _ in clip.segments]
    where = [] if clip is None else [k for k, (_, a, b) in enumerate(clip.segments) for _ in range(a, b)]
    middles = [] if clip is None else [(a + b) // 2 for _, a, b in clip.segments]
    sampled: dict[int, int] = {}  # segment -> frame index of its sample
    by_verdict: dict[str, SegmentResult] = {}  # --input: one segment per condition the router chose

    def collect_verdicts(result: video.FrameResult) -> None:
        found = result.condition or "?"
        seg = by_verdict.setdefault(found, SegmentResult(found, 0, {}, None))
        seg.frames += 1
        seg.detected[found] = seg.frames
        conf = result.confidence if result.confidence is not None else float("-inf")
        best = seg.sample_confidence if seg.sample_confidence is not None else float("-inf")
        if seg.sample_raw is None or conf > best:
            seg.sample_raw, seg.sample_restored = result.frame.image, result.image
            seg.sample_detected, seg.sample_confidence = found, result.confidence

    def collect(result: video.FrameResult) -> None:
        i = result.frame.index
        if i >= len(where):
            return
        k = where[i]
        seg = segments[k]
        seg.frames += 1
        found = result.condition or "?"
        seg.detected[found] = seg.detected.get(found, 0) + 1
        # the sample: the processed frame nearest the segment's middle (a short run may not reach it)
        if k not in sampled or abs(i - middles[k]) < abs(sampled[k] - middles[k]):
            sampled[k] = i
            seg.sample_raw, seg.sample_restored = result.frame.image, result.image
            seg.sample_detected, seg.sample_confidence = found, result.confidence

    try:
        if clip is not None:
            source: video.FrameSource = video.CaptureSource(str(clip.path), kind="file")
            source.open()
            total, fps, callback = len(clip.labels), clip.fps, collect
        else:
            assert input_uri is not None
            camera = {"device": input_uri} if input_uri.isdigit() else {"source": input_uri}
            source = video.open_source(**camera)
            count = source.frame_count() if isinstance(source, video.CaptureSource) else 0
            if isinstance(source, video.ImageSequenceSource):
                count = len(source.paths)
            total, fps, callback = count or None, source.fps or 25.0, collect_verdicts
        callbacks = [callback]
        bar = None
        if progress:
            bar = as_progress(progress).bar(max_frames or total, "demo", "frame")
            callbacks.append(lambda r: bar.update(1))
        options = video.VideoOptions(
            drop_stale=False,
            max_frames=max_frames,
            on_result=callbacks,
            headless=True,
            record=out_dir / "demo_side_by_side.mp4" if record else None,
            record_view="side-by-side",
            record_overlay=True,
            record_fps=fps,
            record_fourcc=output_codec,
            status_every=0.0,
        )
        try:
            done = video.run(source, restorer, options)
        finally:
            if bar is not None:
                bar.close()
        summary = done.summary
        written = [summary.recording]
        try:
            done.raise_error()
        except BaseException:
            _discard(written)
            raise
        if summary.interrupted:
            raise KeyboardInterrupt
    finally:
        if own:
            restorer.close()
    if clip is None:
        segments = [by_verdict[c] for c in (*CONDITIONS, "?") if c in by_verdict]
    else:
        segments = [
            seg for seg in segments if seg.frames
        ]  # a short run (--max-frames) reaches only the first
        for seg in segments:
            seg.router_accuracy = seg.detected.get(seg.condition, 0) / seg.frames
    clip_name = str(clip.path) if clip is not None else str(input_uri)
    summary_path = out_dir / "demo_latency.json"
    try:
        sheet_path = write_image(out_dir / "demo_contact_sheet.png", contact_sheet(segments))
        written.append(str(sheet_path))
        seg_rows = [{k: v for k, v in asdict(s).items() if not k.startswith("sample_")} for s in segments]
        payload = {"clip": clip_name, "summary": summary.as_dict(), "segments": seg_rows}
        write_text_atomic(summary_path, json.dumps(payload, indent=2) + "\n")
    except BaseException:
        _discard(written)
        raise
    report = DemoReport(
        clip_name, summary.recording, str(sheet_path), str(summary_path), summary.as_dict(), seg_rows
    )
    echo(report.format())
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("demo_out"),
        help="where the video, sheet and summary go (default: demo_out/)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the generated clip is cached (default: ~/.cache/edgerestore)",
    )
    parser.add_argument(
        "--max-frames", type=int, default=0, help="stop after N frames (default: the whole clip)"
    )
    parser.add_argument("--refresh-clip", action="store_true", help="generate the clip again even if cached")
    parser.add_argument(
        "--input",
        metavar="URI",
        default=None,
        help="run this input instead of the generated clip (file://clip.mp4, an image folder, a camera or "
        "stream URI); the sheet then shows the most confident frame of each condition the router chose",
    )
    parser.add_argument("--profile", default="uffn-tiny", help="model built when no --bundle is given")
    add_precision_argument(
        parser,
        "precision built when no --bundle is given (default fp32: INT8 is not yet faster on AVX2 CPUs)",
    )
    add_output_arguments(parser, window=False)
    add_bundle_arguments(
        parser,
        force=False,
        bundle_default=f"<engines>/<--profile>-onnxruntime-<--precision>, i.e. {default_bundle_path()}, "
        "built from weights/<--profile>.pt when missing or stale",
    )


def run(args: argparse.Namespace) -> int:
    from edgerestore.runtime.video import quiet_video_logs

    quiet_video_logs()
    if args.max_frames < 0:
        raise UserError("--max-frames must be ≥ 0")
    check_writable(args.out, "--out", folder=True)
    if args.bundle is None:
        # the embedded default: build (or reuse) the shipped model's ONNX Runtime bundle
        from edgerestore.pipeline import ensure_bundle

        built = ensure_bundle(
            args.profile,
            args.precision,
            "onnxruntime",
            progress=True,
            checkpoint_hint=" or pass --bundle DIR",
        )
        if built.ran:
            print(built.summary)
        bundle = built.bundle
    else:
        bundle = args.bundle
    clip = None if args.input else make_demo_clip(args.data_dir, refresh=args.refresh_clip)
    args.bundle = bundle
    restorer = open_restorer(args, video=True)
    print(f"bundle: {restorer_label(restorer)}", flush=True)
    try:
        run_demo(
            bundle,
            args.out,
            clip=clip,
            restorer=restorer,
            max_frames=args.max_frames,
            output_codec=args.output_codec,
            input_uri=args.input,
        )
    finally:
        restorer.close()
    return 0
