"""TensorRT bundles: building with TensorRT-RTX on a CPU (float32, FP16, INT8 Q/DQ graphs, dynamic profile),
the manifest it writes, parser errors that name the node, and the version / compute-capability checks.

Building needs `tensorrt_rtx` (no GPU); running an engine needs a GPU and is marked `gpu`."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from engine_graphs import branch_graph, write_export_dir

from edgerestore.engines.build import build_bundle
from edgerestore.engines.bundle import load_bundle, sha256_file
from edgerestore.errors import BundleError, UserError
from edgerestore.runtime.nvidia import DeviceInfo, cuda_device_info

trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed (pip install tensorrt-rtx)")

from edgerestore.engines.tensorrt import TensorRTBuilder, TensorRTBuildError, frame_profile  # noqa: E402

PROFILE = {"min": [16, 16], "opt": [64, 96], "max": [256, 320]}


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return write_export_dir(
        tmp_path_factory.mktemp("export"), conditions=("rain",), variants=("fp16", "int8_trt")
    )


@pytest.fixture(scope="module")
def engines(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engines")


def _build(export_dir: Path, root: Path, precision: str, **kw):
    return build_bundle(
        export_dir,
        backend="tensorrt",
        precision=precision,
        shape_profile=PROFILE,
        trt_module="tensorrt_rtx",
        progress=False,
        engines_root=root,
        **kw,
    )


@pytest.fixture(scope="module")
def fp32_bundle(export_dir, engines) -> Path:
    return _build(export_dir, engines, "fp32").bundle.path


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_rtx_bundle_builds_on_cpu_with_dynamic_profile_and_right_manifest(export_dir, tmp_path, precision):
    result = _build(export_dir, tmp_path, precision)
    bundle = load_bundle(result.bundle.path, expect_backend="tensorrt", device=None)
    m = bundle.manifest
    assert bundle.path.name == f"tiny-test-tensorrt-{precision}"
    assert m.backend == "tensorrt" and m.precision == precision
    assert m.builder["name"] == "tensorrt_rtx" and m.builder["version"] == trt.__version__
    assert m.builder["strongly_typed"] is True
    assert m.device["tensorrt_version"] == trt.__version__ and m.device["tensorrt_module"] == "tensorrt_rtx"
    if (
        cuda_device_info() is None
    ):  # CPU-only AOT build: no GPU name, no compute capability, RTX default targets
        assert m.device["gpu_name"] is None and m.device["compute_capability"] is None
        assert m.device["target_compute_capabilities"] is None and m.device["built_on_cpu"] is True
    assert m.shape_profile == PROFILE
    assert bundle.graph_names == ["router", "trunk", "branch_rain"]
    sub = {"fp32": "", "fp16": "fp16", "int8": "int8_trt"}[precision]
    for name, entry in m.graphs.items():
        path = bundle.graph_path(name)
        assert path.suffix == ".engine" and path.stat().st_size == entry.size > 10_000
        assert entry.precision == precision
        assert entry.source_onnx_sha256 == sha256_file(export_dir / sub / f"{name}.onnx")
    assert m.graphs["branch_rain"].inputs[1] == {
        "name": "features",
        "dtype": "float32",
        "shape": [1, 4, "half_height", "half_width"],
    }
    assert [r.name for r in result.graphs] == ["router", "trunk", "branch_rain"]
    assert all(r.seconds > 0 for r in result.graphs)
    if precision == "fp32":  # no converted graph, nothing guarded
        assert result.accuracy == "" and all("measured_by" not in e.accuracy for e in m.graphs.values())
    elif cuda_device_info() is None:  # the engines cannot run here: the precision step's CPU numbers, named
        (by,) = {e.accuracy["measured_by"] for e in m.graphs.values()}
        assert by.startswith("onnxruntime ") and by.endswith("on the CPU (precision step)")
        assert result.accuracy.endswith(
            "not with the engines: no GPU here to run tensorrt_rtx engines (built on a CPU)"
        )


def test_a_gpu_without_a_usable_cuda_runtime_keeps_the_cpu_measurement(export_dir, tmp_path, monkeypatch):
    """The builder saw a GPU but the runtime cannot open it (cuda-python missing, an old driver): the build
    still succeeds, on the precision step's numbers, and says why the engines were not measured."""
    from edgerestore.engines.build import BuildSettings
    from edgerestore.engines.tensorrt import TensorRTBundleBuilder
    from edgerestore.runtime import trt as runtime_trt

    builder = TensorRTBundleBuilder(
        BuildSettings(shape_profile=PROFILE, engines_root=tmp_path, trt_module="tensorrt_rtx")
    )
    builder.builder.device = DeviceInfo(0, "NVIDIA RTX A4000", "8.6")

    def no_cuda(device: int = 0):
        raise UserError("no NVIDIA driver on this machine; use the onnxruntime backend on this machine")

    monkeypatch.setattr(runtime_trt, "CudaRuntime", no_cuda)
    backend, why = builder.measuring_backend()
    assert backend is None and why.startswith("no NVIDIA driver on this machine")
    builder.builder.device = DeviceInfo(0, "NVIDIA H100", "9.0")  # not among RTX's default targets
    backend, why = builder.measuring_backend()
    assert backend is None and why == (
        "these tensorrt_rtx engines target compute capability 8.0, 8.6, 8.9, 12.0, 12.1, not this GPU's 9.0"
    )


def test_profile_covers_frame_and_derived_features():
    rule = frame_profile(PROFILE)
    assert rule("frame", (1, -1, -1, 3)) == ((1, 16, 16, 3), (1, 64, 96, 3), (1, 256, 320, 3))
    assert rule("features", (1, 4, -1, -1)) == ((1, 4, 8, 8), (1, 4, 32, 48), (1, 4, 128, 160))
    with pytest.raises(TensorRTBuildError, match="input 'mask' has dynamic shape"):
        rule("mask", (1, -1, -1))


def test_builder_records_the_profile_of_each_dynamic_input(export_dir):
    builder = TensorRTBuilder("tensorrt_rtx", workspace=1 << 26, device=None)
    built = builder.build(export_dir / "branch_rain.onnx", frame_profile(PROFILE))
    assert set(built.inputs) == {"frame", "features"} and built.inputs["features"][2] == (1, 4, 128, 160)
    assert len(built.engine) > 10_000
    static = builder.build(export_dir / "router.onnx", frame_profile(PROFILE))
    assert static.inputs == {}  # the router's thumbnail is static: no profile


def test_parser_error_names_the_unsupported_node(tmp_path):
    path = tmp_path / "branch_bad.onnx"
    onnx.save(branch_graph(np.random.default_rng(0), unsupported_op=True), path)
    builder = TensorRTBuilder("tensorrt_rtx", device=None)
    with pytest.raises(TensorRTBuildError) as e:
        builder.build(path, frame_profile(PROFILE))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(
        f"tensorrt_rtx {trt.__version__} cannot parse branch_bad.onnx: node planted_bad_node (Frobnicate)"
    )


def test_explicit_rtx_targets_are_recorded_and_checked(export_dir, tmp_path):
    result = _build(export_dir, tmp_path, "fp32", trt_targets=["8.6"])
    path = result.bundle.path
    assert result.bundle.manifest.device["target_compute_capabilities"] == ["8.6"]
    assert load_bundle(path, device=DeviceInfo(0, "RTX 3090", "8.6")).manifest.precision == "fp32"
    with pytest.raises(
        BundleError, match=r"engines built for compute capability 8\.6, this GPU \(RTX 4090\) is 8\.9"
    ):
        load_bundle(path, device=DeviceInfo(0, "RTX 4090", "8.9"))


def test_unknown_rtx_target_is_a_user_error():
    builder = TensorRTBuilder("tensorrt_rtx", targets=["6.1"], device=None)
    with pytest.raises(UserError, match="cannot target compute capability 6.1; it knows .*8.6"):
        builder._config()


@pytest.mark.parametrize(
    "gpu, cc, ok",
    [
        ("RTX 4090", "8.9", True),
        ("RTX 5090", "12.0", True),
        ("A100", "8.0", True),
        ("RTX 2080 Ti", "7.5", False),  # Turing only when asked for
        ("Jetson AGX Orin", "8.7", False),  # not an RTX target
        ("H100", "9.0", False),
    ],
)
def test_default_rtx_engines_run_only_on_rtx_default_targets(fp32_bundle, gpu, cc, ok):
    if ok:
        assert load_bundle(fp32_bundle, device=DeviceInfo(0, gpu, cc)).path == fp32_bundle
        return
    with pytest.raises(BundleError) as e:
        load_bundle(fp32_bundle, device=DeviceInfo(0, gpu, cc))
    assert (
        f"engines built for compute capability 8.0, 8.6, 8.9, 12.0, 12.1 (the RTX default), this GPU ({gpu}) is {cc}"
        in str(e.value)
    )
    assert str(e.value).endswith("--backend tensorrt --precision fp32 --force")


def test_rtx_targets_are_normalised_when_built_and_when_checked(export_dir, tmp_path):
    result = _build(export_dir, tmp_path, "fp32", trt_targets=["12", "8.6.0"])
    path = result.bundle.path
    assert result.bundle.manifest.device["target_compute_capabilities"] == ["12.0", "8.6"]
    assert load_bundle(path, device=DeviceInfo(0, "RTX 5090", "12.0")).path == path
    assert load_bundle(path, device=DeviceInfo(0, "RTX 3090", "8.6")).path == path
    _edit_manifest(path, target_compute_capabilities=["12"])  # a manifest written before normalising
    assert load_bundle(path, device=DeviceInfo(0, "RTX 5090", "12.0")).path == path
    with pytest.raises(UserError, match="compute capability 'eight' is not of the form M.m"):
        TensorRTBuilder("tensorrt_rtx", targets=["eight"], device=None)


def test_an_invalid_shape_profile_is_one_line_naming_the_input(tmp_path):
    path = tmp_path / "branch_rain.onnx"
    onnx.save(branch_graph(np.random.default_rng(0)), path)
    builder = TensorRTBuilder("tensorrt_rtx", device=None)

    def backwards(name, shape):  # min > max: the bindings raise a RuntimeError
        return tuple(
            (1, shape[1] if shape[1] > 0 else 3, h, w) if name != "frame" else (1, h, w, 3)
            for h, w in [(64, 64), (32, 32), (16, 16)]
        )

    with pytest.raises(TensorRTBuildError) as e:
        builder.build(path, backwards)
    msg = str(e.value)
    assert "\n" not in msg and "refused the shape profile frame (1, 64, 64, 3) .. " in msg


def _edit_manifest(path: Path, **device) -> None:
    raw = json.loads((path / "manifest.json").read_text())
    raw["device"].update(device)
    (path / "manifest.json").write_text(json.dumps(raw))


def test_engines_from_another_tensorrt_version_are_refused(fp32_bundle, tmp_path):
    import shutil

    copy = tmp_path / fp32_bundle.name
    shutil.copytree(fp32_bundle, copy)
    _edit_manifest(copy, tensorrt_version="1.0.0.21")
    with pytest.raises(BundleError) as e:
        load_bundle(copy, device=None)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"engines built by tensorrt_rtx 1.0.0.21, this machine has {trt.__version__}" in msg
    assert msg.endswith(
        "rebuild with: edgerestore build --profile tiny-test --backend tensorrt --precision fp32 --force"
    )


def test_tampered_engine_is_refused(fp32_bundle, tmp_path):
    import shutil

    copy = tmp_path / fp32_bundle.name
    shutil.copytree(fp32_bundle, copy)
    data = bytearray((copy / "branch_rain.engine").read_bytes())
    data[-7] ^= 0xFF
    (copy / "branch_rain.engine").write_bytes(bytes(data))
    with pytest.raises(
        BundleError, match=r"branch_rain.engine sha256 mismatch \(file changed after build\); rebuild"
    ):
        load_bundle(copy, device=None)


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """A stand-in `tensorrt` module (TensorRT proper is not installable without a GPU): just a version."""
    module = types.ModuleType("tensorrt")
    module.__version__ = "10.3.0"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


def test_tensorrt_engines_for_another_compute_capability_are_refused(fp32_bundle, tmp_path, fake_tensorrt):
    import shutil

    copy = tmp_path / fp32_bundle.name
    shutil.copytree(fp32_bundle, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    raw["builder"] = {"name": "tensorrt", "version": "10.3.0"}
    raw["device"] = {"gpu_name": "Orin", "compute_capability": "8.7", "tensorrt_version": "10.3.0"}
    (copy / "manifest.json").write_text(json.dumps(raw))
    assert load_bundle(copy, device=DeviceInfo(0, "Orin", "8.7")).manifest.builder["name"] == "tensorrt"
    with pytest.raises(BundleError) as e:
        load_bundle(copy, device=DeviceInfo(0, "Xavier", "7.2"))
    assert "engines built for Orin (compute capability 8.7), this GPU is Xavier (7.2)" in str(e.value)
    with pytest.raises(BundleError) as e:  # the same compute capability, another GPU model
        load_bundle(copy, device=DeviceInfo(0, "Orin Nano", "8.7"))
    assert "engines built for Orin (compute capability 8.7), this GPU is Orin Nano (8.7)" in str(e.value)
    fake_tensorrt.__version__ = "10.7.0"
    with pytest.raises(BundleError, match="engines built by tensorrt 10.3.0, this machine has 10.7.0"):
        load_bundle(copy, device=DeviceInfo(0, "Orin", "8.7"))


def test_tensorrt_module_without_gpu_is_a_one_line_error(fake_tensorrt):
    with pytest.raises(UserError) as e:
        TensorRTBuilder(fake_tensorrt, device=None)
    msg = str(e.value)
    assert "\n" not in msg and "needs an NVIDIA GPU" in msg and "--trt-module tensorrt_rtx" in msg


@pytest.mark.gpu
def test_rtx_engine_deserializes_and_runs_on_the_gpu(fp32_bundle, export_dir):
    device = cuda_device_info()
    if device is None:
        pytest.skip("needs an NVIDIA GPU with a driver (cuda_device_info() found none)")
    import onnxruntime as ort
    from cuda.bindings import runtime as cudart

    def ok(ret):
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        assert int(err) == 0, err
        return rest[0] if rest else None

    bundle = load_bundle(fp32_bundle)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(bundle.graph_path("trunk").read_bytes())
    assert engine is not None, "a default-target RTX engine must deserialize on an Ampere+ GPU"
    context = engine.create_execution_context()
    frame = np.random.default_rng(0).integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    out = np.empty((1, 4, 16, 24), np.float32)
    context.set_input_shape("frame", frame.shape)
    d_in, d_out = ok(cudart.cudaMalloc(frame.nbytes)), ok(cudart.cudaMalloc(out.nbytes))
    try:
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        ok(cudart.cudaMemcpy(d_in, frame.ctypes.data, frame.nbytes, h2d))
        context.set_tensor_address("frame", int(d_in))
        context.set_tensor_address("features", int(d_out))
        stream = ok(cudart.cudaStreamCreate())
        assert context.execute_async_v3(int(stream))
        ok(cudart.cudaStreamSynchronize(stream))
        ok(cudart.cudaMemcpy(out.ctypes.data, d_out, out.nbytes, d2h))
        ok(cudart.cudaStreamDestroy(stream))
    finally:
        cudart.cudaFree(d_in)
        cudart.cudaFree(d_out)
    ref = ort.InferenceSession(str(export_dir / "trunk.onnx")).run(None, {"frame": frame})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("version", ["8.6.1", "10.0.1"])
def test_tensorrt_older_than_10_1_is_refused_by_builder_and_loader(
    fp32_bundle, tmp_path, fake_tensorrt, version
):
    import shutil

    fake_tensorrt.__version__ = version
    with pytest.raises(UserError, match=f"TensorRT {version} is too old: edgerestore needs TensorRT >= 10.1"):
        TensorRTBuilder(fake_tensorrt, device=DeviceInfo(0, "Orin", "8.7"))
    copy = tmp_path / fp32_bundle.name
    shutil.copytree(fp32_bundle, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    raw["builder"] = {"name": "tensorrt", "version": version}
    raw["device"] = {"gpu_name": "Orin", "compute_capability": "8.7", "tensorrt_version": version}
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError) as e:
        load_bundle(copy, device=DeviceInfo(0, "Orin", "8.7"))
    assert "\n" not in str(e.value) and f"TensorRT {version} is too old" in str(e.value)


def test_timing_cache_is_named_by_tensorrt_version_and_gpu_model(fake_tensorrt):
    from edgerestore.engines.tensorrt import timing_cache_name

    agx = timing_cache_name(fake_tensorrt, DeviceInfo(0, "Jetson AGX Orin", "8.7"))
    nano = timing_cache_name(fake_tensorrt, DeviceInfo(0, "Orin Nano", "8.7"))
    assert agx == ".timing-tensorrt-10.3.0-sm87-jetson-agx-orin.cache" and nano != agx
    assert timing_cache_name(fake_tensorrt, None) == ".timing-tensorrt-10.3.0.cache"


def test_a_refused_timing_cache_is_a_user_error(tmp_path):
    """`set_timing_cache` returns False for a cache TensorRT will not use; the builder says so."""
    builder = TensorRTBuilder("tensorrt_rtx", device=None)
    builder.rtx = False  # take the TensorRT (not RTX) path with RTX's config object wrapped to refuse
    builder.timing_cache_path = tmp_path / "t.cache"
    real = builder.builder.create_builder_config

    class Refusing:
        def __init__(self, config):
            self._c = config

        def __getattr__(self, name):
            return getattr(self._c, name)

        def create_timing_cache(self, blob):
            return object()

        def set_timing_cache(self, cache, ignore_mismatch):
            return False

    builder.builder = types.SimpleNamespace(create_builder_config=lambda: Refusing(real()))
    with pytest.raises(UserError, match="refused the timing cache .*t.cache"):
        builder._config()
