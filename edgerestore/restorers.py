"""The restorers `edgerestore eval` and the bench score, each a callable
``restore(bgr_uint8) -> (bgr_uint8, condition | None, probs | None)`` (`RestoreFn`): the identity, the Dark
Channel Prior, a PyTorch checkpoint or model run the way the runtime runs its graphs (`model_restorer`, also
the bench's PyTorch column), an engine bundle through the runtime (`bundle_restorer`).

numpy + OpenCV at import; torch and the runtime are imported only inside the builders that need them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgerestore.baselines import dehaze_dcp
from edgerestore.conditions import CONDITIONS, acts_on, calibrated
from edgerestore.contract import router_thumbnail
from edgerestore.errors import UserError

RestoreFn = Callable[[np.ndarray], tuple[np.ndarray, "str | None", "np.ndarray | None"]]


def identity_restorer(frame: np.ndarray) -> tuple[np.ndarray, None, None]:
    """Returns the frame unchanged and names no condition: the do-nothing reference."""
    return frame, None, None


def dcp_restorer(frame: np.ndarray) -> tuple[np.ndarray, None, None]:
    """The Dark Channel Prior on every frame (a classical dehazer, for comparison)."""
    return dehaze_dcp(frame), None, None


def checkpoint_restorer(
    path: str | Path, device: str = "cpu", threads: int | None = None
) -> tuple[RestoreFn, str]:
    """A restorer running a PyTorch checkpoint on whole frames (`model_restorer`, with the checkpoint's router
    calibration); and its name."""
    import torch

    from edgerestore.models.zoo import load_checkpoint

    if threads:
        torch.set_num_threads(threads)
    model, meta = load_checkpoint(path, map_location=device)
    restore = model_restorer(model, meta.get("router_calibration"), device)
    return restore, f"checkpoint {Path(path).name} ({meta.get('profile', '?')})"


def model_restorer(
    model: Any,
    router_calibration: dict | None = None,
    device: str = "cpu",
    force: str | None = None,
) -> RestoreFn:
    """A PyTorch model as a frame restorer, the way the runtime runs its graphs: uint8 BGR in and out,
    float32 in inference mode, each branch at its resolution (`UFFN.restore`), routed on the runtime's
    thumbnail with the router's calibration (`{temperature, threshold}`; absent: T = 1, threshold 0), an
    unsure or clean frame passed through untouched. `force` (a routed model only): that condition's branch
    without routing, like the runtime's `force`."""
    import torch

    model = model.to(device).eval()
    conditions = tuple(getattr(model, "conditions", CONDITIONS))
    routed = hasattr(model, "router")
    calibration = router_calibration or {}
    temperature, threshold = (
        float(calibration.get("temperature", 1.0)),
        float(calibration.get("threshold", 0)),
    )
    if force is not None and force not in conditions:
        raise UserError(f"force={force!r} is not a condition; expected one of {', '.join(conditions)}")

    def restore(frame: np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1].transpose(2, 0, 1))).to(device)
        x = x.unsqueeze(0).float().div_(255.0)
        with torch.inference_mode():
            if routed and force is not None:
                if force == conditions[0]:
                    return frame, force, None
                restored, probs, predicted = model.restore(x, force), None, force
            elif routed:  # route on the thumbnail the runtime makes (uint8 area resize), not make_thumbnail's
                thumb = router_thumbnail(frame, model.thumbnail_size)[:, :, ::-1].transpose(2, 0, 1)
                thumb = torch.from_numpy(np.ascontiguousarray(thumb)).to(device)
                logits = model.router(thumb.unsqueeze(0).float().div_(255.0))
                probs = calibrated(torch.softmax(logits.double(), dim=1)[0].cpu().numpy(), temperature)
                predicted = conditions[int(probs.argmax())]  # forward(x, condition) would route again
                if not acts_on(probs, threshold):  # clean, or unsure: the frame passes through untouched
                    return frame, predicted, probs
                restored = model.restore(x, predicted)
            else:  # CMUDRNOutput: blind, no router
                restored, probs, predicted = model(x).restored, None, None
        rgb = restored[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray(rgb[:, :, ::-1]), predicted, probs

    return restore


def bundle_restorer(bundle: str | Path) -> tuple[RestoreFn, str]:
    """A restorer running an engine bundle through the runtime (no torch); temporal smoothing is reset
    before every frame, since evaluation frames are unrelated stills."""
    from edgerestore.runtime.restorer import Restorer

    restorer = Restorer.open(bundle)

    def restore(frame: np.ndarray):
        restorer.reset()
        result = restorer(frame)
        # a blind bundle's "blind" is no condition: no router accuracy, no routed clean targets; an unsure
        # frame passed through still counts under the router's own verdict
        if result.probs is not None:
            return result.image, CONDITIONS[int(np.argmax(result.probs))], result.probs
        return result.image, result.condition if result.condition in CONDITIONS else None, None

    return restore, f"bundle {Path(bundle).name}"
