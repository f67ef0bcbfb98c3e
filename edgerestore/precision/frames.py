"""Calibration and held-back frames: `Frame`, where frames come from, and the feeds each graph takes.

Frames come from an image folder (optionally with ground truth in `<folder>/gt/` under the same file names;
a file name starting with a condition, `rain_03.jpg`, labels the frame), a video, or synthetic weather on
the clean images scikit-image ships (`edgerestore.data.degrade`). The default set, package data under
`edgerestore/shipped/calibration/` (`edgerestore.assets`), is made by `make_default_set` (see its
README.md). `reference_feeds` turns frames into each graph's inputs (the router's thumbnail, the padded
frame, the float32 trunk's features for a branch) as the runtime makes them (`edgerestore.contract`).

Imports numpy, OpenCV, onnxruntime (and scikit-image only to make the default set); never torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgerestore import assets
from edgerestore.conditions import CONDITIONS
from edgerestore.contract import FEATURES, FRAME, THUMBNAIL, pad_to, router_thumbnail
from edgerestore.errors import UserError
from edgerestore.exportdir import ExportDir
from edgerestore.files import write_bytes_atomic
from edgerestore.graphs import ort_session

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
DEFAULT_SET = assets.calibration_dir()
SKIMAGE_IMAGES: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket")  # public domain / CC0


@dataclass
class Frame:
    """A held-back or calibration frame: uint8 BGR HWC, its clean target if known, its condition if known."""

    name: str
    image: np.ndarray
    target: np.ndarray | None = None
    condition: str | None = None


def _condition_of(name: str) -> str | None:
    head = Path(name).stem.lower().replace("-", "_").split("_")[0]
    return head if head in CONDITIONS else None


def _fit(image: np.ndarray, long_side: int | None) -> np.ndarray:
    import cv2

    if not long_side or max(image.shape[:2]) <= long_side:
        return image
    scale = long_side / max(image.shape[:2])
    size = (max(2, round(image.shape[1] * scale)), max(2, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def frames_from_folder(folder: Path, limit: int | None = None, long_side: int | None = None) -> list[Frame]:
    from edgerestore.imageio import is_image_file, read_image

    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise UserError(f"no images in {folder}; give a folder of .jpg/.png frames, a video, or 'synthetic'")
    if limit:
        files = files[:limit]
    gt_dir = folder / "gt"
    frames = []
    for path in files:
        target = read_image(gt_dir / path.name) if (gt_dir / path.name).is_file() else None
        image = read_image(path)
        if target is not None and target.shape != image.shape:
            raise UserError(
                f"ground truth {gt_dir / path.name} is {target.shape[:2]}, frame is {image.shape[:2]}"
            )
        frames.append(
            Frame(
                path.name,
                _fit(image, long_side),
                None if target is None else _fit(target, long_side),
                _condition_of(path.name),
            )
        )
    return frames


def frames_from_video(path: Path, limit: int = 24, long_side: int | None = None) -> list[Frame]:
    """Up to `limit` frames spread evenly over the video."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"cannot open video {path}; is it a video file OpenCV can decode?")
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or limit
        wanted = set(
            np.linspace(0, max(total - 1, 0), num=min(limit, max(total, 1))).round().astype(int).tolist()
        )
        frames, index = [], 0
        while len(frames) < len(wanted):
            ok, image = capture.read()
            if not ok:
                break
            if index in wanted:
                frames.append(Frame(f"{path.stem}_{index:06d}", _fit(image, long_side)))
            index += 1
    finally:
        capture.release()
    if not frames:
        raise UserError(f"video {path} gave no frames")
    return frames


def clean_images() -> list[tuple[str, np.ndarray]]:
    """Colour photographs that scikit-image ships in its wheel (no download), as uint8 BGR."""
    from skimage import data

    out = []
    for name in SKIMAGE_IMAGES:
        rgb = getattr(data, name)()
        out.append((name, np.ascontiguousarray(rgb[..., :3][..., ::-1])))
    return out


def _degrader():
    try:
        module = importlib.import_module("edgerestore.data.degrade")
    except ImportError:
        module = None
    fn = getattr(module, "degrade_uint8_bgr", None)
    if fn is None:
        raise UserError(
            "synthetic weather needs edgerestore.data.degrade.degrade_uint8_bgr; give a folder or video"
        )
    return fn


def synthetic_frames(count: int = 20, size: tuple[int, int] = (360, 640), seed: int = 0) -> list[Frame]:
    """`count` paired frames: crops of the clean images at `size` (H, W), each degraded by one condition
    in turn (rain, haze, raindrop, snow, and a clean frame every fifth), with the clean crop as ground truth."""
    import cv2

    degrade = _degrader()
    rng = np.random.default_rng(seed)
    sources = clean_images()
    h, w = size
    frames = []
    for i in range(count):
        name, image = sources[
            (i % len(CONDITIONS) + i // len(CONDITIONS)) % len(sources)
        ]  # conditions × images
        scale = max(h / image.shape[0], w / image.shape[1]) * rng.uniform(1.0, 1.6)
        big = cv2.resize(
            image,
            (round(image.shape[1] * scale) + 1, round(image.shape[0] * scale) + 1),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
        )
        y = int(rng.integers(0, big.shape[0] - h + 1))
        x = int(rng.integers(0, big.shape[1] - w + 1))
        clean = np.ascontiguousarray(big[y : y + h, x : x + w])
        condition = CONDITIONS[i % len(CONDITIONS)]
        image_out = clean.copy() if condition == "clean" else degrade(clean, condition, seed + i)
        frames.append(
            Frame(f"{condition}_{i:02d}_{name}.jpg", np.asarray(image_out, np.uint8), clean, condition)
        )
    return frames


def make_default_set(
    out_dir: str | Path, count: int = 20, size: tuple[int, int] = (360, 640), seed: int = 0, quality: int = 80
) -> list[Path]:
    """Write the committed default calibration set: <out>/<condition>_<i>_<image>.jpg and <out>/gt/ same names."""
    import cv2

    out_dir = Path(out_dir)
    (out_dir / "gt").mkdir(parents=True, exist_ok=True)
    written = []
    for frame in synthetic_frames(count, size, seed):
        for folder, image in ((out_dir, frame.image), (out_dir / "gt", frame.target)):
            path = folder / frame.name
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError(f"could not encode {path}")
            written.append(write_bytes_atomic(path, data.tobytes()))
    return written


def default_calibration_set(option: str = "--frames") -> Path:
    """The default calibration frames (`DEFAULT_SET`, package data found by `edgerestore.assets`, so an
    installed wheel has them as well as a checkout); `UserError` naming the calling command's own frames
    `option` (`calibrate --frames`, `build --calib`) when they are missing."""
    folder = DEFAULT_SET
    if not folder.is_dir() or not any(folder.glob("*.jpg")):
        raise UserError(
            f"the default calibration set {folder} is missing from this install; give {option} DIR|VIDEO|synthetic"
        )
    return folder


def load_frames(
    source: str | Path | None,
    limit: int | None = None,
    long_side: int | None = None,
    seed: int = 0,
    option: str = "--frames",
) -> list[Frame]:
    """Frames from a folder, a video, `synthetic[:N]`, or (None) the committed default set; `option` is the
    command's option for them, named in errors."""
    if source is None:
        return frames_from_folder(default_calibration_set(option), limit, long_side)
    text = str(source)
    if text == "synthetic" or text.startswith("synthetic:"):
        count_text = text.split(":", 1)[1] if ":" in text else str(limit or 20)
        if not count_text.isdigit() or int(count_text) < 1:
            raise UserError(
                f"{option} {text!r}: the frame count after 'synthetic:' must be a positive integer"
            )
        count = int(count_text)
        return [
            Frame(f.name, _fit(f.image, long_side), _fit(f.target, long_side), f.condition)
            for f in synthetic_frames(count, seed=seed)
        ]
    path = Path(source)
    if path.is_dir():
        return frames_from_folder(path, limit, long_side)
    if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
        return frames_from_video(path, limit or 24, long_side)
    raise UserError(
        f"calibration source {path} is not a folder, a video ({', '.join(VIDEO_EXTENSIONS)}) or 'synthetic'"
    )


def split_holdout(frames: list[Frame], holdout: int) -> tuple[list[Frame], list[Frame]]:
    """(calibration frames, held-back frames): `holdout` frames spread evenly, never used for ranges."""
    if holdout <= 0:
        return frames, []
    if holdout >= len(frames):
        raise UserError(f"--holdout {holdout} leaves no calibration frames out of {len(frames)}")
    held_idx = set(np.linspace(len(frames) - 1, 0, num=holdout).round().astype(int).tolist())
    while len(held_idx) < holdout:  # rounding collisions on tiny sets
        held_idx.add(next(i for i in range(len(frames)) if i not in held_idx))
    return (
        [f for i, f in enumerate(frames) if i not in held_idx],
        [f for i, f in enumerate(frames) if i in held_idx],
    )


def guard_split(frames: list[Frame]) -> tuple[list[Frame], list[Frame]]:
    """(calibration frames, held-back frames) as the precision step splits a calibration set: a quarter (at
    least 2) held back for the accuracy guard. A TensorRT build's device guard holds back the same frames."""
    return split_holdout(frames, max(2, len(frames) // 4))


def bright_frame(frames: list[Frame]) -> Frame:
    """A saturated white frame as large as the largest given one: the worst case for FP16 overflow."""
    h = max((f.image.shape[0] for f in frames), default=360)
    w = max((f.image.shape[1] for f in frames), default=640)
    return Frame("bright", np.full((h, w, 3), 255, np.uint8))


def reference_feeds(export: ExportDir, frames: list[Frame]) -> Callable[[str], list[dict]]:
    """feeds_for(graph) → that graph's input feeds for each frame (branch features from the float32 trunk)."""
    meta = export.meta
    stride = int(meta["stride"])
    padded = [pad_to(f.image, stride)[None] for f in frames]
    cache: dict[str, list[dict]] = {}

    def feeds_for(name: str) -> list[dict]:
        if name in cache:
            return cache[name]
        if name == "router":
            size = int(meta["thumbnail_size"])
            feeds = [{THUMBNAIL: router_thumbnail(f.image, size)[None]} for f in frames]
        elif name.startswith("branch_"):
            if FEATURES not in cache:
                trunk = ort_session(export.graph_path("trunk"))
                cache[FEATURES] = [{FEATURES: trunk.run(None, {FRAME: p})[0]} for p in padded]
            feeds = [{FRAME: p, **x} for p, x in zip(padded, cache[FEATURES])]
        else:
            feeds = [{FRAME: p} for p in padded]
        cache[name] = feeds
        return feeds

    return feeds_for
