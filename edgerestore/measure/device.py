"""What a bench report records about where it ran: CPU model and cores, the runtime and its version, the
thread count that actually ran (ORT's default resolved to the number it uses), and the *device key*
(hardware, core count, runtime and version) a baseline is filed under; `runnable_others`, the machine's
load from other tasks.

Imports the runtime's backends lazily; never torch.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """`model name` (x86) or `Hardware` / `Model` (ARM) from /proc/cpuinfo, else platform's guess."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                fields.setdefault(k.strip().lower(), v.strip())
    except OSError:
        pass
    for key in ("model name", "hardware", "model", "cpu model"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine() or "unknown-cpu"


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, so a container's limit counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", " ", text.lower())
    text = re.sub(r"\b(cpu|processor|with radeon graphics)\b", " ", text)
    text = re.sub(r"@.*$", " ", text)  # "@ 2.60GHz": the name already says which part it is
    return re.sub(r"[^a-z0-9.]+", "-", text).strip("-.") or "unknown"


@dataclass(frozen=True)
class BenchDevice:
    """What a run ran on. `kind`: "cpu" (ONNX Runtime) or "gpu" (TensorRT)."""

    kind: str
    name: str  # CPU model, or GPU name
    cores: int
    runtime: str  # "onnxruntime" | "tensorrt" | "tensorrt_rtx" | "pytorch"
    runtime_version: str
    threads: int | None  # ONNX Runtime intra-op threads that ran (ORT's default resolved); None on GPUs
    compute_capability: str | None = None
    machine: str = field(default_factory=platform.machine)

    @property
    def key(self) -> str:
        """`<hardware>-<cores>c-<runtime>-<version>`: two runs share a key only when the same hardware ran the
        same runtime version. The thread count is not part of it: it is a setting a change can lower, and
        `compare` judges it (fewer threads than the baseline is a regression, not another device)."""
        hw = _slug(self.name) + (
            f"-sm{self.compute_capability.replace('.', '')}" if self.compute_capability else ""
        )
        return f"{hw}-{self.cores}c-{_slug(self.runtime)}-{self.runtime_version}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BenchDevice:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyper-threads of one core count once), from
    /sys/devices/system/cpu/cpu<N>/topology; `cpu_cores()` where the topology cannot be read."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return cpu_cores()
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(
                (topo / "physical_package_id").read_text().strip()
                + ":"
                + (topo / "core_id").read_text().strip()
            )
        except OSError:
            return cpu_cores()
    return len(cores) or cpu_cores()


def ort_threads(restorer: Any) -> int | None:
    """The intra-op thread count the restorer's ONNX Runtime sessions run with: the configured one, or for
    ORT's default (0) the number ORT picks, one per physical core (`physical_cores`)."""
    configured = restorer.threads
    if configured is None:
        return None
    return configured if configured > 0 else physical_cores()


def device_of(restorer: Any) -> BenchDevice:
    """The device key of a `Restorer` (its backend decides CPU vs GPU)."""
    backend = restorer.backend
    if getattr(backend, "name", "") == "tensorrt":
        from edgerestore.runtime.nvidia import cuda_device_info

        info = cuda_device_info()
        trt = backend.trt
        module = getattr(trt, "__name__", "tensorrt").split(".")[0]
        return BenchDevice(
            "gpu",
            info.name if info else "unknown-gpu",
            cpu_cores(),
            module,
            str(getattr(trt, "__version__", "?")),
            None,
            info.compute_capability if info else None,
        )
    import onnxruntime

    return BenchDevice(
        "cpu", cpu_model(), cpu_cores(), "onnxruntime", onnxruntime.__version__, ort_threads(restorer)
    )


def runnable_others() -> float | None:
    """Tasks runnable on this machine right now besides the caller (the 4th field of /proc/loadavg, less
    the thread reading it); None where there is no /proc/loadavg. Sampled between frames, it says how busy
    the machine was while a round ran."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return float(max(0, running - 1))
