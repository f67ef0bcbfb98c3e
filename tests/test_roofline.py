"""FLOP / byte counting from ONNX graphs and `edgerestore bench --roofline` (no speed asserted)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgerestore.measure.graph_cost import eval_dim, graph_cost


def _init(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def _conv_graph() -> onnx.ModelProto:
    """x [1,3,h,w] → 3×3 conv to 8 ch → depthwise 3×3 → 2×2 stride-2 ConvTranspose to 4 ch [1,4,2h,2w]."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["y", "w2"], ["y2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
        helper.make_node("ConvTranspose", ["y2", "w3"], ["z"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, "2*h", "2*w"])],
        [_init("w1", (8, 3, 3, 3)), _init("w2", (8, 1, 3, 3)), _init("w3", (8, 4, 2, 2))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _matmul_graph() -> onnx.ModelProto:
    """a [2,n,16] · b [16,32] → [2,n,32]; then Gemm of x [4,16] with w [10,16]ᵀ → [4,10]."""
    nodes = [
        helper.make_node("MatMul", ["a", "b"], ["c"]),
        helper.make_node("Gemm", ["x", "w"], ["g"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mm",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, "n", 16]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16]),
        ],
        [
            helper.make_tensor_value_info("c", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("g", TensorProto.FLOAT, None),
        ],
        [_init("b", (16, 32)), _init("w", (10, 16))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_conv_and_conv_transpose_flops_and_bytes_match_a_hand_count():
    h, w = 4, 6
    hw = h * w
    cost = graph_cost(_conv_graph(), {"h": h, "w": w})
    macs = 8 * 3 * 9 * hw + 8 * 1 * 9 * hw + 8 * 4 * 2 * 2 * hw  # conv, depthwise, transpose (per input px)
    assert cost.flops == 2 * macs
    assert cost.weight_bytes == 4 * (8 * 3 * 9 + 8 * 9 + 8 * 4 * 4)
    # every node reads its input map and writes its output map once: x→y, y→y2, y2→z
    assert cost.activation_bytes == 4 * ((3 + 8) * hw + (8 + 8) * hw + (8 + 4 * 4) * hw)
    assert cost.intensity == pytest.approx(cost.flops / (cost.weight_bytes + cost.activation_bytes))
    assert cost.unshaped == ()
    # the count scales with the frame: 4x the pixels, 4x the FLOPs
    assert graph_cost(_conv_graph(), {"h": 2 * h, "w": 2 * w}).flops == 4 * cost.flops


def test_onnxruntime_fused_conv_in_a_saved_optimised_graph_counts_as_its_conv():
    """Bundles hold graphs ONNX Runtime saved optimised (com.microsoft FusedConv): same count as the Conv."""
    model = _conv_graph()
    node = model.graph.node[0]
    node.op_type, node.domain = "FusedConv", "com.microsoft"
    node.attribute.append(helper.make_attribute("activation", "Relu"))
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert graph_cost(model, {"h": 4, "w": 6}) == graph_cost(_conv_graph(), {"h": 4, "w": 6})


def test_quantized_contrib_ops_carry_shapes_to_the_convs_after_them():
    """An INT8 bundle's graph: com.microsoft QLinearAdd before a QLinearConv; the conv is still counted."""
    u8 = [
        numpy_helper.from_array(np.array(v, dtype=t), n)
        for n, v, t in [("s", 0.1, np.float32), ("z", 0, np.uint8)]
    ]
    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.int8), "w")
    wz = numpy_helper.from_array(np.array(0, np.int8), "wz")
    nodes = [
        helper.make_node(
            "QLinearAdd", ["x", "s", "z", "x", "s", "z", "s", "z"], ["y"], domain="com.microsoft"
        ),
        helper.make_node("QLinearConv", ["y", "s", "z", "w", "s", "wz", "s", "z"], ["c"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "q",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("c", TensorProto.UINT8, None)],
        [*u8, w, wz],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    cost = graph_cost(model, {"h": 4, "w": 6})
    assert cost.unshaped == () and cost.flops == 2 * 8 * 3 * 9 * 24


def test_matmul_and_gemm_flops_match_a_hand_count():
    cost = graph_cost(_matmul_graph(), {"n": 5})
    assert cost.flops == 2 * (2 * 5 * 16 * 32 + 4 * 16 * 10)


def test_symbolic_dims_evaluate_and_junk_is_refused():
    assert eval_dim("height/2", {"height": 360}) == 180
    assert eval_dim("2*width + 1", {"width": 640}) == 1281
    with pytest.raises(ValueError, match="no value for 'depth'"):
        eval_dim("depth", {"height": 1})
    with pytest.raises(ValueError):
        eval_dim("__import__('os')", {})


def test_bench_roofline_writes_a_table_json_and_plot(tmp_path, capsys):
    from edgerestore.cli import main
    from edgerestore.testing import write_bundle

    bundle = write_bundle(tmp_path / "bundle", thumbnail_size=32, features=4)
    out = tmp_path / "out"
    args = ["bench", "--bundle", str(bundle), "--roofline", "--sizes", "48x64", "--frames", "2"]
    assert main([*args, "--warmup", "0", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "% of peak" in printed and "measured peak" in printed
    (run,) = json.loads((out / "roofline.json").read_text())["runs"]
    assert run["threads"] == 1 and run["peak_gflops_s"] > 0 and run["bandwidth_gb_s"] > 0
    points = {p["graph"]: p for p in run["points"]}
    assert {"router", "trunk"} <= set(points) and any(g.startswith("branch") for g in points)
    assert points["trunk"]["gflops"] > 0 and points["trunk"]["achieved_gflops_s"] > 0  # its one Conv
    for p in points.values():  # the synthetic branches are conv-free: 0 FLOPs, 0 % (not a crash)
        assert p["p50_ms"] > 0 and p["gflops"] >= 0
        assert p["fraction_of_peak"] == pytest.approx(p["achieved_gflops_s"] / run["peak_gflops_s"])
    assert (out / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (
        out / "bench.json"
    ).exists()  # the roofline mode replaces the stage bench, it adds no time to it


def test_bench_profile_nodes_lists_the_slowest_nodes_per_graph(tmp_path, capsys):
    from edgerestore.cli import main
    from edgerestore.testing import write_bundle

    bundle = write_bundle(tmp_path / "bundle", thumbnail_size=32, features=4)
    out = tmp_path / "out"
    args = ["bench", "--bundle", str(bundle), "--roofline", "--profile-nodes", "--sizes", "48x64"]
    assert main([*args, "--frames", "2", "--warmup", "0", "--no-plot", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "slowest nodes" in printed and "| trunk |" in printed
    (prof,) = json.loads((out / "roofline.json").read_text())["node_profiles"]
    by_graph: dict[str, float] = {}
    for n in prof["nodes"]:
        by_graph[n["graph"]] = by_graph.get(n["graph"], 0.0) + n["share"]
    assert {"router", "trunk"} <= set(by_graph)
    assert all(abs(v - 1.0) < 1e-6 for v in by_graph.values())
    assert (
        main(["bench", "--bundle", str(bundle), "--profile-nodes", "--out", str(out)]) == 2
    )  # needs --roofline
