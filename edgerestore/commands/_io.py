"""The input/output options every frame tool shares (`camera`, `restore`, `demo`): one name per thing.

    --size WxH            frames are scaled to this before the model (a camera is asked for it too)
    --rate FPS            a camera's capture rate; a file's or image folder's playback rate
    --input-codec CODE    a camera's pixel format (MJPG for 30 FPS at 720p on most USB cameras)
    --loop                restart a file or image folder at its end
    --output-codec CODE   the codec of written videos (mp4v, avc1, MJPG, XVID, VP80 …)
    --headless            no window

The older per-command spellings (`--resize`, `--fps`, `--capture-fourcc`, `--record-fourcc`, `--fourcc`) are
accepted as aliases. Inputs and outputs themselves are URIs (`edgerestore.runtime.sources`). No heavy imports.
"""

from __future__ import annotations

import argparse

INPUT_GROUP = "input"
OUTPUT_GROUP = "output"


def parse_size(text: str) -> tuple[int, int]:
    """`WxH` → (w, h), both ≥ 16; argparse reports a bad value in one line."""
    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 640x360") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be at least 16")
    return w, h


def _codec(text: str) -> str:
    if len(text) != 4 or not text.isascii() or not text.isprintable():
        raise argparse.ArgumentTypeError(f"{text!r} is not a four-character code (FourCC), e.g. MJPG or mp4v")
    return text


def _renamed(group: argparse._ArgumentGroup, name: str, *old_names: str, **options) -> None:
    """An option `name` (no default) that still answers to its `old_names`; its value lands under `name`."""
    group.add_argument(name, *old_names, dest=name.lstrip("-").replace("-", "_"), default=None, **options)


def add_input_arguments(parser: argparse.ArgumentParser, *, live: bool = True) -> argparse._ArgumentGroup:
    """`--size`, and for live sources (`live`) `--rate`, `--input-codec` and `--loop`."""
    group = parser.add_argument_group(INPUT_GROUP)
    _renamed(
        group,
        "--size",
        "--resize",
        type=parse_size,
        metavar="WxH",
        help="scale every frame to this size before the model"
        + ("; a camera is asked for it" if live else ""),
    )
    if live:
        _renamed(
            group,
            "--rate",
            "--fps",
            type=float,
            metavar="FPS",
            help="camera: capture rate to request; file/images: playback rate (default: the file's own, "
            "images 10; 0 = as fast as decoded)",
        )
        _renamed(
            group,
            "--input-codec",
            "--capture-fourcc",
            type=_codec,
            metavar="CODE",
            help="camera pixel format, e.g. MJPG for 30 FPS at 720p on USB cameras",
        )
        group.add_argument("--loop", action="store_true", help="restart a file or image folder at its end")
    return group


def add_output_arguments(parser: argparse.ArgumentParser, *, window: bool = True) -> argparse._ArgumentGroup:
    """`--output-codec`, and where a tool can show a window (`window`) `--headless`."""
    group = parser.add_argument_group(OUTPUT_GROUP)
    _renamed(
        group,
        "--output-codec",
        "--record-fourcc",
        "--fourcc",
        type=_codec,
        metavar="CODE",
        help="codec of written videos, e.g. mp4v, avc1, MJPG (default: the first one this OpenCV can write "
        "for the container: mp4v for .mp4, MJPG for .avi)",
    )
    if window:
        group.add_argument(
            "--headless", action="store_true", help="no window; print a status line each second"
        )
    return group
