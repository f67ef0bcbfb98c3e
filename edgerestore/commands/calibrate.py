"""`edgerestore calibrate`: FP16 and INT8 (Q/DQ) variants of an export directory, with the accuracy guard.

Writes export/<profile>/{fp16,int8_trt,int8_ort}/ (same file names, precision.json, report.md/json).
Imports onnx/onnxruntime inside run(); never torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--export", type=Path, help="export/<profile>/ written by `edgerestore export`")
    parser.add_argument(
        "--frames",
        default=None,
        help="calibration frames: an image folder (ground truth in <folder>/gt/), a video, or synthetic[:N] "
        "(default: the shipped set, edgerestore/shipped/calibration)",
    )
    parser.add_argument(
        "--precision",
        default="fp16,int8_trt,int8_ort",
        help="comma-separated variants to write: fp16, int8_trt, int8_ort (default: all three)",
    )
    parser.add_argument(
        "--method",
        choices=("minmax", "percentile", "entropy"),
        default="minmax",
        help="INT8 activation range method (default: minmax)",
    )
    parser.add_argument("--limit", type=int, default=None, help="use at most this many frames")
    parser.add_argument("--holdout", type=int, default=4, help="frames held back for the guard (default: 4)")
    parser.add_argument(
        "--long-side", type=int, default=640, help="shrink frames to this long side (default: 640)"
    )
    parser.add_argument("--gt-loss-db", type=float, default=0.3, help="max PSNR loss vs ground truth (dB)")
    parser.add_argument(
        "--fp16-min-psnr", type=float, default=40.0, help="min FP16 PSNR vs float32 output (dB)"
    )
    parser.add_argument(
        "--int8-min-psnr",
        type=float,
        default=30.0,
        help="min INT8 PSNR vs float32 output when frames have no ground truth (dB)",
    )
    parser.add_argument("--router-agreement", type=float, default=0.95, help="min router argmax agreement")
    parser.add_argument(
        "--make-set",
        type=Path,
        default=None,
        help="instead: write a synthetic calibration set (frames + gt/) to this folder and exit",
    )
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import math
    import signal

    from edgerestore.contract import VARIANTS
    from edgerestore.errors import UserError, raise_terminated
    from edgerestore.exportdir import ExportDir
    from edgerestore.files import check_writable
    from edgerestore.precision import make_default_set

    if args.make_set is not None:
        written = make_default_set(args.make_set, count=args.limit or 20, seed=args.seed)
        size = sum(p.stat().st_size for p in written)
        print(f"wrote {len(written) // 2} frames + ground truth to {args.make_set} ({size / 1e6:.2f} MB)")
        return 0
    if args.export is None:
        raise UserError("give --export export/<profile>/ (or --make-set DIR)")
    wanted = [p.strip() for p in args.precision.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in VARIANTS]
    if unknown or not wanted:
        raise UserError(f"--precision {args.precision!r}: expected a list of {', '.join(VARIANTS)}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit} must be >= 1 (leave it out for every frame)")
    if args.holdout < 0:
        raise UserError(f"--holdout {args.holdout} must be >= 0")
    if args.long_side < 32:
        raise UserError(f"--long-side {args.long_side} must be at least 32 px")
    for option, value in (
        ("--gt-loss-db", args.gt_loss_db),
        ("--fp16-min-psnr", args.fp16_min_psnr),
        ("--int8-min-psnr", args.int8_min_psnr),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"{option} {value} must be a finite number of dB >= 0")
    if not 0.0 <= args.router_agreement <= 1.0:
        raise UserError(f"--router-agreement {args.router_agreement} must be between 0 and 1")
    ExportDir(args.export).verify(load=True)  # missing/corrupt graphs are reported before any frame is read
    check_writable(args.export, "--export", folder=True)  # the variants are written beside the graphs

    # SIGTERM unwinds like Ctrl-C (every `with` cleans up), so no temporary folder is left in the export
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return _calibrate(args, wanted)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _calibrate(args: argparse.Namespace, wanted: list[str]) -> int:
    from edgerestore.precision import Budgets, load_frames, make_fp16, make_int8, split_holdout

    budgets = Budgets(args.gt_loss_db, args.fp16_min_psnr, args.int8_min_psnr, args.router_agreement)
    frames = load_frames(args.frames, args.limit, args.long_side, args.seed)
    calib, held = split_holdout(frames, args.holdout)
    print(
        f"{len(frames)} frames: {len(calib)} for ranges, {len(held)} held back for the guard "
        f"({sum(f.target is not None for f in held)} with ground truth)"
    )
    for precision in wanted:
        if precision == "fp16":
            result = make_fp16(args.export, held, budgets, calib_frames=calib)
        else:
            result = make_int8(args.export, precision, calib, held, args.method, budgets)
        print(f"\nwrote {result.out_dir} in {result.seconds:.0f} s (report: {result.report_md})")
        print("\n".join(result.report_md.read_text().splitlines()[4:]))
    return 0
