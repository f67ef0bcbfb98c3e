"""Inputs and outputs named as URIs, the way jetson-inference and DeepStream users name them.

Inputs (`parse_input`):

    0, 1, …                  a camera index (OpenCV's default backend)
    v4l2:///dev/video0       a V4L2 camera by device path (also a bare /dev/video0); v4l2://0 by index
    csi://0                  a Jetson CSI camera: a GStreamer `nvarguscamerasrc sensor-id=0` pipeline
    gst://PIPELINE           any GStreamer pipeline ending in appsink (a bare `… ! appsink` works too)
    file://clip.mp4          a video file, image or image folder (a bare path works too)
    rtsp://…, http(s)://…    a network stream (also rtsps, rtmp, udp, tcp, srt)
    frames/, 'frames/*.png'  an image folder or a glob

Outputs (`parse_output`):

    file://out.mp4, out.mp4  a video file (.mp4 .avi .mkv .mov .webm)
    out/, file://out/        an image folder (one PNG per frame)
    display://0              a window

GStreamer sources need an OpenCV built with GStreamer; pip's `opencv-python` has none, so they fail with
one line naming what to install (`gstreamer_status`). Imports OpenCV only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import cv2

from edgerestore.errors import SourceError, UserError

STREAM_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
INPUT_SCHEMES: tuple[str, ...] = ("v4l2", "csi", "gst", "file", *STREAM_SCHEMES)
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm")
GSTREAMER_HINT = (
    "this OpenCV has no GStreamer (pip's opencv-python never has): on a Jetson use JetPack's OpenCV "
    "(`pip uninstall opencv-python`, then `sudo apt install python3-opencv`, in a venv made with "
    "--system-site-packages); elsewhere build OpenCV with -DWITH_GSTREAMER=ON"
)


class InputSpec(NamedTuple):
    """What an input URI names. `kind`: device | file | images | stream | gstreamer; `target`: what
    `cv2.VideoCapture` opens (index, path, URL or pipeline), or the image folder / glob / file for images;
    `api`: the OpenCV backend to use."""

    kind: str
    target: int | str
    api: int = cv2.CAP_ANY
    uri: str = ""


class OutputSpec(NamedTuple):
    """What an output URI names. `kind`: video | images | display; `target`: the path (display: index)."""

    kind: str
    target: str | int
    uri: str = ""


def gstreamer_status() -> tuple[bool, str]:
    """(OpenCV was built with GStreamer, a one-line explanation)."""
    found = re.findall(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    if found and found[0].upper() == "YES":
        return True, "OpenCV has GStreamer"
    return False, GSTREAMER_HINT


def csi_pipeline(sensor: int, width: int = 0, height: int = 0, fps: float = 0.0) -> str:
    """The `nvarguscamerasrc` pipeline for Jetson CSI camera `sensor` (NVMM → BGR for OpenCV's appsink)."""
    caps = ["video/x-raw(memory:NVMM)", f"width={width or 1280}", f"height={height or 720}"]
    caps.append(f"framerate={round(fps or 30)}/1")
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! {','.join(caps)} ! nvvidconv ! video/x-raw,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )


def _split(text: str) -> tuple[str, str]:
    if "://" not in text:
        return "", text
    scheme, rest = text.split("://", 1)
    return scheme.lower(), rest


def parse_input(text: str | int, *, width: int = 0, height: int = 0, fps: float = 0.0) -> InputSpec:
    """An `InputSpec` for an input URI or path (module docstring); `SourceError` for one that names nothing.
    `width`/`height`/`fps` shape the CSI pipeline (other sources get them when opened)."""
    uri = str(text).strip()
    scheme, rest = _split(uri)
    if not uri:
        raise SourceError(
            "empty input; give a camera index (0), a URI (v4l2:///dev/video0, csi://0, rtsp://…) or a path"
        )
    if scheme and scheme not in INPUT_SCHEMES:
        raise SourceError(
            f"unknown source {uri!r}: scheme {scheme!r} is not one of {', '.join(INPUT_SCHEMES)}"
        )
    if scheme in STREAM_SCHEMES:
        return InputSpec("stream", uri, cv2.CAP_FFMPEG, uri)
    if scheme == "csi":
        if not rest.isdigit():
            raise SourceError(f"input {uri!r}: a CSI camera is csi://N with N the sensor id (csi://0)")
        return InputSpec("gstreamer", csi_pipeline(int(rest), width, height, fps), cv2.CAP_GSTREAMER, uri)
    if scheme == "gst":
        if "appsink" not in rest:
            raise SourceError(f"input {uri!r}: a GStreamer pipeline must end in `! appsink`")
        return InputSpec("gstreamer", rest, cv2.CAP_GSTREAMER, uri)
    if scheme == "v4l2":
        target = rest
        if target.isdigit():
            return InputSpec("device", int(target), cv2.CAP_V4L2, uri)
        if not Path(target).exists():
            raise SourceError(f"camera {target} does not exist; list cameras with `v4l2-ctl --list-devices`")
        return InputSpec("device", target, cv2.CAP_V4L2, uri)
    if scheme == "file":
        rest = rest[len("localhost") :] if rest.startswith("localhost/") else rest
    if rest.isdigit() and not scheme:
        return InputSpec("device", int(rest), cv2.CAP_ANY, uri)
    if "!" in rest and not scheme:
        return InputSpec("gstreamer", rest, cv2.CAP_GSTREAMER, uri)
    if rest.startswith("/dev/video"):
        if not Path(rest).exists():
            raise SourceError(f"camera {rest} does not exist; list cameras with `v4l2-ctl --list-devices`")
        return InputSpec("device", rest, cv2.CAP_ANY, uri)
    path = Path(rest)
    if path.is_dir() or any(ch in rest for ch in "*?["):
        return InputSpec("images", rest, cv2.CAP_ANY, uri)
    if path.is_file():
        from edgerestore.imageio import is_image_file

        return InputSpec("images" if is_image_file(path) else "file", rest, cv2.CAP_FFMPEG, uri)
    raise SourceError(
        f"unknown source {uri!r}: not an existing file or folder, a glob, a camera index or a URI "
        f"({', '.join(s + '://' for s in INPUT_SCHEMES[:4])}, rtsp://, http://)"
    )


def parse_output(text: str) -> OutputSpec:
    """An `OutputSpec` for an output URI or path; `UserError` for one that names nothing."""
    uri = str(text).strip()
    scheme, rest = _split(uri)
    if scheme == "display":
        if rest and not rest.isdigit():
            raise UserError(f"output {uri!r}: a window is display://N (display://0)")
        return OutputSpec("display", int(rest or 0), uri)
    if scheme not in ("", "file"):
        raise UserError(
            f"unknown output {uri!r}: expected file://PATH, a folder, a video file or display://0"
        )
    if not rest:
        raise UserError("empty output; give a video file (out.mp4), a folder (out/) or display://0")
    suffix = Path(rest).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return OutputSpec("video", rest, uri)
    if rest.endswith("/") or not suffix or Path(rest).is_dir():
        return OutputSpec("images", rest.rstrip("/") or "/", uri)
    raise UserError(
        f"output {uri!r}: {suffix} is not a video container ({' '.join(VIDEO_SUFFIXES)}); "
        "for frames as images give a folder"
    )
