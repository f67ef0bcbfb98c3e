"""The modules `edgerestore.export` turns into graphs: each model part wrapped so that the graph itself takes
and returns uint8 NHWC BGR frames (DESIGN.md, *ONNX graphs*).

Cast, /255, BGR→RGB and NHWC→NCHW at the start; clamp to [0, 1], ×255, round, RGB→BGR, NCHW→NHWC and the
uint8 cast at the end (the router returns softmax `probs`). `float_output` stops before the ×255 (clamped
float32 NHWC BGR) for the parity check. `DepthwiseShareSepConv` is the exportable form of a ShareSepConv
(`export.fold_for_export`).

Blocked forms (issue 21). ONNX Runtime's CPU convolutions run fastest in its blocked NCHWc layout (channels in
blocks of 8 on AVX2, 16 on AVX-512), and its layout pass keeps a chain of Conv / Add / Mul / Concat / Relu /
Sigmoid in that layout only when every channel count is a multiple of the block and the shapes are provably
equal (`export.label_spatial_dims` names them); anything else — a Softmax over channels, a Mul by a
one-channel weight, a Split, a 3-output conv — is reordered out and back in. `fold_for_export` therefore
swaps two parts for the same arithmetic in forms that stay blocked (the parity check compares the graphs with
the unchanged PyTorch model):

* `BlockedGatedBranch` for a `MultiGatedBranch`: the experts' gate (a 3×3 conv to E logits, E of 16 output
  lanes used) as a `TapConv`, its softmax written out over the E logits, the weights broadcast by a 1×1 conv
  to E·C channels, multiplied with the features and summed by a 1×1 conv; the two-way level gate as
  sigmoid(z₀ − z₁) (its two-way softmax), replicated over the C channels by the conv itself, and
  `high + s·(low − high)`; a sub-pixel decoder's head with its output channels reordered so that the pixel
  shuffle lands directly in NHWC BGR (no DepthToSpace, flips or transposes of the full-resolution frame).
* `SliceGradient` for an `ImageGradient`: the luma once (a MatMul over the three colour planes), differences
  by slicing (the folded 3 → 2 convolution used 2 of 16 output lanes at full resolution).

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
        if getattr(self.branch, "subpixel", False):  # a BlockedGatedBranch: the frame stays NHWC BGR
            y = (frame.to(torch.float32) / 255.0 + self.branch.correction_nhwc_bgr(features)).clamp(0.0, 1.0)
            return y if self.float_output else torch.round(y * 255.0).to(torch.uint8)
        return rgb_to_frame(self.branch(frame_to_rgb(frame), features), self.float_output)


class CMUDRNGraph(nn.Module):
    """`cmudrn_t<T>.onnx`: frame → restored frame at one loop count."""

    def __init__(self, model: nn.Module, float_output: bool) -> None:
        super().__init__()
        self.model = model
        self.float_output = float_output

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return rgb_to_frame(self.model(frame_to_rgb(frame)).restored, self.float_output)


# ----------------------------------------------------------------------------------------------------------
# blocked (NCHWc-friendly) export forms, see the module docstring

#: channel multiple that both ONNX Runtime NCHWc block sizes on x86 (8: AVX2, 16: AVX-512) divide
NCHWC_BLOCK = 16


def _round_up(n: int, multiple: int = NCHWC_BLOCK) -> int:
    return -(-n // multiple) * multiple


def _select(rows: list[tuple[int, int, float]], out_channels: int, in_channels: int) -> torch.Tensor:
    """A 1×1 conv weight [out, in, 1, 1] that is zero except `weight[o, i] = value` for each (o, i, value)."""
    weight = torch.zeros(out_channels, in_channels, 1, 1)
    for o, i, value in rows:
        weight[o, i, 0, 0] = value
    return weight


class TapConv(nn.Module):
    """A k×k convolution (stride 1, dilation 1, "same" zero padding) with few output channels, computed as
    1×1 projections of the input onto each (output, tap) pair, a depthwise one-hot k×k shift that moves each
    projection to its tap, and a 1×1 sum over the taps (+ bias): the same sums, associated per tap.

    Why: a blocked conv pads its outputs to the block, so 3 outputs of a 3×3 conv over 48 channels cost
    48·9·16 multiply-adds per pixel; this form costs 48·32 + 32·9 + 32·16. `replicate` repeats each output
    that many times (the level gate's weight, broadcast over the channels it multiplies)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, replicate: int = 1) -> None:
        super().__init__()
        out, channels, kh, kw = weight.shape
        taps = kh * kw
        self.lanes = _round_up(out * taps)
        proj = torch.zeros(self.lanes, channels, 1, 1)
        shift = torch.zeros(self.lanes, 1, kh, kw)
        for o in range(out):
            for t in range(taps):
                proj[o * taps + t, :, 0, 0] = weight[o, :, t // kw, t % kw]
                shift[o * taps + t, 0, t // kw, t % kw] = 1.0
        rows = [
            (o * replicate + r, o * taps + t, 1.0)
            for o in range(out)
            for r in range(replicate)
            for t in range(taps)
        ]
        self.padding = (kh // 2, kw // 2)
        self.register_buffer("proj", proj)
        self.register_buffer("shift", shift)
        self.register_buffer("sum", _select(rows, out * replicate, self.lanes))
        b = torch.zeros(out) if bias is None else bias.detach()
        self.register_buffer("bias", b.repeat_interleave(replicate).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = F.conv2d(F.conv2d(x, self.proj), self.shift, None, 1, self.padding, 1, self.lanes)
        return F.conv2d(taps, self.sum, self.bias)


def _softmax_channels(z: torch.Tensor) -> torch.Tensor:
    """torch.softmax(z, dim=1) written out (max, exp, sum, divide): ONNX Runtime's Softmax over the channel
    axis transposes the tensor twice (≈ 2 ms for 3 × 320 × 180 here, against ≈ 0.5 ms for these four)."""
    e = torch.exp(z - z.amax(dim=1, keepdim=True))
    return e / e.sum(dim=1, keepdim=True)


class BlockedGatedBranch(nn.Module):
    """`MultiGatedBranch` in the blocked form described in the module docstring; `forward` has the branch's
    signature (RGB NCHW in and out), `restore_nhwc_bgr` (sub-pixel decoders only) works on NHWC BGR frames.
    Built from an eval-mode branch; its parameters are copied, the original is not kept."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        experts, gate = branch.experts, branch.expert_gate.gate
        c = gate.in_channels // experts
        self.experts, self.channels = experts, c
        # features as a conv output: the identity depthwise 1×1 conv makes them a blocked tensor the gate's
        # multiply can read (a graph input is reordered for each conv, not shared with a Mul)
        self.register_buffer("identity", torch.ones(experts * c, 1, 1, 1))
        self.expert_logits = TapConv(gate.weight.detach(), gate.bias.detach())
        lanes = [(i, k) for i in range(experts) for k in range(c)]
        self.register_buffer(
            "broadcast", _select([(i * c + k, i, 1.0) for i, k in lanes], experts * c, experts)
        )
        self.register_buffer("expert_sum", _select([(k, i * c + k, 1.0) for i, k in lanes], c, experts * c))
        self.high_level = branch.high_level
        level = branch.level_gate.gate  # 2c -> 2 logits; softmax of two = sigmoid of their difference
        w, b = level.weight.detach(), level.bias.detach()
        self.level_logit = TapConv((w[0] - w[1])[None], (b[0] - b[1])[None], replicate=c)
        diff = [(k, k, 1.0) for k in range(c)] + [(k, c + k, -1.0) for k in range(c)]
        self.register_buffer("low_minus_high", _select(diff, c, 2 * c))
        decoder = list(branch.decoder)
        self.subpixel = isinstance(decoder[-1], nn.PixelShuffle)
        if self.subpixel:
            head = decoder[-2]
            self.decoder = nn.Sequential(*decoder[:-2])
            r = decoder[-1].upscale_factor
            # PixelShuffle reads channel rgb·r² + dy·r + dx; the NHWC tail wants (dy, dx, bgr)
            order = [
                (2 - bgr) * r * r + dy * r + dx for dy in range(r) for dx in range(r) for bgr in range(3)
            ]
            self.upscale = r
            self.register_buffer("head_weight", head.weight.detach()[order].clone())
            self.register_buffer("head_bias", head.bias.detach()[order].clone())
        else:
            self.decoder = branch.decoder

    def fused(self, features: torch.Tensor) -> torch.Tensor:
        """The level gate's output: what the decoder reads."""
        f = F.conv2d(features, self.identity, groups=features.shape[1])
        weights = F.conv2d(_softmax_channels(self.expert_logits(f)), self.broadcast)
        low = F.conv2d(weights * f, self.expert_sum)
        high = self.high_level(low)
        both = torch.cat([low, high], dim=1)
        s = torch.sigmoid(self.level_logit(both))
        return high + s * F.conv2d(both, self.low_minus_high)

    def correction_nhwc_bgr(self, features: torch.Tensor) -> torch.Tensor:
        """Sub-pixel decoders: the decoder's full-resolution correction as NHWC BGR [1, r·h, r·w, 3]."""
        h, w, r = features.shape[2], features.shape[3], self.upscale
        d = F.conv2d(self.decoder(self.fused(features)), self.head_weight, self.head_bias)
        d = d.permute(0, 2, 3, 1).reshape(1, h, w, r, r, 3).permute(0, 1, 3, 2, 4, 5)
        return d.reshape(1, r * h, r * w, 3)

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self.subpixel:
            return x + self.correction_nhwc_bgr(features).flip(3).permute(0, 3, 1, 2)
        return x + self.decoder(self.fused(features))


class SliceGradient(nn.Module):
    """`ImageGradient` (|∂x| + |∂y| of central differences of the BT.601 luma, replicate borders) as the luma
    once, by a MatMul of the luma row with the frame's [3, H·W] planes, and differences of slices."""

    def __init__(self, gradient: nn.Module) -> None:
        super().__init__()
        # the folded kernel is 0.5·luma·[-1, 0, 1]; its right tap of ∂x holds 0.5·luma per channel
        self.register_buffer("luma", gradient.weight[0, :, 1, 2].detach().reshape(1, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = torch.matmul(self.luma, x.reshape(n, c, h * w)).reshape(n, 1, h, w)
        y = F.pad(y, (1, 1, 1, 1), mode="replicate")
        dx = y[:, :, 1:-1, 2:] - y[:, :, 1:-1, :-2]
        dy = y[:, :, 2:, 1:-1] - y[:, :, :-2, 1:-1]
        return dx.abs() + dy.abs()
