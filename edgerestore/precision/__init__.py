"""Precision in the graph (DESIGN.md, *Precision lives in the ONNX graph*): TensorRT 11 has no FP16/INT8
builder flags, so a graph carries its own precision, and every converted graph is checked before it is
accepted.

    frames.py    calibration / held-back frames (folders, videos, synthetic, the default set) and the feeds
                 each graph takes
    fp16.py      FP16 conversion (sensitive ops and hot nodes kept in float32), `make_fp16`
    int8.py      activation ranges and explicit Q/DQ graphs (`int8_trt`, `int8_ort`; ModelOpt when
                 installed), `make_int8`
    accuracy.py  the accuracy guard: each graph against float32 on held-back frames, fallback ladders
    variant.py   writing `export/<profile>/<variant>/` with `precision.json` and the reports

The names below are the package's interface; import them from `edgerestore.precision`. Imports onnx,
onnxruntime, numpy, OpenCV; never torch.
"""

from __future__ import annotations

from edgerestore.precision.accuracy import (
    ORT_NUMPY,
    PSNR_CAP,
    Budgets,
    GraphAccuracy,
    GraphRunner,
    guard,
)
from edgerestore.precision.fp16 import (
    FP16_SAFE_LIMIT,
    HALF_IO,
    SENSITIVE_OPS,
    carry_in_float16,
    convert_fp16,
    fp16_graphs,
    fp16_unsafe_nodes,
    keep_io_types,
    make_fp16,
)
from edgerestore.precision.frames import (
    DEFAULT_SET,
    SKIMAGE_IMAGES,
    VIDEO_EXTENSIONS,
    Frame,
    bright_frame,
    clean_images,
    default_calibration_set,
    frames_from_folder,
    frames_from_video,
    guard_split,
    load_frames,
    make_default_set,
    reference_feeds,
    split_holdout,
    synthetic_frames,
)
from edgerestore.precision.int8 import (
    FORMS,
    METHODS,
    MODELOPT_METHODS,
    MODELOPT_MODULES,
    ORT_QUANTIZED_OPS,
    QUANTIZED_OPS,
    make_int8,
    modelopt_pool,
    quantize_graph,
    quantize_graph_modelopt,
    trt_quantizer,
)
from edgerestore.precision.variant import (
    PrecisionResult,
    match_feature_types,
    reference_paths,
    report_markdown,
    write_variant,
)

__all__ = [
    "Budgets",
    "DEFAULT_SET",
    "FORMS",
    "FP16_SAFE_LIMIT",
    "Frame",
    "GraphAccuracy",
    "GraphRunner",
    "HALF_IO",
    "METHODS",
    "MODELOPT_METHODS",
    "MODELOPT_MODULES",
    "ORT_NUMPY",
    "ORT_QUANTIZED_OPS",
    "PSNR_CAP",
    "PrecisionResult",
    "QUANTIZED_OPS",
    "SENSITIVE_OPS",
    "SKIMAGE_IMAGES",
    "VIDEO_EXTENSIONS",
    "bright_frame",
    "carry_in_float16",
    "clean_images",
    "convert_fp16",
    "default_calibration_set",
    "fp16_graphs",
    "fp16_unsafe_nodes",
    "frames_from_folder",
    "frames_from_video",
    "guard",
    "guard_split",
    "keep_io_types",
    "load_frames",
    "make_default_set",
    "make_fp16",
    "make_int8",
    "match_feature_types",
    "modelopt_pool",
    "quantize_graph",
    "quantize_graph_modelopt",
    "reference_feeds",
    "reference_paths",
    "report_markdown",
    "split_holdout",
    "synthetic_frames",
    "trt_quantizer",
    "write_variant",
]
