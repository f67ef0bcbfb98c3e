"""Install paths: a runtime-only install (no torch, no training extras) gets one line naming the extra to
install from every verb that needs one, and the default calibration frames ship inside the package."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "uffn-tiny.pt"
CHANGED = "changed.pt"  # a checkpoint the shipped graphs were not made from: build must export (torch)

# Runs `edgerestore` with the training extras made unimportable (as on an edge device's `pip install .`).
BLOCKED_CLI = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("torch", "onnxsim", "onnxconverter_common", "onnxscript", "polygraphy", "matplotlib", "skimage")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    for m in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
        del sys.modules[m]
    from edgerestore.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _run_blocked(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_CLI, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


@pytest.fixture(scope="module")
def synthetic_export(tmp_path_factory) -> Path:
    """An ONNX export folder (tiny graphs) for `calibrate`, made without torch."""
    from engine_graphs import write_export_dir

    return write_export_dir(tmp_path_factory.mktemp("export"), variants=())


@pytest.mark.parametrize(
    "argv, package",
    [
        (["train", "--profile", "uffn-tiny", "--clean", "."], "torch"),
        (["export", "--profile", "uffn-tiny"], "torch"),
        (["eval", "--checkpoint", str(ROOT / "weights" / "uffn-tiny.pt"), "--data", "pairs"], "torch"),
        (["build", "--profile", "uffn-tiny", "--checkpoint", CHANGED, "--out", "bundle"], "torch"),
        (
            ["bench", "--profile", "uffn-tiny", "--checkpoint", CHANGED, "--frames", "1", "--out", "b"],
            "torch",
        ),
        (["bench", "--sweep", "--frames", "1", "--out", "b"], "torch"),
    ],
)
def test_verbs_that_need_the_train_extra_say_so_in_one_line(tmp_path, argv, package):
    import cv2
    import numpy as np

    (tmp_path / CHANGED).write_bytes(WEIGHTS.read_bytes() + b"retrained")
    for folder in ("input", "target"):  # a paired set for eval
        (tmp_path / "pairs" / folder).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "pairs" / folder / "a.png"), np.full((32, 32, 3), 128, np.uint8))
    proc = _run_blocked(tmp_path, *argv)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines == [
        f"edgerestore {argv[0]}: error: this needs {package}, which is not installed; install the 'train' "
        "extra: pip install torch==2.13.0 && pip install 'edgerestore[train]'"
    ]


def test_calibrate_fp16_without_onnxconverter_common_names_the_extra(tmp_path, synthetic_export):
    proc = _run_blocked(
        tmp_path,
        "calibrate",
        "--export",
        str(synthetic_export),
        "--precision",
        "fp16",
        "--frames",
        "synthetic:4",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert "this needs" in line and "'train' extra" in line


def test_info_without_torch_says_why_the_zoo_table_is_missing(tmp_path):
    proc = _run_blocked(tmp_path, "info")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "model zoo table skipped" in proc.stdout and "torch" in proc.stdout


def test_default_calibration_frames_are_package_data():
    from edgerestore.precision import default_calibration_set, load_frames

    folder = default_calibration_set()
    assert folder.is_relative_to(Path(__import__("edgerestore").__file__).parent)
    assert len(list(folder.glob("*.jpg"))) == 20 and len(list((folder / "gt").glob("*.jpg"))) == 20
    assert len(load_frames(None, limit=3)) == 3


def test_missing_default_set_names_the_commands_own_option(monkeypatch, tmp_path):
    from edgerestore.errors import UserError
    from edgerestore.precision import frames

    monkeypatch.setattr(frames, "DEFAULT_SET", tmp_path)  # an install without the frames
    with pytest.raises(UserError, match="give --calib DIR"):
        frames.load_frames(None, option="--calib")
    with pytest.raises(UserError, match="give --frames DIR"):
        frames.load_frames(None)


@pytest.mark.slow
def test_a_built_wheel_holds_the_default_calibration_frames(tmp_path):
    """What `pip install .` (not editable) installs: the wheel must carry the frames the lookup finds.
    Built from a copy of the sources, so setuptools' build/ and egg-info stay out of the checkout."""
    from wheel_build import build_wheel

    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    frames = [n for n in names if n.startswith("edgerestore/shipped/calibration/") and n.endswith(".jpg")]
    assert len(frames) == 40  # 20 frames and their 20 ground truths
