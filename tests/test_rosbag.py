"""ROS 2 recordings: `edgerestore restore X.mcap` writes a new MCAP with restored images, every other message
and timestamp unchanged, and the router's verdict per frame; the recordings are written and read back with
the same `mcap` / `mcap-ros2-support` packages, no ROS installation."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("mcap_ros2.writer")

from mcap.reader import make_reader  # noqa: E402
from mcap_ros2.decoder import DecoderFactory  # noqa: E402
from mcap_ros2.writer import Writer  # noqa: E402

from edgerestore.cli import main  # noqa: E402
from edgerestore.runtime import rosbag  # noqa: E402
from edgerestore.runtime.restorer import Restorer  # noqa: E402
from edgerestore.testing import PROTOTYPES, write_bundle  # noqa: E402

# per frame: the scene colour of the raw (rgb8) camera and of the compressed (png) one
FRONT = ["clean", "clean", "rain", "rain", "rain", "rain", "haze"]
REAR = ["haze", "haze", "haze", "clean", "clean", "clean", "clean"]
T0 = 1_700_000_000_000_000_000


def _scene(condition: str, seed: int, shape=(36, 44)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array(PROTOTYPES[condition], np.int16)
    noise = rng.integers(-6, 7, (*shape, 3), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)  # BGR


def _header(i: int) -> dict:
    return {"stamp": {"sec": 1_700_000_000, "nanosec": i * 1000}, "frame_id": f"cam{i}"}


def write_recording(path: Path) -> dict[str, list[np.ndarray]]:
    """Two image topics (rgb8 Image, png CompressedImage) and one String topic, interleaved; returns the
    BGR frames written per image topic."""
    frames: dict[str, list[np.ndarray]] = {"/cam/front/image_raw": [], "/cam/rear/compressed": []}
    with open(path, "wb") as f, Writer(f) as w:
        image = w.register_msgdef("sensor_msgs/msg/Image", rosbag.IMAGE_MSGDEF)
        compressed = w.register_msgdef("sensor_msgs/msg/CompressedImage", rosbag.COMPRESSED_IMAGE_MSGDEF)
        string = w.register_msgdef("std_msgs/msg/String", "string data\n")
        for i, (front, rear) in enumerate(zip(FRONT, REAR)):
            t = T0 + i * 100_000_000
            bgr = _scene(front, i)
            h, wd = bgr.shape[:2]
            raw = {"header": _header(i), "height": h, "width": wd, "encoding": "rgb8", "is_bigendian": 0}
            raw |= {"step": wd * 3, "data": bgr[:, :, ::-1].tobytes()}
            w.write_message("/cam/front/image_raw", image, raw, log_time=t, publish_time=t - 5, sequence=i)
            frames["/cam/front/image_raw"].append(bgr)
            png = _scene(rear, 100 + i, (30, 40))
            msg = {"header": _header(i), "format": "png", "data": cv2.imencode(".png", png)[1].tobytes()}
            w.write_message("/cam/rear/compressed", compressed, msg, log_time=t + 7, publish_time=t + 3)
            frames["/cam/rear/compressed"].append(png)
            w.write_message("/chatter", string, {"data": f"tick {i}"}, log_time=t + 11, publish_time=t + 11)
    return frames


def read_recording(path: Path) -> list[tuple[str, int, int, int, bytes, object]]:
    """(topic, log_time, publish_time, sequence, raw bytes, decoded message) per message, in file order."""
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        return [
            (c.topic, m.log_time, m.publish_time, m.sequence, m.data, d)
            for _, c, m, d in reader.iter_decoded_messages(log_time_order=False)
        ]


def _image(topic: str, msg) -> np.ndarray:
    where = topic
    return (
        rosbag.compressed_to_array(msg, where) if "compressed" in topic else rosbag.raw_to_array(msg, where)
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("bundle") / "b")


def _expected(bundle: Path, frames: list[np.ndarray]):
    with Restorer.open(bundle, threads=1, video=True) as r:
        return [r(f) for f in frames]


def test_restored_recording_keeps_every_message_and_changes_only_routed_frames(tmp_path, bundle, capsys):
    src, dst = tmp_path / "drive.mcap", tmp_path / "out" / "restored.mcap"
    frames = write_recording(src)
    rc = main(["restore", str(src), "--out", str(dst), "--bundle", str(bundle), "--threads", "1", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "restored.mcap" in out, out
    before, after = read_recording(src), read_recording(dst)
    verdicts = [json.loads(d.data) for t, *_, d in after if t == rosbag.CONDITION_TOPIC]
    after_msgs = [m for m in after if m[0] != rosbag.CONDITION_TOPIC]
    # same messages, topics, timestamps and sequence numbers; non-image messages byte for byte
    assert [m[:4] for m in after_msgs] == [m[:4] for m in before]
    for b, a in zip(before, after_msgs):
        if b[0] == "/chatter":
            assert a[4] == b[4]
    # one verdict per frame, at the frame's log time, and each image matches the in-process Restorer
    assert len(verdicts) == 2 * len(FRONT)
    cond_times = [lt for t, lt, *_ in after if t == rosbag.CONDITION_TOPIC]
    frame_times = [lt for t, lt, *_ in before if t != "/chatter"]
    assert cond_times == frame_times
    for topic, raw_frames in frames.items():
        expected = _expected(bundle, raw_frames)
        got = [(a, b) for a, b in zip(after_msgs, before) if a[0] == topic]
        mine = [v for v in verdicts if v["topic"] == topic]
        assert [v["condition"] for v in mine] == [e.condition for e in expected]
        for (a, b), e, v in zip(got, expected, mine):
            assert v["restored"] == e.restored
            if e.restored:
                assert np.array_equal(_image(topic, a[5]), e.image)
                assert a[5].header.frame_id == b[5].header.frame_id
            else:
                assert a[4] == b[4], "a frame the router passed through keeps its bytes"
    # the scenes: the front camera turns to rain (smoothed over 3 frames), the rear one is hazy, then clean
    front = [v["condition"] for v in verdicts if v["topic"] == "/cam/front/image_raw"]
    assert front[:2] == ["clean", "clean"] and front[4:6] == ["rain", "rain"]
    assert any(v["restored"] for v in verdicts) and not all(v["restored"] for v in verdicts)


def test_keep_original_and_one_topic(tmp_path, bundle, capsys):
    src, dst = tmp_path / "drive.mcap", tmp_path / "kept.mcap"
    write_recording(src)
    topic = "/cam/rear/compressed"
    args = ["restore", str(src), "--out", str(dst), "--bundle", str(bundle), "--quiet", "--topic", topic]
    assert main([*args, "--keep-original"]) == 0, capsys.readouterr().err
    before, after = read_recording(src), read_recording(dst)
    originals = [m for m in after if m[0] not in (rosbag.CONDITION_TOPIC, topic + "/restored")]
    assert [m[:5] for m in originals] == [m[:5] for m in before], "every original message unchanged"
    restored = [m for m in after if m[0] == topic + "/restored"]
    assert [m[1] for m in restored] == [m[1] for m in before if m[0] == topic]
    verdicts = [json.loads(d.data) for t, *_, d in after if t == rosbag.CONDITION_TOPIC]
    assert {v["topic"] for v in verdicts} == {topic} and len(verdicts) == len(REAR)
    assert [v["condition"] for v in verdicts][:3] == ["haze"] * 3


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "not_mcap"])
def test_damaged_recording_is_one_line_and_leaves_no_output(tmp_path, bundle, capsys, damage):
    src = tmp_path / "drive.mcap"
    write_recording(src)
    data = src.read_bytes()
    if damage == "truncated":
        src.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "corrupt":
        middle = bytearray(data)
        middle[len(data) // 3 : len(data) // 3 + 64] = bytes(64)
        src.write_bytes(bytes(middle))
    else:
        src.write_bytes(b"not a recording\n" * 20)
    out = tmp_path / "out"
    rc = main(["restore", str(src), "--out", str(out / "r.mcap"), "--bundle", str(bundle), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "not a readable MCAP recording" in err
    assert not out.exists() or not any(out.iterdir()), "no output, not even a temporary file"


def test_topic_errors_are_one_line(tmp_path, bundle, capsys):
    src = tmp_path / "drive.mcap"
    write_recording(src)
    base = ["restore", str(src), "--out", str(tmp_path / "r.mcap"), "--bundle", str(bundle), "--quiet"]
    assert main([*base, "--topic", "/nope"]) == 2
    assert (
        "no topic /nope; its image topics: /cam/front/image_raw, /cam/rear/compressed"
        in capsys.readouterr().err
    )
    assert main([*base, "--topic", "/chatter"]) == 2
    assert "carries std_msgs/msg/String" in capsys.readouterr().err
    assert main(["restore", str(src), "x.png", "--out", str(tmp_path / "o")]) == 2
    assert "separately" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("x")
    assert (
        main(["restore", str(src), "--out", str(tmp_path / "a_file" / "r.mcap"), "--bundle", str(bundle)])
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot write" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.mcap").exists()


@pytest.mark.parametrize(
    ("encoding", "dtype", "channels", "big"),
    [
        ("mono8", np.uint8, 1, 0),
        ("bgr8", np.uint8, 3, 0),
        ("rgba8", np.uint8, 4, 0),
        ("mono16", np.uint16, 1, 1),
        ("rgb16", np.uint16, 3, 0),
        ("16UC1", np.uint16, 1, 0),
    ],
)
def test_raw_encodings_round_trip(encoding, dtype, channels, big):
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    stored = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    row = stored.reshape(5, -1).astype(np.dtype(dtype).newbyteorder(">" if big else "<")).view(np.uint8)
    padded = np.concatenate([row, np.full((5, 3), 9, np.uint8)], axis=1)  # a step with 3 bytes of padding
    msg = SimpleNamespace(
        header=None, height=5, width=7, encoding=encoding, is_bigendian=big, step=padded.shape[1]
    )
    msg.data = padded.tobytes()
    image = rosbag.raw_to_array(msg, "t")
    order = [2, 1, 0, 3][:channels] if encoding.startswith("rgb") else list(range(channels))
    assert image.dtype == dtype and np.array_equal(image, stored if channels == 1 else stored[:, :, order])
    fields = rosbag.array_to_raw(image, msg)
    assert fields["step"] == 7 * channels * np.dtype(dtype).itemsize
    assert fields["data"] == row.tobytes()
    msg.encoding = "bayer_rggb8"
    with pytest.raises(rosbag.UserError, match="bayer_rggb8.*not supported"):
        rosbag.raw_to_array(msg, "t")


def test_a_frame_the_bundle_refuses_names_topic_and_time(tmp_path, bundle, capsys):
    src = tmp_path / "tiny.mcap"
    with open(src, "wb") as f, Writer(f) as w:
        schema = w.register_msgdef("sensor_msgs/msg/Image", rosbag.IMAGE_MSGDEF)
        msg = {"header": _header(0), "height": 8, "width": 8, "encoding": "mono8", "is_bigendian": 0}
        w.write_message("/cam/small", schema, msg | {"step": 8, "data": bytes(64)}, log_time=T0)
    assert (
        main(["restore", str(src), "--out", str(tmp_path / "o.mcap"), "--bundle", str(bundle), "--quiet"])
        == 2
    )
    err = capsys.readouterr().err
    assert f"/cam/small at log time {T0}: frame of 8x8 is too small" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.mcap").exists() and not list(tmp_path.glob(".o.mcap*"))


def test_jpeg_compressed_image_is_restored_as_jpeg(tmp_path, bundle, capsys):
    src, dst = tmp_path / "j.mcap", tmp_path / "j_out.mcap"
    scene = _scene("snow", 3)
    with open(src, "wb") as f, Writer(f) as w:
        schema = w.register_msgdef("sensor_msgs/msg/CompressedImage", rosbag.COMPRESSED_IMAGE_MSGDEF)
        data = cv2.imencode(".jpg", scene)[1].tobytes()
        w.write_message("/cam/c", schema, {"header": _header(0), "format": "jpeg", "data": data}, log_time=T0)
    assert main(["restore", str(src), "--out", str(dst), "--bundle", str(bundle), "--quiet"]) == 0
    (topic, *_, raw, msg), verdict = read_recording(dst)[:2]
    assert msg.format == "jpeg" and bytes(msg.data[:2]) == b"\xff\xd8"
    assert json.loads(verdict[-1].data)["condition"] == "snow"
    restored = rosbag.compressed_to_array(msg, topic)
    assert restored.shape == scene.shape and restored.mean() > scene.mean() + 30, "snow branch adds 40"
