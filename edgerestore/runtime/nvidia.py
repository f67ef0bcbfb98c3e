"""What NVIDIA software this machine has: the one TensorRT import and the one CUDA probe.

Both sides of the TensorRT backend use these: the builder (`edgerestore.engines.tensorrt`), the runner
(`edgerestore.runtime.trt`), the bundle loader's device checks, `build --backend auto`, `doctor` and bench.

* `import_tensorrt`: the TensorRT Python module (`tensorrt` for TensorRT 10.x / 11 and JetPack, or
  `tensorrt_rtx`), refused in one line when missing or older than `MIN_TENSORRT`.
* `cuda_runtime`: cuda-python's runtime module (`cuda.bindings.runtime`, or `cuda.cudart` before 12.6).
* `cuda_device_status`: the CUDA device and its driver, or one line saying why there is none usable (a driver
  older than cuda-python's CUDA runtime is named with its fix); `driver_version`: the driver's CUDA version
  from libcuda alone (`doctor`, where cuda-python may be missing).

Must not import torch; TensorRT and cuda-python are imported only inside these functions.
"""

from __future__ import annotations

import ctypes
import importlib
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from edgerestore.errors import UserError

#: The TensorRT Python modules, in the order `import_tensorrt(None)` tries them.
TRT_MODULES: tuple[str, ...] = ("tensorrt", "tensorrt_rtx")


@dataclass(frozen=True)
class DeviceInfo:
    """The CUDA device engines would run on. `compute_capability`: "major.minor"."""

    index: int
    name: str
    compute_capability: str
    driver_version: int | None = None

    @property
    def sm(self) -> int:
        major, minor = self.compute_capability.split(".")
        return int(major) * 10 + int(minor)

    @property
    def key(self) -> str:
        """'sm86-nvidia-geforce-rtx-3090': compute capability and GPU model, for per-GPU cache files (an AGX
        Orin and an Orin Nano are both 8.7)."""
        return f"sm{self.sm}-{re.sub(r'[^a-z0-9]+', '-', self.name.lower()).strip('-')}"


#: The oldest TensorRT the engines code supports: 10.1 (strongly typed networks, `set_device_memory(ptr,
#: size)`, explicit-batch-only parsing). JetPack 6.1+ ships 10.3; TensorRT 8.6 (JetPack 5) and 10.0 do not work.
MIN_TENSORRT: tuple[int, int] = (10, 1)


def unsupported_tensorrt(module: str, version: str) -> str | None:
    """Why TensorRT `version` of `module` cannot be used, or None. TensorRT-RTX: every release."""
    if module != "tensorrt":
        return None
    m = re.match(r"(\d+)\.(\d+)", str(version))
    if m is None:
        return f"cannot read the TensorRT version {version!r}"
    if (int(m.group(1)), int(m.group(2))) < MIN_TENSORRT:
        floor = ".".join(map(str, MIN_TENSORRT))
        return (
            f"TensorRT {version} is too old: edgerestore needs TensorRT >= {floor} (JetPack 6.1+ ships 10.3; "
            "pip install 'tensorrt>=10.1' elsewhere)"
        )
    return None


def require_supported_tensorrt(trt: Any) -> None:
    """UserError (one line) when the TensorRT module `trt` is older than `MIN_TENSORRT`."""
    problem = unsupported_tensorrt(module_name(trt), str(getattr(trt, "__version__", "unknown")))
    if problem:
        raise UserError(problem)


#: The CUDA runtime error of a cuda-python whose CUDA major version is newer than the driver's.
INSUFFICIENT_DRIVER = "cudaErrorInsufficientDriver"


def cuda_runtime() -> Any:
    """cuda-python's CUDA runtime module (`cuda.bindings.runtime`; `cuda.cudart` before 12.6); ImportError
    when cuda-python is not installed."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:  # cuda-python < 12.6
        from cuda import cudart  # type: ignore[no-redef]
    return cudart


def driver_problem(error: Any, driver: int | None = None, runtime: int | None = None) -> str:
    """One line for a failed CUDA call. `driver`/`runtime`: cudaDriverGetVersion / cudaRuntimeGetVersion
    (1000 * major + 10 * minor; driver 0 = no NVIDIA driver at all). A driver older than cuda-python's CUDA
    runtime gets its fix: cuda-python 13 needs a CUDA 13 driver (>= 580); JetPack 6 and other CUDA 12
    drivers need cuda-python 12."""
    name = str(getattr(error, "name", error))
    if name in (INSUFFICIENT_DRIVER, "35") and driver == 0:
        return "no NVIDIA driver on this machine"
    if name in (INSUFFICIENT_DRIVER, "35"):
        have = f"CUDA {driver // 1000}.{driver % 1000 // 10} driver" if driver else "the NVIDIA driver"
        need = f" (CUDA {runtime // 1000}.{runtime % 1000 // 10})" if runtime else ""
        return (
            f"{INSUFFICIENT_DRIVER}: {have} is older than the CUDA runtime of the installed cuda-python{need}; "
            "on JetPack 6 or another CUDA 12 driver install 'edgerestore[gpu]' (cuda-python < 13; "
            "TensorRT-RTX: 'edgerestore[tensorrt-rtx-cu12]'), or update the driver (>= 580 for CUDA 13)"
        )
    return f"no usable CUDA device ({name})"


def cuda_versions(cudart: Any) -> tuple[int | None, int | None]:
    """(driver, runtime) CUDA versions from cuda-python's runtime module, None where a call fails."""
    out = []
    for call in (cudart.cudaDriverGetVersion, cudart.cudaRuntimeGetVersion):
        try:
            err, v = call()
            out.append(int(v) if int(err) == 0 else None)
        except Exception:
            out.append(None)
    return out[0], out[1]


def driver_version() -> str | None:
    """The CUDA driver version ("12.6") from libcuda itself (no cuda-python needed), or None without a
    driver."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) == 0:
            return f"{version.value // 1000}.{version.value % 1000 // 10}"
    return None


def cuda_device_status(device: int = 0) -> tuple[DeviceInfo | None, str | None]:
    """(device, None) for CUDA device `device`, or (None, why not): cuda-python missing, no GPU, or a driver
    too old for cuda-python's runtime (`driver_problem`). Never raises."""
    try:
        cudart = cuda_runtime()
    except ImportError:
        return None, "cuda-python is not installed (pip install 'edgerestore[gpu]')"
    try:
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0:
            return None, driver_problem(err, *cuda_versions(cudart))
        if not count or device >= count:
            return None, f"no CUDA device {device} ({count or 0} found)"
        err, prop = cudart.cudaGetDeviceProperties(device)
        if int(err) != 0:
            return None, driver_problem(err, *cuda_versions(cudart))
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        err, driver = cudart.cudaDriverGetVersion()
        return DeviceInfo(
            index=device,
            name=name.strip("\x00").strip(),
            compute_capability=f"{prop.major}.{prop.minor}",
            driver_version=int(driver) if int(err) == 0 else None,
        ), None
    except Exception as exc:  # no libcuda, a broken install: no usable device
        return (
            None,
            f"no usable CUDA device ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
        )


def cuda_device_info(device: int = 0) -> DeviceInfo | None:
    """Name and compute capability of CUDA device `device` through cuda-python's runtime bindings, or None
    when cuda-python, the driver or the GPU is absent (`cuda_device_status` says why)."""
    return cuda_device_status(device)[0]


def module_name(trt: Any) -> str:
    """`tensorrt` or `tensorrt_rtx` for a TensorRT module (or a stand-in with its `__name__`)."""
    return str(getattr(trt, "__name__", "tensorrt")).split(".")[0]


def is_rtx(trt: Any) -> bool:
    return module_name(trt) == "tensorrt_rtx"


def import_tensorrt(module: str | ModuleType | Any = None, *, check_version: bool = True) -> Any:
    """The TensorRT Python module: a module object (or a stand-in with the same API) as given, a name in
    `TRT_MODULES`, or None (`tensorrt` if importable, else `tensorrt_rtx`). UserError (one line) when it is
    missing, or (`check_version`) older than `MIN_TENSORRT`."""
    if module is not None and not isinstance(module, str):
        trt = module
    else:
        if module is not None and module not in TRT_MODULES:
            raise UserError(f"unknown TensorRT module {module!r}; expected one of {', '.join(TRT_MODULES)}")
        names = [module] if module else list(TRT_MODULES)
        for name in names:
            try:
                trt = importlib.import_module(name)
                break
            except ImportError:
                continue
        else:
            raise UserError(
                f"TensorRT is not installed (tried {', '.join(names)}): install 'edgerestore[tensorrt]' (JetPack "
                "ships it) or 'edgerestore[tensorrt-rtx]', or use the onnxruntime backend"
            )
    if check_version:
        require_supported_tensorrt(trt)
    return trt
