"""Precision: FP16 conversion without overflow, Q/DQ forms for TensorRT and ONNX Runtime, the accuracy guard."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

from edgerestore.errors import UserError  # noqa: E402
from edgerestore.graphs import ort_session  # noqa: E402
from edgerestore.precision import (  # noqa: E402
    Budgets,
    Frame,
    convert_fp16,
    fp16_unsafe_nodes,
    frames_from_folder,
    make_fp16,
    quantize_graph,
    split_holdout,
)

TINY = dict(width=8, experts=2, expert_dilations=(1, 2), router_width=8, thumbnail_size=32)


def _frames(n: int, seed: int, h: int = 40, w: int = 56) -> list[Frame]:
    """Smooth synthetic scenes with a 'rain' version: bright streaks added to the clean target."""
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        clean = cv2.resize(
            rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC
        )
        rain = clean.astype(np.int32)
        rain[:, rng.integers(0, w, 6)] += 60
        frames.append(Frame(f"rain_{i}", np.clip(rain, 0, 255).astype(np.uint8), clean, "rain"))
    return frames


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from edgerestore.export import export_model
    from edgerestore.models import zoo

    torch.manual_seed(0)
    model = zoo.build("uffn-tiny", **TINY).eval()
    out = tmp_path_factory.mktemp("precision") / "uffn-tiny"
    export_model(model, out, "uffn-tiny", parity_sizes=[], progress=False)
    return out


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _quantize_nodes(model: onnx.ModelProto, op: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == op]


def test_int8_trt_graph_is_symmetric_int8_with_float_biases(export_dir):
    frames = _frames(3, 0)
    feeds = [{"frame": f.image[None]} for f in frames]
    q = quantize_graph(export_dir / "trunk.onnx", feeds, "int8_trt", "minmax")
    inits = _initializers(q)
    zero_points = [
        inits[n.input[2]]
        for op in ("QuantizeLinear", "DequantizeLinear")
        for n in _quantize_nodes(q, op)
        if len(n.input) > 2
    ]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert not any(
        a.dtype in (np.uint8, np.int32)
        for a in inits.values()
        if a.size > 0 and a.ndim > 0 and a.dtype != np.int64
    )
    # weights per channel: some DequantizeLinear reads an int8 4-D tensor with one scale per output channel
    per_channel = [
        inits[n.input[1]].size
        for n in _quantize_nodes(q, "DequantizeLinear")
        if n.input[0] in inits and inits[n.input[0]].ndim == 4
    ]
    assert per_channel and all(s > 1 for s in per_channel)
    # the uint8 → float prologue is not quantized: the frame's Cast reads the graph input directly
    cast = next(n for n in q.graph.node if n.op_type == "Cast")
    assert cast.input[0] == "frame"


def test_int8_ort_graph_has_uint8_activations_and_keeps_dynamic_size(export_dir):
    frames = _frames(3, 1)
    feeds = [{"frame": f.image[None]} for f in frames]
    q = quantize_graph(export_dir / "trunk.onnx", feeds, "int8_ort", "percentile")
    inits = _initializers(q)
    act_zero = [inits[n.input[2]] for n in _quantize_nodes(q, "QuantizeLinear")]
    assert act_zero and all(z.dtype == np.uint8 for z in act_zero)
    weights = [
        inits[n.input[0]]
        for n in _quantize_nodes(q, "DequantizeLinear")
        if n.input[0] in inits and inits[n.input[0]].ndim == 4
    ]
    assert weights and all(w.dtype == np.int8 for w in weights)
    dims = [d.dim_param for d in q.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:3] == ["height", "width"]
    session = ort_session(q.SerializeToString())
    for h, w in ((24, 32), (50, 74)):
        assert session.run(None, {"frame": np.zeros((1, h, w, 3), np.uint8)})[0].shape == (
            1,
            16,
            h // 2,
            w // 2,
        )


def test_fp16_keeps_io_types_and_stays_finite_on_a_bright_large_frame(export_dir):
    model = onnx.load(str(export_dir / "branch_rain.onnx"))
    half = convert_fp16(model)
    ins = {i.name: i.type.tensor_type.elem_type for i in half.graph.input}
    assert ins == {"frame": TensorProto.UINT8, "features": TensorProto.FLOAT16}  # fp16 between fp16 graphs
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert any(i.data_type == TensorProto.FLOAT16 for i in half.graph.initializer)
    trunk = ort_session(export_dir / "trunk.onnx")
    bright = np.full((1, 360, 640, 3), 255, np.uint8)
    feeds = {"frame": bright, "features": trunk.run(None, {"frame": bright})[0]}
    half_feeds = {**feeds, "features": feeds["features"].astype(np.float16)}
    a = ort_session(half.SerializeToString()).run(None, half_feeds)[0].astype(np.int32)
    b = ort_session(export_dir / "branch_rain.onnx").run(None, feeds)[0].astype(np.int32)
    assert np.abs(a - b).max() <= 2


def test_fp16_graphs_keep_probs_float32_and_carry_features_in_float16_without_casts(export_dir):
    router = convert_fp16(onnx.load(str(export_dir / "router.onnx")))
    assert [o.type.tensor_type.elem_type for o in router.graph.output] == [TensorProto.FLOAT]  # was FLOAT16
    trunk = convert_fp16(onnx.load(str(export_dir / "trunk.onnx")))
    assert [o.type.tensor_type.elem_type for o in trunk.graph.output] == [TensorProto.FLOAT16]
    branch = convert_fp16(onnx.load(str(export_dir / "branch_rain.onnx")))
    reads = [n for n in branch.graph.node if "features" in n.input]
    assert reads and all(n.op_type != "Cast" for n in reads)  # no cast per consumer any more
    frame = np.full((1, 64, 96, 3), 120, np.uint8)
    feats = ort_session(trunk.SerializeToString()).run(None, {"frame": frame})[0]
    assert feats.dtype == np.float16
    out = ort_session(branch.SerializeToString()).run(None, {"frame": frame, "features": feats})[0]
    assert out.dtype == np.uint8 and out.shape == (1, 64, 96, 3)


def test_a_branch_beside_a_trunk_of_another_precision_gets_one_cast(export_dir, tmp_path):
    from edgerestore.precision import match_feature_types

    onnx.save(convert_fp16(onnx.load(str(export_dir / "trunk.onnx"))), tmp_path / "trunk.onnx")
    paths = {
        "trunk": tmp_path / "trunk.onnx",
        "branch_rain": export_dir / "branch_rain.onnx",
    }  # fp32 fallback
    retyped = match_feature_types(paths)["branch_rain"]
    ins = {i.name: i.type.tensor_type.elem_type for i in retyped.graph.input}
    assert ins["features"] == TensorProto.FLOAT16
    assert [n.op_type for n in retyped.graph.node if "features" in n.input] == ["Cast"]
    frame = np.full((1, 64, 96, 3), 120, np.uint8)
    feats = ort_session(paths["trunk"]).run(None, {"frame": frame})[0]
    out = ort_session(retyped.SerializeToString()).run(None, {"frame": frame, "features": feats})[0]
    ref = ort_session(export_dir / "branch_rain.onnx").run(
        None, {"frame": frame, "features": feats.astype(np.float32)}
    )[0]
    np.testing.assert_array_equal(out, ref)
    same = {"trunk": export_dir / "trunk.onnx", "branch_rain": export_dir / "branch_rain.onnx"}
    assert match_feature_types(same) == {}


@pytest.mark.filterwarnings("ignore:the float32 number")
def test_nodes_near_the_float16_range_are_kept_in_float32():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    big = numpy_helper.from_array(np.full((1, 4), 3.0e5, np.float32), "big")
    small = numpy_helper.from_array(np.full((1, 4), 1.0e-5, np.float32), "small")
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "big"], ["h"], name="blow_up"),
            helper.make_node("Mul", ["h", "small"], ["y"], name="shrink"),
        ],
        "overflow",
        [x],
        [y],
        [big, small],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feeds = [{"x": np.ones((1, 4), np.float32)}]
    hot = fp16_unsafe_nodes(model, feeds)
    assert hot == ["blow_up", "shrink"]
    naive = ort_session(convert_fp16(model).SerializeToString()).run(None, feeds[0])[0]
    kept = ort_session(convert_fp16(model, keep_fp32_nodes=hot).SerializeToString()).run(None, feeds[0])[0]
    assert not np.allclose(naive, 3.0, rtol=0.1)  # clamped constant / overflow: silently wrong
    np.testing.assert_allclose(kept, 3.0, rtol=1e-3)


def test_guard_accepts_fp16_and_falls_back_under_an_impossible_budget(export_dir):
    held = _frames(2, 2)
    ok = make_fp16(export_dir, held, Budgets(), progress=False)
    assert {a.precision for a in ok.accuracy.values()} == {"fp16"}
    impossible = Budgets(gt_loss_db=-100.0, fp16_min_psnr_db=1000.0, router_min_agreement=1.5)
    result = make_fp16(export_dir, held, impossible, progress=False)
    info = json.loads((export_dir / "fp16" / "precision.json").read_text())
    assert {g["precision"] for g in info["graphs"].values()} == {"fp32"}
    assert all("fell back from fp16 to fp32" in g["note"] for g in info["graphs"].values())
    assert info["budgets"]["fp16_min_psnr_db"] == 1000.0
    # the fallen-back files are the float32 graphs themselves
    assert (export_dir / "fp16" / "trunk.onnx").read_bytes() == (export_dir / "trunk.onnx").read_bytes()
    assert result.report_md.read_text().count("**fp32**") == 6


def test_int8_trt_ladder_passes_through_fp16_before_fp32(export_dir):
    from edgerestore.precision import make_int8

    frames = _frames(4, 3)
    calib, held = split_holdout(frames, 2)
    for f in held:  # without ground truth: INT8 is judged against float32 output, FP16 by its own budget
        f.target = None
    budgets = Budgets(fp16_min_psnr_db=20.0, int8_min_psnr_db=1000.0, router_min_agreement=0.0)
    result = make_int8(export_dir, "int8_trt", calib, held, "minmax", budgets, progress=False)
    used = {name: a.precision for name, a in result.accuracy.items()}
    assert used["router"] == "int8_trt"  # agreement budget 0 accepts it
    assert {used[g] for g in used if g != "router"} == {"fp16"}
    info = json.loads((export_dir / "int8_trt" / "precision.json").read_text())
    assert (
        info["graphs"]["trunk"]["precision"] == "fp16"
        and "fell back from int8_trt to fp16" in info["graphs"]["trunk"]["note"]
    )
    from edgerestore.precision import trt_quantizer

    assert info["settings"]["quantizer"].startswith(
        "modelopt" if trt_quantizer("minmax") == "modelopt" else "onnxruntime"
    )
    tried = result.accuracy["branch_rain"].tried
    assert [t["precision"] for t in tried][:2] == ["int8_trt", "fp16"]
    assert tried[0]["psnr_vs_gt"] is None and tried[-1]["precision"] == "fp16"


def test_frames_folder_with_ground_truth_and_holdout(tmp_path):
    import cv2

    (tmp_path / "gt").mkdir()
    for f in _frames(5, 4):
        cv2.imwrite(str(tmp_path / f"{f.name}.png"), f.image)
        cv2.imwrite(str(tmp_path / "gt" / f"{f.name}.png"), f.target)
    frames = frames_from_folder(tmp_path)
    assert len(frames) == 5 and all(f.target is not None and f.condition == "rain" for f in frames)
    calib, held = split_holdout(frames, 2)
    assert len(calib) == 3 and len(held) == 2 and not {f.name for f in calib} & {f.name for f in held}
    with pytest.raises(UserError):
        split_holdout(frames, 5)


def test_calibrate_command_reports_a_corrupt_graph_in_one_line(export_dir, tmp_path, capsys):
    import shutil

    from edgerestore.cli import main

    broken = tmp_path / "uffn-tiny"
    shutil.copytree(export_dir, broken, ignore=shutil.ignore_patterns("fp16", "int8_*"))
    (broken / "branch_snow.onnx").write_bytes(b"garbage")
    code = main(
        ["calibrate", "--export", str(broken), "--frames", str(tmp_path / "nothing"), "--precision", "fp16"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "branch_snow.onnx" in err
    code = main(["calibrate", "--export", str(tmp_path / "absent"), "--precision", "fp16"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "edgerestore export" in err


def test_tensorrt_rtx_builds_fp16_and_int8_trt_graphs_with_a_dynamic_profile(export_dir):
    pytest.importorskip("tensorrt_rtx")
    from edgerestore.engines.tensorrt import TensorRTBuildError, check_graphs

    frames = _frames(3, 5)
    trunk_feeds = [{"frame": f.image[None]} for f in frames]
    trunk = ort_session(export_dir / "trunk.onnx")
    branch_feeds = [{**x, "features": trunk.run(None, x)[0]} for x in trunk_feeds]
    out = export_dir / "trt-check"
    out.mkdir(exist_ok=True)
    paths = []
    for name, feeds in (("trunk", trunk_feeds), ("branch_rain", branch_feeds)):
        src = export_dir / f"{name}.onnx"
        for tag, model in (
            ("fp16", convert_fp16(onnx.load(str(src)))),
            ("int8_trt", quantize_graph(src, feeds, "int8_trt")),
        ):
            path = out / f"{name}_{tag}.onnx"
            onnx.save(model, str(path))
            paths.append(path)
    checks = check_graphs(paths, shape_profile={"min": [32, 32], "opt": [64, 96], "max": [360, 640]})
    assert len(checks) == 4
    # and the ONNX Runtime form is refused, naming a node (uint8 activations / int32 biases)
    ort_form = out / "branch_rain_int8_ort.onnx"
    onnx.save(quantize_graph(export_dir / "branch_rain.onnx", branch_feeds, "int8_ort"), str(ort_form))
    with pytest.raises(TensorRTBuildError, match="node"):
        check_graphs([ort_form])


def test_int8_trt_by_modelopt_is_float16_around_qdq_and_builds_strongly_typed(export_dir):
    """ModelOpt's ONNX quantizer (when installed) writes the TensorRT INT8 form: Q/DQ in TensorRT's
    placement, float16 elsewhere, features in float16; ONNX Runtime runs it and TensorRT-RTX builds it."""
    from edgerestore.precision import quantize_graph_modelopt, trt_quantizer

    if trt_quantizer("minmax") != "modelopt":
        pytest.skip("nvidia-modelopt is not installed (pip install 'edgerestore[int8-trt]')")

    assert trt_quantizer("percentile") == "onnxruntime"
    frames = _frames(3, 6)
    trunk_feeds = [{"frame": f.image[None]} for f in frames]
    trunk = quantize_graph_modelopt(export_dir / "trunk.onnx", trunk_feeds)
    ops = {n.op_type for n in trunk.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(i.data_type == TensorProto.FLOAT16 for i in trunk.graph.initializer)
    assert [o.type.tensor_type.elem_type for o in trunk.graph.output] == [TensorProto.FLOAT16]
    ref = ort_session(export_dir / "trunk.onnx")
    feats = [ref.run(None, x)[0] for x in trunk_feeds]
    branch = quantize_graph_modelopt(
        export_dir / "branch_rain.onnx", [{**x, "features": f} for x, f in zip(trunk_feeds, feats)]
    )
    q_trunk, q_branch = ort_session(trunk.SerializeToString()), ort_session(branch.SerializeToString())
    x = trunk_feeds[0]
    got = q_branch.run(None, {**x, "features": q_trunk.run(None, x)[0]})[0].astype(int)
    want = ort_session(export_dir / "branch_rain.onnx").run(None, {**x, "features": feats[0]})[0].astype(int)
    assert got.shape == want.shape and np.abs(got - want).mean() < 3.0
    if importlib.util.find_spec("tensorrt_rtx") is not None:
        from edgerestore.engines.tensorrt import check_graphs

        paths = []
        for name, model in (("trunk", trunk), ("branch_rain", branch)):
            paths.append(export_dir / f"mo_{name}.onnx")
            onnx.save(model, str(paths[-1]))
        assert (
            len(check_graphs(paths, shape_profile={"min": [32, 32], "opt": [64, 96], "max": [360, 640]})) == 2
        )


def _qdq_concat_with_float16_scales():
    """Q/DQ around a Concat with float16 scales, as NVIDIA ModelOpt writes a TensorRT INT8 graph over fp16."""
    s = numpy_helper.from_array(np.array(0.05, np.float16), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = []
    for n in ("a", "b"):
        nodes += [
            helper.make_node("QuantizeLinear", [n, "s", "z"], [n + "q"]),
            helper.make_node("DequantizeLinear", [n + "q", "s", "z"], [n + "d"]),
        ]
    nodes += [
        helper.make_node("Concat", ["ad", "bd"], ["c"], axis=1),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT16, [1, 2, 4, 4]) for n in "ab"]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 4, 4, 4])
    graph = helper.make_graph(nodes, "qdq_concat", inputs, [output], [s, z])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_tensorrt_form_int8_graphs_are_checked_as_written_not_through_ort_qdq_fusion():
    """ONNX Runtime fuses Q/DQ + Concat into QLinearConcat, which refuses float16 scales: the CMUDRN int8_trt
    graph could not even be loaded by the accuracy guard (`export --ship` failed). The guard now runs a
    TensorRT-form graph with ONNX Runtime's basic rewrites only."""

    data = _qdq_concat_with_float16_scales().SerializeToString()
    with pytest.raises(UserError, match="QLinearConcat"):
        ort_session(data)
    x = np.full((1, 2, 4, 4), 0.5, np.float16)
    assert np.allclose(ort_session(data, fuse_qdq=False).run(None, {"a": x, "b": x})[0], 0.5)


def test_guard_runs_int8_trt_graphs_without_qdq_fusion(tmp_path):
    from edgerestore.precision import GraphRunner

    path = tmp_path / "g.onnx"
    onnx.save(_qdq_concat_with_float16_scales(), path)
    runner = GraphRunner({("g", "int8_trt"): path, ("g", "int8_ort"): path}, threads=1)
    x = np.full((1, 2, 4, 4), 0.5, np.float16)
    assert runner.run("g", "int8_trt", {"a": x, "b": x}).shape == (1, 4, 4, 4)
    with pytest.raises(UserError, match="QLinearConcat"):  # ONNX Runtime's own form keeps its fusions
        runner.run("g", "int8_ort", {"a": x, "b": x})
