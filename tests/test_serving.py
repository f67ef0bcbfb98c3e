"""Triton serving: `export-triton`'s model repository checked against the bundle manifest (here), and, in the
serving environment (`make serving-venv`; `make test-serving` runs this file with it), the repository loaded by
PyTriton's tritonserver, `edgerestore serve`, and the bounded localhost load test, all bit-exact with the
in-process Restorer. Every server listens on 127.0.0.1 and stops by itself; the tests stop them too."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgerestore.cli import main
from edgerestore.engines.bundle import Manifest
from edgerestore.errors import UserError
from edgerestore.files import sha256_file
from edgerestore.serving.repository import plan_repository
from edgerestore.testing import write_bundle

ROOT = Path(__file__).resolve().parent.parent
CHECKS = Path(__file__).parent / "serving_checks.py"


def _serving_python() -> str | None:
    """The serving environment's python if it has PyTriton and tritonclient, else None."""
    candidate = os.environ.get("EDGERESTORE_SERVING_PYTHON") or str(ROOT / ".venv-serving" / "bin" / "python")
    if not Path(candidate).is_file():
        return None
    probe = subprocess.run(
        [candidate, "-c", "import pytriton.triton, tritonclient.http, tritonclient.grpc"],
        capture_output=True,
        timeout=120,
    )
    return candidate if probe.returncode == 0 else None


SERVING_PYTHON = _serving_python()
needs_serving = pytest.mark.skipif(
    SERVING_PYTHON is None,
    reason="no serving environment with PyTriton (create it with `make serving-venv`; `make test-serving` runs these)",
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("bundle") / "b")


def _parse_config(text: str) -> dict:
    """name, platform/backend, max_batch_size, and (name, data_type, dims) per input and output."""
    tensors = {}
    for key in ("input", "output"):
        block = re.search(rf"^{key} \[\n(.*?)^\]", text, re.S | re.M).group(1)
        tensors[key] = [
            (n, t, [int(d) for d in dims.split(",")])
            for n, t, dims in re.findall(r'name: "(\w+)"\s+data_type: (\w+)\s+dims: \[ ([-\d, ]+) \]', block)
        ]
    return {
        "name": re.search(r'^name: "(.+)"', text, re.M).group(1),
        "platform": (re.search(r'^platform: "(.+)"', text, re.M) or [None, None])[1],
        "backend": (re.search(r'^backend: "(.+)"', text, re.M) or [None, None])[1],
        "max_batch_size": int(re.search(r"^max_batch_size: (\d+)", text, re.M).group(1)),
        **tensors,
    }


def test_export_triton_repository_matches_the_bundle_manifest(tmp_path, bundle, capsys):
    repo = tmp_path / "model_repository"
    assert main(["export-triton", "--bundle", str(bundle), "--out", str(repo), "--instances", "3"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    types = {"uint8": "TYPE_UINT8", "float32": "TYPE_FP32"}
    models = sorted(p.name for p in repo.iterdir())
    assert models == sorted(["edgerestore", *(f"edgerestore_{g}" for g in manifest["graphs"])])
    for graph, entry in manifest["graphs"].items():
        config = _parse_config((repo / f"edgerestore_{graph}" / "config.pbtxt").read_text())
        assert config["name"] == f"edgerestore_{graph}" and config["platform"] == "onnxruntime_onnx"
        assert config["max_batch_size"] == 0, "the graphs carry their batch dimension of 1"
        for key, specs in (("input", entry["inputs"]), ("output", entry["outputs"])):
            want = [
                (t["name"], types[t["dtype"]], [d if isinstance(d, int) else -1 for d in t["shape"]])
                for t in specs
            ]
            assert config[key] == want, (graph, key)
        model_file = repo / f"edgerestore_{graph}" / "1" / "model.onnx"
        assert sha256_file(model_file) == entry["sha256"]
    bls_text = (repo / "edgerestore" / "config.pbtxt").read_text()
    bls = _parse_config(bls_text)
    assert bls["backend"] == "python" and bls["max_batch_size"] > 1 and "dynamic_batching" in bls_text
    assert [t[0] for t in bls["input"]] == ["frame"]
    assert [t[0] for t in bls["output"]] == ["image", "condition", "confidence", "restored"]
    assert "count: 3" in bls_text
    assert (
        json.loads((repo / "edgerestore" / "1" / "manifest.json").read_text())["graphs"] == manifest["graphs"]
    )
    assert "class TritonPythonModel" in (repo / "edgerestore" / "1" / "model.py").read_text()
    # an existing repository is not overwritten by accident
    assert main(["export-triton", "--bundle", str(bundle), "--out", str(repo)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_tensorrt_bundles_become_tensorrt_plan_models(bundle):
    data = json.loads((bundle / "manifest.json").read_text())
    data |= {"backend": "tensorrt", "builder": {"name": "tensorrt", "version": "10.3"}}
    for entry in data["graphs"].values():
        entry["file"] = entry["file"].replace(".onnx", ".plan")
    models = plan_repository(Manifest.from_dict(data))
    graphs = [m for m in models if m.name != "edgerestore"]
    assert {m.platform for m in graphs} == {"tensorrt_plan"} and {m.kind for m in graphs} == {"KIND_GPU"}
    data["builder"]["name"] = "tensorrt_rtx"
    with pytest.raises(UserError, match="TensorRT-RTX"):
        plan_repository(Manifest.from_dict(data))


def test_serve_without_pytriton_is_one_line(bundle):
    probe = subprocess.run([sys.executable, "-c", "import pytriton"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("PyTriton is installed in this environment")
    proc = subprocess.run(
        [sys.executable, "-m", "edgerestore.cli", "serve", "--bundle", str(bundle), "--stop-after", "5"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "make serving-venv" in proc.stderr


def test_serve_refuses_a_busy_port_in_one_line(bundle):
    import socket

    from edgerestore.serving.server import Ports, check_ports_free

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"--grpc-port {port}: cannot listen on 127.0.0.1:{port}"):
            check_ports_free("127.0.0.1", Ports(0, port, 0))


def _run_check(*args: str, timeout: int = 400) -> dict:
    proc = subprocess.run(
        [SERVING_PYTHON, str(CHECKS), *args], capture_output=True, text=True, env=_env(), timeout=timeout
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


@needs_serving
@pytest.mark.slow
def test_repository_configs_parse_as_tritons_model_config(tmp_path, bundle):
    repo = tmp_path / "repo"
    assert main(["export-triton", "--bundle", str(bundle), "--out", str(repo)]) == 0
    report = _run_check("configs", str(repo))
    assert report["ok"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    router = report["models"]["edgerestore_router"]
    assert router["platform"] == "onnxruntime_onnx"
    assert router["inputs"] == [
        ["thumbnail", "TYPE_UINT8", manifest["graphs"]["router"]["inputs"][0]["shape"]]
    ]
    assert report["models"]["edgerestore"]["dynamic_batching"]


@needs_serving
@pytest.mark.slow
def test_pytritons_tritonserver_runs_the_bls_model_bit_exact(tmp_path, bundle):
    repo = tmp_path / "repo"
    args = ["export-triton", "--bundle", str(bundle), "--out", str(repo), "--graph-backend", "python"]
    assert main(args) == 0
    report = _run_check("repository", str(repo), str(bundle))
    assert report["ok"], report
    frames = report["frames"]
    restored = [f for f in frames if f["restored"]]
    assert restored and len(restored) < len(frames), "a mix of clean and restored frames"
    runs = report["runs"]
    # the BLS model ran the router on every frame, the trunk only on restored ones, and only the chosen branch
    assert runs["edgerestore"] == runs["edgerestore_router"] == len(frames)
    assert runs["edgerestore_trunk"] == len(restored)
    for condition in ("rain", "haze", "raindrop", "snow"):
        assert runs[f"edgerestore_branch_{condition}"] == sum(f["condition"] == condition for f in restored)


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited early: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/v2/models/edgerestore/ready", timeout=2
            ) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("the server did not become ready")


@needs_serving
@pytest.mark.slow
def test_edgerestore_serve_answers_http_and_metrics_and_stops_by_itself(tmp_path, bundle):
    from edgerestore.runtime.restorer import Restorer
    from edgerestore.serving.server import free_ports
    from edgerestore.testing import PROTOTYPES

    http, grpc, metrics = free_ports()
    cmd = [SERVING_PYTHON, "-m", "edgerestore.cli", "serve", "--bundle", str(bundle), "--port", str(http)]
    cmd += ["--grpc-port", str(grpc), "--metrics-port", str(metrics), "--stop-after", "40", "--threads", "1"]
    cmd += ["--log-file", str(tmp_path / "triton.log")]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_ready(http, proc)
        frame = np.full((20, 24, 3), PROTOTYPES["haze"], np.uint8)
        body = {
            "inputs": [
                {
                    "name": "frame",
                    "shape": [1, 20, 24, 3],
                    "datatype": "UINT8",
                    "data": frame.ravel().tolist(),
                }
            ],
            "outputs": [{"name": "image"}, {"name": "condition"}, {"name": "restored"}],
        }
        req = urllib.request.Request(
            f"http://127.0.0.1:{http}/v2/models/edgerestore/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            outputs = {o["name"]: o for o in json.loads(r.read())["outputs"]}
        with Restorer.open(bundle, threads=1) as restorer:
            want = restorer(frame)
        image = np.array(outputs["image"]["data"], np.uint8).reshape(outputs["image"]["shape"])[0]
        assert outputs["condition"]["data"] == ["haze"] and outputs["restored"]["data"] == [True]
        assert np.array_equal(image, want.image)
        from edgerestore.serving.loadtest import scrape_metrics

        text = scrape_metrics(metrics, "edgerestore", 1)
        assert 'nv_inference_request_success{model="edgerestore",version="1"} 1' in text
        out, _ = proc.communicate(timeout=120)  # --stop-after: it stops by itself
        assert proc.returncode == 0, out[-2000:]
        assert f"HTTP 127.0.0.1:{http}" in out and "stopping after 40 s" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@needs_serving
@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_load_test_every_response_is_bit_exact(tmp_path, bundle, protocol):
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [SERVING_PYTHON, "-m", "edgerestore.serving.loadtest", "--bundle", str(bundle), "--clients", "4"]
        + ["--frames", "6", "--protocol", protocol, "--timeout", "240", "--json", str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] and report["responses"] == report["requests"] == 24 and report["bit_exact"] == 24
    assert len(report["conditions"]) >= 3, "a mix of conditions"
    assert report["server"]["triton_inferences"] == 24 and report["server"]["triton_batches"] >= 1
    for side in ("server", "in_process"):
        assert report[side]["fps"] > 0 and report[side]["p99_ms"] >= report[side]["p50_ms"] > 0
