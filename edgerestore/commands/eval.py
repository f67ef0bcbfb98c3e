"""`edgerestore eval`: PSNR/SSIM per set and condition, router accuracy, side-by-side images.

Scores a PyTorch checkpoint (`--checkpoint`, needs torch), an engine bundle through the runtime (`--bundle`,
no torch) or a reference (`--baseline identity|dcp`). torch is imported only for `--checkpoint`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgerestore.conditions import CONDITIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", type=Path, help="PyTorch checkpoint, e.g. weights/uffn-small.pt")
    what.add_argument(
        "--bundle", type=Path, help="engine bundle directory, e.g. engines/uffn-small-onnxruntime-fp32"
    )
    what.add_argument(
        "--baseline",
        choices=("identity", "dcp"),
        help="reference restorer: do nothing, or Dark Channel Prior",
    )
    parser.add_argument(
        "--data", action="append", default=[], metavar="[CONDITION=]DIR",
        help="paired set in any supported layout, or a folder of such sets (repeatable); prefix CONDITION= "
        "when the folder name does not say it, e.g. haze=/data/mysets",
    )  # fmt: skip
    parser.add_argument(
        "--real", action="append", default=[], type=Path, metavar="DIR",
        help="unpaired real images, one subfolder per condition (router accuracy only; repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("runs/eval"),
        help="report and samples folder (default runs/eval)",
    )
    parser.add_argument(
        "--samples", type=int, default=3, help="side-by-side images saved per set (default 3)"
    )
    parser.add_argument("--max-images", type=int, help="evaluate at most this many images per set")
    parser.add_argument("--crop-border", type=int, default=0, help="pixels ignored at each edge when scoring")
    parser.add_argument("--no-baselines", action="store_true", help="skip the DCP baseline on haze sets")
    parser.add_argument("--device", default="cpu", help="torch device for --checkpoint (default cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _parse_data(value: str) -> tuple[str | None, Path]:
    prefix, sep, rest = value.partition("=")
    if sep and prefix in CONDITIONS:
        return prefix, Path(rest)
    return None, Path(value)


def run(args: argparse.Namespace) -> int:
    from edgerestore import evaluation, restorers
    from edgerestore.data.pairs import find_sets
    from edgerestore.errors import UserError
    from edgerestore.files import check_writable

    if not args.data and not args.real:
        raise UserError("nothing to evaluate: pass --data DIR (paired sets) and/or --real DIR (real images)")
    if args.crop_border < 0:
        raise UserError(f"--crop-border {args.crop_border} must be ≥ 0")
    if args.samples < 0:
        raise UserError(f"--samples {args.samples} must be ≥ 0 (0: no side-by-side images)")
    if args.threads < 0:
        raise UserError(f"--threads {args.threads} must be ≥ 0 (0: torch's default)")
    if args.max_images is not None and args.max_images < 1:
        raise UserError(f"--max-images {args.max_images} must be ≥ 1 (leave it out to evaluate every image)")
    check_writable(args.out, "--out", folder=True)
    sets = []
    for value in args.data:
        condition, path = _parse_data(value)
        sets.extend(find_sets(path, condition=condition))
    if args.checkpoint is not None:
        restore, name = restorers.checkpoint_restorer(
            args.checkpoint, device=args.device, threads=args.threads or None
        )
    elif args.bundle is not None:
        restore, name = restorers.bundle_restorer(args.bundle)
    elif args.baseline == "dcp":
        restore, name = restorers.dcp_restorer, "Dark Channel Prior (He et al. 2009, guided filter)"
    else:
        restore, name = restorers.identity_restorer, "identity (degraded input, do nothing)"
    report = evaluation.evaluate(
        restore,
        sets,
        real=args.real,
        out_dir=args.out,
        samples_per_set=args.samples,
        baselines=not args.no_baselines,
        crop_border=args.crop_border,
        max_images=args.max_images,
        description=name,
        progress=not args.quiet,
    )
    md, js = evaluation.write_report(report, args.out)
    print(report.to_markdown())
    print(f"wrote {md}, {js} and samples in {args.out / 'samples'}")
    return 0
