"""CUDA through NVIDIA's cuda-python (`cuda.bindings.runtime`): the few runtime calls the TensorRT backend
needs (device memory, page-locked host memory, async copies, streams, events, stream capture and CUDA
graphs), errors raised as `CudaError`. The module is imported (`nvidia.cuda_runtime`) only when a
`CudaRuntime` is made.

Must not import torch.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from edgerestore.errors import UserError
from edgerestore.runtime.nvidia import DeviceInfo, cuda_device_status, cuda_runtime
from edgerestore.runtime.trt_policy import Allocation, Allocator


class CudaError(RuntimeError):
    pass


class CudaRuntime:
    """The few CUDA runtime calls the backend needs, via `cuda.bindings.runtime` (cuda-python >= 12.6;
    older releases expose the same module as `cuda.cudart`). Errors raise CudaError."""

    def __init__(self, device: int = 0) -> None:
        try:
            self.rt = cuda_runtime()
        except ImportError as exc:
            raise UserError(
                "the TensorRT backend needs NVIDIA's cuda-python; install it: pip install 'edgerestore[gpu]'"
            ) from exc
        self.device = device
        info, why = cuda_device_status(device)  # the one CUDA probe (names an old driver with its fix)
        if info is None:
            raise UserError(f"{why}; use the onnxruntime backend on this machine")
        self.info: DeviceInfo = info
        self._check(self.rt.cudaSetDevice(device))

    def device_key(self) -> str:
        """'sm86-nvidia-geforce-rtx-3090': compute capability and GPU model, for per-GPU cache files."""
        return self.info.key

    def _check(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise CudaError(f"CUDA call failed: {getattr(err, 'name', err)}")
        return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)

    # memory
    def device_allocator(self) -> Allocator:
        rt, check = self.rt, self._check

        class _Device:
            def alloc(self, nbytes: int) -> Allocation:
                return Allocation(int(check(rt.cudaMalloc(nbytes))), nbytes)

            def free(self, block: Allocation) -> None:
                check(rt.cudaFree(block.ptr))

        return _Device()

    def host_allocator(self) -> Allocator:
        rt, check = self.rt, self._check

        class _PinnedHost:
            def alloc(self, nbytes: int) -> Allocation:
                ptr = int(check(rt.cudaHostAlloc(nbytes, rt.cudaHostAllocDefault)))
                array = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
                return Allocation(ptr, nbytes, array)

            def free(self, block: Allocation) -> None:
                check(rt.cudaFreeHost(block.ptr))

        return _PinnedHost()

    def memcpy_htod_async(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._check(
            self.rt.cudaMemcpyAsync(dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)
        )

    def memcpy_dtoh_async(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._check(
            self.rt.cudaMemcpyAsync(dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
        )

    # streams, events
    def stream_create(self) -> Any:
        return self._check(self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking))

    def stream_synchronize(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream))

    def stream_destroy(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamDestroy(stream))

    def event_create(self) -> Any:
        return self._check(self.rt.cudaEventCreate())

    def event_record(self, event: Any, stream: Any) -> None:
        self._check(self.rt.cudaEventRecord(event, stream))

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._check(self.rt.cudaEventElapsedTime(start, end)))

    def event_destroy(self, event: Any) -> None:
        self._check(self.rt.cudaEventDestroy(event))

    # CUDA graphs
    def capture_begin(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check(self.rt.cudaStreamBeginCapture(stream, mode))

    def capture_end(self, stream: Any) -> Any:
        """End the capture and instantiate it; CudaError (the capture ended, its error cleared) when the
        capture was invalidated or cannot be instantiated."""
        err, graph = self.rt.cudaStreamEndCapture(stream)
        if err != self.rt.cudaError_t.cudaSuccess:
            self.rt.cudaGetLastError()
            raise CudaError(f"CUDA graph capture failed: {getattr(err, 'name', err)}")
        try:
            return self._check(self.rt.cudaGraphInstantiate(graph, 0))
        except CudaError:
            self.rt.cudaGetLastError()
            raise
        finally:
            self._check(self.rt.cudaGraphDestroy(graph))

    def capture_abort(self, stream: Any) -> None:
        """After an enqueue failed while capturing (what trtexec does): end the capture if it is still on,
        drop the partial graph and clear the error, so the stream takes ordinary work again."""
        err, status = self.rt.cudaStreamIsCapturing(stream)
        if (
            err == self.rt.cudaError_t.cudaSuccess
            and status != self.rt.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone
        ):
            err, graph = self.rt.cudaStreamEndCapture(stream)
            if err == self.rt.cudaError_t.cudaSuccess and graph:
                self.rt.cudaGraphDestroy(graph)
        self.rt.cudaGetLastError()

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        self._check(self.rt.cudaGraphLaunch(graph_exec, stream))

    def graph_destroy(self, graph_exec: Any) -> None:
        self._check(self.rt.cudaGraphExecDestroy(graph_exec))
