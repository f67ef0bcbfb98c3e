"""The `--bundle` / `--backend` / `--threads` / `--force` options shared by `camera`, `restore` and `demo`
(and `--precision`, shared by `build` and `demo`), and opening a `Restorer` from them. Imports no torch; the runtime is imported inside `open_restorer`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgerestore.conditions import CONDITIONS, check_threshold
from edgerestore.contract import PRECISIONS
from edgerestore.errors import UserError
from edgerestore.runtime.protocol import RestorerLike

if TYPE_CHECKING:
    from edgerestore.runtime.restorer import Restorer

DEFAULT_PROFILE = "uffn-tiny"
DEFAULT_BACKEND = "onnxruntime"
#: The one default bundle of every command (`build`, `demo`, `restore`, `camera`, `eval --bundle`-less runs):
#: float32 ONNX Runtime (INT8 is not faster than float32 on AVX2 CPUs; see the README's Performance).
DEFAULT_PRECISION = "fp32"


def add_precision_argument(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """`--precision`, one of `edgerestore.contract.PRECISIONS` (default `DEFAULT_PRECISION`)."""
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION, help=help)


def default_bundle_path() -> Path:
    """`<engines root>/uffn-tiny-onnxruntime-fp32`, where `edgerestore build` and `edgerestore demo` put it
    (`edgerestore.engines.bundle.engines_root`: the same from any folder)."""
    from edgerestore.engines.bundle import default_bundle_dir as build_default
    from edgerestore.engines.bundle import engines_root

    return build_default(DEFAULT_PROFILE, DEFAULT_BACKEND, DEFAULT_PRECISION, root=engines_root())


def default_bundle_dir() -> Path:
    """The default bundle; when it does not exist yet it is built (ONNX Runtime, from the graphs shipped
    with the package: a fresh install needs no PyTorch and no `edgerestore build` first). A `UserError`
    saying how to build it when that cannot be done."""
    import sys

    from edgerestore import assets
    from edgerestore.engines.bundle import ENGINES_ENV, MANIFEST_NAME, rebuild_command

    path = default_bundle_path()
    if (path / MANIFEST_NAME).is_file():
        return path
    build = rebuild_command(DEFAULT_PROFILE, DEFAULT_BACKEND, DEFAULT_PRECISION, force=False)
    if assets.shipped_export(DEFAULT_PROFILE) is None:
        raise UserError(
            f"no --bundle given and no default bundle at {path}; build it with `{build}` (or run "
            f"`edgerestore demo`), pass --bundle DIR, or point {ENGINES_ENV} at the folder holding it"
        )
    from edgerestore.files import check_writable
    from edgerestore.pipeline import ensure_bundle

    check_writable(path, "--bundle", folder=True)
    print(f"edgerestore: no bundle yet; building {path} (once, like `{build}`)", file=sys.stderr)
    result = ensure_bundle(
        DEFAULT_PROFILE,
        DEFAULT_PRECISION,
        DEFAULT_BACKEND,
        out=path,
        progress=False,
        echo=lambda line: print(f"edgerestore: {line}", file=sys.stderr),
    )
    return result.bundle


def restorer_label(restorer: RestorerLike) -> str:
    """`<bundle path> (<profile> <backend> <precision>)`, printed by every command that restores."""
    m = restorer.bundle.manifest
    what = " ".join(str(v or "?") for v in (m.profile, m.backend, m.precision))
    return f"{restorer.bundle.path} ({what})"


def add_bundle_arguments(
    parser: argparse.ArgumentParser, *, force: bool = True, bundle_default: str | None = None
) -> None:
    """`bundle_default` describes what happens without --bundle (default: the first existing default
    bundle, as `default_bundle_dir` picks it)."""
    group = parser.add_argument_group("model")
    if bundle_default is None:
        bundle_default = f"{default_bundle_path()}"
    group.add_argument(
        "--bundle", type=Path, default=None, help=f"engine bundle folder (default: {bundle_default})"
    )
    group.add_argument(
        "--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt"), help="default: the bundle's"
    )
    group.add_argument(
        "--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: its own choice)"
    )
    group.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="P",
        help="do no harm: frames the router is less sure of pass through untouched (default: the bundle's "
        "calibrated threshold; 0 acts on every verdict)",
    )
    if force:
        group.add_argument(
            "--force",
            choices=CONDITIONS,
            default=None,
            metavar="CONDITION",
            help=f"skip the router's choice and use this condition ({', '.join(CONDITIONS)})",
        )


def open_restorer(args: argparse.Namespace, *, video: bool, **options: Any) -> Restorer:
    """`Restorer.open` with the parsed options (`--bundle` resolved to the default when absent)."""
    bundle = Path(args.bundle) if args.bundle is not None else default_bundle_dir()
    if not bundle.is_dir():
        raise UserError(f"bundle {bundle} does not exist; build one with `edgerestore build` or fix --bundle")
    from edgerestore.runtime.restorer import Restorer

    force = getattr(args, "force", None)
    min_confidence = getattr(args, "min_confidence", None)
    if min_confidence is not None:
        options = {
            **options,
            "min_confidence": check_threshold(min_confidence, f"--min-confidence {min_confidence:g}"),
        }
    restorer = Restorer.open(bundle, backend=args.backend, threads=args.threads, video=video, **options)
    if force is not None and restorer.family != "uffn":
        restorer.close()
        raise UserError(
            f"--force {force}: bundle {bundle} is a blind {restorer.family.upper()} model with no router "
            "or branches to force; leave out --force"
        )
    restorer.force = force
    return restorer
