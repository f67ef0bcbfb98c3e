"""`edgerestore export`: a checkpoint (or an untrained profile) → export/<profile>/*.onnx + model.json.

Imports torch and the exporter inside run().
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="weights/<profile>.pt written by `edgerestore train`")
    source.add_argument("--profile", help="export an untrained zoo profile (for testing the tool chain)")
    source.add_argument(
        "--ship",
        action="store_true",
        help="export every weights/*.pt with its fp16/int8 variants into the package (edgerestore/shipped/)",
    )
    parser.add_argument(
        "-o", "--out", type=Path, default=Path("export"), help="root directory (default: export/)"
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset, 17–20 (default: 18)")
    parser.add_argument(
        "--loops", default=None, help="CMUDRN loop counts to export, e.g. 3,5,7 (default: the profile's T)"
    )
    parser.add_argument(
        "--exporter",
        choices=("torchscript", "dynamo"),
        default="torchscript",
        help="torch.onnx exporter (default: torchscript; see edgerestore/export.py for why)",
    )
    parser.add_argument(
        "--parity-sizes",
        default="97x131,64x96,45x38",
        help="HxW frame sizes for the PyTorch parity check, odd sizes welcome ('' skips it)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the untrained weights with --profile")


def _sizes(text: str) -> list[tuple[int, int]]:
    from edgerestore.errors import UserError

    sizes = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            h, w = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise UserError(f"--parity-sizes item {item!r} is not HxW (e.g. 97x131)") from None
        if h < 1 or w < 1:
            raise UserError(f"--parity-sizes item {item!r} needs a height and width of at least 1 px")
        sizes.append((h, w))
    return sizes


def run(args: argparse.Namespace) -> int:
    import torch

    from edgerestore.errors import UserError
    from edgerestore.export import export_model, result_table
    from edgerestore.files import check_writable
    from edgerestore.models import zoo

    if args.ship:
        return _ship()
    check_writable(args.out, "--out", folder=True)

    if args.checkpoint is not None:
        model, meta = zoo.load_checkpoint(args.checkpoint)
        profile, sha = meta["profile"], meta["sha256"]
        calibration = meta.get("router_calibration")
    else:
        calibration = None
        torch.manual_seed(args.seed)
        model, profile, sha = zoo.build(args.profile).eval(), zoo.get_profile(args.profile).name, None
    loops = None
    if args.loops:
        if model.family != "cmudrn":
            raise UserError("--loops applies to CMUDRN profiles only")
        try:
            loops = sorted({int(t) for t in args.loops.split(",") if t.strip()})
        except ValueError:
            raise UserError(f"--loops {args.loops!r} is not a comma-separated list of integers") from None
        if not all(1 <= t <= 7 for t in loops):
            raise UserError("CMUDRN loop counts must be in 1..7")
    out_dir = args.out / profile
    result = export_model(
        model,
        out_dir,
        profile,
        checkpoint_sha256=sha,
        opset=args.opset,
        loops=loops,
        exporter=args.exporter,
        parity_sizes=_sizes(args.parity_sizes),
        router_calibration=calibration,
    )
    print(
        f"wrote {len(result.graphs)} graphs and {result.model_json.name} to {out_dir} "
        f"in {result.seconds:.1f} s ({'untrained ' + profile if sha is None else args.checkpoint})"
    )
    print(result_table(result))
    if result.parity:
        sizes = sorted({p.size for p in result.parity if p.graph != "router"})
        worst = max(p.max_abs_error for p in result.parity)
        print(
            f"parity vs PyTorch at {', '.join(f'{h}x{w}' for h, w in sizes)}: max abs error {worst:.1e} (≤ 1e-4)"
        )
    return 0


def _ship() -> int:
    from edgerestore import assets
    from edgerestore.pipeline import WEIGHTS_DIR, ship_graphs

    index = ship_graphs(WEIGHTS_DIR, progress=False)
    total = 0
    for profile, entry in index["profiles"].items():
        size = sum(f["size"] for f in entry["files"].values())
        total += size
        print(
            f"{profile}: {len(entry['files'])} files, {size / 1e6:.2f} MB → {assets.SHIPPED_ROOT / profile}/"
        )
    calib = sum(p.stat().st_size for p in assets.calibration_dir().rglob("*") if p.is_file())
    print(f"package data: {total / 1e6:.2f} MB of graphs + {calib / 1e6:.2f} MB of calibration frames")
    return 0
