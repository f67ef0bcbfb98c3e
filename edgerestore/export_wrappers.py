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
        if getattr(self.branch, "nhwc", False):  # a BlockedGatedBranch: the frame stays NHWC BGR
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
    signature (RGB NCHW in and out); with `nhwc` (its decoder ends at half resolution, `_blocked_decoder`)
    `correction_nhwc_bgr` gives the full-resolution correction of an NHWC BGR frame.
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
        self.decoder, self.phases, self.nhwc = branch.decoder, None, False
        head = _blocked_decoder(list(branch.decoder))
        if head is not None:  # the decoder ends in 3·2² channels at half resolution, shuffled in the tail
            self.nhwc = True
            self.decoder, self.phases, head_weight, head_bias = head
            self.register_buffer("head_weight", head_weight)
            self.register_buffer("head_bias", head_bias)

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
        """The decoder's full-resolution correction as NHWC BGR [1, 2h, 2w, 3] (when `nhwc`)."""
        h, w = features.shape[2], features.shape[3]
        y = self.decoder(self.fused(features))
        if self.phases is not None:
            y = torch.cat([F.relu(conv(F.pad(y, pad))) for pad, conv in self.phases], dim=1)
        d = F.conv2d(y, self.head_weight, self.head_bias, padding=self.head_weight.shape[-1] // 2)
        d = d.permute(0, 2, 3, 1).reshape(1, h, w, 2, 2, 3).permute(0, 1, 3, 2, 4, 5)
        return d.reshape(1, 2 * h, 2 * w, 3)

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self.nhwc:
            return x + self.correction_nhwc_bgr(features).flip(3).permute(0, 3, 1, 2)
        return x + self.decoder(self.fused(features))


def _norm_affine(norm: nn.Module, channels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift) of an eval-mode BatchNorm2d or an Identity; None for anything else (instance norm)."""
    if isinstance(norm, nn.Identity):
        return torch.ones(channels), torch.zeros(channels)
    if isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.running_var is not None:
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight.detach()
        shift = -norm.running_mean * scale
        if norm.bias is not None:
            shift = shift + norm.bias.detach()
        return scale, shift
    return None


#: output pixel 2i + a of a 4×4, stride-2, padding-1 transposed conv reads inputs i - 1, i (a = 0) or i, i + 1
#: (a = 1) through these kernel rows, in that order: a 2×2 conv per output phase, padded on one side
_PHASE_ROWS = {0: (3, 1), 1: (2, 0)}


def _blocked_decoder(decoder: list[nn.Module]):
    """(body, phase convs or None, head weight, head bias) for a decoder the NHWC tail can finish, or None.

    Sub-pixel decoder (conv, norm, ReLU, 1×1 head to 3·4, PixelShuffle(2)): the body as it is and the head
    with its output channels reordered from PixelShuffle's (rgb, dy, dx) to the tail's (dy, dx, bgr).

    The paper's decoder (4×4 stride-2 ConvTranspose, BatchNorm, ReLU, 3×3 conv to RGB at full resolution): the
    transposed conv as its four output phases, each a 2×2 conv at half resolution with the norm folded in
    (+ ReLU), concatenated (4C blocked channels), and the full-resolution 3×3 head as the 3×3 conv over those
    phases that computes each output phase — the same sums, re-indexed; zero padding at the full-resolution
    border is zero padding at the half-resolution one. ONNX Runtime's ConvTranspose has no blocked kernel and
    the full-resolution C-channel tensor is never made."""
    if len(decoder) == 5 and isinstance(decoder[-1], nn.PixelShuffle) and decoder[-1].upscale_factor == 2:
        head = decoder[3]
        order = [(2 - bgr) * 4 + dy * 2 + dx for dy in range(2) for dx in range(2) for bgr in range(3)]
        return (
            nn.Sequential(*decoder[:3]),
            None,
            head.weight.detach()[order].clone(),
            head.bias.detach()[order].clone(),
        )
    if len(decoder) != 4 or not isinstance(decoder[0], nn.ConvTranspose2d):
        return None
    up, norm, act, head = decoder
    c = up.in_channels
    affine = _norm_affine(norm, up.out_channels)
    if (
        affine is None
        or not isinstance(act, nn.ReLU)
        or up.kernel_size != (4, 4)
        or up.stride != (2, 2)
        or up.padding != (1, 1)
        or up.output_padding != (0, 0)
        or up.dilation != (1, 1)
        or up.groups != 1
        or up.bias is not None
        or not isinstance(head, nn.Conv2d)
        or head.kernel_size != (3, 3)
        or head.padding != (1, 1)
        or head.stride != (1, 1)
        or head.dilation != (1, 1)
        or head.groups != 1
        or head.out_channels != 3
    ):
        return None
    scale, shift = affine
    weight = up.weight.detach()  # [in, out, 4, 4]
    phases = []
    for a in (0, 1):
        for b in (0, 1):
            conv = nn.Conv2d(c, up.out_channels, 2)
            rows, cols = _PHASE_ROWS[a], _PHASE_ROWS[b]
            w = weight[:, :, list(rows)][:, :, :, list(cols)].permute(1, 0, 2, 3)  # [out, in, 2, 2]
            conv.weight.data = (w * scale[:, None, None, None]).contiguous()
            conv.bias.data = shift.clone()
            phases.append(((1 - b, b, 1 - a, a), conv.eval()))  # F.pad order: left, right, top, bottom
    co = up.out_channels
    hw, hb = head.weight.detach(), head.bias.detach()
    phase_head = torch.zeros(12, 4 * co, 3, 3)
    for a in (0, 1):
        for b in (0, 1):
            for color in range(3):
                out = a * 6 + b * 3 + (2 - color)
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ty, py = divmod(a + dy, 2)  # half-resolution row offset, input phase
                        tx, px = divmod(b + dx, 2)
                        channels = slice((py * 2 + px) * co, (py * 2 + px + 1) * co)
                        phase_head[out, channels, ty + 1, tx + 1] += hw[color, :, dy + 1, dx + 1]
    head_bias = torch.stack([hb[2 - bgr] for _ in range(4) for bgr in range(3)])
    body = nn.Identity()
    phase_list = nn.ModuleList(conv for _, conv in phases)
    pads = [pad for pad, _ in phases]
    return body, _Phases(pads, phase_list), phase_head, head_bias


class _Phases(nn.Module):
    """The four 2×2 phase convs of a transposed conv, with their one-sided paddings (iterable as pairs)."""

    def __init__(self, pads: list[tuple[int, int, int, int]], convs: nn.ModuleList) -> None:
        super().__init__()
        self.pads = pads
        self.convs = convs

    def __iter__(self):
        return iter(zip(self.pads, self.convs))


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
