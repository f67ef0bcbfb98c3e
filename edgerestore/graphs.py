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


#: The contract's dynamic axes as multiples of a graph's stride s: (height, width) = s·(height/2, width/2).
_SPATIAL = {"height": (0, True), "width": (1, True), "height/2": (0, False), "width/2": (1, False)}
_PROBES = ((37, 53), (41, 59))  # two odd feature sizes no constant axis of these graphs equals


def label_spatial_dims(model: onnx.ModelProto, stride: int) -> int:
    """Give every intermediate tensor whose spatial axes are the graph's own (`height`, `width`, `height/2`,
    `width/2` of its inputs) those names in `value_info`; returns how many tensors were named.

    Why: ONNX Runtime's NCHWc layout pass keeps an Add or Mul of two blocked tensors in the blocked layout only
    when it can prove their shapes equal, and shape inference through a Conv leaves dynamic axes unnamed
    (`unk__…`), so every residual add and gate multiply behind a dilated conv was reordered out and back in.
    The names come from shape inference at two concrete sizes (an axis that follows the input in both is
    that input's axis), so they say only what is true at every size. A graph that shape inference cannot
    follow is left as it is (0)."""
    from onnx import helper, shape_inference

    inputs = {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
    inputs |= {i.name for i in model.graph.initializer}
    dynamic = [
        v
        for v in list(model.graph.input) + list(model.graph.output)
        if v.name not in {i.name for i in model.graph.initializer}
    ]
    used = {d.dim_param for v in dynamic for d in v.type.tensor_type.shape.dim if d.dim_param}
    if not used & set(_SPATIAL):
        return 0

    def size(name: str, probe: tuple[int, int]) -> int:
        axis, full = _SPATIAL[name]
        return probe[axis] * (stride if full else 1)

    shapes = []
    for probe in _PROBES:
        concrete = onnx.ModelProto()
        concrete.CopyFrom(model)
        del concrete.graph.value_info[:]
        for v in list(concrete.graph.input) + list(concrete.graph.output):
            for d in v.type.tensor_type.shape.dim:
                if d.dim_param in _SPATIAL:
                    d.dim_value = size(d.dim_param, probe)
                elif d.HasField("dim_param"):
                    d.Clear()  # an unnamed dynamic axis: let inference find it
        try:
            inferred = shape_inference.infer_shapes(concrete, strict_mode=True)
        except Exception:  # noqa: BLE001 - onnx raises InferenceError and others
            return 0
        shapes.append(
            {
                v.name: (
                    v.type.tensor_type.elem_type,
                    [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim],
                )
                for v in inferred.graph.value_info
                if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")
            }
        )
    names = {
        tuple(size(n, p) for p in _PROBES): n for n in _SPATIAL if stride > 1 or n in ("height", "width")
    }
    labelled = []
    for name, (elem, dims_a) in shapes[0].items():
        other = shapes[1].get(name)
        if name in inputs or other is None or len(other[1]) != len(dims_a):
            continue
        dims: list[int | str | None] = []
        for a, b in zip(dims_a, other[1]):
            dims.append(a if a is not None and a == b else names.get((a, b)))
        if any(isinstance(d, str) for d in dims):
            labelled.append(helper.make_tensor_value_info(name, elem, dims))
    if labelled:
        keep = [v for v in model.graph.value_info if v.name not in {t.name for t in labelled}]
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep + labelled)
    return len(labelled)


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
