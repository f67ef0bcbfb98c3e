"""The export directory, `export/<profile>/` (DESIGN.md, *ONNX graphs*): `model.json`, the float32 graphs
it lists, and the precision variants beside them (`<variant>/` with `precision.json`).

`ExportDir` is the one reader of these records for export, precision, build and the pipeline: model.json
(read once, format checked), each graph's path and sha256, a variant's precision.json, and the two
staleness checks the pipeline asks (is the export from this checkpoint, is a variant from these graphs).
Every problem is a one-line `UserError` saying what to re-run.

Imports the standard library only (onnx inside `verify`, when asked to load the graphs); never torch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edgerestore.errors import UserError
from edgerestore.files import sha256_file, write_bytes_atomic

FORMAT = "edgerestore-onnx/1"
MODEL_JSON = "model.json"
PRECISION_JSON = "precision.json"


def write_json(path: str | Path, payload: Any) -> Path:
    """`payload` as indented JSON, written atomically."""
    return write_bytes_atomic(Path(path), (json.dumps(payload, indent=2) + "\n").encode())


def _read_object(path: Path, missing: str, fix: str) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{missing}; {fix}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({type(exc).__name__}); {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object; {fix}")
    return data


class ExportDir:
    """`export/<profile>/` (or a shipped copy of one). `meta` is model.json, read on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._meta: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"ExportDir({str(self.path)!r})"

    @property
    def model_json(self) -> Path:
        return self.path / MODEL_JSON

    @property
    def fix(self) -> str:
        """What re-makes this folder's graphs."""
        return f"run `edgerestore export --profile {self.path.name}`"

    def exists(self) -> bool:
        """Whether model.json is there (the export finished: it is written last)."""
        return self.model_json.is_file()

    @property
    def meta(self) -> dict[str, Any]:
        """model.json, with one-line errors for a missing, unreadable or foreign file or one listing no
        graphs."""
        if self._meta is None:
            path = self.model_json
            meta = _read_object(
                path, f"{path} not found", f"{self.fix} (it writes the graphs and {MODEL_JSON})"
            )
            if meta.get("format") != FORMAT:
                raise UserError(
                    f"{path} is not an edgerestore export (format is not {FORMAT!r}); {self.fix} again"
                )
            if not meta.get("graphs"):
                raise UserError(f"{path} lists no graphs; {self.fix} again")
            self._meta = meta
        return self._meta

    def write_meta(self, meta: dict[str, Any]) -> Path:
        """Write model.json (last, atomically: an export without it is unfinished)."""
        self._meta = None
        return write_json(self.model_json, meta)

    @property
    def graphs(self) -> dict[str, dict[str, Any]]:
        """model.json's `graphs`: {name: {file, sha256, inputs, outputs}}."""
        return self.meta["graphs"]

    def graph_path(self, name: str) -> Path:
        try:
            return self.path / self.graphs[name]["file"]
        except KeyError:
            raise UserError(
                f"{MODEL_JSON} in {self.path} has no graph {name!r}; graphs: {', '.join(self.graphs)}"
            ) from None

    def verify(self, load: bool = False) -> ExportDir:
        """Every listed graph present and with the sha256 model.json records (`load`: also loaded and
        checked by onnx, so a corrupt file is named as such); one-line `UserError` otherwise."""
        for name, info in self.graphs.items():
            path = self.graph_path(name)
            if not path.is_file():
                raise UserError(f"{path} missing (listed in {MODEL_JSON}); {self.fix}")
            if load:
                from edgerestore.graphs import load_onnx

                load_onnx(path)
            if info.get("sha256") and sha256_file(path) != info["sha256"]:
                raise UserError(f"{path} changed after export (sha256 differs from {MODEL_JSON}); {self.fix}")
        return self

    def stale(self, checkpoint: Path, profile: str | None = None) -> str | None:
        """Why this folder must be re-exported from `checkpoint` (as `profile`, when given), or None when
        its graphs are intact and were exported from that checkpoint."""
        if not self.exists():
            return "no exported graphs"
        try:
            meta = self.verify(load=True).meta
        except UserError as exc:
            return str(exc)
        if profile is not None and meta.get("profile") != profile:
            return f"{self.path} holds {meta.get('profile')} graphs, not {profile}"
        if meta.get("checkpoint_sha256") != sha256_file(checkpoint):
            return f"{checkpoint} changed since the last export"
        return None

    # ------------------------------------------------------------------------------------------------------
    # precision variants

    def variant_dir(self, variant: str) -> Path:
        return self.path / variant

    def precision_record(self, variant: str, fix: str) -> dict[str, Any]:
        """`<variant>/precision.json`; `fix` ends the one-line error when it is missing or unreadable."""
        path = self.variant_dir(variant) / PRECISION_JSON
        return _read_object(path, f"no {variant} graphs: {path} not found", fix)

    def variant_stale(self, variant: str) -> str | None:
        """Why `<variant>/` must be made again, or None when every graph in it was made from today's
        float32 graphs."""
        record = self.variant_dir(variant) / PRECISION_JSON
        if not record.is_file():
            return f"no {variant} graphs"
        try:
            made = self.precision_record(variant, "").get("graphs", {})
            graphs = self.graphs
        except UserError:
            return f"{record} is unreadable"
        for name, info in graphs.items():
            entry = made.get(name)
            if entry is None or entry.get("source_sha256") != info.get("sha256"):
                return f"{variant}/{name} was made from other float32 graphs"
            if not (self.variant_dir(variant) / info["file"]).is_file():
                return f"{variant}/{info['file']} is missing"
        return None

    def copy_graphs(self, dst: str | Path) -> ExportDir:
        """The float32 graphs and model.json into `dst` (replacing what is there), model.json last."""
        dst = Path(dst)
        dst.mkdir(parents=True, exist_ok=True)
        for info in self.graphs.values():
            shutil.copy2(self.path / info["file"], dst / info["file"])
        shutil.copy2(self.model_json, dst / MODEL_JSON)
        return ExportDir(dst)
