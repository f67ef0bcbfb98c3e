"""Shared fixtures: tiny models and synthetic frames, built by the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 256 KiB tmpfs (a disk that fills up); skipped where it cannot be mounted (not root)."""
    import os
    import subprocess

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "tiny_disk"
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    """Four small smooth "photographs" for the training tests' synthetic weather."""
    import cv2

    folder = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(0)
    for i in range(4):
        base = cv2.resize(
            rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_CUBIC
        )
        cv2.imwrite(str(folder / f"img{i}.png"), base)
    return folder
