"""ONNX Runtime backend (CPU; the embedded default and the reference executor).

One InferenceSession and one IOBinding per graph, created once. Inputs are bound from host arrays without
a copy (`bind_cpu_input` wraps the array's memory); outputs whose shape the caller knows are written into
preallocated, reused numpy buffers (grown only when a frame grows); the trunk's `features` are handed to
the branch as the same OrtValue, never copied through Python.

Must not import torch.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgerestore.errors import BundleError, UserError
from edgerestore.runtime.backend import Backend, DeviceTensor, GraphInfo, Stopwatch, TensorInfo

_ORT_TYPES = {
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(bool)": np.dtype(np.bool_),
}


_shared_arena_lock = threading.Lock()
_shared_arena = False


def _share_one_cpu_arena(ort: Any) -> bool:
    """Register one CPU arena allocator with ONNX Runtime's environment (once per process), for sessions
    that set `session.use_env_allocators`. Each session otherwise keeps its own arena at its own peak, so the
    trunk and four branches held the sum of five peaks (a 1088x1920 frame through every branch: 2.2 GB
    resident vs 1.1 GB shared, measured with benchmarks/tiled_inference.py's memory probe)."""
    global _shared_arena
    with _shared_arena_lock:
        if not _shared_arena:
            try:
                info = ort.OrtMemoryInfo(
                    "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
                )
                ort.create_and_register_allocator(info, None)
            except (AttributeError, RuntimeError, TypeError):  # an onnxruntime without it: per-session arenas
                return False
            _shared_arena = True
        return True


def make_session_options(options: Mapping[str, Any] | None, threads: int | None = None) -> Any:
    """SessionOptions from a manifest's `session_options` mapping; `threads` (intra-op) overrides it.

    Keys are SessionOptions attributes (`intra_op_num_threads`, `inter_op_num_threads`,
    `graph_optimization_level`, `execution_mode`, `enable_cpu_mem_arena`, `enable_mem_pattern`, ...);
    enum values may be given by name ("ORT_ENABLE_ALL", "ORT_SEQUENTIAL"); `config_entries` is a mapping
    passed to `add_session_config_entry`. `providers` is read by the backend, not here.

    Default unless the manifest says otherwise: intra-op threads do not spin
    (`session.intra_op.allow_spinning` = "0"). Each session owns a thread pool and the restorer runs
    router, trunk and branch back to back: spinning threads of the previous session steal the cores from
    the next (measured on 2 cores: a routed frame cost 2.4x trunk + branch with spinning, 1.09x without).
    And every session allocates from one process-wide CPU arena (`session.use_env_allocators` = "1", see
    `_share_one_cpu_arena`), so memory is the largest graph's peak, not the sum over graphs."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    enums = {
        "graph_optimization_level": ort.GraphOptimizationLevel,
        "execution_mode": ort.ExecutionMode,
    }
    for key, value in dict(options or {}).items():
        if key == "providers":
            continue
        if key == "config_entries":
            if not isinstance(value, Mapping):
                raise BundleError(f"manifest session_options config_entries must be an object, got {value!r}")
            for k, v in value.items():
                try:
                    so.add_session_config_entry(str(k), str(v))
                except (TypeError, ValueError, RuntimeError):
                    raise BundleError(
                        f"manifest session_options config_entries {k!r}={v!r} is refused by onnxruntime "
                        f"{ort.__version__}; fix or remove it"
                    ) from None
            continue
        if not hasattr(so, key):
            raise BundleError(
                f"manifest session_options has unknown key {key!r} for onnxruntime {ort.__version__}; "
                "rebuild the bundle with this onnxruntime version or remove the key"
            )
        if key in enums and isinstance(value, str):
            enum = enums[key]
            name = value if value.startswith("ORT_") else f"ORT_{value.upper()}"
            if not hasattr(enum, name):
                raise BundleError(f"manifest session_options {key}={value!r} is not a valid {enum.__name__}")
            value = getattr(enum, name)
        try:
            setattr(so, key, value)
        except (TypeError, ValueError, RuntimeError):  # pybind11's message is a page of overloads
            expected = type(getattr(so, key)).__name__
            raise BundleError(
                f"manifest session_options {key}={value!r} is not a valid {expected}; fix or remove it"
            ) from None
    entries = dict((options or {}).get("config_entries") or {})
    if "session.intra_op.allow_spinning" not in entries:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if "session.use_env_allocators" not in entries and _share_one_cpu_arena(ort):
        so.add_session_config_entry("session.use_env_allocators", "1")
    if threads is not None:
        if threads < 1:
            raise UserError(f"threads must be >= 1, got {threads}")
        so.intra_op_num_threads = int(threads)
    return so


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with I/O binding. `threads`: intra-op threads (None: the manifest's, else ORT's
    default); `session_options`: the manifest's mapping; `providers`: defaults to CPU."""

    name = "onnxruntime"

    def __init__(
        self,
        threads: int | None = None,
        session_options: Mapping[str, Any] | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        import onnxruntime as ort

        self._ort = ort
        self._so = make_session_options(session_options, threads)
        self._providers = list(
            providers or (session_options or {}).get("providers") or ["CPUExecutionProvider"]
        )
        self._sessions: dict[str, Any] = {}
        self._bindings: dict[str, Any] = {}
        self._inputs_alive: dict[str, dict[str, Any]] = {}
        # (graph, tensor) -> flat reusable numpy buffer; and (graph, tensor) -> (shape, view, OrtValue)
        self._flat: dict[tuple[str, str], np.ndarray] = {}
        self._bound_out: dict[tuple[str, str], tuple[tuple[int, ...], np.ndarray, Any]] = {}
        self._ort_outputs: dict[str, dict[str, Any]] = {}
        self.allocations = 0

    @property
    def session_options(self) -> Any:
        """The SessionOptions every graph of this backend was loaded with (threads, spinning, arena)."""
        return self._so

    @property
    def intra_op_threads(self) -> int:
        """The sessions' configured intra-op threads (0: ONNX Runtime's default, one per physical core)."""
        return int(self._so.intra_op_num_threads)

    def load(self, name: str, path: Path) -> GraphInfo:
        path = Path(path)
        try:
            sess = self._ort.InferenceSession(str(path), sess_options=self._so, providers=self._providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"cannot load graph {name!r} from {path}: {str(exc).splitlines()[0]}") from exc
        info = GraphInfo(
            name,
            path,
            [
                TensorInfo(i.name, _ORT_TYPES.get(i.type, np.dtype(object)), tuple(i.shape))
                for i in sess.get_inputs()
            ],
            [
                TensorInfo(o.name, _ORT_TYPES.get(o.type, np.dtype(object)), tuple(o.shape))
                for o in sess.get_outputs()
            ],
        )
        self._sessions[name] = sess
        self._bindings[name] = sess.io_binding()
        self._inputs_alive[name] = {}
        self.graphs[name] = info
        return info

    def bind_input(self, graph: str, tensor: str, value: np.ndarray | DeviceTensor) -> None:
        binding = self._bindings[graph]
        if isinstance(value, DeviceTensor):
            if value.backend != self.name:
                raise TypeError(f"cannot bind a {value.backend} tensor to an onnxruntime graph")
            if isinstance(value.handle, np.ndarray):  # a host array bound earlier (see input())
                binding.bind_cpu_input(tensor, value.handle)
            else:
                binding.bind_ortvalue_input(tensor, value.handle)
        else:
            value = np.ascontiguousarray(value)
            binding.bind_cpu_input(tensor, value)  # wraps the array's memory, no copy
        self._inputs_alive[graph][tensor] = value  # keep the memory alive until the next bind

    def _reusable_output(self, graph: str, info: TensorInfo, shape: tuple[int, ...]) -> Any:
        key = (graph, info.name)
        bound = self._bound_out.get(key)
        if bound is not None and bound[0] == shape:
            return bound[2]
        count = int(np.prod(shape))
        flat = self._flat.get(key)
        if flat is None or flat.size < count:  # grow only
            flat = np.empty(count, dtype=info.dtype)
            self._flat[key] = flat
            self.allocations += 1
        view = flat[:count].reshape(shape)
        value = self._ort.OrtValue.ortvalue_from_numpy(view)  # shares the numpy memory
        self._bound_out[key] = (shape, view, value)
        return value

    def run(self, graph: str, out_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
        binding = self._bindings[graph]
        watch = Stopwatch()
        out_shapes = out_shapes or {}
        for info in self.graphs[graph].outputs:
            shape = out_shapes.get(info.name)
            if shape is not None:
                binding.bind_ortvalue_output(info.name, self._reusable_output(graph, info, tuple(shape)))
            else:
                self._bound_out.pop((graph, info.name), None)
                binding.bind_output(info.name, "cpu")
        self._add_ms("copies", watch.ms())
        watch = Stopwatch()
        self._sessions[graph].run_with_iobinding(binding)
        self._add_ms(graph, watch.ms())
        self.run_counts[graph] += 1
        names = [o.name for o in self.graphs[graph].outputs]
        self._ort_outputs[graph] = dict(zip(names, binding.get_outputs()))

    def input(self, graph: str, tensor: str) -> DeviceTensor:
        value = self._inputs_alive[graph][tensor]
        if isinstance(value, DeviceTensor):
            return value
        return DeviceTensor(tuple(value.shape), value.dtype, value, self.name)

    def output(self, graph: str, tensor: str) -> DeviceTensor:
        value = self._ort_outputs[graph][tensor]
        dtype = _ORT_TYPES.get(value.data_type(), np.dtype(object))
        return DeviceTensor(tuple(value.shape()), dtype, value, self.name)

    def read(self, graph: str, tensor: str) -> np.ndarray:
        bound = self._bound_out.get((graph, tensor))
        if bound is not None:
            return bound[1]  # ONNX Runtime wrote straight into our buffer
        watch = Stopwatch()
        array = self._ort_outputs[graph][tensor].numpy()
        self._add_ms("copies", watch.ms())
        return array

    def close(self) -> None:
        self._ort_outputs.clear()
        self._bound_out.clear()
        self._flat.clear()
        self._inputs_alive.clear()
        self._bindings.clear()
        self._sessions.clear()
        super().close()


def runner(
    manifest: Any, *, threads: int | None = None, trt_module: Any = None, cuda_graphs: bool = False
) -> OnnxRuntimeBackend:
    """The ONNX Runtime runner of a bundle (`backend.open_backend`): its manifest's session options,
    `threads` intra-op threads (None: the manifest's). `trt_module`, `cuda_graphs`: TensorRT's, ignored."""
    return OnnxRuntimeBackend(threads=threads, session_options=manifest.session_options or None)
