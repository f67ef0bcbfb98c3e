"""Engine bundles: the manifest, writing a bundle atomically, and loading it with every check made.

A bundle is a directory `engines/<profile>-<backend>-<precision>/` holding `manifest.json` and one file per
graph (`<graph>.engine` for TensorRT, `<graph>.onnx` for ONNX Runtime); see docs/DESIGN.md, "Engine
bundles". `load_bundle` refuses anything it cannot vouch for (missing or unparseable manifest, another
format version, a missing, truncated or changed file, a backend that is not installed, a TensorRT engine
built by another TensorRT version or for another GPU) with a `BundleError` of one line that names the
problem and the exact command that rebuilds the bundle.

Must not import torch, tensorrt or onnxruntime at module level (the runtime imports this on edge devices;
backend modules are imported inside the functions that check them).
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgerestore.contract import PRECISIONS
from edgerestore.errors import BundleError, UserError
from edgerestore.files import sha256_file
from edgerestore.runtime.nvidia import (
    TRT_MODULES,
    DeviceInfo,
    cuda_device_info,
    import_tensorrt,
    unsupported_tensorrt,
)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
BACKENDS: tuple[str, ...] = ("onnxruntime", "tensorrt")
DEFAULT_ROOT = Path("engines")
#: Environment variable naming the folder of default bundles (see `engines_root`).
ENGINES_ENV = "EDGERESTORE_ENGINES"


def engines_root() -> Path:
    """The folder where `edgerestore build` writes bundles and every command looks for the default one, the
    same whatever the current folder: `$EDGERESTORE_ENGINES` if set; else `engines/` of the source checkout
    edgerestore runs from (the folder holding its pyproject.toml); else the user's data folder
    (`$XDG_DATA_HOME/edgerestore/engines`, default `~/.local/share/edgerestore/engines`)."""
    import os

    if env := os.environ.get(ENGINES_ENV):
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "edgerestore" / "__init__.py").is_file():
        return checkout / DEFAULT_ROOT
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "edgerestore" / DEFAULT_ROOT


class BuildError(UserError):
    """A graph could not be turned into an engine (parser or builder refused it); one line naming the graph
    file and, where the backend says, the failing nodes."""


_MANIFEST_FIELDS = (
    "family",
    "profile",
    "conditions",
    "stride",
    "thumbnail_size",
    "backend",
    "precision",
    "graphs",
    "shape_profile",
    "builder",
    "device",
    "created_at",
)
_GRAPH_FIELDS = ("file", "precision", "sha256")


# ---------------------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------------------


@dataclass
class GraphEntry:
    """One graph of a bundle. `inputs`/`outputs`: tensors as `{name, dtype, shape}` with dynamic dims as
    strings (the ONNX contract's form). `accuracy`: what the precision step measured for this graph (PSNR
    vs float32 output, vs ground truth, router agreement, fallback note), copied from `precision.json`.
    `size`: file size in bytes (optional; lets the loader tell a truncated file from a changed one)."""

    file: str
    precision: str
    sha256: str
    source_onnx_sha256: str | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    accuracy: dict[str, Any] = field(default_factory=dict)
    size: int | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style read access, so code written against the JSON manifest (`graphs[name]["outputs"]`
        or `.get("outputs")`) works on the dataclass too."""
        return getattr(self, key, default) if key in self.__dataclass_fields__ else default

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["size"] is None:
            del d["size"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GraphEntry:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class Manifest:
    """`manifest.json` of a bundle (format_version 1). `shape_profile`: `{"min", "opt", "max"}` each [H, W]
    of the frame. `builder`: `{name, version}` — `tensorrt`, `tensorrt_rtx` or `onnxruntime` and its
    version. `device`: TensorRT: `gpu_name`, `compute_capability` ("8.7"; None when built without a GPU),
    `tensorrt_version`, and for TensorRT-RTX `target_compute_capabilities`; ONNX Runtime: `cpu`,
    `onnxruntime_version`. `session_options`: ONNX Runtime SessionOptions attributes (enum values by
    name), empty for TensorRT. `branch_scales`: UFFN branches that run at reduced resolution, `{condition:
    scale}` with 0 < scale <= 1 (the runtime downscales the frame for them and upsamples their correction);
    absent conditions run at full resolution. `router_calibration`: UFFN's router confidence calibration,
    `{temperature, threshold}` (temperature scaling of its probabilities, and the do-no-harm threshold
    below which a frame passes through untouched); empty: temperature 1, threshold 0."""

    family: str
    profile: str
    conditions: list[str]
    stride: int
    thumbnail_size: int | None
    backend: str
    precision: str
    graphs: dict[str, GraphEntry]
    shape_profile: dict[str, list[int]]
    builder: dict[str, Any]
    device: dict[str, Any]
    session_options: dict[str, Any] = field(default_factory=dict)
    branch_scales: dict[str, float] = field(default_factory=dict)
    router_calibration: dict[str, float] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: now_iso())
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format_version": self.format_version}
        for name in self.__dataclass_fields__:
            if name == "format_version":
                continue
            value = getattr(self, name)
            if name == "graphs":
                value = {g: e.to_dict() for g, e in value.items()}
            d[name] = value
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        """Parse a manifest mapping; raises ValueError naming the first missing or malformed field."""
        for key in _MANIFEST_FIELDS:
            if key not in d:
                raise ValueError(f"field {key!r} missing")
        if not isinstance(d["graphs"], Mapping) or not d["graphs"]:
            raise ValueError("field 'graphs' is empty or not a mapping")
        graphs = {}
        for name, entry in d["graphs"].items():
            if not isinstance(entry, Mapping):
                raise ValueError(f"graphs.{name} is not a mapping")
            for key in _GRAPH_FIELDS:
                if not entry.get(key):
                    raise ValueError(f"graphs.{name}.{key} missing")
            if Path(entry["file"]).name != entry["file"]:
                raise ValueError(f"graphs.{name}.file {entry['file']!r} is not a plain file name")
            graphs[str(name)] = GraphEntry.from_dict(entry)
        prof = d["shape_profile"]
        if not isinstance(prof, Mapping) or any(
            not (isinstance(prof.get(k), list | tuple) and len(prof[k]) == 2) for k in ("min", "opt", "max")
        ):
            raise ValueError("field 'shape_profile' must hold min, opt and max as [H, W]")
        scales = d.get("branch_scales") or {}
        if not isinstance(scales, Mapping) or any(
            c not in d["conditions"]
            or c == "clean"
            or isinstance(v, bool)  # JSON true is not a scale (bool is an int in Python)
            or not isinstance(v, int | float)
            or not 0 < v <= 1
            for c, v in scales.items()
        ):
            raise ValueError(f"field 'branch_scales' must map conditions to scales in (0, 1], got {scales!r}")
        calibration = d.get("router_calibration") or {}
        if not isinstance(calibration, Mapping) or any(
            isinstance(calibration.get(k, 0.5), bool) or not isinstance(calibration.get(k, 0.5), int | float)
            for k in ("temperature", "threshold")
        ):
            raise ValueError(f"field 'router_calibration' must hold numbers, got {calibration!r}")
        if (
            not float(calibration.get("temperature", 1.0)) > 0
            or not 0 <= float(calibration.get("threshold", 0)) < 1
        ):
            raise ValueError(
                f"field 'router_calibration' needs temperature > 0 and threshold in [0, 1), got {dict(calibration)}"
            )
        return cls(
            family=str(d["family"]),
            profile=str(d["profile"]),
            conditions=list(d["conditions"]),
            stride=int(d["stride"] or 1),
            thumbnail_size=None if d["thumbnail_size"] is None else int(d["thumbnail_size"]),
            backend=str(d["backend"]),
            precision=str(d["precision"]),
            graphs=graphs,
            shape_profile={k: [int(v) for v in prof[k]] for k in ("min", "opt", "max")},
            builder=dict(d["builder"] or {}),
            device=dict(d["device"] or {}),
            session_options=dict(d.get("session_options") or {}),
            branch_scales={str(c): float(v) for c, v in scales.items()},
            router_calibration={
                k: float(calibration[k]) for k in ("temperature", "threshold") if k in calibration
            },
            created_at=str(d["created_at"]),
            format_version=int(d.get("format_version", 0)),
        )


def now_iso() -> str:
    """UTC time, seconds resolution, ISO 8601: the manifest's `created_at`."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------------------
# Names and commands
# ---------------------------------------------------------------------------------------------------------


def bundle_dir_name(profile: str, backend: str, precision: str) -> str:
    """`<profile>-<backend>-<precision>`, e.g. `uffn-tiny-tensorrt-fp16`."""
    return f"{profile}-{backend}-{precision}"


def default_bundle_dir(profile: str, backend: str, precision: str, root: str | Path = DEFAULT_ROOT) -> Path:
    """Where `edgerestore build` puts a bundle by default: `engines/<profile>-<backend>-<precision>`."""
    return Path(root) / bundle_dir_name(profile, backend, precision)


def parse_bundle_dir_name(name: str) -> tuple[str, str, str] | None:
    """(profile, backend, precision) from a default bundle directory name, or None if it is not one."""
    m = re.fullmatch(rf"(.+)-({'|'.join(BACKENDS)})-({'|'.join(PRECISIONS)})", name)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def rebuild_command(
    profile: str | None,
    backend: str | None,
    precision: str | None,
    out: Path | None = None,
    force: bool = True,
) -> str:
    """The `edgerestore build` command line that (re)builds a bundle; `out` is added when the bundle does
    not live at its default place."""
    parts = ["edgerestore build", f"--profile {profile or '<profile>'}"]
    parts.append(f"--backend {backend or '<backend>'}")
    parts.append(f"--precision {precision or '<precision>'}")
    if out is not None and profile and backend and precision:
        if Path(out).name != bundle_dir_name(profile, backend, precision):
            parts.append(f"--out {out}")
    if force:
        parts.append("--force")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Device targets (the machine's GPU and TensorRT: `edgerestore.runtime.nvidia`)
# ---------------------------------------------------------------------------------------------------------


#: Compute capabilities TensorRT-RTX runs on, and those its default (no targets set) build covers: Turing
#: (7.5) only when asked for, Ampere 8.0/8.6, Ada 8.9, Blackwell 12.x -- not Orin (8.7) nor Hopper (9.0).
RTX_COMPUTE_CAPABILITIES: tuple[str, ...] = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
RTX_DEFAULT_TARGETS: tuple[str, ...] = ("8.0", "8.6", "8.9", "12.0", "12.1")


def normalise_compute_capability(value: str | float | int) -> str:
    """'12' -> '12.0', '8.6.0' -> '8.6', 'sm_86'/'SM86' -> '8.6', 'current' stays; UserError otherwise."""
    text = str(value).strip().lower()
    if text == "current":
        return text
    m = re.fullmatch(r"(?:sm_?)?(\d+)(?:\.(\d+))?(?:\.0+)?", text)
    if m and m.group(2) is None and text.startswith("sm") and len(m.group(1)) >= 2:
        major, minor = m.group(1)[:-1], m.group(1)[-1]  # SM86 -> 8.6, SM120 -> 12.0
    elif m:
        major, minor = m.group(1), m.group(2) or "0"
    else:
        raise UserError(f"compute capability {value!r} is not of the form M.m (e.g. 8.6, 12.0) or 'current'")
    return f"{int(major)}.{int(minor)}"


def rtx_target_supports(targets: list[str] | None, cc: str) -> bool:
    """Whether a TensorRT-RTX engine built for `targets` runs on compute capability `cc`. No targets (the
    RTX default): `RTX_DEFAULT_TARGETS`, as NVIDIA documents. Targets are compared as 'M.m'."""
    cc = normalise_compute_capability(cc)
    wanted = [normalise_compute_capability(t) for t in targets] if targets else list(RTX_DEFAULT_TARGETS)
    return cc in wanted


# ---------------------------------------------------------------------------------------------------------
# Bundle
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Bundle:
    """A loaded (verified) bundle."""

    path: Path
    manifest: Manifest

    @property
    def graph_names(self) -> list[str]:
        return list(self.manifest.graphs)

    def graph_path(self, name: str) -> Path:
        try:
            return self.path / self.manifest.graphs[name].file
        except KeyError:
            raise BundleError(
                f"{self.path}: no graph {name!r} in this bundle (it holds {', '.join(self.graph_names)})"
            ) from None

    @property
    def rebuild_command(self) -> str:
        m = self.manifest
        return rebuild_command(m.profile, m.backend, m.precision, self.path)


def write_bundle(
    out_dir: str | Path,
    manifest: Manifest,
    files: Mapping[str, str | Path | bytes],
    *,
    force: bool = False,
) -> Bundle:
    """Write a bundle atomically: the graph files (`files`: graph name -> path of the built file, or its
    bytes) and `manifest.json` go to a temporary directory beside `out_dir`, which is renamed into place
    only when complete, so a bundle is never half-written. Fills each graph's `sha256` and `size`.
    An existing `out_dir` is replaced only with `force` (UserError otherwise)."""
    out_dir = Path(out_dir)
    missing = set(manifest.graphs) ^ set(files)
    if missing:
        raise ValueError(f"graphs and files disagree on {sorted(missing)}")
    if out_dir.exists() and not force:
        raise UserError(f"{out_dir} exists; pass --force to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        for name, src in files.items():
            entry = manifest.graphs[name]
            dst = tmp / entry.file
            if isinstance(src, bytes | bytearray | memoryview):
                dst.write_bytes(bytes(src))
            else:
                shutil.copyfile(src, dst)
            entry.sha256 = sha256_file(dst)
            entry.size = dst.stat().st_size
        (tmp / MANIFEST_NAME).write_text(manifest.to_json())
        for p in tmp.iterdir():  # data on disk before the directory appears under its name
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(out_dir, manifest)


_AUTO = "auto"


def load_bundle(
    path: str | Path,
    *,
    expect_backend: str | None = None,
    device: DeviceInfo | None | str = _AUTO,
    check_hashes: bool = True,
) -> Bundle:
    """Open and verify a bundle; every failure is a one-line `BundleError` with the rebuild command.

    Checks: manifest present and parseable, format version, backend (`expect_backend` if given), every
    graph file present, its size and sha256, the backend's Python module importable (`onnxruntime`; the
    TensorRT module the engines were built with), and for TensorRT: same TensorRT version as installed and
    an engine built for this GPU's compute capability. `device`: the GPU to check against ("auto": query
    with `cuda_device_info()`; None: no GPU, the device check is skipped because no engine can run here
    anyway and the runtime says so when it creates its CUDA context)."""
    path = Path(path)
    guess = parse_bundle_dir_name(path.name)
    profile, backend, precision = guess if guess else (None, expect_backend, None)

    def fail(what: str, *, force: bool = True, backend_: str | None = None) -> BundleError:
        if backend_ is not None:  # another bundle, at its own default place
            cmd = rebuild_command(profile, backend_, precision, None, force=False)
            return BundleError(f"{path}: {what}; build one with: {cmd}")
        cmd = rebuild_command(profile, backend, precision, path, force=force)
        return BundleError(f"{path}: {what}; rebuild with: {cmd}")

    if not path.is_dir():
        raise fail("no bundle here" if not path.exists() else "not a directory", force=path.exists())
    mpath = path / MANIFEST_NAME
    if not mpath.is_file():
        raise fail(f"{MANIFEST_NAME} missing (not a bundle, or its build was interrupted)")
    try:
        raw = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(f"{MANIFEST_NAME} unreadable ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise fail(f"{MANIFEST_NAME} is not a JSON object")
    profile = raw.get("profile") or profile
    backend = raw.get("backend") or backend
    precision = raw.get("precision") or precision
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        shown = repr(version) if not isinstance(version, int) or isinstance(version, bool) else version
        kind = "" if isinstance(version, int) and not isinstance(version, bool) else " (not a number)"
        raise fail(f"manifest format_version {shown}{kind}, this edgerestore reads {FORMAT_VERSION}")
    try:
        manifest = Manifest.from_dict(raw)
    except (ValueError, TypeError) as exc:
        raise fail(f"{MANIFEST_NAME} malformed: {exc}") from None
    if manifest.backend not in BACKENDS:
        raise fail(f"unknown backend {manifest.backend!r} in {MANIFEST_NAME}")
    if expect_backend is not None and manifest.backend != expect_backend:
        raise fail(f"bundle is for {manifest.backend}, not {expect_backend}", backend_=expect_backend)

    for name, entry in manifest.graphs.items():
        f = path / entry.file
        if not f.is_file():
            raise fail(f"{entry.file} missing (graph {name})")
        if not check_hashes:
            continue
        size = f.stat().st_size
        if entry.size is not None and size != entry.size:
            raise fail(
                f"{entry.file} truncated or changed: {size} bytes, built {entry.size} (interrupted copy?)"
            )
        if sha256_file(f) != entry.sha256:
            raise fail(f"{entry.file} sha256 mismatch (file changed after build)")

    if manifest.backend == "onnxruntime":
        _require_module("onnxruntime", fail)
    else:
        _check_tensorrt(manifest, device, fail)
    return Bundle(path, manifest)


def _require_module(name: str, fail: Any) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise fail(f"Python module {name} is not installed (pip install {name})", force=False) from None


def _check_tensorrt(manifest: Manifest, device: DeviceInfo | None | str, fail: Any) -> None:
    module_name = str(manifest.builder.get("name") or "tensorrt")
    if module_name not in TRT_MODULES:
        raise fail(f"unknown TensorRT builder {module_name!r} in {MANIFEST_NAME}")
    try:  # the one TensorRT import; its version is judged below, in this bundle's terms
        trt = import_tensorrt(module_name, check_version=False)
    except UserError:
        pip = {"tensorrt_rtx": "tensorrt-rtx"}.get(module_name, module_name)
        raise fail(f"Python module {module_name} is not installed (pip install {pip})", force=False) from None
    built = manifest.device.get("tensorrt_version") or manifest.builder.get("version")
    installed = getattr(trt, "__version__", "unknown")
    problem = unsupported_tensorrt(module_name, installed)
    if problem:
        raise fail(problem, force=False)
    if built != installed:
        raise fail(f"engines built by {module_name} {built}, this machine has {installed}")
    if isinstance(device, str):
        device = cuda_device_info()
    if device is None:
        return
    if module_name == "tensorrt_rtx":
        targets = manifest.device.get("target_compute_capabilities")
        try:
            supported = rtx_target_supports(targets, device.compute_capability)
        except UserError as exc:
            raise fail(f"{MANIFEST_NAME}: {exc}") from None
        if not supported:
            what = ", ".join(targets) if targets else ", ".join(RTX_DEFAULT_TARGETS) + " (the RTX default)"
            raise fail(
                f"engines built for compute capability {what}, this GPU ({device.name}) is "
                f"{device.compute_capability}"
            )
        return
    # TensorRT engines are specific to the GPU model, not only its compute capability (AGX Orin and Orin
    # Nano are both 8.7 with different SM counts and memory): both must match.
    cc, gpu = manifest.device.get("compute_capability"), manifest.device.get("gpu_name")
    if cc != device.compute_capability or (gpu and gpu != device.name):
        raise fail(
            f"engines built for {gpu} (compute capability {cc}), this GPU is {device.name} "
            f"({device.compute_capability})"
        )
