"""UFFN: Unified Feature Fusion Network with a Path Router, for all-in-one bad-weather restoration.

The network (following the paper):

* input: RGB plus one channel of first-order image gradient, computed inside the model;
* shared encoder with one stride-2 sub-sampling, then multi-expert feature extraction: E parallel experts,
  each a group of Smoothed Dilated Residual Blocks (GCANet);
* path router: strided convolutions (the paper: two; the zoo: four, see `PathRouter`), average pooling and a
  fully connected layer giving a probability vector over the conditions; its argmax selects the branch. As fixed by DESIGN.md it reads a fixed-size
  thumbnail of the frame (not the encoder features as in the paper), so it is a small static graph that
  can run before the trunk and let `clean` frames skip everything else;
* one multi-gated feature fusion branch per condition: a gate fuses the E experts (MMoE), two SDRB groups
  extract high-level features, a second gate fuses low- and high-level features, a transposed-conv decoder
  returns to H×W×3, and the input is added (global residual).

Project addition — reduced-resolution branches (`UFFNConfig.branch_scales`, e.g. {"haze": 0.25}): such a
branch runs (with the trunk) on the area-downscaled frame, and the local affine map it applied there (output ≈
a·input + b, fitted per channel in boxes: the guided filter, `guided_coefficients`) is bilinearly upsampled and
applied to the full-resolution frame — the gain a (haze's 1/t) restores the fine contrast the reduced frame
could not show, which an added correction would leave dimmed. Haze is smooth, so the branch sees 1/scale times
more of the scene for 1/scale² less work; rain streaks and snow are fine detail and stay at full resolution.

Project addition — sub-pixel decoders (`UFFNConfig.branch_decoders`, e.g. {"rain": "subpixel"}): such a branch
returns to H×W with a convolution to 3·2² channels at H/2×W/2 and a pixel shuffle (ESPCN) instead of the
paper's transposed convolution and full-resolution 3×3 head, so no 16-channel full-resolution tensor is ever
made (the decoder was a third of a full-resolution branch's time on the CPU; numbers in the README).

The model is made of separately callable parts — `router`, `trunk`, `branch(name)` — whose composition is
exactly `forward`; these are the graphs export writes, so they hold no data-dependent Python control flow.
Imports nothing from export or the runtime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from edgerestore.conditions import CONDITIONS
from edgerestore.contract import GUIDED_EPS, guided_affine, guided_radius, reduced_size
from edgerestore.models.blocks import GatedFusion, ImageGradient, SmoothDilatedResBlock, make_norm

#: "transposed": the paper's transposed-conv decoder (4×4, stride 2) + norm + ReLU + a full-resolution 3×3 conv to
#: RGB; "subpixel": 3×3 conv (C → 2C) + norm + ReLU + 1×1 conv to 3·2² channels at half resolution + pixel shuffle
DECODERS = ("transposed", "subpixel")
DEFAULT_DECODER = DECODERS[0]  # a branch missing from `UFFNConfig.branch_decoders` has the paper's


@dataclass(frozen=True)
class UFFNConfig:
    width: int = 16
    experts: int = 3
    expert_blocks: int = 1
    branch_blocks: int = 1
    expert_dilations: tuple[int, ...] = (1, 2, 4)
    branch_dilation: int = 2
    router_width: int = 32
    router_convs: int = 4
    thumbnail_size: int = 224
    norm: str = "batch"
    #: resolution (0 < s <= 1) a condition's branch runs at; missing conditions run at full resolution
    branch_scales: dict[str, float] = field(default_factory=dict)
    #: decoder of a condition's branch, one of DECODERS; missing conditions have DEFAULT_DECODER
    branch_decoders: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the bottom/right of an NCHW tensor up to a multiple; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return x, (h, w)


def guided_coefficients(
    small_in: torch.Tensor, small_out: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) [N, C, h, w] with ``small_out ≈ a·small_in + b`` locally: the torch twin of
    `edgerestore.contract.guided_coefficients` (same radius, boxes with reflect-101 borders, ε towards gain 1),
    differentiable, so a reduced branch trains through the composition the runtime applies."""
    radius = guided_radius(*small_in.shape[-2:])

    def box(x: torch.Tensor) -> torch.Tensor:
        if radius == 0:
            return x
        padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
        return F.avg_pool2d(padded, 2 * radius + 1, stride=1)

    return guided_affine(box, small_in, small_out, eps)


class PathRouter(nn.Module):
    """Strided convolutions (each + BatchNorm + ReLU), average pooling and a fully connected layer: logits.

    The paper's router has two convolutions; `convs` (≥ 2) sets how many. With two, a router trained on our
    synthetic thumbnails stayed near 50 % correct (its 9-pixel receptive field cannot tell a rain streak from
    a snowflake); four, at about 1.9× the two-conv router's MACs (185 M vs 98 M at width 32 on a 224² thumbnail,
    ≈5 ms on one CPU core), is what the zoo uses (accuracy in the README). BatchNorm folds into the
    convolutions at export, so the graph is still convs → pooling → FC.
    """

    def __init__(self, width: int, classes: int, convs: int = 4) -> None:
        super().__init__()
        if convs < 2:
            raise ValueError("the router needs at least two convolutions")
        layers: list[nn.Module] = []
        channels = 4
        for i in range(convs):
            out, k = width * 2 ** min(i, 2), 5 if i == 0 else 3
            layers += [nn.Conv2d(channels, out, k, stride=2, padding=k // 2, bias=False), nn.BatchNorm2d(out)]
            layers.append(nn.ReLU(inplace=True))
            channels = out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class Expert(nn.Sequential):
    """One expert: a group of SDRBs, all at the expert's own dilation (experts differ in receptive field)."""

    def __init__(self, channels: int, blocks: int, dilation: int, norm: str) -> None:
        super().__init__(*[SmoothDilatedResBlock(channels, dilation, norm) for _ in range(blocks)])


def make_decoder(kind: str, channels: int, norm: str) -> nn.Sequential:
    """Features [N, C, H/2, W/2] → an RGB correction [N, 3, H, W] (see `DECODERS`)."""
    c = channels
    if kind == "transposed":
        return nn.Sequential(
            nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, bias=False),
            make_norm(norm, c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, 3, 3, padding=1),
        )
    if kind == "subpixel":
        head = nn.Conv2d(2 * c, 3 * 4, 1)
        nn.init.zeros_(head.weight)  # a new decoder starts as "no correction": the branch returns its input
        nn.init.zeros_(head.bias)
        return nn.Sequential(
            nn.Conv2d(c, 2 * c, 3, padding=1, bias=False),
            make_norm(norm, 2 * c),
            nn.ReLU(inplace=True),
            head,
            nn.PixelShuffle(2),
        )
    raise ValueError(f"unknown decoder {kind!r}; expected one of {', '.join(DECODERS)}")


class MultiGatedBranch(nn.Module):
    """Restores one condition from the experts' features: gate → 2 SDRB groups → gate → decoder → + input."""

    def __init__(self, config: UFFNConfig, decoder: str = DEFAULT_DECODER) -> None:
        super().__init__()
        c = config.width
        self.experts = config.experts
        self.expert_gate = GatedFusion(config.experts, c)
        self.high_level = nn.Sequential(
            *[
                nn.Sequential(
                    *[
                        SmoothDilatedResBlock(c, config.branch_dilation, config.norm)
                        for _ in range(config.branch_blocks)
                    ]
                )
                for _ in range(2)
            ]
        )
        self.level_gate = GatedFusion(2, c)
        self.decoder = make_decoder(decoder, c, config.norm)

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        low = self.expert_gate(list(torch.chunk(features, self.experts, dim=1)))
        high = self.high_level(low)
        fused = self.level_gate([low, high])
        return x + self.decoder(fused)


class UFFN(nn.Module):
    """Unified Feature Fusion Network with Path Router (see the module docstring)."""

    stride = 2
    family = "uffn"

    def __init__(self, config: UFFNConfig | None = None, conditions: tuple[str, ...] = CONDITIONS) -> None:
        super().__init__()
        config = config or UFFNConfig()
        if len(config.expert_dilations) < config.experts:
            raise ValueError("expert_dilations needs one dilation per expert")
        if conditions[0] != "clean":
            raise ValueError("the first condition must be 'clean' (the pass-through class)")
        self.config = config
        self.conditions = tuple(conditions)
        self.thumbnail_size = config.thumbnail_size
        c = config.width
        self.gradient = ImageGradient()
        self.router_net = PathRouter(config.router_width, len(conditions), config.router_convs)
        self.encoder = nn.Sequential(
            nn.Conv2d(4, c, 3, padding=1, bias=False),
            make_norm(config.norm, c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
            make_norm(config.norm, c),
            nn.ReLU(inplace=True),
        )
        self.experts = nn.ModuleList(
            Expert(c, config.expert_blocks, config.expert_dilations[i], config.norm)
            for i in range(config.experts)
        )
        for name, kind in config.branch_decoders.items():
            if name not in self.conditions[1:] or kind not in DECODERS:
                raise ValueError(
                    f"branch_decoders {{{name!r}: {kind!r}}}: expected a branch of {list(self.conditions[1:])} "
                    f"and a decoder of {list(DECODERS)}"
                )
        self.branches = nn.ModuleDict(
            {name: MultiGatedBranch(config, self.branch_decoder(name)) for name in self.conditions[1:]}
        )
        for name, scale in config.branch_scales.items():
            if name not in self.branches or not 0.0 < float(scale) <= 1.0:
                raise ValueError(
                    f"branch_scales {{{name!r}: {scale!r}}}: expected a branch of {list(self.branches)} "
                    "and a scale in (0, 1]"
                )

    # ----- the parts (one exported graph each) -----
    def make_thumbnail(self, x: torch.Tensor) -> torch.Tensor:
        s = self.thumbnail_size
        return F.interpolate(x, size=(s, s), mode="area")

    def router(self, thumbnail: torch.Tensor) -> torch.Tensor:
        """Logits over `self.conditions` from a thumbnail [N, 3, S, S]."""
        return self.router_net(torch.cat([thumbnail, self.gradient(thumbnail)], dim=1))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Shared expert features [N, E·C, H/2, W/2] from a frame whose H, W are multiples of the stride."""
        f = self.encoder(torch.cat([x, self.gradient(x)], dim=1))
        return torch.cat([expert(f) for expert in self.experts], dim=1)

    def branch(self, name: str) -> MultiGatedBranch:
        if name not in self.branches:
            raise KeyError(f"no branch {name!r}; branches: {', '.join(self.branches)}")
        return self.branches[name]

    def branch_decoder(self, name: str) -> str:
        """The decoder kind of branch `name` (see `DECODERS`)."""
        return str(self.config.branch_decoders.get(name, DEFAULT_DECODER))

    def branch_scale(self, name: str) -> float:
        """The resolution branch `name` runs at (1.0: full)."""
        self.branch(name)
        return float(self.config.branch_scales.get(name, 1.0))

    def restore(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Frames [N, 3, H, W] (any size ≥ 2×2) restored by branch `name` at its resolution (not clamped; a
        reduced-resolution branch's own output is clamped to [0, 1] before its affine map is fitted)."""
        h, w = x.shape[-2:]
        size = reduced_size(h, w, self.branch_scale(name))
        if size == (h, w):
            padded, _ = pad_to_multiple(x, self.stride)
            return self.branch(name)(padded, self.trunk(padded))[..., :h, :w]
        small = F.interpolate(x, size=size, mode="area")
        padded, _ = pad_to_multiple(small, self.stride)
        # clamped as the branch graph's uint8 output is, so the deployed composition is the trained one
        restored = self.branch(name)(padded, self.trunk(padded))[..., : size[0], : size[1]].clamp(0, 1)
        gain, offset = guided_coefficients(small, restored, GUIDED_EPS)
        up = dict(size=(h, w), mode="bilinear", align_corners=False)
        return F.interpolate(gain, **up) * x + F.interpolate(offset, **up)

    @property
    def feature_channels(self) -> int:
        return self.config.width * self.config.experts

    # ----- the composition -----
    def forward(
        self, x: torch.Tensor, condition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Restore a batch [N, 3, H, W] of any size ≥ 2×2; returns (restored, router logits).

        `condition` (LongTensor [N]) forces each sample's branch (teacher forcing in training); by default the
        router's argmax picks it. `clean` samples are returned unchanged. Samples of full-resolution branches
        share one trunk pass; each reduced-resolution branch runs its samples through `restore`.
        """
        logits = self.router(self.make_thumbnail(x))
        chosen = logits.argmax(dim=1) if condition is None else condition.to(x.device)
        padded, (h, w) = pad_to_multiple(x, self.stride)
        out = padded.clone()
        full = [i for i, name in enumerate(self.conditions) if i and self.branch_scale(name) == 1.0]
        restore = torch.nonzero(torch.isin(chosen, torch.tensor(full, device=chosen.device))).flatten()
        if restore.numel():
            features = self.trunk(padded[restore])
            for index in full:
                local = torch.nonzero(chosen[restore] == index).flatten()
                if local.numel():
                    rows = restore[local]
                    out[rows] = self.branches[self.conditions[index]](padded[rows], features[local])
        for index, name in enumerate(self.conditions[1:], start=1):
            rows = torch.nonzero(chosen == index).flatten()
            if index not in full and rows.numel():
                out[rows, :, :h, :w] = self.restore(x[rows], name)
        return out[..., :h, :w], logits
