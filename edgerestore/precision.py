"""Precision in the graph: FP16 conversion, and the accuracy guard that accepts or rejects converted graphs.

TensorRT 11 has no FP16/INT8 builder flags: a graph carries its own precision (DESIGN.md). This module

* converts a float32 graph to float16 with onnxconverter-common (I/O kept as declared: uint8 frames,
  float32 features/probs), keeping numerically sensitive operators in float32 (`SENSITIVE_OPS`) plus any
  node whose activations on real frames come near float16's range (`fp16_unsafe_nodes`);
* runs the accuracy guard: every converted graph against the float32 graph with ONNX Runtime on
  held-back frames — PSNR of the output vs the float32 output and vs ground truth for image graphs (each
  branch through the trunk, each CMUDRN graph), argmax agreement for the router — and lets a graph over
  its budget fall back along its ladder (int8_trt → fp16 → fp32, int8_ort → fp32, fp16 → fp32);
* writes `export/<profile>/<precision>/` (same file names, `precision.json`) and a markdown + JSON report.

INT8 graphs come from `edgerestore.calibration`. Imports onnx, onnxruntime, numpy, OpenCV; never torch.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgerestore.contract import LADDERS, pad_to, router_thumbnail
from edgerestore.errors import UserError
from edgerestore.exportdir import PRECISION_JSON, ExportDir, write_json
from edgerestore.files import sha256_file, write_bytes_atomic, write_text_atomic
from edgerestore.graphs import load_onnx, ort_session, save_onnx

# Operators kept in float32 in FP16 graphs: normalisations and reductions over many values (sums of squares
# and long accumulations overflow or lose everything in float16), softmax (exp), resampling.
SENSITIVE_OPS: tuple[str, ...] = (
    "Softmax",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "Resize",
    "ReduceMean",
    "GlobalAveragePool",
)
#: Float graph I/O that fp16 graphs carry in float16 (the trunk -> branch features: 48 x H/2 x W/2, 100 MB
#: at 1088x1920 in float32), unless the node producing them is kept in float32 (values near fp16's range).
HALF_IO: tuple[str, ...] = ("features",)
#: ONNX Runtime input type -> numpy dtype, for casting feeds to what a graph takes.
ORT_NUMPY: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(uint8)": np.dtype(np.uint8),
}
FP16_SAFE_LIMIT = 1.0e4  # |activation| above this (float16 max is 65504) keeps the node in float32
PSNR_CAP = 100.0  # identical outputs score this instead of inf, so means stay finite


@dataclass
class Budgets:
    """When a converted graph is accepted."""

    gt_loss_db: float = 0.3  # PSNR vs ground truth may drop at most this much below the float32 graph's
    fp16_min_psnr_db: float = 40.0  # FP16 output vs float32 output
    int8_min_psnr_db: float = 30.0  # INT8 output vs float32 output, used only for frames without ground truth
    router_min_agreement: float = 0.95  # fraction of held-back thumbnails with the float32 router's argmax


@dataclass
class Frame:
    """A held-back or calibration frame: uint8 BGR HWC, its clean target if known, its condition if known."""

    name: str
    image: np.ndarray
    target: np.ndarray | None = None
    condition: str | None = None


@dataclass
class GraphAccuracy:
    graph: str
    requested: str
    precision: str  # used, after fallback
    kind: str  # "image" | "router" | "features"
    frames: int
    psnr_vs_float: float | None = None  # dB, mean over frames (image graphs)
    psnr_vs_gt: float | None = None  # dB, converted graph vs ground truth
    psnr_float_vs_gt: float | None = None  # dB, float32 graph vs ground truth
    router_agreement: float | None = None
    tried: list[dict] = field(default_factory=list)  # every rung evaluated, in order, with its numbers
    note: str = ""


# ----------------------------------------------------------------------------------------------------------
# FP16


def fp16_unsafe_nodes(
    model: onnx.ModelProto, feeds: Sequence[dict], limit: float = FP16_SAFE_LIMIT
) -> list[str]:
    """Names of nodes with a float input or output whose magnitude exceeds `limit` on any of the feeds."""
    model = onnx.shape_inference.infer_shapes(model)
    floats = {
        v.name
        for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    }
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    names = [t for n in probe.graph.node for t in n.output if t in floats and t not in existing]
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort_session(probe.SerializeToString())
    out_names = [o.name for o in session.get_outputs()]
    peak: dict[str, float] = {}
    for feed in feeds:
        for name, value in zip(out_names, session.run(out_names, feed)):
            if value.dtype == np.float32 and value.size:
                peak[name] = max(peak.get(name, 0.0), float(np.abs(value).max()))
        for name, value in feed.items():
            if value.dtype == np.float32 and value.size:
                peak[name] = max(peak.get(name, 0.0), float(np.abs(value).max()))
    hot = {name for name, v in peak.items() if not math.isfinite(v) or v > limit}
    return [n.name for n in model.graph.node if hot.intersection(list(n.input) + list(n.output))]


def convert_fp16(
    model: onnx.ModelProto,
    keep_fp32_ops: Sequence[str] = SENSITIVE_OPS,
    keep_fp32_nodes: Sequence[str] = (),
    half_io: Sequence[str] = HALF_IO,
) -> onnx.ModelProto:
    """A float16 copy of a float32 graph with its inputs/outputs types unchanged (uint8 frames stay uint8,
    `probs` float32), except the float I/O named in `half_io` (the trunk's `features` and the branches'),
    which become float16 so they cross from one fp16 graph to the next without a cast."""
    from onnxconverter_common import float16

    for i, node in enumerate(model.graph.node):  # the converter's node block list matches by name
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    half = float16.convert_float_to_float16(
        model, keep_io_types=True, op_block_list=list(keep_fp32_ops), node_block_list=list(keep_fp32_nodes)
    )
    # The converter retypes a Cast's output (uint8 → float becomes uint8 → float16 downstream) but leaves
    # its `to` attribute at float: make them agree so the frame is cast straight to float16.
    types = {v.name: v.type.tensor_type.elem_type for v in half.graph.value_info}
    for node in half.graph.node:
        if node.op_type != "Cast":
            continue
        to = next(a for a in node.attribute if a.name == "to")
        if to.i == onnx.TensorProto.FLOAT and types.get(node.output[0]) == onnx.TensorProto.FLOAT16:
            to.i = onnx.TensorProto.FLOAT16
    want = _io_types(model)
    hot_outputs = {o for n in model.graph.node if n.name in set(keep_fp32_nodes) for o in n.output}
    for name in half_io:
        if want.get(name) == onnx.TensorProto.FLOAT and name not in hot_outputs:
            _half_io(half, name)
            want[name] = onnx.TensorProto.FLOAT16
    keep_io_types(model, half, want)
    onnx.checker.check_model(half)
    return half


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def _rename(graph: onnx.GraphProto, old: str, new: str, inputs: bool = True, outputs: bool = True) -> None:
    for node in graph.node:
        for names, on in ((node.input, inputs), (node.output, outputs)):
            if on:
                for i, n in enumerate(names):
                    if n == old:
                        names[i] = new


def carry_in_float16(model: onnx.ModelProto, names: Sequence[str] = HALF_IO) -> onnx.ModelProto:
    """A copy of a graph that computes in float16 (an fp16 or ModelOpt INT8 graph with float32 I/O) whose
    float32 I/O in `names` become float16, boundary casts removed; the graph unchanged if that would not
    load in ONNX Runtime."""
    out = onnx.shape_inference.infer_shapes(model)
    want = _io_types(out)
    for name in names:
        if want.get(name) == onnx.TensorProto.FLOAT:
            _half_io(out, name)
            want[name] = onnx.TensorProto.FLOAT16
    try:
        keep_io_types(model, out, want)
        onnx.checker.check_model(out)
        ort_session(out.SerializeToString())
    except Exception:  # noqa: BLE001 - a consumer that needs the float32 tensor: keep the graph as it was
        return model
    return out


def _half_io(model: onnx.ModelProto, name: str) -> None:
    """Make graph input/output `name` float16 in a converted graph, removing the converter's boundary casts
    (it casts a float32 input once per consumer)."""
    F16, F32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    g = model.graph
    value = next((v for v in g.input if v.name == name), None)
    if value is not None:
        for cast in [n for n in g.node if list(n.input) == [name] and _cast_to(n) == F16]:
            g.node.remove(cast)
            _rename(g, cast.output[0], name, outputs=False)
        value.type.tensor_type.elem_type = F16
        types = {v.name: v.type.tensor_type.elem_type for v in g.value_info}
        # consumers the converter left on the float32 input: those computing in float32 (blocked ops)
        # read one cast back to float32, the others read the float16 input directly
        rest = [n for n in g.node if name in n.input and any(types.get(o) == F32 for o in n.output)]
        if rest:
            inner = f"{name}__float"
            for node in rest:
                for i, n in enumerate(node.input):
                    if n == name:
                        node.input[i] = inner
            g.node.insert(
                0, onnx.helper.make_node("Cast", [name], [inner], to=F32, name=f"Cast_{name}_float")
            )
    value = next((v for v in g.output if v.name == name), None)
    if value is not None:
        types = {v.name: v.type.tensor_type.elem_type for v in g.value_info}
        producer = next(n for n in g.node if name in n.output)
        if _cast_to(producer) == F32 and types.get(producer.input[0]) == F16:  # the converter's output cast
            g.node.remove(producer)
            src = producer.input[0]
            _rename(g, src, name)
            for v in [v for v in g.value_info if v.name == src]:
                g.value_info.remove(v)
        value.type.tensor_type.elem_type = F16  # keep_io_types adds a Cast where the producer is float32


def _io_types(model: onnx.ModelProto) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}


def keep_io_types(
    original: onnx.ModelProto, converted: onnx.ModelProto, want: dict[str, int] | None = None
) -> None:
    """Give `converted` the graph input/output types of `original` (or `want`), in place: a Cast where a
    converter retyped one (onnxconverter-common types an output float16 when a blocked op such as the
    router's Softmax feeds it), so `probs` and `features` stay what the manifest and the runtime's bindings
    say. AssertionError if any still differs."""
    want = dict(want) if want is not None else _io_types(original)
    g = converted.graph
    for value in list(g.output) + list(g.input):
        have = value.type.tensor_type.elem_type
        target = want.get(value.name, have)
        if have == target:
            continue
        inner = f"{value.name}__{onnx.TensorProto.DataType.Name(have).lower()}"
        is_output = any(value is o for o in g.output)
        for node in g.node:
            names = node.output if is_output else node.input
            for i, n in enumerate(names):
                if n == value.name:
                    names[i] = inner
        if is_output:
            for node in g.node:  # other consumers of the retyped output read the inner tensor
                for i, n in enumerate(node.input):
                    if n == value.name:
                        node.input[i] = inner
            g.node.append(
                onnx.helper.make_node("Cast", [inner], [value.name], to=target, name=f"Cast_{value.name}_io")
            )
        else:
            g.node.insert(
                0, onnx.helper.make_node("Cast", [value.name], [inner], to=have, name=f"Cast_{value.name}_io")
            )
        value.type.tensor_type.elem_type = target
    changed = {k: v for k, v in _io_types(converted).items() if want.get(k, v) != v}
    if changed:
        raise AssertionError(f"converted graph changed the types of {sorted(changed)}")


# ----------------------------------------------------------------------------------------------------------
# running graphs on frames


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    from edgerestore.metrics import calculate_psnr

    value = calculate_psnr(a, b)
    return PSNR_CAP if not math.isfinite(value) else min(value, PSNR_CAP)


class GraphRunner:
    """ONNX Runtime sessions for (graph, precision) → path, created on first use."""

    def __init__(self, paths: dict[tuple[str, str], Path], threads: int = 2) -> None:
        self.paths = paths
        self.threads = threads
        self._sessions: dict[tuple[str, str], object] = {}

    def run(self, graph: str, precision: str, feeds: dict) -> np.ndarray:
        key = (graph, precision)
        if key not in self._sessions:
            if key not in self.paths:
                raise KeyError(f"no {precision} graph for {graph}")
            # a TensorRT-form graph is checked as written, not through ONNX Runtime's own Q/DQ fusions
            self._sessions[key] = ort_session(self.paths[key], self.threads, fuse_qdq=precision != "int8_trt")
        session = self._sessions[key]
        types = {i.name: ORT_NUMPY.get(i.type) for i in session.get_inputs()}
        feeds = {k: v if types.get(k) in (None, v.dtype) else v.astype(types[k]) for k, v in feeds.items()}
        return session.run(None, feeds)[0]


def _restore(image: np.ndarray, out: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return out[0, :h, :w]


def _image_scores(
    outputs: list[np.ndarray], refs: list[np.ndarray], frames: list[Frame], gt_frames: list[int]
) -> dict:
    vs_float = float(np.mean([_psnr(o, r) for o, r in zip(outputs, refs)]))
    scores = {"psnr_vs_float": vs_float, "psnr_vs_gt": None, "psnr_float_vs_gt": None}
    if gt_frames:
        scores["psnr_vs_gt"] = float(np.mean([_psnr(outputs[i], frames[i].target) for i in gt_frames]))
        scores["psnr_float_vs_gt"] = float(np.mean([_psnr(refs[i], frames[i].target) for i in gt_frames]))
    return scores


def _passes(level: str, scores: dict, budgets: Budgets) -> bool:
    if level == "fp32":
        return True
    if scores.get("router_agreement") is not None:
        return scores["router_agreement"] >= budgets.router_min_agreement
    if (
        scores["psnr_vs_gt"] is not None
        and scores["psnr_float_vs_gt"] - scores["psnr_vs_gt"] > budgets.gt_loss_db
    ):
        return False
    if level == "fp16":
        return scores["psnr_vs_float"] >= budgets.fp16_min_psnr_db
    if scores["psnr_vs_gt"] is None:
        return scores["psnr_vs_float"] >= budgets.int8_min_psnr_db
    return True


def _gt_frames(frames: list[Frame], condition: str | None) -> list[int]:
    """Frames with ground truth, those of the branch's own condition when there are any."""
    with_gt = [i for i, f in enumerate(frames) if f.target is not None]
    own = [i for i in with_gt if condition is not None and frames[i].condition == condition]
    return own or with_gt


def guard(
    meta: dict,
    runner: GraphRunner,
    requested: str,
    frames: list[Frame],
    budgets: Budgets,
    progress: bool = True,
) -> dict[str, GraphAccuracy]:
    """Choose each graph's precision: the lowest rung of the ladder that meets its budget on `frames`.

    UFFN: the router alone (argmax agreement); the trunk is judged through the branches — at each trunk
    rung, each branch takes its lowest passing rung; if some branch fails even in float32 on top of that
    trunk, the trunk goes up one rung. CMUDRN: each graph alone.
    """
    from tqdm import tqdm

    ladder = LADDERS[requested]
    stride = int(meta["stride"])
    if not frames:
        raise UserError(
            "the accuracy guard needs held-back frames; use more calibration frames or --holdout > 0"
        )
    padded = [pad_to(f.image, stride)[None] for f in frames]
    results: dict[str, GraphAccuracy] = {}
    bar = tqdm(total=len(meta["graphs"]), desc=f"guard {requested}", unit="graph", disable=not progress)

    if meta["family"] == "uffn":
        size = int(meta["thumbnail_size"])
        thumbs = [router_thumbnail(f.image, size)[None] for f in frames]
        ref = [int(np.argmax(runner.run("router", "fp32", {"thumbnail": t}))) for t in thumbs]
        acc = GraphAccuracy("router", requested, "fp32", "router", len(frames))
        for level in ladder:
            got = [int(np.argmax(runner.run("router", level, {"thumbnail": t}))) for t in thumbs]
            scores = {"router_agreement": float(np.mean([a == b for a, b in zip(got, ref)]))}
            acc.tried.append({"precision": level, **scores})
            if _passes(level, scores, budgets):
                acc.precision, acc.router_agreement = level, scores["router_agreement"]
                break
        results["router"] = acc
        bar.update(1)

        branches = [g for g in meta["graphs"] if g.startswith("branch_")]
        feats_ref = [runner.run("trunk", "fp32", {"frame": p}) for p in padded]
        refs = {
            b: [
                _restore(f.image, runner.run(b, "fp32", {"frame": p, "features": x}))
                for f, p, x in zip(frames, padded, feats_ref)
            ]
            for b in branches
        }
        chosen: dict[str, GraphAccuracy] = {}
        trunk_tried: list[dict] = []
        for trunk_level in ladder:
            feats = (
                feats_ref
                if trunk_level == "fp32"
                else [runner.run("trunk", trunk_level, {"frame": p}) for p in padded]
            )
            chosen, failed = {}, []
            for b in branches:
                condition = b.removeprefix("branch_")
                gt = _gt_frames(frames, condition)
                acc = GraphAccuracy(b, requested, "fp32", "image", len(frames))
                for level in ladder:
                    outs = [
                        _restore(f.image, runner.run(b, level, {"frame": p, "features": x}))
                        for f, p, x in zip(frames, padded, feats)
                    ]
                    scores = _image_scores(outs, refs[b], frames, gt)
                    acc.tried.append({"precision": level, "trunk": trunk_level, **scores})
                    # the pair is judged by the budget of its lower precision (a float32 branch on an
                    # int8 trunk is an int8 result)
                    effective = ladder[min(ladder.index(trunk_level), ladder.index(level))]
                    if _passes(effective, scores, budgets):
                        acc.precision = level
                        acc.psnr_vs_float, acc.psnr_vs_gt = scores["psnr_vs_float"], scores["psnr_vs_gt"]
                        acc.psnr_float_vs_gt = scores["psnr_float_vs_gt"]
                        break
                else:
                    failed.append(b)
                chosen[b] = acc
            trunk_tried.append({"precision": trunk_level, "branches_failing": failed})
            if not failed:
                results["trunk"] = GraphAccuracy(
                    "trunk",
                    requested,
                    trunk_level,
                    "features",
                    len(frames),
                    tried=trunk_tried,
                    note="judged through the branches' outputs",
                )
                break
        results.update(chosen)
        bar.update(1 + len(branches))
    else:
        for g in meta["graphs"]:
            refs_g = [_restore(f.image, runner.run(g, "fp32", {"frame": p})) for f, p in zip(frames, padded)]
            gt = _gt_frames(frames, None)
            acc = GraphAccuracy(g, requested, "fp32", "image", len(frames))
            for level in ladder:
                outs = [_restore(f.image, runner.run(g, level, {"frame": p})) for f, p in zip(frames, padded)]
                scores = _image_scores(outs, refs_g, frames, gt)
                acc.tried.append({"precision": level, **scores})
                if _passes(level, scores, budgets):
                    acc.precision = level
                    acc.psnr_vs_float, acc.psnr_vs_gt = scores["psnr_vs_float"], scores["psnr_vs_gt"]
                    acc.psnr_float_vs_gt = scores["psnr_float_vs_gt"]
                    break
            results[g] = acc
            bar.update(1)
    bar.close()
    for acc in results.values():
        if acc.precision != requested:
            acc.note = (
                acc.note + "; " if acc.note else ""
            ) + f"fell back from {requested} to {acc.precision}"
    return results


# ----------------------------------------------------------------------------------------------------------
# a precision variant of an export directory


@dataclass
class PrecisionResult:
    precision: str
    out_dir: Path
    accuracy: dict[str, GraphAccuracy]
    report_md: Path
    report_json: Path
    seconds: float


def fp16_graphs(
    export: ExportDir, feeds_for: Callable[[str], list[dict]], out_dir: Path, progress: bool = True
) -> dict[str, Path]:
    """Convert every graph to FP16 into out_dir (sensitive ops and hot nodes kept in float32)."""
    from tqdm import tqdm

    paths = {}
    for name in tqdm(list(export.graphs), desc="fp16", unit="graph", disable=not progress):
        model = load_onnx(export.graph_path(name))
        hot = fp16_unsafe_nodes(model, feeds_for(name))
        paths[name] = save_onnx(convert_fp16(model, keep_fp32_nodes=hot), out_dir / f"{name}.onnx")
    return paths


def match_feature_types(paths: dict[str, Path]) -> dict[str, onnx.ModelProto]:
    """Branches whose `features` input type differs from the trunk's `features` output (an fp16 trunk beside
    a branch that fell back to float32, or the reverse), each with its input retyped to the trunk's and ONE
    Cast to what it computes in. The others are not returned. The accuracy guard measured these pairs with
    the same cast applied to the feed (GraphRunner casts feeds to the input's type)."""
    if "trunk" not in paths:
        return {}
    trunk = onnx.load(str(paths["trunk"]), load_external_data=False)
    have = next((o.type.tensor_type.elem_type for o in trunk.graph.output if o.name == "features"), None)
    out = {}
    for name, path in paths.items():
        if not name.startswith("branch_") or have is None:
            continue
        branch = load_onnx(path)
        value = next((v for v in branch.graph.input if v.name == "features"), None)
        if value is None or value.type.tensor_type.elem_type == have:
            continue
        takes = value.type.tensor_type.elem_type
        inner = f"features__{onnx.TensorProto.DataType.Name(takes).lower()}"
        _rename(branch.graph, "features", inner, outputs=False)
        branch.graph.node.insert(
            0, onnx.helper.make_node("Cast", ["features"], [inner], to=takes, name="Cast_features_in")
        )
        value.type.tensor_type.elem_type = have
        onnx.checker.check_model(branch)
        out[name] = branch
    return out


def write_variant(
    export: ExportDir,
    requested: str,
    candidates: dict[tuple[str, str], Path],
    accuracy: dict[str, GraphAccuracy],
    budgets: Budgets,
    settings: dict,
    seconds: float,
) -> PrecisionResult:
    """Copy each graph's accepted file into export_dir/<requested>/ and write precision.json + reports."""
    meta = export.meta
    out_dir = export.variant_dir(requested)
    out_dir.mkdir(parents=True, exist_ok=True)
    graphs = {}
    chosen = {name: candidates[(name, accuracy[name].precision)] for name in meta["graphs"]}
    retyped = match_feature_types(chosen)
    for name in meta["graphs"]:
        acc = accuracy[name]
        src = chosen[name]
        dst = out_dir / meta["graphs"][name]["file"]
        if name in retyped:
            save_onnx(retyped[name], dst)
        elif src.resolve() != dst.resolve():
            write_bytes_atomic(dst, src.read_bytes())
        graphs[name] = {
            "file": dst.name,
            "sha256": sha256_file(dst),
            "source_sha256": meta["graphs"][name]["sha256"],
            **{k: v for k, v in asdict(acc).items() if k != "graph"},
        }
    payload = {
        "precision": requested,
        "profile": meta["profile"],
        "family": meta["family"],
        "budgets": asdict(budgets),
        "settings": settings,
        "graphs": graphs,
        "seconds": round(seconds, 1),
    }
    write_json(out_dir / PRECISION_JSON, payload)
    report_json = write_json(out_dir / "report.json", payload)
    report_md = write_text_atomic(out_dir / "report.md", report_markdown(payload))
    return PrecisionResult(requested, out_dir, accuracy, report_md, report_json, seconds)


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def report_markdown(payload: dict) -> str:
    b = payload["budgets"]
    lines = [
        f"# {payload['profile']}: {payload['precision']} graphs",
        "",
        f"Budgets: ≤ {b['gt_loss_db']} dB lost vs ground truth; FP16 ≥ {b['fp16_min_psnr_db']} dB vs float32 "
        f"output; INT8 without ground truth ≥ {b['int8_min_psnr_db']} dB; router agreement ≥ "
        f"{b['router_min_agreement']:.0%}. Settings: {json.dumps(payload['settings'])}.",
        "",
        "| graph | requested | used | frames | PSNR vs float32 (dB) | PSNR vs GT (dB) | float32 vs GT (dB) | "
        "router agreement | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, g in payload["graphs"].items():
        lines.append(
            f"| {name} | {g['requested']} | **{g['precision']}** | {g['frames']} | {_fmt(g['psnr_vs_float'])} | "
            f"{_fmt(g['psnr_vs_gt'])} | {_fmt(g['psnr_float_vs_gt'])} | {_fmt(g['router_agreement'], '.0%')} | "
            f"{g['note']} |"
        )
    return "\n".join(lines) + "\n"


def reference_paths(export: ExportDir) -> dict[tuple[str, str], Path]:
    return {(name, "fp32"): export.graph_path(name) for name in export.graphs}


def make_fp16(
    export_dir: str | Path,
    frames: list[Frame],
    budgets: Budgets | None = None,
    calib_frames: list[Frame] | None = None,
    progress: bool = True,
) -> PrecisionResult:
    """export/<profile>/fp16/: FP16 graphs, each accepted by the guard on `frames` or kept in float32."""
    start = time.perf_counter()
    export = ExportDir(export_dir).verify(load=True)
    budgets = budgets or Budgets()
    feeds_for = reference_feeds(export, (calib_frames or []) + frames + [bright_frame(frames)])
    with tempfile.TemporaryDirectory(prefix="edgerestore-fp16-", dir=export.path) as tmp:
        paths = fp16_graphs(export, feeds_for, Path(tmp), progress)
        candidates = {**reference_paths(export), **{(n, "fp16"): p for n, p in paths.items()}}
        accuracy = guard(export.meta, GraphRunner(candidates), "fp16", frames, budgets, progress)
        return write_variant(
            export,
            "fp16",
            candidates,
            accuracy,
            budgets,
            {"keep_fp32_ops": list(SENSITIVE_OPS), "hot_limit": FP16_SAFE_LIMIT},
            time.perf_counter() - start,
        )


def bright_frame(frames: list[Frame]) -> Frame:
    """A saturated white frame as large as the largest given one: the worst case for FP16 overflow."""
    h = max((f.image.shape[0] for f in frames), default=360)
    w = max((f.image.shape[1] for f in frames), default=640)
    return Frame("bright", np.full((h, w, 3), 255, np.uint8))


def reference_feeds(export: ExportDir, frames: list[Frame]) -> Callable[[str], list[dict]]:
    """feeds_for(graph) → that graph's input feeds for each frame (branch features from the float32 trunk)."""
    meta = export.meta
    stride = int(meta["stride"])
    padded = [pad_to(f.image, stride)[None] for f in frames]
    cache: dict[str, list[dict]] = {}

    def feeds_for(name: str) -> list[dict]:
        if name in cache:
            return cache[name]
        if name == "router":
            size = int(meta["thumbnail_size"])
            feeds = [{"thumbnail": router_thumbnail(f.image, size)[None]} for f in frames]
        elif name.startswith("branch_"):
            if "features" not in cache:
                trunk = ort_session(export.graph_path("trunk"))
                cache["features"] = [{"features": trunk.run(None, {"frame": p})[0]} for p in padded]
            feeds = [{"frame": p, **x} for p, x in zip(padded, cache["features"])]
        else:
            feeds = [{"frame": p} for p in padded]
        cache[name] = feeds
        return feeds

    return feeds_for
