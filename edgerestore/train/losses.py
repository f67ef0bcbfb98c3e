"""The papers' training losses, in PyTorch.

* UFFN: λ1·SmoothL1 + λ2·(1 − SSIM) on the restored frames + cosdecay(λ3)·CrossEntropy on the router.
* CMUDRN: local (each DRN's final estimate on its own condition) + recursive (every stage estimate of that DRN)
  + global (the fusion output), each term (1 − SSIM) + the Frobenius norm of the error. The Frobenius norm is
  divided by √(number of elements) (i.e. the RMSE) so the loss does not grow with the patch size.

Imports nothing from export or the runtime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgerestore.conditions import CONDITIONS


def gaussian_window(size: int = 11, sigma: float = 1.5, device=None, dtype=torch.float32) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per sample [N] (11×11 Gaussian window, σ = 1.5, valid region, per channel then averaged)."""
    c = x.shape[1]
    window = gaussian_window(device=x.device, dtype=x.dtype).expand(c, 1, 11, 11)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x = F.conv2d(x, window, groups=c)
    mu_y = F.conv2d(y, window, groups=c)
    sxx = F.conv2d(x * x, window, groups=c) - mu_x**2
    syy = F.conv2d(y * y, window, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, window, groups=c) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(dim=1)


def cosine_decay(weight: float, progress: float, floor: float = 0.0) -> float:
    """weight·(floor + (1 − floor)·(1 + cos(π·progress))/2) for progress in [0, 1]."""
    progress = min(max(progress, 0.0), 1.0)
    return weight * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class UFFNLossWeights:
    smooth_l1: float = 1.0
    ssim: float = 0.5
    router: float = 0.5
    router_floor: float = 0.1  # the cosine decay of λ3 stops at this fraction


def uffn_loss(
    restored: torch.Tensor,
    target: torch.Tensor,
    logits: torch.Tensor,
    condition: torch.Tensor,
    progress: float,
    weights: UFFNLossWeights = UFFNLossWeights(),
) -> tuple[torch.Tensor, dict[str, float]]:
    """Restoration terms over the non-clean samples (clean ones pass through unchanged), router term over all."""
    ce = F.cross_entropy(logits, condition)
    lam3 = cosine_decay(weights.router, progress, weights.router_floor)
    restore = condition != CONDITIONS.index("clean")
    if restore.any():
        restoration, parts = restoration_loss(restored[restore], target[restore], weights)
    else:
        restoration = restored.sum() * 0.0
        parts = {"smooth_l1": 0.0, "1-ssim": 0.0}
    total = restoration + lam3 * ce
    return total, {"loss": total.item(), **parts, "ce": ce.item()}


def restoration_loss(
    restored: torch.Tensor, target: torch.Tensor, weights: UFFNLossWeights = UFFNLossWeights()
) -> tuple[torch.Tensor, dict[str, float]]:
    """UFFN's restoration terms λ1·SmoothL1 + λ2·(1 − SSIM) (without the router's cross-entropy)."""
    l1 = F.smooth_l1_loss(restored, target, beta=0.01)
    s = 1 - ssim(restored, target).mean()
    return weights.smooth_l1 * l1 + weights.ssim * s, {"smooth_l1": l1.item(), "1-ssim": s.item()}


def _ssim_frobenius(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    rmse = torch.sqrt(((out - target) ** 2).flatten(1).mean(dim=1) + 1e-12)
    return (1 - ssim(out, target)).mean() + rmse.mean()


def cmudrn_loss(
    output, target: torch.Tensor, condition: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """CMUDRN's local + recursive + global loss. `condition` holds CONDITIONS indices (rain or snow)."""
    rain = condition == CONDITIONS.index("rain")
    snow = condition == CONDITIONS.index("snow")
    local = recursive = target.new_zeros(())
    for mask, final, stages in (
        (rain, output.rain, output.rain_stages),
        (snow, output.snow, output.snow_stages),
    ):
        if mask.any():
            local = local + _ssim_frobenius(final[mask], target[mask])
            recursive = recursive + sum(_ssim_frobenius(s[mask], target[mask]) for s in stages) / len(stages)
    global_ = _ssim_frobenius(output.restored, target)
    total = local + recursive + global_
    return total, {
        "loss": total.item(),
        "local": float(local),
        "recursive": float(recursive),
        "global": global_.item(),
    }
