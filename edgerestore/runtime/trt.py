"""TensorRT backend: serialized engines run on a CUDA stream through NVIDIA's cuda-python bindings.

* The TensorRT module is a parameter: `tensorrt` (TensorRT 10.x / 11, JetPack) or `tensorrt_rtx`.
* One execution context per graph. Inputs/outputs are bound by tensor name (`set_input_shape`,
  `set_tensor_address`) and the graph is enqueued with `execute_async_v3` on one stream; CUDA events
  time every stage (copies and each graph) without synchronising in between.
* TensorRT older than 10.1 is refused in one line (8.6 parses only implicit-batch networks, 10.0 lacks
  `set_device_memory(ptr, size)`); TensorRT-RTX engines are first asked `Runtime.get_engine_validity`.
* Page-locked host buffers and device buffers are allocated once per (graph, tensor), at the size of the
  profile's max shapes (measured in `finalize`, where every output's device buffer is allocated; inputs
  fed from the host and host copies at their first use), so they never grow: a grown buffer is a cudaFree, which
  synchronises and invalidates captured graphs. The trunk's `features` stay on the device and are bound by
  address to the branch; a device tensor of another dtype than the input's is refused.
* All contexts are created without their own device memory (USER_MANAGED) and share ONE scratch
  allocation, the max of their engines' `device_memory_size_v2`: router, trunk and branch run back to
  back on one stream, never at the same time.
* CUDA graphs (optional). TensorRT: manual stream capture, ONE graph per context (a context's capture is
  valid only for the shapes and addresses it was captured with): the first run at new shapes is an
  ordinary enqueue, the second is captured, later ones replay; a capture that fails is ended, its error
  cleared, the shapes marked uncapturable and the work enqueued normally (as trtexec does). TensorRT-RTX:
  its runtime config's WHOLE_GRAPH_CAPTURE strategy instead (its JIT-specialised kernels make manual
  capture with dynamic shapes unreliable).
* TensorRT-RTX keeps a runtime cache of JIT-compiled kernels beside the bundle, one file per GPU model.

The buffer/shape policy (bytes from shapes and dtypes, grow-only reallocation, shared-scratch sizing,
profile-bounds checks, CUDA-graph keys) is plain Python with an injected allocator (`runtime/trt_policy.py`),
so it is tested without a GPU; the CUDA calls are `runtime/cuda.py`'s. `tensorrt` and `cuda.bindings` are
imported only when a backend is constructed.

Must not import torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgerestore.errors import BundleError, UserError
from edgerestore.files import write_bytes_atomic
from edgerestore.runtime.backend import Backend, DeviceTensor, GraphInfo, TensorInfo
from edgerestore.runtime.cuda import CudaError, CudaRuntime
from edgerestore.runtime.nvidia import import_tensorrt, is_rtx
from edgerestore.runtime.trt_policy import (
    Allocation,
    CudaGraphCache,
    GrowOnlyBuffers,
    check_profile,
    host_view,
    numpy_dtype,
    shared_scratch_bytes,
    tensor_nbytes,
)


@dataclass
class _Graph:
    engine: Any
    context: Any
    info: GraphInfo
    shared_scratch: bool
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    addresses: dict[str, int] = field(default_factory=dict)
    max_bytes: dict[str, int] = field(default_factory=dict)  # tensor -> bytes at the profile's max shape


class TensorRTBackend(Backend):
    """TensorRT engines on one CUDA stream.

    `trt_module`: "tensorrt", "tensorrt_rtx", a module, or None (either). `shared_scratch`: a predicate on
    the graph name for contexts that share one scratch area (default: every graph -- router, trunk and
    branch run back to back on one stream, never at the same time). `cuda_graphs`: CUDA graphs -- manual
    stream capture, one graph per context, on TensorRT; the runtime config's WHOLE_GRAPH_CAPTURE strategy
    on TensorRT-RTX (its JIT-specialised kernels make a manual capture with dynamic shapes unreliable).
    `runtime_cache`: TensorRT-RTX's cache of JIT-compiled kernels, loaded at the first `load` and written
    back at `close` ("auto": `.runtime-cache-<gpu>.bin` beside the first engine; None: no cache).
    `cuda`: a CudaRuntime-like object (injected in tests)."""

    name = "tensorrt"
    asynchronous = True

    def __init__(
        self,
        trt_module: str | ModuleType | None = None,
        device: int = 0,
        cuda_graphs: bool = False,
        shared_scratch: Callable[[str], bool] | None = None,
        cuda: Any = None,
        runtime_cache: str | Path | None = "auto",
    ) -> None:
        super().__init__()
        self.trt = import_tensorrt(trt_module)  # refuses TensorRT < 10.1 in one line
        self.rtx = is_rtx(self.trt)
        self.cuda = cuda if cuda is not None else CudaRuntime(device)
        self.stream = self.cuda.stream_create()
        self.device_buffers = GrowOnlyBuffers(self.cuda.device_allocator())
        self.host_buffers = GrowOnlyBuffers(self.cuda.host_allocator())
        self.native_cuda_graphs = cuda_graphs and self.rtx
        self.cuda_graphs = CudaGraphCache(self.cuda.graph_destroy) if cuda_graphs and not self.rtx else None
        self._shares = shared_scratch or (lambda g: True)
        self._logger = self.trt.Logger(self.trt.Logger.WARNING)
        self._runtime = self.trt.Runtime(self._logger)
        self._g: dict[str, _Graph] = {}
        self._scratch: Allocation | None = None
        self._events: list[Any] = []
        self._marks: list[tuple[str, int, int]] = []  # (stage, start event index, end event index)
        self._runtime_cache_setting = runtime_cache if self.rtx else None
        self.runtime_cache_path: Path | None = None
        self._runtime_cache: Any = None

    # -- loading ----------------------------------------------------------------------------------------
    def _check_validity(self, path: Path, blob: bytes) -> None:
        """TensorRT-RTX (and TensorRT releases that have it) say whether an engine runs on this GPU."""
        validity = getattr(self._runtime, "get_engine_validity", None)
        enum = getattr(self.trt, "EngineValidity", None)
        if validity is None or enum is None:
            return
        verdict, diagnostics = validity(blob)
        if verdict == enum.INVALID:
            detail = str(diagnostics or "").strip().splitlines()
            raise BundleError(
                f"{path.name} cannot run on this GPU ({detail[0] if detail else 'engine invalid here'}); "
                "rebuild the bundle for it with `edgerestore build --trt-targets current`"
            )

    def _open_runtime_cache(self, path: Path, config: Any) -> None:
        if self._runtime_cache is not None or self._runtime_cache_setting is None:
            return
        setting = self._runtime_cache_setting
        if setting == "auto":
            key = self.cuda.device_key() if hasattr(self.cuda, "device_key") else "gpu"
            setting = path.parent / f".runtime-cache-{key}.bin"
        self.runtime_cache_path = Path(setting)
        self._runtime_cache = config.create_runtime_cache()
        if self.runtime_cache_path.is_file():
            # False (cache left empty) for another TensorRT-RTX, GPU or driver major: it is only a cache
            if not self._runtime_cache.deserialize(self.runtime_cache_path.read_bytes()):
                warnings.warn(
                    f"ignoring runtime cache {self.runtime_cache_path} (made by another TensorRT-RTX, GPU or "
                    "driver); it is rewritten at close",
                    stacklevel=2,
                )

    def _context(self, name: str, engine: Any, path: Path, shared: bool) -> Any:
        strategy = getattr(self.trt, "ExecutionContextAllocationStrategy", None)
        if self.rtx and hasattr(engine, "create_runtime_config"):
            config = engine.create_runtime_config()
            if shared:
                config.set_execution_context_allocation_strategy(strategy.USER_MANAGED)
            if self.native_cuda_graphs:
                config.cuda_graph_strategy = self.trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
            self._open_runtime_cache(path, config)
            if self._runtime_cache is not None and not config.set_runtime_cache(self._runtime_cache):
                raise BundleError(f"TensorRT-RTX refused the runtime cache {self.runtime_cache_path}")
            return engine.create_execution_context(config)
        if shared:
            if strategy is not None:
                return engine.create_execution_context(strategy.USER_MANAGED)
            return engine.create_execution_context_without_device_memory()
        return engine.create_execution_context()

    def load(self, name: str, path: Path) -> GraphInfo:
        path = Path(path)
        blob = path.read_bytes()
        self._check_validity(path, blob)
        engine = self._runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise BundleError(
                f"TensorRT could not deserialize {path.name} (built for another TensorRT version or GPU?); "
                f"rebuild the bundle on this device with `edgerestore build`"
            )
        shared = self._shares(name)
        context = self._context(name, engine, path, shared)
        if context is None:
            raise BundleError(f"TensorRT could not create an execution context for {name!r}")
        info = GraphInfo(name, path)
        graph = _Graph(engine, context, info, shared)
        for i in range(engine.num_io_tensors):
            tname = engine.get_tensor_name(i)
            tinfo = TensorInfo(
                tname, numpy_dtype(engine.get_tensor_dtype(tname)), tuple(engine.get_tensor_shape(tname))
            )
            if engine.get_tensor_mode(tname) == self.trt.TensorIOMode.INPUT:
                info.inputs.append(tinfo)
                lo, _, hi = engine.get_tensor_profile_shape(tname, 0)
                graph.profile[tname] = (tuple(lo), tuple(hi))
            else:
                info.outputs.append(tinfo)
        self._g[name] = graph
        self.graphs[name] = info
        return info

    def scratch_bytes(self) -> int:
        """Bytes of the scratch area shared by the shared-scratch contexts."""
        sizes = []
        for g in self._g.values():
            if g.shared_scratch:
                engine = g.engine
                sizes.append(
                    engine.device_memory_size_v2
                    if hasattr(engine, "device_memory_size_v2")
                    else engine.device_memory_size
                )
        return shared_scratch_bytes(sizes)

    def _size_at_profile_max(self, g: _Graph) -> None:
        """Bytes of every I/O tensor at the profile's max input shapes, so buffers are allocated once at
        their final size (a grown buffer is a cudaFree, which synchronises and invalidates captured graphs)."""
        for t in g.info.inputs:
            _, hi = g.profile[t.name]
            g.max_bytes[t.name] = tensor_nbytes(hi, t.dtype)
            if not g.context.set_input_shape(t.name, hi):
                raise BundleError(
                    f"TensorRT rejected the profile's max shape {hi} for {t.name!r} of {g.info.name!r}"
                )
        for t in g.info.outputs:
            shape = tuple(int(d) for d in g.context.get_tensor_shape(t.name))
            if all(d >= 0 for d in shape):
                g.max_bytes[t.name] = tensor_nbytes(shape, t.dtype)

    def finalize(self) -> None:
        for g in self._g.values():
            self._size_at_profile_max(g)
            for t in g.info.outputs:  # now, not at a branch's first frame (a cudaMalloc may synchronise)
                if t.name in g.max_bytes:
                    self.device_buffers.ensure((g.info.name, t.name), g.max_bytes[t.name])
        nbytes = self.scratch_bytes()
        if nbytes == 0:
            return
        self._scratch = self.device_buffers.ensure("__scratch__", nbytes)
        for g in self._g.values():
            if g.shared_scratch:
                if hasattr(g.context, "set_device_memory"):  # TensorRT >= 10.1, RTX
                    g.context.set_device_memory(self._scratch.ptr, self._scratch.nbytes)
                else:  # the property form (no size), all that older bindings have
                    g.context.device_memory = self._scratch.ptr

    def profile_bounds(self, graph: str, tensor: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self._g[graph].profile[tensor]

    def _buffer(self, buffers: GrowOnlyBuffers, g: _Graph, tensor: str, nbytes: int) -> Allocation:
        return buffers.ensure((g.info.name, tensor), max(nbytes, g.max_bytes.get(tensor, 0)))

    # -- timing -----------------------------------------------------------------------------------------
    def _event(self, index: int) -> Any:
        while len(self._events) <= index:
            self._events.append(self.cuda.event_create())
        return self._events[index]

    def _mark_start(self) -> int:
        index = 2 * len(self._marks)
        self.cuda.event_record(self._event(index), self.stream)
        return index

    def _mark_end(self, stage: str, start: int) -> None:
        self.cuda.event_record(self._event(start + 1), self.stream)
        self._marks.append((stage, start, start + 1))

    def reset_timings(self) -> None:
        super().reset_timings()
        self._marks = []

    def synchronize(self) -> None:
        self.cuda.stream_synchronize(self.stream)
        for stage, a, b in self._marks:
            self._add_ms(stage, self.cuda.event_elapsed_ms(self._events[a], self._events[b]))
        self._marks = []

    # -- binding and running ----------------------------------------------------------------------------
    def _set_address(self, g: _Graph, tensor: str, address: int) -> None:
        if not g.context.set_tensor_address(tensor, address):
            raise BundleError(f"TensorRT refused the address of {tensor!r} for {g.info.name!r}")
        g.addresses[tensor] = address

    def bind_input(self, graph: str, tensor: str, value: np.ndarray | DeviceTensor) -> None:
        g = self._g[graph]
        shape = tuple(int(d) for d in value.shape)
        lo, hi = g.profile[tensor]
        check_profile(shape, lo, hi, tensor)
        dtype = next(t.dtype for t in g.info.inputs if t.name == tensor)
        if isinstance(value, DeviceTensor):
            if value.backend != self.name:
                raise TypeError(f"cannot bind a {value.backend} tensor to a TensorRT graph")
            if np.dtype(value.dtype) != dtype:  # a device tensor is raw bytes: another type is garbage
                raise BundleError(
                    f"{graph!r} input {tensor!r} is {dtype.name} but the tensor bound to it is "
                    f"{np.dtype(value.dtype).name}; the bundle's graphs disagree on its type, rebuild them"
                )
        if not g.context.set_input_shape(tensor, shape):
            raise UserError(f"TensorRT rejected shape {shape} for input {tensor!r} of {graph!r}")
        g.shapes[tensor] = shape
        if isinstance(value, DeviceTensor):
            address = int(value.handle)
        else:
            array = np.ascontiguousarray(value, dtype=dtype)
            nbytes = array.nbytes
            host = self._buffer(self.host_buffers, g, tensor, nbytes)
            np.copyto(host_view(host, shape, dtype), array)
            device = self._buffer(self.device_buffers, g, tensor, nbytes)
            start = self._mark_start()
            self.cuda.memcpy_htod_async(device.ptr, host.ptr, nbytes, self.stream)
            self._mark_end("copies", start)
            address = device.ptr
        self._set_address(g, tensor, address)

    def run(self, graph: str, out_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
        g = self._g[graph]
        for t in g.info.outputs:
            shape = tuple(int(d) for d in g.context.get_tensor_shape(t.name))
            g.shapes[t.name] = shape
            device = self._buffer(self.device_buffers, g, t.name, tensor_nbytes(shape, t.dtype))
            self._set_address(g, t.name, device.ptr)
        start = self._mark_start()
        if self.cuda_graphs is None:
            self._enqueue(g)
        else:
            inputs = {t.name: g.shapes[t.name] for t in g.info.inputs}
            key = CudaGraphCache.key(graph, inputs, g.addresses)
            action, graph_exec = self.cuda_graphs.lookup(key)
            if action == "run":
                self._enqueue(g)
            elif action == "replay":
                self.cuda.graph_launch(graph_exec, self.stream)
            else:
                self._capture(g, key)
        self._mark_end(graph, start)
        self.run_counts[graph] += 1

    def _capture(self, g: _Graph, key: Hashable) -> None:
        """Capture one enqueue and launch it. When the enqueue fails while capturing, or the capture cannot
        be instantiated, do what trtexec does: end the capture, clear the error, mark the key uncapturable
        and enqueue normally."""
        assert self.cuda_graphs is not None
        self.cuda.capture_begin(self.stream)
        try:
            if not g.context.execute_async_v3(int(self.stream)):
                raise CudaError(f"TensorRT could not enqueue {g.info.name!r} while capturing")
        except Exception:
            self.cuda.capture_abort(self.stream)
            self.cuda_graphs.uncapturable(key)
            self._enqueue(g)
            return
        try:
            graph_exec = self.cuda.capture_end(self.stream)
        except CudaError:
            self.cuda_graphs.uncapturable(key)
            self._enqueue(g)
            return
        self.cuda_graphs.store(key, graph_exec)
        self.cuda.graph_launch(graph_exec, self.stream)

    def _enqueue(self, g: _Graph) -> None:
        if not g.context.execute_async_v3(int(self.stream)):
            raise RuntimeError(f"TensorRT failed to enqueue {g.info.name!r}")

    def input(self, graph: str, tensor: str) -> DeviceTensor:
        g = self._g[graph]
        dtype = next(t.dtype for t in g.info.inputs if t.name == tensor)
        return DeviceTensor(g.shapes[tensor], dtype, g.addresses[tensor], self.name)

    def output(self, graph: str, tensor: str) -> DeviceTensor:
        g = self._g[graph]
        dtype = next(t.dtype for t in g.info.outputs if t.name == tensor)
        return DeviceTensor(g.shapes[tensor], dtype, g.addresses[tensor], self.name)

    def read(self, graph: str, tensor: str) -> np.ndarray:
        g = self._g[graph]
        shape = g.shapes[tensor]
        dtype = next(t.dtype for t in g.info.outputs if t.name == tensor)
        nbytes = tensor_nbytes(shape, dtype)
        host = self._buffer(self.host_buffers, g, tensor, nbytes)
        start = self._mark_start()
        self.cuda.memcpy_dtoh_async(host.ptr, g.addresses[tensor], nbytes, self.stream)
        self._mark_end("copies", start)
        self.synchronize()
        return host_view(host, shape, dtype)

    def save_runtime_cache(self) -> Path | None:
        """Write TensorRT-RTX's runtime cache (JIT-compiled kernels) to its file; None when there is none.
        A bundle directory that is not writable only costs the next start its JIT time (a warning)."""
        if self._runtime_cache is None or self.runtime_cache_path is None:
            return None
        try:
            return write_bytes_atomic(
                self.runtime_cache_path, bytes(memoryview(self._runtime_cache.serialize()))
            )
        except OSError as exc:
            warnings.warn(f"could not save the runtime cache {self.runtime_cache_path}: {exc}", stacklevel=2)
            return None

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.cuda.stream_synchronize(self.stream)
            self.save_runtime_cache()
        finally:
            if self.cuda_graphs is not None:
                self.cuda_graphs.invalidate()
            self._g.clear()  # contexts before engines before memory
            self._runtime_cache = None
            self.device_buffers.release_all()
            self.host_buffers.release_all()
            for event in self._events:
                self.cuda.event_destroy(event)
            self._events = []
            self.cuda.stream_destroy(self.stream)
            super().close()


def runner(
    manifest: Any, *, threads: int | None = None, trt_module: Any = None, cuda_graphs: bool = False
) -> TensorRTBackend:
    """The TensorRT runner of a bundle (`backend.open_backend`): `trt_module` (default: the module the
    engines were built with, the manifest's builder), `cuda_graphs`. `threads`: ONNX Runtime's, ignored."""
    return TensorRTBackend(trt_module=trt_module or manifest.builder.get("name"), cuda_graphs=cuda_graphs)
