"""Named model profiles, checkpoint I/O and complexity counting (parameters, multiply-accumulates).

Imports nothing from export or the runtime.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgerestore.errors import UserError
from edgerestore.files import sha256_file, write_bytes_atomic
from edgerestore.models.cmudrn import CMUDRN, CMUDRNConfig
from edgerestore.models.uffn import UFFN, UFFNConfig


@dataclass(frozen=True)
class Profile:
    name: str
    family: str  # "uffn" | "cmudrn"
    config: dict
    summary: str


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile(
            "uffn-tiny",
            "uffn",
            dict(width=16, experts=3, expert_blocks=1, branch_blocks=1, expert_dilations=(1, 2, 4)),
            "real time on 2 CPU cores",
        ),
        Profile(
            "uffn-small",
            "uffn",
            dict(width=24, experts=3, expert_blocks=2, branch_blocks=1, expert_dilations=(1, 2, 4)),
            "embedded GPU (Jetson Orin) real time",
        ),
        Profile(
            "uffn-base",
            "uffn",
            dict(
                width=64,
                experts=4,
                expert_blocks=3,
                branch_blocks=2,
                expert_dilations=(1, 2, 4, 8),
                norm="instance",
            ),
            "paper-like widths, GPU",
        ),
        Profile("cmudrn-t3", "cmudrn", dict(loops=3, width=16), "CMUDRN, T = 3 loops"),
        Profile("cmudrn-t7", "cmudrn", dict(loops=7, width=16), "CMUDRN, T = 7 loops (the paper's best)"),
    ]
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UserError(f"unknown profile {name!r}; expected one of {', '.join(PROFILES)}") from None


def build(profile: str | Profile, **overrides) -> nn.Module:
    """A freshly initialised model for a profile (keyword overrides change its config). A config key the
    family's config does not have is a one-line `UserError` (e.g. a checkpoint from a newer version)."""
    import dataclasses

    p = get_profile(profile) if isinstance(profile, str) else profile
    config = {**p.config, **overrides}
    cls = UFFNConfig if p.family == "uffn" else CMUDRNConfig
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise UserError(
            f"{p.name} ({p.family}) has no config field {unknown[0]!r} in this edgerestore "
            f"(fields: {', '.join(sorted(known))})"
        )
    if p.family == "uffn":
        if "expert_dilations" in config:
            config["expert_dilations"] = tuple(config["expert_dilations"])
        return UFFN(UFFNConfig(**config))
    return CMUDRN(CMUDRNConfig(**config))


def save_payload(path: str | Path, payload: dict) -> Path:
    """`torch.save` a checkpoint dict atomically (readers and resumed runs never see half a file)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def save_checkpoint(path: str | Path, model: nn.Module, profile: str, **extra) -> Path:
    """Write a checkpoint atomically: profile, family, config, weights, plus any extra fields."""
    payload = {
        "profile": profile,
        "family": model.family,
        "config": model.config.to_dict(),
        "model": model.state_dict(),
        **extra,
    }
    return save_payload(path, payload)


def read_payload(path: str | Path, map_location: str = "cpu") -> dict:
    """The dict of an edgerestore checkpoint, or a one-line `UserError` for a missing, truncated, empty,
    corrupt or foreign file, an unknown profile, or a family that disagrees with its profile."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} not found; train one with `edgerestore train` or use weights/*.pt"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        raise UserError(
            f"checkpoint {path} is not a readable PyTorch file ({type(exc).__name__}: truncated or corrupt?)"
        ) from None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("model"), dict)
        or "profile" not in payload
    ):
        raise UserError(f"checkpoint {path} is not an edgerestore checkpoint (no profile/model fields)")
    if not isinstance(payload.get("config", {}), dict):
        raise UserError(f"checkpoint {path} has a config that is not a mapping")
    profile = get_profile(str(payload["profile"]))
    if payload.get("family", profile.family) != profile.family:
        raise UserError(
            f"checkpoint {path} says family {payload.get('family')!r} but its profile {profile.name} is "
            f"{profile.family}; the file is inconsistent"
        )
    return payload


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, the checkpoint's other fields). One-line errors for missing or foreign files."""
    path = Path(path)
    payload = read_payload(path, map_location)
    profile = get_profile(payload["profile"])
    try:
        model = build(profile, **payload.get("config", {}))
    except UserError as exc:
        raise UserError(f"checkpoint {path}: {exc} (written by another edgerestore version?)") from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"checkpoint {path} has a config this edgerestore cannot build: {exc}") from None
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"checkpoint {path} does not match profile {profile.name}: {first}") from None
    model.eval()
    meta = {k: v for k, v in payload.items() if k != "model"}
    meta["sha256"] = sha256_file(path)
    return model, meta


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, run) -> int:
    """Multiply-accumulates of Conv2d, ConvTranspose2d and Linear layers during `run()` (the rest is small)."""
    total = 0

    def conv_hook(layer: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        k = layer.kernel_size[0] * layer.kernel_size[1]
        total += output.numel() * (layer.in_channels // layer.groups) * k

    def deconv_hook(layer: nn.ConvTranspose2d, inputs, output) -> None:
        nonlocal total
        k = layer.kernel_size[0] * layer.kernel_size[1]
        total += inputs[0].numel() * (layer.out_channels // layer.groups) * k

    def linear_hook(layer: nn.Linear, inputs, output) -> None:
        nonlocal total
        total += output.numel() * layer.in_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(deconv_hook))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with torch.inference_mode():
            run()
    finally:
        for h in handles:
            h.remove()
    return total


def routed_macs(model: nn.Module, height: int, width: int) -> int:
    """MACs of one frame: UFFN routed to one branch (router + trunk + branch), or CMUDRN's whole pass.

    The ShareSepConv depthwise convolutions are functional calls and are counted separately."""
    model = model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, height + (-height) % model.stride, width + (-width) % model.stride, device=device)
    if isinstance(model, UFFN):
        first = model.conditions[1]

        def run() -> None:
            model.router(model.make_thumbnail(x))
            model.branch(first)(x, model.trunk(x))

        macs = count_macs(model, run)
    else:
        macs = count_macs(model, lambda: model(x))
    return macs + _sharesep_macs(model, x)


def _sharesep_macs(model: nn.Module, x: torch.Tensor) -> int:
    from edgerestore.models.blocks import ShareSepConv

    total = 0

    def hook(layer: ShareSepConv, inputs, output) -> None:
        nonlocal total
        total += output.numel() * layer.kernel_size**2

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ShareSepConv)]
    try:
        with torch.inference_mode():
            if isinstance(model, UFFN):
                model.branch(model.conditions[1])(x, model.trunk(x))
            else:
                model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def zoo_table() -> list[dict]:
    """Params (total, and what one routed frame touches) and GMACs at 256×256 and 640×360 per profile."""
    rows = []
    for name, profile in PROFILES.items():
        with torch.device("meta"):  # shapes only: counting needs no memory and no arithmetic
            model = build(profile)
        total = count_parameters(model)
        if isinstance(model, UFFN):
            routed = total - sum(
                count_parameters(b) for n, b in model.branches.items() if n != model.conditions[1]
            )
        else:
            routed = total
        rows.append(
            dict(
                profile=name,
                family=profile.family,
                params=total,
                params_routed=routed,
                gmacs_256=routed_macs(model, 256, 256) / 1e9,
                gmacs_640x360=routed_macs(model, 360, 640) / 1e9,
                summary=profile.summary,
            )
        )
    return rows
