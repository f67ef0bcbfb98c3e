"""Export: parity with PyTorch at odd sizes, the graph contract, folded operators, TensorRT acceptance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from edgerestore.contract import pad_to  # noqa: E402
from edgerestore.errors import UserError  # noqa: E402
from edgerestore.files import sha256_file  # noqa: E402
from edgerestore.graphs import load_onnx, ort_session  # noqa: E402

TINY = dict(width=8, experts=2, expert_dilations=(1, 2), router_width=8, thumbnail_size=32)


def _randomise_norms(model) -> None:
    """Non-trivial BatchNorm statistics, so that folding them into the convolutions is really tested."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture(scope="module")
def uffn_export(tmp_path_factory):
    from edgerestore.export import export_model
    from edgerestore.models import zoo

    torch.manual_seed(0)
    # the rain branch with the sub-pixel decoder, the others with the paper's transposed one: both are checked
    model = zoo.build("uffn-tiny", **TINY, branch_decoders={"rain": "subpixel"}).eval()
    _randomise_norms(model)
    with torch.no_grad():  # ShareSepConv kernels away from the identity they are initialised to
        for m in model.modules():
            if type(m).__name__ == "ShareSepConv":
                m.weight.add_(torch.rand_like(m.weight) * 0.2)
        model.branch("rain").decoder[3].weight.normal_(0, 0.1)  # not its zero initialisation
    out = tmp_path_factory.mktemp("export") / "uffn-tiny"
    result = export_model(
        model, out, "uffn-tiny", checkpoint_sha256="ab" * 32, parity_sizes=[(97, 131)], progress=False
    )
    return model, result


@pytest.fixture(scope="module")
def cmudrn_export(tmp_path_factory):
    from edgerestore.export import export_model
    from edgerestore.models import zoo

    torch.manual_seed(0)
    model = zoo.build("cmudrn-t3", width=8).eval()
    out = tmp_path_factory.mktemp("export") / "cmudrn-t3"
    result = export_model(
        model, out, "cmudrn-t3", loops=[1, 2], parity_sizes=[(37, 53), (20, 17)], progress=False
    )
    return model, result


def test_uffn_graphs_match_pytorch_at_odd_padded_sizes(uffn_export):
    _, result = uffn_export
    sizes = {p.size for p in result.parity if p.graph != "router"}
    assert (97, 131) in sizes  # padded by the check to 98x132, as the runtime does
    graphs = {p.graph for p in result.parity}
    assert graphs == {"router", "trunk", "branch_rain", "branch_haze", "branch_raindrop", "branch_snow"}
    for p in result.parity:
        assert p.max_abs_error <= 1e-4, p
        assert p.max_uint8_diff in (None, 0, 1), p


def test_cmudrn_graphs_match_pytorch_at_true_odd_sizes(cmudrn_export):
    _, result = cmudrn_export
    assert {(p.graph, p.size) for p in result.parity} == {
        (g, s) for g in ("cmudrn_t1", "cmudrn_t2") for s in ((37, 53), (20, 17))
    }
    assert all(p.ok and p.max_abs_error <= 1e-4 for p in result.parity)


def test_uint8_branch_output_equals_rounded_pytorch_on_a_padded_odd_frame(uffn_export):
    model, result = uffn_export
    rng = np.random.default_rng(3)
    frame = pad_to(rng.integers(0, 256, (97, 131, 3), dtype=np.uint8), 2)
    assert frame.shape[:2] == (98, 132)
    trunk = ort_session(result.out_dir / "trunk.onnx")
    branch = ort_session(result.out_dir / "branch_haze.onnx")
    features = trunk.run(None, {"frame": frame[None]})[0]
    out = branch.run(None, {"frame": frame[None], "features": features})[0]
    x = torch.from_numpy(frame[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref = model.branch("haze")(x, model.trunk(x)).clamp(0, 1)
    ref_u8 = torch.round(ref * 255).flip(1).permute(0, 2, 3, 1).numpy().astype(np.int32)
    assert out.dtype == np.uint8 and out.shape == (1, 98, 132, 3)
    assert np.abs(out.astype(np.int32) - ref_u8).max() <= 1


def test_graph_io_follows_the_contract(uffn_export, cmudrn_export):
    _, result = uffn_export
    meta = json.loads(result.model_json.read_text())
    assert meta["format"] == "edgerestore-onnx/1" and meta["profile"] == "uffn-tiny"
    assert meta["conditions"] == ["clean", "rain", "haze", "raindrop", "snow"]
    assert meta["stride"] == 2 and meta["thumbnail_size"] == 32
    assert meta["color_order"] == "BGR" and meta["layout"] == "NHWC" and meta["opset"] == 18
    assert meta["checkpoint_sha256"] == "ab" * 32 and meta["branch_scales"] == {}
    g = meta["graphs"]
    assert g["router"]["inputs"] == [{"name": "thumbnail", "dtype": "uint8", "shape": [1, 32, 32, 3]}]
    assert g["router"]["outputs"] == [{"name": "probs", "dtype": "float32", "shape": [1, 5]}]
    assert g["trunk"]["inputs"] == [{"name": "frame", "dtype": "uint8", "shape": [1, "height", "width", 3]}]
    assert g["trunk"]["outputs"] == [
        {"name": "features", "dtype": "float32", "shape": [1, 16, "height/2", "width/2"]}
    ]
    assert g["branch_snow"]["inputs"][1] == g["trunk"]["outputs"][0]
    assert g["branch_snow"]["outputs"] == [
        {"name": "restored", "dtype": "uint8", "shape": [1, "height", "width", 3]}
    ]
    for name, info in g.items():
        path = result.out_dir / info["file"]
        assert path.name == f"{name}.onnx" and info["sha256"] == sha256_file(path)
        model = onnx.load(str(path))
        assert model.opset_import[0].version == 18
        onnx.checker.check_model(model, full_check=True)
    cmeta = json.loads(cmudrn_export[1].model_json.read_text())
    assert set(cmeta["graphs"]) == {"cmudrn_t1", "cmudrn_t2"} and cmeta["stride"] == 1
    assert cmeta["graphs"]["cmudrn_t2"]["outputs"][0]["shape"] == [1, "height", "width", 3]


def test_reduced_resolution_branch_in_the_runtime_matches_the_model_composition(uffn_export, tmp_path):
    """A checkpoint whose haze branch runs at half resolution: model.json and the bundle carry the scale, and
    the runtime's downscale → trunk/branch → upsampled correction equals `UFFN.restore` within rounding."""
    import dataclasses
    import shutil

    from edgerestore.engines.build import build_bundle
    from edgerestore.runtime.restorer import Restorer

    model, result = uffn_export
    export_dir = tmp_path / "uffn-tiny"
    shutil.copytree(result.out_dir, export_dir)
    meta = json.loads((export_dir / "model.json").read_text())
    (export_dir / "model.json").write_text(json.dumps({**meta, "branch_scales": {"haze": 0.5}}))
    # min shape 16: a reduced frame below the bundle's min would be reflect-padded up to it (as any small frame is)
    profile = {"min": [16, 16], "opt": [96, 128], "max": [256, 256]}
    bundle = build_bundle(
        export_dir, backend="onnxruntime", shape_profile=profile, progress=False, engines_root=tmp_path
    ).bundle
    assert bundle.manifest.branch_scales == {"haze": 0.5}
    half = type(model)(dataclasses.replace(model.config, branch_scales={"haze": 0.5})).eval()
    half.load_state_dict(model.state_dict())
    yy, xx = np.mgrid[0:96, 0:128]
    frame = np.stack([yy * 2, xx * 2, (yy + xx)], -1).clip(0, 255).astype(np.uint8)  # smooth, like haze
    frame = (frame + np.random.default_rng(0).integers(0, 20, frame.shape)).clip(0, 255).astype(np.uint8)
    with Restorer.open(bundle.path, threads=1, force="haze") as r:
        got = r(frame)
    assert "reduced" in got.flags
    x = torch.from_numpy(frame[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref = half.restore(x, "haze").clamp(0, 1)
        full = model.restore(x, "haze").clamp(0, 1)
    to_u8 = lambda t: torch.round(t * 255).flip(1).permute(0, 2, 3, 1)[0].numpy().astype(int)  # noqa: E731
    diff = np.abs(got.image.astype(int) - to_u8(ref))
    assert diff.max() <= 2 and diff.mean() < 0.5, (diff.max(), diff.mean())
    assert np.abs(got.image.astype(int) - to_u8(full)).mean() > 4 * diff.mean()  # it is not the full path


def test_sharesepconv_and_batchnorm_are_folded_into_plain_convs(uffn_export, cmudrn_export):
    for result in (uffn_export[1], cmudrn_export[1]):
        for path in result.out_dir.glob("*.onnx"):
            ops = {n.op_type for n in onnx.load(str(path)).graph.node}
            assert not ops & {"Expand", "BatchNormalization", "Tile"}, (path.name, ops)
    ops = {n.op_type for n in onnx.load(str(uffn_export[1].out_dir / "trunk.onnx")).graph.node}
    assert "Conv" in ops


def test_decoders_export_without_transposed_conv_or_depth_to_space(uffn_export):
    # both decoders end at half resolution and shuffle into NHWC by Reshape/Transpose
    # (export_wrappers.BlockedGatedBranch); the model's own operators: test_export_blocked
    for name in ("rain", "snow"):
        ops = {n.op_type for n in onnx.load(str(uffn_export[1].out_dir / f"branch_{name}.onnx")).graph.node}
        assert not ops & {"ConvTranspose", "DepthToSpace"}, (name, ops)
        assert {"Reshape", "Transpose"} <= ops


def test_graphs_run_at_other_sizes_than_exported(uffn_export):
    _, result = uffn_export
    trunk = ort_session(result.out_dir / "trunk.onnx")
    for h, w in ((2, 2), (36, 200)):
        feats = trunk.run(None, {"frame": np.zeros((1, h, w, 3), np.uint8)})[0]
        assert feats.shape == (1, 16, h // 2, w // 2)


def test_missing_and_corrupt_graphs_give_one_line_user_errors(tmp_path, uffn_export):
    with pytest.raises(UserError) as missing:
        load_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf \xff\xfe" * 5)
    with pytest.raises(UserError) as corrupt:
        load_onnx(bad)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((uffn_export[1].out_dir / "trunk.onnx").read_bytes()[:300])
    with pytest.raises(UserError) as cut:
        load_onnx(truncated)
    for exc in (missing, corrupt, cut):
        assert "\n" not in str(exc.value) and "edgerestore export" in str(exc.value)


def test_opset_outside_tensorrt_range_is_refused(tmp_path):
    from edgerestore.export import export_model
    from edgerestore.models import zoo

    with pytest.raises(UserError, match="17–20"):
        export_model(zoo.build("cmudrn-t3", width=4), tmp_path, "cmudrn-t3", opset=13, parity_sizes=[])


def test_export_command_writes_graphs_and_model_json(tmp_path, capsys):
    from edgerestore.cli import main

    code = main(["export", "--profile", "cmudrn-t3", "--out", str(tmp_path), "--parity-sizes", "9x11"])
    out = capsys.readouterr().out
    assert code == 0
    assert (tmp_path / "cmudrn-t3" / "cmudrn_t3.onnx").is_file()
    meta = json.loads((tmp_path / "cmudrn-t3" / "model.json").read_text())
    assert meta["checkpoint_sha256"] is None and meta["loops"] == [3]
    assert "cmudrn_t3.onnx" in out and "parity" in out


def test_export_command_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    from edgerestore.cli import main

    code = main(["export", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not found" in err


# ----------------------------------------------------------------------------------------------------------
# TensorRT (tensorrt_rtx parses and builds on a CPU)


def _plant_unsupported_op(src: Path, dst: Path) -> str:
    model = onnx.load(str(src))
    graph = model.graph
    first = graph.node[0]
    planted_out = first.output[0] + "_planted"
    node = onnx.helper.make_node(
        "EdgerestorePlanted", [first.output[0]], [planted_out], name="planted_node", domain="edgerestore.test"
    )
    for n in graph.node[1:]:
        for i, name in enumerate(n.input):
            if name == first.output[0]:
                n.input[i] = planted_out
    graph.node.insert(1, node)
    model.opset_import.append(onnx.helper.make_opsetid("edgerestore.test", 1))
    onnx.save(model, str(dst))
    return node.name


def test_operator_check_names_a_planted_unsupported_node(uffn_export, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    from edgerestore.engines.tensorrt import TensorRTBuildError, check_graphs

    planted = tmp_path / "trunk.onnx"
    name = _plant_unsupported_op(uffn_export[1].out_dir / "trunk.onnx", planted)
    with pytest.raises(TensorRTBuildError) as exc:
        check_graphs([planted])
    assert name in str(exc.value)


def test_tensorrt_rtx_parses_and_builds_the_float32_graphs(uffn_export, cmudrn_export):
    pytest.importorskip("tensorrt_rtx")
    from edgerestore.engines.tensorrt import check_graphs

    paths = sorted(uffn_export[1].out_dir.glob("*.onnx")) + [cmudrn_export[1].out_dir / "cmudrn_t1.onnx"]
    checks = check_graphs(paths, shape_profile={"min": [32, 32], "opt": [64, 96], "max": [360, 640]})
    assert [c.graph for c in checks] == [p.stem for p in paths]


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_graph_contract(tmp_path):
    pytest.importorskip("onnxscript")
    from edgerestore.export import export_model
    from edgerestore.models import zoo

    torch.manual_seed(0)
    result = export_model(
        zoo.build("cmudrn-t3", width=4, loops=1).eval(),
        tmp_path,
        "cmudrn-t3",
        exporter="dynamo",
        parity_sizes=[(21, 17)],
        progress=False,
    )
    assert all(p.ok for p in result.parity)
    graph = result.graphs[0]
    assert graph.inputs == [{"name": "frame", "dtype": "uint8", "shape": [1, "height", "width", 3]}]
    assert "Expand" not in graph.ops


def test_router_calibration_travels_from_the_checkpoint_to_the_bundle(tmp_path):
    """export_model writes the checkpoint's router calibration (temperature, threshold) into model.json, and
    the bundle's manifest carries it to the Restorer, which then passes unsure frames through."""
    from edgerestore.engines.build import build_bundle
    from edgerestore.export import export_model
    from edgerestore.models import zoo
    from edgerestore.runtime.restorer import Restorer

    torch.manual_seed(0)
    model = zoo.build("uffn-tiny", **TINY).eval()
    record = {"temperature": 1.25, "threshold": 0.6, "clean_untouched": 0.99, "curve": {"threshold": [0.0]}}
    out = tmp_path / "uffn-tiny"
    export_model(model, out, "uffn-tiny", parity_sizes=[], progress=False, router_calibration=record)
    meta = json.loads((out / "model.json").read_text())
    assert meta["router_calibration"] == {"temperature": 1.25, "threshold": 0.6}  # no curve in the contract
    profile = {"min": [16, 16], "opt": [32, 32], "max": [64, 64]}
    bundle = build_bundle(
        out, backend="onnxruntime", shape_profile=profile, progress=False, engines_root=tmp_path
    ).bundle
    assert bundle.manifest.router_calibration == {"temperature": 1.25, "threshold": 0.6}
    with Restorer.open(bundle.path, threads=1) as r:
        assert (r.temperature, r.min_confidence) == (1.25, 0.6)
