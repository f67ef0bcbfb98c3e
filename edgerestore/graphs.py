"""ONNX graph files and the export directory's `model.json`: reading, writing and describing them.

Shared by export (which writes the graphs), precision/calibration (which convert them) and the engine
builders (which read them). Loading a missing or corrupt file gives a one-line `UserError`; writing goes
through a temporary file and a rename so that no half-written graph or JSON is ever left behind.

Imports onnx and numpy only (never torch, never the runtime).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from edgerestore.errors import UserError
from edgerestore.files import write_bytes_atomic

FORMAT = "edgerestore-onnx/1"
MODEL_JSON = "model.json"
PRECISION_JSON = "precision.json"
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8_trt", "int8_ort")

_DTYPE_NAMES = {
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
}


def save_onnx(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write a graph atomically (all weights inside the file: these models are far below 2 GB)."""
    return write_bytes_atomic(Path(path), model.SerializeToString())


def write_json(path: str | Path, payload: Any) -> Path:
    return write_bytes_atomic(Path(path), (json.dumps(payload, indent=2) + "\n").encode())


def load_onnx(path: str | Path, check: bool = True) -> onnx.ModelProto:
    """Load and (by default) check a graph; one-line `UserError` when it is missing, unreadable or invalid."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX graph {path} not found; run `edgerestore export` to write it")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for corrupt files
        raise UserError(
            f"ONNX graph {path} is corrupt ({type(exc).__name__}); re-run `edgerestore export`"
        ) from None
    if check:
        try:
            if not model.graph.node:
                raise onnx.checker.ValidationError("the graph has no nodes")
            onnx.checker.check_model(model)
        except Exception as exc:  # noqa: BLE001 - checker errors are multi-line; keep the first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"ONNX graph {path} is invalid ({first}); re-run `edgerestore export`") from None
    return model


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    dims: list[int | str] = []
    for d in value.type.tensor_type.shape.dim:
        dims.append(d.dim_param if d.dim_param else int(d.dim_value))
    return dims


def tensor_specs(model: onnx.ModelProto) -> tuple[list[dict], list[dict]]:
    """([{name, dtype, shape}] of the inputs, same of the outputs); dynamic dims as their names."""

    def spec(v: onnx.ValueInfoProto) -> dict:
        elem = v.type.tensor_type.elem_type
        return {
            "name": v.name,
            "dtype": _DTYPE_NAMES.get(elem, onnx.TensorProto.DataType.Name(elem).lower()),
            "shape": _dims(v),
        }

    inits = {i.name for i in model.graph.initializer}
    inputs = [spec(v) for v in model.graph.input if v.name not in inits]
    return inputs, [spec(v) for v in model.graph.output]


def set_dim_names(model: onnx.ModelProto, names: dict[str, dict[int, str]]) -> None:
    """Give dynamic axes of graph inputs/outputs the contract's names ({tensor: {axis: name}})."""
    for value in list(model.graph.input) + list(model.graph.output):
        for axis, name in names.get(value.name, {}).items():
            dim = value.type.tensor_type.shape.dim[axis]
            dim.dim_param = name


def read_model_json(export_dir: str | Path) -> dict:
    """The export directory's model.json, with one-line errors for a missing or foreign file."""
    path = Path(export_dir) / MODEL_JSON
    if not path.is_file():
        raise UserError(
            f"{path} not found; run `edgerestore export` first (it writes the graphs and {MODEL_JSON})"
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{path} is not readable JSON ({type(exc).__name__}); re-run `edgerestore export`"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(
            f"{path} is not an edgerestore export (format is not {FORMAT!r}); re-run `edgerestore export`"
        )
    return meta


def graph_path(export_dir: str | Path, meta: dict, name: str) -> Path:
    try:
        return Path(export_dir) / meta["graphs"][name]["file"]
    except KeyError:
        raise UserError(
            f"model.json in {export_dir} has no graph {name!r}; graphs: {', '.join(meta.get('graphs', {}))}"
        ) from None


def ort_session(path: str | Path | bytes, threads: int = 2, fuse_qdq: bool = True):
    """A CPU InferenceSession with a fixed thread count (the reference executor for checks).

    `fuse_qdq=False` keeps ONNX Runtime's graph rewrites to the basic level, so Q/DQ pairs run as written
    instead of being fused into its own QLinear kernels: the way to check a graph meant for TensorRT (whose
    float16 scales ONNX Runtime's QLinearConcat, for one, does not accept)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not fuse_qdq:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = path if isinstance(path, bytes) else str(path)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "graph" if isinstance(path, bytes) else f"graph {path}"
        raise UserError(f"ONNX Runtime cannot load {where}: {first}") from None
