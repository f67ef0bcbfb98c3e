"""ONNX graph files: loading (checked), saving, naming dynamic axes, and the reference ONNX Runtime session.

Shared by export (which writes the graphs), precision/calibration (which convert them) and the engine
builders (which read them); the export directory's records are `edgerestore.exportdir`'s. Loading a
missing or corrupt file gives a one-line `UserError`; writing goes through a temporary file and a rename
so that no half-written graph is ever left behind.

Imports onnx and numpy only (never torch, never the runtime).
"""

from __future__ import annotations

from pathlib import Path

import onnx

from edgerestore.errors import UserError
from edgerestore.files import write_bytes_atomic


def save_onnx(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write a graph atomically (all weights inside the file: these models are far below 2 GB)."""
    return write_bytes_atomic(Path(path), model.SerializeToString())


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


def rename_tensor(
    graph: onnx.GraphProto, old: str, new: str, inputs: bool = True, outputs: bool = True
) -> None:
    """Rename tensor `old` to `new` where nodes read it (`inputs`) and where they write it (`outputs`)."""
    for node in graph.node:
        for names, on in ((node.input, inputs), (node.output, outputs)):
            if on:
                for i, n in enumerate(names):
                    if n == old:
                        names[i] = new


def set_dim_names(model: onnx.ModelProto, names: dict[str, dict[int, str]]) -> None:
    """Give dynamic axes of graph inputs/outputs the contract's names ({tensor: {axis: name}})."""
    for value in list(model.graph.input) + list(model.graph.output):
        for axis, name in names.get(value.name, {}).items():
            dim = value.type.tensor_type.shape.dim[axis]
            dim.dim_param = name


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
