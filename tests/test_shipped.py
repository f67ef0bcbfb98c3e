"""The graphs the package ships (edgerestore/shipped/): up to date with weights/*.pt, intact, package data,
and enough to build and run without PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgerestore import assets
from edgerestore.contract import VARIANTS
from edgerestore.files import sha256_file

ROOT = Path(__file__).resolve().parents[1]
# Blocks `import torch` in a child process, as on a runtime-only install.
NO_TORCH = (
    "import sys; sys.modules['torch'] = None; from edgerestore.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def _cli(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, *args],
        cwd=cwd,
        env={**_env(), "EDGERESTORE_ENGINES": str(Path(cwd) / "engines")},  # not the checkout's engines/
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("checkpoint", sorted((ROOT / "weights").glob("*.pt")), ids=lambda p: p.stem)
def test_the_shipped_graphs_were_exported_from_todays_checkpoint(checkpoint):
    index = assets.read_index()
    entry = index["profiles"].get(checkpoint.stem)
    assert entry is not None, f"{checkpoint.name} has no shipped graphs: run `make shipped-graphs`"
    assert entry["checkpoint_sha256"] == sha256_file(checkpoint), (
        f"{checkpoint.name} changed after its graphs were shipped: run `make shipped-graphs`"
    )
    meta = json.loads((assets.SHIPPED_ROOT / checkpoint.stem / "model.json").read_text())
    assert meta["checkpoint_sha256"] == entry["checkpoint_sha256"]


def test_every_shipped_file_is_intact_and_package_data():
    index = assets.read_index()
    assert (
        set(assets.shipped_profiles())
        == set(index["profiles"])
        == {p.stem for p in (ROOT / "weights").glob("*.pt")}
    )
    for profile, entry in index["profiles"].items():
        assert assets.damaged_files(profile) == []
        on_disk = {
            str(p.relative_to(assets.SHIPPED_ROOT / profile))
            for p in (assets.SHIPPED_ROOT / profile).rglob("*")
            if p.is_file()
        }
        assert on_disk == set(entry["files"]), (
            "files not in index.json are not checked; re-run make shipped-graphs"
        )
        variants = {rel.split("/")[0] for rel in entry["files"] if "/" in rel}
        assert variants == set(VARIANTS)
    calib = assets.calibration_dir()
    assert index["calibration"] == {
        str(p.relative_to(calib)): sha256_file(p)
        for p in sorted(calib.rglob("*"))
        if p.is_file() and p.suffix == ".jpg"
    }
    tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "edgerestore"
    ]
    package = ROOT / "edgerestore"
    for path in assets.SHIPPED_ROOT.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            rel = str(path.relative_to(package))
            assert any(fnmatch(rel, pat.replace("**/", "*")) for pat in patterns), (
                f"{rel} is not package data"
            )


def test_package_data_stays_small():
    total = sum(p.stat().st_size for p in assets.SHIPPED_ROOT.rglob("*") if p.is_file())
    assert total < 16e6, f"edgerestore/shipped is {total / 1e6:.1f} MB"


def test_a_fresh_folder_without_torch_builds_from_the_shipped_graphs_and_restores(tmp_path):
    proc = _cli(["build", "--backend", "onnxruntime", "--precision", "int8", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "graphs shipped with edgerestore" in proc.stdout and "ran: build" in proc.stdout
    assert not (tmp_path / "export").exists()  # nothing exported, nothing converted
    manifest = json.loads((tmp_path / "engines/uffn-tiny-onnxruntime-int8/manifest.json").read_text())
    sources = {g: e["source_onnx_sha256"] for g, e in manifest["graphs"].items()}
    shipped = assets.read_index()["profiles"]["uffn-tiny"]["files"]
    assert sources["trunk"] == shipped["int8_ort/trunk.onnx"]["sha256"]
    again = _cli(["build", "--backend", "onnxruntime", "--precision", "int8", "--quiet"], tmp_path)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr

    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "frame.png"), image)
    proc = _cli(["restore", "frame.png", "--out", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out/frame.png").is_file()


def test_a_checkpoint_newer_than_its_shipped_graphs_names_the_extra_without_torch(tmp_path):
    (tmp_path / "weights").mkdir()
    data = (ROOT / "weights/uffn-tiny.pt").read_bytes()
    (tmp_path / "weights/uffn-tiny.pt").write_bytes(data + b"\0")  # another checkpoint
    proc = _cli(["build", "--backend", "onnxruntime", "--quiet"], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs PyTorch: pip install torch==2.13.0 'edgerestore[train]'" in lines[0], (
        lines
    )
    assert not (tmp_path / "engines").exists()
    (tmp_path / "weights/uffn-tiny.pt").write_bytes(data)  # the shipped one: builds, but --force re-exports
    proc = _cli(["build", "--backend", "onnxruntime", "--force", "--quiet"], tmp_path)
    assert (
        proc.returncode == 2 and "--force re-exports weights/uffn-tiny.pt, which needs PyTorch" in proc.stderr
    )


def test_a_named_checkpoint_that_does_not_exist_is_not_replaced_by_the_shipped_graphs(tmp_path):
    proc = _cli(["build", "--checkpoint", "mine.pt", "--quiet"], tmp_path)
    assert proc.returncode == 2 and "no weights for uffn-tiny at mine.pt" in proc.stderr
    assert "graphs shipped with this package: cmudrn-t3, uffn-small, uffn-tiny" in proc.stderr


def test_the_default_calibration_frames_are_package_data():
    from edgerestore.precision import DEFAULT_SET, load_frames

    assert DEFAULT_SET == assets.calibration_dir() and DEFAULT_SET.is_relative_to(ROOT / "edgerestore")
    frames = load_frames(None)
    assert len(frames) == 20 and all(f.target is not None for f in frames)


def test_importing_the_package_is_cheap_and_restorer_is_lazy():
    code = (
        "import sys; import edgerestore; "
        "assert 'edgerestore.runtime.restorer' not in sys.modules and 'onnxruntime' not in sys.modules; "
        "from edgerestore import Restorer, RestoreResult; "
        "assert Restorer.__module__ == 'edgerestore.runtime.restorer'; "
        "assert 'torch' not in sys.modules; print(sorted(n for n in dir(edgerestore) if n[0] != '_'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "Restorer" in proc.stdout
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        import edgerestore

        edgerestore.Nope  # noqa: B018


def test_tensorrt_rtx_builds_from_the_shipped_graphs_without_torch(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("tensorrt_rtx is not installed (pip install 'edgerestore[tensorrt-rtx]')")
    args = [
        "build",
        "--precision",
        "fp16",
        "--backend",
        "tensorrt",
        "--trt-module",
        "tensorrt_rtx",
        "--quiet",
    ]
    proc = _cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "graphs shipped with edgerestore" in proc.stdout
    manifest = json.loads((tmp_path / "engines/uffn-tiny-tensorrt-fp16/manifest.json").read_text())
    assert manifest["builder"]["name"] == "tensorrt_rtx" and manifest["precision"] == "fp16"
    shipped = assets.read_index()["profiles"]["uffn-tiny"]["files"]
    assert manifest["graphs"]["trunk"]["source_onnx_sha256"] == shipped["fp16/trunk.onnx"]["sha256"]


def test_shipping_again_keeps_up_to_date_profiles_and_redoes_changed_ones(tmp_path, monkeypatch):
    import shutil

    from edgerestore import pipeline

    root, weights = tmp_path / "shipped", tmp_path / "weights"
    weights.mkdir()
    shutil.copytree(assets.SHIPPED_ROOT / "cmudrn-t3", root / "cmudrn-t3")
    index = assets.read_index()
    (root / assets.INDEX_NAME).write_text(
        json.dumps({**index, "profiles": {"cmudrn-t3": index["profiles"]["cmudrn-t3"]}})
    )
    shutil.copy2(ROOT / "weights/cmudrn-t3.pt", weights / "cmudrn-t3.pt")
    exported = []

    def export(checkpoint, export_dir, progress=True, profile=None):
        exported.append(Path(checkpoint).name)
        raise RuntimeError("export would run here")

    monkeypatch.setattr(pipeline, "export_checkpoint", export)
    lines = []
    kept = pipeline.ship_graphs(weights, root, progress=False, echo=lines.append)
    assert exported == [] and lines == [
        f"cmudrn-t3: shipped graphs are up to date with {weights / 'cmudrn-t3.pt'}"
    ]
    assert kept["profiles"] == {"cmudrn-t3": index["profiles"]["cmudrn-t3"]}
    (weights / "cmudrn-t3.pt").write_bytes((weights / "cmudrn-t3.pt").read_bytes() + b"\0")
    with pytest.raises(RuntimeError, match="export would run here"):
        pipeline.ship_graphs(weights, root, progress=False, echo=lines.append)
    assert exported == ["cmudrn-t3.pt"]
