"""Engine bundles: manifest, atomic writing, verification on load, and ONNX Runtime bundles end to end."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from engine_graphs import write_export_dir

from edgerestore.engines import build as build_mod
from edgerestore.engines.build import build_bundle, normalise_shape_profile, resolve_backend
from edgerestore.engines.bundle import (
    FORMAT_VERSION,
    GraphEntry,
    Manifest,
    bundle_dir_name,
    default_bundle_dir,
    load_bundle,
    normalise_compute_capability,
    parse_bundle_dir_name,
    rtx_target_supports,
    write_bundle,
)
from edgerestore.errors import BundleError, UserError
from edgerestore.runtime.nvidia import DeviceInfo, cuda_device_info, cuda_device_status

PROFILE = {"min": [16, 16], "opt": [64, 64], "max": [256, 256]}
REBUILD = "rebuild with: edgerestore build --profile tiny-test --backend onnxruntime --precision fp32 --force"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return write_export_dir(tmp_path_factory.mktemp("export"), conditions=("rain", "snow"))


@pytest.fixture
def ort_bundle(export_dir, tmp_path) -> Path:
    result = build_bundle(
        export_dir, backend="onnxruntime", shape_profile=PROFILE, progress=False, engines_root=tmp_path
    )
    return result.bundle.path


def _one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


# -- names ------------------------------------------------------------------------------------------------


def test_bundle_dir_name_round_trips_profile_backend_precision():
    name = bundle_dir_name("uffn-tiny", "tensorrt", "fp16")
    assert name == "uffn-tiny-tensorrt-fp16"
    assert parse_bundle_dir_name(name) == ("uffn-tiny", "tensorrt", "fp16")
    assert default_bundle_dir("cmudrn-t3", "onnxruntime", "int8") == Path(
        "engines/cmudrn-t3-onnxruntime-int8"
    )
    assert parse_bundle_dir_name("somewhere") is None


# -- ONNX Runtime bundles ---------------------------------------------------------------------------------


def test_onnxruntime_bundle_builds_loads_and_matches_source_graphs(export_dir, ort_bundle):
    import onnxruntime as ort

    bundle = load_bundle(ort_bundle, expect_backend="onnxruntime")
    m = bundle.manifest
    assert bundle.path.name == "tiny-test-onnxruntime-fp32"
    assert m.format_version == FORMAT_VERSION and m.backend == "onnxruntime" and m.precision == "fp32"
    assert bundle.graph_names == ["router", "trunk", "branch_rain", "branch_snow"]
    assert m.shape_profile == PROFILE and m.stride == 2 and m.thumbnail_size == 16
    assert (
        m.builder["name"] == "onnxruntime" and m.builder["saved_optimization_level"] == "ORT_ENABLE_EXTENDED"
    )
    assert m.session_options["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert m.device["onnxruntime_version"] == ort.__version__
    assert m.graphs["trunk"].inputs == [
        {"name": "frame", "dtype": "uint8", "shape": [1, "height", "width", 3]}
    ]
    assert m.graphs["trunk"].get("outputs")[0]["shape"] == [1, 4, "half_height", "half_width"]

    rng = np.random.default_rng(3)
    feed = {"frame": rng.integers(0, 256, (1, 24, 40, 3), dtype=np.uint8)}
    for name in ("trunk",):
        ref = ort.InferenceSession(str(export_dir / f"{name}.onnx")).run(None, feed)[0]
        got = ort.InferenceSession(str(bundle.graph_path(name))).run(None, feed)[0]
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    feats = ort.InferenceSession(str(bundle.graph_path("trunk"))).run(None, feed)[0]
    out = ort.InferenceSession(str(bundle.graph_path("branch_rain"))).run(None, {**feed, "features": feats})[
        0
    ]
    assert out.dtype == np.uint8 and out.shape == (1, 24, 40, 3)


def test_onnxruntime_int8_bundle_uses_the_ort_qdq_graphs_and_records_accuracy(export_dir, tmp_path):
    result = build_bundle(
        export_dir,
        backend="onnxruntime",
        precision="int8",
        shape_profile=PROFILE,
        progress=False,
        engines_root=tmp_path,
    )
    m = result.bundle.manifest
    src = export_dir / "int8_ort" / "trunk.onnx"
    from edgerestore.files import sha256_file

    assert m.graphs["trunk"].source_onnx_sha256 == sha256_file(src)
    assert all(g.precision == "int8" for g in m.graphs.values())
    assert m.graphs["branch_rain"].accuracy["psnr_vs_fp32"] == 48.5
    assert "48.5 dB vs fp32" in result.summary()


def test_fallback_precision_from_precision_json_is_recorded(export_dir, tmp_path):
    exp = tmp_path / "export" / "tiny-test"
    shutil.copytree(export_dir, exp)
    pj = exp / "fp16" / "precision.json"
    info = json.loads(pj.read_text())
    info["graphs"]["branch_snow"]["precision"] = "fp32"
    pj.write_text(json.dumps(info))
    (exp / "fp16" / "branch_snow.onnx").unlink()  # a fallen-back graph may be absent from the variant
    result = build_bundle(
        exp,
        backend="onnxruntime",
        precision="fp16",
        shape_profile=PROFILE,
        progress=False,
        engines_root=tmp_path,
    )
    snow = result.bundle.manifest.graphs["branch_snow"]
    assert snow.precision == "fp32" and snow.accuracy["fallback"] == "fell back to fp32"
    assert result.bundle.manifest.graphs["branch_rain"].precision == "fp16"


def test_up_to_date_bundle_is_kept_and_force_rebuilds(export_dir, tmp_path):
    kw = dict(backend="onnxruntime", shape_profile=PROFILE, progress=False, engines_root=tmp_path)
    first = build_bundle(export_dir, **kw)
    assert not first.skipped
    again = build_bundle(export_dir, **kw)
    assert again.skipped and "up to date" in again.summary()
    forced = build_bundle(export_dir, force=True, **kw)
    assert not forced.skipped
    other = build_bundle(export_dir, **{**kw, "shape_profile": {**PROFILE, "max": [512, 512]}})
    assert not other.skipped and other.bundle.manifest.shape_profile["max"] == [512, 512]


def test_build_refuses_bad_shape_profiles_and_missing_exports(export_dir, tmp_path):
    with pytest.raises(UserError, match="not a multiple of the model's stride 2"):
        normalise_shape_profile({"min": [15, 16], "opt": [64, 64], "max": [256, 256]}, 2)
    with pytest.raises(UserError, match="min <= opt <= max"):
        normalise_shape_profile({"min": [16, 16], "opt": [512, 64], "max": [256, 256]}, 2)
    with pytest.raises(UserError, match="edgerestore export --profile nothing"):
        build_bundle(tmp_path / "nothing", backend="onnxruntime", progress=False, engines_root=tmp_path)


def test_changed_source_graph_is_refused(export_dir, tmp_path):
    exp = tmp_path / "export" / "tiny-test"
    shutil.copytree(export_dir, exp)
    with open(exp / "trunk.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match="trunk.onnx changed after export"):
        build_bundle(exp, backend="onnxruntime", progress=False, engines_root=tmp_path)


def test_build_refuses_a_checkpoint_of_another_profile_and_names_unknown_profiles(
    export_dir, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("torch")
    from edgerestore.cli import main
    from edgerestore.exportdir import ExportDir
    from edgerestore.models import zoo

    monkeypatch.chdir(tmp_path)
    ckpt = zoo.save_checkpoint(tmp_path / "c.pt", zoo.build("cmudrn-t3", width=4), "cmudrn-t3")
    base = ["build", "--backend", "onnxruntime", "--export-root", "exp", "--quiet"]
    assert main([*base, "--profile", "uffn-tiny", "--checkpoint", str(ckpt), "--out", "b"]) == 2
    assert main([*base, "--profile", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"edgerestore build: error: checkpoint {ckpt} holds a cmudrn-t3 model, not uffn-tiny; "
        "use --profile cmudrn-t3 or a uffn-tiny checkpoint",
        "edgerestore build: error: unknown profile 'nosuch'; expected one of " + ", ".join(zoo.PROFILES),
    ]
    assert not (tmp_path / "exp").exists() and not (tmp_path / "b").exists()
    # an export folder already holding another profile's graphs is stale, so the check above runs again
    assert (
        ExportDir(export_dir).stale(ckpt, "uffn-tiny")
        == f"{export_dir} holds tiny-test graphs, not uffn-tiny"
    )


# -- backend choice ---------------------------------------------------------------------------------------


def test_auto_backend_is_onnxruntime_without_a_gpu(monkeypatch):
    monkeypatch.setattr(build_mod, "cuda_device_info", lambda: None)
    assert resolve_backend("auto") == ("onnxruntime", None)


def test_auto_backend_is_tensorrt_with_a_gpu_and_a_tensorrt_module(monkeypatch):
    monkeypatch.setattr(build_mod, "cuda_device_info", lambda: DeviceInfo(0, "Orin", "8.7"))
    monkeypatch.setattr(build_mod, "_importable", lambda name: name == "tensorrt_rtx")
    assert resolve_backend("auto") == ("tensorrt", "tensorrt_rtx")


def test_tensorrt_backend_without_any_tensorrt_module_is_one_line(monkeypatch):
    monkeypatch.setattr(build_mod, "_importable", lambda name: False)
    with pytest.raises(UserError) as e:
        resolve_backend("tensorrt")
    assert "--backend onnxruntime" in _one_line_error(e)


# -- verification on load ---------------------------------------------------------------------------------


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_file_is_refused_with_the_rebuild_command(ort_bundle):
    _flip_one_byte(ort_bundle / "branch_rain.onnx")
    with pytest.raises(BundleError) as e:
        load_bundle(ort_bundle)
    msg = _one_line_error(e)
    assert msg.startswith(f"{ort_bundle}: branch_rain.onnx sha256 mismatch (file changed after build); ")
    assert msg.endswith(REBUILD)


def test_truncated_file_is_refused(ort_bundle):
    path = ort_bundle / "trunk.onnx"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError) as e:
        load_bundle(ort_bundle)
    assert "trunk.onnx truncated or changed: 100 bytes" in _one_line_error(e)


def test_missing_graph_file_is_refused(ort_bundle):
    (ort_bundle / "router.onnx").unlink()
    with pytest.raises(BundleError) as e:
        load_bundle(ort_bundle)
    assert "router.onnx missing (graph router)" in _one_line_error(e) and REBUILD in str(e.value)


def test_missing_or_unparseable_manifest_is_refused(ort_bundle):
    (ort_bundle / "manifest.json").write_text("{not json")
    with pytest.raises(
        BundleError, match=r"manifest.json unreadable .*rebuild with: edgerestore build --profile tiny-test"
    ):
        load_bundle(ort_bundle)
    (ort_bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json missing"):
        load_bundle(ort_bundle)


def test_other_format_version_is_refused(ort_bundle):
    raw = json.loads((ort_bundle / "manifest.json").read_text())
    raw["format_version"] = 2
    (ort_bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError) as e:
        load_bundle(ort_bundle)
    assert "manifest format_version 2, this edgerestore reads 1" in _one_line_error(e)


def test_manifest_missing_a_field_is_refused(ort_bundle):
    raw = json.loads((ort_bundle / "manifest.json").read_text())
    del raw["graphs"]["trunk"]["sha256"]
    (ort_bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="malformed: graphs.trunk.sha256 missing"):
        load_bundle(ort_bundle)


def test_branch_scales_round_trip_and_bad_ones_are_refused(ort_bundle):
    assert load_bundle(ort_bundle).manifest.branch_scales == {}  # written by a model.json without any
    raw = json.loads((ort_bundle / "manifest.json").read_text())
    (ort_bundle / "manifest.json").write_text(json.dumps({**raw, "branch_scales": {"snow": 0.25}}))
    assert load_bundle(ort_bundle).manifest.branch_scales == {"snow": 0.25}
    for bad in ({"fog": 0.5}, {"snow": 0}, {"snow": "half"}, {"snow": True}, {"clean": 0.5}, [0.5]):
        (ort_bundle / "manifest.json").write_text(json.dumps({**raw, "branch_scales": bad}))
        with pytest.raises(BundleError, match="malformed: field 'branch_scales'"):
            load_bundle(ort_bundle)


def test_wrong_backend_is_refused_with_the_command_for_the_right_one(ort_bundle):
    with pytest.raises(BundleError) as e:
        load_bundle(ort_bundle, expect_backend="tensorrt")
    msg = _one_line_error(e)
    assert "bundle is for onnxruntime, not tensorrt" in msg
    assert msg.endswith("edgerestore build --profile tiny-test --backend tensorrt --precision fp32")


def test_absent_bundle_says_how_to_build_it(tmp_path):
    with pytest.raises(BundleError) as e:
        load_bundle(tmp_path / "uffn-tiny-tensorrt-fp16")
    assert _one_line_error(e).endswith(
        "no bundle here; rebuild with: edgerestore build --profile uffn-tiny --backend tensorrt --precision fp16"
    )


def test_bundle_in_another_place_gets_out_in_the_command(ort_bundle, tmp_path):
    moved = tmp_path / "camera-a"
    shutil.copytree(ort_bundle, moved)
    (moved / "router.onnx").unlink()
    with pytest.raises(BundleError, match=f"--out {moved} --force$"):
        load_bundle(moved)


def test_missing_backend_module_is_refused(ort_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(
        BundleError, match=r"Python module onnxruntime is not installed \(pip install onnxruntime\)"
    ):
        load_bundle(ort_bundle)


# -- atomic writing ---------------------------------------------------------------------------------------


def _manifest(graphs: dict[str, GraphEntry]) -> Manifest:
    return Manifest(
        family="uffn",
        profile="p",
        conditions=["clean"],
        stride=2,
        thumbnail_size=16,
        backend="onnxruntime",
        precision="fp32",
        graphs=graphs,
        shape_profile={k: [16, 16] for k in ("min", "opt", "max")},
        builder={"name": "onnxruntime", "version": "0"},
        device={},
    )


def test_write_bundle_leaves_nothing_when_a_file_fails(tmp_path):
    graphs = {n: GraphEntry(f"{n}.onnx", "fp32", "") for n in ("a", "b")}
    (tmp_path / "a.onnx").write_bytes(b"aaaa")
    out = tmp_path / "engines" / "p-onnxruntime-fp32"
    with pytest.raises(FileNotFoundError):
        write_bundle(out, _manifest(graphs), {"a": tmp_path / "a.onnx", "b": tmp_path / "absent.onnx"})
    assert not out.exists() and list((tmp_path / "engines").iterdir()) == []


def test_write_bundle_replaces_only_with_force_and_fills_hashes(tmp_path):
    out = tmp_path / "p-onnxruntime-fp32"
    b = write_bundle(out, _manifest({"a": GraphEntry("a.onnx", "fp32", "")}), {"a": b"one"})
    assert b.manifest.graphs["a"].size == 3 and len(b.manifest.graphs["a"].sha256) == 64
    with pytest.raises(UserError, match="exists; pass --force"):
        write_bundle(out, _manifest({"a": GraphEntry("a.onnx", "fp32", "")}), {"a": b"two"})
    write_bundle(out, _manifest({"a": GraphEntry("a.onnx", "fp32", "")}), {"a": b"three"}, force=True)
    assert (out / "a.onnx").read_bytes() == b"three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p-onnxruntime-fp32"]


# -- device query -----------------------------------------------------------------------------------------


def _fake_cudart(monkeypatch, count_err: int, major: int = 8, minor: int = 7, driver: int = 12060) -> None:
    prop = types.SimpleNamespace(name=b"Orin\x00\x00", major=major, minor=minor)
    rt = types.SimpleNamespace(
        cudaGetDeviceCount=lambda: (count_err, 1 if count_err == 0 else None),
        cudaGetDeviceProperties=lambda i: (0, prop),
        cudaDriverGetVersion=lambda: (0, driver),
        cudaRuntimeGetVersion=lambda: (0, 13000),
    )
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = rt  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)


def test_device_info_reads_name_and_compute_capability(monkeypatch):
    _fake_cudart(monkeypatch, 0)
    info = cuda_device_info()
    assert info == DeviceInfo(0, "Orin", "8.7", 12060) and info.sm == 87


def test_device_info_is_none_without_a_driver(monkeypatch):
    _fake_cudart(monkeypatch, 35, driver=0)  # cudaErrorInsufficientDriver and no driver: this machine
    assert cuda_device_info() is None
    assert cuda_device_status() == (None, "no NVIDIA driver on this machine")
    monkeypatch.setattr(build_mod, "_importable", lambda name: name == "tensorrt_rtx")
    assert resolve_backend("auto") == ("onnxruntime", None)


def test_a_driver_older_than_cuda_python_is_named_and_auto_does_not_fall_back(monkeypatch):
    """cuda-python 13 on a JetPack 6 (CUDA 12.6) driver: cudaErrorInsufficientDriver, with the fix."""
    _fake_cudart(monkeypatch, 35, driver=12060)
    device, why = cuda_device_status()
    assert device is None and "\n" not in why
    assert why.startswith("cudaErrorInsufficientDriver: CUDA 12.6 driver is older than the CUDA runtime")
    assert "(CUDA 13.0)" in why and "'edgerestore[gpu]' (cuda-python < 13" in why
    monkeypatch.setattr(build_mod, "_importable", lambda name: name == "tensorrt")
    with pytest.raises(
        UserError, match="--backend auto: tensorrt is installed but cudaErrorInsufficientDriver"
    ):
        resolve_backend("auto")


def test_gpu_extras_match_cuda_12_drivers():
    """`gpu` pins cuda-python below 13 (its runtime would need a CUDA 13 driver, which JetPack 6 lacks);
    CUDA 13 machines and TensorRT-RTX pick their builds by extra."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads TOML")
    root = Path(__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.replace(" ", "").startswith("cuda-python>=12.6,<13") for r in extras["gpu"])
    assert any(r.replace(" ", "").startswith("cuda-python>=13") for r in extras["gpu-cu13"])
    assert any(r.startswith("tensorrt-rtx-cu12") for r in extras["tensorrt-rtx-cu12"])
    assert any(
        r.startswith("tensorrt-rtx-cu13") or r.startswith("tensorrt-rtx") for r in extras["tensorrt-rtx"]
    )


@pytest.mark.parametrize(
    "given, want",
    [
        ("12", "12.0"),
        ("8.6.0", "8.6"),
        ("8.6", "8.6"),
        ("sm_86", "8.6"),
        ("SM120", "12.0"),
        ("current", "current"),
    ],
)
def test_compute_capabilities_are_normalised(given, want):
    assert normalise_compute_capability(given) == want


def test_rtx_default_targets_exclude_orin_and_hopper():
    assert rtx_target_supports(None, "8.6") and rtx_target_supports(None, "12.0")
    assert not rtx_target_supports(None, "8.7") and not rtx_target_supports(None, "9.0")
    assert not rtx_target_supports(None, "7.5") and rtx_target_supports(["7.5"], "7.5")
    assert rtx_target_supports(["12"], "12.0") and rtx_target_supports(["8.6.0"], "8.6")
    with pytest.raises(UserError):
        normalise_compute_capability("eight-six")


def test_a_format_version_given_as_text_says_so(ort_bundle):
    raw = json.loads((ort_bundle / "manifest.json").read_text())
    raw["format_version"] = "1"
    (ort_bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError) as e:
        load_bundle(ort_bundle)
    assert "manifest format_version '1' (not a number), this edgerestore reads 1" in _one_line_error(e)


def test_build_does_not_replace_another_models_bundle_or_a_folder_that_is_no_bundle(export_dir, tmp_path):
    kw = dict(backend="onnxruntime", shape_profile=PROFILE, progress=False)
    other = tmp_path / "small"
    built = build_bundle(export_dir, other, precision="fp16", **kw)  # another bundle (fp16) at --out
    before = (other / "manifest.json").read_text()
    with pytest.raises(
        UserError,
        match=r"holds another bundle \(tiny-test onnxruntime fp16\), not tiny-test onnxruntime fp32",
    ):
        build_bundle(export_dir, other, precision="fp32", **kw)
    assert (other / "manifest.json").read_text() == before and built.bundle.path == other
    assert (
        build_bundle(export_dir, other, precision="fp32", force=True, **kw).bundle.manifest.precision
        == "fp32"
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(UserError, match="holds no bundle"):
        build_bundle(export_dir, photos, **kw)
    assert (photos / "holiday.jpg").read_bytes() == b"precious"
