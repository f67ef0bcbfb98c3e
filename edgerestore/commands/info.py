"""`edgerestore info`: the model zoo (params, MACs) and what this machine can run. Imports torch lazily."""

from __future__ import annotations

import argparse
import importlib
import platform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-zoo", action="store_true", help="skip the model zoo table (needs torch)")


def _available(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return "not installed"
    return getattr(mod, "__version__", "installed")


def run(args: argparse.Namespace) -> int:
    print(f"python {platform.python_version()} on {platform.machine()} ({platform.processor() or 'cpu'})")
    for module in ("onnxruntime", "onnx", "cv2", "torch", "tensorrt", "tensorrt_rtx"):
        print(f"  {module:<13} {_available(module)}")
    if args.no_zoo:
        return 0
    try:
        from edgerestore.models.zoo import zoo_table
    except ImportError as exc:
        print(
            f"\nmodel zoo table skipped: it counts parameters with torch ({exc.name or exc} is not installed: "
            "pip install torch==2.13.0 && pip install 'edgerestore[train]')"
        )
        return 0

    print(
        "\n| profile | family | params | params per routed frame | GMACs 256×256 | GMACs 640×360 | intended for |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in zoo_table():
        print(
            f"| `{r['profile']}` | {r['family']} | {r['params']:,} | {r['params_routed']:,} | "
            f"{r['gmacs_256']:.2f} | {r['gmacs_640x360']:.2f} | {r['summary']} |"
        )
    return 0
