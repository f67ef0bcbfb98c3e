"""Issue 21's export rewrites: each blocked form equals the model's own arithmetic (PyTorch and the exported
graph), the graphs hold the node pattern the rewrite is for, and ONNX Runtime keeps the branch blocked."""

from __future__ import annotations

import platform

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from edgerestore.graphs import label_spatial_dims  # noqa: E402

# uffn-tiny's shape (16 channels, three experts: block-aligned), two small convs per part
SHAPE = dict(width=16, experts=3, expert_dilations=(1, 2, 4), router_width=8, thumbnail_size=32)


def _model(**overrides):
    from edgerestore.models import zoo

    torch.manual_seed(0)
    model = zoo.build("uffn-tiny", **{**SHAPE, **overrides}).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            elif type(m).__name__ == "ShareSepConv":
                m.weight.add_(torch.rand(m.weight.shape, generator=g) * 0.2)
        for branch in model.branches.values():  # gates and heads away from their initialisation
            for gate in (branch.expert_gate.gate, branch.level_gate.gate, branch.decoder[-2]):
                if isinstance(gate, torch.nn.Conv2d):
                    gate.weight.normal_(0, 0.3, generator=g)
                    gate.bias.normal_(0, 0.3, generator=g)
    return model


@pytest.fixture(scope="module")
def blocked_export(tmp_path_factory):
    from edgerestore.export import export_model

    model = _model(branch_decoders={"rain": "subpixel"})
    out = tmp_path_factory.mktemp("blocked") / "uffn-tiny"
    # export_model raises when a graph differs from PyTorch (float path ≤ 1e-4, uint8 within one level)
    result = export_model(model, out, "uffn-tiny", parity_sizes=[(45, 38), (64, 96)], progress=False)
    return model, result


def test_tap_conv_is_the_dense_conv():
    from edgerestore.export_wrappers import TapConv

    conv = torch.nn.Conv2d(48, 3, 3, padding=1)
    x = torch.randn(1, 48, 9, 14)
    with torch.no_grad():
        assert torch.allclose(TapConv(conv.weight, conv.bias)(x), conv(x), atol=1e-5)
        two = TapConv(conv.weight[:1], conv.bias[:1], replicate=16)(x)
        assert two.shape == (1, 16, 9, 14)
        assert torch.allclose(two, conv(x)[:, :1].expand(1, 16, 9, 14), atol=1e-5)


@pytest.mark.parametrize("decoder", ["subpixel", "transposed"])
@pytest.mark.parametrize("shape", [SHAPE, dict(width=8, experts=2, expert_dilations=(1, 2))])
def test_blocked_branch_equals_the_branch_in_pytorch(decoder, shape):
    from edgerestore.export import fold_for_export
    from edgerestore.export_wrappers import BlockedGatedBranch

    model = _model(**shape, branch_decoders={"rain": decoder})
    branch = fold_for_export(model, blocked=False).branch("rain")
    x, feats = torch.rand(1, 3, 18, 30), torch.relu(torch.randn(1, model.feature_channels, 9, 15))
    with torch.no_grad():
        blocked = BlockedGatedBranch(branch).eval()
        assert blocked.nhwc
        assert torch.allclose(blocked(x, feats), branch(x, feats), atol=1e-5)


def test_slice_gradient_equals_the_image_gradient():
    from edgerestore.export_wrappers import SliceGradient
    from edgerestore.models.blocks import ImageGradient

    gradient = ImageGradient()
    x = torch.rand(2, 3, 7, 11)
    with torch.no_grad():
        assert torch.allclose(SliceGradient(gradient)(x), gradient(x), atol=1e-6)


def test_blocked_graphs_match_pytorch_and_hold_the_rewritten_pattern(blocked_export):
    _, result = blocked_export
    assert max(p.max_abs_error for p in result.parity) <= 1e-4
    graphs = {p.stem: onnx.load(str(p)) for p in result.out_dir.glob("*.onnx")}
    ops = {name: [n.op_type for n in g.graph.node] for name, g in graphs.items()}
    for name in ("branch_rain", "branch_snow"):
        # no Softmax over channels, no Split of the features, no broadcast of a one-channel weight
        assert "Softmax" not in ops[name] and "Split" not in ops[name], name
        assert "Sigmoid" in ops[name] and "Exp" in ops[name], name
        first = next(n for n in graphs[name].graph.node if "features" in n.input and n.op_type == "Conv")
        group = next(a.i for a in first.attribute if a.name == "group")
        assert group == 48, "features enter the convolutions through the identity depthwise conv"
    for name in ("branch_rain", "branch_snow"):  # sub-pixel and transposed decoders
        assert "DepthToSpace" not in ops[name] and "ConvTranspose" not in ops[name], name
    # the gradient: one MatMul for the luma, no 3 -> 2 convolution
    for name in ("trunk", "router"):
        assert "MatMul" in ops[name], name
        assert not any(i.dims[0] == 2 for i in graphs[name].graph.initializer if len(i.dims) == 4), (
            "a conv with two outputs (the folded gradient) is left"
        )
    # intermediate tensors carry the contract's axis names (what lets ONNX Runtime prove shapes equal)
    named = {
        d.dim_param for v in graphs["branch_rain"].graph.value_info for d in v.type.tensor_type.shape.dim
    }
    assert {"height/2", "width/2", "height", "width"} <= named


def test_unblocked_export_keeps_the_model_operators():
    from edgerestore.export import export_module, graph_specs

    model = _model(branch_decoders={"rain": "subpixel"})
    specs = {s[0]: s for s in graph_specs(model, blocked=False)}
    for name, expected in (("branch_rain", {"Softmax", "DepthToSpace"}), ("branch_snow", {"ConvTranspose"})):
        _, module, inputs, in_names, out_names, dims, stride = specs[name]
        graph = export_module(module, inputs, in_names, out_names, dims, stride=stride)
        assert expected <= {n.op_type for n in graph.graph.node}, name


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="NCHWc layout is x86 only")
def test_onnx_runtime_keeps_the_branch_in_its_blocked_layout(blocked_export, tmp_path):
    import onnxruntime as ort

    _, result = blocked_export
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(result.out_dir / "branch_rain.onnx"), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    # in once (the features), out twice (the expert logits for their softmax, the NHWC correction)
    assert ops.count("ReorderInput") == 1 and ops.count("ReorderOutput") == 2, ops
    assert "Relu" not in ops, "a residual add or ReLU fell out of the blocked convolutions"


def test_label_spatial_dims_names_only_what_follows_the_inputs():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "height/2", "width/2"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, None, None])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4, 3, 3], np.zeros(144, np.float32))
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["same"], pads=[1, 1, 1, 1]),
            helper.make_node("Conv", ["same", "w"], ["y"]),  # valid: 2 smaller, not the input's axes
        ],
        "g",
        [x],
        [y],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert label_spatial_dims(model, stride=2) == 1
    (value,) = model.graph.value_info
    assert value.name == "same"
    assert [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] == [
        1,
        4,
        "height/2",
        "width/2",
    ]


def test_the_shipped_uffn_graphs_are_in_the_blocked_forms():
    from edgerestore import assets

    for profile in ("uffn-tiny", "uffn-small"):
        root = assets.SHIPPED_ROOT / profile
        if not root.is_dir():
            pytest.skip(f"no shipped {profile} graphs")
        for path in sorted(root.glob("branch_*.onnx")):
            graph = onnx.load(str(path)).graph
            ops = {n.op_type for n in graph.node}
            assert not ops & {"Softmax", "DepthToSpace", "ConvTranspose"}, (
                f"{path}: re-run make shipped-graphs"
            )
            assert any(
                d.dim_param == "height/2" for v in graph.value_info for d in v.type.tensor_type.shape.dim
            )
