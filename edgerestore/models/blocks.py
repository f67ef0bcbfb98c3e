"""Building blocks of both papers, named the papers' way.

* `ShareSepConv`, `SmoothDilatedResBlock` — GCANet's smoothed dilated convolution (Chen et al., WACV 2019),
  used by UFFN's experts and branches.
* `GatedFusion` — a per-pixel softmax gate over several feature maps (MMoE gate / GCANet gated fusion).
* `ImageGradient` — the first-order gradient channel UFFN adds to its RGB input.
* `CrossStitch`, `ResidualBlock` — CMUDRN's cross-stitch unit and the DRN's residual block.

Pure PyTorch, no custom ops: everything exports to ONNX. Imports nothing from export or the runtime.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_norm(kind: str, channels: int) -> nn.Module:
    """`batch` folds into the convolution at export (free at inference); `instance` is GCANet's choice;
    `none` for tiny batches."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected batch, instance or none")


class ShareSepConv(nn.Module):
    """One k×k kernel shared by every channel, applied depthwise; initialised to the identity.

    GCANet puts it before a dilated convolution (k = 2·dilation − 1) so that neighbouring output pixels
    see overlapping inputs, which removes the gridding artefacts of dilated convolutions.
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"ShareSepConv needs an odd kernel size, got {kernel_size}")
        self.kernel_size = kernel_size
        weight = torch.zeros(1, 1, kernel_size, kernel_size)
        weight[0, 0, kernel_size // 2, kernel_size // 2] = 1.0
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.weight.expand(channels, 1, self.kernel_size, self.kernel_size)
        return F.conv2d(x, weight, None, 1, self.kernel_size // 2, 1, channels)


class SmoothedDilatedConv(nn.Sequential):
    """ShareSepConv(2·d − 1) followed by a 3×3 convolution with dilation d."""

    def __init__(self, channels: int, dilation: int) -> None:
        layers: list[nn.Module] = []
        if dilation > 1:
            layers.append(ShareSepConv(2 * dilation - 1))
        layers.append(nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False))
        super().__init__(*layers)


class SmoothDilatedResBlock(nn.Module):
    """GCANet's SDRB: two smoothed dilated convs, each followed by normalisation, ReLU in between, residual."""

    def __init__(self, channels: int, dilation: int, norm: str = "batch") -> None:
        super().__init__()
        self.conv1 = SmoothedDilatedConv(channels, dilation)
        self.norm1 = make_norm(norm, channels)
        self.conv2 = SmoothedDilatedConv(channels, dilation)
        self.norm2 = make_norm(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(x + y)


class GatedFusion(nn.Module):
    """Weights and sums n feature maps of equal shape with a per-pixel softmax gate computed from all of them."""

    def __init__(self, inputs: int, channels: int) -> None:
        super().__init__()
        self.inputs = inputs
        self.gate = nn.Conv2d(inputs * channels, inputs, 3, padding=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != self.inputs:
            raise ValueError(f"GatedFusion expects {self.inputs} inputs, got {len(features)}")
        weights = torch.softmax(self.gate(torch.cat(features, dim=1)), dim=1)
        out = weights[:, 0:1] * features[0]
        for i in range(1, self.inputs):
            out = out + weights[:, i : i + 1] * features[i]
        return out


class ImageGradient(nn.Module):
    """First-order gradient magnitude (|∂x| + |∂y| of central differences) of the BT.601 luma, one channel."""

    def __init__(self) -> None:
        super().__init__()
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        dx = torch.tensor([[0.0, 0.0, 0.0], [-0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])
        kernel = torch.stack([dx, dx.t()]).unsqueeze(1)  # [2, 1, 3, 3]
        # Fold luma and differences into one 3 -> 2 convolution so that export sees a plain Conv.
        self.register_buffer("weight", kernel * luma.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.weight)
        return g.abs().sum(dim=1, keepdim=True)


class ResidualBlock(nn.Module):
    """conv3×3 → ReLU → conv3×3, plus the input, then ReLU (the DRN's residual block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class CrossStitch(nn.Module):
    """Learnable convex combination of two tasks' feature maps (Misra et al., 2016, as in CMUDRN).

    a' = α_a·a + (1 − α_a)·b and b' = α_b·b + (1 − α_b)·a, with α initialised to 0.5 and kept in
    [0, 1] by clamping in the forward pass.
    """

    def __init__(self, init: float = 0.5) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((2,), float(init)))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.alpha.clamp(0.0, 1.0)
        return alpha[0] * a + (1 - alpha[0]) * b, alpha[1] * b + (1 - alpha[1]) * a
