"""Build an engine bundle from a directory of exported ONNX graphs: `build_bundle(...)`.

Input: `export/<profile>/` as the export step writes it (`model.json`, `router.onnx`, `trunk.onnx`,
`branch_<c>.onnx` or `cmudrn_t<T>.onnx`) with precision variants beside them (`fp16/`, `int8_trt/`,
`int8_ort/`, each with `precision.json`). Output: `engines/<profile>-<backend>-<precision>/`, written
atomically (see `bundle.write_bundle`), with per-graph progress and a summary table.

Backend "auto": TensorRT when a CUDA GPU and a TensorRT module are present, else ONNX Runtime. TensorRT
module: `tensorrt` if importable, else `tensorrt_rtx` (which also builds on a CPU-only machine; `tensorrt`
needs the GPU). Each backend is a builder/runner pair: its builder (`BUILDERS`: `engines/onnxruntime.py`,
`engines/tensorrt.py`, a `GraphBuilder` made by the module's `bundle_builder`) and the runtime's backend of
the same name (`runtime/ort.py`, `runtime/trt.py`); `build_bundle` drives any builder the same way. A
bundle that is already up to date (same sources, settings and builder) is kept unless `force`. The CLI
verb `edgerestore build` (which also re-runs export/precision when stale) calls this.

Must not import torch. Imports onnx, and the chosen backend's module, inside functions.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgerestore.contract import precision_of, tensor_specs, variant_for
from edgerestore.engines.bundle import (
    BACKENDS,
    Bundle,
    GraphEntry,
    Manifest,
    default_bundle_dir,
    load_bundle,
    write_bundle,
)
from edgerestore.engines.bundle import (
    engines_root as eb_engines_root,
)
from edgerestore.errors import BundleError, UserError
from edgerestore.exportdir import PRECISION_JSON, ExportDir
from edgerestore.files import sha256_file
from edgerestore.progress import Progress, as_progress
from edgerestore.runtime.nvidia import INSUFFICIENT_DRIVER, TRT_MODULES, cuda_device_info, cuda_device_status

#: Frame [H, W] profile when none is given: up to 1080p (1088 = 1080 padded to 16), 720p optimum.
DEFAULT_SHAPE_PROFILE: dict[str, tuple[int, int]] = {"min": (64, 64), "opt": (720, 1280), "max": (1088, 1920)}
DEFAULT_WORKSPACE = 1 << 30


# ---------------------------------------------------------------------------------------------------------
# Choosing what to build
# ---------------------------------------------------------------------------------------------------------


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def default_trt_module() -> str | None:
    """`tensorrt` if importable, else `tensorrt_rtx`, else None."""
    return next((m for m in TRT_MODULES if _importable(m)), None)


def resolve_backend(backend: str, trt_module: str | None = None) -> tuple[str, str | None]:
    """(backend, TensorRT module or None) for `backend` in auto|tensorrt|onnxruntime. "auto" picks TensorRT
    only when a CUDA GPU is present and a TensorRT module importable (an RTX build on a CPU is opt-in)."""
    if backend not in ("auto", *BACKENDS):
        raise UserError(f"unknown backend {backend!r}; expected auto, {', '.join(BACKENDS)}")
    if trt_module is not None and trt_module not in TRT_MODULES:
        raise UserError(f"unknown TensorRT module {trt_module!r}; expected one of {', '.join(TRT_MODULES)}")
    module = trt_module or default_trt_module()
    if backend == "auto":
        if module is not None and _importable(module):
            if cuda_device_info() is not None:
                return "tensorrt", module
            why = cuda_device_status()[1]
            if why and INSUFFICIENT_DRIVER in why:  # a GPU is there but unusable: say so, do not fall back
                raise UserError(
                    f"--backend auto: {module} is installed but {why}; or pass --backend onnxruntime"
                )
        return "onnxruntime", None
    if backend == "tensorrt":
        if module is None or not _importable(module):
            raise UserError(
                f"--backend tensorrt needs {module or 'tensorrt or tensorrt_rtx'}, which is not installed: install "
                "'edgerestore[tensorrt]' (JetPack ships it) or 'edgerestore[tensorrt-rtx]', or use --backend onnxruntime"
            )
        return "tensorrt", module
    return "onnxruntime", None


def normalise_shape_profile(profile: Mapping[str, Sequence[int]] | None, stride: int) -> dict[str, list[int]]:
    """Validate a frame profile {min, opt, max} of [H, W]: positive, min <= opt <= max, multiples of the
    model's stride (the runtime pads frames to it)."""
    prof = {k: [int(v) for v in (profile or DEFAULT_SHAPE_PROFILE)[k]] for k in ("min", "opt", "max")}
    for key, hw in prof.items():
        if len(hw) != 2 or min(hw) < 1:
            raise UserError(f"shape profile {key} must be [H, W] with positive sides, got {hw}")
        if hw[0] % stride or hw[1] % stride:
            raise UserError(
                f"shape profile {key} {hw[0]}x{hw[1]} is not a multiple of the model's stride {stride}"
            )
    if not all(prof["min"][i] <= prof["opt"][i] <= prof["max"][i] for i in (0, 1)):
        raise UserError(f"shape profile needs min <= opt <= max per side, got {prof}")
    return prof


# ---------------------------------------------------------------------------------------------------------
# The backends' builders
# ---------------------------------------------------------------------------------------------------------


@dataclass
class BuildSettings:
    """What a backend's builder is made from: `build_bundle`'s options, each used by the backends it names
    (`trt_*`, `workspace`, `timing_cache`, `optimization_level`: TensorRT; `threads`: ONNX Runtime)."""

    shape_profile: dict[str, list[int]]
    engines_root: Path
    trt_module: str | None = None
    workspace: int | None = DEFAULT_WORKSPACE
    timing_cache: Path | None = None
    trt_targets: Sequence[str] | None = None
    optimization_level: int | None = None
    threads: int = 0


class GraphBuilder(Protocol):
    """One backend's builder, as `build_bundle` drives it: graph by graph into files ending in `suffix`,
    `finish()` after the last one; its records go into the manifest."""

    suffix: str

    def builder_record(self) -> dict[str, Any]: ...

    def device_record(self) -> dict[str, Any]: ...

    def session_options(self) -> dict[str, Any]: ...

    def write_graph(self, src: Path, dst: Path) -> float: ...

    def finish(self) -> None: ...

    def measuring_backend(self) -> tuple[Any, str]:
        """(a runtime backend that runs this builder's engines here, what it is), or (None, why there is
        none): the device guard (`engines.guard`) measures the built engines with it."""
        ...


#: backend -> the module whose `bundle_builder(settings)` makes its `GraphBuilder` (imported only to build
#: for it; its runner is the runtime's backend of the same name).
BUILDERS: dict[str, str] = {
    "onnxruntime": "edgerestore.engines.onnxruntime",
    "tensorrt": "edgerestore.engines.tensorrt",
}


def make_builder(backend: str, settings: BuildSettings) -> GraphBuilder:
    """The `GraphBuilder` of `backend` (a name in `BUILDERS`)."""
    if backend not in BUILDERS:
        raise UserError(f"unknown backend {backend!r}; expected {', '.join(BUILDERS)}")
    return importlib.import_module(BUILDERS[backend]).bundle_builder(settings)


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------


@dataclass
class GraphReport:
    name: str
    precision: str
    size: int
    seconds: float
    accuracy: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildResult:
    """`skipped`: the bundle was already up to date and was kept. `accuracy`: what measured the graphs'
    accuracy (the device guard's line; empty for float32 bundles)."""

    bundle: Bundle
    graphs: list[GraphReport]
    seconds: float
    skipped: bool = False
    accuracy: str = ""

    def summary(self) -> str:
        return format_summary(self)


def _accuracy_text(acc: Mapping[str, Any]) -> str:
    parts = []
    for key, label in (("psnr_vs_float", "vs fp32"), ("psnr_vs_gt", "vs GT")):
        value = acc.get(key, acc.get("psnr_vs_fp32")) if key == "psnr_vs_float" else acc.get(key)
        if isinstance(value, int | float):
            parts.append(f"{value:.1f} dB {label}")
    if isinstance(acc.get("router_agreement"), int | float):
        parts.append(f"router {100 * acc['router_agreement']:.1f}%")
    if acc.get("fallback"):
        parts.append(str(acc["fallback"]))
    return ", ".join(parts) or "-"


def format_summary(result: BuildResult) -> str:
    """A plain-text table: graph, precision, size, build time, accuracy; and where the bundle is."""
    m = result.bundle.manifest
    rows = [("graph", "precision", "size", "build", "accuracy")]
    for g in result.graphs:
        rows.append(
            (
                g.name,
                g.precision,
                f"{g.size / 1024:.0f} KiB",
                f"{g.seconds:.2f} s",
                _accuracy_text(g.accuracy),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    target = f"{m.builder.get('name')} {m.builder.get('version')}"
    status = "up to date, kept" if result.skipped else f"built in {result.seconds:.1f} s"
    if result.accuracy:
        lines.append(result.accuracy)
    lines.append(f"{result.bundle.path}: {m.backend} ({target}), {m.precision}, {status}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Reading the export
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Source:
    name: str
    path: Path
    precision: str
    accuracy: dict[str, Any]


def _read_export(onnx_dir: Path, sub: str | None, precision: str) -> tuple[dict[str, Any], list[_Source]]:
    export = ExportDir(onnx_dir).verify()
    model = export.meta
    per_graph: dict[str, Any] = {}
    if sub is not None:
        fix = f"run: edgerestore build --profile {model.get('profile', onnx_dir.name)} --precision {precision} (it converts first)"
        per_graph = export.precision_record(sub, fix).get("graphs") or {}
    sources = []
    for name, entry in export.graphs.items():
        base = export.graph_path(name)
        acc = dict(per_graph.get(name) or {})
        used = precision_of(acc.pop("precision", precision))  # precision.json names the rung
        if used is None:
            raise UserError(f"{export.variant_dir(sub) / PRECISION_JSON}: unknown precision for {name}")  # type: ignore[arg-type]
        for key in ("file", "sha256"):
            acc.pop(key, None)
        path = base if sub is None else export.variant_dir(sub) / entry["file"]
        if not path.is_file():
            if used != "fp32":
                raise UserError(
                    f"{path} missing (precision.json says {name} is {used}); re-run the precision step"
                )
            path = base
        if used != precision:
            acc.setdefault("fallback", f"fell back to {used}")
        sources.append(_Source(name, path, used, acc))
    return model, sources


# ---------------------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------------------


def _refuse_to_replace_another(out_dir: Path, want: Manifest) -> None:
    """Without --force, a build replaces only an older build of the same bundle (profile, backend,
    precision): never another model's bundle, nor a folder that is not a bundle."""
    from edgerestore.engines.bundle import MANIFEST_NAME

    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    try:
        raw = json.loads((out_dir / MANIFEST_NAME).read_text())
        held = tuple(str(raw.get(k)) for k in ("profile", "backend", "precision"))
    except (OSError, ValueError, AttributeError):
        raise UserError(
            f"--out {out_dir} is a folder that holds no bundle (no readable {MANIFEST_NAME}); choose a new or "
            "empty folder, or pass --force to replace it"
        ) from None
    wanted = (want.profile, want.backend, want.precision)
    if held != wanted:
        raise UserError(
            f"--out {out_dir} holds another bundle ({' '.join(held)}), not {' '.join(wanted)}; choose another "
            "--out or pass --force to replace it"
        )


def _up_to_date(out_dir: Path, want: Manifest, sources: list[_Source]) -> Bundle | None:
    """The existing bundle at `out_dir` if it loads cleanly and was built from the same sources with the
    same settings and builder version; else None (it will be rebuilt)."""
    try:
        bundle = load_bundle(out_dir)
    except BundleError:
        return None
    have = bundle.manifest
    same = (
        have.backend == want.backend
        and have.precision == want.precision
        and have.shape_profile == want.shape_profile
        and have.branch_scales == want.branch_scales
        and have.router_calibration == want.router_calibration
        and have.builder.get("name") == want.builder.get("name")
        and have.builder.get("version") == want.builder.get("version")
        and have.device.get("target_compute_capabilities") == want.device.get("target_compute_capabilities")
        and set(have.graphs) == {s.name for s in sources}
        and all(have.graphs[s.name].source_onnx_sha256 == sha256_file(s.path) for s in sources)
    )
    return bundle if same else None


def build_bundle(
    onnx_dir: str | Path,
    out_dir: str | Path | None = None,
    backend: str = "auto",
    precision: str = "fp32",
    shape_profile: Mapping[str, Sequence[int]] | None = None,
    workspace: int | None = DEFAULT_WORKSPACE,
    timing_cache: str | Path | None = None,
    force: bool = False,
    progress: Progress | bool = True,
    *,
    trt_module: str | None = None,
    trt_targets: Sequence[str] | None = None,
    optimization_level: int | None = None,
    threads: int = 0,
    engines_root: str | Path | None = None,
    on_graph: Callable[[GraphReport], None] | None = None,
    calib: str | Path | None = None,
    device_guard: bool = True,
) -> BuildResult:
    """Build `engines/<profile>-<backend>-<precision>/` (or `out_dir`) from `onnx_dir` (= `export/<profile>`).

    `backend`: auto | tensorrt | onnxruntime; `precision`: fp32 | fp16 | int8 (the graphs carry it; the
    builder only parses and builds); `shape_profile`: frame {min, opt, max} as [H, W] (default up to
    1088x1920); `workspace`: TensorRT workspace pool bytes; `timing_cache`: TensorRT timing cache file,
    shared across graphs and written back (default `engines/.timing-<module>-<version>-<gpu>.cache`; unused
    by TensorRT-RTX); `force`: rebuild even when up to date. `trt_module`: tensorrt | tensorrt_rtx (default:
    tensorrt if importable, else tensorrt_rtx); `trt_targets`: TensorRT-RTX compute capabilities ("8.6",
    "current"); `threads`: ONNX Runtime intra-op threads recorded for the runtime. `on_graph` is called
    after each graph. `device_guard`: an fp16/int8 build whose engines can run here (TensorRT with its GPU)
    runs the accuracy guard again with them on the held-back frames of `calib` (the precision step's
    frames; default: the shipped calibration set) and falls a graph over its budget back to float32
    (`engines.guard`); each graph's accuracy says what measured it. Raises UserError (BundleError,
    BuildError) with one line on any problem."""
    import onnx

    onnx_dir = Path(onnx_dir)
    backend, module = resolve_backend(backend, trt_module)
    variant = variant_for(backend, precision)  # checks `precision`, before any work
    model, sources = _read_export(onnx_dir, variant, precision)
    profile = str(model.get("profile") or onnx_dir.name)
    stride = int(model.get("stride") or 1)
    prof = normalise_shape_profile(shape_profile, stride)
    out_dir = (
        Path(out_dir)
        if out_dir is not None
        else default_bundle_dir(profile, backend, precision, engines_root or eb_engines_root())
    )
    settings = BuildSettings(
        shape_profile=prof,
        engines_root=Path(Path(out_dir).parent if engines_root is None else engines_root),
        trt_module=module,
        workspace=workspace,
        timing_cache=Path(timing_cache) if timing_cache is not None else None,
        trt_targets=trt_targets,
        optimization_level=optimization_level,
        threads=threads,
    )
    builder = make_builder(backend, settings)
    manifest = Manifest(
        family=str(model.get("family")),
        profile=profile,
        conditions=list(model.get("conditions") or []),
        stride=stride,
        thumbnail_size=model.get("thumbnail_size"),
        backend=backend,
        precision=precision,
        graphs={},
        shape_profile=prof,
        builder=builder.builder_record(),
        device=builder.device_record(),
        session_options=builder.session_options(),
        branch_scales=dict(model.get("branch_scales") or {}),
        router_calibration=dict(model.get("router_calibration") or {}),
    )
    if not force and out_dir.exists():
        kept = _up_to_date(out_dir, manifest, sources)
        if kept is not None:
            reports = [
                GraphReport(n, e.precision, e.size or kept.graph_path(n).stat().st_size, 0.0, e.accuracy)
                for n, e in kept.manifest.graphs.items()
            ]
            return BuildResult(kept, reports, 0.0, skipped=True)
        _refuse_to_replace_another(out_dir, manifest)

    start = time.perf_counter()
    reports: list[GraphReport] = []
    files: dict[str, Path] = {}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    bar = as_progress(progress).bar(len(sources), out_dir.name, "graph")
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.stage.", dir=out_dir.parent) as stage:
        try:
            for src in sources:
                bar.set_postfix_str(src.name)
                dst = Path(stage) / f"{src.name}{builder.suffix}"
                seconds = builder.write_graph(src.path, dst)
                inputs, outputs = tensor_specs(onnx.load(str(src.path), load_external_data=False))
                manifest.graphs[src.name] = GraphEntry(
                    file=dst.name,
                    precision=src.precision,
                    sha256="",
                    source_onnx_sha256=sha256_file(src.path),
                    inputs=inputs,
                    outputs=outputs,
                    accuracy=src.accuracy,
                )
                files[src.name] = dst
                report = GraphReport(src.name, src.precision, dst.stat().st_size, seconds, src.accuracy)
                reports.append(report)
                if on_graph is not None:
                    on_graph(report)
                bar.update(1)
        finally:
            bar.close()
        accuracy = ""
        if precision != "fp32":
            from edgerestore.engines.guard import guard_bundle

            accuracy = guard_bundle(
                builder,
                manifest,
                reports,
                files,
                sources,
                onnx_dir=onnx_dir,
                model=model,
                variant=str(variant),
                folder=Path(stage) / "device-guard",
                calib=calib,
                device_guard=device_guard,
                progress=progress,
            )
        builder.finish()
        bundle = write_bundle(out_dir, manifest, files, force=True)
    return BuildResult(bundle, reports, time.perf_counter() - start, accuracy=accuracy)
