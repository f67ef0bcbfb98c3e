"""ONNX Runtime "builder": each graph saved as ONNX Runtime's own offline-optimised model, for a bundle.

Why ORT_ENABLE_EXTENDED for the saved file: ONNX Runtime's offline mode writes the graph after its
optimisation passes (`SessionOptions.optimized_model_filepath`). Levels up to EXTENDED are fusions (Conv +
activation, Q/DQ -> QLinear ops, Gelu, LayerNorm ...) that are valid on any CPU running the CPU execution
provider; ORT_ENABLE_ALL adds the NCHWc layout transformer, whose blocked layout depends on the build
machine's vector width (AVX2 vs AVX-512 vs NEON) — ONNX Runtime itself warns that such a file "should only
be used in the same environment the model was optimized in". So the bundle stores the EXTENDED graph
(portable between an x86 build host and an ARM edge device) and records `graph_optimization_level:
ORT_ENABLE_ALL` in `session_options`, so the device applies its own layout pass when it loads the graph
(levels 1-2 are then near no-ops, load stays fast).

`session_options` in the manifest are SessionOptions attribute names with enum values by name (the form
`edgerestore.runtime.ort.make_session_options` reads).

Must not import torch. Imports onnxruntime inside functions.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgerestore.engines.bundle import BuildError
from edgerestore.errors import UserError

if TYPE_CHECKING:
    from edgerestore.engines.build import BuildSettings

SAVED_OPTIMIZATION_LEVEL = "ORT_ENABLE_EXTENDED"
RUNTIME_OPTIMIZATION_LEVEL = "ORT_ENABLE_ALL"


@dataclass
class OptimizedGraph:
    path: Path
    seconds: float


def cpu_name() -> str:
    """A human-readable CPU name (`model name` from /proc/cpuinfo on Linux, else platform's)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class OnnxRuntimeBuilder:
    """Writes ONNX Runtime's optimised form of each graph. `threads`: intra-op threads recorded for the
    runtime (0: ONNX Runtime's default, one per physical core)."""

    def __init__(self, threads: int = 0, providers: list[str] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install onnxruntime") from None
        if threads < 0:
            raise UserError(f"threads must be >= 0, got {threads}")
        self.ort = ort
        self.version = ort.__version__
        self.threads = threads
        self.providers = providers or ["CPUExecutionProvider"]

    def optimize(self, onnx_path: str | Path, out_path: str | Path) -> OptimizedGraph:
        """Load `onnx_path` into a session with the saved optimisation level; ONNX Runtime writes the
        optimised graph to `out_path`. A graph ONNX Runtime refuses raises BuildError (one line,
        the graph's file name first)."""
        ort = self.ort
        onnx_path, out_path = Path(onnx_path), Path(out_path)
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, SAVED_OPTIMIZATION_LEVEL)
        so.optimized_model_filepath = str(out_path)
        so.log_severity_level = 3
        start = time.perf_counter()
        try:
            ort.InferenceSession(str(onnx_path), sess_options=so, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BuildError(
                f"onnxruntime {self.version} cannot load {onnx_path.name}: {str(exc).strip().splitlines()[0]}"
            ) from None
        if not out_path.is_file():
            raise BuildError(f"onnxruntime {self.version} wrote no optimised model for {onnx_path.name}")
        return OptimizedGraph(out_path, time.perf_counter() - start)

    suffix = ".onnx"

    def write_graph(self, src: Path, dst: Path) -> float:
        """`optimize` for `build_bundle`: the seconds it took."""
        return self.optimize(src, dst).seconds

    def finish(self) -> None:
        """Nothing to save after the last graph (TensorRT saves its timing cache)."""

    def measuring_backend(self) -> tuple[None, str]:
        """None: the precision step measured these graphs with ONNX Runtime on a CPU, where they run."""
        return None, ""

    def session_options(self) -> dict[str, Any]:
        """The manifest's `session_options`: what the runtime creates its sessions with."""
        return {
            "graph_optimization_level": RUNTIME_OPTIMIZATION_LEVEL,
            "execution_mode": "ORT_SEQUENTIAL",
            "intra_op_num_threads": self.threads,
            "inter_op_num_threads": 1,
        }

    def builder_record(self) -> dict[str, Any]:
        return {
            "name": "onnxruntime",
            "version": self.version,
            "saved_optimization_level": SAVED_OPTIMIZATION_LEVEL,
            "providers": list(self.providers),
        }

    def device_record(self) -> dict[str, Any]:
        return {"cpu": cpu_name(), "machine": platform.machine(), "onnxruntime_version": self.version}


def bundle_builder(settings: BuildSettings) -> OnnxRuntimeBuilder:
    """The ONNX Runtime builder of `edgerestore.engines.build.build_bundle`."""
    return OnnxRuntimeBuilder(threads=settings.threads)
