"""checkpoint → export → precision → bundle, redoing only the stages whose inputs changed.

Each stage records the hash of what it was made from: `model.json` holds the checkpoint's sha256, each
precision folder's `precision.json` holds the sha256 of every float32 graph it converted, and a bundle's
manifest holds the sha256 of its source graphs. A stage is stale when its record is missing or names
different inputs; `force` redoes every stage. This is what `edgerestore build`, `bench` and `demo` call.

Imports torch only when a stage that needs it (export) actually runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgerestore.errors import UserError

WEIGHTS_DIR = Path("weights")
EXPORT_ROOT = Path("export")


@dataclass
class PipelineResult:
    bundle: Path
    ran: list[str] = field(default_factory=list)  # stages that ran (the others were up to date)
    summary: str = ""


def default_checkpoint(profile: str) -> Path:
    return WEIGHTS_DIR / f"{profile}.pt"


def _sha256(path: Path) -> str:
    from edgerestore.graphs import file_sha256

    return file_sha256(path)


def export_is_stale(export_dir: Path, checkpoint: Path, profile: str | None = None) -> str | None:
    """Why `export_dir` must be re-exported from `checkpoint` (as `profile`, when given), or None when it
    is up to date."""
    from edgerestore.precision import load_export

    if not (export_dir / "model.json").is_file():
        return "no exported graphs"
    try:
        _, meta = load_export(export_dir)
    except UserError as exc:
        return str(exc)
    if profile is not None and meta.get("profile") != profile:
        return f"{export_dir} holds {meta.get('profile')} graphs, not {profile}"
    if meta.get("checkpoint_sha256") != _sha256(checkpoint):
        return f"{checkpoint} changed since the last export"
    return None


def precision_is_stale(export_dir: Path, variant: str) -> str | None:
    """Why `export_dir/variant` must be regenerated, or None when every graph was made from today's graphs."""
    record = export_dir / variant / "precision.json"
    if not record.is_file():
        return f"no {variant} graphs"
    try:
        payload = json.loads(record.read_text())
        meta = json.loads((export_dir / "model.json").read_text())
    except (OSError, json.JSONDecodeError):
        return f"{record} is unreadable"
    graphs = payload.get("graphs", {})
    for name, info in meta["graphs"].items():
        entry = graphs.get(name)
        if entry is None or entry.get("source_sha256") != info.get("sha256"):
            return f"{variant}/{name} was made from other float32 graphs"
        if not (export_dir / variant / info["file"]).is_file():
            return f"{variant}/{info['file']} is missing"
    return None


def export_checkpoint(checkpoint: Path, export_dir: Path, progress: bool = True, profile: str | None = None):
    """Export `checkpoint` into `export_dir`; `UserError` (nothing written) if it holds another `profile`."""
    from edgerestore.export import export_model
    from edgerestore.models import zoo

    model, meta = zoo.load_checkpoint(checkpoint)
    if profile is not None and meta["profile"] != profile:
        raise UserError(
            f"checkpoint {checkpoint} holds a {meta['profile']} model, not {profile}; "
            f"use --profile {meta['profile']} or a {profile} checkpoint"
        )
    return export_model(
        model,
        export_dir,
        meta["profile"],
        checkpoint_sha256=meta["sha256"],
        progress=progress,
        router_calibration=meta.get("router_calibration"),
    )


def make_precision(export_dir: Path, variant: str, calib: str | Path | None, progress: bool = True):
    from edgerestore.calibration import load_frames, make_int8, split_holdout
    from edgerestore.precision import make_fp16

    frames = load_frames(calib)
    calib_frames, held = split_holdout(frames, max(2, len(frames) // 4))
    if variant == "fp16":
        return make_fp16(export_dir, held, calib_frames=calib_frames, progress=progress)
    return make_int8(export_dir, variant, calib_frames, held, progress=progress)


def _check_profile_name(profile: str) -> None:
    """`UserError` "unknown profile" for a name the model zoo does not have (skipped without torch)."""
    try:
        from edgerestore.models.zoo import get_profile
    except ImportError:
        return
    get_profile(profile)


def ensure_bundle(
    profile: str,
    precision: str = "fp32",
    backend: str = "auto",
    *,
    checkpoint: Path | None = None,
    export_root: Path = EXPORT_ROOT,
    out: Path | None = None,
    calib: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    echo=print,
    checkpoint_hint: str = " or pass --checkpoint",
    **build_options,
) -> PipelineResult:
    """The bundle for (profile, precision, backend), running export / precision / build where stale.
    `checkpoint_hint` ends the no-weights message (callers without a --checkpoint option pass their own)."""
    from edgerestore.engines.build import build_bundle, resolve_backend, source_subdir
    from edgerestore.engines.bundle import PRECISIONS

    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    backend_name, trt_module = resolve_backend(backend, build_options.pop("trt_module", None))
    checkpoint = Path(checkpoint) if checkpoint else default_checkpoint(profile)
    if not checkpoint.is_file():
        _check_profile_name(profile)
        raise UserError(
            f"no weights for {profile} at {checkpoint}; train them with `edgerestore train --profile {profile} "
            f"--clean DIR --out {checkpoint}`{checkpoint_hint}"
        )
    export_dir = Path(export_root) / profile
    ran: list[str] = []
    why = "--force" if force else export_is_stale(export_dir, checkpoint, profile)
    if why:
        echo(f"export: {why}; exporting {checkpoint} → {export_dir}/")
        export_checkpoint(checkpoint, export_dir, progress, profile=profile)
        ran.append("export")
    variant = source_subdir(backend_name, precision)
    if variant is not None:
        why = "--force" if force else ("export changed" if ran else precision_is_stale(export_dir, variant))
        if why:
            echo(
                f"precision: {why}; making {export_dir}/{variant}/ (calibration: {calib or 'calibration/default'})"
            )
            make_precision(export_dir, variant, calib, progress)
            ran.append(variant)
    result = build_bundle(
        export_dir,
        out,
        backend=backend_name,
        precision=precision,
        force=force or bool(ran),
        progress=progress,
        trt_module=trt_module,
        **build_options,
    )
    if not result.skipped:
        ran.append("build")
    return PipelineResult(Path(result.bundle.path), ran, result.summary())
