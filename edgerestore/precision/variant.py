"""A precision variant of an export directory: `export/<profile>/<variant>/` with each graph's accepted file
(same file names), `precision.json` and a markdown + JSON report.

A branch whose accepted precision differs from the trunk's gets ONE Cast at its `features` input
(`match_feature_types`). Imports onnx; never torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from edgerestore.contract import FEATURES
from edgerestore.exportdir import PRECISION_JSON, ExportDir, write_json
from edgerestore.files import sha256_file, write_bytes_atomic, write_text_atomic
from edgerestore.graphs import load_onnx, rename_tensor, save_onnx
from edgerestore.precision.accuracy import Budgets, GraphAccuracy


@dataclass
class PrecisionResult:
    precision: str
    out_dir: Path
    accuracy: dict[str, GraphAccuracy]
    report_md: Path
    report_json: Path
    seconds: float


def reference_paths(export: ExportDir) -> dict[tuple[str, str], Path]:
    return {(name, "fp32"): export.graph_path(name) for name in export.graphs}


def match_feature_types(paths: dict[str, Path]) -> dict[str, onnx.ModelProto]:
    """Branches whose `features` input type differs from the trunk's `features` output (an fp16 trunk beside
    a branch that fell back to float32, or the reverse), each with its input retyped to the trunk's and ONE
    Cast to what it computes in. The others are not returned. The accuracy guard measured these pairs with
    the same cast applied to the feed (GraphRunner casts feeds to the input's type)."""
    if "trunk" not in paths:
        return {}
    trunk = onnx.load(str(paths["trunk"]), load_external_data=False)
    have = next((o.type.tensor_type.elem_type for o in trunk.graph.output if o.name == FEATURES), None)
    out = {}
    for name, path in paths.items():
        if not name.startswith("branch_") or have is None:
            continue
        branch = load_onnx(path)
        value = next((v for v in branch.graph.input if v.name == FEATURES), None)
        if value is None or value.type.tensor_type.elem_type == have:
            continue
        takes = value.type.tensor_type.elem_type
        inner = f"features__{onnx.TensorProto.DataType.Name(takes).lower()}"
        rename_tensor(branch.graph, FEATURES, inner, outputs=False)
        branch.graph.node.insert(
            0, onnx.helper.make_node("Cast", [FEATURES], [inner], to=takes, name="Cast_features_in")
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
