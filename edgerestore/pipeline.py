"""checkpoint → export → precision → bundle, redoing only the stages whose inputs changed.

Each stage records the hash of what it was made from: `model.json` holds the checkpoint's sha256, each
precision folder's `precision.json` holds the sha256 of every float32 graph it converted, and a bundle's
manifest holds the sha256 of its source graphs. A stage is stale when its record is missing or names
different inputs; `force` redoes every stage. This is what `edgerestore build`, `bench` and `demo` call.

The package carries the exported graphs of the shipped checkpoints (`edgerestore.assets`): when the
checkpoint is absent (a runtime-only install) or is the one those graphs were exported from, the build
starts from them and needs no PyTorch. `ship_graphs` (`edgerestore export --ship`) writes them.

Imports torch only when a stage that needs it (export) actually runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerestore import assets
from edgerestore.contract import VARIANTS, variant_for
from edgerestore.errors import UserError
from edgerestore.exportdir import MODEL_JSON, PRECISION_JSON, ExportDir, write_json
from edgerestore.files import sha256_file
from edgerestore.progress import Progress

WEIGHTS_DIR = Path("weights")
EXPORT_ROOT = Path("export")


@dataclass
class PipelineResult:
    bundle: Path
    ran: list[str] = field(default_factory=list)  # stages that ran (the others were up to date)
    summary: str = ""


def default_checkpoint(profile: str) -> Path:
    return WEIGHTS_DIR / f"{profile}.pt"


def load_model(
    profile: str, checkpoint: str | Path | None = None, seed: int = 0
) -> tuple[Any, dict[str, Any], str]:
    """(PyTorch model in eval mode, the checkpoint's fields ({} for untrained weights), where its weights came
    from). `checkpoint` defaults to `weights/<profile>.pt`; while that file does not exist the profile is built
    with untrained weights (seed `seed`): for timing, whose results do not depend on the weights' values."""
    import torch

    from edgerestore.models import zoo

    path = Path(checkpoint) if checkpoint else default_checkpoint(profile)
    if path.is_file():
        model, meta = zoo.load_checkpoint(path)
        if meta["profile"] != profile and checkpoint is None:
            raise UserError(f"{path} holds profile {meta['profile']}, not {profile}")
        return model, meta, str(path)
    if checkpoint:
        raise UserError(f"checkpoint {path} not found")
    torch.manual_seed(seed)
    return zoo.build(profile).eval(), {}, f"untrained {profile} (seed {seed}; no {path} yet)"


def export_checkpoint(
    checkpoint: Path, export_dir: Path, progress: Progress | bool = True, profile: str | None = None
):
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


def make_precision(
    export_dir: Path, variant: str, calib: str | Path | None, progress: Progress | bool = True
):
    from edgerestore.precision import guard_split, load_frames, make_fp16, make_int8

    calib_frames, held = guard_split(load_frames(calib, option="--calib"))
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


def _torch_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is None


def _source_graphs(
    profile: str, checkpoint: Path, explicit: bool, export_dir: Path, force: bool
) -> tuple[Path | None, str | None]:
    """(folder of graphs to build from, why it must be exported first). The user's export folder when it is
    up to date with the checkpoint; else the shipped graphs when the checkpoint is absent (and not named
    with --checkpoint) or is the one they were exported from; else (None, why) — export it."""
    shipped = assets.shipped_export(profile)
    if not checkpoint.is_file():
        if shipped is not None and not explicit:
            return shipped, None
        _check_profile_name(profile)
        return None, None  # the caller reports the missing weights
    why = "--force" if force else ExportDir(export_dir).stale(checkpoint, profile)
    if why is None:
        return export_dir, None
    if (
        shipped is not None
        and not force
        and assets.shipped_checkpoint_sha256(profile) == sha256_file(checkpoint)
    ):
        return shipped, None
    return None, why


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
    progress: Progress | bool = True,
    echo=print,
    checkpoint_hint: str = " or pass --checkpoint",
    engines_root: Path | None = None,
    untrained: bool = False,
    **build_options,
) -> PipelineResult:
    """The bundle for (profile, precision, backend), running export / precision / build where stale.
    Starts from the package's shipped graphs where they fit (module docstring), so a runtime-only install
    builds without torch. `checkpoint_hint` ends the no-weights message (callers without a --checkpoint
    option pass their own). `out` defaults to `<engines_root>/<profile>-<backend>-<precision>/` (without
    `engines_root`: where `edgerestore build` writes). `untrained` (the bench's timing): a profile with no
    weights and no shipped graphs is exported once from untrained weights (seed 0, `load_model`), with a
    note, instead of being refused."""
    from edgerestore.engines.build import build_bundle, resolve_backend
    from edgerestore.engines.bundle import default_bundle_dir

    backend_name, trt_module = resolve_backend(backend, build_options.pop("trt_module", None))
    variant = variant_for(backend_name, precision)  # checks `precision`, before any work
    explicit = checkpoint is not None
    checkpoint = Path(checkpoint) if checkpoint else default_checkpoint(profile)
    export_dir = Path(export_root) / profile
    if out is None and engines_root is not None:
        out = default_bundle_dir(profile, backend_name, precision, engines_root)
    ran: list[str] = []
    source, why = _source_graphs(profile, checkpoint, explicit, export_dir, force)
    if source is None and why is None and untrained and not explicit:
        if not ExportDir(export_dir).exists():
            _export_untrained(profile, checkpoint, export_dir, progress, echo)
            ran.append("export")
        source = export_dir
    if source is None and why is None:
        shipped = ", ".join(assets.shipped_profiles()) or "none"
        raise UserError(
            f"no weights for {profile} at {checkpoint} (graphs shipped with this package: {shipped}); train "
            f"them with `edgerestore train --profile {profile} --clean DIR --out {checkpoint}`{checkpoint_hint}"
        )
    if source is None:
        if _torch_missing():
            what = (
                f"--force re-exports {checkpoint}"
                if why == "--force"
                else f"{checkpoint} is not the checkpoint whose graphs this package ships ({why}); exporting it"
            )
            raise UserError(f"{what}, which needs PyTorch: pip install torch==2.13.0 'edgerestore[train]'")
        echo(f"export: {why}; exporting {checkpoint} → {export_dir}/")
        export_checkpoint(checkpoint, export_dir, progress, profile=profile)
        ran.append("export")
        source = export_dir
    elif source != export_dir:
        echo(f"graphs: the {profile} graphs shipped with edgerestore ({source})")
    if variant is not None:
        why = "--force" if force else ("export changed" if ran else ExportDir(source).variant_stale(variant))
        if why:
            if source != export_dir:  # shipped graphs are read-only: convert a copy
                ExportDir(source).copy_graphs(export_dir)
                source = export_dir
            echo(
                f"precision: {why}; making {export_dir}/{variant}/ "
                f"(calibration: {calib or assets.calibration_dir()})"
            )
            make_precision(export_dir, variant, calib, progress)
            ran.append(variant)
    result = build_bundle(
        source,
        out,
        backend=backend_name,
        precision=precision,
        force=force or bool(ran),
        progress=progress,
        trt_module=trt_module,
        calib=calib,
        **build_options,
    )
    if not result.skipped:
        ran.append("build")
    return PipelineResult(Path(result.bundle.path), ran, result.summary())


def _export_untrained(
    profile: str, checkpoint: Path, export_dir: Path, progress: Progress | bool, echo
) -> None:
    if _torch_missing():
        raise UserError(
            f"no weights for {profile} at {checkpoint} and no graphs shipped for it; exporting untrained "
            "weights for timing needs PyTorch: pip install torch==2.13.0 'edgerestore[train]'"
        )
    from edgerestore.export import export_model

    echo(
        f"note: no {checkpoint} yet: exporting untrained {profile} (seed 0) for timing (weights do not change latency)"
    )
    model, _, _ = load_model(profile)
    export_model(model, export_dir, profile, parity_sizes=[], progress=progress)


def ship_graphs(
    weights_dir: Path = WEIGHTS_DIR,
    root: Path = assets.SHIPPED_ROOT,
    progress: Progress | bool = True,
    echo=print,
) -> dict:
    """Export every `weights_dir/*.pt`, make its fp16 / int8_trt / int8_ort variants from the default
    calibration frames, and put them in `root/<profile>/` with `root/index.json` (sha256 and size of every
    file, the checkpoint's sha256). A profile whose checkpoint and calibration frames are those of its
    intact shipped graphs is kept as it is (delete `root/<profile>/` to redo it); profiles no longer in
    `weights_dir` are removed. Needs torch."""
    import shutil
    import tempfile

    checkpoints = sorted(Path(weights_dir).glob("*.pt"))
    if not checkpoints:
        raise UserError(f"no checkpoints (*.pt) in {weights_dir}")
    calib = assets.calibration_dir()
    calibration = {
        str(p.relative_to(calib)): sha256_file(p)
        for p in sorted(calib.rglob("*"))
        if p.is_file() and p.suffix.lower() in (".jpg", ".png")
    }
    shipped = assets.read_index(root)
    index: dict = {"format": assets.INDEX_FORMAT, "profiles": {}, "calibration": calibration}
    for checkpoint in checkpoints:
        sha = sha256_file(checkpoint)
        kept = [
            (name, entry)
            for name, entry in shipped.get("profiles", {}).items()
            if entry.get("checkpoint") == checkpoint.name
            and entry.get("checkpoint_sha256") == sha
            and shipped.get("calibration") == calibration
            and (root / name / MODEL_JSON).is_file()
            and not assets.damaged_files(name, root)
        ]
        if kept:
            echo(f"{kept[0][0]}: shipped graphs are up to date with {checkpoint}")
            index["profiles"][kept[0][0]] = kept[0][1]
            continue
        with tempfile.TemporaryDirectory(prefix="edgerestore-ship-") as tmp:
            result = export_checkpoint(checkpoint, Path(tmp) / "export", progress)
            export_dir = Path(result.model_json).parent
            meta = ExportDir(export_dir).meta
            profile = meta["profile"]
            echo(f"{profile}: exported {checkpoint}; making {', '.join(VARIANTS)}")
            for variant in VARIANTS:
                make_precision(export_dir, variant, None, progress)
            files = [MODEL_JSON] + [info["file"] for info in meta["graphs"].values()]
            for variant in VARIANTS:
                files.append(f"{variant}/{PRECISION_JSON}")
                files += [
                    f"{variant}/{info['file']}"
                    for info in meta["graphs"].values()
                    if (export_dir / variant / info["file"]).is_file()  # a graph that fell back to fp32
                ]
            staged = Path(tempfile.mkdtemp(prefix=f".{profile}.", dir=root))
            try:
                for rel in files:
                    (staged / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(export_dir / rel, staged / rel)
                if (root / profile).exists():
                    shutil.rmtree(root / profile)
                staged.rename(root / profile)
            except BaseException:
                shutil.rmtree(staged, ignore_errors=True)
                raise
        index["profiles"][profile] = {
            "checkpoint": checkpoint.name,
            "checkpoint_sha256": meta["checkpoint_sha256"],
            "files": {
                rel: {
                    "sha256": sha256_file(root / profile / rel),
                    "size": (root / profile / rel).stat().st_size,
                }
                for rel in files
            },
        }
    for folder in root.iterdir():
        if folder.is_dir() and (folder / MODEL_JSON).is_file() and folder.name not in index["profiles"]:
            shutil.rmtree(folder)
    write_json(root / assets.INDEX_NAME, index)
    return index
