"""`edgerestore export-triton`: an engine bundle as a Triton model repository (one model per graph and a
Python-backend BLS model running router -> trunk -> the selected branch). Writes files only: no Triton
package is needed to run it."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edgerestore.serving.protocol import MODEL_NAME
    from edgerestore.serving.repository import GRAPH_BACKENDS

    parser.add_argument("--bundle", type=Path, required=True, help="engine bundle folder (UFFN)")
    parser.add_argument("--out", type=Path, required=True, help="model repository folder to write")
    parser.add_argument(
        "--name",
        default=MODEL_NAME,
        help=f"the BLS model's name; graphs are NAME_<graph> (default {MODEL_NAME})",
    )
    parser.add_argument("--instances", type=int, default=1, help="instances of the BLS model (default 1)")
    parser.add_argument(
        "--graph-backend",
        choices=GRAPH_BACKENDS,
        default="platform",
        help="platform: onnxruntime_onnx / tensorrt_plan models (a GPU Triton); python: ONNX graphs run by "
        "ONNX Runtime in Python-backend models (a Triton with only the Python backend, e.g. PyTriton's)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    from edgerestore.files import check_writable
    from edgerestore.serving.repository import export_repository

    check_writable(args.out, "--out", folder=True)
    models = export_repository(
        args.bundle,
        args.out,
        name=args.name,
        instances=args.instances,
        graph_backend=args.graph_backend,
        overwrite=args.overwrite,
    )
    graphs = [m for m in models if m.name != args.name]
    kinds = sorted({m.platform or "python" for m in graphs})
    print(
        f"wrote {args.out}: {len(graphs)} graph models ({', '.join(kinds)}) and the BLS model {args.name!r}; "
        f"serve it with `tritonserver --model-repository {args.out}` (edgerestore installed for its Python backend)"
    )
    return 0
