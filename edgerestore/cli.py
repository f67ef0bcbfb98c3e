"""The `edgerestore` command.

Each verb lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`; only the
module of the verb being run is imported, so `edgerestore camera` never imports torch and a broken
optional dependency breaks only the verbs that need it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgerestore.errors import UserError

# verb -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("edgerestore.commands.info", "show the model zoo (params, MACs) and what this machine can run"),
    "doctor": (
        "edgerestore.commands.doctor",
        "check this device: what is installed, which bundles can run here, and what to install",
    ),
    "eval": ("edgerestore.commands.eval", "PSNR/SSIM per condition, router accuracy, side-by-side images"),
    "restore": (
        "edgerestore.commands.restore",
        "restore images, folders, videos and ROS 2 recordings (.mcap), with a per-file condition report",
    ),
    "demo": (
        "edgerestore.commands.demo",
        "run a generated weather clip through the camera pipeline: side-by-side video, contact sheet, latency",
    ),
    "camera": (
        "edgerestore.commands.camera",
        "restore a camera, stream, video or image folder live (window or headless, record)",
    ),
    "train": (
        "edgerestore.commands.train",
        "train a zoo profile (synthetic weather and paired folders; torchrun for DDP)",
    ),
    "data": ("edgerestore.commands.data", "synthesise weather and preview it"),
    "export": (
        "edgerestore.commands.export",
        "write one ONNX graph per model part (+ model.json), checked against PyTorch",
    ),
    "calibrate": (
        "edgerestore.commands.calibrate",
        "FP16 and INT8 (Q/DQ) graphs from calibration frames, with an accuracy guard",
    ),
    "bench": (
        "edgerestore.commands.bench",
        "latency per stage and size, baselines and regression compare, sweeps",
    ),
    "build": (
        "edgerestore.commands.build",
        "build an engine bundle (TensorRT or ONNX Runtime), exporting and calibrating what is stale",
    ),
    "serve": (
        "edgerestore.commands.serve",
        "serve a bundle on NVIDIA Triton through PyTriton (HTTP, gRPC, metrics, dynamic batching)",
    ),
    "export-triton": (
        "edgerestore.commands.export_triton",
        "write a bundle as a Triton model repository (a model per graph + a Python BLS model)",
    ),
}


#: top-level module -> the extra of `pip install 'edgerestore[EXTRA]'` that installs it
EXTRAS: dict[str, str] = {
    "torch": "train",
    "onnxsim": "train",
    "onnxconverter_common": "train",
    "onnxscript": "train",
    "polygraphy": "train",
    "matplotlib": "train",
    "skimage": "train",
    "tensorrt": "tensorrt",
    "tensorrt_rtx": "tensorrt-rtx",
    "cuda": "gpu",
    "modelopt": "int8-trt",
    "onnx_graphsurgeon": "int8-trt",
    "onnxslim": "int8-trt",
    "mcap": "ros2",
    "mcap_ros2": "ros2",
    "pytriton": "serving",
    "tritonclient": "serving",
    "psutil": "dev",
}


def missing_package_message(verb: str, exc: ImportError) -> str | None:
    """One line naming the extra that installs the module `exc` could not import (None for a module that
    is not an optional dependency, e.g. a broken edgerestore module: that stays a traceback)."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    extra = EXTRAS[top]
    hint = "pip install torch==2.13.0 && " if extra == "train" else ""
    return (
        f"edgerestore {verb}: error: this needs {top}, which is not installed; install the "
        f"'{extra}' extra: {hint}pip install 'edgerestore[{extra}]'"
    )


def _top_parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    lines = "\n".join(f"  {verb:<{width}} {help_}" for verb, (_, help_) in COMMANDS.items())
    return argparse.ArgumentParser(
        prog="edgerestore",
        description="Bad-weather image restoration from training to a real-time camera loop.",
        epilog=f"commands:\n{lines}\n\nrun `edgerestore <command> --help` for a command's options",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from edgerestore import __version__

        print(f"edgerestore {__version__}")
        return 0
    verb = argv[0]
    if verb not in COMMANDS:
        print(
            f"edgerestore: error: unknown command {verb!r}; expected one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module_name, help_ = COMMANDS[verb]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        message = missing_package_message(verb, exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"edgerestore {verb}", description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"edgerestore {verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:  # an optional dependency imported inside run() (torch for a stale build, ...)
        message = missing_package_message(verb, exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = getattr(exc, "signal_name", None)
        print(f"edgerestore {verb}: {f'terminated ({what})' if what else 'interrupted'}", file=sys.stderr)
        return 143 if what == "SIGTERM" else 130


if __name__ == "__main__":
    sys.exit(main())
