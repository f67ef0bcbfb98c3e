"""edgerestore: all-in-one bad-weather restoration, from PyTorch training to a real-time camera loop.

Importing the package must stay cheap and must not import torch, TensorRT or CUDA: an edge device
installs only the runtime (numpy, OpenCV, ONNX, ONNX Runtime).
"""

from edgerestore.conditions import CONDITIONS

__all__ = ["CONDITIONS", "__version__"]
__version__ = "0.1.0"
