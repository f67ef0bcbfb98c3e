"""The router stage (`edgerestore train --router-only`): train only the path router of a UFFN checkpoint on
whole-frame thumbnails, everything else frozen, through the trainer's one loop; calibrate its confidence
(temperature, do-no-harm threshold) when it finishes; or take the router of another checkpoint
(`--router-from`).

Imports nothing from export or the runtime.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from edgerestore.conditions import CONDITIONS
from edgerestore.errors import UserError
from edgerestore.models import zoo
from edgerestore.models.uffn import UFFN
from edgerestore.progress import Progress
from edgerestore.train.config import TrainConfig
from edgerestore.train.part_stage import _open_stage_checkpoint, _resume_stage, _stage_save, _train_part
from edgerestore.train.stage_data import stage_images
from edgerestore.train.trainer import _lr_lambda, _Stage


@torch.inference_mode()
def router_accuracy(model: UFFN, thumbnails: Dataset, samples: int) -> tuple[float, list[list[int]]]:
    """Accuracy and confusion matrix (rows: true condition, columns: routed) on whole-frame thumbnails."""
    model.eval()
    confusion = [[0] * len(CONDITIONS) for _ in CONDITIONS]
    for start in range(0, samples, 50):
        items = [thumbnails[i] for i in range(start, min(samples, start + 50))]
        pred = model.router(torch.stack([it["thumbnail"] for it in items])).argmax(1).tolist()
        for it, p in zip(items, pred):
            confusion[int(it["condition"])][p] += 1
    correct = sum(confusion[i][i] for i in range(len(CONDITIONS)))
    return correct / max(1, samples), confusion


def train_router(cfg: TrainConfig, progress: Progress | bool = True) -> dict:
    """Train only the path router of the UFFN checkpoint `cfg.out` on whole-frame thumbnails; the rest is frozen.

    The router is a separate graph that reads a thumbnail, so it can learn on its own, with a larger batch
    and learning rate than the restoration parts, from as many synthetic frames as it needs. The stage keeps
    its own step, optimizer and schedule under "router_stage" in the checkpoint, so it resumes exactly too.
    A router whose shape changed (e.g. more convolutions) starts afresh; the rest of the model must match.
    """
    from edgerestore.data.router_thumbnails import RouterThumbnailDataset

    clean = "UFFN's router trains on synthetic weather: give --clean DIR"
    payload, model = _open_stage_checkpoint(
        cfg, "--router-only", "trains the router", None if cfg.router_from is not None else clean
    )
    router_keys = {k for k in model.state_dict() if k.startswith("router_net.")}
    saved = payload["model"]
    fresh_router = any(
        k not in saved or saved[k].shape != v.shape for k, v in model.state_dict().items() if k in router_keys
    )
    weights = {k: v for k, v in saved.items() if not (fresh_router and k.startswith("router_net."))}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if set(missing) - router_keys or [k for k in unexpected if not k.startswith("router_net.")]:
        raise UserError(f"{cfg.out} does not match profile {cfg.profile} outside the router")
    if cfg.router_from is not None:
        return _copy_router(cfg, model, payload)
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("router_net."))
    opt = torch.optim.AdamW(model.router_net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    stage = {} if fresh_router else (payload.get("router_stage") or {})
    resume = _resume_stage(cfg, stage, opt, sched, "the router")
    if fresh_router:
        print(f"router of {cfg.out} changed shape: training it from scratch", file=sys.stderr)
        # the main stage's optimizer state no longer matches the router's parameters
        payload.pop("optimizer", None)
        payload.pop("scheduler", None)
    size = model.thumbnail_size
    images = stage_images(cfg)
    val_set = RouterThumbnailDataset(
        size=size, seed=cfg.seed + 10_000, images=images.val, real=images.real_val, streaks=images.streaks
    )

    def step_loss(batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        loss = nn.functional.cross_entropy(model.router(batch["thumbnail"]), batch["condition"])
        return loss, {"ce": loss.item()}

    def evaluate(step: int) -> tuple[dict, str]:
        acc, confusion = router_accuracy(model, val_set, cfg.val_samples)
        model.router_net.train()
        return {
            "router_acc": acc,
            "confusion": confusion,
        }, f"router accuracy {acc:.3f} on {cfg.val_samples} thumbnails"

    def place(record: dict) -> None:
        payload["config"] = model.config.to_dict()
        payload["router_stage"] = record
        # the confidence calibration belongs to these router weights: a new router step invalidates it
        payload.pop("router_calibration", None)

    train_set = RouterThumbnailDataset(
        size=size, seed=cfg.seed, images=images.train, real=images.real_train, streaks=images.streaks
    )
    save, log = _stage_save(cfg, model, payload, place, opt, sched), cfg.out.with_suffix(".router.log.jsonl")
    hooks = _Stage(log, f"{cfg.profile} router", step_loss, evaluate, save, ("ce", ".3f"))
    metrics = _train_part(cfg, model, model.router_net, hooks, train_set, opt, sched, resume, progress)
    stage = payload.get("router_stage") or {}
    if stage.get("step", 0) >= stage.get("steps", 1):  # finished: calibrate its confidence on validation
        payload["router_calibration"] = calibrate_router(model, val_set, max(cfg.val_samples, 500))
        zoo.save_payload(cfg.out, payload)
        cal = payload["router_calibration"]
        try:
            from edgerestore.train.router_plot import plot_router_tradeoff

            picture = plot_router_tradeoff(cal, cfg.out.with_suffix(".router_tradeoff.png"), cfg.profile)
            print(f"router trade-off: {picture}", file=sys.stderr)
        except ImportError:  # matplotlib is part of the train extra; the record is what matters
            pass
        print(
            f"router calibration: temperature {cal['temperature']:.3f}, threshold {cal['threshold']:.3f} "
            f"(clean frames untouched {cal['clean_untouched']:.1%} on {cal['samples']} validation thumbnails)",
            file=sys.stderr,
        )
    return metrics


CLEAN_UNTOUCHED_TARGET = 0.99  # the share of clean validation frames the threshold must leave untouched


@torch.inference_mode()
def calibrate_router(model: UFFN, thumbnails: Dataset, samples: int) -> dict:
    """Temperature scaling of the router on held-out thumbnails (the T that minimises their negative
    log-likelihood, searched on a log grid), then the do-no-harm threshold: the smallest confidence τ at which
    `conditions.acts_on` leaves ≥ `CLEAN_UNTOUCHED_TARGET` of the clean thumbnails untouched. Returns the
    record the checkpoint, model.json and the bundle manifest carry, with the trade-off curve per condition
    (share restored by the right branch, share passed through) for the README's picture."""
    from edgerestore.conditions import acts_on, calibrated

    model.eval()
    logits, labels = [], []
    for start in range(0, samples, 50):
        items = [thumbnails[i] for i in range(start, min(samples, start + 50))]
        logits.append(model.router(torch.stack([it["thumbnail"] for it in items])).double())
        labels += [int(it["condition"]) for it in items]
    z, y = torch.cat(logits), torch.tensor(labels)
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 161))
    nll = [float(nn.functional.cross_entropy(z / t, y)) for t in grid]
    temperature = float(grid[int(np.argmin(nll))])
    probs = calibrated(torch.softmax(z, 1).numpy(), temperature)
    taus = np.round(np.linspace(0.0, 0.99, 100), 2)
    curve: dict[str, dict[str, list[float]]] = {}
    y_np = y.numpy()
    acted = np.array([[acts_on(p, t) for p in probs] for t in taus])  # [tau, sample]
    pred = probs.argmax(1)
    for k, name in enumerate(CONDITIONS):
        mask = y_np == k
        if not mask.any():
            continue
        if name == "clean":
            curve[name] = {"untouched": (1.0 - acted[:, mask].mean(1)).tolist()}
        else:
            right = acted[:, mask] & (pred[mask] == k)[None]
            curve[name] = {
                "restored_right": right.mean(1).tolist(),
                "passed_through": (1.0 - acted[:, mask].mean(1)).tolist(),
            }
    untouched = np.array(curve["clean"]["untouched"]) if "clean" in curve else np.ones(len(taus))
    ok = np.nonzero(untouched >= CLEAN_UNTOUCHED_TARGET)[0]
    i = int(ok[0]) if len(ok) else len(taus) - 1
    accuracy = float((pred == y_np).mean())
    return {
        "temperature": temperature,
        "threshold": float(taus[i]),
        "clean_untouched": float(untouched[i]),
        "target": CLEAN_UNTOUCHED_TARGET,
        "samples": int(len(y_np)),
        "accuracy": accuracy,
        "nll": {"before": float(nn.functional.cross_entropy(z, y)), "after": float(min(nll))},
        "curve": {"threshold": taus.tolist(), **curve},
    }


def _copy_router(cfg: TrainConfig, model: UFFN, payload: dict) -> dict:
    """Put the router of checkpoint `cfg.router_from` into `cfg.out`: the router only reads the thumbnail, so a
    router trained for one profile serves any profile with the same router config and thumbnail size (with
    the same seed and command, training it again would give the same weights bit for bit)."""
    other, meta = zoo.load_checkpoint(cfg.router_from)
    keys = ("router_width", "router_convs", "thumbnail_size")
    mine, theirs = [model.config.to_dict().get(k) for k in keys], [meta["config"].get(k) for k in keys]
    if meta.get("family") != "uffn" or mine != theirs:
        raise UserError(
            f"--router-from {cfg.router_from}: its router ({theirs}) differs from {cfg.profile}'s ({mine})"
        )
    model.router_net.load_state_dict(other.router_net.state_dict())
    payload.pop("optimizer", None)  # the main stage's optimizer state no longer matches the router
    payload.pop("scheduler", None)
    payload["model"] = model.state_dict()
    stage = {k: v for k, v in (meta.get("router_stage") or {}).items() if k not in ("optimizer", "scheduler")}
    payload["router_stage"] = {**stage, "copied_from": str(cfg.router_from), "copied_sha256": meta["sha256"]}
    # the confidence calibration belongs to the router's weights: it travels with them
    if meta.get("router_calibration"):
        payload["router_calibration"] = meta["router_calibration"]
    else:
        payload.pop("router_calibration", None)
    zoo.save_payload(cfg.out, payload)
    print(f"router of {cfg.out} copied from {cfg.router_from}", file=sys.stderr)
    return {k: v for k, v in stage.items() if k in ("router_acc", "confusion")}
