"""The `Backend` a Triton Python-backend (BLS) model runs its `Restorer` through: each graph is a model of
the same repository, run with a BLS `InferenceRequest`. The Restorer's logic (thumbnail, router, padding,
the one selected branch, reduced-resolution branches, cropping) is the runtime's own, so a frame served by
the BLS model is restored as `Restorer.open(bundle)` restores it.

`pb_utils` is `triton_python_backend_utils`, passed in by the model (it exists only inside Triton's stub).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgerestore.runtime.backend import Backend, DeviceTensor, GraphInfo, Stopwatch, TensorInfo

MANIFEST_NAME = "manifest.json"


class TritonBLSBackend(Backend):
    """Graphs are Triton models (`models[graph]` is the model name). Tensors stay numpy arrays (the Python
    backend hands BLS outputs back on the host)."""

    name = "triton-bls"

    def __init__(self, pb_utils: Any, models: Mapping[str, str], manifest: Any) -> None:
        super().__init__()
        self._pb = pb_utils
        self._models = dict(models)
        self._manifest = manifest
        self._inputs: dict[str, dict[str, np.ndarray]] = {}
        self._outputs: dict[str, dict[str, np.ndarray]] = {}

    def load(self, name: str, path: Path) -> GraphInfo:
        entry = self._manifest.graphs[name]

        def tensors(specs: list[dict[str, Any]]) -> list[TensorInfo]:
            return [TensorInfo(t["name"], np.dtype(t["dtype"]), tuple(t["shape"])) for t in specs]

        info = GraphInfo(name, Path(path), tensors(entry.inputs), tensors(entry.outputs))
        self.graphs[name] = info
        self._inputs[name] = {}
        return info

    def bind_input(self, graph: str, tensor: str, value: np.ndarray | DeviceTensor) -> None:
        if isinstance(value, DeviceTensor):
            if value.backend != self.name:
                raise TypeError(f"cannot bind a {value.backend} tensor to a Triton BLS graph")
            value = value.handle
        self._inputs[graph][tensor] = np.ascontiguousarray(value)

    def run(self, graph: str, out_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
        pb = self._pb
        watch = Stopwatch()
        names = [t.name for t in self.graphs[graph].outputs]
        extra = {}
        if hasattr(pb, "PreferredMemory"):  # outputs of GPU models (TensorRT) come back in host memory
            extra["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)
        request = pb.InferenceRequest(
            model_name=self._models[graph],
            requested_output_names=names,
            inputs=[pb.Tensor(k, v) for k, v in self._inputs[graph].items()],
            **extra,
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{self._models[graph]}: {response.error().message()}")
        self._outputs[graph] = {n: pb.get_output_tensor_by_name(response, n).as_numpy() for n in names}
        self._add_ms(graph, watch.ms())
        self.run_counts[graph] += 1

    def input(self, graph: str, tensor: str) -> DeviceTensor:
        value = self._inputs[graph][tensor]
        return DeviceTensor(tuple(value.shape), value.dtype, value, self.name)

    def output(self, graph: str, tensor: str) -> DeviceTensor:
        value = self._outputs[graph][tensor]
        return DeviceTensor(tuple(value.shape), value.dtype, value, self.name)

    def read(self, graph: str, tensor: str) -> np.ndarray:
        return self._outputs[graph][tensor]


def open_restorer(model_dir: str | Path, pb_utils: Any, models: Mapping[str, str]) -> Any:
    """A per-frame (not video) `Restorer` over the repository's graph models, from the bundle manifest
    that `export-triton` copied into the BLS model's version folder."""
    from edgerestore.engines.bundle import Bundle, Manifest
    from edgerestore.runtime.restorer import Restorer

    model_dir = Path(model_dir)
    manifest = Manifest.from_dict(json.loads((model_dir / MANIFEST_NAME).read_text()))
    backend = TritonBLSBackend(pb_utils, models, manifest)
    for name in manifest.graphs:
        backend.load(name, model_dir / name)
    backend.finalize()
    return Restorer(Bundle(model_dir, manifest), backend, video=False)
