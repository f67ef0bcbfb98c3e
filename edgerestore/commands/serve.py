"""`edgerestore serve`: the restorer on NVIDIA Triton Inference Server through PyTriton (HTTP, gRPC, metrics,
dynamic batching, several model instances). Needs the serving environment (`make serving-venv`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgerestore.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, required=True, help="engine bundle folder")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument("--grpc-port", type=int, default=None, help="gRPC port (default: --port + 1)")
    parser.add_argument("--metrics-port", type=int, default=None, help="metrics port (default: --port + 2)")
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for every interface)",
    )
    parser.add_argument("--instances", type=int, default=2, help="model instances, each its own restorer")
    parser.add_argument("--max-batch-size", type=int, default=8, help="dynamic batching: frames per batch")
    parser.add_argument(
        "--queue-delay-us",
        type=int,
        default=2000,
        help="dynamic batching: how long a frame may wait for others",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="ONNX Runtime intra-op threads per instance"
    )
    parser.add_argument(
        "--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt"), help="default: the bundle's"
    )
    parser.add_argument(
        "--stop-after", type=float, default=None, metavar="SECONDS", help="stop by itself after this long"
    )
    parser.add_argument("--log-file", type=Path, default=None, help="tritonserver's log (default: stdout)")


def run(args: argparse.Namespace) -> int:
    from edgerestore.serving.server import Ports, serve

    if not (args.bundle / "manifest.json").is_file():
        raise UserError(f"--bundle {args.bundle}: no manifest.json there; build one with `edgerestore build`")
    ports = Ports(
        args.port,
        args.grpc_port if args.grpc_port is not None else args.port + 1,
        args.metrics_port if args.metrics_port is not None else args.port + 2,
    )
    for port in (ports.http, ports.grpc, ports.metrics):
        if not 0 < port < 65536:
            raise UserError(f"port {port} is not a TCP port (1-65535)")
    if args.stop_after is not None and args.stop_after <= 0:
        raise UserError("--stop-after: give a positive number of seconds")
    serve(
        args.bundle,
        stop_after_s=args.stop_after,
        address=args.address,
        ports=ports,
        instances=args.instances,
        max_batch_size=args.max_batch_size,
        queue_delay_us=args.queue_delay_us,
        threads=args.threads,
        backend=args.backend,
        log_file=args.log_file,
    )
    return 0
