"""edgerestore: all-in-one bad-weather restoration, from PyTorch training to a real-time camera loop.

Importing the package must stay cheap and must not import torch, TensorRT or CUDA: an edge device
installs only the runtime (numpy, OpenCV, ONNX, ONNX Runtime). `from edgerestore import Restorer`
imports the runtime (never torch) only when the name is first used:

    from edgerestore import Restorer
    restorer = Restorer.open("engines/uffn-tiny-onnxruntime-int8")
    result = restorer(frame_bgr_uint8)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgerestore.conditions import CONDITIONS

if TYPE_CHECKING:
    from edgerestore.runtime.restorer import Restorer, RestoreResult

__all__ = ["CONDITIONS", "RestoreResult", "Restorer", "__version__"]
__version__ = "0.1.0"

_LAZY = {"Restorer": "edgerestore.runtime.restorer", "RestoreResult": "edgerestore.runtime.restorer"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgerestore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
