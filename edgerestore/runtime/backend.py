"""The one backend interface the restorer runs graphs through: load a graph, bind inputs, run (on a
stream), read outputs. Implementations: `ort.OnnxRuntimeBackend` (CPU, the embedded default) and
`trt.TensorRTBackend` (TensorRT / TensorRT for RTX on CUDA streams), each the runner of a builder/runner
pair (`RUNNERS`; the builders: `edgerestore.engines.build.BUILDERS`); `open_backend` opens a bundle's.

A tensor that should stay inside the backend between two graphs (the trunk's `features`, fed straight to
the selected branch) is handed over as a `DeviceTensor`: an OrtValue on ONNX Runtime, a device pointer on
TensorRT; it never makes a round trip through a numpy array.

Must not import torch, TensorRT or CUDA (this module is imported by every backend and by the restorer).
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgerestore.errors import UserError


@dataclass(frozen=True)
class DeviceTensor:
    """A tensor that lives in a backend's memory (OrtValue, or a CUDA device pointer). `handle` is the
    backend's own object; only the backend that produced it may consume it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    handle: Any
    backend: str


@dataclass
class TensorInfo:
    """Name, numpy dtype and shape of a graph input or output (dynamic dims as str or None)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]


@dataclass
class GraphInfo:
    name: str
    path: Path
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)


class Backend(ABC):
    """Runs the graphs of one bundle. Not thread-safe on its own: the restorer holds a lock around a
    frame's sequence of calls (buffers are reused across frames). Usable as a context manager."""

    name: str = "backend"
    #: True when `run` and host<->device copies are queued on a stream and complete at `synchronize`
    #: (TensorRT): work bound before a wait overlaps with it. False: each call completes before it returns.
    asynchronous: bool = False

    def __init__(self) -> None:
        self.graphs: dict[str, GraphInfo] = {}
        self.run_counts: Counter[str] = Counter()
        self._stage_ms: dict[str, float] = {}
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------------------
    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release sessions, contexts and buffers. Idempotent."""
        self._closed = True

    @property
    def intra_op_threads(self) -> int | None:
        """The intra-op thread count this backend's CPU sessions are configured with (0: the runtime's
        default), or None where the backend has no such setting."""
        return None

    # -- the interface ----------------------------------------------------------------------------------
    @abstractmethod
    def load(self, name: str, path: Path) -> GraphInfo:
        """Load one graph (ONNX file or serialized engine) under `name`; done once per graph."""

    def finalize(self) -> None:  # noqa: B027 - optional hook
        """Called once after every graph is loaded (TensorRT: size and attach the shared scratch)."""

    @abstractmethod
    def bind_input(self, graph: str, tensor: str, value: np.ndarray | DeviceTensor) -> None:
        """Bind an input by tensor name: a host array (copied to the device where there is one) or a
        DeviceTensor produced by this backend (bound in place, no copy)."""

    @abstractmethod
    def run(self, graph: str, out_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
        """Run (enqueue) a graph on the bound inputs. `out_shapes` lets a backend that cannot infer output
        shapes before running (ONNX Runtime) bind preallocated, reused output buffers."""

    @abstractmethod
    def input(self, graph: str, tensor: str) -> DeviceTensor:
        """An input bound to `graph`, as it lives in the backend's memory (to bind the same frame to the
        next graph without a second host-to-device copy)."""

    @abstractmethod
    def output(self, graph: str, tensor: str) -> DeviceTensor:
        """An output of the last run, left in the backend's memory (to feed another graph)."""

    @abstractmethod
    def read(self, graph: str, tensor: str) -> np.ndarray:
        """An output of the last run as a host array. The array may be a reused buffer: it is valid
        until `graph` runs again; copy it to keep it."""

    def synchronize(self) -> None:  # noqa: B027 - CPU backends are synchronous
        """Wait for everything enqueued (no-op on synchronous backends)."""

    # -- timings ----------------------------------------------------------------------------------------
    def reset_timings(self) -> None:
        self._stage_ms = {}

    def timings_ms(self) -> dict[str, float]:
        """Milliseconds since the last `reset_timings()`: one entry per graph run (compute) and `copies`
        (host<->device transfers and binding). Call after `synchronize()`."""
        return dict(self._stage_ms)

    def _add_ms(self, key: str, ms: float) -> None:
        self._stage_ms[key] = self._stage_ms.get(key, 0.0) + ms

    # -- convenience ------------------------------------------------------------------------------------
    def infer(self, graph: str, feeds: Mapping[str, np.ndarray | DeviceTensor]) -> dict[str, np.ndarray]:
        """Bind `feeds`, run, and return copies of every output (for tools and tests; the restorer uses
        the primitives so intermediate tensors stay in the backend)."""
        for tensor, value in feeds.items():
            self.bind_input(graph, tensor, value)
        self.run(graph)
        self.synchronize()
        return {t.name: np.array(self.read(graph, t.name), copy=True) for t in self.graphs[graph].outputs}


class Stopwatch:
    """perf_counter-based milliseconds, for backends without device events."""

    __slots__ = ("_t0",)

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1e3


#: backend -> the module of its runner, whose `runner(manifest, ...)` makes it (imported only to run that
#: backend; its builder is `edgerestore.engines.build.BUILDERS[backend]`).
RUNNERS: dict[str, str] = {"onnxruntime": "edgerestore.runtime.ort", "tensorrt": "edgerestore.runtime.trt"}


def open_backend(
    bundle: Any,
    kind: str | None = None,
    *,
    threads: int | None = None,
    trt_module: Any = None,
    cuda_graphs: bool = False,
) -> Backend:
    """The runner of a loaded bundle (`edgerestore.engines.bundle.Bundle`) with every graph loaded and
    `finalize`d; closed again if loading fails. `kind`: a backend other than the manifest's. `threads`:
    ONNX Runtime intra-op threads; `trt_module`, `cuda_graphs`: TensorRT (each runner ignores the other's)."""
    kind = kind or bundle.manifest.backend
    if kind not in RUNNERS:
        raise UserError(f"unknown backend {kind!r}; expected {' or '.join(RUNNERS)}")
    runner = importlib.import_module(RUNNERS[kind]).runner
    backend = runner(bundle.manifest, threads=threads, trt_module=trt_module, cuda_graphs=cuda_graphs)
    try:
        for name in bundle.graph_names:
            backend.load(name, bundle.graph_path(name))
        backend.finalize()
    except BaseException:
        backend.close()
        raise
    return backend
