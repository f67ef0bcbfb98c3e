"""`edgerestore export-triton`: an engine bundle laid out as a standard Triton model repository.

    <out>/
      <name>_router/config.pbtxt, 1/model.onnx     one model per graph: platform onnxruntime_onnx (ONNX Runtime
      <name>_trunk/...                             bundles) or tensorrt_plan (TensorRT bundles, 1/model.plan),
      <name>_branch_rain/...                       inputs/outputs as the manifest lists them (batch 1 inside the
      ...                                          graph: max_batch_size 0, dynamic H/W as -1)
      <name>/config.pbtxt, 1/model.py, 1/manifest.json
                                                   the Python-backend BLS model clients call: router -> trunk ->
                                                   the one selected branch, each a BLS request to the models
                                                   above, with the runtime's own `Restorer` (so only that branch
                                                   runs); dynamic batching, `instances` instances

The BLS model imports `edgerestore` (its runtime: numpy, OpenCV; no torch), so Triton's Python backend needs
`pip install edgerestore` in its environment. `graph_backend="python"` writes each graph instead as a
Python-backend model that runs it with ONNX Runtime exactly as the in-process runtime does (for a Triton
without the onnxruntime backend, e.g. PyTriton's, which has only the Python backend; ONNX Runtime bundles only).

Written into a temporary folder beside `out` and renamed when complete. Imports no torch and no Triton package.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgerestore.errors import UserError
from edgerestore.serving.protocol import INPUTS, MODEL_NAME, OUTPUTS

#: numpy dtype name -> Triton data type
TRITON_TYPES = {
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "bool": "TYPE_BOOL",
    "bytes": "TYPE_STRING",
}
PLATFORMS = {"onnxruntime": ("onnxruntime_onnx", "model.onnx"), "tensorrt": ("tensorrt_plan", "model.plan")}
GRAPH_BACKENDS = ("platform", "python")
BLS_MAX_BATCH = 8


@dataclass
class ModelSpec:
    """One model of the repository, as its config.pbtxt says it."""

    name: str
    platform: str | None  # onnxruntime_onnx | tensorrt_plan, or None for the python backend
    max_batch_size: int
    inputs: list[tuple[str, str, list[int]]]  # (name, TYPE_*, dims)
    outputs: list[tuple[str, str, list[int]]]
    instances: int
    kind: str  # KIND_AUTO | KIND_GPU | KIND_CPU
    parameters: dict[str, str]
    dynamic_batching_us: int | None = None

    def config_text(self) -> str:
        lines = [f'name: "{self.name}"']
        lines.append(f'platform: "{self.platform}"' if self.platform else 'backend: "python"')
        lines.append(f"max_batch_size: {self.max_batch_size}")
        for key, tensors in (("input", self.inputs), ("output", self.outputs)):
            lines.append(f"{key} [")
            lines.append(
                ",\n".join(
                    f'  {{\n    name: "{n}"\n    data_type: {t}\n    dims: [ {", ".join(map(str, d))} ]\n  }}'
                    for n, t, d in tensors
                )
            )
            lines.append("]")
        if self.dynamic_batching_us is not None:
            lines.append(
                f"dynamic_batching {{\n  max_queue_delay_microseconds: {self.dynamic_batching_us}\n}}"
            )
        lines.append(f"instance_group [\n  {{\n    count: {self.instances}\n    kind: {self.kind}\n  }}\n]")
        for key, value in self.parameters.items():
            lines.append(
                f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{_escape(value)}" }}\n}}'
            )
        return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dims(shape: list) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


def _tensors(specs: list[dict]) -> list[tuple[str, str, list[int]]]:
    out = []
    for t in specs:
        if t["dtype"] not in TRITON_TYPES:
            raise UserError(f"tensor {t['name']!r} has dtype {t['dtype']}, which this exporter does not map")
        out.append((t["name"], TRITON_TYPES[t["dtype"]], _dims(list(t["shape"]))))
    return out


def graph_model_name(name: str, graph: str) -> str:
    return f"{name}_{graph}"


def plan_repository(
    manifest,
    name: str = MODEL_NAME,
    instances: int = 1,
    graph_backend: str = "platform",
    queue_us: int = 2000,
) -> list[ModelSpec]:
    """The models of the repository for a bundle's manifest: one per graph, then the BLS model."""
    if graph_backend not in GRAPH_BACKENDS:
        raise UserError(f"graph backend {graph_backend!r}: expected one of {', '.join(GRAPH_BACKENDS)}")
    if manifest.family != "uffn":
        raise UserError(
            f"bundle family {manifest.family!r}: export-triton lays out UFFN bundles (router, trunk, branches)"
        )
    if manifest.backend not in PLATFORMS:
        raise UserError(f"bundle backend {manifest.backend!r}: expected onnxruntime or tensorrt")
    if manifest.backend == "tensorrt" and manifest.builder.get("name") == "tensorrt_rtx":
        raise UserError(
            "this bundle holds TensorRT-RTX engines, which Triton's tensorrt_plan backend cannot load; "
            "build a TensorRT bundle (`edgerestore build --backend tensorrt`) or an ONNX Runtime one"
        )
    if graph_backend == "python" and manifest.backend != "onnxruntime":
        raise UserError("--graph-backend python runs ONNX graphs; it needs an ONNX Runtime bundle")
    if instances < 1:
        raise UserError(f"--instances {instances}: give at least 1")
    platform = PLATFORMS[manifest.backend][0] if graph_backend == "platform" else None
    kind = "KIND_GPU" if manifest.backend == "tensorrt" else "KIND_AUTO" if platform else "KIND_CPU"
    models = []
    for graph, entry in manifest.graphs.items():
        params = {}
        if platform is None:
            params = {"session_options": json.dumps(manifest.session_options or {}, sort_keys=True)}
        models.append(
            ModelSpec(
                graph_model_name(name, graph),
                platform,
                0,
                _tensors(entry.inputs),
                _tensors(entry.outputs),
                1,
                kind,
                params,
            )
        )

    def spec(table: dict) -> list[tuple[str, str, list[int]]]:
        return [(n, TRITON_TYPES[np_name(d)], list(s)) for n, (d, s) in table.items()]

    models.append(
        ModelSpec(
            name,
            None,
            BLS_MAX_BATCH,
            spec(INPUTS),
            spec(OUTPUTS),
            instances,
            "KIND_CPU",
            {"graph_model_prefix": f"{name}_"},
            dynamic_batching_us=queue_us,
        )
    )
    return models


def np_name(dtype) -> str:
    import numpy as np

    return "bytes" if dtype is np.bytes_ else np.dtype(dtype).name


def export_repository(
    bundle_dir: str | Path,
    out: str | Path,
    *,
    name: str = MODEL_NAME,
    instances: int = 1,
    graph_backend: str = "platform",
    overwrite: bool = False,
) -> list[ModelSpec]:
    """Write the repository for the bundle at `bundle_dir` into `out` (see the module doc)."""
    from edgerestore.engines.bundle import load_bundle

    out = Path(out)
    if out.exists() and not overwrite:
        if not out.is_dir() or any(out.iterdir()):
            raise UserError(f"--out {out} exists; choose a new folder or pass --overwrite")
    bundle = load_bundle(Path(bundle_dir))  # hashes checked: a repository is never made of damaged graphs
    models = plan_repository(bundle.manifest, name, instances, graph_backend)
    tmp = out.parent / f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
    templates = resources.files("edgerestore.serving.triton_models")
    try:
        for model in models:
            version = tmp / model.name / "1"
            version.mkdir(parents=True)
            (tmp / model.name / "config.pbtxt").write_text(model.config_text())
            if model.name == name:  # the BLS model
                (version / "model.py").write_text(templates.joinpath("bls_model.py").read_text())
                (version / "manifest.json").write_text(bundle.manifest.to_json())
                continue
            graph = model.name[len(name) + 1 :]
            if model.platform is None:
                (version / "model.py").write_text(templates.joinpath("onnx_model.py").read_text())
                shutil.copyfile(bundle.graph_path(graph), version / "model.onnx")
            else:
                shutil.copyfile(bundle.graph_path(graph), version / PLATFORMS[bundle.manifest.backend][1])
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        if isinstance(exc, OSError):
            raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
        raise
    return models
