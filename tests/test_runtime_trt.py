"""TensorRT backend without a GPU: the plain-Python buffer/shape policy (bytes from shapes and dtypes,
grow-only reallocation, shared-scratch sizing, profile bounds, CUDA-graph keys), and the backend's whole
binding sequence driven through a fake CUDA (numpy memory) and a fake TensorRT module (engines that run
the synthetic ONNX graphs), checked against ONNX Runtime. A `gpu` test runs real engines when there is a
GPU and skips with the reason otherwise."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

from edgerestore.engines.bundle import sha256_file
from edgerestore.errors import BundleError, UserError
from edgerestore.runtime.restorer import Restorer
from edgerestore.runtime.trt import TensorRTBackend
from edgerestore.runtime.trt_policy import (
    ALIGNMENT,
    Allocation,
    CudaGraphCache,
    GrowOnlyBuffers,
    ShapeBounds,
    check_profile,
    host_view,
    numpy_dtype,
    shared_scratch_bytes,
    tensor_nbytes,
)
from edgerestore.testing import PROTOTYPES, write_bundle

# ---------------------------------------------------------------------------------------------------------
# plain-Python policy
# ---------------------------------------------------------------------------------------------------------


class CountingAllocator:
    def __init__(self, host: bool = False) -> None:
        self.host = host
        self.live: dict[int, int] = {}
        self.next = 0x7F0000000000 if host else 0x10000  # host and device addresses never collide
        self.log: list[tuple[str, int]] = []

    def alloc(self, nbytes: int) -> Allocation:
        ptr, self.next = self.next, self.next + nbytes + ALIGNMENT
        self.live[ptr] = nbytes
        self.log.append(("alloc", nbytes))
        return Allocation(ptr, nbytes, np.zeros(nbytes, np.uint8) if self.host else None)

    def free(self, block: Allocation) -> None:
        assert self.live.pop(block.ptr) == block.nbytes, "double free or wrong size"
        self.log.append(("free", block.nbytes))


def test_tensor_bytes_from_shapes_and_dtypes():
    assert tensor_nbytes((1, 720, 1280, 3), np.uint8) == 720 * 1280 * 3
    assert tensor_nbytes((1, 24, 360, 640), np.float32) == 24 * 360 * 640 * 4
    assert tensor_nbytes((1, 24, 360, 640), np.float16) == 24 * 360 * 640 * 2
    with pytest.raises(ValueError, match="unresolved"):
        tensor_nbytes((1, -1, 640, 3), np.uint8)
    assert numpy_dtype("FLOAT") == np.float32 and numpy_dtype("DataType.UINT8") == np.uint8
    with pytest.raises(BundleError, match="FP8"):
        numpy_dtype("FP8")


def test_tensorrt_datatypes_map_to_numpy():
    trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed")
    assert numpy_dtype(trt.DataType.UINT8) == np.uint8
    assert numpy_dtype(trt.DataType.HALF) == np.float16
    assert numpy_dtype(trt.DataType.FLOAT) == np.float32


def test_buffers_grow_only_when_a_frame_grows():
    alloc = CountingAllocator()
    buffers = GrowOnlyBuffers(alloc)
    first = buffers.ensure("frame", 640 * 360 * 3)
    assert buffers.ensure("frame", 640 * 360 * 3) is first
    assert buffers.ensure("frame", 320 * 180 * 3) is first  # smaller: reuse
    assert buffers.generation["frame"] == 1
    bigger = buffers.ensure("frame", 1280 * 720 * 3)
    assert bigger.nbytes >= 1280 * 720 * 3 and bigger.nbytes % ALIGNMENT == 0
    assert buffers.generation["frame"] == 2
    assert buffers.ensure("frame", 640 * 360 * 3) is bigger  # never shrinks
    assert (buffers.allocations, buffers.frees) == (2, 1)
    assert list(alloc.live.values()) == [bigger.nbytes]
    buffers.release_all()
    assert alloc.live == {} and buffers.total_bytes == 0


def test_shared_scratch_is_the_max_over_branches():
    assert shared_scratch_bytes([1000, 5000, 300]) == 5120  # 5000 rounded up to 256
    assert shared_scratch_bytes([]) == 0
    assert shared_scratch_bytes([ALIGNMENT]) == ALIGNMENT


def test_profile_bounds_check_frames():
    bounds = ShapeBounds.from_profile((1, 64, 64, 3), (1, 1088, 1920, 3))
    bounds.check(720, 1280)
    bounds.check(64, 64)
    bounds.check(1088, 1920)
    with pytest.raises(UserError, match="2160x3840"):
        bounds.check(2160, 3840)
    with pytest.raises(UserError, match="outside"):
        bounds.check(32, 640)
    check_profile((1, 16, 4, 8), (1, 16, 2, 2), (1, 16, 64, 64), "features")
    with pytest.raises(UserError, match="features"):
        check_profile((1, 8, 4, 8), (1, 16, 2, 2), (1, 16, 64, 64), "features")
    with pytest.raises(UserError):
        check_profile((16, 4, 8), (1, 16, 2, 2), (1, 16, 64, 64), "features")


def test_host_view_is_a_window_on_the_block():
    block = CountingAllocator(host=True).alloc(1024)
    view = host_view(block, (2, 3, 4), np.float32)
    view[:] = 1.5
    assert np.frombuffer(block.array[:96].tobytes(), np.float32).tolist() == [1.5] * 24
    with pytest.raises(ValueError, match="smaller"):
        host_view(block, (1, 1024), np.float32)


def test_cuda_graph_cache_runs_then_captures_then_replays():
    destroyed = []
    cache = CudaGraphCache(destroyed.append)
    key = CudaGraphCache.key("trunk", {"frame": (1, 64, 64, 3)}, {"frame": 1, "features": 2})
    assert cache.lookup(key) == ("run", None)
    assert cache.lookup(key) == ("capture", None)
    cache.store(key, "exec-1")
    assert cache.lookup(key) == ("replay", "exec-1")
    moved = CudaGraphCache.key("trunk", {"frame": (1, 64, 64, 3)}, {"frame": 1, "features": 3})
    assert cache.lookup(moved) == ("run", None)  # a regrown buffer never replays a stale graph
    cache.invalidate("trunk")
    assert destroyed == ["exec-1"] and len(cache) == 0
    assert cache.lookup(key) == ("run", None)


# ---------------------------------------------------------------------------------------------------------
# the backend through a fake CUDA and a fake TensorRT
# ---------------------------------------------------------------------------------------------------------


class CudaFault(RuntimeError):
    """What a real CUDA call would return as an error (the backend's CudaRuntime raises CudaError)."""


class FakeCuda:
    """CUDA runtime stand-in with the semantics that matter: memory is numpy; work on the stream is
    DEFERRED until a synchronisation (stream_synchronize, or a cudaFree, which synchronises the device), so
    host memory read or rewritten too early shows; a capturing stream records work instead of running it,
    refuses to synchronise and stays capturing until the capture is ended; a captured graph replays the
    work with the pointers and shapes frozen at capture time; events get their time when the stream
    reaches them."""

    def __init__(self) -> None:
        self.mem: dict[int, np.ndarray] = {}
        self.device = CountingAllocator()
        self.host = CountingAllocator(host=True)
        self.pending: list = []
        self.capturing: list | None = None
        self.capture_invalid = False
        self.captures = 0
        self.aborted_captures = 0
        self.launches = 0
        self.syncs = 0
        self.clock = 0.0
        self.calls: list[tuple] = []  # ("htod", dst) / ("dtoh", src) / ("sync",) in the order they were made

    def device_key(self) -> str:
        return "sm86-fake-rtx-3090"

    def _wrap(self, allocator: CountingAllocator, host: bool):
        fake = self

        class _A:
            def alloc(self, nbytes):
                fake._no_capture("cudaMalloc")
                block = allocator.alloc(nbytes)
                fake.mem[block.ptr] = block.array if host else np.zeros(nbytes, np.uint8)
                return block

            def free(self, block):
                fake._no_capture("cudaFree")
                fake._drain()  # cudaFree synchronises the device
                allocator.free(block)
                del fake.mem[block.ptr]

        return _A()

    def _no_capture(self, what: str) -> None:
        if self.capturing is not None:
            self.capture_invalid = True
            raise CudaFault(f"{what} on a capturing stream: cudaErrorStreamCaptureUnsupported")

    def _drain(self) -> None:
        ops, self.pending = self.pending, []
        for op in ops:
            op()

    def device_allocator(self):
        return self._wrap(self.device, host=False)

    def host_allocator(self):
        return self._wrap(self.host, host=True)

    def enqueue(self, op) -> None:
        if self.capturing is not None:
            self.capturing.append(op)
        else:
            self.pending.append(op)

    def _copy(self, dst, src, nbytes, stream):
        assert stream == 7

        def op():
            self.clock += 0.01
            self.mem[dst][:nbytes] = self.mem[src][:nbytes]  # reads the source when the stream gets here

        self.enqueue(op)

    def memcpy_htod_async(self, dst, src, nbytes, stream):
        self.calls.append(("htod", dst))
        self._copy(dst, src, nbytes, stream)

    def memcpy_dtoh_async(self, dst, src, nbytes, stream):
        self.calls.append(("dtoh", src))
        self._copy(dst, src, nbytes, stream)

    def stream_create(self):
        return 7

    def stream_synchronize(self, stream):
        self._no_capture("cudaStreamSynchronize")
        self.syncs += 1
        self.calls.append(("sync",))
        self._drain()

    def stream_destroy(self, stream):
        self._no_capture("cudaStreamDestroy")

    def event_create(self):
        return types.SimpleNamespace(t=None)

    def event_record(self, event, stream):
        event.t = None

        def op():
            event.t = self.clock

        self.enqueue(op)

    def event_elapsed_ms(self, a, b):
        if a.t is None or b.t is None:
            raise CudaFault("cudaEventElapsedTime: cudaErrorNotReady (event not reached yet)")
        return b.t - a.t

    def event_destroy(self, event):
        pass

    def capture_begin(self, stream):
        self._no_capture("cudaStreamBeginCapture")
        self.capturing, self.capture_invalid = [], False

    def capture_end(self, stream):
        ops, self.capturing = self.capturing, None
        if ops is None:
            raise CudaFault("cudaStreamEndCapture on a stream that is not capturing")
        if self.capture_invalid:
            from edgerestore.runtime.cuda import CudaError

            raise CudaError("CUDA graph capture failed: cudaErrorStreamCaptureInvalidated")
        self.captures += 1
        return {"ops": ops, "live": True}

    def capture_abort(self, stream):
        if self.capturing is not None:
            self.capturing = None
            self.aborted_captures += 1
        self.capture_invalid = False

    def graph_launch(self, graph, stream):
        assert graph["live"], "launch of a destroyed CUDA graph"
        self.launches += 1
        for op in graph["ops"]:
            self.enqueue(op)

    def graph_destroy(self, graph):
        graph["live"] = False


def _version(v: str) -> tuple[int, int]:
    major, minor = v.split(".")[:2]
    return int(major), int(minor)


def make_fake_trt(
    cuda: FakeCuda,
    max_hw=(256, 256),
    features=4,
    version: str = "10.3.0",
    name: str = "tensorrt",
    capture_fails=False,
    invalid_engine=False,
):
    """A module with the API surface of TensorRT `version` (`name`: tensorrt or tensorrt_rtx); an 'engine'
    is an ONNX file run by ONNX Runtime. Like the real one: fp16 graph outputs are HALF, output shapes come
    from the input shapes alone, `set_tensor_address`/`set_input_shape` return bools, `execute_async_v3`
    freezes the current shapes and addresses into the work it queues; a context's capture is valid only at
    the shapes it was captured with (a replay after the context enqueued other shapes fails); TensorRT
    10.0 has no `set_device_memory`; TensorRT-RTX has runtime configs (allocation strategy, CUDA-graph
    strategy, runtime cache) and `get_engine_validity`, and a manual stream capture of its dynamic-shape
    engines fails. `capture_fails`: every enqueue while capturing fails (as an engine whose kernels
    allocate or synchronise)."""
    import onnxruntime as ort

    rtx = name == "tensorrt_rtx"

    class DT:
        def __init__(self, name):
            self.name = name

    dtypes = {"tensor(uint8)": DT("UINT8"), "tensor(float)": DT("FLOAT"), "tensor(float16)": DT("HALF")}
    np_types = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(float16)": np.float16}
    modes = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    strategy = types.SimpleNamespace(STATIC="static", ON_PROFILE_CHANGE="profile", USER_MANAGED="user")
    graph_strategy = types.SimpleNamespace(DISABLED="disabled", WHOLE_GRAPH_CAPTURE="whole")
    validity = types.SimpleNamespace(VALID="valid", SUBOPTIMAL="suboptimal", INVALID="invalid")
    made: dict[str, list] = {"contexts": [], "caches": []}

    class Engine:
        def __init__(self, blob: bytes):
            self.sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
            self.io = [(i.name, i, "in") for i in self.sess.get_inputs()] + [
                (o.name, o, "out") for o in self.sess.get_outputs()
            ]
            self.num_io_tensors = len(self.io)
            self.device_memory_size_v2 = 1000 * len(self.sess.get_outputs()[0].name) + 7 * len(blob) % 5000
            self._shapes: dict = {}

        def _arg(self, name):
            return next(x for x in self.io if x[0] == name)[1]

        def get_tensor_name(self, i):
            return self.io[i][0]

        def get_tensor_mode(self, name):
            return next(x for x in self.io if x[0] == name)[2]

        def get_tensor_dtype(self, name):
            return dtypes[self._arg(name).type]

        def get_tensor_shape(self, name):
            return [d if isinstance(d, int) else -1 for d in self._arg(name).shape]

        def get_tensor_profile_shape(self, name, profile):
            shape = self._arg(name).shape
            if name == "frame":
                return [(1, 16, 16, 3), (1, 64, 64, 3), (1, *max_hw, 3)]
            if name == "features":
                return [
                    (1, features, 8, 8),
                    (1, features, 32, 32),
                    (1, features, max_hw[0] // 2, max_hw[1] // 2),
                ]
            return [tuple(shape)] * 3

        def output_shapes(self, shapes: dict) -> dict:
            """From input shapes alone (no data read): ONNX Runtime on zeros, remembered per shapes."""
            key = tuple(sorted(shapes.items()))
            if key not in self._shapes:
                feeds = {i.name: np.zeros(shapes[i.name], np_types[i.type]) for i in self.sess.get_inputs()}
                outs = self.sess.run(None, feeds)
                self._shapes[key] = {o.name: v.shape for o, v in zip(self.sess.get_outputs(), outs)}
            return self._shapes[key]

        def create_execution_context(self, arg=strategy.STATIC):
            if isinstance(arg, RuntimeConfig):
                context = Context(self, arg.strategy, arg)
            else:
                context = Context(self, arg, None)
            made["contexts"].append(context)
            return context

        if rtx:

            def create_runtime_config(self):
                return RuntimeConfig()

    class RuntimeCache:
        def __init__(self):
            self.kernels: set[str] = set()
            made["caches"].append(self)

        def serialize(self):
            return ",".join(sorted(self.kernels)).encode()

        def deserialize(self, blob):
            if not bytes(blob)[:1].isdigit():  # validated against this environment first
                return False
            self.kernels |= {k for k in bytes(blob).decode().split(",") if k}
            return True

    class RuntimeConfig:
        def __init__(self):
            self.strategy = strategy.STATIC
            self.cuda_graph_strategy = graph_strategy.DISABLED
            self.cache = None

        def set_execution_context_allocation_strategy(self, s):
            self.strategy = s

        def create_runtime_cache(self):
            return RuntimeCache()

        def set_runtime_cache(self, cache):
            self.cache = cache
            return True

    class Context:
        def __init__(self, engine, strategy_, config):
            self.engine, self.strategy, self.config = engine, strategy_, config
            self.shapes, self.addresses = {}, {}
            self.device_memory = None
            self.enqueued_shapes = None  # shapes of the latest work this context put on the stream

        if _version(version) >= (10, 1) or rtx:

            def set_device_memory(self, ptr, size):
                assert size >= self.engine.device_memory_size_v2 and ptr % ALIGNMENT == 0
                self.device_memory = (ptr, size)

        def set_input_shape(self, name, shape):
            lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
            if len(shape) != len(lo) or not all(a <= d <= b for d, a, b in zip(shape, lo, hi)):
                return False
            self.shapes[name] = tuple(int(d) for d in shape)
            return True

        def set_tensor_address(self, name, ptr):
            if not any(x[0] == name for x in self.engine.io):
                return False
            self.addresses[name] = int(ptr)
            return True

        def get_tensor_shape(self, name):
            if self.engine.get_tensor_mode(name) == "in":
                return self.shapes.get(name, tuple(self.engine.get_tensor_shape(name)))
            inputs = [i.name for i in self.engine.sess.get_inputs()]
            if any(i not in self.shapes for i in inputs):
                return tuple(self.engine.get_tensor_shape(name))  # unresolved: -1 dims
            return self.engine.output_shapes({i: self.shapes[i] for i in inputs})[name]

        def execute_async_v3(self, stream):
            assert stream == 7
            if self.strategy == strategy.USER_MANAGED:
                assert self.device_memory is not None, "USER_MANAGED context enqueued without scratch"
            if cuda.capturing is not None and (capture_fails or rtx):
                cuda.capture_invalid = True
                return False
            sess = self.engine.sess
            shapes = {i.name: self.shapes[i.name] for i in sess.get_inputs()}  # frozen now
            addresses = dict(self.addresses)
            outs_shapes = self.engine.output_shapes(shapes)
            missing = [o.name for o in sess.get_outputs() if o.name not in addresses]
            assert not missing, f"outputs {missing} have no address"
            if self.config is not None and self.config.cache is not None:
                self.config.cache.kernels.add(f"{len(made['contexts'])}:{sorted(shapes.items())}")
            context = self

            def op():
                if context.enqueued_shapes not in (None, shapes) and op.captured:
                    raise CudaFault("a CUDA graph replayed after its context ran other shapes (undefined)")
                context.enqueued_shapes = shapes
                feeds = {}
                for i in sess.get_inputs():
                    dtype = np_types[i.type]
                    n = int(np.prod(shapes[i.name])) * np.dtype(dtype).itemsize
                    feeds[i.name] = cuda.mem[addresses[i.name]][:n].view(dtype).reshape(shapes[i.name]).copy()
                for o, value in zip(sess.get_outputs(), sess.run(None, feeds)):
                    assert value.shape == tuple(outs_shapes[o.name])
                    raw = np.ascontiguousarray(value, np_types[o.type]).view(np.uint8).reshape(-1)
                    cuda.mem[addresses[o.name]][: raw.size] = raw
                cuda.clock += 0.5

            op.captured = cuda.capturing is not None
            cuda.enqueue(op)
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            try:
                return Engine(bytes(blob))
            except Exception:
                return None

        if rtx:

            def get_engine_validity(self, blob):
                if invalid_engine:
                    return validity.INVALID, "engine compiled for SM 8.9, device is SM 8.7\nmore"
                return validity.VALID, ""

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    module = types.SimpleNamespace(
        Logger=Logger,
        Runtime=Runtime,
        TensorIOMode=modes,
        ExecutionContextAllocationStrategy=strategy,
        __name__=name,
        __version__=version,
        made=made,
    )
    if rtx:
        module.CudaGraphStrategy = graph_strategy
        module.EngineValidity = validity
    return module


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("bundle"), depth=1, max_hw=(256, 256))


def open_fake(bundle_dir: Path, cuda_graphs=False, trt_options=None, backend_options=None, **options):
    from edgerestore.engines.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    cuda = FakeCuda()
    trt = make_fake_trt(cuda, **(trt_options or {}))
    backend = TensorRTBackend(trt_module=trt, cuda=cuda, cuda_graphs=cuda_graphs, **(backend_options or {}))
    for name in bundle.graph_names:
        backend.load(name, bundle.graph_path(name))
    backend.finalize()
    return Restorer(bundle, backend, **options), cuda


def frames(rng):
    out = []
    for c, hw in [
        ("rain", (40, 48)),
        ("haze", (40, 48)),
        ("clean", (33, 20)),
        ("snow", (64, 90)),
        ("raindrop", (31, 17)),
        ("rain", (40, 48)),
    ]:
        f = np.empty((*hw, 3), np.uint8)
        f[:] = PROTOTYPES[c]
        f[::4] = rng.integers(0, 200, size=f[::4].shape, dtype=np.uint8)
        out.append(f)
    return out


@pytest.mark.parametrize(
    "version", ["10.1.0", "10.3.0", "11.1.0", "rtx-1.7.1"], ids=["trt10.1", "trt10.3", "trt11.1", "rtx1.7"]
)
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_fake_tensorrt_matches_onnxruntime(bundle_dir, rng, cuda_graphs, version):
    inputs = frames(rng) * 2
    with Restorer.open(bundle_dir, threads=1) as ref:
        expected = [ref(f) for f in inputs]
    rtx = version.startswith("rtx-")
    options = {"name": "tensorrt_rtx" if rtx else "tensorrt", "version": version.removeprefix("rtx-")}
    restorer, cuda = open_fake(
        bundle_dir, cuda_graphs=cuda_graphs, trt_options=options, backend_options={"runtime_cache": None}
    )
    with restorer:
        got = [restorer(f) for f in inputs]
        counts = dict(restorer.backend.run_counts)
        if cuda_graphs and not rtx:
            assert cuda.captures > 0 and cuda.launches > cuda.captures
        timings = got[0].timings
    for e, g in zip(expected, got):
        assert (g.condition, g.restored) == (e.condition, e.restored)
        np.testing.assert_array_equal(g.image, e.image)
    assert counts == {
        "router": 12,
        "trunk": 10,
        "branch_rain": 4,
        "branch_haze": 2,
        "branch_snow": 2,
        "branch_raindrop": 2,
    }
    assert timings["router"] > 0 and timings["trunk"] > 0 and timings["branch"] > 0 and timings["copies"] > 0
    assert cuda.device.live == {} and cuda.host.live == {}  # close() freed everything


def test_features_stay_on_device_and_all_contexts_share_one_scratch(bundle_dir):
    restorer, cuda = open_fake(bundle_dir)
    be = restorer.backend
    with restorer:
        frame = np.empty((40, 48, 3), np.uint8)
        frame[:] = PROTOTYPES["haze"]
        restorer(frame)
        trunk, branch = be._g["trunk"], be._g["branch_haze"]
        assert branch.addresses["features"] == trunk.addresses["features"]  # bound by address, no copy
        assert branch.addresses["frame"] == trunk.addresses["frame"]  # the frame is uploaded once
        assert ("branch_haze", "frame") not in be.device_buffers.blocks
        host_keys = set(be.host_buffers.blocks)
        assert ("trunk", "features") not in host_keys and ("branch_haze", "features") not in host_keys
        # router, trunk and branch run back to back on one stream: one scratch for every context
        assert {g.context.strategy for g in be._g.values()} == {"user"}
        scratch = {g.context.device_memory for g in be._g.values()}
        assert len(scratch) == 1
        ((ptr, size),) = scratch
        assert size == shared_scratch_bytes(g.engine.device_memory_size_v2 for g in be._g.values())


def _frame(condition: str, hw=(40, 48)) -> np.ndarray:
    frame = np.empty((*hw, 3), np.uint8)
    frame[:] = PROTOTYPES[condition]
    return frame


def test_the_trunk_upload_is_queued_before_waiting_for_the_router(bundle_dir):
    restorer, cuda = open_fake(bundle_dir)
    be = restorer.backend
    with restorer:
        cuda.calls.clear()
        assert restorer(_frame("rain")).condition == "rain"
        trunk_frame = be.device_buffers.blocks[("trunk", "frame")].ptr
        uploads = [i for i, c in enumerate(cuda.calls) if c == ("htod", trunk_frame)]
        assert len(uploads) == 1  # uploaded once, for the trunk and the branch
        assert uploads[0] < cuda.calls.index(("sync",))  # before the first wait: the router's verdict
        # after a clean verdict the next frame's upload waits for its own verdict (none for a clean frame)
        restorer(_frame("clean"))
        cuda.calls.clear()
        assert restorer(_frame("clean")).condition == "clean"
        assert ("htod", trunk_frame) not in cuda.calls
        # a reduced-resolution branch uploads its own downscaled frame: nothing is queued after one
        restorer.branch_scales = {"haze": 0.5}
        restorer(_frame("haze", (64, 96)))
        cuda.calls.clear()
        restored = restorer(_frame("rain"))
        assert restored.condition == "rain" and cuda.calls.index(("sync",)) < cuda.calls.index(
            ("htod", trunk_frame)
        )


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_frames_uploaded_ahead_restore_as_on_onnxruntime(bundle_dir, rng, cuda_graphs):
    """Uploads queued behind the router (or not, after clean and reduced-branch verdicts) change no pixel."""
    conditions = ["rain", "rain", "clean", "haze", "snow", "clean", "rain", "haze", "raindrop", "rain"]
    inputs = []
    for c in conditions:
        f = _frame(c, (40, 48))
        f[::4] = rng.integers(0, 200, size=f[::4].shape, dtype=np.uint8)
        inputs.append(f)
    with Restorer.open(bundle_dir, threads=1) as ref:
        ref.branch_scales = {"haze": 0.5}
        expected = [ref(f) for f in inputs]
    restorer, _ = open_fake(bundle_dir, cuda_graphs=cuda_graphs)
    with restorer:
        restorer.branch_scales = {"haze": 0.5}
        got = [restorer(f) for f in inputs]
    assert [g.condition for g in got] == [e.condition for e in expected] == conditions
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g.image, e.image)


def test_buffers_are_sized_to_the_profile_max_once_and_never_grow(bundle_dir):
    restorer, cuda = open_fake(bundle_dir, force="rain")
    with restorer:
        restorer(np.full((64, 64, 3), 90, np.uint8))
        after_first = restorer.backend.device_buffers.allocations
        for hw in [(128, 128), (64, 64), (130, 200), (256, 256)]:
            restorer(np.full((*hw, 3), 90, np.uint8))
        be = restorer.backend
        assert be.device_buffers.allocations == after_first and be.device_buffers.frees == 0
        assert be.host_buffers.frees == 0
        assert be.device_buffers.blocks[("trunk", "frame")].nbytes >= 256 * 256 * 3
        tall = restorer(np.full((300, 64, 3), 90, np.uint8))  # beyond the max shape: tiles within it
        assert "tiled" in tall.flags and tall.image.shape == (300, 64, 3)


def test_every_output_buffer_is_allocated_in_finalize(bundle_dir, rng):
    restorer, cuda = open_fake(bundle_dir)
    be = restorer.backend
    outputs = {(name, t.name) for name, info in be.graphs.items() for t in info.outputs}
    assert outputs <= set(be.device_buffers.blocks)  # before any frame
    before = be.device_buffers.allocations
    with restorer:
        for f in frames(rng):  # every condition, so every branch runs
            restorer(f)
        # only the inputs fed from the host came later: the router's thumbnail and the trunk's frame
        assert set(be.device_buffers.blocks) - outputs - {"__scratch__"} == {
            ("router", "thumbnail"),
            ("trunk", "frame"),
        }
        assert be.device_buffers.allocations - before == 2


def test_engine_that_cannot_be_deserialized_is_a_bundle_error(tmp_path):
    cuda = FakeCuda()
    backend = TensorRTBackend(trt_module=make_fake_trt(cuda), cuda=cuda)
    bad = tmp_path / "router.engine"
    bad.write_bytes(b"not an engine")
    with pytest.raises(BundleError, match="rebuild"):
        backend.load("router", bad)


@pytest.mark.parametrize("version", ["8.6.1", "10.0.1"])
def test_tensorrt_older_than_10_1_is_refused_in_one_line(version):
    cuda = FakeCuda()
    trt = make_fake_trt(cuda, version=version)
    with pytest.raises(UserError) as e:
        TensorRTBackend(trt_module=trt, cuda=cuda)
    assert (
        "\n" not in str(e.value)
        and f"TensorRT {version} is too old" in str(e.value)
        and "10.1" in str(e.value)
    )


def test_finalize_uses_the_device_memory_property_where_set_device_memory_is_missing(bundle_dir):
    """TensorRT 10.0's contexts have only the `device_memory` property (set_device_memory came in 10.1)."""
    from edgerestore.engines.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    cuda = FakeCuda()
    trt = make_fake_trt(cuda, version="10.0.1")
    trt.__version__ = "10.3.0"  # past the version floor, but the 10.0 method set
    backend = TensorRTBackend(trt_module=trt, cuda=cuda)
    for name in bundle.graph_names:
        backend.load(name, bundle.graph_path(name))
    assert not hasattr(backend._g["router"].context, "set_device_memory")
    backend.finalize()
    assert {g.context.device_memory for g in backend._g.values()} == {backend._scratch.ptr}
    backend.close()


def _run_restorer(restorer, inputs):
    with restorer:
        return [restorer(f) for f in inputs]


def test_a_failed_cuda_graph_capture_is_ended_and_the_work_runs_normally(bundle_dir, rng):
    inputs = frames(rng) * 2
    with Restorer.open(bundle_dir, threads=1) as ref:
        expected = [ref(f) for f in inputs]
    restorer, cuda = open_fake(bundle_dir, cuda_graphs=True, trt_options={"capture_fails": True})
    got = _run_restorer(restorer, inputs)  # close() inside: the stream is usable again
    assert cuda.captures == 0 and cuda.aborted_captures > 0 and cuda.capturing is None
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g.image, e.image)
    be = restorer.backend
    assert be.run_counts["router"] == len(inputs)
    assert cuda.aborted_captures == len(
        be.cuda_graphs._uncapturable
    )  # each key tried once, then run normally


def test_one_cuda_graph_per_context_when_a_graph_alternates_shapes(bundle_dir, rng):
    """The trunk alternating two frame sizes must never replay a capture made at the other size."""
    sizes = [(64, 64), (128, 96)] * 4 + [(64, 64)] * 4
    inputs = [np.full((*hw, 3), 90, np.uint8) for hw in sizes]
    with Restorer.open(bundle_dir, threads=1, force="rain") as ref:
        expected = [ref(f) for f in inputs]
    restorer, cuda = open_fake(bundle_dir, cuda_graphs=True, force="rain")
    got = _run_restorer(restorer, inputs)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g.image, e.image)
    assert cuda.captures > 0 and cuda.launches > cuda.captures  # the steady run at 64x64 replays


def test_tensorrt_rtx_uses_its_runtime_config_for_cuda_graphs_and_a_runtime_cache(bundle_dir, tmp_path, rng):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    inputs = frames(rng)
    with Restorer.open(copy, threads=1) as ref:
        expected = [ref(f) for f in inputs]
    options = {"name": "tensorrt_rtx", "version": "1.7.1.116"}
    restorer, cuda = open_fake(copy, cuda_graphs=True, trt_options=options)
    be = restorer.backend
    got = _run_restorer(restorer, inputs)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g.image, e.image)
    assert cuda.captures == 0 and cuda.aborted_captures == 0  # no manual stream capture on RTX
    contexts = be.trt.made["contexts"]
    assert all(c.config is not None and c.config.cuda_graph_strategy == "whole" for c in contexts)
    assert {c.strategy for c in contexts} == {"user"}
    cache_file = copy / ".runtime-cache-sm86-fake-rtx-3090.bin"
    assert be.runtime_cache_path == cache_file and cache_file.read_bytes()
    saved = set(cache_file.read_bytes().decode().split(","))
    # the next process start loads it back
    restorer2, _ = open_fake(copy, cuda_graphs=True, trt_options=options)
    with restorer2:
        assert restorer2.backend._runtime_cache.kernels >= saved
        assert all(
            c.config.cache is restorer2.backend._runtime_cache for c in restorer2.backend.trt.made["contexts"]
        )
    cache_file.write_bytes(b"from another GPU")
    with pytest.warns(UserWarning, match="ignoring runtime cache"):
        restorer3, _ = open_fake(copy, cuda_graphs=True, trt_options=options)
    with restorer3:
        restorer3(inputs[0])
    assert cache_file.read_bytes()[:1].isdigit()  # rewritten at close


def test_an_rtx_engine_invalid_on_this_gpu_is_a_bundle_error(bundle_dir):
    from edgerestore.engines.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    cuda = FakeCuda()
    trt = make_fake_trt(cuda, name="tensorrt_rtx", version="1.7.1.116", invalid_engine=True)
    backend = TensorRTBackend(trt_module=trt, cuda=cuda, runtime_cache=None)
    with pytest.raises(BundleError) as e:
        backend.load("router", bundle.graph_path("router"))
    assert "\n" not in str(e.value) and "SM 8.9, device is SM 8.7" in str(e.value)


def test_a_device_tensor_of_another_dtype_is_refused(bundle_dir):
    from edgerestore.runtime.backend import DeviceTensor

    restorer, cuda = open_fake(bundle_dir)
    with restorer:
        be = restorer.backend
        features = DeviceTensor((1, 4, 8, 8), np.dtype(np.float16), 0x10000, "tensorrt")
        with pytest.raises(BundleError, match="'features' is float32 but the tensor bound to it is float16"):
            be.bind_input("branch_rain", "features", features)


def test_a_refused_tensor_address_is_an_error(bundle_dir):
    restorer, cuda = open_fake(bundle_dir)
    with restorer:
        be = restorer.backend
        be._g["router"].context.set_tensor_address = lambda name, ptr: False
        with pytest.raises(BundleError, match="refused the address of 'thumbnail'"):
            be.bind_input("router", "thumbnail", np.zeros((1, 32, 32, 3), np.uint8))


def test_fp16_graphs_give_half_outputs_read_as_float16(tmp_path, rng):
    """An fp16 bundle whose router keeps float32 probs: the fake engine types every output as the graph
    does (HALF where the graph is float16), the backend reads those types, results match ONNX Runtime."""
    import onnx

    from edgerestore.engines.bundle import load_bundle
    from edgerestore.precision import convert_fp16

    src = write_bundle(tmp_path / "fp32", depth=1, max_hw=(256, 256))
    bundle = load_bundle(src)
    for name in bundle.graph_names:
        path = bundle.graph_path(name)
        onnx.save(convert_fp16(onnx.load(path)), path)
    raw = json.loads((src / "manifest.json").read_text())
    for entry in raw["graphs"].values():
        entry["sha256"] = sha256_file(src / entry["file"])
        entry.pop("size", None)
    (src / "manifest.json").write_text(json.dumps(raw))
    inputs = frames(rng)
    with Restorer.open(src, threads=1) as ref:
        expected = [ref(f) for f in inputs]
    restorer, cuda = open_fake(src)
    be = restorer.backend
    assert be.graphs["router"].outputs[0].dtype == np.float32  # convert_fp16 kept the I/O types
    assert be.graphs["trunk"].outputs[0].dtype == np.float16  # features cross in float16
    assert {t.dtype for t in be.graphs["branch_rain"].inputs} == {np.dtype(np.uint8), np.dtype(np.float16)}
    got = _run_restorer(restorer, inputs)
    for e, g in zip(expected, got):
        assert g.condition == e.condition
        np.testing.assert_array_equal(g.image, e.image)


def _gpu_reason() -> str | None:
    from edgerestore.runtime.nvidia import cuda_device_status

    device, why = cuda_device_status()
    if device is None:
        return why
    for name in ("tensorrt", "tensorrt_rtx"):
        try:
            __import__(name)
            return None
        except ImportError:
            continue
    return "TensorRT is not installed"


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_reason() is not None, reason=f"needs an NVIDIA GPU with TensorRT: {_gpu_reason()}")
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_real_tensorrt_engines_match_onnxruntime(bundle_dir, tmp_path, rng, cuda_graphs):
    """Engines built by the project's builder (strongly typed network, its profile rule, a timing cache),
    run by the backend on the GPU, against ONNX Runtime on the same float32 graphs."""
    from edgerestore.engines.bundle import load_bundle
    from edgerestore.engines.tensorrt import TensorRTBuilder, frame_profile
    from edgerestore.runtime.nvidia import import_tensorrt

    trt = import_tensorrt(None)
    bundle = load_bundle(bundle_dir)
    builder = TensorRTBuilder(trt, timing_cache=tmp_path / "timing.cache", targets=None)
    rule = frame_profile({"min": [16, 16], "opt": [64, 64], "max": [256, 256]})
    backend = TensorRTBackend(trt_module=trt, cuda_graphs=cuda_graphs, runtime_cache=tmp_path / "rt.cache")
    for name in bundle.graph_names:
        path = tmp_path / f"{name}.engine"
        path.write_bytes(builder.build(bundle.graph_path(name), rule).engine)
        backend.load(name, path)
    builder.save_timing_cache()
    backend.finalize()
    inputs = frames(rng)
    with Restorer.open(bundle_dir, threads=1) as ref, Restorer(bundle, backend) as r:
        for f in inputs * 3:
            e, g = ref(f), r(f)
            assert g.condition == e.condition
            assert np.abs(g.image.astype(int) - e.image.astype(int)).max() <= 1


# ---------------------------------------------------------------------------------------------------------
# CudaRuntime against cuda-python's runtime API (a stand-in module with its names and enums)
# ---------------------------------------------------------------------------------------------------------


def _fake_cudart(monkeypatch, *, count_err="cudaSuccess", end_err="cudaSuccess", capturing=True):
    import enum
    import sys

    err = enum.IntEnum(
        "cudaError_t",
        ["cudaSuccess", "cudaErrorInsufficientDriver", "cudaErrorStreamCaptureInvalidated"],
        start=0,
    )
    status = enum.IntEnum(
        "cudaStreamCaptureStatus", ["cudaStreamCaptureStatusNone", "cudaStreamCaptureStatusActive"], start=0
    )
    calls: list[str] = []

    def call(name, *result):
        def f(*args):
            calls.append(name)
            return result

        return f

    rt = types.SimpleNamespace(
        cudaError_t=err,
        cudaStreamCaptureStatus=status,
        cudaGetDeviceCount=call("count", err[count_err], 1),
        cudaGetDeviceProperties=call(
            "properties", err.cudaSuccess, types.SimpleNamespace(name=b"Orin\x00", major=8, minor=7)
        ),
        cudaDriverGetVersion=call("driver", err.cudaSuccess, 12060),
        cudaRuntimeGetVersion=call("runtime", err.cudaSuccess, 13000),
        cudaSetDevice=call("set", err.cudaSuccess),
        cudaStreamIsCapturing=call(
            "is_capturing",
            err.cudaSuccess,
            status.cudaStreamCaptureStatusActive if capturing else status.cudaStreamCaptureStatusNone,
        ),
        cudaStreamEndCapture=call("end", err[end_err], "graph" if end_err == "cudaSuccess" else None),
        cudaGraphInstantiate=call("instantiate", err.cudaSuccess, "exec"),
        cudaGraphDestroy=call("graph_destroy", err.cudaSuccess),
        cudaGetLastError=call("clear", err.cudaSuccess),
    )
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = rt  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
    return calls


def test_cuda_runtime_names_a_driver_older_than_cuda_python(monkeypatch):
    from edgerestore.runtime.cuda import CudaRuntime

    _fake_cudart(monkeypatch, count_err="cudaErrorInsufficientDriver")
    with pytest.raises(UserError) as e:
        CudaRuntime()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("cudaErrorInsufficientDriver: CUDA 12.6 driver is older")
    assert "'edgerestore[gpu]'" in msg and msg.endswith("use the onnxruntime backend on this machine")


def test_cuda_runtime_ends_an_invalidated_capture_and_clears_its_error(monkeypatch):
    from edgerestore.runtime.cuda import CudaError, CudaRuntime

    calls = _fake_cudart(monkeypatch, end_err="cudaErrorStreamCaptureInvalidated")
    cuda = CudaRuntime()
    with pytest.raises(CudaError, match="cudaErrorStreamCaptureInvalidated"):
        cuda.capture_end(7)
    assert calls[-2:] == ["end", "clear"]
    calls.clear()
    cuda.capture_abort(7)  # still capturing (the enqueue failed): end it, drop the graph, clear the error
    assert calls == ["is_capturing", "end", "clear"]


def test_cuda_runtime_abort_after_a_capture_that_already_ended(monkeypatch):
    from edgerestore.runtime.cuda import CudaRuntime

    calls = _fake_cudart(monkeypatch, capturing=False)
    cuda = CudaRuntime()
    calls.clear()
    cuda.capture_abort(7)
    assert calls == ["is_capturing", "clear"]
    assert cuda.capture_end(7) == "exec" and calls[-3:] == ["end", "instantiate", "graph_destroy"]


# ---------------------------------------------------------------------------------------------------------
# the accuracy guard with the built engines (build_bundle on a machine whose GPU runs them)
# ---------------------------------------------------------------------------------------------------------


class FakeEngineBuilder:
    """`build_bundle`'s TensorRT builder on a machine with a GPU, for the fake TensorRT: an 'engine' is the
    ONNX graph it was built from (the fake runs it). `sabotage`: graphs whose converted (fp16/int8) engine
    computes something else, as a TensorRT kernel whose accuracy ONNX Runtime on a CPU did not predict."""

    suffix = ".engine"

    def __init__(self, export_dir: Path, sabotage=(), gpu=True, max_hw=(368, 640), features=4) -> None:
        self.export_dir, self.sabotage, self.gpu, self.max_hw = export_dir, set(sabotage), gpu, max_hw
        self.features = features
        self.built: list[Path] = []

    def builder_record(self):
        return {"name": "tensorrt", "version": "10.3.0", "strongly_typed": True}

    def device_record(self):
        return {"gpu_name": "Fake RTX", "compute_capability": "8.6", "tensorrt_version": "10.3.0"}

    def session_options(self):
        return {}

    def write_graph(self, src: Path, dst: Path) -> float:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(src))
        if src.parent != self.export_dir and src.stem in self.sabotage:
            for i, init in enumerate(model.graph.initializer):
                if init.name == "wt":
                    w = numpy_helper.to_array(init)
                    model.graph.initializer[i].CopyFrom(
                        numpy_helper.from_array((w * 40).astype(w.dtype), "wt")
                    )
        onnx.save(model, str(dst))
        self.built.append(src)
        return 0.01

    def finish(self) -> None:
        pass

    def measuring_backend(self):
        if not self.gpu:
            return None, "no GPU here to run tensorrt engines"
        cuda = FakeCuda()
        trt = make_fake_trt(cuda, max_hw=self.max_hw, features=self.features)
        return TensorRTBackend(trt, cuda=cuda, shared_scratch=lambda g: False), "tensorrt 10.3.0 on Fake RTX"


def _build_with(monkeypatch, tmp_path, builder, precision="fp16"):
    from edgerestore.engines import build as build_mod

    monkeypatch.setattr(build_mod, "make_builder", lambda backend, settings: builder)
    monkeypatch.setattr(build_mod, "resolve_backend", lambda backend, module=None: ("tensorrt", "tensorrt"))
    result = build_mod.build_bundle(
        builder.export_dir,
        tmp_path / "bundle",
        backend="tensorrt",
        precision=precision,
        shape_profile={"min": [16, 16], "opt": [64, 96], "max": [368, 640]},
        progress=False,
        calib="synthetic:12",
    )
    return result, json.loads((result.bundle.path / "manifest.json").read_text())


@pytest.fixture(scope="module")
def guard_export(tmp_path_factory):
    from engine_graphs import write_export_dir

    return write_export_dir(
        tmp_path_factory.mktemp("export"), conditions=("rain", "snow"), variants=("fp16",)
    )


def test_a_build_on_a_gpu_measures_the_built_engines_and_falls_back_where_they_miss(
    guard_export, tmp_path, monkeypatch
):
    builder = FakeEngineBuilder(guard_export, sabotage={"branch_rain"})
    result, manifest = _build_with(monkeypatch, tmp_path, builder)
    graphs = manifest["graphs"]
    by = "tensorrt 10.3.0 on Fake RTX"
    assert {g["accuracy"]["measured_by"] for g in graphs.values()} == {by}
    # ONNX Runtime on the CPU accepted the fp16 rain branch (precision.json); its engine misses the budget
    rain = graphs["branch_rain"]
    assert rain["precision"] == "fp32" and rain["accuracy"]["fallback"] == "fell back to fp32 on the device"
    fp16_try = rain["accuracy"]["tried"][0]
    assert fp16_try["precision"] == "fp16" and fp16_try["psnr_vs_float"] < 40
    assert guard_export / "branch_rain.onnx" in builder.built  # its engine rebuilt from the float32 graph
    assert {n: graphs[n]["precision"] for n in ("router", "trunk", "branch_snow")} == dict.fromkeys(
        ("router", "trunk", "branch_snow"), "fp16"
    )
    assert graphs["branch_snow"]["accuracy"]["psnr_vs_float"] >= 40
    assert (
        result.accuracy
        == f"accuracy: measured with the built engines by {by}; fell back on the device: branch_rain → fp32"
    )
    assert result.accuracy in result.summary()
    engine = result.bundle.path / rain["file"]
    assert engine.read_bytes() == (tmp_path / "bundle" / rain["file"]).read_bytes()
    import onnx

    assert {i.data_type for i in onnx.load(str(engine)).graph.initializer} == {onnx.TensorProto.FLOAT}


def test_a_branch_that_falls_back_takes_the_trunks_float16_features_through_one_cast(tmp_path, monkeypatch):
    """fp16 graphs carry `features` in float16; the float32 graph a branch falls back to on the device takes
    float32, so its engine is built from the graph with one Cast at its input (the runtime refuses a
    device tensor of another type)."""
    import onnx
    from engine_graphs import write_export_dir

    from edgerestore.precision import carry_in_float16

    export = write_export_dir(tmp_path / "export", conditions=("rain", "snow"), variants=("fp16",))
    for name in ("trunk", "branch_rain", "branch_snow"):
        path = export / "fp16" / f"{name}.onnx"
        onnx.save(carry_in_float16(onnx.load(str(path))), str(path))
    half = onnx.TensorProto.FLOAT16
    assert onnx.load(str(export / "fp16" / "trunk.onnx")).graph.output[0].type.tensor_type.elem_type == half
    builder = FakeEngineBuilder(export, sabotage={"branch_rain"})
    result, manifest = _build_with(monkeypatch, tmp_path, builder)
    rain = manifest["graphs"]["branch_rain"]
    assert rain["precision"] == "fp32" and manifest["graphs"]["trunk"]["precision"] == "fp16"
    features = next(i for i in rain["inputs"] if i["name"] == "features")
    assert features["dtype"] == "float16"  # what the fp16 trunk hands over
    engine = onnx.load(str(result.bundle.path / rain["file"]))
    casts = [n for n in engine.graph.node if n.op_type == "Cast" and "features" in n.input]
    assert len(casts) == 1 and engine.graph.input[1].type.tensor_type.elem_type == half
    assert result.accuracy.endswith("fell back on the device: branch_rain → fp32")


def test_a_build_without_a_gpu_keeps_the_cpu_measurement_and_says_so(guard_export, tmp_path, monkeypatch):
    builder = FakeEngineBuilder(guard_export, sabotage={"branch_rain"}, gpu=False)
    result, manifest = _build_with(monkeypatch, tmp_path, builder)
    graphs = manifest["graphs"]
    assert {g["precision"] for g in graphs.values()} == {"fp16"}
    (by,) = {g["accuracy"]["measured_by"] for g in graphs.values()}
    assert by.startswith("onnxruntime ") and by.endswith(" on the CPU (precision step)")
    assert (
        result.accuracy
        == f"accuracy: measured by {by}; not with the engines: no GPU here to run tensorrt engines"
    )
