"""TensorRT backend without a GPU: the plain-Python buffer/shape policy (bytes from shapes and dtypes,
grow-only reallocation, shared-scratch sizing, profile bounds, CUDA-graph keys), and the backend's whole
binding sequence driven through a fake CUDA (numpy memory) and a fake TensorRT module (engines that run
the synthetic ONNX graphs), checked against ONNX Runtime. A `gpu` test runs real engines when there is a
GPU and skips with the reason otherwise."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from edgerestore.errors import BundleError, UserError
from edgerestore.runtime.restorer import Restorer
from edgerestore.runtime.synthetic import PROTOTYPES, write_bundle
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


class FakeCuda:
    """CUDA runtime stand-in: memory is numpy, ops run immediately (or are recorded while capturing)."""

    def __init__(self) -> None:
        self.mem: dict[int, np.ndarray] = {}
        self.device = CountingAllocator()
        self.host = CountingAllocator(host=True)
        self.capturing: list | None = None
        self.captures = 0
        self.launches = 0
        self.clock = 0.0

    def _wrap(self, allocator: CountingAllocator, host: bool):
        fake = self

        class _A:
            def alloc(self, nbytes):
                block = allocator.alloc(nbytes)
                fake.mem[block.ptr] = block.array if host else np.zeros(nbytes, np.uint8)
                return block

            def free(self, block):
                allocator.free(block)
                del fake.mem[block.ptr]

        return _A()

    def device_allocator(self):
        return self._wrap(self.device, host=False)

    def host_allocator(self):
        return self._wrap(self.host, host=True)

    def enqueue(self, op) -> None:
        if self.capturing is not None:
            self.capturing.append(op)
        else:
            op()

    def _copy(self, dst, src, nbytes):
        self.mem[dst][:nbytes] = self.mem[src][:nbytes]

    def memcpy_htod_async(self, dst, src, nbytes, stream):
        self.enqueue(lambda: self._copy(dst, src, nbytes))

    memcpy_dtoh_async = memcpy_htod_async

    def stream_create(self):
        return 7

    def stream_synchronize(self, stream):
        pass

    def stream_destroy(self, stream):
        pass

    def event_create(self):
        return types.SimpleNamespace(t=0.0)

    def event_record(self, event, stream):
        self.clock += 0.25
        event.t = self.clock

    def event_elapsed_ms(self, a, b):
        return b.t - a.t

    def event_destroy(self, event):
        pass

    def capture_begin(self, stream):
        self.capturing = []

    def capture_end(self, stream):
        ops, self.capturing = self.capturing, None
        self.captures += 1
        return ops

    def graph_launch(self, ops, stream):
        self.launches += 1
        for op in ops:
            op()

    def graph_destroy(self, ops):
        pass


def make_fake_trt(cuda: FakeCuda, max_hw=(256, 256), features=4):
    """A module with the TensorRT API surface the backend uses; an 'engine' is an ONNX file run by ORT."""
    import onnxruntime as ort

    class DT:
        def __init__(self, name):
            self.name = name

    dtypes = {"tensor(uint8)": DT("UINT8"), "tensor(float)": DT("FLOAT")}
    modes = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    strategy = types.SimpleNamespace(STATIC="static", USER_MANAGED="user")

    class Engine:
        def __init__(self, blob: bytes):
            self.sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
            self.io = [(i.name, i, "in") for i in self.sess.get_inputs()] + [
                (o.name, o, "out") for o in self.sess.get_outputs()
            ]
            self.num_io_tensors = len(self.io)
            self.device_memory_size_v2 = 1000 * len(self.sess.get_outputs()[0].name) + 7 * len(blob) % 5000

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

        def create_execution_context(self, strategy_=strategy.STATIC):
            return Context(self, strategy_)

    class Context:
        def __init__(self, engine, strategy_):
            self.engine, self.strategy = engine, strategy_
            self.shapes, self.addresses, self.device_memory = {}, {}, None

        def set_device_memory(self, ptr, size):
            assert size >= self.engine.device_memory_size_v2
            self.device_memory = (ptr, size)

        def set_input_shape(self, name, shape):
            lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
            if not all(a <= d <= b for d, a, b in zip(shape, lo, hi)):
                return False
            self.shapes[name] = tuple(shape)
            return True

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def _feeds(self):
            feeds = {}
            for i in self.engine.sess.get_inputs():
                dtype = np.uint8 if i.type == "tensor(uint8)" else np.float32
                shape = self.shapes[i.name]
                n = int(np.prod(shape)) * np.dtype(dtype).itemsize
                feeds[i.name] = cuda.mem[self.addresses[i.name]][:n].view(dtype).reshape(shape).copy()
            return feeds

        def get_tensor_shape(self, name):
            if name in self.shapes:
                return self.shapes[name]
            outs = self.engine.sess.run(None, self._feeds())  # shape inference, the fake's way
            names = [o.name for o in self.engine.sess.get_outputs()]
            return outs[names.index(name)].shape

        def execute_async_v3(self, stream):
            assert stream == 7
            if self.strategy == strategy.USER_MANAGED:
                assert self.device_memory is not None, "USER_MANAGED context enqueued without scratch"

            def op():
                outs = self.engine.sess.run(None, self._feeds())
                for o, value in zip(self.engine.sess.get_outputs(), outs):
                    raw = np.ascontiguousarray(value).view(np.uint8).reshape(-1)
                    cuda.mem[self.addresses[o.name]][: raw.size] = raw

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

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    return types.SimpleNamespace(
        Logger=Logger,
        Runtime=Runtime,
        TensorIOMode=modes,
        ExecutionContextAllocationStrategy=strategy,
        __name__="fake_tensorrt",
    )


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("bundle"), depth=1, max_hw=(256, 256))


def open_fake(bundle_dir: Path, cuda_graphs=False, **options):
    from edgerestore.engines.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    cuda = FakeCuda()
    backend = TensorRTBackend(trt_module=make_fake_trt(cuda), cuda=cuda, cuda_graphs=cuda_graphs)
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


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_fake_tensorrt_matches_onnxruntime(bundle_dir, rng, cuda_graphs):
    inputs = frames(rng) * 2
    with Restorer.open(bundle_dir, threads=1) as ref:
        expected = [ref(f) for f in inputs]
    restorer, cuda = open_fake(bundle_dir, cuda_graphs=cuda_graphs)
    with restorer:
        got = [restorer(f) for f in inputs]
        counts = dict(restorer.backend.run_counts)
        if cuda_graphs:
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


def test_features_stay_on_device_and_branches_share_one_scratch(bundle_dir):
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
        scratch = {be._g[f"branch_{c}"].context.device_memory for c in ("rain", "haze", "raindrop", "snow")}
        assert len(scratch) == 1
        ((ptr, size),) = scratch
        assert size == shared_scratch_bytes(
            be._g[f"branch_{c}"].engine.device_memory_size_v2 for c in ("rain", "haze", "raindrop", "snow")
        )
        assert be._g["trunk"].context.strategy == "static" and be._g["router"].context.device_memory is None


def test_device_buffers_are_reused_and_grow_only_with_the_frame(bundle_dir):
    restorer, cuda = open_fake(bundle_dir, force="rain")
    with restorer:
        big = np.full((128, 128, 3), 90, np.uint8)
        small = np.full((64, 64, 3), 90, np.uint8)
        restorer(big)
        after_first = restorer.backend.device_buffers.allocations
        for _ in range(3):
            restorer(small)
            restorer(big)
        assert restorer.backend.device_buffers.allocations == after_first
        restorer(np.full((130, 200, 3), 90, np.uint8))
        assert restorer.backend.device_buffers.allocations > after_first
        tall = restorer(np.full((300, 64, 3), 90, np.uint8))  # beyond the max shape: tiles within it
        assert "tiled" in tall.flags and tall.image.shape == (300, 64, 3)


def test_engine_that_cannot_be_deserialized_is_a_bundle_error(tmp_path):
    cuda = FakeCuda()
    backend = TensorRTBackend(trt_module=make_fake_trt(cuda), cuda=cuda)
    bad = tmp_path / "router.engine"
    bad.write_bytes(b"not an engine")
    with pytest.raises(BundleError, match="rebuild"):
        backend.load("router", bad)


def _gpu_reason() -> str | None:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return "cuda-python is not installed"
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        return f"no CUDA device ({getattr(err, 'name', err)})"
    for name in ("tensorrt", "tensorrt_rtx"):
        try:
            __import__(name)
            return None
        except ImportError:
            continue
    return "TensorRT is not installed"


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_reason() is not None, reason=f"needs an NVIDIA GPU with TensorRT: {_gpu_reason()}")
def test_real_tensorrt_engines_match_onnxruntime(bundle_dir, tmp_path, rng):
    from edgerestore.engines.bundle import load_bundle
    from edgerestore.runtime.trt import import_tensorrt

    trt = import_tensorrt(None)
    logger = trt.Logger(trt.Logger.WARNING)
    bundle = load_bundle(bundle_dir)
    backend = TensorRTBackend(trt_module=trt, cuda_graphs=True)
    for name in bundle.graph_names:
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        assert parser.parse(bundle.graph_path(name).read_bytes()), parser.get_error(0)
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            if t.name == "frame":
                profile.set_shape(t.name, (1, 16, 16, 3), (1, 64, 64, 3), (1, 256, 256, 3))
            elif t.name == "features":
                f = t.shape[1]
                profile.set_shape(t.name, (1, f, 8, 8), (1, f, 32, 32), (1, f, 128, 128))
        config.add_optimization_profile(profile)
        path = tmp_path / f"{name}.engine"
        path.write_bytes(bytes(builder.build_serialized_network(network, config)))
        backend.load(name, path)
    backend.finalize()
    inputs = frames(rng)
    with Restorer.open(bundle_dir, threads=1) as ref, Restorer(bundle, backend) as r:
        for f in inputs * 3:
            e, g = ref(f), r(f)
            assert g.condition == e.condition
            assert np.abs(g.image.astype(int) - e.image.astype(int)).max() <= 1
