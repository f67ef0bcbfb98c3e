"""`edgerestore info`: the model zoo (params, MACs) and what this machine can run. Imports torch lazily."""

from __future__ import annotations

import argparse
import importlib.util
import platform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-zoo", action="store_true", help="skip the model zoo table (needs torch)")


def _available(module: str) -> str:
    if importlib.util.find_spec(module) is None:
        return "not installed"
    mod = importlib.import_module(module)
    return getattr(mod, "__version__", "installed")


def run(args: argparse.Namespace) -> int:
    print(f"python {platform.python_version()} on {platform.machine()} ({platform.processor() or 'cpu'})")
    for module in ("onnxruntime", "onnx", "cv2", "torch", "tensorrt", "tensorrt_rtx"):
        print(f"  {module:<13} {_available(module)}")
    if args.no_zoo or importlib.util.find_spec("torch") is None:
        return 0
    from edgerestore.models.zoo import zoo_table

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
