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
from edgerestore.runtime.trt import (
    ALIGNMENT,
    Allocation,
    CudaGraphCache,
    GrowOnlyBuffers,
    ShapeBounds,
    TensorRTBackend,
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

    def memcpy_htod_async(self, dst, src, nbytes, stream):
        assert stream == 7

        def op():
            self.clock += 0.01
            self.mem[dst][:nbytes] = self.mem[src][:nbytes]  # reads the source when the stream gets here

        self.enqueue(op)

    memcpy_dtoh_async = memcpy_htod_async

    def stream_create(self):
        return 7

    def stream_synchronize(self, stream):
        self._no_capture("cudaStreamSynchronize")
        self.syncs += 1
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
            from edgerestore.runtime.trt import CudaError

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
    from edgerestore.engines.bundle import cuda_device_status

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
    from edgerestore.runtime.trt import import_tensorrt

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
    from edgerestore.runtime.trt import CudaRuntime

    _fake_cudart(monkeypatch, count_err="cudaErrorInsufficientDriver")
    with pytest.raises(UserError) as e:
        CudaRuntime()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("cudaErrorInsufficientDriver: CUDA 12.6 driver is older")
    assert "'edgerestore[gpu]'" in msg and msg.endswith("use the onnxruntime backend on this machine")


def test_cuda_runtime_ends_an_invalidated_capture_and_clears_its_error(monkeypatch):
    from edgerestore.runtime.trt import CudaError, CudaRuntime

    calls = _fake_cudart(monkeypatch, end_err="cudaErrorStreamCaptureInvalidated")
    cuda = CudaRuntime()
    with pytest.raises(CudaError, match="cudaErrorStreamCaptureInvalidated"):
        cuda.capture_end(7)
    assert calls[-2:] == ["end", "clear"]
    calls.clear()
    cuda.capture_abort(7)  # still capturing (the enqueue failed): end it, drop the graph, clear the error
    assert calls == ["is_capturing", "end", "clear"]


def test_cuda_runtime_abort_after_a_capture_that_already_ended(monkeypatch):
    from edgerestore.runtime.trt import CudaRuntime

    calls = _fake_cudart(monkeypatch, capturing=False)
    cuda = CudaRuntime()
    calls.clear()
    cuda.capture_abort(7)
    assert calls == ["is_capturing", "clear"]
    assert cuda.capture_end(7) == "exec" and calls[-3:] == ["end", "instantiate", "graph_destroy"]
