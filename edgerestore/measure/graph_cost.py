"""Work counted from an ONNX graph alone, for the roofline (`edgerestore.measure.roofline`).

* `graph_cost` counts a graph's work from the ONNX file alone (onnx shape inference at a concrete frame
  size): FLOPs = 2 × the multiply-accumulates of its Conv / ConvTranspose / MatMul / Gemm nodes (and their
  quantized forms: QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger — int8 operations counted the
  same way); bias adds, activations and element-wise tails are not counted (they are memory-bound, not
  FLOPs that a kernel could block). Bytes: the weights once + every node's non-constant inputs and outputs
  once (as if nothing stayed in cache and nothing fused: at 640×360 one 48-channel float map is 11 MB,
  beyond any L2). Arithmetic intensity = FLOPs / bytes.

Imports onnx; never torch.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Ops whose multiply-accumulates are counted, and how the MACs follow from the shapes.
CONV_OPS = frozenset({"Conv", "ConvInteger", "QLinearConv"})
CONV_TRANSPOSE_OPS = frozenset({"ConvTranspose"})
MATMUL_OPS = frozenset({"MatMul", "MatMulInteger", "QLinearMatMul"})
GEMM_OPS = frozenset({"Gemm"})
#: Input index of the weight tensor per conv-like op (QLinearConv: x, x_scale, x_zp, w, ...).
_WEIGHT_INDEX = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1}
#: Input indices of A and B per matmul-like op.
_AB_INDEX = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "Gemm": (0, 1)}


@dataclass(frozen=True)
class GraphCost:
    """What a graph does at one input size, counted from its ONNX file."""

    flops: int
    weight_bytes: int
    activation_bytes: int
    unshaped: tuple[str, ...] = ()  # counted nodes whose shapes inference could not give (FLOPs undercount)

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved (weights + activations)."""
        return self.flops / self.bytes if self.bytes else 0.0


_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
}


def eval_dim(expr: str, dims: Mapping[str, int]) -> int:
    """A symbolic ONNX dimension ("height", "height/2", "2*width + 1") with the symbols of `dims` bound.
    Only names, integers and + - * / // are accepted; "/" rounds down (how the exporter's halvings go)."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in dims:
                raise ValueError(f"dimension {expr!r}: no value for {node.id!r} (given: {', '.join(dims)})")
            return dims[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"dimension {expr!r} is not an arithmetic expression of names and integers")

    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"dimension {expr!r} is not an arithmetic expression") from None
    return int(ev(tree))


#: ONNX Runtime's contrib ops (in graphs it saved optimised, as bundles do) → the standard op with the same
#: output shape (and, for FusedConv / FusedGemm, the same MACs), and which of their inputs that op takes.
_CONTRIB: dict[str, tuple[str, Any]] = {
    "FusedConv": ("Conv", lambda ins: ins[:3]),
    "FusedGemm": ("Gemm", lambda ins: ins[:3]),
    "QLinearAdd": ("Add", lambda ins: [ins[0], ins[3]]),  # A, A_scale, A_zp, B, ...
    "QLinearMul": ("Mul", lambda ins: [ins[0], ins[3]]),
    "QLinearConcat": ("Concat", lambda ins: ins[2::3]),  # Y_scale, Y_zp, then (X, X_scale, X_zp)...
    "QLinearSigmoid": ("Sigmoid", lambda ins: ins[:1]),
    "QLinearLeakyRelu": ("LeakyRelu", lambda ins: ins[:1]),
}
_KEEP_ATTRS = {"Conv", "Gemm", "Concat"}  # attributes of the standard op that the contrib op shares


def _standard_forms(model: Any) -> None:
    """Rewrite, in place, ONNX Runtime's `com.microsoft` ops that onnx shape inference does not know
    (FusedConv, QLinearAdd, ...) as the standard op with the same output shape, so that shapes carry
    through them. Used on a copy, for counting only."""
    for node in model.graph.node:
        if node.domain == "com.microsoft" and node.op_type in _CONTRIB:
            op, pick = _CONTRIB[node.op_type]
            keep = [a for a in node.attribute if op in _KEEP_ATTRS and not a.name.startswith("activation")]
            inputs = list(pick(list(node.input)))
            del node.attribute[:]
            node.attribute.extend(keep)
            del node.input[:]
            node.input.extend(inputs)
            node.op_type, node.domain = op, ""


def concrete_shapes(
    model: Any, dims: Mapping[str, int], input_shapes: Mapping[str, Sequence[int]] | None = None
) -> Any:
    """A copy of `model` whose graph inputs have concrete shapes (`input_shapes` by input name, else each
    symbolic dim evaluated with `dims`), with every tensor's shape inferred (onnx shape inference, data
    propagation on)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    _standard_forms(m)
    for value in m.graph.input:
        given = (input_shapes or {}).get(value.name)
        dims_of = value.type.tensor_type.shape.dim
        if given is not None:
            if len(given) != len(dims_of):
                raise ValueError(f"input {value.name!r} has {len(dims_of)} dims, given {list(given)}")
            for d, v in zip(dims_of, given):
                d.dim_value = int(v)
            continue
        for d in dims_of:
            if d.HasField("dim_param"):
                d.dim_value = eval_dim(d.dim_param, dims)
    return onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)


def _tensor_types(model: Any) -> dict[str, tuple[tuple[int, ...] | None, int]]:
    """name → (shape or None when not fully known, bytes per element)."""
    import onnx

    out: dict[str, tuple[tuple[int, ...] | None, int]] = {}
    for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        t = v.type.tensor_type
        if not t.elem_type:
            continue
        size = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        known = t.HasField("shape") and all(d is not None for d in dims)
        out[v.name] = (tuple(int(d) for d in dims) if known else None, size)  # type: ignore[arg-type]
    for init in model.graph.initializer:
        size = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        out[init.name] = (tuple(int(d) for d in init.dims), size)
    return out


def _macs(node: Any, types: Mapping[str, tuple[tuple[int, ...] | None, int]]) -> int | None:
    """Multiply-accumulates of one counted node, None when a needed shape is unknown."""

    def shape(i: int) -> tuple[int, ...] | None:
        name = node.input[i] if i < len(node.input) else ""
        return types.get(name, (None, 0))[0]

    def out_shape() -> tuple[int, ...] | None:
        return types.get(node.output[0], (None, 0))[0]

    op = node.op_type
    if op in CONV_OPS:  # weight [Cout, Cin/group, k...] applied at every output position
        w, y = shape(_WEIGHT_INDEX[op]), out_shape()
        if w is None or y is None:
            return None
        return int(np.prod(w, dtype=np.int64)) * y[0] * int(np.prod(y[2:], dtype=np.int64))
    if op in CONV_TRANSPOSE_OPS:  # weight [Cin, Cout/group, k...] scattered from every input position
        w, x = shape(_WEIGHT_INDEX[op]), shape(0)
        if w is None or x is None:
            return None
        return int(np.prod(w, dtype=np.int64)) * x[0] * int(np.prod(x[2:], dtype=np.int64))
    ia, ib = _AB_INDEX[op]
    a, b = shape(ia), shape(ib)
    if op in GEMM_OPS:
        if a is None or b is None:
            return None
        attrs = {at.name: at.i for at in node.attribute}
        m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
        n = b[0] if attrs.get("transB") else b[1]
        return m * k * n
    y = out_shape()
    if a is None or y is None:  # MatMul: every output element is a K-long dot product
        return None
    return int(np.prod(y, dtype=np.int64)) * a[-1]


def graph_cost(
    model: Any, dims: Mapping[str, int], input_shapes: Mapping[str, Sequence[int]] | None = None
) -> GraphCost:
    """FLOPs, weight bytes and activation bytes of `model` (a ModelProto or a path) at the input size that
    `dims` gives its symbolic dimensions (e.g. {"height": 360, "width": 640}) or `input_shapes` gives its
    inputs by name; module docstring."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    inferred = concrete_shapes(model, dims, input_shapes)
    types = _tensor_types(inferred)
    constants = {i.name for i in inferred.graph.initializer}
    weight_bytes = sum(
        int(np.prod(i.dims, dtype=np.int64)) * types[i.name][1] for i in inferred.graph.initializer
    )
    for node in inferred.graph.node:
        if node.op_type == "Constant":
            constants.update(node.output)
            out = types.get(node.output[0])
            if out and out[0] is not None:
                weight_bytes += int(np.prod(out[0], dtype=np.int64)) * out[1]
    macs, activation_bytes, unshaped = 0, 0, []
    for node in inferred.graph.node:
        if node.op_type == "Constant":
            continue
        for name in [*node.input, *node.output]:
            if name and name not in constants and (t := types.get(name)) and t[0] is not None:
                activation_bytes += int(np.prod(t[0], dtype=np.int64)) * t[1]
        if node.op_type in CONV_OPS | CONV_TRANSPOSE_OPS | MATMUL_OPS | GEMM_OPS:
            n = _macs(node, types)
            if n is None:
                unshaped.append(node.name or node.op_type)
            else:
                macs += n
    return GraphCost(2 * macs, int(weight_bytes), int(activation_bytes), tuple(unshaped))
