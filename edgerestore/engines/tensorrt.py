"""TensorRT engine builder: ONNX graph -> serialized engine, one code path for TensorRT >= 10.1, 11 and RTX.

Precision lives in the ONNX graph (float16 tensors, explicit Q/DQ INT8), so the builder only parses and
builds a *strongly typed* network: no FP16/INT8 builder flags (removed in TensorRT 11), no calibrator.
The TensorRT Python module is a parameter: `tensorrt` (Jetson, data-centre GPUs; needs a GPU to build) or
`tensorrt_rtx` (TensorRT for RTX; builds ahead-of-time on a CPU-only machine, for a set of target compute
capabilities, and compiles just-in-time on the GPU at load).

Differences handled here:
* `NetworkDefinitionCreationFlag.STRONGLY_TYPED`: required on TensorRT 10 and RTX, accepted and ignored on 11.
* Timing cache: shared across the graphs of a build and saved to a file for `tensorrt`; TensorRT-RTX has
  no timing cache (its calls are deprecated no-ops since RTX 1.2; RTX autotunes at JIT time instead).
* Targets: `tensorrt` builds for the GPU it runs on (the manifest records its name and compute
  capability); `tensorrt_rtx` builds for `ComputeCapability` targets set on the builder config (default:
  none set = RTX's default 8.0/8.6/8.9/12.x, which is what it does on a CPU) and records them as "M.m".
* TensorRT older than 10.1 is refused in one line (8.6 makes implicit-batch networks the parser refuses).

Polygraphy is not used: it selects tensorrt vs tensorrt_rtx by a process-wide environment variable read at
import (`POLYGRAPHY_USE_TENSORRT_RTX`), while this builder takes the module per call.

Must not import torch. Imports the TensorRT module only when a builder is created.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from edgerestore.engines.bundle import (
    RTX_DEFAULT_TARGETS,
    BuildError,
    normalise_compute_capability,
    rtx_target_supports,
)
from edgerestore.errors import UserError
from edgerestore.files import write_bytes_atomic
from edgerestore.runtime.nvidia import (
    DeviceInfo,
    cuda_device_info,
    cuda_device_status,
    import_tensorrt,
    is_rtx,
    module_name,
)

if TYPE_CHECKING:
    from edgerestore.engines.build import BuildSettings

Shape = tuple[int, ...]
ProfileFn = Callable[[str, Shape], tuple[Shape, Shape, Shape]]

#: Features (the trunk's output, the branches' second input) are at half the frame's resolution.
FEATURE_DOWNSCALE = 2


class TensorRTBuildError(BuildError):
    """The ONNX parser or the TensorRT builder refused a graph; the message names the failing nodes."""


def timing_cache_name(trt: ModuleType, device: DeviceInfo | None) -> str:
    """File name of the timing cache for `trt` on `device`: per TensorRT version and per GPU model (tactic
    timings of an AGX Orin do not hold on an Orin Nano, both compute capability 8.7)."""
    gpu = f"-{device.key}" if device is not None else ""
    return f".timing-{module_name(trt)}-{getattr(trt, '__version__', 'unknown')}{gpu}.cache"


def frame_profile(shape_profile: Mapping[str, Sequence[int]]) -> ProfileFn:
    """The profile rule of the graph contract: `frame`/`thumbnail` u8 [1,H,W,3] take (min, opt, max) [H, W]
    from `shape_profile`; `features` [1,F,H/2,W/2] derive theirs from the frame's. Other dynamic inputs are
    refused (the contract has none)."""
    hw = {k: tuple(int(v) for v in shape_profile[k]) for k in ("min", "opt", "max")}

    def rule(name: str, shape: Shape) -> tuple[Shape, Shape, Shape]:
        if name in ("frame", "thumbnail") and len(shape) == 4:
            return tuple(
                (1, h, w, shape[3] if shape[3] > 0 else 3) for h, w in (hw[k] for k in ("min", "opt", "max"))
            )  # type: ignore[return-value]
        if name == "features" and len(shape) == 4 and shape[1] > 0:
            d = FEATURE_DOWNSCALE
            return tuple((1, shape[1], h // d, w // d) for h, w in (hw[k] for k in ("min", "opt", "max")))  # type: ignore[return-value]
        raise TensorRTBuildError(
            f"input {name!r} has dynamic shape {list(shape)} and no profile rule (the graph contract allows "
            "dynamic H, W only on 'frame' [1,H,W,3] and 'features' [1,F,H/2,W/2]); re-export the graph"
        )

    return rule


@dataclass
class BuiltEngine:
    """One built engine. `inputs`: name -> (min, opt, max) shape of each dynamic input's profile."""

    engine: bytes
    seconds: float
    inputs: dict[str, tuple[Shape, Shape, Shape]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class TensorRTBuilder:
    """Builds engines from ONNX files with one TensorRT module, sharing a timing cache across graphs.

    `trt_module`: see `edgerestore.runtime.nvidia.import_tensorrt`. `workspace`: bytes for the WORKSPACE
    memory pool (None: TensorRT's default, the device's memory). `timing_cache`: a file loaded if present
    and written back by `save_timing_cache()` (ignored by TensorRT-RTX). `targets`: TensorRT-RTX compute
    capabilities as "8.6", "12.0" ... or ["current"] (the GPU present); None = RTX default (8.0, 8.6, 8.9,
    12.x); "12" and "8.6.0" are normalised to "12.0" and "8.6".
    `optimization_level`: builder optimisation level 0-5 (None: TensorRT's default, 3)."""

    def __init__(
        self,
        trt_module: str | ModuleType | None = None,
        *,
        workspace: int | None = 1 << 30,
        timing_cache: str | Path | None = None,
        targets: Sequence[str] | None = None,
        optimization_level: int | None = None,
        device: DeviceInfo | None | str = "auto",
    ) -> None:
        self.trt = import_tensorrt(trt_module)  # refuses TensorRT < 10.1 in one line
        self.name = module_name(self.trt)
        self.version = str(getattr(self.trt, "__version__", "unknown"))
        self.rtx = is_rtx(self.trt)
        why = None
        if isinstance(device, str):
            device, why = cuda_device_status()
        self.device = device
        if not self.rtx and self.device is None:
            raise UserError(
                f"{self.name} {self.version} needs an NVIDIA GPU with a working driver to build engines and found "
                f"none ({why or 'no device'}); build on the target device, use --trt-module tensorrt_rtx (builds "
                "on a CPU), or --backend onnxruntime"
            )
        if targets and not self.rtx:
            raise UserError(
                "--trt-targets applies to TensorRT-RTX only; TensorRT builds for the GPU it runs on"
            )
        self.targets = [normalise_compute_capability(t) for t in targets] if targets else None
        self.workspace = workspace
        self.optimization_level = optimization_level
        self.timing_cache_path = Path(timing_cache) if timing_cache and not self.rtx else None
        self._errors: list[str] = []
        self._warnings: list[str] = []
        self.logger = self._make_logger()
        self.builder = self.trt.Builder(self.logger)
        self._timing_cache: Any = None

    # -- plumbing ---------------------------------------------------------------------------------------
    def _make_logger(self) -> Any:
        trt = self.trt
        outer = self

        class _Logger(trt.ILogger):  # type: ignore[name-defined,misc]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                if severity <= trt.ILogger.Severity.ERROR:
                    outer._errors.append(msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    outer._warnings.append(msg)

        return _Logger()

    def _network_flags(self) -> int:
        flag = getattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return 0 if flag is None else 1 << int(flag)

    def _config(self) -> Any:
        trt = self.trt
        config = self.builder.create_builder_config()
        if self.workspace:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(self.workspace))
        if self.optimization_level is not None:
            config.builder_optimization_level = int(self.optimization_level)
        if self.rtx and self.targets:
            caps = [self._capability(t) for t in self.targets]
            config.num_compute_capabilities = len(caps)
            for i, cap in enumerate(caps):
                if not config.set_compute_capability(cap, i):
                    raise UserError(
                        f"{self.name} {self.version} refused target compute capability {self.targets[i]}"
                    )
        if not self.rtx:
            if self._timing_cache is None:
                blob = b""
                if self.timing_cache_path is not None and self.timing_cache_path.is_file():
                    blob = self.timing_cache_path.read_bytes()
                self._timing_cache = config.create_timing_cache(blob)
                if self._timing_cache is None and blob:  # a corrupt or foreign file: start afresh
                    self._warnings.append(
                        f"timing cache {self.timing_cache_path} unreadable; starting a new one"
                    )
                    self._timing_cache = config.create_timing_cache(b"")
            if not config.set_timing_cache(self._timing_cache, ignore_mismatch=False):
                raise UserError(
                    f"{self.name} {self.version} refused the timing cache {self.timing_cache_path} (made by "
                    "another TensorRT version or GPU?); delete it or pass another --timing-cache"
                )
        return config

    def _capability(self, target: str) -> Any:
        cc = self.trt.ComputeCapability
        if target == "current":
            return cc.CURRENT
        major, _, minor = normalise_compute_capability(target).partition(".")
        name = f"SM{int(major)}{int(minor)}"
        if not hasattr(cc, name):
            known = ", ".join(f"{k[2:-1]}.{k[-1]}" for k in cc.__members__ if k.startswith("SM"))
            raise UserError(
                f"{self.name} {self.version} cannot target compute capability {target}; it knows {known}"
            )
        return getattr(cc, name)

    def _parse(self, onnx_path: Path, network: Any) -> None:
        parser = self.trt.OnnxParser(network, self.logger)
        if parser.parse_from_file(str(onnx_path)):
            return
        nodes = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            where = (
                f"node {err.node_name() or '#' + str(err.node())} ({err.node_operator()})"
                if err.node() >= 0
                else "graph"
            )
            nodes.append(f"{where}: {err.desc()}")
        detail = "; ".join(nodes) or (self._errors[-1].splitlines()[0] if self._errors else "unknown error")
        raise TensorRTBuildError(f"{self.name} {self.version} cannot parse {onnx_path.name}: {detail}")

    # -- public -----------------------------------------------------------------------------------------
    def build(self, onnx_path: str | Path, profile: ProfileFn) -> BuiltEngine:
        """Parse `onnx_path` (external data beside it is found) and build its engine with one optimization
        profile; `profile(name, shape)` gives (min, opt, max) for every input with a dynamic dimension."""
        onnx_path = Path(onnx_path)
        self._errors.clear()
        self._warnings.clear()
        network = self.builder.create_network(self._network_flags())
        self._parse(onnx_path, network)
        config = self._config()
        shapes: dict[str, tuple[Shape, Shape, Shape]] = {}
        opt_profile = self.builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(tensor.shape)
            if all(d >= 0 for d in shape):
                continue
            lo, opt, hi = profile(tensor.name, shape)
            try:
                opt_profile.set_shape(tensor.name, lo, opt, hi)
            except (RuntimeError, ValueError, TypeError) as exc:  # the bindings raise on a shape they refuse
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                raise TensorRTBuildError(
                    f"{self.name} {self.version} refused the shape profile {lo} .. {hi} for input "
                    f"{tensor.name!r} of {onnx_path.name} ({first}); check `--min/--opt/--max`"
                ) from None
            shapes[tensor.name] = (lo, opt, hi)
        if shapes and config.add_optimization_profile(opt_profile) < 0:
            first = self._errors[-1].splitlines()[0] if self._errors else "invalid profile"
            detail = ", ".join(f"{k} {lo} .. {opt} .. {hi}" for k, (lo, opt, hi) in shapes.items())
            raise TensorRTBuildError(
                f"{self.name} {self.version} refused the shape profile {detail} of {onnx_path.name} ({first}); "
                "check `--min/--opt/--max` (min <= opt <= max)"
            )
        start = time.perf_counter()
        serialized = self.builder.build_serialized_network(network, config)
        seconds = time.perf_counter() - start
        if serialized is None:
            detail = (
                "; ".join(e.splitlines()[0] for e in self._errors[-3:] if e.strip()) or "no error reported"
            )
            raise TensorRTBuildError(f"{self.name} {self.version} failed to build {onnx_path.name}: {detail}")
        return BuiltEngine(bytes(memoryview(serialized)), seconds, shapes, list(self._warnings))

    def save_timing_cache(self) -> Path | None:
        """Write the shared timing cache back to its file (atomically); None when there is none."""
        if self.timing_cache_path is None or self._timing_cache is None:
            return None
        return write_bytes_atomic(self.timing_cache_path, bytes(memoryview(self._timing_cache.serialize())))

    def device_record(self) -> dict[str, Any]:
        """The manifest's `device` for engines from this builder."""
        dev = self.device
        record: dict[str, Any] = {
            "gpu_name": dev.name if dev else None,
            "compute_capability": dev.compute_capability if dev and not self.rtx else None,
            "tensorrt_version": self.version,
            "tensorrt_module": self.name,
        }
        if self.rtx:
            targets = self.targets
            if targets and [t.lower() for t in targets] == ["current"]:
                targets = [dev.compute_capability] if dev else None
                record["compute_capability"] = dev.compute_capability if dev else None
            record["target_compute_capabilities"] = (
                [normalise_compute_capability(t) for t in targets] if targets else None
            )
            record["built_on_cpu"] = dev is None
        return record


# ---------------------------------------------------------------------------------------------------------
# build_bundle's TensorRT side, and the operator check of exported graphs
# ---------------------------------------------------------------------------------------------------------


class TensorRTBundleBuilder:
    """The TensorRT builder of `edgerestore.engines.build.build_bundle` (`bundle_builder`): one engine per
    graph under the bundle's frame profile, the timing cache shared across them (default
    `<engines root>/.timing-<module>-<version>-<gpu>.cache`: timings do not transfer between TensorRT
    versions or GPU models; none for TensorRT-RTX), and the manifest's builder and device records."""

    suffix = ".engine"

    def __init__(self, settings: BuildSettings) -> None:
        trt = import_tensorrt(settings.trt_module)
        timing_cache = settings.timing_cache
        if timing_cache is None and not is_rtx(trt):
            timing_cache = Path(settings.engines_root) / timing_cache_name(trt, cuda_device_info())
        self.settings = settings
        self.builder = TensorRTBuilder(
            trt,
            workspace=settings.workspace,
            timing_cache=timing_cache,
            targets=settings.trt_targets,
            optimization_level=settings.optimization_level,
        )
        self.rule = frame_profile(settings.shape_profile)

    def builder_record(self) -> dict[str, Any]:
        return {
            "name": self.builder.name,
            "version": self.builder.version,
            "workspace": self.settings.workspace,
            "optimization_level": self.settings.optimization_level,
            "strongly_typed": True,
        }

    def device_record(self) -> dict[str, Any]:
        return self.builder.device_record()

    def session_options(self) -> dict[str, Any]:
        return {}

    def write_graph(self, src: Path, dst: Path) -> float:
        """Build `src`'s engine into `dst`; the build's seconds."""
        built = self.builder.build(src, self.rule)
        dst.write_bytes(built.engine)
        return built.seconds

    def finish(self) -> None:
        self.builder.save_timing_cache()

    def measuring_backend(self) -> tuple[Any, str]:
        """The runtime's TensorRT backend on the GPU these engines are built for, for the device guard; (None,
        why) on a machine without one (a TensorRT-RTX build on a CPU, no cuda-python)."""
        b = self.builder
        if b.device is None:
            return None, f"no GPU here to run {b.name} engines (built on a CPU)"
        targets = self.device_record().get("target_compute_capabilities")
        if b.rtx and not rtx_target_supports(targets, b.device.compute_capability):
            return None, (
                f"these {b.name} engines target compute capability {', '.join(targets or RTX_DEFAULT_TARGETS)}, "
                f"not this GPU's {b.device.compute_capability}"
            )
        from edgerestore.runtime.trt import TensorRTBackend

        try:  # its own scratch per context: engines are loaded one by one as the guard needs them
            backend = TensorRTBackend(
                b.trt, device=b.device.index, shared_scratch=lambda g: False, runtime_cache=None
            )
        except UserError as exc:
            return None, str(exc)
        return backend, f"{b.name} {b.version} on {b.device.name}"


def bundle_builder(settings: BuildSettings) -> TensorRTBundleBuilder:
    return TensorRTBundleBuilder(settings)


@dataclass
class TensorRTCheck:
    graph: str
    file: str
    seconds: float


def check_graphs(
    paths: Sequence[Path],
    trt_module: str = "tensorrt_rtx",
    shape_profile: Mapping[str, Sequence[int]] | None = None,
) -> list[TensorRTCheck]:
    """Parse and build every graph with TensorRT (strongly typed; on a CPU with TensorRT-RTX), the check that
    exported and converted graphs are ones TensorRT accepts; a parser rejection raises `TensorRTBuildError`
    naming the failing nodes."""
    profile = frame_profile(shape_profile or {"min": [64, 64], "opt": [360, 640], "max": [720, 1280]})
    builder = TensorRTBuilder(trt_module, device=None if trt_module == "tensorrt_rtx" else "auto")
    return [TensorRTCheck(Path(p).stem, str(p), builder.build(p, profile).seconds) for p in paths]
