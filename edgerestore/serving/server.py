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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgerestore.errors import UserError
from edgerestore.serving.protocol import INPUTS, MODEL_NAME, OUTPUTS, restore_batch

EXIT_TIMEOUT_S = 5  # in-flight requests get this long when the server stops
START_TIMEOUT_S = 300  # tritonserver up and the model loaded, else the start fails (never a hang)
STOP_TIMEOUT_S = 60


class TritonThread:
    """Starts and stops a PyTriton `Triton` on one thread of its own, each step bounded in time: PyTriton can
    wait forever for a tritonserver that exited (a port taken between the check and the start), and
    tritonserver is tied to the thread that started it (it gets SIGTERM when that thread ends), so that thread
    lives until the stop."""

    def __init__(self, triton: Any) -> None:
        self.triton = triton
        self._started = threading.Event()
        self._release = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="edgerestore-triton")

    def _main(self) -> None:
        try:
            self.triton.run()
        except BaseException as exc:  # handed to start()
            self._error = exc
            self._release.set()
        self._started.set()
        self._release.wait()
        try:
            self.triton.stop()
        finally:
            self._stopped.set()

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise UserError(f"tritonserver did not start within {timeout_s:g} s; see its log (--log-file)")
        if self._error is not None:
            self._stopped.wait(STOP_TIMEOUT_S)
            if isinstance(self._error, UserError | KeyboardInterrupt):
                raise self._error
            reason = str(self._error).strip().splitlines()[0] if str(self._error).strip() else ""
            raise UserError(
                f"tritonserver did not start ({type(self._error).__name__}: {reason}); see its log (--log-file)"
            ) from self._error

    def is_alive(self) -> bool:
        return self._started.is_set() and not self._stopped.is_set() and self.triton.is_alive()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if not self._thread.is_alive():
            return
        self._release.set()
        if not self._stopped.wait(timeout_s):
            raise UserError(f"tritonserver did not stop within {timeout_s:g} s")


def stop_server(server: TritonThread, restorers: list[Any]) -> None:
    """Stop the server (bounded) and close the restorers."""
    try:
        server.stop()
    finally:
        for r in restorers:
            r.close()


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


def check_ports_free(address: str, ports: Ports) -> None:
    """`UserError` naming the first port another program holds on `address` (tritonserver would exit, and
    PyTriton wait for it, instead of saying so)."""
    for what, port in (
        ("--port", ports.http),
        ("--grpc-port", ports.grpc),
        ("--metrics-port", ports.metrics),
    ):
        with socket.socket() as s:
            try:
                s.bind((address, port))
            except OSError as exc:
                raise UserError(
                    f"{what} {port}: cannot listen on {address}:{port} ({exc.strerror or exc}); choose another port"
                ) from None


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
    """A started `TritonThread` serving `bundle` and its restorers (`stop_server(server, restorers)` stops
    both) and the ports it listens on. `log_file`: where tritonserver logs (default: this stdout)."""
    Triton, TritonConfig, ModelConfig, Tensor, DynamicBatcher = _pytriton()
    from edgerestore.runtime.restorer import Restorer

    if instances < 1 or max_batch_size < 1:
        raise UserError("--instances and --max-batch-size must be at least 1")
    if ports is None:
        ports = Ports(*free_ports(address))
    check_ports_free(address, ports)
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
    server = TritonThread(Triton(config=config))
    triton = server.triton
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
        server.start()
    except BaseException:
        stop_server(server, restorers)
        raise
    return server, restorers, ports


def serve(bundle: str | Path, *, stop_after_s: float | None = None, **options: Any) -> None:
    """Serve until Ctrl-C, the server's exit, or `stop_after_s` seconds."""
    server, restorers, ports = start_server(bundle, **options)
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
        while server.is_alive() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
    finally:
        stop_server(server, restorers)
