"""The `--bundle` / `--backend` / `--threads` / `--force` options shared by `camera`, `restore` and `demo`,
and opening a `Restorer` from them. Imports no torch; the runtime is imported inside `open_restorer`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgerestore.conditions import CONDITIONS
from edgerestore.errors import UserError

DEFAULT_PROFILE = "uffn-tiny"
DEFAULT_BACKEND = "onnxruntime"
# Tried in order when --bundle is not given: engines/<profile>-<backend>-<precision>/ (the build's layout).
DEFAULT_PRECISIONS = ("int8", "fp32", "fp16")


def bundle_candidates(root: Path | None = None) -> list[Path]:
    """Where the default bundle may be, best first: `engines/uffn-tiny-onnxruntime-{int8,fp32,fp16}`
    (the layout of `edgerestore.engines.bundle.default_bundle_dir`), under `root` (default: the cwd)."""
    from edgerestore.engines.bundle import DEFAULT_ROOT
    from edgerestore.engines.bundle import default_bundle_dir as build_default

    base = DEFAULT_ROOT if root is None else Path(root) / DEFAULT_ROOT
    return [build_default(DEFAULT_PROFILE, DEFAULT_BACKEND, p, root=base) for p in DEFAULT_PRECISIONS]


def default_bundle_dir(root: Path | None = None) -> Path:
    """The first existing default bundle, or a `UserError` saying how to build one."""
    from edgerestore.engines.bundle import MANIFEST_NAME, rebuild_command

    candidates = bundle_candidates(root)
    for path in candidates:
        if (path / MANIFEST_NAME).is_file():
            return path
    build = rebuild_command(DEFAULT_PROFILE, DEFAULT_BACKEND, DEFAULT_PRECISIONS[0], force=False)
    raise UserError(
        f"no --bundle given and no bundle at {candidates[0]} or {candidates[1]}; "
        f"build one with `{build}` (or run `edgerestore demo`), or pass --bundle DIR"
    )


def add_bundle_arguments(
    parser: argparse.ArgumentParser, *, force: bool = True, bundle_default: str | None = None
) -> None:
    """`bundle_default` describes what happens without --bundle (default: the first existing default
    bundle, as `default_bundle_dir` picks it)."""
    group = parser.add_argument_group("model")
    if bundle_default is None:
        bundle_default = f"engines/{DEFAULT_PROFILE}-{DEFAULT_BACKEND}-int8, else -fp32, else -fp16"
    group.add_argument(
        "--bundle", type=Path, default=None, help=f"engine bundle folder (default: {bundle_default})"
    )
    group.add_argument(
        "--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt"), help="default: the bundle's"
    )
    group.add_argument(
        "--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: its own choice)"
    )
    if force:
        group.add_argument(
            "--force",
            choices=CONDITIONS,
            default=None,
            metavar="CONDITION",
            help=f"skip the router's choice and use this condition ({', '.join(CONDITIONS)})",
        )


def open_restorer(args: argparse.Namespace, *, video: bool, **options: Any) -> Any:
    """`Restorer.open` with the parsed options (`--bundle` resolved to the default when absent)."""
    bundle = Path(args.bundle) if args.bundle is not None else default_bundle_dir()
    if not bundle.is_dir():
        raise UserError(f"bundle {bundle} does not exist; build one with `edgerestore build` or fix --bundle")
    from edgerestore.runtime.restorer import Restorer

    force = getattr(args, "force", None)
    restorer = Restorer.open(bundle, backend=args.backend, threads=args.threads, video=video, **options)
    if force is not None and restorer.family != "uffn":
        restorer.close()
        raise UserError(
            f"--force {force}: bundle {bundle} is a blind {restorer.family.upper()} model with no router "
            "or branches to force; leave out --force"
        )
    restorer.force = force
    return restorer
