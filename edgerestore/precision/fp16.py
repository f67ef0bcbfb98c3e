"""FP16: a float32 graph converted to float16 with onnxconverter-common, its I/O kept as declared.

Uint8 frames and float32 `probs` stay as they are, `features` cross in float16 between fp16 graphs
(`HALF_IO`); numerically sensitive operators stay in float32 (`SENSITIVE_OPS`), and so does any node whose
activations on real frames come near float16's range (`fp16_unsafe_nodes`). `make_fp16` writes the `fp16`
variant, each graph accepted by the guard or kept in float32.

Imports onnx, onnxruntime, numpy; never torch.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx

from edgerestore.contract import FEATURES
from edgerestore.exportdir import ExportDir
from edgerestore.graphs import load_onnx, ort_session, rename_tensor, save_onnx
from edgerestore.precision.accuracy import Budgets, GraphRunner, guard
from edgerestore.precision.frames import Frame, bright_frame, reference_feeds
from edgerestore.precision.variant import PrecisionResult, reference_paths, write_variant
from edgerestore.progress import Progress, as_progress

# Operators kept in float32 in FP16 graphs: normalisations and reductions over many values (sums of squares
# and long accumulations overflow or lose everything in float16), softmax (exp), resampling.
SENSITIVE_OPS: tuple[str, ...] = (
    "Softmax",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "Resize",
    "ReduceMean",
    "GlobalAveragePool",
)


#: Float graph I/O that fp16 graphs carry in float16 (the trunk -> branch features: 48 x H/2 x W/2, 100 MB
#: at 1088x1920 in float32), unless the node producing them is kept in float32 (values near fp16's range).
HALF_IO: tuple[str, ...] = (FEATURES,)
FP16_SAFE_LIMIT = 1.0e4  # |activation| above this (float16 max is 65504) keeps the node in float32


def fp16_unsafe_nodes(
    model: onnx.ModelProto, feeds: Sequence[dict], limit: float = FP16_SAFE_LIMIT
) -> list[str]:
    """Names of nodes with a float input or output whose magnitude exceeds `limit` on any of the feeds."""
    model = onnx.shape_inference.infer_shapes(model)
    floats = {
        v.name
        for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    }
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    names = [t for n in probe.graph.node for t in n.output if t in floats and t not in existing]
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort_session(probe.SerializeToString())
    out_names = [o.name for o in session.get_outputs()]
    peak: dict[str, float] = {}
    for feed in feeds:
        for name, value in zip(out_names, session.run(out_names, feed)):
            if value.dtype == np.float32 and value.size:
                peak[name] = max(peak.get(name, 0.0), float(np.abs(value).max()))
        for name, value in feed.items():
            if value.dtype == np.float32 and value.size:
                peak[name] = max(peak.get(name, 0.0), float(np.abs(value).max()))
    hot = {name for name, v in peak.items() if not math.isfinite(v) or v > limit}
    return [n.name for n in model.graph.node if hot.intersection(list(n.input) + list(n.output))]


def convert_fp16(
    model: onnx.ModelProto,
    keep_fp32_ops: Sequence[str] = SENSITIVE_OPS,
    keep_fp32_nodes: Sequence[str] = (),
    half_io: Sequence[str] = HALF_IO,
) -> onnx.ModelProto:
    """A float16 copy of a float32 graph with its inputs/outputs types unchanged (uint8 frames stay uint8,
    `probs` float32), except the float I/O named in `half_io` (the trunk's `features` and the branches'),
    which become float16 so they cross from one fp16 graph to the next without a cast."""
    from onnxconverter_common import float16

    for i, node in enumerate(model.graph.node):  # the converter's node block list matches by name
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    half = float16.convert_float_to_float16(
        model, keep_io_types=True, op_block_list=list(keep_fp32_ops), node_block_list=list(keep_fp32_nodes)
    )
    # The converter retypes a Cast's output (uint8 → float becomes uint8 → float16 downstream) but leaves
    # its `to` attribute at float: make them agree so the frame is cast straight to float16.
    types = {v.name: v.type.tensor_type.elem_type for v in half.graph.value_info}
    for node in half.graph.node:
        if node.op_type != "Cast":
            continue
        to = next(a for a in node.attribute if a.name == "to")
        if to.i == onnx.TensorProto.FLOAT and types.get(node.output[0]) == onnx.TensorProto.FLOAT16:
            to.i = onnx.TensorProto.FLOAT16
    want = _io_types(model)
    hot_outputs = {o for n in model.graph.node if n.name in set(keep_fp32_nodes) for o in n.output}
    for name in half_io:
        if want.get(name) == onnx.TensorProto.FLOAT and name not in hot_outputs:
            _half_io(half, name)
            want[name] = onnx.TensorProto.FLOAT16
    keep_io_types(model, half, want)
    onnx.checker.check_model(half)
    return half


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def carry_in_float16(model: onnx.ModelProto, names: Sequence[str] = HALF_IO) -> onnx.ModelProto:
    """A copy of a graph that computes in float16 (an fp16 or ModelOpt INT8 graph with float32 I/O) whose
    float32 I/O in `names` become float16, boundary casts removed; the graph unchanged if that would not
    load in ONNX Runtime."""
    out = onnx.shape_inference.infer_shapes(model)
    want = _io_types(out)
    for name in names:
        if want.get(name) == onnx.TensorProto.FLOAT:
            _half_io(out, name)
            want[name] = onnx.TensorProto.FLOAT16
    try:
        keep_io_types(model, out, want)
        onnx.checker.check_model(out)
        ort_session(out.SerializeToString())
    except Exception:  # noqa: BLE001 - a consumer that needs the float32 tensor: keep the graph as it was
        return model
    return out


def _half_io(model: onnx.ModelProto, name: str) -> None:
    """Make graph input/output `name` float16 in a converted graph, removing the converter's boundary casts
    (it casts a float32 input once per consumer)."""
    F16, F32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    g = model.graph
    value = next((v for v in g.input if v.name == name), None)
    if value is not None:
        for cast in [n for n in g.node if list(n.input) == [name] and _cast_to(n) == F16]:
            g.node.remove(cast)
            rename_tensor(g, cast.output[0], name, outputs=False)
        value.type.tensor_type.elem_type = F16
        types = {v.name: v.type.tensor_type.elem_type for v in g.value_info}
        # consumers the converter left on the float32 input: those computing in float32 (blocked ops)
        # read one cast back to float32, the others read the float16 input directly
        rest = [n for n in g.node if name in n.input and any(types.get(o) == F32 for o in n.output)]
        if rest:
            inner = f"{name}__float"
            for node in rest:
                for i, n in enumerate(node.input):
                    if n == name:
                        node.input[i] = inner
            g.node.insert(
                0, onnx.helper.make_node("Cast", [name], [inner], to=F32, name=f"Cast_{name}_float")
            )
    value = next((v for v in g.output if v.name == name), None)
    if value is not None:
        types = {v.name: v.type.tensor_type.elem_type for v in g.value_info}
        producer = next(n for n in g.node if name in n.output)
        if _cast_to(producer) == F32 and types.get(producer.input[0]) == F16:  # the converter's output cast
            g.node.remove(producer)
            src = producer.input[0]
            rename_tensor(g, src, name)
            for v in [v for v in g.value_info if v.name == src]:
                g.value_info.remove(v)
        value.type.tensor_type.elem_type = F16  # keep_io_types adds a Cast where the producer is float32


def _io_types(model: onnx.ModelProto) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}


def keep_io_types(
    original: onnx.ModelProto, converted: onnx.ModelProto, want: dict[str, int] | None = None
) -> None:
    """Give `converted` the graph input/output types of `original` (or `want`), in place: a Cast where a
    converter retyped one (onnxconverter-common types an output float16 when a blocked op such as the
    router's Softmax feeds it), so `probs` and `features` stay what the manifest and the runtime's bindings
    say. AssertionError if any still differs."""
    want = dict(want) if want is not None else _io_types(original)
    g = converted.graph
    for value in list(g.output) + list(g.input):
        have = value.type.tensor_type.elem_type
        target = want.get(value.name, have)
        if have == target:
            continue
        inner = f"{value.name}__{onnx.TensorProto.DataType.Name(have).lower()}"
        is_output = any(value is o for o in g.output)
        for node in g.node:
            names = node.output if is_output else node.input
            for i, n in enumerate(names):
                if n == value.name:
                    names[i] = inner
        if is_output:
            for node in g.node:  # other consumers of the retyped output read the inner tensor
                for i, n in enumerate(node.input):
                    if n == value.name:
                        node.input[i] = inner
            g.node.append(
                onnx.helper.make_node("Cast", [inner], [value.name], to=target, name=f"Cast_{value.name}_io")
            )
        else:
            g.node.insert(
                0, onnx.helper.make_node("Cast", [value.name], [inner], to=have, name=f"Cast_{value.name}_io")
            )
        value.type.tensor_type.elem_type = target
    changed = {k: v for k, v in _io_types(converted).items() if want.get(k, v) != v}
    if changed:
        raise AssertionError(f"converted graph changed the types of {sorted(changed)}")


def fp16_graphs(
    export: ExportDir, feeds_for: Callable[[str], list[dict]], out_dir: Path, progress: Progress | bool = True
) -> dict[str, Path]:
    """Convert every graph to FP16 into out_dir (sensitive ops and hot nodes kept in float32)."""
    paths = {}
    for name in as_progress(progress).each(list(export.graphs), "fp16", "graph"):
        model = load_onnx(export.graph_path(name))
        hot = fp16_unsafe_nodes(model, feeds_for(name))
        paths[name] = save_onnx(convert_fp16(model, keep_fp32_nodes=hot), out_dir / f"{name}.onnx")
    return paths


def make_fp16(
    export_dir: str | Path,
    frames: list[Frame],
    budgets: Budgets | None = None,
    calib_frames: list[Frame] | None = None,
    progress: Progress | bool = True,
) -> PrecisionResult:
    """export/<profile>/fp16/: FP16 graphs, each accepted by the guard on `frames` or kept in float32."""
    start = time.perf_counter()
    export = ExportDir(export_dir).verify(load=True)
    budgets = budgets or Budgets()
    feeds_for = reference_feeds(export, (calib_frames or []) + frames + [bright_frame(frames)])
    with tempfile.TemporaryDirectory(prefix="edgerestore-fp16-", dir=export.path) as tmp:
        paths = fp16_graphs(export, feeds_for, Path(tmp), progress)
        candidates = {**reference_paths(export), **{(n, "fp16"): p for n, p in paths.items()}}
        accuracy = guard(export.meta, GraphRunner(candidates), "fp16", frames, budgets, progress)
        return write_variant(
            export,
            "fp16",
            candidates,
            accuracy,
            budgets,
            {"keep_fp32_ops": list(SENSITIVE_OPS), "hot_limit": FP16_SAFE_LIMIT},
            time.perf_counter() - start,
        )
