"""A bounded load test of `edgerestore serve` on 127.0.0.1: N concurrent `tritonclient` clients each send M
frames of mixed conditions; every response must arrive and equal the in-process `Restorer`'s output bit for
bit (image, condition, restored flag). Reports throughput and p50/p99 latency of the server and of the
in-process loop over the same frames, measured in the same run, and the batches Triton's metrics counted.

    .venv-serving/bin/python -m edgerestore.serving.loadtest --bundle B --clients 4 --frames 16 [--json out.json]

Bounded: N x M requests, each with a client timeout, the whole run within `--timeout` seconds; the server is
started here and always stopped here. Runs in the serving environment (PyTriton, tritonclient).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from edgerestore.errors import UserError


def mixed_frames(count: int, size: tuple[int, int] = (96, 128), seed: int = 0) -> list[np.ndarray]:
    """`count` uint8 BGR frames cycling through the conditions: a textured scene tinted towards the synthetic
    router's colour for the condition (`edgerestore.testing.PROTOTYPES`), with that condition's synthetic
    weather on it (`data.degrade`), so trained and synthetic routers both see a mix."""
    import cv2

    from edgerestore.conditions import CONDITIONS
    from edgerestore.data.degrade import degrade
    from edgerestore.testing import PROTOTYPES

    rng = np.random.default_rng(seed)
    h, w = size
    frames = []
    for i in range(count):
        condition = CONDITIONS[i % len(CONDITIONS)]
        texture = cv2.GaussianBlur(rng.random((h, w, 3), dtype=np.float32), (0, 0), 3.0)
        tint = np.array(PROTOTYPES[condition][::-1], np.float32) / 255.0  # RGB for degrade
        rgb = np.clip(0.75 * tint + 0.5 * (texture - 0.5), 0, 1)
        weathered = degrade(rgb, condition, rng, severity=0.5)
        frames.append(np.ascontiguousarray((weathered[:, :, ::-1] * 255 + 0.5).astype(np.uint8)))
    return frames


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, np.float64)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def _metric(text: str, name: str, model: str) -> float:
    total = 0.0
    for m in re.finditer(rf'^{name}\{{[^}}]*model="{re.escape(model)}"[^}}]*\}} ([0-9.e+]+)$', text, re.M):
        total += float(m.group(1))
    return total


def scrape_metrics(port: int, model: str, responses: int, timeout_s: float = 10.0) -> str:
    """The metrics page of the server on 127.0.0.1:`port` once it counts `responses` inferences of `model`
    (Triton refreshes its metrics every 2 s), or as it is after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        if _metric(text, "nv_inference_count", model) >= responses or time.monotonic() > deadline:
            return text
        time.sleep(0.25)


def run(
    bundle: str | Path,
    *,
    clients: int = 4,
    frames: int = 8,
    protocol: str = "http",
    size: tuple[int, int] = (96, 128),
    instances: int = 2,
    threads: int | None = 1,
    timeout_s: float = 300.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the load test (see the module doc) and return its report; `ok` is True when every one of the
    clients x frames responses arrived and matched."""
    from edgerestore.runtime.restorer import Restorer
    from edgerestore.serving.protocol import MODEL_NAME
    from edgerestore.serving.server import start_server, stop_server

    if protocol not in ("http", "grpc"):
        raise UserError(f"--protocol {protocol!r}: expected http or grpc")
    if not (1 <= clients <= 64 and 1 <= frames <= 10_000):
        raise UserError("--clients must be 1..64 and --frames 1..10000 (a bounded load test)")
    started = time.monotonic()
    deadline = started + timeout_s
    # each client sends the same mix, starting at its own offset, so concurrent requests differ
    pool = mixed_frames(max(frames, 5), size, seed)
    plan = [[pool[(c + i) % len(pool)] for i in range(frames)] for c in range(clients)]

    # the in-process loop over every frame the clients will send (also the expected outputs)
    expected: list[list[Any]] = []
    local_ms: list[float] = []
    with Restorer.open(bundle, threads=threads) as restorer:
        restorer(pool[0])  # warm-up, as the server's first request warms its sessions
        t0 = time.perf_counter()
        for row in plan:
            out = []
            for f in row:
                t = time.perf_counter()
                r = restorer(f)
                local_ms.append((time.perf_counter() - t) * 1e3)
                out.append((np.array(r.image, copy=True), r.condition, bool(r.restored)))
            expected.append(out)
        local_s = time.perf_counter() - t0

    log = tempfile.NamedTemporaryFile(prefix="edgerestore-triton-", suffix=".log", delete=False)
    log.close()
    server, restorers, ports = start_server(bundle, instances=instances, threads=threads, log_file=log.name)
    lat: list[list[float]] = [[] for _ in range(clients)]
    mismatches: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        if protocol == "http":
            import tritonclient.http as tc

            cli = tc.InferenceServerClient(
                f"127.0.0.1:{ports.http}", connection_timeout=30.0, network_timeout=60.0
            )
        else:
            import tritonclient.grpc as tc

            cli = tc.InferenceServerClient(f"127.0.0.1:{ports.grpc}")
        try:
            for i, frame in enumerate(plan[c]):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"client {c}: the {timeout_s:g} s budget ran out at frame {i}")
                inp = tc.InferInput("frame", [1, *frame.shape], "UINT8")
                inp.set_data_from_numpy(frame[None])
                outs = [tc.InferRequestedOutput(n) for n in ("image", "condition", "restored")]
                kw = {"client_timeout": 60.0} if protocol == "grpc" else {}
                t = time.perf_counter()
                res = cli.infer(MODEL_NAME, [inp], outputs=outs, **kw)
                lat[c].append((time.perf_counter() - t) * 1e3)
                image = res.as_numpy("image")[0]
                condition = res.as_numpy("condition")[0, 0].decode()
                restored = bool(res.as_numpy("restored")[0, 0])
                want = expected[c][i]
                if not (np.array_equal(image, want[0]) and condition == want[1] and restored == want[2]):
                    diff = int(np.count_nonzero(image != want[0])) if image.shape == want[0].shape else -1
                    with lock:
                        mismatches.append(
                            f"client {c} frame {i}: server {condition}/{restored} vs in-process "
                            f"{want[1]}/{want[2]}, {diff} differing values"
                        )
        except Exception as exc:
            with lock:
                errors.append(f"client {c}: {type(exc).__name__}: {exc}")
        finally:
            cli.close()

    try:
        workers = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=max(1.0, deadline - time.monotonic()))
        served_s = time.perf_counter() - t0
        if any(w.is_alive() for w in workers):
            errors.append(f"clients still running after the {timeout_s:g} s budget")
        try:
            metrics = scrape_metrics(ports.metrics, MODEL_NAME, sum(len(row) for row in lat))
        except OSError as exc:
            metrics = ""
            errors.append(f"metrics endpoint: {exc}")
    finally:
        stop_server(server, restorers)
        Path(log.name).unlink(missing_ok=True)
    all_ms = [x for row in lat for x in row]
    received = len(all_ms)
    inferences = _metric(metrics, "nv_inference_count", MODEL_NAME)
    executions = _metric(metrics, "nv_inference_exec_count", MODEL_NAME)
    total = clients * frames
    conditions: dict[str, int] = {}
    for row in expected:
        for _, cond, _ in row:
            conditions[cond] = conditions.get(cond, 0) + 1
    return {
        "ok": received == total and not mismatches and not errors,
        "clients": clients,
        "frames_per_client": frames,
        "frame_size": list(size),
        "protocol": protocol,
        "instances": instances,
        "threads_per_instance": threads,
        "requests": total,
        "responses": received,
        "bit_exact": received - len(mismatches) if received else 0,
        "mismatches": mismatches[:10],
        "errors": errors[:10],
        "conditions": conditions,
        "server": {
            "fps": round(received / served_s, 2) if served_s > 0 else None,
            **(percentiles(all_ms) if all_ms else {}),
            "triton_inferences": int(inferences),
            "triton_batches": int(executions),
            "mean_batch": round(inferences / executions, 2) if executions else None,
        },
        "in_process": {"fps": round(total / local_s, 2), **percentiles(local_ms)},
        "wall_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m edgerestore.serving.loadtest", description=__doc__.split("\n")[0]
    )
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--frames", type=int, default=8, help="frames per client")
    p.add_argument("--protocol", choices=("http", "grpc"), default="http")
    p.add_argument("--size", default="96x128", metavar="HxW")
    p.add_argument("--instances", type=int, default=2)
    p.add_argument(
        "--threads", type=int, default=1, help="ONNX Runtime threads per instance (and in-process)"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole run")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    args = p.parse_args(argv)
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
        report = run(
            args.bundle,
            clients=args.clients,
            frames=args.frames,
            protocol=args.protocol,
            size=(h, w),
            instances=args.instances,
            threads=args.threads,
            timeout_s=args.timeout,
        )
    except UserError as exc:
        print(f"loadtest: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    if args.json is not None:
        from edgerestore.files import write_text_atomic

        write_text_atomic(args.json, text + "\n")
    print(text)
    s, local = report["server"], report["in_process"]
    print(
        f"{report['responses']}/{report['requests']} responses, {report['bit_exact']} bit-exact; "
        f"server {s.get('fps')} fps p50 {s.get('p50_ms')} ms p99 {s.get('p99_ms')} ms "
        f"(mean batch {s.get('mean_batch')}); in-process {local['fps']} fps p50 {local['p50_ms']} ms "
        f"p99 {local['p99_ms']} ms",
        file=sys.stderr,
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
