"""PyTorch → ONNX: one graph per part of a model, simplified, checked and compared against PyTorch.

UFFN → `router.onnx`, `trunk.onnx`, `branch_<condition>.onnx`; CMUDRN → `cmudrn_t<T>.onnx` per loop count,
plus `model.json` (DESIGN.md, "ONNX graphs"). Each part is wrapped (`edgerestore.export_wrappers`) so that
the graph itself takes and returns uint8 NHWC BGR frames; a `float_output` variant stops before the ×255
(clamped float32 NHWC BGR) for the parity check. Tensor names are the contract's (`edgerestore.contract`).

Exporter choice (torch 2.13). The TorchScript exporter (`dynamo=False`) is used by default:

* after onnxsim, its graphs and the `dynamo=True` exporter's hold the same operators (Conv, Relu, Add,
  Mul, Softmax, Slice, Concat, ConvTranspose…; 49 vs 45 nodes for a tiny branch, the difference being
  three Slice constants; measured on the model's own operators, `blocked=False`), with BatchNorm folded
  into Conv and dynamic `height`/`width` in both;
* it exports a part in ~0.3 s where `dynamo=True` takes ~4 s (8 s for the first), so exporting a CMUDRN at
  several loop counts or the parity tests stay fast on two cores;
* it needs no extra package (`dynamo=True` needs onnxscript) and its dynamic axes carry our names directly
  (dynamo names them `2*s0`, …, which we would rename anyway).

Its one weakness here: ShareSepConv builds its kernel with `weight.expand(x.shape[1], …)`, which the
TorchScript exporter cannot export as a Conv weight ("kernel of unknown shape"). `fold_for_export`
replaces each ShareSepConv in a copy of the model by the identical depthwise convolution with the kernel
already expanded to the known channel count, so the graph holds a plain Conv and no Expand. `dynamo=True`
stays available (`exporter="dynamo"`) as the exporter PyTorch maintains going forward.

With `blocked` (the default) `fold_for_export` also swaps the branches and the gradient channel for their
blocked forms and `export_module` names the spatial axes of intermediate tensors
(`graphs.label_spatial_dims`): the same arithmetic in operators ONNX Runtime's CPU kernels keep in their
NCHWc layout (`export_wrappers`' docstring; README, *Blocked export forms*).

The wrapped parts are `edgerestore.export_wrappers`' modules. Imports torch inside the functions that need it
(so this module imports without it); knows nothing of the runtime.
"""

from __future__ import annotations

import copy
import io
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgerestore.contract import FEATURES, FRAME, PROBS, RESTORED, THUMBNAIL, pad_to, tensor_specs
from edgerestore.errors import UserError
from edgerestore.exportdir import FORMAT, ExportDir
from edgerestore.files import sha256_file
from edgerestore.graphs import label_spatial_dims, ort_session, save_onnx, set_dim_names
from edgerestore.progress import Progress, as_progress

DEFAULT_OPSET = 18  # TensorRT 10.x / TensorRT-RTX parsers, ORT quantization and onnxsim all handle 18
EXPORTERS = ("torchscript", "dynamo")
PARITY_TOLERANCE = 1e-4  # max abs error on [0, 1] images (float32)


@dataclass
class GraphRecord:
    name: str
    file: str
    sha256: str
    inputs: list[dict]
    outputs: list[dict]
    nodes: int
    bytes: int
    ops: dict[str, int] = field(default_factory=dict)


@dataclass
class ParityResult:
    graph: str
    size: tuple[int, int]  # the frame's (H, W) before padding
    max_abs_error: (
        float  # float path, [0, 1] images (router: probabilities; trunk: relative to max |feature|)
    )
    max_uint8_diff: int | None  # uint8 graph vs round(PyTorch·255); None for graphs without image outputs
    ok: bool


@dataclass
class ExportResult:
    out_dir: Path
    model_json: Path
    graphs: list[GraphRecord]
    parity: list[ParityResult]
    seconds: float


def fold_for_export(model, blocked: bool = True):
    """An eval-mode copy of the model with every ShareSepConv replaced by its fixed-channel depthwise conv and,
    with `blocked`, every MultiGatedBranch and ImageGradient by its blocked form (`export_wrappers`: the same
    arithmetic in operators ONNX Runtime's CPU kernels keep in their blocked layout)."""
    from torch import nn

    from edgerestore.export_wrappers import BlockedGatedBranch, DepthwiseShareSepConv, SliceGradient
    from edgerestore.models.blocks import ImageGradient, ShareSepConv
    from edgerestore.models.uffn import MultiGatedBranch

    model = copy.deepcopy(model).eval()
    for parent in model.modules():
        children = list(parent.named_children())
        for i, (name, child) in enumerate(children):
            if not isinstance(child, ShareSepConv):
                continue
            following = children[i + 1][1] if i + 1 < len(children) else None
            if not isinstance(following, nn.Conv2d):
                raise RuntimeError(f"cannot fold ShareSepConv {name!r}: it is not followed by a Conv2d")
            setattr(parent, name, DepthwiseShareSepConv(child.weight, following.in_channels))
    if blocked:
        swaps = {MultiGatedBranch: BlockedGatedBranch, ImageGradient: SliceGradient}
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) in swaps:
                    setattr(parent, name, swaps[type(child)](child).eval())
    return model


# ----------------------------------------------------------------------------------------------------------
# one graph


def _simplify(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError(f"onnxsim could not validate the simplified {name} graph")
    return simplified


def export_module(
    module,
    example_inputs: tuple,
    input_names: list[str],
    output_names: list[str],
    dim_names: dict[str, dict[int, str]],
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    stride: int = 1,
) -> onnx.ModelProto:
    """Export one wrapped part, simplify it with onnxsim (dynamic dims kept) and check it."""
    import torch

    if exporter not in EXPORTERS:
        raise UserError(f"unknown exporter {exporter!r}; expected one of {', '.join(EXPORTERS)}")
    module = module.eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            buffer = io.BytesIO()
            torch.onnx.export(
                module,
                example_inputs,
                buffer,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes={k: dict(v) for k, v in dim_names.items()} or None,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
            model = onnx.load_from_string(buffer.getvalue())
        else:
            model = _export_dynamo(
                module, example_inputs, input_names, output_names, dim_names, opset, stride
            )
    model = _simplify(model, output_names[0])
    set_dim_names(model, dim_names)
    for value in model.graph.output:  # batch 1 as the inputs (the exporter cannot follow it through Reshape)
        batch = value.type.tensor_type.shape.dim[0]
        if not batch.HasField("dim_value") and 0 not in dim_names.get(value.name, {}):
            batch.Clear()
            batch.dim_value = 1
    label_spatial_dims(model, stride)
    model.producer_name = "edgerestore"
    onnx.checker.check_model(model, full_check=True)
    return model


def _export_dynamo(module, example_inputs, input_names, output_names, dim_names, opset, stride):
    import torch

    # One Dim per named axis; frame axes are `stride`× the feature axes so the constraint is in the graph.
    half_h = torch.export.Dim("half_height", min=2, max=4096)
    half_w = torch.export.Dim("half_width", min=2, max=4096)
    full = {"height": stride * half_h, "width": stride * half_w, "height/2": half_h, "width/2": half_w}
    if stride == 1:
        full["height"], full["width"] = half_h, half_w
    dynamic_shapes = {
        name: {axis: full[label] for axis, label in dim_names.get(name, {}).items()} for name in input_names
    }
    program = torch.onnx.export(
        module,
        example_inputs,
        None,
        input_names=input_names,
        output_names=output_names,
        dynamic_shapes=dynamic_shapes if any(dynamic_shapes.values()) else None,
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )
    return program.model_proto


def _record(name: str, path: Path, model: onnx.ModelProto) -> GraphRecord:
    inputs, outputs = tensor_specs(model)
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return GraphRecord(
        name, path.name, sha256_file(path), inputs, outputs, len(model.graph.node), path.stat().st_size, ops
    )


# ----------------------------------------------------------------------------------------------------------
# whole models


def graph_specs(model, loops: list[int] | None = None, float_output: bool = False, blocked: bool = True):
    """[(graph name, wrapped module, example inputs, input names, output names, dim names, stride)];
    `blocked=False` exports the model's own operators (`fold_for_export`), for comparisons."""
    import torch

    from edgerestore.export_wrappers import BranchGraph, CMUDRNGraph, RouterGraph, TrunkGraph
    from edgerestore.models.uffn import UFFN

    folded = fold_for_export(model, blocked)
    hw = {1: "height", 2: "width"}
    if isinstance(model, UFFN):
        s, h, w = model.thumbnail_size, 4 * model.stride, 6 * model.stride  # small, non-square example
        frame = torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8)
        thumb = torch.randint(0, 256, (1, s, s, 3), dtype=torch.uint8)
        feats = torch.randn(1, model.feature_channels, h // model.stride, w // model.stride)
        half = {2: "height/2", 3: "width/2"}
        specs = [
            ("router", RouterGraph(folded), (thumb,), [THUMBNAIL], [PROBS], {}, model.stride),
            (
                "trunk",
                TrunkGraph(folded),
                (frame,),
                [FRAME],
                [FEATURES],
                {FRAME: hw, FEATURES: half},
                model.stride,
            ),
        ]
        for condition in model.conditions[1:]:
            specs.append(
                (
                    f"branch_{condition}",
                    BranchGraph(folded, condition, float_output),
                    (frame, feats),
                    [FRAME, FEATURES],
                    [RESTORED],
                    {FRAME: hw, FEATURES: half, RESTORED: hw},
                    model.stride,
                )
            )
        return specs
    frame = torch.randint(0, 256, (1, 5, 7, 3), dtype=torch.uint8)
    specs = []
    for t in loops or [model.loops]:
        specs.append(
            (
                f"cmudrn_t{t}",
                CMUDRNGraph(folded.with_loops(t).eval(), float_output),
                (frame,),
                [FRAME],
                [RESTORED],
                {FRAME: hw, RESTORED: hw},
                1,
            )
        )
    return specs


def export_model(
    model,
    out_dir: str | Path,
    profile: str,
    checkpoint_sha256: str | None = None,
    opset: int = DEFAULT_OPSET,
    loops: list[int] | None = None,
    exporter: str = "torchscript",
    parity_sizes: list[tuple[int, int]] | None = None,
    progress: Progress | bool = True,
    router_calibration: dict | None = None,
) -> ExportResult:
    """Export every graph of a model into `out_dir` (= export/<profile>/), write model.json, check parity.

    `router_calibration`: the checkpoint's `router_calibration` record (temperature, threshold); model.json
    keeps its temperature and threshold for the runtime.

    `parity_sizes` ([(H, W)], odd sizes welcome; the UFFN graphs get them reflect-padded to the stride)
    defaults to three sizes; an empty list skips the check. A parity failure raises `UserError`.
    """
    from edgerestore.models.uffn import UFFN

    if not 17 <= opset <= 20:
        raise UserError(f"opset {opset} is outside 17–20, the range TensorRT 10/11's ONNX parsers accept")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    records: list[GraphRecord] = []
    specs = graph_specs(model, loops)
    for name, module, inputs, in_names, out_names, dims, stride in as_progress(progress).each(
        specs, "export", "graph"
    ):
        graph = export_module(module, inputs, in_names, out_names, dims, opset, exporter, stride)
        path = save_onnx(graph, out_dir / f"{name}.onnx")
        records.append(_record(name, path, graph))
    is_uffn = isinstance(model, UFFN)
    meta = {
        "format": FORMAT,
        "family": model.family,
        "profile": profile,
        "conditions": list(model.conditions),
        "stride": int(model.stride),
        "thumbnail_size": int(model.thumbnail_size) if is_uffn else None,
        "branch_scales": dict(model.config.branch_scales) if is_uffn else {},
        "router_calibration": {
            k: float(router_calibration[k]) for k in ("temperature", "threshold") if k in router_calibration
        }
        if is_uffn and router_calibration
        else {},
        "color_order": "BGR",
        "layout": "NHWC",
        "normalisation": {
            "input": "uint8 BGR -> float32 RGB / 255 in [0, 1] (inside the graph)",
            "output": "uint8 BGR = round(clamp(restored, 0, 1) * 255) (inside the graph)",
            "scale": 255.0,
        },
        "opset": opset,
        "checkpoint_sha256": checkpoint_sha256,
        "exporter": exporter,
        "config": model.config.to_dict(),
        "graphs": {
            r.name: {"file": r.file, "sha256": r.sha256, "inputs": r.inputs, "outputs": r.outputs}
            for r in records
        },
    }
    if not is_uffn:
        meta["loops"] = [int(r.name.split("_t")[1]) for r in records]
    sizes = [(97, 131), (64, 96), (45, 38)] if parity_sizes is None else parity_sizes
    parity = check_parity(model, out_dir, sizes, opset=opset, exporter=exporter, loops=loops) if sizes else []
    bad = [p for p in parity if not p.ok]
    if bad:
        worst = max(bad, key=lambda p: p.max_abs_error)
        raise UserError(
            f"exported {worst.graph} differs from PyTorch at {worst.size[0]}x{worst.size[1]}: max abs error "
            f"{worst.max_abs_error:.2e} (limit {PARITY_TOLERANCE:.0e}); graphs left in {out_dir}, model.json not written"
        )
    model_json = ExportDir(out_dir).write_meta(meta)
    return ExportResult(out_dir, model_json, records, parity, time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------------------
# parity against PyTorch


def _nhwc_bgr_float(x) -> np.ndarray:
    return x.clamp(0, 1).flip(1).permute(0, 2, 3, 1).numpy()


def check_parity(
    model,
    export_dir: str | Path,
    sizes: list[tuple[int, int]],
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    loops: list[int] | None = None,
    seed: int = 0,
) -> list[ParityResult]:
    """Compare ONNX Runtime against PyTorch for every graph at every size.

    Float path: float-output variants of the image graphs are exported to a temporary directory and
    compared before the uint8 cast (max abs error on [0, 1] ≤ 1e-4); the router's probabilities and the
    trunk's features (relative to their largest magnitude) are held to the same bound. uint8 path: the
    exported graphs in `export_dir` must match round(PyTorch·255) within one level (ties may round apart).
    """
    import torch

    from edgerestore.models.uffn import UFFN

    rng = np.random.default_rng(seed)
    export_dir = Path(export_dir)
    model = model.eval()
    results: list[ParityResult] = []
    with tempfile.TemporaryDirectory(prefix="edgerestore-parity-") as tmp:
        float_paths: dict[str, Path] = {}
        for name, module, inputs, in_names, out_names, dims, stride in graph_specs(
            model, loops, float_output=True
        ):
            if name in ("router", "trunk"):
                continue
            graph = export_module(module, inputs, in_names, out_names, dims, opset, exporter, stride)
            float_paths[name] = save_onnx(graph, Path(tmp) / f"{name}.onnx")
        sessions_f = {n: ort_session(p) for n, p in float_paths.items()}
        sessions_u8 = {p.stem: ort_session(p) for p in sorted(export_dir.glob("*.onnx"))}

        def frames(h: int, w: int) -> np.ndarray:  # noise: every value, every edge case of the range
            return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

        def to_tensor(frame: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(frame[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255.0

        with torch.no_grad():
            if isinstance(model, UFFN):
                s = model.thumbnail_size
                thumb = frames(s, s)
                probs = sessions_u8["router"].run(None, {THUMBNAIL: thumb[None]})[0]
                ref = torch.softmax(model.router(to_tensor(thumb)), dim=1).numpy()
                err = float(np.abs(probs - ref).max())
                results.append(ParityResult("router", (s, s), err, None, err <= PARITY_TOLERANCE))
                for h, w in sizes:
                    frame = pad_to(frames(h, w), model.stride)
                    x = to_tensor(frame)
                    feats_ref = model.trunk(x)
                    feats = sessions_u8["trunk"].run(None, {FRAME: frame[None]})[0]
                    scale = max(1.0, float(feats_ref.abs().max()))
                    err = float(np.abs(feats - feats_ref.numpy()).max()) / scale
                    results.append(ParityResult("trunk", (h, w), err, None, err <= PARITY_TOLERANCE))
                    for condition in model.conditions[1:]:
                        name = f"branch_{condition}"
                        ref_img = _nhwc_bgr_float(model.branch(condition)(x, feats_ref))
                        feeds = {FRAME: frame[None], FEATURES: feats_ref.numpy()}
                        results.append(
                            _image_parity(name, (h, w), ref_img, sessions_f[name], sessions_u8[name], feeds)
                        )
            else:
                for t in loops or [model.loops]:
                    name = f"cmudrn_t{t}"
                    net = model.with_loops(t).eval()
                    for h, w in sizes:
                        frame = frames(h, w)
                        ref_img = _nhwc_bgr_float(net(to_tensor(frame)).restored)
                        results.append(
                            _image_parity(
                                name,
                                (h, w),
                                ref_img,
                                sessions_f[name],
                                sessions_u8[name],
                                {FRAME: frame[None]},
                            )
                        )
    return results


def _image_parity(name, size, ref_img, session_f, session_u8, feeds) -> ParityResult:
    out_f = session_f.run(None, feeds)[0]
    out_u8 = session_u8.run(None, feeds)[0]
    err = float(np.abs(out_f - ref_img).max())
    ref_u8 = np.round(ref_img * 255.0)
    diff = int(np.abs(out_u8.astype(np.int32) - ref_u8.astype(np.int32)).max())
    return ParityResult(name, size, err, diff, err <= PARITY_TOLERANCE and diff <= 1)


def result_table(result: ExportResult) -> str:
    """Markdown table: one row per graph with its I/O, size and worst parity error."""
    worst: dict[str, float] = {}
    for p in result.parity:
        worst[p.graph] = max(worst.get(p.graph, 0.0), p.max_abs_error)

    def io(specs: list[dict]) -> str:
        return ", ".join(f"{s['name']} {s['dtype']}[{','.join(str(d) for d in s['shape'])}]" for s in specs)

    lines = ["| graph | inputs | outputs | nodes | KB | parity max abs err |", "|---|---|---|---|---|---|"]
    for r in result.graphs:
        parity = f"{worst[r.name]:.1e}" if r.name in worst else "—"
        lines.append(
            f"| {r.file} | {io(r.inputs)} | {io(r.outputs)} | {r.nodes} | {r.bytes / 1024:.0f} | {parity} |"
        )
    return "\n".join(lines)


def parity_json(result: ExportResult) -> list[dict]:
    return [asdict(p) for p in result.parity]
