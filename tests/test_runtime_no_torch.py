"""The runtime never imports torch: with torch made unimportable, open a bundle and restore a frame."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys, tempfile

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test ({name})")
            return None

    sys.meta_path.insert(0, BlockTorch())
    sys.modules.pop("torch", None)

    import numpy as np
    import edgerestore.runtime.restorer as restorer_module
    import edgerestore.runtime.trt  # importable without TensorRT or CUDA, and without torch
    import edgerestore.runtime.rosbag  # ROS 2 recordings
    import edgerestore.runtime.video, edgerestore.runtime.protocol  # the camera loop and its façade
    import edgerestore.serving.bls, edgerestore.serving.repository, edgerestore.serving.loadtest  # Triton
    from edgerestore.testing import PROTOTYPES, write_bundle

    with tempfile.TemporaryDirectory() as d:
        with restorer_module.Restorer.open(write_bundle(d), threads=1) as r:
            frame = np.empty((33, 47, 3), np.uint8)
            frame[:] = PROTOTYPES["haze"]
            result = r(frame)
    assert result.restored and result.condition == "haze", result
    assert result.image.shape == frame.shape
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch got imported"
    print("ok")
    """
)


def test_runtime_restores_a_frame_with_torch_unimportable():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")
