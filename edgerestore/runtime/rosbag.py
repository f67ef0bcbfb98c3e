"""ROS 2 recordings (MCAP) without a ROS installation: read image topics, restore them, write a new MCAP.

Reading and writing go through the `mcap` and `mcap-ros2-support` packages (extra `ros2`). Image messages are
`sensor_msgs/msg/Image` (the encodings in `RAW_ENCODINGS`) and `sensor_msgs/msg/CompressedImage` (jpeg, png).
Every other message, every schema, channel (with its metadata), attachment and metadata record is copied
byte for byte; so are image messages the restorer passed through unchanged (clean frames). A restored image
is re-encoded with its message's own layout (encoding, endianness, header; jpeg at quality 95, png) on the
same topic, or on `<topic>/restored` beside the original with `keep_original`. Every frame also gets one
`std_msgs/msg/String` on `CONDITION_TOPIC` at the frame's log time, whose `data` is JSON: `topic`,
`condition`, `confidence` (null where the router did not run), `restored`, `flags`.

The output is written under a temporary name beside it and renamed when complete, so a corrupt or
truncated input (or any error, or Ctrl-C) leaves no output file. Imports no torch.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgerestore.errors import UserError
from edgerestore.files import atomic_output

CONDITION_TOPIC = "/edgerestore/condition"
RESTORED_SUFFIX = "/restored"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/Image")
COMPRESSED_TYPES = ("sensor_msgs/msg/CompressedImage", "sensor_msgs/CompressedImage")
#: sensor_msgs/Image encoding -> (dtype, channels, channel order as stored). The restorer gets BGR / BGRA.
RAW_ENCODINGS: dict[str, tuple[type, int, str]] = {
    "mono8": (np.uint8, 1, "gray"),
    "8UC1": (np.uint8, 1, "gray"),
    "bgr8": (np.uint8, 3, "bgr"),
    "8UC3": (np.uint8, 3, "bgr"),
    "rgb8": (np.uint8, 3, "rgb"),
    "bgra8": (np.uint8, 4, "bgr"),
    "8UC4": (np.uint8, 4, "bgr"),
    "rgba8": (np.uint8, 4, "rgb"),
    "mono16": (np.uint16, 1, "gray"),
    "16UC1": (np.uint16, 1, "gray"),
    "bgr16": (np.uint16, 3, "bgr"),
    "16UC3": (np.uint16, 3, "bgr"),
    "rgb16": (np.uint16, 3, "rgb"),
    "bgra16": (np.uint16, 4, "bgr"),
    "16UC4": (np.uint16, 4, "bgr"),
    "rgba16": (np.uint16, 4, "rgb"),
}
JPEG_QUALITY = 95

# The ROS 2 message definitions as rosbag2 stores them (concatenated, dependencies after a === line).
_HEADER_DEF = "MSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n"
_SEPARATOR = "=" * 80 + "\n"
IMAGE_MSGDEF = (
    "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
    "uint32 step\nuint8[] data\n" + _SEPARATOR + _HEADER_DEF
)
COMPRESSED_IMAGE_MSGDEF = "std_msgs/Header header\nstring format\nuint8[] data\n" + _SEPARATOR + _HEADER_DEF
STRING_TYPE, STRING_MSGDEF = "std_msgs/msg/String", "string data\n"


def _mcap():
    """The mcap modules, or a one-line `UserError` saying how to install them."""
    try:
        import mcap.exceptions
        import mcap.reader
        import mcap.writer
        import mcap_ros2._dynamic
        import mcap_ros2.decoder
    except ImportError as exc:
        raise UserError(
            f"reading MCAP recordings needs the mcap packages ({exc.name} is missing): "
            "pip install 'edgerestore[ros2]'"
        ) from None
    return mcap, mcap_ros2


def kind_of_schema(name: str | None) -> str | None:
    """'raw' for sensor_msgs Image, 'compressed' for CompressedImage, else None."""
    return "raw" if name in IMAGE_TYPES else "compressed" if name in COMPRESSED_TYPES else None


# ---------------------------------------------------------------------------------------------------------
# Image messages <-> arrays
# ---------------------------------------------------------------------------------------------------------


def raw_to_array(msg: Any, where: str) -> np.ndarray:
    """A sensor_msgs/Image as the array the Restorer takes: HxW gray, or HxWx3 BGR / HxWx4 BGRA, uint8 or
    uint16 (native byte order); rows padded past `step`'s pixels are dropped."""
    spec = RAW_ENCODINGS.get(msg.encoding)
    if spec is None:
        raise UserError(
            f"{where}: image encoding {msg.encoding!r} is not supported; "
            f"supported: {', '.join(RAW_ENCODINGS)} (and CompressedImage jpeg/png)"
        )
    dtype, channels, order = spec
    item = np.dtype(dtype).itemsize
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = bytes(msg.data)
    if step < w * channels * item or len(data) < h * step:
        raise UserError(
            f"{where}: image of {h}x{w} {msg.encoding} with step {step} holds {len(data)} bytes; "
            "the message is malformed"
        )
    rows = np.frombuffer(data, np.uint8, count=h * step).reshape(h, step)[:, : w * channels * item]
    big = bool(msg.is_bigendian) and item > 1
    pixels = rows.copy().view(np.dtype(dtype).newbyteorder(">" if big else "<")).astype(dtype)
    image = pixels.reshape(h, w, channels) if channels > 1 else pixels.reshape(h, w)
    if order == "rgb":
        image = np.ascontiguousarray(image[:, :, [2, 1, 0, 3][:channels]])
    return image


def array_to_raw(image: np.ndarray, msg: Any) -> dict[str, Any]:
    """`msg` (a decoded sensor_msgs/Image) with `image` (as `raw_to_array` gave it) as its pixels, in the
    message's own encoding and byte order; the step becomes the packed row size."""
    dtype, channels, order = RAW_ENCODINGS[msg.encoding]
    if order == "rgb":
        image = image[:, :, [2, 1, 0, 3][:channels]]
    big = bool(msg.is_bigendian) and np.dtype(dtype).itemsize > 1
    pixels = np.ascontiguousarray(image, dtype=np.dtype(dtype).newbyteorder(">" if big else "<"))
    h, w = pixels.shape[:2]
    return {
        "header": msg.header,
        "height": h,
        "width": w,
        "encoding": msg.encoding,
        "is_bigendian": msg.is_bigendian,
        "step": w * channels * pixels.itemsize,
        "data": pixels.tobytes(),
    }


def _compressed_format(msg: Any) -> str:
    """'png' or 'jpeg' from the message's `format` (e.g. 'jpeg', 'bgr8; png compressed bgr8') or its bytes."""
    text = str(msg.format).lower()
    data = bytes(msg.data[:8])
    if "png" in text or data.startswith(b"\x89PNG"):
        return "png"
    if "jpeg" in text or "jpg" in text or data.startswith(b"\xff\xd8"):
        return "jpeg"
    return text or "unknown"


def compressed_to_array(msg: Any, where: str) -> np.ndarray:
    fmt = _compressed_format(msg)
    if fmt not in ("png", "jpeg"):
        raise UserError(f"{where}: CompressedImage format {msg.format!r} is not supported; use jpeg or png")
    image = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"{where}: the {fmt} image does not decode")
    return image


def array_to_compressed(image: np.ndarray, msg: Any) -> dict[str, Any]:
    fmt = _compressed_format(msg)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", image, params)
    if not ok:
        raise UserError(f"cannot encode the restored frame as {fmt}")
    return {"header": msg.header, "format": msg.format, "data": buf.tobytes()}


# ---------------------------------------------------------------------------------------------------------
# The restore pass
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TopicReport:
    topic: str
    kind: str  # "raw" | "compressed"
    output_topic: str
    frames: int = 0
    restored: int = 0
    conditions: dict[str, int] = field(default_factory=dict)


@dataclass
class BagReport:
    input: str
    output: str
    messages: int  # messages written, condition messages included
    copied: int  # messages copied unchanged
    topics: dict[str, TopicReport]
    ms_per_frame: float | None = None


@dataclass
class _ChannelInfo:
    topic: str
    schema: str | None
    kind: str | None


def _unreadable(path: Path, exc: BaseException) -> UserError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"{path}: not a readable MCAP recording (truncated or corrupt: {reason})")


def _reading(path: Path, records: Iterator[Any]) -> Iterator[Any]:
    """`records` (from an mcap reader), with anything the reader raises on a damaged file (McapError, a short
    read, a zstd/lz4 chunk that does not decompress, a bad seek) turned into one `UserError` line."""
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except UserError:
            raise
        except Exception as exc:
            raise _unreadable(path, exc) from None
        yield record


def _open_for_reading(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def _make_reader(path: Path, stream: Any) -> Any:
    mcap, _ = _mcap()
    try:
        return mcap.reader.make_reader(stream, validate_crcs=True)
    except Exception as exc:
        raise _unreadable(path, exc) from None


def list_channels(path: Path) -> tuple[dict[str, _ChannelInfo], dict[str, int]]:
    """{topic: channel info} and {topic: message count} of a recording (from its summary, or by reading it
    through when it has none). `UserError` for a file that is not a readable MCAP."""
    with _open_for_reading(path) as f:
        reader = _make_reader(path, f)
        try:
            summary = reader.get_summary()
        except Exception as exc:
            raise _unreadable(path, exc) from None
        channels: dict[str, _ChannelInfo] = {}
        counts: Counter[str] = Counter()
        if summary is not None and summary.channels:
            for cid, ch in summary.channels.items():
                schema = summary.schemas.get(ch.schema_id)
                name = schema.name if schema else None
                channels[ch.topic] = _ChannelInfo(ch.topic, name, kind_of_schema(name))
                if summary.statistics is not None:
                    counts[ch.topic] += summary.statistics.channel_message_counts.get(cid, 0)
        else:
            for schema, ch, _ in _reading(path, reader.iter_messages(log_time_order=False)):
                name = schema.name if schema else None
                channels.setdefault(ch.topic, _ChannelInfo(ch.topic, name, kind_of_schema(name)))
                counts[ch.topic] += 1
    return channels, dict(counts)


def select_topics(path: Path, channels: dict[str, _ChannelInfo], topics: list[str] | None) -> list[str]:
    """The image topics to restore: `topics` (each must be an image topic of the recording), or all."""
    images = sorted(t for t, c in channels.items() if c.kind)
    if not topics:
        if not images:
            listed = ", ".join(f"{t} ({c.schema})" for t, c in sorted(channels.items())) or "none"
            raise UserError(
                f"{path}: no sensor_msgs/msg/Image or CompressedImage topic to restore; its topics: {listed}"
            )
        return images
    for topic in topics:
        if topic not in channels:
            raise UserError(f"{path}: no topic {topic}; its image topics: {', '.join(images) or 'none'}")
        if not channels[topic].kind:
            raise UserError(
                f"{path}: topic {topic} carries {channels[topic].schema}, not sensor_msgs/msg/Image or "
                f"CompressedImage; its image topics: {', '.join(images) or 'none'}"
            )
    return list(dict.fromkeys(topics))


def restore_bag(
    src: Path,
    dst: Path,
    restorer_for: Callable[[str], Any],
    *,
    topics: list[str] | None = None,
    keep_original: bool = False,
    on_frame: Callable[[str, Any], None] | None = None,
) -> BagReport:
    """Restore the image `topics` (default: all) of the MCAP `src` into a new MCAP `dst` (see the module
    doc). `restorer_for(topic)` gives the restorer for a topic's frames (one per topic keeps each stream's
    smoothing its own); `on_frame(topic, result)` is called after each frame."""
    import time

    mcap, mcap_ros2 = _mcap()
    channels, _ = list_channels(src)
    chosen = select_topics(src, channels, topics)
    out_topic = {t: t + RESTORED_SUFFIX if keep_original else t for t in chosen}
    if keep_original:
        for o in out_topic.values():
            if o in channels:
                raise UserError(f"{src}: --keep-original would write {o}, which the recording already has")
    if CONDITION_TOPIC in channels:
        raise UserError(f"{src}: the recording already has a {CONDITION_TOPIC} topic (restored before?)")
    reports = {t: TopicReport(t, channels[t].kind or "", out_topic[t]) for t in chosen}
    decoders = mcap_ros2.decoder.DecoderFactory()
    encoders: dict[int, Any] = {}  # source schema id -> ROS 2 encoder
    messages = copied = 0
    infer_ms = 0.0
    with atomic_output(dst) as tmp:
        with _open_for_reading(src) as f_in, open(tmp, "xb") as f_out:
            reader = _make_reader(src, f_in)
            try:
                header = reader.get_header()
            except Exception as exc:
                raise _unreadable(src, exc) from None
            writer = mcap.writer.Writer(f_out)
            writer.start(profile=header.profile or "ros2", library=_library())
            schema_ids: dict[int, int] = {}
            channel_ids: dict[int, int] = {}
            restored_channel: dict[int, int] = {}

            def schema_id(schema: Any) -> int:
                if schema is None:
                    return 0
                if schema.id not in schema_ids:
                    schema_ids[schema.id] = writer.register_schema(schema.name, schema.encoding, schema.data)
                return schema_ids[schema.id]

            def channel_id(channel: Any, schema: Any, topic: str | None = None) -> int:
                table = channel_ids if topic is None else restored_channel
                if channel.id not in table:
                    table[channel.id] = writer.register_channel(
                        topic or channel.topic,
                        channel.message_encoding,
                        schema_id(schema),
                        dict(channel.metadata),
                    )
                return table[channel.id]

            string_schema = writer.register_schema(STRING_TYPE, "ros2msg", STRING_MSGDEF.encode())
            condition_channel = writer.register_channel(CONDITION_TOPIC, "cdr", string_schema)
            encode_string = mcap_ros2._dynamic.serialize_dynamic(STRING_TYPE, STRING_MSGDEF)[STRING_TYPE]

            def write(channel: int, message: Any, data: bytes | None = None) -> None:
                nonlocal messages
                writer.add_message(
                    channel,
                    message.log_time,
                    message.data if data is None else data,
                    message.publish_time,
                    message.sequence,
                )
                messages += 1

            frames = 0
            for schema, channel, message in _reading(src, reader.iter_messages(log_time_order=False)):
                report = reports.get(channel.topic)
                if report is None:  # not a chosen image topic: copied as it is
                    write(channel_id(channel, schema), message)
                    copied += 1
                    continue
                where = f"{src} {channel.topic} at log time {message.log_time}"
                msg = _decode(decoders, schema, channel, message, where)
                image = raw_to_array(msg, where) if report.kind == "raw" else compressed_to_array(msg, where)
                t0 = time.perf_counter()
                try:
                    result = restorer_for(channel.topic)(image)
                except UserError as exc:  # e.g. a frame too small or too large for the bundle
                    message = str(exc)
                    raise UserError(message if str(src) in message else f"{where}: {message}") from None
                infer_ms += (time.perf_counter() - t0) * 1e3
                report.frames += 1
                report.conditions[result.condition] = report.conditions.get(result.condition, 0) + 1
                report.restored += bool(result.restored)
                data = None  # a frame passed through keeps its bytes
                if result.restored:
                    if schema.id not in encoders:
                        encoders[schema.id] = mcap_ros2._dynamic.serialize_dynamic(
                            schema.name, schema.data.decode()
                        )[schema.name]
                    to_fields = array_to_raw if report.kind == "raw" else array_to_compressed
                    data = encoders[schema.id](to_fields(result.image, msg))
                if keep_original:
                    write(channel_id(channel, schema), message)
                    copied += 1
                    write(channel_id(channel, schema, out_topic[channel.topic]), message, data)
                else:
                    write(channel_id(channel, schema), message, data)
                    copied += data is None
                verdict = {
                    "topic": channel.topic,
                    "condition": result.condition,
                    "confidence": _finite(result.confidence),
                    "restored": bool(result.restored),
                    "flags": sorted(result.flags),
                }
                writer.add_message(
                    condition_channel,
                    message.log_time,
                    encode_string({"data": json.dumps(verdict)}),
                    message.publish_time,
                    frames,
                )
                messages += 1
                frames += 1
                if on_frame is not None:
                    on_frame(channel.topic, result)
            for attachment in _reading(src, reader.iter_attachments()):
                writer.add_attachment(
                    attachment.create_time,
                    attachment.log_time,
                    attachment.name,
                    attachment.media_type,
                    attachment.data,
                )
            for metadata in _reading(src, reader.iter_metadata()):
                writer.add_metadata(metadata.name, dict(metadata.metadata))
            writer.finish()
    frames = sum(r.frames for r in reports.values())
    return BagReport(
        str(src), str(dst), messages, copied, reports, round(infer_ms / frames, 3) if frames else None
    )


def _decode(decoders: Any, schema: Any, channel: Any, message: Any, where: str) -> Any:
    """The decoded ROS 2 message, or a one-line `UserError` (not CDR, a schema that does not parse, bytes that
    do not decode)."""
    try:
        decode = decoders.decoder_for(channel.message_encoding, schema)
        if decode is None:
            raise UserError(f"{where}: not a CDR-encoded ROS 2 message ({channel.message_encoding})")
        return decode(message.data)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{where}: the message does not decode as {schema.name} ({exc})") from None


def _finite(x: Any) -> float | None:
    return round(float(x), 4) if x is not None and math.isfinite(float(x)) else None


def _library() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"edgerestore {version('edgerestore')}; mcap {version('mcap')}"
    except PackageNotFoundError:
        return "edgerestore"
