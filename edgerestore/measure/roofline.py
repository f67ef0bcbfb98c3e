"""How close a bundle's graphs come to this machine's fp32 limit (`edgerestore bench --roofline`).

* Counting: `edgerestore.measure.graph_cost`.
* The machine's limit is measured in the same run, through the same runtime and thread count: a
  float32 `MatMul` of two 512×512 matrices in ONNX Runtime (MLAS SGEMM, the same FMA micro-kernels its
  Conv kernels run on, so it is the compute roof this runtime reaches here; operands small enough to stay
  in cache, so it measures compute rather than memory; numpy's GEMM would measure another BLAS with its
  own thread pool, 60–67 GFLOP/s at 1024 here against ONNX Runtime's 81–102), and a float32 `Add` of
  two 16 M-element tensors for the streaming memory roof (bytes read + written / time).
* Every graph and both micro-benchmarks run interleaved, one call each per round, so load from other work
  on a shared machine lands on all of them alike; figures are p50 over the rounds, and "% of peak" is a
  ratio within one run that holds on any machine. "best rounds" gives the same ratio from each one's
  fastest round (the least disturbed, on a busy machine). INT8 graphs are counted in the same units (an
  int8 multiply-accumulate = 2 operations) against the same fp32 roof, so they can exceed 100 %.

Imports onnx, onnxruntime and numpy (matplotlib inside `plot_roofline`); never torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerestore.errors import UserError
from edgerestore.measure.graph_cost import eval_dim, graph_cost

#: 512: three 1 MiB operands stay in cache, so the MatMul measures compute, not memory (on the 2-core AVX2
#: machine: 185 GFLOP/s best round at 512, ≈ 100 at 1024 and 1536, of a 192 GFLOP/s theoretical peak).
PEAK_GEMM_N = 512
STREAM_ELEMENTS = 1 << 24  # 64 MiB per float32 operand


def _session(model: Any, options: Mapping[str, Any] | None, threads: int | None) -> Any:
    import onnxruntime as ort

    from edgerestore.runtime.ort import make_session_options

    source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(
        source, sess_options=make_session_options(options, threads), providers=["CPUExecutionProvider"]
    )


def _micro_models(n: int, elements: int) -> tuple[Any, Any]:
    """(float32 MatMul n×n·n×n, float32 Add of two `elements`-long vectors) as in-memory ONNX models."""
    from onnx import TensorProto, helper

    def model(op: str, shape: list[int]) -> Any:
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])],
            f"peak_{op.lower()}",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("a", "b")],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    return model("MatMul", [n, n]), model("Add", [elements])


def _feeds(
    session: Any, dims: Mapping[str, int], known: Mapping[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray] | None:
    """Inputs for every input of `session`: a tensor another graph produced under the same name (the
    trunk's `features` for a branch), else random values at the concrete size; None while a symbolic dim
    can only come from a graph not run yet."""
    feeds = {}
    for i in session.get_inputs():
        if i.name in known:
            feeds[i.name] = known[i.name]
            continue
        try:
            shape = [d if isinstance(d, int) else eval_dim(str(d), dims) for d in i.shape]
        except ValueError:
            return None
        if i.type == "tensor(uint8)":
            feeds[i.name] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        else:
            dtype = np.float16 if i.type == "tensor(float16)" else np.float32
            feeds[i.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _resolve_feeds(
    sessions: Mapping[str, Any], dims: Mapping[str, int], where: str
) -> dict[str, dict[str, np.ndarray]]:
    """Inputs per session; a graph whose inputs come from another graph's outputs (a branch's `features`)
    gets what that graph produced, so it runs after it."""
    rng = np.random.default_rng(0)
    known: dict[str, np.ndarray] = {}
    all_feeds: dict[str, dict[str, np.ndarray]] = {}
    while len(all_feeds) < len(sessions):
        ready = 0
        for name, sess in sessions.items():
            if name in all_feeds or (feeds := _feeds(sess, dims, known, rng)) is None:
                continue
            all_feeds[name] = feeds
            ready += 1
            if not name.startswith("peak:"):
                outputs = sess.run(None, feeds)
                known.update((o.name, v) for o, v in zip(sess.get_outputs(), outputs))
        if not ready:
            missing = sorted(set(sessions) - set(all_feeds))
            raise UserError(f"{where}: cannot size the inputs of {', '.join(missing)} at {dict(dims)}")
    return all_feeds


def _p50_interleaved(
    sessions: Mapping[str, Any],
    feeds: Mapping[str, dict[str, np.ndarray]],
    *,
    rounds: int,
    warmup: int,
    stat: Any = np.median,
) -> dict[str, float]:
    """p50 (or `stat`) ms per session over `rounds` rounds of one call each, in turn (after `warmup`)."""
    from edgerestore.measure.stats import interleaved

    def timed(sess: Any, inputs: dict[str, np.ndarray]) -> Any:
        def call() -> float:
            t0 = time.perf_counter()
            sess.run(None, inputs)
            return (time.perf_counter() - t0) * 1e3

        return call

    calls = {name: timed(sess, feeds[name]) for name, sess in sessions.items()}
    interleaved(calls, warmup)
    samples = interleaved(calls, rounds)
    if stat is None:
        return samples  # type: ignore[return-value]
    return {k: float(stat(v)) for k, v in samples.items()}


def speedup_vs_fp32(
    bundle_dir: str | Path,
    reference_dir: str | Path,
    size: tuple[int, int] = (180, 320),
    *,
    rounds: int = 5,
    warmup: int = 1,
) -> tuple[float, str]:
    """(float32 time / this bundle's time, what was timed) for a routed frame: router + trunk + the mean
    over the branches, each graph of the bundle against the same-named float32 graph in `reference_dir`,
    interleaved, with the bundle's session options. A quick check `build` runs, not a benchmark."""
    from edgerestore.engines.bundle import load_bundle

    bundle = load_bundle(Path(bundle_dir))
    options = {k: v for k, v in (bundle.manifest.session_options or {}).items() if k != "providers"}
    dims = {"height": int(size[0]), "width": int(size[1])}
    names = bundle.graph_names
    sessions = {f"q:{n}": _session(bundle.graph_path(n), options, None) for n in names}
    sessions.update({f"f:{n}": _session(Path(reference_dir) / f"{n}.onnx", options, None) for n in names})
    ms = _p50_interleaved(
        sessions, _resolve_feeds(sessions, dims, str(bundle.path)), rounds=rounds, warmup=warmup
    )

    def frame(prefix: str) -> float:
        branches = [ms[f"{prefix}:{n}"] for n in names if n.startswith("branch")]
        rest = sum(ms[f"{prefix}:{n}"] for n in names if not n.startswith("branch"))
        return rest + (float(np.mean(branches)) if branches else 0.0)

    what = f"router + trunk + a branch at {size[1]}x{size[0]}, p50 of {rounds} interleaved rounds"
    return frame("f") / frame("q"), what


@dataclass(frozen=True)
class GraphPoint:
    """One graph of a bundle, timed and counted at one size."""

    graph: str
    precision: str
    p50_ms: float
    gflops: float  # work per call, 1e9 FLOPs
    gb: float  # bytes moved per call, 1e9
    achieved_gflops_s: float
    fraction_of_peak: float
    intensity: float
    best_fraction_of_peak: float = 0.0  # fastest round of the graph / fastest round of the MatMul
    unshaped: tuple[str, ...] = ()


@dataclass(frozen=True)
class RooflineResult:
    bundle: str
    size: tuple[int, int]
    threads: int
    rounds: int
    peak_gflops_s: float  # p50 of the MatMul micro-benchmark
    bandwidth_gb_s: float  # p50 of the Add micro-benchmark
    gemm_n: int
    points: tuple[GraphPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        d["points"] = [asdict(p) for p in self.points]
        return d

    def table(self) -> str:
        lines = [
            f"{self.bundle} at {self.size[1]}x{self.size[0]}, intra-op threads "
            f"{self.threads or 'ORT default (one per physical core)'}, p50 of {self.rounds} "
            f"interleaved rounds; measured peak {self.peak_gflops_s:.1f} GFLOP/s (fp32 MatMul "
            f"{self.gemm_n}³), stream {self.bandwidth_gb_s:.1f} GB/s (fp32 Add); best rounds: the same ratio "
            "from each one's fastest round",
            "| graph | precision | p50 ms | GFLOP | GB moved | FLOP/byte | GFLOP/s | % of peak | best rounds |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in self.points:
            lines.append(
                f"| {p.graph} | {p.precision} | {p.p50_ms:.2f} | {p.gflops:.3f} | {p.gb:.3f} | "
                f"{p.intensity:.1f} | {p.achieved_gflops_s:.1f} | {100 * p.fraction_of_peak:.0f} % | "
                f"{100 * p.best_fraction_of_peak:.0f} % |"
            )
        return "\n".join(lines)


def measure_bundle(
    bundle_dir: str | Path,
    size: tuple[int, int],
    *,
    rounds: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    gemm_n: int = PEAK_GEMM_N,
    stream_elements: int = STREAM_ELEMENTS,
) -> RooflineResult:
    """Time every graph of an ONNX Runtime bundle and the two micro-benchmarks interleaved (module
    docstring) at (H, W) and place each graph against the measured peak. `threads`: intra-op threads
    (default: the bundle's), the same for graphs and micro-benchmarks."""
    import onnx

    from edgerestore.engines.bundle import load_bundle

    bundle = load_bundle(Path(bundle_dir))
    m = bundle.manifest
    if m.backend != "onnxruntime":
        raise UserError(
            f"--roofline measures CPU bundles through ONNX Runtime; {bundle.path} is a {m.backend} bundle"
        )
    options = {k: v for k, v in (m.session_options or {}).items() if k != "providers"}
    dims = {"height": int(size[0]), "width": int(size[1])}
    gemm, stream = _micro_models(gemm_n, stream_elements)
    sessions = {name: _session(bundle.graph_path(name), options, threads) for name in bundle.graph_names}
    sessions["peak:matmul"] = _session(gemm, options, threads)
    sessions["peak:add"] = _session(stream, options, threads)
    all_feeds = _resolve_feeds(sessions, dims, str(bundle.path))
    costs = {
        name: graph_cost(
            onnx.load(str(bundle.graph_path(name))), dims, {k: v.shape for k, v in all_feeds[name].items()}
        )
        for name in bundle.graph_names
    }

    samples = _p50_interleaved(sessions, all_feeds, rounds=rounds, warmup=warmup, stat=None)
    ms = {k: float(np.median(v)) for k, v in samples.items()}
    best = {k: float(np.min(v)) for k, v in samples.items()}  # the least disturbed round, on a busy machine
    best_peak = 2 * gemm_n**3 / (best["peak:matmul"] * 1e6)
    used_threads = int(sessions["peak:matmul"].get_session_options().intra_op_num_threads)
    peak = 2 * gemm_n**3 / (ms["peak:matmul"] * 1e6)
    bandwidth = 3 * 4 * stream_elements / (ms["peak:add"] * 1e6)
    points = []
    for name in bundle.graph_names:
        c = costs[name]
        achieved = c.flops / (ms[name] * 1e6)
        info = (m.graphs or {}).get(name) or {}
        precision = info.get("precision", m.precision) if isinstance(info, Mapping) else m.precision
        points.append(
            GraphPoint(
                graph=name,
                precision=str(precision),
                p50_ms=ms[name],
                gflops=c.flops / 1e9,
                gb=c.bytes / 1e9,
                achieved_gflops_s=achieved,
                fraction_of_peak=achieved / peak if peak > 0 else 0.0,
                best_fraction_of_peak=c.flops / (best[name] * 1e6) / best_peak,
                intensity=c.intensity,
                unshaped=c.unshaped,
            )
        )
    return RooflineResult(
        str(bundle.path),
        (int(size[0]), int(size[1])),
        used_threads,
        rounds,
        peak,
        bandwidth,
        gemm_n,
        tuple(points),
    )


def plot_roofline(results: Sequence[RooflineResult], path: str | Path) -> Path:
    """Arithmetic intensity vs achieved GFLOP/s per graph (log-log), with each run's measured compute
    roof (horizontal) and streaming roof (bandwidth × intensity), as one PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from edgerestore.measure.plots import save_figure

    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    xs = [p.intensity for r in results for p in r.points if p.intensity > 0]
    lo, hi = (min(xs) / 3, max(xs) * 3) if xs else (0.1, 100.0)
    x = np.geomspace(lo, hi, 200)
    for i, r in enumerate(results):
        color = f"C{i}"
        roof = np.minimum(r.peak_gflops_s, r.bandwidth_gb_s * x)
        label = f"{Path(r.bundle).name} {r.size[1]}x{r.size[0]}: roof {r.peak_gflops_s:.0f} GFLOP/s"
        ax.plot(x, roof, color=color, lw=1.5, label=label)
        ax.axhline(r.peak_gflops_s, color=color, lw=0.6, ls="--")
        clusters: list[list[GraphPoint]] = []  # graphs within 5 % on both axes share one label
        for p in r.points:
            if p.intensity <= 0:
                continue
            near = [
                c
                for c in clusters
                if abs(math.log(c[0].intensity / p.intensity)) < 0.05
                and abs(math.log(c[0].achieved_gflops_s / p.achieved_gflops_s)) < 0.05
            ]
            if near:
                near[0].append(p)
            else:
                clusters.append([p])
        for c in clusters:
            ax.scatter(
                [p.intensity for p in c], [p.achieved_gflops_s for p in c], color=color, s=24, zorder=3
            )
            names = "/".join(p.graph.removeprefix("branch_") if i else p.graph for i, p in enumerate(c))
            ax.annotate(
                f"{names} {100 * np.mean([p.fraction_of_peak for p in c]):.0f}%",
                (c[0].intensity, c[0].achieved_gflops_s),
                textcoords="offset points",
                xytext=(4, 3),
                fontsize=7,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte of weights + activations)")
    ax.set_ylabel("achieved GFLOP/s (p50)")
    ax.set_title("graphs against this machine's measured fp32 limit")
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14))  # below the axes: no point hidden
    return save_figure(fig, path)


def run_roofline(
    bundles: Sequence[Path],
    sizes: Sequence[tuple[int, int]],
    out: Path,
    *,
    rounds: int,
    warmup: int,
    threads: int | None,
    plot: bool = True,
    profile: bool = False,
) -> int:
    """`edgerestore bench --roofline`: the table per bundle and size, `roofline.json` and `roofline.png`
    in `out`; `profile` (`--profile-nodes`): first the slowest nodes per graph."""
    import importlib.util
    import sys

    from edgerestore.measure.report import write_json_atomic

    results = []
    profiles: list[dict[str, Any]] = []
    for bundle in bundles:
        for size in sizes:
            if profile:
                times = profile_nodes(bundle, size, runs=rounds, threads=threads)
                print(
                    f"\n{bundle} at {size[1]}x{size[0]}: slowest nodes (ONNX Runtime profiler, {rounds} runs)"
                )
                print(nodes_table(times))
                profiles.append(
                    {"bundle": str(bundle), "size": list(size), "nodes": [asdict(t) for t in times]}
                )
            r = measure_bundle(bundle, size, rounds=rounds, warmup=warmup, threads=threads)
            print("\n" + r.table())
            for p in r.points:
                if p.unshaped:
                    print(
                        f"note: {p.graph}: {len(p.unshaped)} counted node(s) without inferred shapes "
                        f"(e.g. {p.unshaped[0]}); its FLOPs are a lower bound",
                        file=sys.stderr,
                    )
            results.append(r)
    path = write_json_atomic(
        Path(out) / "roofline.json",
        {
            "format": "edgerestore-roofline/1",
            "runs": [r.to_dict() for r in results],
            "node_profiles": profiles,
        },
    )
    print(f"wrote {path}")
    if plot:
        if importlib.util.find_spec("matplotlib") is None:
            print(
                "note: matplotlib is not installed, so no roofline plot (pip install matplotlib)",
                file=sys.stderr,
            )
        else:
            print(f"wrote {plot_roofline(results, Path(out) / 'roofline.png')}")
    return 0


@dataclass(frozen=True)
class NodeTime:
    graph: str
    node: str
    op: str
    ms: float  # mean kernel time per run
    share: float  # of the graph's summed kernel time


def _node_times(trace: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, float]]:
    """(node, op, median ms per run) from an ONNX Runtime profile trace (its `Node` `*_kernel_time`
    events, one per node and run; the median keeps the first, allocating runs out), slowest first."""
    times: dict[str, tuple[str, list[float]]] = {}
    for e in trace:
        name = str(e.get("name", ""))
        if e.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        op = str((e.get("args") or {}).get("op_name", "?"))
        times.setdefault(name[: -len("_kernel_time")], (op, []))[1].append(float(e.get("dur", 0)) / 1e3)
    rows = [(node, op, float(np.median(ms))) for node, (op, ms) in times.items()]
    return sorted(rows, key=lambda r: -r[2])


def profile_nodes(
    bundle_dir: str | Path, size: tuple[int, int], *, runs: int = 10, threads: int | None = None
) -> list[NodeTime]:
    """Every node of every graph of an ONNX Runtime bundle, timed by ONNX Runtime's profiler over `runs`
    calls at (H, W) (the graphs as the runtime loads them, optimised, with the bundle's options); a
    branch gets the trunk's real `features`."""
    import json
    import tempfile

    import onnxruntime as ort

    from edgerestore.engines.bundle import load_bundle
    from edgerestore.runtime.ort import make_session_options

    bundle = load_bundle(Path(bundle_dir))
    if bundle.manifest.backend != "onnxruntime":
        raise UserError(f"--profile-nodes profiles ONNX Runtime bundles; {bundle.path} is not one")
    options = {k: v for k, v in (bundle.manifest.session_options or {}).items() if k != "providers"}
    dims = {"height": int(size[0]), "width": int(size[1])}
    feeds = _resolve_feeds(
        {n: _session(bundle.graph_path(n), options, threads) for n in bundle.graph_names},
        dims,
        str(bundle.path),
    )
    out: list[NodeTime] = []
    with tempfile.TemporaryDirectory(prefix="edgerestore-profile-") as tmp:
        for name in bundle.graph_names:
            so = make_session_options(options, threads)
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(tmp) / name)
            sess = ort.InferenceSession(
                str(bundle.graph_path(name)), sess_options=so, providers=["CPUExecutionProvider"]
            )
            for _ in range(runs):
                sess.run(None, feeds[name])
            rows = _node_times(json.loads(Path(sess.end_profiling()).read_text()))
            whole = sum(ms for _, _, ms in rows) or 1.0
            out.extend(NodeTime(name, node, op, ms, ms / whole) for node, op, ms in rows)
    return out


def nodes_table(times: Sequence[NodeTime], top: int = 8) -> str:
    """The `top` slowest nodes per graph, as markdown."""
    lines = ["| graph | node | op | ms (median) | % of graph |", "|---|---|---|---:|---:|"]
    shown: dict[str, int] = {}
    for t in times:
        if shown.get(t.graph, 0) >= top:
            continue
        shown[t.graph] = shown.get(t.graph, 0) + 1
        lines.append(f"| {t.graph} | {t.node} | {t.op} | {t.ms:.2f} | {100 * t.share:.0f} % |")
    return "\n".join(lines)
