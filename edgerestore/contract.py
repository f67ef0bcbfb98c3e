"""The graph contract shared by training, export, precision, the builders and the runtime: what a frame must
be (`MIN_SIDE`), how it is padded to a graph's stride (`pad_to`), the router's input (`router_thumbnail`),
the size a reduced-resolution branch runs at (`reduced_size`, `guided_coefficients`), the graphs' tensor
names and how a graph's tensors are described (`tensor_specs`), and the precision vocabulary: what
`--precision` and a manifest say (`PRECISIONS`), the variant folders beside the float32 graphs (`VARIANTS`,
`variant_for`), their fallback ladders (`LADDERS`) and what each rung is called in a manifest
(`precision_of`). One definition each, no torch (numpy + OpenCV; onnx inside `tensor_specs`), so the model
is trained, checked, built and run on exactly the same inputs (DESIGN.md, *Contracts*)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from edgerestore.errors import UserError

#: No side of a frame the runtime accepts is smaller than this (in pixels).
MIN_SIDE = 16

# ----------------------------------------------------------------------------------------------------------
# tensors (DESIGN.md, *ONNX graphs*)

#: The router's input (uint8 [1,S,S,3]) and output (float32 [1,5], softmax inside).
THUMBNAIL, PROBS = "thumbnail", "probs"
#: A frame in (uint8 [1,H,W,3]), the trunk's features (float [1,F,H/2,W/2]), a restored frame out.
FRAME, FEATURES, RESTORED = "frame", "features", "restored"


def tensor_specs(model: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """([{name, dtype, shape}] of an ONNX graph's inputs (initializers left out), the same of its outputs):
    dtype as numpy names it (`uint8`, `float32`, `float16`), dynamic dims as their names. The form of
    model.json's and a manifest's `inputs` / `outputs`."""
    from onnx import helper

    def spec(value: Any) -> dict[str, Any]:
        tensor = value.type.tensor_type
        return {
            "name": value.name,
            "dtype": helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
            "shape": [d.dim_param if d.dim_param else int(d.dim_value) for d in tensor.shape.dim],
        }

    inits = {i.name for i in model.graph.initializer}
    return [spec(v) for v in model.graph.input if v.name not in inits], [spec(v) for v in model.graph.output]


# ----------------------------------------------------------------------------------------------------------
# precision (DESIGN.md, *Precision lives in the ONNX graph*)

#: What `--precision` asks for and what a bundle's manifest records, per bundle and per graph.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
#: The precision variants written beside the float32 graphs (`export/<profile>/<variant>/`): float16, and
#: INT8 in two Q/DQ forms — symmetric for TensorRT, ONNX Runtime's CPU form.
VARIANTS: tuple[str, ...] = ("fp16", "int8_trt", "int8_ort")
#: The rungs a graph of each variant falls back along when it misses its accuracy budget ("fp32": the
#: exported graph itself).
LADDERS: dict[str, tuple[str, ...]] = {
    "fp16": ("fp16", "fp32"),
    "int8_trt": ("int8_trt", "fp16", "fp32"),
    "int8_ort": ("int8_ort", "fp32"),
}
#: The precision a manifest records for each rung (and for the older spellings precision.json may hold).
_RUNG_PRECISION = {
    **{p: p for p in PRECISIONS},
    "int8_trt": "int8",
    "int8_ort": "int8",
    "float32": "fp32",
    "float16": "fp16",
}


def check_precision(precision: str) -> str:
    """`precision` when it is one of `PRECISIONS`; else a one-line `UserError` naming them."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    return precision


def variant_for(backend: str, precision: str) -> str | None:
    """Which variant folder feeds a `backend` bundle of `precision`: None for fp32 (the exported graphs
    themselves), `fp16`, or for int8 `int8_trt` on TensorRT and `int8_ort` on ONNX Runtime. The one check of
    a requested precision (`check_precision`: an unknown one is a one-line `UserError`): `ensure_bundle`
    and `build_bundle` map it here before any work, so `--precision` is checked by argparse's choices and
    here, nowhere else."""
    check_precision(precision)
    if precision == "fp32":
        return None
    if precision == "fp16":
        return "fp16"
    return "int8_trt" if backend == "tensorrt" else "int8_ort"


def precision_of(rung: str) -> str | None:
    """The manifest's precision for a ladder rung (`int8_trt` → `int8`), or None for an unknown name."""
    return _RUNG_PRECISION.get(str(rung).lower())


# ----------------------------------------------------------------------------------------------------------
# frames: padding, the router's thumbnail, reduced-resolution branches


def pad_to(frame: np.ndarray, stride: int, min_hw: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Pad bottom/right by reflection so H, W are multiples of `stride` and at least `min_hw`."""
    h, w = frame.shape[:2]
    hp = max(-(-h // stride) * stride, -(-min_hw[0] // stride) * stride)
    wp = max(-(-w // stride) * stride, -(-min_hw[1] // stride) * stride)
    if (hp, wp) == (h, w):
        return frame
    return cv2.copyMakeBorder(frame, 0, hp - h, 0, wp - w, cv2.BORDER_REFLECT_101)


def router_thumbnail(frame: np.ndarray, size: int) -> np.ndarray:
    """The path router's input: the whole, unpadded uint8 frame area-resized to size×size (any channel order).

    One definition for the runtime, calibration, evaluation and router training, so the router is trained,
    calibrated and judged on exactly what it sees at run time (DESIGN.md).

    A frame whose shorter side is at least 3·size is first area-shrunk by the integer factor that keeps that
    side ≥ 1.5·size (OpenCV's fast integer-ratio path; rows/columns that do not fill a factor×factor cell
    are left out), then area-resized: under one grey level from the single resize on average, and about half
    the time at 1280×720 and 1920×1080 (README, *Benchmarks*). Smaller frames — every router training
    thumbnail (256–560 px) — get the single resize.
    """
    h, w = frame.shape[:2]
    factor = 2 * min(h, w) // (3 * size)
    if factor >= 2:
        cells = frame[: h - h % factor, : w - w % factor]
        frame = cv2.resize(cells, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


#: No side of a reduced-resolution branch input is smaller than this (the trunk needs some context).
MIN_REDUCED_SIDE = 16


def reduced_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(H, W) of the frame a branch with resolution `scale` (0 < scale <= 1) runs on: each side times `scale`,
    rounded, at least `MIN_REDUCED_SIDE` and at most the frame's own. One definition for the model's
    composition (training, evaluation) and the runtime."""
    return tuple(  # type: ignore[return-value]
        min(side, max(MIN_REDUCED_SIDE, round(side * scale))) for side in (height, width)
    )


#: Guided upsampling of a reduced-resolution branch's result (`guided_coefficients`): the window radius as a
#: share of the reduced frame's shorter side, and the regulariser ε in units of [0, 1]² (std ≈ 0.01).
GUIDED_RADIUS_SHARE = 0.125
GUIDED_EPS = 1e-4


def guided_radius(height: int, width: int) -> int:
    """The box radius (pixels of the reduced frame) of `guided_coefficients` at that size."""
    side = min(height, width)
    return max(0, min(round(side * GUIDED_RADIUS_SHARE), side - 1))


def guided_coefficients(
    small_in: np.ndarray, small_out: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """(a, b), float32 H×W×C: the local affine map ``out ≈ a·in + b`` a reduced-resolution branch applied,
    per channel, fitted in boxes of `guided_radius` and smoothed once more (He et al.'s guided filter with the
    branch's input as the guide), regularised by `eps` towards gain 1 — so a flat window gets the plain
    additive correction. Upsampled bilinearly and applied to the full-resolution frame (``a·frame + b``), it
    carries the correction *and* the gain: haze's ``1/t`` restores the fine contrast the reduced frame lost,
    which an added correction cannot. `eps` is in the arrays' units squared (`GUIDED_EPS`·255² for uint8
    values). One definition for the runtime; `edgerestore.models.uffn.guided_coefficients` is its torch
    twin for training (same boxes: reflect-101 borders)."""
    s = small_in.astype(np.float32, copy=False)
    r = small_out.astype(np.float32, copy=False)
    radius = guided_radius(*s.shape[:2])
    window = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, window, borderType=cv2.BORDER_REFLECT_101)

    return guided_affine(box, s, r, eps)


def guided_affine(box: Callable, small_in, small_out, eps: float):
    """The guided filter's arithmetic over any array type (numpy here, torch in `models.uffn`): `box` is the
    mean over a window; ``a = (cov + eps) / (var + eps)``, ``b = mean_out − a·mean_in``, both smoothed once more."""
    mean_s, mean_r = box(small_in), box(small_out)
    var = box(small_in * small_in) - mean_s * mean_s
    cov = box(small_in * small_out) - mean_s * mean_r
    a = (cov + eps) / (var + eps)
    b = mean_r - a * mean_s
    return box(a), box(b)
