"""CMUDRN: Cross-stitched Multi-task Unified Dual Recursive Network, for blind rain and snow removal.

Two Dual Recursive Networks (DRN), one for rain and one for snow, exchange features through cross-stitch
units and are joined by a fusion head:

* DRN stage: conv(6→16)+ReLU on concat(input, current estimate); two residual blocks looped T times with
  shared weights (inner recursion); conv(16→3) + input (global residual). The whole stage is repeated T
  times with shared weights (outer recursion) and every stage's estimate is returned for the recursive loss.
* Cross-stitch units after the head and after each residual block: a learnable convex combination of the
  rain and snow feature maps (α initialised to 0.5).
* Fusion head g(concat(x_rain, x_snow)) = Conv(16→3)(ReLU(Conv(16→16)(ReLU(Conv(6→16)(·))))).

T (`loops`) is not part of the weights: one checkpoint runs at any loop count (1–7), trading quality for
latency. Imports nothing from export or the runtime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgerestore.models.blocks import CrossStitch, ResidualBlock


@dataclass(frozen=True)
class CMUDRNConfig:
    loops: int = 3
    width: int = 16

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CMUDRNOutput:
    restored: torch.Tensor
    rain: torch.Tensor
    snow: torch.Tensor
    rain_stages: list[torch.Tensor]
    snow_stages: list[torch.Tensor]


class DualRecursiveNet(nn.Module):
    """The weights of one DRN; the recursion itself runs in `CMUDRN.forward` so the two DRNs can be stitched."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(6, width, 3, padding=1)
        self.res1 = ResidualBlock(width)
        self.res2 = ResidualBlock(width)
        self.tail = nn.Conv2d(width, 3, 3, padding=1)


class CMUDRN(nn.Module):
    stride = 1
    family = "cmudrn"
    conditions = ("rain", "snow")

    def __init__(self, config: CMUDRNConfig | None = None) -> None:
        super().__init__()
        config = config or CMUDRNConfig()
        if not 1 <= config.loops <= 7:
            raise ValueError(f"CMUDRN loop count T must be in 1..7, got {config.loops}")
        self.config = config
        self.loops = config.loops
        w = config.width
        self.rain = DualRecursiveNet(w)
        self.snow = DualRecursiveNet(w)
        self.stitch_head = CrossStitch()
        self.stitch_res1 = CrossStitch()
        self.stitch_res2 = CrossStitch()
        self.fusion = nn.Sequential(
            nn.Conv2d(6, w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> CMUDRNOutput:
        rain_est, snow_est = x, x
        rain_stages: list[torch.Tensor] = []
        snow_stages: list[torch.Tensor] = []
        for _ in range(self.loops):  # outer recursion, shared weights
            fr = F.relu(self.rain.head(torch.cat([x, rain_est], dim=1)))
            fs = F.relu(self.snow.head(torch.cat([x, snow_est], dim=1)))
            fr, fs = self.stitch_head(fr, fs)
            for _ in range(self.loops):  # inner recursion, shared weights
                fr, fs = self.stitch_res1(self.rain.res1(fr), self.snow.res1(fs))
                fr, fs = self.stitch_res2(self.rain.res2(fr), self.snow.res2(fs))
            rain_est = self.rain.tail(fr) + x
            snow_est = self.snow.tail(fs) + x
            rain_stages.append(rain_est)
            snow_stages.append(snow_est)
        restored = self.fusion(torch.cat([rain_est, snow_est], dim=1))
        return CMUDRNOutput(restored, rain_est, snow_est, rain_stages, snow_stages)

    def with_loops(self, loops: int) -> CMUDRN:
        """The same weights at another loop count (for export per T and the latency sweep)."""
        other = CMUDRN(CMUDRNConfig(loops=loops, width=self.config.width))
        other.load_state_dict(self.state_dict())
        return other.train(self.training)
