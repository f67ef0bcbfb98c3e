"""`edgerestore serve`: the restorer behind NVIDIA Triton Inference Server through PyTriton.

PyTriton starts the `tritonserver` binary it ships (HTTP, gRPC and Prometheus metrics) and binds one model,
`edgerestore` (tensors in `protocol`), with Triton's dynamic batching and `instances` model instances, each
with its own `Restorer` (its own ONNX Runtime sessions or TensorRT contexts). Frames are independent (no
smoothing across requests of different streams). Everything listens on `address` (default 127.0.0.1).

PyTriton pins numpy < 2 and needs a Python whose `libpython` its Python stub loads: it runs from the serving
environment `make serving-venv` creates with Debian's /usr/bin/python3.11 (README, *Serving on Triton*).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgerestore.errors import UserError
from edgerestore.serving.protocol import INPUTS, MODEL_NAME, OUTPUTS, restore_batch

EXIT_TIMEOUT_S = 5  # in-flight requests get this long when the server stops


def _pytriton():
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig
    except ImportError as exc:
        raise UserError(
            f"serving needs PyTriton ({exc.name} is not installed here); create the serving environment with "
            "`make serving-venv` and run `.venv-serving/bin/edgerestore serve ...` (README, Serving on Triton)"
        ) from None
    return Triton, TritonConfig, ModelConfig, Tensor, DynamicBatcher


@dataclass
class Ports:
    http: int
    grpc: int
    metrics: int


def free_ports(address: str = "127.0.0.1", count: int = 3) -> list[int]:
    """`count` TCP ports free on `address` now (the OS picks them)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((address, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_server(
    bundle: str | Path,
    *,
    address: str = "127.0.0.1",
    ports: Ports | None = None,
    instances: int = 2,
    max_batch_size: int = 8,
    queue_delay_us: int = 2000,
    threads: int | None = None,
    backend: str = "auto",
    model_name: str = MODEL_NAME,
    log_file: str | Path | None = None,
) -> tuple[Any, list[Any], Ports]:
    """A started PyTriton `Triton` serving `bundle` (stop it with `.stop()`), its restorers (close them after
    stopping) and the ports it listens on. `log_file`: where tritonserver logs (default: this stdout)."""
    Triton, TritonConfig, ModelConfig, Tensor, DynamicBatcher = _pytriton()
    from edgerestore.runtime.restorer import Restorer

    if instances < 1 or max_batch_size < 1:
        raise UserError("--instances and --max-batch-size must be at least 1")
    if ports is None:
        ports = Ports(*free_ports(address))
    restorers = [Restorer.open(bundle, backend=backend, threads=threads) for _ in range(instances)]

    def instance(restorer: Any):
        def infer(requests: list[Any]) -> list[dict[str, Any]]:
            return [restore_batch(restorer, request["frame"]) for request in requests]

        return infer

    config = TritonConfig(
        http_address=address,
        http_port=ports.http,
        grpc_address=address,
        grpc_port=ports.grpc,
        metrics_address=address,
        metrics_port=ports.metrics,
        allow_metrics=True,
        exit_timeout_secs=EXIT_TIMEOUT_S,
        log_file=None if log_file is None else Path(log_file),
    )
    triton = Triton(config=config)
    try:
        triton.bind(
            model_name=model_name,
            infer_func=[instance(r) for r in restorers],
            inputs=[Tensor(name=n, dtype=d, shape=s) for n, (d, s) in INPUTS.items()],
            outputs=[Tensor(name=n, dtype=d, shape=s) for n, (d, s) in OUTPUTS.items()],
            config=ModelConfig(
                max_batch_size=max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=queue_delay_us),
            ),
            strict=True,
        )
        triton.run()
    except BaseException:
        triton.stop()
        for r in restorers:
            r.close()
        raise
    return triton, restorers, ports


def serve(bundle: str | Path, *, stop_after_s: float | None = None, **options: Any) -> None:
    """Serve until Ctrl-C, the server's exit, or `stop_after_s` seconds."""
    triton, restorers, ports = start_server(bundle, **options)
    address = options.get("address", "127.0.0.1")
    name = options.get("model_name", MODEL_NAME)
    print(
        f"serving {bundle} as model {name!r}: HTTP {address}:{ports.http}, gRPC {address}:{ports.grpc}, "
        f"metrics http://{address}:{ports.metrics}/metrics"
        + (f"; stopping after {stop_after_s:g} s" if stop_after_s else "; Ctrl-C stops"),
        flush=True,
    )
    deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
    try:
        while triton.is_alive() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
    finally:
        triton.stop()
        for r in restorers:
            r.close()
