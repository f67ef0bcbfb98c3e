"""Where the package's own data lives: the shipped ONNX graphs and the default calibration frames.

Everything under `edgerestore/shipped/` is package data (`[tool.setuptools.package-data]`), so a runtime-only
install (no PyTorch) can build bundles:

    shipped/index.json                 what is there: per profile the checkpoint's sha256 and every file's
                                       sha256 and size; the calibration frames' sha256
    shipped/<profile>/model.json       the float32 graphs of weights/<profile>.pt, as `edgerestore export`
    shipped/<profile>/*.onnx           writes them
    shipped/<profile>/{fp16,int8_trt,int8_ort}/   the precision variants and their precision.json
                                       (accuracy records), made from the default calibration frames
    shipped/calibration/               the default calibration frames (+ gt/)

`make shipped-graphs` (= `edgerestore export --ship`, needs torch) regenerates the graphs from
`weights/*.pt`; a test fails when a checkpoint changed after its graphs were shipped.

Imports only the standard library (and `edgerestore.files`, `edgerestore.exportdir`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgerestore.exportdir import MODEL_JSON
from edgerestore.files import sha256_file

SHIPPED_ROOT = Path(__file__).resolve().parent / "shipped"
INDEX_NAME = "index.json"
INDEX_FORMAT = "edgerestore-shipped/1"


def calibration_dir() -> Path:
    """The default calibration frames (`<condition>_<n>_<source>.jpg`, ground truth in `gt/`)."""
    return SHIPPED_ROOT / "calibration"


def read_index(root: Path = SHIPPED_ROOT) -> dict[str, Any]:
    """`shipped/index.json`, or an empty index when the package carries no graphs."""
    try:
        data = json.loads((root / INDEX_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return {"format": INDEX_FORMAT, "profiles": {}, "calibration": {}}
    return data if isinstance(data, dict) else {"format": INDEX_FORMAT, "profiles": {}, "calibration": {}}


def shipped_profiles(root: Path = SHIPPED_ROOT) -> list[str]:
    """Profiles whose graphs the package carries."""
    return sorted(p for p in read_index(root).get("profiles", {}) if (root / p / MODEL_JSON).is_file())


def shipped_export(profile: str, root: Path = SHIPPED_ROOT) -> Path | None:
    """The shipped export folder of `profile` (laid out like `export/<profile>/`), or None."""
    return root / profile if profile in shipped_profiles(root) else None


def shipped_checkpoint_sha256(profile: str, root: Path = SHIPPED_ROOT) -> str | None:
    """The sha256 of the checkpoint the shipped graphs of `profile` were exported from."""
    entry = read_index(root).get("profiles", {}).get(profile)
    return None if entry is None else entry.get("checkpoint_sha256")


def damaged_files(profile: str, root: Path = SHIPPED_ROOT) -> list[str]:
    """Files of the shipped `profile` that are missing or whose sha256 differs from the index (empty: intact)."""
    entry = read_index(root).get("profiles", {}).get(profile) or {}
    bad = []
    for rel, info in (entry.get("files") or {}).items():
        path = root / profile / rel
        if not path.is_file() or sha256_file(path) != info.get("sha256"):
            bad.append(f"{profile}/{rel}")
    return bad
