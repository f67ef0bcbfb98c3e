"""Reading and writing still images as OpenCV-style uint8 BGR arrays.

One reader for the whole project (datasets, evaluation, the CLI and the runtime's image-folder source), so
every image enters the pipeline converted by the same rules. Imports numpy and OpenCV only: never torch.

Conversion rules of `read_image` (the file is decoded with its stored bit depth and channels,
`cv2.IMREAD_UNCHANGED`, so EXIF orientation is *not* applied and paired files stay aligned):

* 8-bit: kept as is.
* 16-bit: scaled to the full 8-bit range, ``round(v * 255 / 65535)`` (not the top byte, which biases dark).
* 32-bit float (TIFF/EXR): taken as linear values in [0, 1], clipped, then ``round(v * 255)``.
* gray (1 channel): replicated into B, G, R.
* gray + alpha (2 channels) and BGRA (4 channels): the alpha channel is dropped and the colour values are
  kept as stored (no compositing: a restoration model must see the pixels the camera saw).
* anything else (unreadable, truncated, not an image, other depths): `UserError` naming the file.

`read_image_as_stored` skips these conversions (uint8/uint16 gray, BGR or BGRA as stored) for outputs that keep
the input's format (`edgerestore restore`); `write_image` refuses a layout its format cannot store (16-bit in
.jpg, alpha in .jpg, gray in .webp …) in one line instead of converting it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgerestore.errors import UserError
from edgerestore.files import write_bytes_atomic

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def is_image_file(path: str | Path) -> bool:
    """True for a regular file whose extension is one the project reads (case-insensitive)."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not path.name.startswith(".")


def to_bgr_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert a decoded array (any of the depths/channel counts in the module docstring) to uint8 BGR."""
    if image.dtype == np.uint8:
        out = image
    elif image.dtype == np.uint16:
        out = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        out = np.rint(np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise UserError(f"{name}: unsupported pixel type {image.dtype}; convert it to 8- or 16-bit PNG/JPEG")
    if out.ndim == 3 and out.shape[2] == 1:
        out = out[:, :, 0]
    if out.ndim == 2:
        return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    if out.ndim != 3:
        raise UserError(f"{name}: unsupported image shape {image.shape}; expected H×W or H×W×C")
    channels = out.shape[2]
    if channels == 2:
        return cv2.cvtColor(np.ascontiguousarray(out[:, :, 0]), cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return np.ascontiguousarray(out)
    if channels == 4:
        return np.ascontiguousarray(out[:, :, :3])
    raise UserError(f"{name}: unsupported channel count {channels}; expected 1, 2, 3 or 4")


def _imdecode_quietly(data: np.ndarray) -> tuple[np.ndarray | None, str]:
    """`cv2.imdecode` with libpng's own messages ("libpng error: IDAT: CRC error"), which it writes straight
    to file descriptor 2 before any of ours, caught: (image or None, libpng's first message or ""). Anything
    else written to the descriptor meanwhile (another thread) is passed on to stderr."""
    import os
    import sys
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (embedded interpreters): decode as is
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED), ""
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        lines = caught.read().decode(errors="replace").splitlines()
    ours = [ln for ln in lines if ln.startswith("libpng ")]
    others = [ln for ln in lines if not ln.startswith("libpng ")]
    if others:
        print("\n".join(others), file=sys.stderr)
    return image, (ours[0].split(":", 1)[-1].strip() if ours else "")


def _decode(path: Path) -> np.ndarray:
    """The file decoded as stored (`cv2.IMREAD_UNCHANGED`); `UserError` if unreadable."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise UserError(f"cannot read image {path}: {exc.strerror or exc}") from None
    said = ""
    if not data.size:
        image = None
    elif path.suffix.lower() == ".png":
        image, said = _imdecode_quietly(data)
    else:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        detail = f" (libpng: {said})" if said else ""
        raise UserError(
            f"cannot read image {path}: empty, truncated or not an image OpenCV can decode{detail} "
            f"(supported: {', '.join(IMAGE_EXTENSIONS)})"
        )
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 BGR H×W×3 (rules in the module docstring); `UserError` if unreadable."""
    path = Path(path)
    return to_bgr_uint8(_decode(path), str(path))


def jpeg_orientation(data: bytes | np.ndarray) -> int:
    """The EXIF orientation (1–8) of JPEG file bytes, 1 when absent or not a JPEG."""
    b = bytes(data[:65536]) if isinstance(data, np.ndarray) else bytes(data[:65536])
    if b[:2] != b"\xff\xd8":
        return 1
    pos = 2
    while pos + 4 <= len(b) and b[pos] == 0xFF:
        marker, size = b[pos + 1], int.from_bytes(b[pos + 2 : pos + 4], "big")
        if marker == 0xE1 and b[pos + 4 : pos + 10] == b"Exif\x00\x00":
            tiff = b[pos + 10 : pos + 2 + size]
            order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
            if order is None or len(tiff) < 8:
                return 1
            ifd = int.from_bytes(tiff[4:8], order)
            count = int.from_bytes(tiff[ifd : ifd + 2], order) if ifd + 2 <= len(tiff) else 0
            for i in range(count):
                entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
                if len(entry) == 12 and int.from_bytes(entry[:2], order) == 0x0112:
                    value = int.from_bytes(entry[8:10], order)
                    return value if 1 <= value <= 8 else 1
            return 1
        if marker in (0xDA, 0xD9):  # start of scan / end: no EXIF before the image data
            return 1
        pos += 2 + size
    return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """`image` turned upright for an EXIF orientation (what viewers and `cv2.imread` show)."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(image), -1)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def read_image_as_stored(path: str | Path, *, upright: bool = False) -> np.ndarray:
    """Read an image file with its stored bit depth and channels, for outputs that keep them (`restore`):
    uint8 or uint16, H×W gray, H×W×3 BGR or H×W×4 BGRA (OpenCV decodes gray + alpha as BGRA). Anything
    else (float, other channel counts) or an unreadable file: `UserError` naming the file. `upright`: turn
    a JPEG by its EXIF orientation (the output carries no EXIF, so it would show rotated otherwise)."""
    path = Path(path)
    image = _decode(path)
    if upright and path.suffix.lower() in (".jpg", ".jpeg"):
        try:
            with open(path, "rb") as f:
                head = f.read(65536)
        except OSError:
            head = b""
        image = np.ascontiguousarray(apply_orientation(image, jpeg_orientation(head)))
    if image.dtype not in (np.uint8, np.uint16):
        raise UserError(
            f"cannot restore {path}: {image.dtype} pixels are not supported; convert it to 8- or 16-bit"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != 2 and not (image.ndim == 3 and image.shape[2] in (3, 4)):
        raise UserError(
            f"cannot restore {path}: {image.shape[2] if image.ndim == 3 else image.ndim} channels are not "
            "supported; expected gray, BGR or BGRA"
        )
    return image


#: What each written format stores exactly: (pixel types, channel counts). OpenCV converts anything else
#: silently (16-bit to 8-bit, alpha dropped, gray to BGR), so `check_storable` refuses it instead.
_STORES: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    ".png": (("uint8", "uint16"), (1, 3, 4)),
    ".tif": (("uint8", "uint16"), (1, 3, 4)),
    ".tiff": (("uint8", "uint16"), (1, 3, 4)),
    ".jpg": (("uint8",), (1, 3)),
    ".jpeg": (("uint8",), (1, 3)),
    ".bmp": (("uint8",), (1, 3, 4)),
    ".webp": (("uint8",), (3, 4)),
}


def describe_layout(image: np.ndarray) -> str:
    """E.g. "16-bit gray", "8-bit BGRA"."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    bits = image.dtype.itemsize * 8
    return f"{bits}-bit {({1: 'gray', 3: 'BGR', 4: 'BGRA'}).get(channels, f'{channels}-channel')}"


def check_storable(path: str | Path, image: np.ndarray, hint: str = "use {fits}") -> None:
    """`UserError` unless `path`'s format stores `image`'s bit depth and channels as they are (`hint` ends
    the message; `{fits}` in it becomes the formats that would)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _STORES:
        return  # write_image refuses an extension it has no encoder for
    dtypes, channel_counts = _STORES[suffix]
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype.name not in dtypes or channels not in channel_counts:
        fits = [e for e, (d, c) in _STORES.items() if image.dtype.name in d and channels in c][:2]
        end = f"; {hint.format(fits=' or '.join(fits))}" if fits else ""
        raise UserError(f"cannot write {path}: {suffix} cannot store {describe_layout(image)} pixels{end}")


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write uint8 BGR or gray (uint16 and BGRA where the format stores them, see `check_storable`)
    atomically: encode to a temporary file beside `path`, then rename (`UserError` naming `path` if it cannot
    be written)."""
    path = Path(path)
    check_storable(path, image)
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", image)
    except cv2.error:  # OpenCV raises (not returns False) for an extension it has no encoder for
        ok = False
    if not ok:
        raise UserError(f"cannot encode {path.name}: unsupported extension {path.suffix!r}; use .png or .jpg")
    write_bytes_atomic(path, encoded.tobytes())
    return path
