"""`edgerestore build`: an engine bundle for TensorRT or ONNX Runtime, exporting and converting precision
first when their outputs are missing or stale. Imports torch only if the export stage has to run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgerestore.commands._bundle import add_precision_argument

#: float16 on a CPU: ONNX Runtime has few fp16 CPU kernels and casts around the rest (measured ≈1.4x slower
#: than float32 per routed uffn-tiny frame on a 2-core AVX2 + FMA CPU; issue 21).
FP16_ON_CPU_WARNING = (
    "warning: fp16 is for GPUs: ONNX Runtime on a CPU runs it slower than fp32 (≈1.4x on an AVX2 CPU); "
    "leave out --precision for the CPU default, fp32"
)
#: INT8 pays when it is this much faster than float32 (issue 21's goal for a routed frame).
INT8_WORTH = 1.3


def _hw(text: str) -> list[int]:
    from edgerestore.errors import UserError

    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise UserError(f"shape {text!r} is not HxW (e.g. 720x1280)") from None
    return [h, w]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="uffn-tiny", help="zoo profile (default: uffn-tiny)")
    parser.add_argument("--checkpoint", type=Path, help="weights (default: weights/<profile>.pt)")
    add_precision_argument(parser)
    parser.add_argument(
        "--backend",
        choices=("auto", "tensorrt", "onnxruntime"),
        default="auto",
        help="auto: TensorRT when a CUDA GPU and TensorRT are present, else ONNX Runtime",
    )
    parser.add_argument(
        "--trt-module",
        choices=("tensorrt", "tensorrt_rtx"),
        help="TensorRT flavour (default: tensorrt if installed, else tensorrt_rtx)",
    )
    parser.add_argument("--min", dest="shape_min", default="64x64", help="smallest frame HxW (default 64x64)")
    parser.add_argument(
        "--opt", dest="shape_opt", default="720x1280", help="optimised frame HxW (default 720x1280)"
    )
    parser.add_argument(
        "--max", dest="shape_max", default="1088x1920", help="largest frame HxW (default 1088x1920)"
    )
    parser.add_argument(
        "--workspace", type=int, default=1024, help="TensorRT workspace in MiB (default 1024)"
    )
    parser.add_argument("--timing-cache", type=Path, help="TensorRT timing cache file, shared across graphs")
    parser.add_argument(
        "--calib",
        help="calibration frames for INT8/FP16 checks: a folder, a video or "
        "synthetic[:N] (default: the shipped set, edgerestore/shipped/calibration)",
    )
    parser.add_argument(
        "--export-root", type=Path, default=Path("export"), help="ONNX root (default export/)"
    )
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        help="bundle directory (default <engines>/<profile>-<backend>-<precision>, <engines>: $EDGERESTORE_ENGINES, "
        "else engines/ of the checkout, else ~/.local/share/edgerestore/engines)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="ONNX Runtime intra-op threads recorded (0: all)"
    )
    parser.add_argument("--force", action="store_true", help="redo export, precision and build")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def int8_speed_note(speedup: float, what: str) -> str:
    """The one line `build` prints after an ONNX Runtime INT8 bundle: whether it pays on this CPU."""
    if speedup >= INT8_WORTH:
        return f"INT8 here: {speedup:.2f}x faster than fp32 ({what})"
    how = "slower than" if speedup < 1.0 else "not enough faster than"
    return (
        f"note: INT8 does not pay on this CPU: {speedup:.2f}x the speed of fp32, {how} it ({what}; worth it "
        f"from {INT8_WORTH}x); the CPU default stays fp32"
    )


def _fp32_reference(profile: str, export_root: Path, graphs: list[str]) -> Path | None:
    """The float32 graphs the INT8 bundle was quantized from: export/<profile>/, else the shipped ones."""
    from edgerestore import assets

    for folder in (Path(export_root) / profile, assets.shipped_export(profile)):
        if folder is not None and all((folder / f"{g}.onnx").is_file() for g in graphs):
            return folder
    return None


def _say_if_int8_pays(bundle_dir: Path, profile: str, export_root: Path) -> None:
    from edgerestore.engines.bundle import load_bundle
    from edgerestore.measure.roofline import speedup_vs_fp32

    bundle = load_bundle(bundle_dir)
    reference = _fp32_reference(profile, export_root, bundle.graph_names)
    if reference is None:
        print("note: no float32 graphs beside this INT8 bundle to time it against", file=sys.stderr)
        return
    print(int8_speed_note(*speedup_vs_fp32(bundle_dir, reference)), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from edgerestore.engines.build import resolve_backend
    from edgerestore.files import check_writable
    from edgerestore.pipeline import ensure_bundle

    check_writable(args.export_root, "--export-root", folder=True)
    if args.out is not None:
        check_writable(args.out, "--out", folder=True)
    backend, _ = resolve_backend(args.backend, args.trt_module)
    if args.precision == "fp16" and backend == "onnxruntime":
        print(FP16_ON_CPU_WARNING, file=sys.stderr)

    result = ensure_bundle(
        args.profile,
        args.precision,
        args.backend,
        checkpoint=args.checkpoint,
        export_root=args.export_root,
        out=args.out,
        calib=args.calib,
        force=args.force,
        progress=not args.quiet,
        trt_module=args.trt_module,
        shape_profile={"min": _hw(args.shape_min), "opt": _hw(args.shape_opt), "max": _hw(args.shape_max)},
        workspace=args.workspace << 20,
        timing_cache=args.timing_cache,
        threads=args.threads,
    )
    print(result.summary)
    print(f"bundle: {result.bundle}  ({'ran: ' + ', '.join(result.ran) if result.ran else 'up to date'})")
    if args.precision == "int8" and backend == "onnxruntime" and "build" in result.ran:
        _say_if_int8_pays(result.bundle, args.profile, args.export_root)  # a second, once per build
    return 0
