"""Small ONNX graphs that follow the runtime's graph contract exactly, with behaviour a test can control.

The one home of the test fakes, used by the tests, the serving load test (`PROTOTYPES`) and
`benchmarks/runtime_overhead.py` when no exported model is at hand:

* `router`: `thumbnail` u8 [1,S,S,3] -> `probs` f32 [1,5]; the verdict is the condition whose prototype
  colour (`PROTOTYPES`, BGR) is nearest the thumbnail's mean colour (softmax of -distance^2 / temperature).
* `trunk`: `frame` u8 [1,H,W,3] -> `features` f32 [1,F,H/2,W/2] (2x2 average pool, 1x1 conv, `depth`
  3x3 conv + ReLU layers).
* `branch_<c>`: `frame`, `features` -> `restored` u8 [1,H,W,3] = round(frame + OFFSETS[c] + d), with d in
  (0, 1) computed from the features, so the branch that ran is read off the output.
* `cmudrn_t<T>`: `frame` -> `restored` = frame + CMUDRN_OFFSET.

Imports onnx only (no torch, no onnxruntime).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgerestore.conditions import CONDITIONS, RESTORED_CONDITIONS
from edgerestore.contract import tensor_specs
from edgerestore.files import sha256_file

OPSET = 17
#: Mean BGR colour that makes the router choose each condition.
PROTOTYPES: dict[str, tuple[int, int, int]] = {
    "clean": (128, 128, 128),
    "rain": (170, 90, 60),
    "haze": (60, 170, 90),
    "raindrop": (90, 60, 170),
    "snow": (200, 200, 200),
}
#: What each branch adds to the frame (plus a fraction in (0, 1) from the features, before rounding).
OFFSETS: dict[str, int] = {"rain": 10, "haze": 20, "raindrop": 30, "snow": 40}
CMUDRN_OFFSET = 5


def _model(nodes, inputs, outputs, initializers, name: str):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgerestore-synthetic"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _const(name: str, array: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array), name)


def router_graph(thumbnail_size: int = 32, temperature: float = 2000.0):
    from onnx import TensorProto, helper

    s = thumbnail_size
    protos = np.array([[PROTOTYPES[c] for c in CONDITIONS]], dtype=np.float32)  # [1,5,3]
    inits = [
        _const("protos", protos),
        _const("axis1", np.array([1], np.int64)),
        _const("axis2", np.array([2], np.int64)),
        _const("neg_inv_t", np.array(-1.0 / temperature, np.float32)),
    ]
    nodes = [
        helper.make_node("Cast", ["thumbnail"], ["t32"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["t32"], ["mean"], axes=[1, 2], keepdims=0),  # [1,3]
        helper.make_node("Unsqueeze", ["mean", "axis1"], ["mean3"]),  # [1,1,3]
        helper.make_node("Sub", ["mean3", "protos"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axis2"], ["d2"], keepdims=0),  # [1,5]
        helper.make_node("Mul", ["d2", "neg_inv_t"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("thumbnail", TensorProto.UINT8, [1, s, s, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, len(CONDITIONS)])],
        inits,
        "router",
    )


def _convs(
    prefix: str, x: str, channels: int, depth: int, rng: np.random.Generator, inits: list, nodes: list
) -> str:
    from onnx import helper

    for i in range(depth):
        w = (rng.standard_normal((channels, channels, 3, 3)) / (3.0 * channels)).astype(np.float32)
        inits += [_const(f"{prefix}_w{i}", w), _const(f"{prefix}_b{i}", np.zeros(channels, np.float32))]
        nodes += [
            helper.make_node(
                "Conv", [x, f"{prefix}_w{i}", f"{prefix}_b{i}"], [f"{prefix}_c{i}"], pads=[1, 1, 1, 1]
            ),
            helper.make_node("Relu", [f"{prefix}_c{i}"], [f"{prefix}_r{i}"]),
        ]
        x = f"{prefix}_r{i}"
    return x


def _frame_input():
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, "height", "width", 3])


def trunk_graph(features: int = 4, depth: int = 0, seed: int = 0):
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    w = np.full((features, 3, 1, 1), 1.0 / 3.0, np.float32)
    inits = [_const("inv255", np.array(1.0 / 255.0, np.float32)), _const("proj", w)]
    nodes = [
        helper.make_node("Cast", ["frame"], ["f32"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f32", "inv255"], ["unit"]),
        helper.make_node("Transpose", ["unit"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pooled", "proj"], ["proj_out"]),
    ]
    x = _convs("trunk", "proj_out", features, depth, rng, inits, nodes)
    nodes.append(helper.make_node("Identity", [x], ["features"]))
    return _model(
        nodes,
        [_frame_input()],
        [
            helper.make_tensor_value_info(
                "features", TensorProto.FLOAT, [1, features, "half_height", "half_width"]
            )
        ],
        inits,
        "trunk",
    )


def branch_graph(condition: str, features: int = 4, depth: int = 0, seed: int = 1):
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed + RESTORED_CONDITIONS.index(condition))
    inits = [
        _const("offset", np.array(float(OFFSETS[condition]), np.float32)),
        _const("scales", np.array([1, 1, 2, 2], np.float32)),
        _const("lo", np.array(0.0, np.float32)),
        _const("hi", np.array(255.0, np.float32)),
    ]
    nodes: list = []
    x = _convs("branch", "features", features, depth, rng, inits, nodes)
    nodes += [
        helper.make_node("ReduceMean", [x], ["fmean"], axes=[1], keepdims=1),  # [1,1,h,w]
        helper.make_node("Sigmoid", ["fmean"], ["frac"]),  # (0, 1)
        helper.make_node("Resize", ["frac", "", "scales"], ["frac_full"], mode="nearest"),  # [1,1,H,W]
        helper.make_node("Transpose", ["frac_full"], ["frac_nhwc"], perm=[0, 2, 3, 1]),  # [1,H,W,1]
        helper.make_node("Cast", ["frame"], ["f32"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["f32", "offset"], ["shifted"]),
        helper.make_node("Add", ["shifted", "frac_nhwc"], ["summed"]),
        helper.make_node("Clip", ["summed", "lo", "hi"], ["clipped"]),
        helper.make_node("Round", ["clipped"], ["rounded"]),
        helper.make_node("Cast", ["rounded"], ["restored"], to=TensorProto.UINT8),
    ]
    return _model(
        nodes,
        [
            _frame_input(),
            helper.make_tensor_value_info(
                "features", TensorProto.FLOAT, [1, features, "half_height", "half_width"]
            ),
        ],
        [helper.make_tensor_value_info("restored", TensorProto.UINT8, [1, "height", "width", 3])],
        inits,
        f"branch_{condition}",
    )


def cmudrn_graph(loops: int = 3):
    from onnx import TensorProto, helper

    inits = [
        _const("offset", np.array(float(CMUDRN_OFFSET), np.float32)),
        _const("lo", np.array(0.0, np.float32)),
        _const("hi", np.array(255.0, np.float32)),
    ]
    nodes = [
        helper.make_node("Cast", ["frame"], ["f32"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["f32", "offset"], ["shifted"]),
        helper.make_node("Clip", ["shifted", "lo", "hi"], ["clipped"]),
        helper.make_node("Cast", ["clipped"], ["restored"], to=TensorProto.UINT8),
    ]
    return _model(
        nodes,
        [_frame_input()],
        [helper.make_tensor_value_info("restored", TensorProto.UINT8, [1, "height", "width", 3])],
        inits,
        f"cmudrn_t{loops}",
    )


def write_graphs(
    out_dir: Path,
    family: str = "uffn",
    thumbnail_size: int = 32,
    features: int = 4,
    depth: int = 0,
    loops: int = 3,
) -> dict[str, Path]:
    """Write the family's graphs as `<name>.onnx` into `out_dir`; returns {graph name: path}."""
    import onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if family == "uffn":
        models = {"router": router_graph(thumbnail_size), "trunk": trunk_graph(features, depth)}
        models.update({f"branch_{c}": branch_graph(c, features, depth) for c in RESTORED_CONDITIONS})
    elif family == "cmudrn":
        models = {f"cmudrn_t{loops}": cmudrn_graph(loops)}
    else:
        raise ValueError(f"unknown family {family!r}; expected uffn or cmudrn")
    paths = {}
    for name, model in models.items():
        paths[name] = out_dir / f"{name}.onnx"
        onnx.save(model, paths[name])
    return paths


def write_bundle(
    out_dir: Path,
    family: str = "uffn",
    *,
    min_hw: tuple[int, int] = (16, 16),
    max_hw: tuple[int, int] = (1088, 1920),
    session_options: dict | None = None,
    branch_scales: dict[str, float] | None = None,
    **graph_options: int,
) -> Path:
    """A complete ONNX Runtime bundle of the synthetic graphs (`write_graphs(family, **graph_options)`:
    thumbnail_size, features, depth, loops), written (atomically, replacing `out_dir`) with
    `edgerestore.engines.bundle.write_bundle`. Returns `out_dir`."""
    import platform
    import tempfile

    import onnx

    from edgerestore.engines import bundle as eb

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_graphs(Path(tmp), family, **graph_options)
        graphs = {}
        for name, path in paths.items():
            inputs, outputs = tensor_specs(onnx.load(path))
            digest = sha256_file(path)
            graphs[name] = eb.GraphEntry(path.name, "fp32", digest, digest, inputs, outputs, {})
        try:
            import onnxruntime

            ort_version = onnxruntime.__version__
        except ImportError:  # writing a bundle does not need onnxruntime
            ort_version = "unknown"
        manifest = eb.Manifest(
            family=family,
            profile=f"synthetic-{family}",
            conditions=list(CONDITIONS),
            stride=2 if family == "uffn" else 1,
            # the router graph's own input size [1, S, S, 3]
            thumbnail_size=graphs["router"].inputs[0]["shape"][1] if family == "uffn" else None,
            backend="onnxruntime",
            precision="fp32",
            graphs=graphs,
            shape_profile={"min": list(min_hw), "opt": list(min_hw), "max": list(max_hw)},
            builder={"name": "onnxruntime", "version": ort_version},
            device={"cpu": platform.processor() or platform.machine(), "onnxruntime_version": ort_version},
            session_options=dict(session_options or {}),
            branch_scales=dict(branch_scales or {}),
        )
        eb.write_bundle(out_dir, manifest, paths, force=True)
    return out_dir
