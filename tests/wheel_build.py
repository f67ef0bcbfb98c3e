"""Building the project's wheel in a test: from a copy of the sources, so setuptools' build/ and *.egg-info
stay out of the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(base: Path, env: dict[str, str] | None = None) -> Path:
    """Copy the package sources under `base/src`, build the wheel into `base/dist` (no dependencies, no build
    isolation) and return its path; a failed build fails the test with pip's output."""
    src = base / "src"
    shutil.copytree(ROOT / "edgerestore", src / "edgerestore", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = base / "dist"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(dist),
        str(src),
    ]
    proc = subprocess.run(cmd, cwd=base, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    (wheel,) = dist.glob("edgerestore-*.whl")
    return wheel
