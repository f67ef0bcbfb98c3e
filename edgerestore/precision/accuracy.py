"""The accuracy guard: every converted graph against the float32 graph, with ONNX Runtime on held-back frames.

PSNR of the output vs the float32 output and vs ground truth for image graphs (each branch through the
trunk, each CMUDRN graph), argmax agreement for the router; a graph over its `Budgets` falls back along its
ladder (`edgerestore.contract.LADDERS`: int8_trt → fp16 → fp32, int8_ort → fp32, fp16 → fp32).

Imports numpy and onnxruntime; never torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgerestore.contract import FEATURES, FRAME, LADDERS, THUMBNAIL, pad_to, router_thumbnail
from edgerestore.errors import UserError
from edgerestore.graphs import ort_session
from edgerestore.precision.frames import Frame
from edgerestore.progress import Progress, as_progress

#: ONNX Runtime input type -> numpy dtype, for casting feeds to what a graph takes.
ORT_NUMPY: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(uint8)": np.dtype(np.uint8),
}
PSNR_CAP = 100.0  # identical outputs score this instead of inf, so means stay finite


@dataclass
class Budgets:
    """When a converted graph is accepted."""

    gt_loss_db: float = 0.3  # PSNR vs ground truth may drop at most this much below the float32 graph's
    fp16_min_psnr_db: float = 40.0  # FP16 output vs float32 output
    int8_min_psnr_db: float = 30.0  # INT8 output vs float32 output, used only for frames without ground truth
    router_min_agreement: float = 0.95  # fraction of held-back thumbnails with the float32 router's argmax


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

    def has(self, graph: str, precision: str) -> bool:
        """Whether there is a `precision` graph for `graph` (the guard tries only the rungs there are)."""
        return (graph, precision) in self.paths

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
    progress: Progress | bool = True,
    *,
    reference: GraphRunner | None = None,
    min_hw: tuple[int, int] = (1, 1),
) -> dict[str, GraphAccuracy]:
    """Choose each graph's precision: the lowest rung of the ladder that meets its budget on `frames`.

    UFFN: the router alone (argmax agreement); the trunk is judged through the branches — at each trunk
    rung, each branch takes its lowest passing rung; if some branch fails even in float32 on top of that
    trunk, the trunk goes up one rung. CMUDRN: each graph alone. A rung `runner` has no graph for is
    skipped. `reference` runs the float32 graphs the rungs are compared with (default: `runner`'s fp32;
    the device guard of a TensorRT build runs its engines in `runner` and ONNX Runtime here); `min_hw`:
    frames are padded to at least this size (an engine's shape profile).
    """
    ladder = LADDERS[requested]
    reference = reference or runner
    stride = int(meta["stride"])
    if not frames:
        raise UserError(
            "the accuracy guard needs held-back frames; use more calibration frames or --holdout > 0"
        )

    def rungs(graph: str) -> list[str]:
        return [level for level in ladder if runner.has(graph, level)]

    padded = [pad_to(f.image, stride, min_hw)[None] for f in frames]
    results: dict[str, GraphAccuracy] = {}
    bar = as_progress(progress).bar(len(meta["graphs"]), f"guard {requested}", "graph")

    if meta["family"] == "uffn":
        size = int(meta["thumbnail_size"])
        thumbs = [router_thumbnail(f.image, size)[None] for f in frames]
        ref = [int(np.argmax(reference.run("router", "fp32", {THUMBNAIL: t}))) for t in thumbs]
        acc = GraphAccuracy("router", requested, "fp32", "router", len(frames))
        for level in rungs("router"):
            got = [int(np.argmax(runner.run("router", level, {THUMBNAIL: t}))) for t in thumbs]
            scores = {"router_agreement": float(np.mean([a == b for a, b in zip(got, ref)]))}
            acc.tried.append({"precision": level, **scores})
            if _passes(level, scores, budgets):
                acc.precision, acc.router_agreement = level, scores["router_agreement"]
                break
        results["router"] = acc
        bar.update(1)

        branches = [g for g in meta["graphs"] if g.startswith("branch_")]
        feats_ref = [reference.run("trunk", "fp32", {FRAME: p}) for p in padded]
        refs = {
            b: [
                _restore(f.image, reference.run(b, "fp32", {FRAME: p, FEATURES: x}))
                for f, p, x in zip(frames, padded, feats_ref)
            ]
            for b in branches
        }
        chosen: dict[str, GraphAccuracy] = {}
        trunk_tried: list[dict] = []
        for trunk_level in rungs("trunk"):
            feats = (
                feats_ref
                if trunk_level == "fp32" and reference is runner
                else [runner.run("trunk", trunk_level, {FRAME: p}) for p in padded]
            )
            chosen, failed = {}, []
            for b in branches:
                condition = b.removeprefix("branch_")
                gt = _gt_frames(frames, condition)
                acc = GraphAccuracy(b, requested, "fp32", "image", len(frames))
                for level in rungs(b):
                    outs = [
                        _restore(f.image, runner.run(b, level, {FRAME: p, FEATURES: x}))
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
            refs_g = [_restore(f.image, reference.run(g, "fp32", {FRAME: p})) for f, p in zip(frames, padded)]
            gt = _gt_frames(frames, None)
            acc = GraphAccuracy(g, requested, "fp32", "image", len(frames))
            for level in rungs(g):
                outs = [_restore(f.image, runner.run(g, level, {FRAME: p})) for f, p in zip(frames, padded)]
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
