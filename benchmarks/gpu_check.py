"""`make gpu-check`: the GPU path measured on the GPU, in a few minutes, as one table.

On a machine with an NVIDIA GPU and TensorRT (or TensorRT-RTX) this

1. builds TensorRT bundles at fp32, fp16 and int8 through the project's builder (strongly typed networks,
   the shape profile rule, the timing cache, the accuracy guard re-run with the built engines: one line per
   fp16/int8 build under the table says what measured it), and an ONNX Runtime fp32 bundle as the reference;
2. checks each TensorRT bundle against the ONNX Runtime fp32 bundle on `--frames` synthetic weather frames
   per condition (router agreement, PSNR of the restored frame vs ONNX Runtime's), once with CUDA graphs
   off and again with them on (outputs must be identical);
3. times each TensorRT bundle (`bench_restorer`, routed frames) at `--bench-size`;
4. runs the `gpu` tests (`pytest -m gpu`), which skip without a GPU;

and prints one table. Without a GPU (or without TensorRT) it prints one line saying why and exits 0.

The graphs are the export directory given with `--export` (`export/<profile>`, with its `fp16/` and
`int8_trt/` precision variants), or, by default, the tiny synthetic graphs of the engine tests.

Usage: python benchmarks/gpu_check.py [--export export/uffn-tiny] [--frames 100] [--bench-size 720x1280]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "fp16", "int8")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def gpu_status() -> tuple[str | None, str | None]:
    """(TensorRT module, None) when the check can run, else (None, why not)."""
    from edgerestore.engines.build import default_trt_module
    from edgerestore.runtime.nvidia import cuda_device_status

    device, why = cuda_device_status()
    if device is None:
        return None, why
    module = default_trt_module()
    if module is None:
        return None, "no TensorRT module (tensorrt or tensorrt_rtx) is installed"
    return module, None


def synthetic_export(root: Path) -> Path:
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's pre-processing advice
    sys.path.insert(0, str(ROOT / "tests"))
    from engine_graphs import write_export_dir

    return write_export_dir(root, variants=("fp16", "int8_trt", "int8_ort"))


def parity(trt_bundle: Path, ref_bundle: Path, frames: list[tuple[str, np.ndarray]], backend: str) -> dict:
    from edgerestore.runtime.restorer import Restorer

    with Restorer.open(ref_bundle, threads=2) as ref:
        expected = [ref(f) for _, f in frames]
    out: dict = {}
    for graphs in (False, True):
        with Restorer.open(trt_bundle, backend=backend, cuda_graphs=graphs and backend == "tensorrt") as r:
            got = [r(f) for _, f in frames]
        out[graphs] = got
    plain, captured = out[False], out[True]
    psnr = [_psnr(g.image, e.image) for g, e in zip(plain, expected)]
    return {
        "router_agreement": float(np.mean([g.condition == e.condition for g, e in zip(plain, expected)])),
        "psnr_min": float(np.min(psnr)),
        "psnr_mean": float(np.mean([p for p in psnr if np.isfinite(p)] or [np.inf])),
        "graphs_identical": all(np.array_equal(a.image, b.image) for a, b in zip(plain, captured)),
    }


def latency(bundle: Path, size: tuple[int, int], frames: int, backend: str) -> tuple[float, float]:
    from edgerestore.measure.cases import bench_restorer
    from edgerestore.runtime.restorer import Restorer

    with Restorer.open(bundle, backend=backend, cuda_graphs=backend == "tensorrt") as r:
        case = bench_restorer(r, size, frames=frames, warmup=10)
    return case.stages["total"].p50, case.fps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--export", type=Path, help="export/<profile> with fp16/ and int8_trt/ (default: synthetic)"
    )
    parser.add_argument("--frames", type=int, default=100, help="synthetic frames per condition for parity")
    parser.add_argument("--size", default="256x320", help="parity frame size HxW")
    parser.add_argument("--bench-size", default="720x1280", help="latency frame size HxW")
    parser.add_argument("--bench-frames", type=int, default=100)
    parser.add_argument("--max", default="1088x1920", help="shape profile max HxW")
    parser.add_argument("--no-tests", action="store_true", help="skip `pytest -m gpu`")
    parser.add_argument(
        "--backend",
        default="tensorrt",
        choices=["tensorrt", "onnxruntime"],
        help="onnxruntime: a CPU dry run of the same steps (checks this script, not the GPU)",
    )
    args = parser.parse_args(argv)

    module, why = gpu_status() if args.backend == "tensorrt" else (None, None)
    if module is None and args.backend == "tensorrt":
        print(f"gpu-check: skipped, {why}")
        return 0

    from edgerestore.engines.build import build_bundle
    from edgerestore.measure.cases import parse_size, weather_frames
    from edgerestore.runtime.nvidia import cuda_device_info

    size, bench_size, hi = parse_size(args.size), parse_size(args.bench_size), parse_size(args.max)
    profile = {"min": [64, 64], "opt": list(bench_size), "max": list(hi)}
    from edgerestore.precision import Budgets

    device = cuda_device_info()
    budgets = Budgets()  # the accuracy guard's budgets, now against the engines themselves
    floor = {"fp32": 40.0, "fp16": budgets.fp16_min_psnr_db, "int8": budgets.int8_min_psnr_db}
    rows, failures, measured = [], 0, []
    with tempfile.TemporaryDirectory(prefix="edgerestore-gpu-check-") as tmp:
        root = Path(tmp)
        export = args.export or synthetic_export(root / "export")
        ref = build_bundle(
            export,
            root / "ref",
            backend="onnxruntime",
            precision="fp32",
            shape_profile=profile,
            progress=False,
            engines_root=root,
        ).bundle
        frames = [
            f for seed in range(args.frames) for f in weather_frames(size, ref.manifest.conditions, seed)
        ]
        for precision in PRECISIONS:
            start = time.perf_counter()
            try:
                built = build_bundle(
                    export,
                    root / f"trt-{precision}",
                    backend=args.backend,
                    precision=precision,
                    shape_profile=profile,
                    trt_module=module,
                    progress=False,
                    engines_root=root,
                )
            except Exception as exc:  # one row per failure, the table still prints
                rows.append((precision, "build failed", str(exc).splitlines()[0][:80]))
                failures += 1
                continue
            seconds = time.perf_counter() - start
            if built.accuracy:  # the build's own accuracy guard: with its engines, or the CPU's numbers
                measured.append(f"{precision}: {built.accuracy}")
            p = parity(built.bundle.path, ref.path, frames, args.backend)
            p50, fps = latency(built.bundle.path, bench_size, args.bench_frames, args.backend)
            ok = (
                p["router_agreement"] >= budgets.router_min_agreement
                and p["graphs_identical"]
                and p["psnr_mean"] >= floor[precision]
            )
            failures += not ok
            rows.append(
                (
                    precision,
                    f"{seconds:6.1f}",
                    f"{100 * p['router_agreement']:5.1f}%",
                    f"{p['psnr_min']:6.2f} / {p['psnr_mean']:6.2f}",
                    "yes" if p["graphs_identical"] else "NO",
                    f"{p50:7.2f}",
                    f"{fps:7.1f}",
                    "ok" if ok else "FAIL",
                )
            )
    tests = "skipped"
    if not args.no_tests:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-m",
                "gpu",
                "tests/test_runtime_trt.py",
                "tests/test_engines_tensorrt.py",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        tests = (run.stdout.strip().splitlines() or ["no output"])[-1]
        failures += run.returncode != 0
    name = f"{device.name} (sm {device.compute_capability})" if device else "?"
    print(
        f"gpu-check on {name}, {module or args.backend}; {args.frames} frames x {len(frames) // max(args.frames, 1)} "
        f"conditions at {args.size}, latency at {args.bench_size}"
    )
    head = ("precision", "build s", "router", "PSNR vs ORT fp32 min/mean", "graphs =", "p50 ms", "fps", "")
    print(" | ".join(head))
    for row in rows:
        print(" | ".join(row))
    for line in measured:
        print(line)
    print(f"gpu tests: {tests}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
