"""Benchmarks that start from a model rather than a bundle: building what a bench needs, the sweeps, and the
backend comparison.

* Bundles come from `edgerestore.pipeline.ensure_bundle` (`untrained=True`: before a checkpoint exists, a
  profile is timed as exported from untrained weights, seed 0), models from `edgerestore.pipeline.load_model`,
  the PyTorch column runs `edgerestore.restorers.model_restorer`.
* `sweep_cmudrn`: the CMUDRN paper's latency study — image size × loop count T — one checkpoint exported at
  every T (`CMUDRN.with_loops`), timed with ONNX Runtime; heatmap PNG + CSV.
* `sweep_uffn`: UFFN latency over image size × precision (fp32 / fp16 / int8 bundles); heatmap PNG + CSV.
* `compare_backends`: one table per profile — PyTorch eager, ONNX Runtime float32 and INT8 (and TensorRT
  FP16 / INT8 when a GPU is present) — measured interleaved in one run, with each variant's quality from
  the accuracy guard (`precision.json`).

Imports torch and the exporter inside the functions that need them (like `edgerestore export`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgerestore.conditions import CONDITIONS
from edgerestore.errors import UserError
from edgerestore.measure.cases import bench_restorer, time_graph, weather_frames
from edgerestore.measure.device import BenchDevice
from edgerestore.measure.plots import plot_heatmap
from edgerestore.measure.report import write_csv_atomic
from edgerestore.measure.stats import StageStats, interleaved, summarize
from edgerestore.progress import Progress, as_progress


def variant_quality(export_dir: Path, variant: str | None) -> dict[str, Any]:
    """The accuracy guard's verdict on a variant, summarised: precision used per graph (fallbacks show),
    the worst PSNR vs the float32 output, the largest loss vs ground truth, router agreement."""
    if variant is None:
        return {"summary": "reference (float32 graphs, parity with PyTorch checked at export)"}
    from edgerestore.exportdir import PRECISION_JSON, ExportDir

    p = export_dir / variant / PRECISION_JSON
    if not p.is_file():
        return {"summary": f"no {p}"}
    graphs = ExportDir(export_dir).precision_record(variant, "re-run the precision step").get("graphs") or {}
    used = {n: g.get("precision") for n, g in graphs.items()}
    vs_float = [g["psnr_vs_float"] for g in graphs.values() if g.get("psnr_vs_float") is not None]
    losses = [
        g["psnr_float_vs_gt"] - g["psnr_vs_gt"]
        for g in graphs.values()
        if g.get("psnr_vs_gt") is not None and g.get("psnr_float_vs_gt") is not None
    ]
    agreement = next(
        (g["router_agreement"] for g in graphs.values() if g.get("router_agreement") is not None), None
    )
    fell_back = sorted(n for n, u in used.items() if u != variant)
    parts = []
    if vs_float:
        parts.append(f"≥ {min(vs_float):.1f} dB vs fp32")
    if losses:
        parts.append(f"≤ {max(losses):+.2f} dB lost vs GT")
    if agreement is not None:
        parts.append(f"router agrees {agreement:.0%}")
    if fell_back:
        parts.append("kept higher precision: " + ", ".join(f"{n}={used[n]}" for n in fell_back))
    return {
        "summary": "; ".join(parts) or "—",
        "precision_used": used,
        "min_psnr_vs_float": min(vs_float) if vs_float else None,
        "max_gt_loss_db": max(losses) if losses else None,
        "router_agreement": agreement,
    }


# ---------------------------------------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    family: str
    profile: str
    rows: list[int]  # image sizes (square side, px)
    cols: list[Any]  # loop counts, or precisions
    col_label: str
    p50_ms: np.ndarray  # [rows, cols]: model time p50
    records: list[dict[str, Any]] = field(default_factory=list)
    csv: Path | None = None
    png: Path | None = None
    weights: str = ""


def _square_pools(sizes: Sequence[int], conditions: Sequence[str]) -> dict[int, list[tuple[str, np.ndarray]]]:
    return {s: weather_frames((s, s), conditions) for s in sizes}


def sweep_cmudrn(
    model: Any,
    sizes: Sequence[int],
    loops: Sequence[int],
    out_dir: str | Path,
    *,
    profile: str = "cmudrn",
    frames: int = 5,
    warmup: int = 2,
    threads: int | None = None,
    weights: str = "",
    progress: Progress | bool = True,
) -> SweepResult:
    """Latency of one CMUDRN checkpoint over square image sizes × loop counts T: the model is exported at
    every T (same weights), built into one ONNX Runtime bundle and each `cmudrn_t<T>` graph timed through
    the runtime's backend (bind, run, read back; CMUDRN has stride 1, so no padding). Writes
    `<out>/sweep_<profile>.csv` and `.png` (heatmap of the graph's p50 ms)."""
    from edgerestore.engines.build import build_bundle
    from edgerestore.export import export_model
    from edgerestore.runtime.restorer import Restorer

    if getattr(model, "family", None) != "cmudrn":
        raise UserError("sweep_cmudrn needs a CMUDRN model")
    sizes, loops = sorted({int(s) for s in sizes}), sorted({int(t) for t in loops})
    out_dir = Path(out_dir)
    grid = np.full((len(sizes), len(loops)), np.nan)
    records = []
    pools = _square_pools(sizes, ("rain", "snow"))
    with tempfile.TemporaryDirectory(prefix="edgerestore-sweep-") as tmp:
        exp = Path(tmp) / profile
        export_model(model.eval(), exp, profile, loops=loops, parity_sizes=[], progress=False)
        hi = max(sizes)
        bundle = build_bundle(
            exp,
            Path(tmp) / "bundle",
            backend="onnxruntime",
            precision="fp32",
            shape_profile={"min": [1, 1], "opt": [hi, hi], "max": [hi, hi]},
            progress=False,
        ).bundle.path
        bar = as_progress(progress).bar(len(sizes) * len(loops), "sweep cmudrn", "cell")
        # one Restorer holds every cmudrn_t<T> graph; each is timed on its backend alone
        with Restorer.open(bundle, threads=threads, loops=loops[0]) as restorer:
            try:
                for j, t in enumerate(loops):
                    for i, s in enumerate(sizes):
                        frames_s = [f[None] for _, f in pools[s]]
                        graph, total = time_graph(
                            restorer.backend, f"cmudrn_t{t}", frames_s, frames=frames, warmup=warmup
                        )
                        grid[i, j] = graph.p50
                        records.append(_record("cmudrn", profile, s, "loops", t, graph, total))
                        bar.update(1)
            finally:
                bar.close()
    return _write_sweep(
        SweepResult("cmudrn", profile, sizes, loops, "loop count T", grid, records, weights=weights), out_dir
    )


def sweep_uffn(
    profile: str,
    sizes: Sequence[int],
    precisions: Sequence[str],
    out_dir: str | Path,
    *,
    condition: str = "rain",
    frames: int = 5,
    warmup: int = 2,
    threads: int | None = None,
    export_root: Path = Path("export"),
    engines_root: Path = Path("engines"),
    checkpoint: str | Path | None = None,
    progress: Progress | bool = True,
) -> SweepResult:
    """UFFN latency over square image sizes × precision (ONNX Runtime bundles, built when missing), with
    the branch forced to `condition` so every cell runs the same graphs (router + trunk + one branch)."""
    from edgerestore import pipeline
    from edgerestore.runtime.restorer import Restorer

    if condition not in CONDITIONS[1:]:
        raise UserError(f"sweep condition must be one of {', '.join(CONDITIONS[1:])}")
    sizes = sorted({int(s) for s in sizes})
    out_dir = Path(out_dir)
    grid = np.full((len(sizes), len(precisions)), np.nan)
    records = []
    pools = _square_pools(sizes, (condition,))
    bundles = {
        p: pipeline.ensure_bundle(
            profile,
            p,
            "onnxruntime",
            export_root=export_root,
            engines_root=engines_root,
            checkpoint=checkpoint,
            progress=progress,
            untrained=True,
        ).bundle
        for p in precisions
    }
    bar = as_progress(progress).bar(len(sizes) * len(precisions), f"sweep {profile}", "cell")
    for j, p in enumerate(precisions):
        with Restorer.open(bundles[p], threads=threads) as r:
            for i, s in enumerate(sizes):
                case = bench_restorer(
                    r, (s, s), frames=frames, warmup=warmup, condition=condition, pool=pools[s]
                )
                total = case.stages["total"]
                grid[i, j] = total.p50
                records.append(_record("uffn", profile, s, "precision", p, total, total))
                bar.update(1)
    bar.close()
    return _write_sweep(
        SweepResult("uffn", profile, sizes, list(precisions), "precision", grid, records), out_dir
    )


def _record(
    family: str, profile: str, size: int, key: str, value: Any, model: StageStats, total: StageStats
) -> dict:
    return {
        "family": family,
        "profile": profile,
        "size": size,
        key: value,
        "model_p50_ms": round(model.p50, 4),
        "model_mean_ms": round(model.mean, 4),
        "total_p50_ms": round(total.p50, 4),
        "total_p99_ms": round(total.p99, 4),
        "fps": round(total.fps, 2),
        "frames": total.n,
    }


def _write_sweep(result: SweepResult, out_dir: Path) -> SweepResult:
    stem = out_dir / f"sweep_{result.profile}"
    header = list(result.records[0])
    result.csv = write_csv_atomic(
        stem.with_suffix(".csv"), header, [[r[k] for k in header] for r in result.records]
    )
    what = "graph" if result.family == "cmudrn" else "routed frame (router + trunk + branch)"
    result.png = plot_heatmap(
        result.p50_ms,
        [f"{s}x{s}" for s in result.rows],
        result.cols,
        stem.with_suffix(".png"),
        row_label="image size (px)",
        col_label=result.col_label,
        title=f"{result.profile}: {what} latency p50 (ms), ONNX Runtime CPU",
    )
    return result


# ---------------------------------------------------------------------------------------------------------
# PyTorch vs ONNX Runtime vs TensorRT
# ---------------------------------------------------------------------------------------------------------


@dataclass
class BackendRow:
    profile: str
    backend: str
    precision: str
    stats: StageStats
    quality: dict[str, Any]
    bundle: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "backend": self.backend,
            "precision": self.precision,
            "ms": self.stats.to_dict(),
            "fps": self.stats.fps,
            "quality": self.quality,
            "bundle": self.bundle,
        }


def _timed(fn: Callable[[], object]) -> Callable[[], float]:
    """`fn` as a call that returns its wall-clock time in ms."""

    def call() -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    return call


def compare_backends(
    profile: str,
    size: tuple[int, int] = (360, 640),
    *,
    condition: str | None = "rain",
    frames: int = 30,
    warmup: int = 5,
    threads: int = 2,
    export_root: Path = Path("export"),
    engines_root: Path = Path("engines"),
    checkpoint: str | Path | None = None,
    progress: Progress | bool = True,
    echo: Callable[[str], None] = print,
) -> tuple[list[BackendRow], BenchDevice]:
    """Time one frame size on every available backend of `profile`, interleaved (one frame of each in
    turn, so a change of load on a shared machine hits all of them alike), wall-clock per call."""
    import torch

    from edgerestore import pipeline
    from edgerestore.contract import variant_for
    from edgerestore.engines.build import resolve_backend
    from edgerestore.measure.device import device_of
    from edgerestore.restorers import model_restorer
    from edgerestore.runtime.restorer import Restorer

    torch.set_num_threads(threads)
    export_dir = Path(export_root) / profile
    model, meta, source = pipeline.load_model(profile, checkpoint)
    eager = model_restorer(
        model, meta.get("router_calibration"), force=condition if model.family == "uffn" else None
    )
    kinds = [("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    if resolve_backend("auto")[0] == "tensorrt":
        kinds += [("tensorrt", "fp16"), ("tensorrt", "int8")]
    else:
        echo("no CUDA GPU with TensorRT here: TensorRT rows skipped")
    frame = weather_frames(size, (condition or "rain",))[0][1]
    restorers = {}
    calls: dict[str, Callable[[], float]] = {"pytorch/fp32": _timed(lambda: eager(frame))}
    quality = {"pytorch/fp32": {"summary": f"the model itself ({source})"}}
    device = None
    try:
        for backend, precision in kinds:
            variant = variant_for(backend, precision)
            bundle = pipeline.ensure_bundle(
                profile,
                precision,
                backend,
                export_root=export_root,
                engines_root=engines_root,
                checkpoint=checkpoint,
                progress=progress,
                echo=echo,
                untrained=True,
            ).bundle
            r = Restorer.open(bundle, threads=threads if backend == "onnxruntime" else None, force=condition)
            restorers[f"{backend}/{precision}"] = (r, bundle)
            calls[f"{backend}/{precision}"] = _timed(lambda r=r: r(frame))
            quality[f"{backend}/{precision}"] = variant_quality(export_dir, variant)
            if backend == "onnxruntime" and device is None:
                device = device_of(r)
        interleaved(calls, warmup)
        times = interleaved(calls, frames)
    finally:
        for r, _ in restorers.values():
            r.close()
    rows = []
    for key, samples in times.items():
        backend, precision = key.split("/")
        bundle = str(restorers[key][1]) if key in restorers else ""
        rows.append(BackendRow(profile, backend, precision, summarize(samples), quality[key], bundle))
    assert device is not None
    return rows, device


def backends_table(rows: Sequence[BackendRow], size: tuple[int, int], condition: str | None) -> str:
    eager = next((r.stats.p50 for r in rows if r.backend == "pytorch"), None)
    lines = [
        f"frame {size[1]}x{size[0]}, branch {condition or 'routed'}; wall-clock per call (ms)",
        "",
        "| profile | backend | precision | mean | p50 | p90 | p99 | FPS | vs PyTorch | quality (accuracy guard) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        s = r.stats
        speed = f"{eager / s.p50:.2f}x" if eager else "—"
        lines.append(
            f"| {r.profile} | {r.backend} | {r.precision} | {s.mean:.1f} | {s.p50:.1f} | {s.p90:.1f} | "
            f"{s.p99:.1f} | {s.fps:.1f} | {speed} | {r.quality.get('summary', '—')} |"
        )
    return "\n".join(lines)
