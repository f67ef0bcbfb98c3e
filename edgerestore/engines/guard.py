"""The accuracy guard on the device: a build measures the engines it just built where they can run.

The precision step (`edgerestore.precision`) chooses each graph's precision with ONNX Runtime on a CPU;
FP16 and INT8 accuracy measured there does not predict TensorRT's (other kernels, fused layers, its own INT8
arithmetic). So a TensorRT build on a machine whose GPU can run its engines runs the same guard again (`precision.guard`: same frames held back from the calibration set, same budgets,
same ladders) with the engines it built, through the runtime's `TensorRTBackend`, against the float32
graphs run by ONNX Runtime. A graph over its budget there falls back to float32: its engine is rebuilt
from the float32 graph (the fp16 rung of an int8 ladder is not in the int8 folder), and a branch whose
`features` no longer match the trunk's type gets one Cast (`precision.match_feature_types`) and is
rebuilt too. Each graph's manifest `accuracy` says what measured it (`measured_by`). `guard_bundle` is
`build_bundle`'s step; `measure_on_device` the measurement; `EngineRunner` the guard's runner.

Where no engine can run (TensorRT-RTX on a CPU, no cuda-python) and for ONNX Runtime bundles, the precision
step's numbers stand and `measured_by` names ONNX Runtime on the CPU.

Must not import torch. Imports onnx, OpenCV and the precision code inside functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerestore.runtime.backend import Backend

if TYPE_CHECKING:
    from edgerestore.engines.build import GraphBuilder as Builder
    from edgerestore.progress import Progress

#: The precision step's measurement, named in the manifest when no device measured the engines.
CPU_MEASURED = "onnxruntime {version} on the CPU (precision step)"


@dataclass
class GraphChoice:
    """One graph after the device guard: its rung (the precision step's vocabulary: fp32 | fp16 | int8_trt),
    the ONNX file its engine is built from, the engine file, and the accuracy entry for the manifest."""

    precision: str
    source: Path
    engine: Path
    accuracy: dict[str, Any]
    seconds: float = 0.0


@dataclass
class DeviceGuard:
    """What the guard measured with (`measured_by`), and the graphs whose choice changed or were measured."""

    measured_by: str
    graphs: dict[str, GraphChoice] = field(default_factory=dict)


class EngineRunner:
    """`precision.GraphRunner`'s interface over engines on a device backend: (graph, level) runs the engine
    built for that rung; a rung with an ONNX source and no engine yet (the float32 fallback) is built on first
    use. Each engine is loaded under `<graph>@<level>`."""

    def __init__(
        self,
        backend: Backend,
        builder: Builder,
        folder: Path,
        engines: Mapping[tuple[str, str], Path],
        sources: Mapping[tuple[str, str], Path],
    ) -> None:
        self.backend = backend
        self.builder = builder
        self.folder = folder
        self.engines = dict(engines)
        self.sources = dict(sources)
        self.seconds: dict[tuple[str, str], float] = {}

    def has(self, graph: str, level: str) -> bool:
        return (graph, level) in self.engines or (graph, level) in self.sources

    def engine(self, graph: str, level: str) -> Path:
        key = (graph, level)
        if key not in self.engines:
            dst = self.folder / f"{graph}@{level}{self.builder.suffix}"
            self.seconds[key] = self.builder.write_graph(self.sources[key], dst)
            self.engines[key] = dst
        return self.engines[key]

    def run(self, graph: str, level: str, feeds: dict) -> np.ndarray:
        name = f"{graph}@{level}"
        if name not in self.backend.graphs:
            self.backend.load(name, self.engine(graph, level))
            self.backend.finalize()
        first = self.backend.graphs[name].outputs[0].name
        return self.backend.infer(name, feeds)[first]


def fit_frames(frames: list, stride: int, max_hw: tuple[int, int]) -> list:
    """The frames whose padded size exceeds the engines' profile max, area-shrunk to fit (targets too)."""
    import cv2

    from edgerestore.precision import Frame

    out = []
    for f in frames:
        h, w = f.image.shape[:2]
        scale = min(1.0, (max_hw[0] // stride * stride) / h, (max_hw[1] // stride * stride) / w)
        if scale < 1.0:
            size = (max(1, int(w * scale)), max(1, int(h * scale)))

            def shrink(a: np.ndarray | None, size: tuple[int, int] = size) -> np.ndarray | None:
                return None if a is None else cv2.resize(a, size, interpolation=cv2.INTER_AREA)

            f = Frame(f.name, shrink(f.image), shrink(f.target), f.condition)
        out.append(f)
    return out


def _budgets(raw: Mapping[str, Any] | None) -> Any:
    from edgerestore.precision import Budgets

    known = {f.name for f in fields(Budgets)}
    return Budgets(**{k: v for k, v in (raw or {}).items() if k in known})


def measure_on_device(
    backend: Backend,
    measured_by: str,
    builder: Builder,
    *,
    onnx_dir: Path,
    model: Mapping[str, Any],
    variant: str,
    variant_info: Mapping[str, Any],
    built: Mapping[str, tuple[str, Path, Path]],
    folder: Path,
    shape_profile: Mapping[str, Any],
    calib: str | Path | None = None,
    progress: Progress | bool = False,
) -> DeviceGuard:
    """Run the accuracy guard with the engines just built. `built`: graph -> (rung in the precision step's
    vocabulary: fp32 | fp16 | int8_trt, its ONNX source, its engine); `variant`: the precision folder the
    build read (its ladder); `variant_info`: its precision.json (budgets). Frames: the held-back frames of
    `calib` (the precision step's split, `precision.guard_split`), shrunk to the profile max."""
    from edgerestore.exportdir import ExportDir
    from edgerestore.graphs import save_onnx
    from edgerestore.precision import (
        GraphRunner,
        guard,
        guard_split,
        load_frames,
        match_feature_types,
        reference_paths,
    )

    meta = dict(model)
    reference = GraphRunner(reference_paths(ExportDir(onnx_dir)))
    engines = {(g, level): engine for g, (level, _, engine) in built.items()}
    sources = {(g, level): src for g, (level, src, _) in built.items()}
    sources.update({(g, "fp32"): path for (g, _), path in reference.paths.items()})
    runner = EngineRunner(backend, builder, folder, engines, sources)
    stride = int(meta.get("stride") or 1)
    min_hw = tuple(int(v) for v in shape_profile["min"])
    max_hw = tuple(int(v) for v in shape_profile["max"])
    _, held = guard_split(load_frames(calib, option="--calib"))
    frames = fit_frames(held, stride, max_hw)  # type: ignore[arg-type]
    budgets = _budgets(variant_info.get("budgets"))
    accuracy = guard(
        meta,
        runner,
        variant,
        frames,
        budgets,
        progress,
        reference=reference,
        min_hw=min_hw,  # type: ignore[arg-type]
    )
    chosen = {g: runner.sources[(g, acc.precision)] for g, acc in accuracy.items()}
    retyped = match_feature_types(chosen)
    out = DeviceGuard(measured_by)
    for g, acc in accuracy.items():
        source, level = chosen[g], acc.precision
        if g in retyped:  # its features input retyped to the trunk's output, one Cast inside
            source = save_onnx(retyped[g], folder / f"{g}@{level}-retyped.onnx")
            engine = folder / f"{g}@{level}-retyped{builder.suffix}"
            seconds = builder.write_graph(source, engine)
        else:
            engine = runner.engine(g, level)
            seconds = runner.seconds.get((g, level), 0.0)
        entry = {k: v for k, v in asdict(acc).items() if k not in ("graph", "precision")}
        entry["measured_by"] = measured_by
        if level != built[g][0]:
            entry["fallback"] = f"fell back to {level} on the device"
        elif level != variant:  # as the precision step had chosen
            entry["fallback"] = f"fell back to {level}"
        out.graphs[g] = GraphChoice(level, source, engine, entry, seconds)
    return out


def guard_bundle(
    builder: Builder,
    manifest: Any,
    reports: list[Any],
    files: dict[str, Path],
    sources: list[Any],
    *,
    onnx_dir: Path,
    model: dict[str, Any],
    variant: str,
    folder: Path,
    calib: str | Path | None,
    device_guard: bool,
    progress: Progress | bool,
) -> str:
    """`build_bundle`'s device guard, after its graphs are built (`sources`, `files`, the `manifest` and
    `reports` it is writing): the accuracy guard with the built engines where `builder` can run them here,
    updating the manifest's graphs, the reports and the files of graphs that fell back; else each graph's
    accuracy names the precision step's ONNX Runtime measurement. The summary's line saying which."""
    import onnx

    from edgerestore.contract import precision_of, tensor_specs
    from edgerestore.exportdir import ExportDir

    backend, what = builder.measuring_backend() if device_guard else (None, "device guard off")
    if backend is None:
        try:
            import onnxruntime

            version = onnxruntime.__version__
        except ImportError:
            version = "?"
        by = CPU_MEASURED.format(version=version)
        for entry in manifest.graphs.values():
            entry.accuracy["measured_by"] = by
        return f"accuracy: measured by {by}" + (f"; not with the engines: {what}" if what else "")
    folder.mkdir(parents=True, exist_ok=True)
    info = ExportDir(onnx_dir).precision_record(variant, "re-run the precision step")
    built = {
        s.name: (variant if s.precision == "int8" else s.precision, s.path, files[s.name]) for s in sources
    }
    try:
        result = measure_on_device(
            backend,
            what,
            builder,
            onnx_dir=onnx_dir,
            model=model,
            variant=variant,
            variant_info=info,
            built=built,
            folder=folder,
            shape_profile=manifest.shape_profile,
            calib=calib,
            progress=progress,
        )
    finally:
        backend.close()
    fell_back, retyped = [], []
    by_name = {r.name: r for r in reports}
    for name, choice in result.graphs.items():
        entry, report = manifest.graphs[name], by_name[name]
        entry.precision = str(precision_of(choice.precision))
        entry.accuracy = choice.accuracy
        if choice.engine != files[name]:
            files[name] = choice.engine
            entry.inputs, entry.outputs = tensor_specs(
                onnx.load(str(choice.source), load_external_data=False)
            )
            report.size = choice.engine.stat().st_size
            report.seconds += choice.seconds
            if report.precision != entry.precision:
                fell_back.append(f"{name} → {entry.precision}")
            else:
                retyped.append(name)
        report.precision, report.accuracy = entry.precision, entry.accuracy
    changed = f"; fell back on the device: {', '.join(fell_back)}" if fell_back else ""
    if retyped:
        changed += f"; rebuilt for the trunk's features type: {', '.join(retyped)}"
    return f"accuracy: measured with the built engines by {what}{changed}"
