"""Tiny ONNX graphs with the export contract's I/O (uint8 NHWC frames), for the engine-building tests.

`write_export_dir` lays out what `edgerestore export` + the precision step write (`model.json`, the float32
graphs, `fp16/`, `int8_trt/`, `int8_ort/` with `precision.json`), small enough that TensorRT-RTX builds each
graph in well under a second on a CPU. Made with onnx.helper (float16 variant by onnxconverter-common,
Q/DQ variants by onnxruntime.quantization on random calibration frames).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgerestore.conditions import CONDITIONS, RESTORED_CONDITIONS
from edgerestore.contract import tensor_specs
from edgerestore.exportdir import FORMAT
from edgerestore.files import sha256_file

OPSET = 17
FEATURES = 4
THUMB = 16


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes: list, inputs: list, outputs: list, inits: list, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _frame_in(name: str = "frame", h: str | int = "height", w: str | int = "width"):
    return helper.make_tensor_value_info(name, TensorProto.UINT8, [1, h, w, 3])


def _to_nchw(src: str, prefix: str) -> list:
    return [
        helper.make_node("Cast", [src], [f"{prefix}_f"], to=TensorProto.FLOAT, name=f"{prefix}_cast"),
        helper.make_node("Mul", [f"{prefix}_f", "inv255"], [f"{prefix}_s"], name=f"{prefix}_scale"),
        helper.make_node(
            "Transpose", [f"{prefix}_s"], [f"{prefix}_x"], perm=[0, 3, 1, 2], name=f"{prefix}_nchw"
        ),
    ]


def router_graph(rng: np.random.Generator) -> onnx.ModelProto:
    nodes = _to_nchw("thumbnail", "t") + [
        helper.make_node(
            "Conv", ["t_x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1] * 4, name="router_conv"
        ),
        helper.make_node("Relu", ["c"], ["r"], name="router_relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="router_pool"),
        helper.make_node("Flatten", ["g"], ["v"], name="router_flatten"),
        helper.make_node("Gemm", ["v", "fc", "fcb"], ["logits"], name="router_fc"),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1, name="router_softmax"),
    ]
    inits = [
        _init("inv255", np.float32(1 / 255)),
        _init("w", rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3),
        _init("b", np.zeros(8, np.float32)),
        _init("fc", rng.standard_normal((8, len(CONDITIONS))).astype(np.float32)),
        _init("fcb", np.zeros(len(CONDITIONS), np.float32)),
    ]
    out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, len(CONDITIONS)])
    return _model(nodes, [_frame_in("thumbnail", THUMB, THUMB)], [out], inits, "router")


def trunk_graph(rng: np.random.Generator) -> onnx.ModelProto:
    nodes = _to_nchw("frame", "f") + [
        helper.make_node(
            "Conv",
            ["f_x", "w", "b"],
            ["c"],
            kernel_shape=[3, 3],
            pads=[1] * 4,
            strides=[2, 2],
            name="trunk_conv",
        ),
        helper.make_node("Relu", ["c"], ["features"], name="trunk_relu"),
    ]
    inits = [
        _init("inv255", np.float32(1 / 255)),
        _init("w", rng.standard_normal((FEATURES, 3, 3, 3)).astype(np.float32) * 0.3),
        _init("b", np.zeros(FEATURES, np.float32)),
    ]
    out = helper.make_tensor_value_info(
        "features", TensorProto.FLOAT, [1, FEATURES, "half_height", "half_width"]
    )
    return _model(nodes, [_frame_in()], [out], inits, "trunk")


def branch_graph(rng: np.random.Generator, unsupported_op: bool = False) -> onnx.ModelProto:
    """frame + upsampled conv(features) -> clamp -> uint8. `unsupported_op` plants a node TensorRT's parser
    has no importer for (a custom-domain op named `planted_bad_node`)."""
    nodes = _to_nchw("frame", "f") + [
        helper.make_node(
            "ConvTranspose",
            ["features", "wt", "bt"],
            ["up"],
            kernel_shape=[2, 2],
            strides=[2, 2],
            name="branch_up",
        ),
        helper.make_node("Add", ["f_x", "up"], ["y"], name="branch_add"),
        helper.make_node("Clip", ["y", "zero", "one"], ["yc"], name="branch_clip"),
        helper.make_node("Mul", ["yc", "c255"], ["y255"], name="branch_to255"),
        helper.make_node("Transpose", ["y255"], ["yh"], perm=[0, 2, 3, 1], name="branch_nhwc"),
        helper.make_node("Cast", ["yh"], ["restored"], to=TensorProto.UINT8, name="branch_cast_out"),
    ]
    inits = [
        _init("inv255", np.float32(1 / 255)),
        _init("wt", rng.standard_normal((FEATURES, 3, 2, 2)).astype(np.float32) * 0.05),
        _init("bt", np.zeros(3, np.float32)),
        _init("zero", np.float32(0.0)),
        _init("one", np.float32(1.0)),
        _init("c255", np.float32(255.0)),
    ]
    opsets = None
    if unsupported_op:
        nodes[3].input[0] = "features_odd"
        nodes.insert(
            3,
            helper.make_node(
                "Frobnicate", ["features"], ["features_odd"], domain="org.example", name="planted_bad_node"
            ),
        )
        opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("org.example", 1)]
    feats = helper.make_tensor_value_info(
        "features", TensorProto.FLOAT, [1, FEATURES, "half_height", "half_width"]
    )
    out = helper.make_tensor_value_info("restored", TensorProto.UINT8, [1, "height", "width", 3])
    if opsets:  # a custom domain: onnx's checker cannot vouch for it, build the model without checking
        graph = helper.make_graph(nodes, "branch", [_frame_in(), feats], [out], initializer=inits)
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = 8
        return model
    return _model(nodes, [_frame_in(), feats], [out], inits, "branch")


def graph_set(seed: int = 0, conditions: tuple[str, ...] = RESTORED_CONDITIONS) -> dict[str, onnx.ModelProto]:
    rng = np.random.default_rng(seed)
    graphs = {"router": router_graph(rng), "trunk": trunk_graph(rng)}
    for c in conditions:
        graphs[f"branch_{c}"] = branch_graph(rng)
    return graphs


def _fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxconverter_common import float16

    half = float16.convert_float_to_float16(model, keep_io_types=True)
    # the converter retypes the Cast's output but not its `to`: the frame's uint8 -> float cast must now
    # produce float16
    uint8_inputs = {v.name for v in half.graph.input if v.type.tensor_type.elem_type == TensorProto.UINT8}
    for node in half.graph.node:
        if node.op_type == "Cast" and node.input[0] in uint8_inputs:
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = TensorProto.FLOAT16
    onnx.checker.check_model(half, full_check=True)
    return half


def _calibration_reader(model_path: Path, n: int = 4):
    """Random calibration frames for the float32 model at `model_path` (trunk features computed by ORT for
    branch graphs would be more faithful; the tests need a valid Q/DQ graph, not a good one)."""
    from onnxruntime.quantization import CalibrationDataReader

    model = onnx.load(model_path)
    rng = np.random.default_rng(1)
    feeds = []
    for _ in range(n):
        feed = {}
        for v in model.graph.input:
            dims = [d.dim_value if d.dim_value else 0 for d in v.type.tensor_type.shape.dim]
            if v.name == "frame":
                dims = [1, 16, 16, 3]
            elif v.name == "features":
                dims = [1, FEATURES, 8, 8]
            dtype = helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)
            if dtype == np.uint8:
                feed[v.name] = rng.integers(0, 256, dims, dtype=np.uint8)
            else:
                feed[v.name] = rng.random(dims, dtype=np.float32)
        feeds.append(feed)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    return Reader()


def quantize(src: Path, dst: Path, form: str) -> None:
    """Q/DQ INT8: form "trt" = symmetric int8 activations (zero point 0), per-channel int8 weights, float
    bias; form "ort" = uint8 activations / int8 weights (ONNX Runtime's CPU form)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    trt = form == "trt"
    quantize_static(
        str(src),
        str(dst),
        _calibration_reader(src),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8 if trt else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=trt,
        op_types_to_quantize=["Conv", "ConvTranspose", "Gemm"],
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
        if trt
        else {"QuantizeBias": False},
    )


def write_export_dir(
    root: Path,
    profile: str = "tiny-test",
    conditions: tuple[str, ...] = RESTORED_CONDITIONS,
    variants: tuple[str, ...] = ("fp16", "int8_trt", "int8_ort"),
    seed: int = 0,
) -> Path:
    """`root/<profile>/` as the export and precision steps leave it. Returns that directory."""
    out = Path(root) / profile
    out.mkdir(parents=True, exist_ok=True)
    graphs = graph_set(seed, conditions)
    meta = {}
    for name, model in graphs.items():
        path = out / f"{name}.onnx"
        onnx.save(model, path)
        inputs, outputs = tensor_specs(model)
        meta[name] = {"file": path.name, "sha256": sha256_file(path), "inputs": inputs, "outputs": outputs}
    (out / "model.json").write_text(
        json.dumps(
            {
                "format": FORMAT,
                "family": "uffn",
                "profile": profile,
                "conditions": list(CONDITIONS),
                "stride": 2,
                "thumbnail_size": THUMB,
                "color_order": "BGR",
                "layout": "NHWC",
                "normalisation": "x/255",
                "opset": OPSET,
                "checkpoint_sha256": "0" * 64,
                "graphs": meta,
            },
            indent=2,
        )
    )
    for variant in variants:
        vdir = out / variant
        vdir.mkdir(exist_ok=True)
        per_graph = {}
        for name, model in graphs.items():
            dst = vdir / f"{name}.onnx"
            if variant == "fp16":
                onnx.save(_fp16(model), dst)
                used = "fp16"
            else:
                quantize(out / f"{name}.onnx", dst, variant.split("_")[1])
                used = "int8"
            per_graph[name] = {"precision": used, "psnr_vs_fp32": 48.5, "psnr_vs_gt": None}
        (vdir / "precision.json").write_text(
            json.dumps(
                {"precision": variant, "graphs": per_graph, "budgets": {"psnr_vs_fp32": 35.0}}, indent=2
            )
        )
    return out
