"""Input and output URIs (edgerestore/runtime/sources.py) and opening them (video.open_source)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgerestore.errors import SourceError, UserError
from edgerestore.runtime import video
from edgerestore.runtime.sources import csi_pipeline, gstreamer_status, parse_input, parse_output


def _clip(path, frames=5, size=(64, 48)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_input_uris_name_what_opencv_opens(tmp_path):
    clip = _clip(tmp_path / "clip.avi")
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames/a.png"), np.zeros((20, 20, 3), np.uint8))
    assert parse_input("0")[:2] == ("device", 0)
    assert parse_input("v4l2://1")[:3] == ("device", 1, cv2.CAP_V4L2)
    assert parse_input(f"file://{clip}")[:2] == ("file", str(clip))
    assert parse_input(str(clip))[:2] == ("file", str(clip))
    assert parse_input(f"file://{tmp_path}/frames")[:2] == ("images", f"{tmp_path}/frames")
    assert parse_input(f"{tmp_path}/frames/*.png").kind == "images"
    assert parse_input("rtsp://cam.local:554/stream")[:3] == (
        "stream",
        "rtsp://cam.local:554/stream",
        cv2.CAP_FFMPEG,
    )
    assert parse_input("https://example.com/live.m3u8").kind == "stream"
    csi = parse_input("csi://1", width=1920, height=1080, fps=60)
    assert csi.kind == "gstreamer" and csi.api == cv2.CAP_GSTREAMER
    assert csi.target == csi_pipeline(1, 1920, 1080, 60) and "nvarguscamerasrc sensor-id=1" in csi.target
    assert "width=1920,height=1080,framerate=60/1" in csi.target and csi.target.endswith("max-buffers=1")
    gst = parse_input("gst://videotestsrc ! videoconvert ! appsink")
    assert gst[:2] == ("gstreamer", "videotestsrc ! videoconvert ! appsink")
    assert parse_input("videotestsrc ! appsink").kind == "gstreamer"


@pytest.mark.parametrize(
    "uri, message",
    [
        ("ftp://host/x", "scheme 'ftp'"),
        ("csi://front", "csi://N with N the sensor id"),
        ("gst://videotestsrc", "must end in `! appsink`"),
        ("v4l2:///dev/video-none", "/dev/video-none does not exist"),
        ("nope.mp4", "unknown source 'nope.mp4'"),
        ("", "empty input"),
    ],
)
def test_input_uris_that_name_nothing_are_one_line_errors(uri, message):
    with pytest.raises(SourceError) as info:
        parse_input(uri)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_output_uris(tmp_path):
    assert parse_output("file://out.mp4")[:2] == ("video", "out.mp4")
    assert parse_output("out.mkv")[:2] == ("video", "out.mkv")
    assert parse_output("out/")[:2] == ("images", "out")
    assert parse_output("file://restored")[:2] == ("images", "restored")
    assert parse_output("display://0")[:2] == ("display", 0)
    assert parse_output("display://")[:2] == ("display", 0)
    for bad, message in (
        ("display://x", "display://N"),
        ("s3://b/k", "unknown output"),
        ("a.png", "not a video"),
    ):
        with pytest.raises(UserError, match=message):
            parse_output(bad)


def test_open_source_reads_file_uris_and_rejects_non_cameras_as_devices(tmp_path):
    clip = _clip(tmp_path / "clip.avi")
    src = video.open_source(source=f"file://{clip}")
    try:
        assert src.read().shape == (48, 64, 3)
    finally:
        src.close()
    with pytest.raises(SourceError, match="is not a camera"):
        video.open_source(device=f"file://{clip}")


def test_gstreamer_sources_without_gstreamer_say_what_to_install():
    ok, why = gstreamer_status()
    if ok:
        pytest.skip("this OpenCV has GStreamer")
    assert "pip's opencv-python never has" in why and "JetPack's OpenCV" in why
    for uri in ("csi://0", "gst://videotestsrc ! appsink"):
        with pytest.raises(SourceError) as info:
            video.open_source(device=uri)
        assert "\n" not in str(info.value) and "python3-opencv" in str(info.value)


def test_a_gstreamer_videotestsrc_pipeline_gives_frames():
    ok, why = gstreamer_status()
    if not ok:
        pytest.skip(f"no GStreamer in OpenCV: {why}")
    src = video.open_source(
        source="gst://videotestsrc num-buffers=5 ! video/x-raw,width=64,height=48 ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink"
    )
    try:
        assert src.read().shape == (48, 64, 3)
    finally:
        src.close()
