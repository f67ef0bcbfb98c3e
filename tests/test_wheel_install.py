"""A wheel installed into a fresh virtual environment without PyTorch builds a bundle from its shipped graphs,
restores an image and runs the camera loop headless on a video file, from a folder with no checkout in it.

Slow: builds the wheel and installs numpy, OpenCV, ONNX and ONNX Runtime from the package index (pip's cache
makes a second run quick). TensorRT-RTX is tried only where it is installed in that environment (never here).
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _run(
    cmd: list[str], cwd: Path, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _clean_env() -> dict[str, str]:
    """This process's environment without what would let the checkout or this venv leak in."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "DISPLAY", "WAYLAND_DISPLAY")
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    from wheel_build import build_wheel

    wheel = build_wheel(base, env=_clean_env())
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    pip = [str(env_dir / "bin/python"), "-m", "pip", "install", "-q", str(wheel)]
    proc = subprocess.run(pip, cwd=base, capture_output=True, text=True, timeout=600, env=_clean_env())
    offline = ("No matching distribution", "Could not find a version", "NewConnectionError", "unreachable")
    if proc.returncode != 0 and any(text in proc.stderr for text in offline):
        pytest.skip("no package index reachable for numpy, OpenCV, ONNX and ONNX Runtime")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env_dir, wheel


def test_the_wheel_carries_the_shipped_graphs_and_no_torch_comes_with_it(installed):
    import zipfile

    env_dir, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "edgerestore/shipped/index.json" in names
    assert "edgerestore/shipped/uffn-tiny/int8_ort/trunk.onnx" in names
    assert "edgerestore/shipped/calibration/gt/rain_01_chelsea.jpg" in names
    size = sum(i.file_size for i in zipfile.ZipFile(wheel).infolist())
    assert size < 20e6, f"the wheel unpacks to {size / 1e6:.1f} MB"
    proc = subprocess.run(
        [str(env_dir / "bin/python"), "-c", "import torch"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr


def test_build_restore_and_camera_from_the_installed_wheel(installed, tmp_path):
    env_dir, _ = installed
    exe = str(env_dir / "bin" / "edgerestore")
    env = _clean_env()
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["EDGERESTORE_ENGINES"] = str(tmp_path / "engines")  # an installed package's default: the user's data

    where = _run(
        [str(env_dir / "bin/python"), "-c", "import edgerestore; print(edgerestore.__file__)"],
        tmp_path,
        env=env,
    )
    assert str(env_dir) in where.stdout  # the wheel's copy, not this checkout

    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 96))
    for i in range(6):
        writer.write(np.full((96, 160, 3), 30 * i, np.uint8))
    writer.release()
    # no bundle yet: the camera builds the default one (fp32) from the shipped graphs, then runs
    cam = _run(
        [
            exe,
            "camera",
            "--source",
            "file://clip.avi",
            "--headless",
            "--no-drop",
            "-q",
            "--summary-json",
            "s.json",
        ],
        tmp_path,
        env=env,
    )
    assert f"building {tmp_path / 'engines/uffn-tiny-onnxruntime-fp32'}" in cam.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames_out"] == 6 and summary["dropped"] == 0

    built = _run(
        [exe, "build", "--backend", "onnxruntime", "--precision", "fp16", "--quiet"], tmp_path, env=env
    )
    assert "graphs shipped with edgerestore" in built.stdout and "ran: build" in built.stdout
    assert not (tmp_path / "export").exists()
    manifest = json.loads((tmp_path / "engines/uffn-tiny-onnxruntime-fp16/manifest.json").read_text())
    assert manifest["backend"] == "onnxruntime" and manifest["profile"] == "uffn-tiny"

    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "frame.jpg"), rng.integers(0, 255, (120, 160, 3), np.uint8))
    restore = [exe, "restore", "frame.jpg", "--out", "restored", "--quiet"]
    _run([*restore, "--bundle", "engines/uffn-tiny-onnxruntime-fp16"], tmp_path, env=env)
    assert (tmp_path / "restored/frame.jpg").is_file()

    doctor = subprocess.run(
        [exe, "doctor", "--no-display-check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "✓ uffn-tiny-onnxruntime-fp32" in doctor.stdout and "torch         not installed" in doctor.stdout

    rtx = subprocess.run(
        [str(env_dir / "bin/python"), "-c", "import tensorrt_rtx"], capture_output=True, timeout=60
    )
    if rtx.returncode == 0:  # pragma: no cover - not installed in this fresh environment
        _run(
            [exe, "build", "--backend", "tensorrt", "--trt-module", "tensorrt_rtx", "--quiet"],
            tmp_path,
            env=env,
        )
