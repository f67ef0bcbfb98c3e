"""The TensorRT backend's buffer and shape policy, plain Python with an injected allocator (no CUDA, no
TensorRT), so it is tested without a GPU: bytes from shapes and dtypes, aligned grow-only buffers, the
shared-scratch size, host views of page-locked memory, profile bounds, and the keys of captured CUDA graphs.

Must not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edgerestore.errors import BundleError, UserError

#: TensorRT DataType name -> numpy dtype (types the runtime's graphs can carry at their I/O).
TRT_TO_NUMPY: dict[str, np.dtype] = {
    "FLOAT": np.dtype(np.float32),
    "HALF": np.dtype(np.float16),
    "INT8": np.dtype(np.int8),
    "UINT8": np.dtype(np.uint8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "BOOL": np.dtype(np.bool_),
}

#: TensorRT requires 256-byte aligned scratch; buffers are rounded up to this so views stay aligned.
ALIGNMENT = 256


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """numpy dtype of a TensorRT DataType (or its name)."""
    name = trt_dtype if isinstance(trt_dtype, str) else getattr(trt_dtype, "name", str(trt_dtype))
    name = name.rsplit(".", 1)[-1]
    if name not in TRT_TO_NUMPY:
        raise BundleError(
            f"engine tensor type {name} is not supported by the runtime (expected one of {', '.join(TRT_TO_NUMPY)})"
        )
    return TRT_TO_NUMPY[name]


def tensor_nbytes(shape: Sequence[int], dtype: np.dtype | type) -> int:
    """Bytes of a dense tensor; every dim must be resolved (>= 0)."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise ValueError(f"shape {tuple(dims)} has unresolved (negative) dimensions")
    return int(np.prod(dims, dtype=np.int64)) * np.dtype(dtype).itemsize


def align(nbytes: int, alignment: int = ALIGNMENT) -> int:
    return -(-int(nbytes) // alignment) * alignment


def shared_scratch_bytes(sizes: Iterable[int]) -> int:
    """One scratch area serves contexts that never run at the same time: the max of their needs."""
    return align(max((int(s) for s in sizes), default=0))


@dataclass
class Allocation:
    """A block from an allocator: its address, size and (host memory only) a flat uint8 numpy view."""

    ptr: int
    nbytes: int
    array: np.ndarray | None = None


class Allocator(Protocol):
    def alloc(self, nbytes: int) -> Allocation: ...

    def free(self, block: Allocation) -> None: ...


class GrowOnlyBuffers:
    """Named buffers from one allocator, reallocated only when a request exceeds the current size.

    `generation[key]` increases on every reallocation of `key`, so address-dependent state (bound
    tensor addresses, captured CUDA graphs) can tell it is stale."""

    def __init__(self, allocator: Allocator, alignment: int = ALIGNMENT) -> None:
        self.allocator = allocator
        self.alignment = alignment
        self.blocks: dict[Hashable, Allocation] = {}
        self.generation: dict[Hashable, int] = {}
        self.allocations = 0
        self.frees = 0

    def ensure(self, key: Hashable, nbytes: int) -> Allocation:
        block = self.blocks.get(key)
        if block is not None and block.nbytes >= nbytes:
            return block
        if block is not None:
            self.allocator.free(block)
            self.frees += 1
        block = self.allocator.alloc(max(align(nbytes, self.alignment), self.alignment))
        self.allocations += 1
        self.blocks[key] = block
        self.generation[key] = self.generation.get(key, 0) + 1
        return block

    @property
    def total_bytes(self) -> int:
        return sum(b.nbytes for b in self.blocks.values())

    def release_all(self) -> None:
        for block in self.blocks.values():
            self.allocator.free(block)
            self.frees += 1
        self.blocks.clear()


def host_view(block: Allocation, shape: Sequence[int], dtype: np.dtype | type) -> np.ndarray:
    """A numpy array of `shape`/`dtype` over the first bytes of a host block (no copy)."""
    if block.array is None:
        raise ValueError("not a host allocation")
    n = tensor_nbytes(shape, dtype)
    if n > block.nbytes:
        raise ValueError(f"host block of {block.nbytes} bytes is smaller than {n}")
    return block.array[:n].view(np.dtype(dtype)).reshape(tuple(shape))


@dataclass(frozen=True)
class ShapeBounds:
    """An optimization profile's frame bounds as (H, W) for NHWC frames: min and max inclusive."""

    min_hw: tuple[int, int]
    max_hw: tuple[int, int]

    @classmethod
    def from_profile(cls, min_shape: Sequence[int], max_shape: Sequence[int]) -> ShapeBounds:
        """From TensorRT profile dims of an NHWC frame tensor ([1, H, W, 3])."""
        return cls((int(min_shape[1]), int(min_shape[2])), (int(max_shape[1]), int(max_shape[2])))

    def check(self, h: int, w: int, what: str = "frame") -> None:
        (hmin, wmin), (hmax, wmax) = self.min_hw, self.max_hw
        if not (hmin <= h <= hmax and wmin <= w <= wmax):
            raise UserError(
                f"{what} of {h}x{w} (HxW, after padding) is outside the engine's shape profile "
                f"{hmin}x{wmin} .. {hmax}x{wmax}; resize the frame or rebuild the bundle with "
                "`edgerestore build --min HxW --max HxW`"
            )


def check_profile(
    shape: Sequence[int], min_shape: Sequence[int], max_shape: Sequence[int], tensor: str
) -> None:
    """Every dim of `shape` within [min, max] of the engine's profile for `tensor` (any layout)."""
    if len(shape) != len(min_shape) or any(
        not (lo <= int(d) <= hi) for d, lo, hi in zip(shape, min_shape, max_shape)
    ):
        raise UserError(
            f"input {tensor!r} of shape {tuple(int(d) for d in shape)} is outside the engine's profile "
            f"{tuple(min_shape)} .. {tuple(max_shape)}; resize the frame or rebuild the bundle with "
            "`edgerestore build --min HxW --max HxW`"
        )


class CudaGraphCache:
    """At most ONE captured CUDA graph per execution context (graph name), for one key (input shapes and
    tensor addresses). TensorRT documents replaying a graph only while the context's shapes and addresses
    are those it was captured with; a context that ran other shapes since (the trunk alternating full- and
    quarter-size frames) must not replay an older capture. So a new key destroys the graph's capture; the
    first run at a key is an ordinary enqueue (TensorRT wants one after a shape change), the second is
    captured, later ones replay. Keys whose capture failed are run normally from then on."""

    def __init__(self, destroy: Callable[[Any], None] | None = None) -> None:
        self._last: dict[str, Hashable] = {}  # graph -> key of its latest run
        self._graphs: dict[str, tuple[Hashable, Any]] = {}  # graph -> (key, captured exec)
        self._uncapturable: set[Hashable] = set()
        self._destroy = destroy

    @staticmethod
    def key(graph: str, shapes: Mapping[str, Sequence[int]], addresses: Mapping[str, int]) -> Hashable:
        return (
            graph,
            tuple(sorted((k, tuple(int(d) for d in v)) for k, v in shapes.items())),
            tuple(sorted((k, int(v)) for k, v in addresses.items())),
        )

    def lookup(self, key: Hashable) -> tuple[str, Any]:
        """('replay', exec) | ('capture', None) | ('run', None)."""
        graph = key[0]  # type: ignore[index]
        held = self._graphs.get(graph)
        if held is not None and held[0] == key:
            return "replay", held[1]
        if held is not None:
            self._drop(graph)
        if key in self._uncapturable:
            return "run", None
        if self._last.get(graph) == key:
            return "capture", None
        self._last[graph] = key
        return "run", None

    def store(self, key: Hashable, graph_exec: Any) -> None:
        graph = key[0]  # type: ignore[index]
        self._drop(graph)
        self._graphs[graph] = (key, graph_exec)

    def uncapturable(self, key: Hashable) -> None:
        """The capture at `key` failed: run it normally from now on."""
        self._uncapturable.add(key)

    def _drop(self, graph: str) -> None:
        held = self._graphs.pop(graph, None)
        if held is not None and self._destroy is not None:
            self._destroy(held[1])

    def invalidate(self, graph: str | None = None) -> None:
        for name in [g for g in self._graphs if graph is None or g == graph]:
            self._drop(name)
        self._last = {g: k for g, k in self._last.items() if graph is not None and g != graph}

    def __len__(self) -> int:
        return len(self._graphs)
