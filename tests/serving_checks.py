"""Checks that run inside the serving environment (PyTriton, tritonclient), started by tests/test_serving.py
as `SERVING_PYTHON tests/serving_checks.py CHECK ...`; each prints one JSON line and exits 0 when it passes.

* `configs REPO`: every config.pbtxt parses as Triton's own ModelConfig protobuf (tritonclient's copy).
* `repository REPO BUNDLE`: PyTriton's tritonserver loads the exported repository (the BLS model and the graph
  models) on 127.0.0.1 and restores mixed frames through the BLS model, each equal bit for bit to the
  in-process Restorer; the server is stopped before exiting.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def check_configs(repo: Path) -> dict:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    parsed = {}
    for path in sorted(repo.glob("*/config.pbtxt")):
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        parsed[config.name] = {
            "platform": config.platform,
            "backend": config.backend,
            "max_batch_size": config.max_batch_size,
            "inputs": [
                [t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)] for t in config.input
            ],
            "outputs": [
                [t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)] for t in config.output
            ],
            "instances": [g.count for g in config.instance_group],
            "dynamic_batching": config.HasField("dynamic_batching"),
        }
    return {"ok": bool(parsed), "models": parsed}


def check_repository(repo: Path, bundle: Path, frames: int = 10, timeout_s: float = 240.0) -> dict:
    import tritonclient.http as tc
    from pytriton.triton import Triton, TritonConfig

    from edgerestore.runtime.restorer import Restorer
    from edgerestore.serving.loadtest import mixed_frames
    from edgerestore.serving.server import free_ports

    pool = mixed_frames(frames, (48, 64), seed=1)
    with Restorer.open(bundle) as restorer:
        expected = [restorer(f) for f in pool]
        expected = [(np.array(r.image, copy=True), r.condition, bool(r.restored)) for r in expected]
    http, grpc, metrics = free_ports()
    with tempfile.TemporaryDirectory() as tmp:
        config = TritonConfig(
            model_repository=repo,
            http_address="127.0.0.1",
            http_port=http,
            grpc_address="127.0.0.1",
            grpc_port=grpc,
            metrics_address="127.0.0.1",
            metrics_port=metrics,
            exit_timeout_secs=5,
            log_file=Path(tmp) / "triton.log",
        )
        triton = Triton(config=config)
        try:
            triton.run()
            client = tc.InferenceServerClient(f"127.0.0.1:{http}", network_timeout=60.0)
            deadline = time.monotonic() + timeout_s
            while not client.is_model_ready("edgerestore"):
                if time.monotonic() > deadline:
                    raise TimeoutError("the BLS model did not become ready")
                time.sleep(0.5)
            names = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
            loaded = [n for n in names if client.is_model_ready(n)]
            results = []
            for frame, want in zip(pool, expected):
                inp = tc.InferInput("frame", [1, *frame.shape], "UINT8")
                inp.set_data_from_numpy(frame[None])
                res = client.infer("edgerestore", [inp])
                got = (res.as_numpy("image")[0], res.as_numpy("condition")[0, 0].decode())
                results.append(
                    {
                        "condition": got[1],
                        "expected": want[1],
                        "restored": bool(res.as_numpy("restored")[0, 0]),
                        "equal": bool(np.array_equal(got[0], want[0]) and got[1] == want[1]),
                    }
                )
            client.close()
            from edgerestore.serving.loadtest import _metric, scrape_metrics

            text = scrape_metrics(metrics, "edgerestore", len(results))
            runs = {n: int(_metric(text, "nv_inference_count", n)) for n in names}
        finally:
            triton.stop()
    ok = all(r["equal"] for r in results) and len(results) == frames and loaded == names
    return {"ok": ok, "loaded": loaded, "frames": results, "runs": runs}


def main() -> int:
    check, *rest = sys.argv[1:]
    if check == "configs":
        report = check_configs(Path(rest[0]))
    elif check == "repository":
        report = check_repository(Path(rest[0]), Path(rest[1]))
    else:
        raise SystemExit(f"unknown check {check}")
    print("RESULT " + json.dumps(report), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
