"""`edgerestore train`: train a zoo profile on synthetic weather (from clean photographs) and paired folders.

Runs under `torchrun --nproc_per_node N -m edgerestore.cli train ...` for multi-GPU / multi-node (DDP).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True, help="zoo profile, e.g. uffn-tiny, uffn-small, cmudrn-t3")
    parser.add_argument(
        "--clean",
        type=Path,
        action="append",
        help="folder of clean photographs or road frames to synthesise weather on (repeatable)",
    )
    parser.add_argument(
        "--paired",
        type=Path,
        action="append",
        default=[],
        help="paired folder (repeatable); with --branch-only haze: real-depth haze pairs (RESIDE layout)",
    )
    parser.add_argument(
        "--real",
        action="append",
        default=[],
        metavar="CONDITION=DIR",
        help="real weather photographs of one condition for the router, e.g. haze=fog/ (repeatable)",
    )
    parser.add_argument(
        "--rain-streaks",
        type=Path,
        metavar="DIR",
        help="photographed rain streaks (e.g. the Garg–Nayar database): most synthetic rain is rendered from them",
    )
    parser.add_argument(
        "--hold-out",
        action="append",
        default=[],
        metavar="GLOB",
        help="files whose path matches this glob are validation only, in every source, e.g. '*/seq0004/*'",
    )
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        help="training checkpoint (resumed when it exists); default runs/<profile>/last.pt",
    )
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument(
        "--stop-at", type=int, help="stop at this step (checkpointed) without changing the schedule"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument(
        "--lr", type=float, default=1e-4, help="AdamW learning rate (the paper: 1e-4), cosine decay"
    )
    parser.add_argument("--weight-decay", type=float, default=2e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--val-samples", type=int, default=40)
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1, help="data loader worker processes")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile config field, e.g. --set width=8 (for tests and experiments)",
    )
    parser.add_argument(
        "--router-only",
        action="store_true",
        help="train only the path router of the UFFN checkpoint --out (the rest frozen), on whole-frame thumbnails",
    )
    parser.add_argument(
        "--router-from",
        type=Path,
        help="with --router-only: take the trained router of this UFFN checkpoint (same router config) instead",
    )
    parser.add_argument(
        "--branch-only",
        metavar="CONDITION",
        help="fine-tune only this condition's branch of the UFFN checkpoint --out (the rest frozen), e.g. haze",
    )
    parser.add_argument(
        "--branch-from",
        type=Path,
        help="with --branch-only: take that branch of this UFFN checkpoint (fine-tuned on a copy of --out) instead",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        metavar="CHECKPOINT",
        help="start a new run (no --out yet) from the weights of this checkpoint, same profile and --set: a "
        "fresh optimizer and schedule from step 0, e.g. to fine-tune on other data (a run that exists resumes)",
    )
    parser.add_argument("--ship", type=Path, help="when done, write the small shipped weights file here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _parse_overrides(items: list[str]) -> dict:
    import ast

    from edgerestore.errors import UserError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _rank() -> tuple[int, int]:
    """(rank, world size) under torchrun (from its environment), (0, 1) otherwise."""
    import os

    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def run(args: argparse.Namespace) -> int:
    import signal
    import sys
    from contextlib import nullcontext

    from edgerestore.data.real_sets import parse_real
    from edgerestore.errors import UserError
    from edgerestore.files import check_writable, exclusive_lock
    from edgerestore.models.zoo import get_profile
    from edgerestore.train.branch_stage import train_branch
    from edgerestore.train.router_stage import train_router
    from edgerestore.train.trainer import TrainConfig, TrainingInterrupted, ship_weights, train

    rank, world = _rank()
    if args.branch_only is not None and not args.branch_only.strip():
        raise UserError("--branch-only needs a condition name, e.g. --branch-only haze")
    if args.router_from is not None and not args.router_only:
        raise UserError(
            "--router-from takes the router of another checkpoint in a --router-only run; add --router-only"
        )
    if args.branch_from is not None and not args.branch_only:
        raise UserError(
            "--branch-from takes a branch of another checkpoint in a --branch-only run; add --branch-only NAME"
        )
    if args.init_from is not None and (args.router_only or args.branch_only):
        stage = "--router-only" if args.router_only else "--branch-only"
        raise UserError(
            f"--init-from starts a whole-model run; {stage} already fine-tunes the checkpoint --out "
            "(copy the checkpoint there first)"
        )
    if (args.router_only or args.branch_only) and world > 1:
        stage = "--router-only" if args.router_only else "--branch-only"
        raise UserError(f"{stage} trains one part on one process; run it without torchrun")
    profile = get_profile(args.profile)
    if (args.router_only or args.branch_only) and profile.family != "uffn":
        stage = "--router-only" if args.router_only else "--branch-only"
        raise UserError(
            f"{stage} is for UFFN profiles; {args.profile} is {profile.family} (no router or branches)"
        )
    cfg = TrainConfig(
        profile=args.profile,
        out=args.out or Path("runs") / args.profile / "last.pt",
        clean_dir=(args.clean[0] if len(args.clean) == 1 else list(args.clean)) if args.clean else None,
        paired=list(args.paired),
        real=parse_real(args.real),
        hold_out=list(args.hold_out),
        rain_streaks=args.rain_streaks,
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        seed=args.seed,
        val_every=args.val_every,
        val_samples=args.val_samples,
        checkpoint_every=args.checkpoint_every,
        stop_at=args.stop_at,
        router_from=args.router_from,
        branch_from=args.branch_from,
        init_from=args.init_from,
        workers=args.workers,
        threads=args.threads,
        overrides=_parse_overrides(args.overrides),
    )
    if args.router_only and args.branch_only:
        raise UserError("--router-only and --branch-only are separate stages: give one")
    check_writable(cfg.out, "--out")  # the checkpoint and its log, before any step is spent
    if args.ship:
        check_writable(args.ship, "--ship")
    try:
        # one training per --out: a second one on the same file is refused (rank 0 holds it under torchrun)
        with exclusive_lock(cfg.out, "--out", "another training") if rank == 0 else nullcontext():
            if args.branch_only:
                metrics = train_branch(cfg, args.branch_only, progress=not args.quiet)
            else:
                metrics = (train_router if args.router_only else train)(cfg, progress=not args.quiet)
    except TrainingInterrupted as stopped:
        if rank == 0:
            print(f"edgerestore train: {stopped}", file=sys.stderr)
        return 128 + (stopped.signum or signal.SIGTERM)
    if rank != 0:
        return 0
    print(f"checkpoint: {cfg.out}")
    if metrics:
        shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
        print("validation: " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))
    if args.ship:
        print(f"shipped weights: {ship_weights(cfg.out, args.ship)}")
    return 0
