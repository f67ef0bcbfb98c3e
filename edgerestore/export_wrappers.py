"""The modules `edgerestore.export` turns into graphs: each model part wrapped so that the graph itself takes
and returns uint8 NHWC BGR frames (DESIGN.md, *ONNX graphs*).

Cast, /255, BGR→RGB and NHWC→NCHW at the start; clamp to [0, 1], ×255, round, RGB→BGR, NCHW→NHWC and the
uint8 cast at the end (the router returns softmax `probs`). `float_output` stops before the ×255 (clamped
float32 NHWC BGR) for the parity check. `DepthwiseShareSepConv` is the exportable form of a ShareSepConv
(`export.fold_for_export`).

Imports torch: `edgerestore.export` imports this module inside the functions that export, so that it
imports without torch. Knows nothing of the runtime.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def frame_to_rgb(frame: torch.Tensor) -> torch.Tensor:
    """uint8 [N,H,W,3] BGR → float32 [N,3,H,W] RGB in [0, 1]."""
    return (frame.to(torch.float32) / 255.0).permute(0, 3, 1, 2).flip(1)


def rgb_to_frame(x: torch.Tensor, float_output: bool) -> torch.Tensor:
    """float32 [N,3,H,W] RGB → uint8 [N,H,W,3] BGR (or the clamped float before ×255 when debugging)."""
    y = x.clamp(0.0, 1.0).flip(1).permute(0, 2, 3, 1)
    if float_output:
        return y
    return torch.round(y * 255.0).to(torch.uint8)


class DepthwiseShareSepConv(nn.Module):
    """ShareSepConv with its shared kernel expanded once to a fixed channel count (same arithmetic)."""

    def __init__(self, kernel: torch.Tensor, channels: int) -> None:
        super().__init__()
        k = kernel.shape[-1]
        self.padding = k // 2
        self.register_buffer("weight", kernel.detach().expand(channels, 1, k, k).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, None, 1, self.padding, 1, self.weight.shape[0])


class RouterGraph(nn.Module):
    """`router.onnx`: thumbnail → softmax probabilities over the conditions."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, thumbnail: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model.router(frame_to_rgb(thumbnail)), dim=1)


class TrunkGraph(nn.Module):
    """`trunk.onnx`: frame → shared expert features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return self.model.trunk(frame_to_rgb(frame))


class BranchGraph(nn.Module):
    """`branch_<condition>.onnx`: frame + trunk features → restored frame."""

    def __init__(self, model: nn.Module, name: str, float_output: bool) -> None:
        super().__init__()
        self.branch = model.branch(name)
        self.float_output = float_output

    def forward(self, frame: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return rgb_to_frame(self.branch(frame_to_rgb(frame), features), self.float_output)


class CMUDRNGraph(nn.Module):
    """`cmudrn_t<T>.onnx`: frame → restored frame at one loop count."""

    def __init__(self, model: nn.Module, float_output: bool) -> None:
        super().__init__()
        self.model = model
        self.float_output = float_output

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return rgb_to_frame(self.model(frame_to_rgb(frame)).restored, self.float_output)
