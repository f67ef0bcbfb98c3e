"""The branch stage (`edgerestore train --branch-only NAME`): fine-tune one condition's branch of a UFFN
checkpoint on that condition's pairs, router, trunk and the other branches frozen bit for bit, through the
trainer's one loop; or take that branch of a checkpoint trained on a copy (`--branch-from`).

Imports nothing from export or the runtime.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch.utils.data import Dataset

from edgerestore.errors import UserError
from edgerestore.files import sha256_file
from edgerestore.models import zoo
from edgerestore.models.uffn import DEFAULT_DECODER, UFFN
from edgerestore.progress import Progress
from edgerestore.train.config import TrainConfig
from edgerestore.train.losses import restoration_loss
from edgerestore.train.part_stage import _open_stage_checkpoint, _resume_stage, _stage_save, _train_part
from edgerestore.train.stage_data import stage_images
from edgerestore.train.trainer import _lr_lambda, _psnr_unit, _Stage


@torch.inference_mode()
def branch_psnr(model: UFFN, name: str, val_set: Dataset, samples: int) -> dict:
    """Mean RGB PSNR of branch `name` (forced) and of the input on the first `samples` validation pairs."""
    model.eval()
    out_psnr, in_psnr = [], []
    for i in range(min(samples, len(val_set))):
        item = val_set[i]
        x, y = item["input"][None], item["target"][None]
        out_psnr.append(_psnr_unit(model.restore(x, name).clamp(0, 1), y))  # no router: the branch is given
        in_psnr.append(_psnr_unit(x, y))
    return {f"psnr/{name}": float(np.mean(out_psnr)), f"input_psnr/{name}": float(np.mean(in_psnr))}


REAL_PAIR_SHARE = 0.75  # of the haze stage's items with real-depth pairs (--paired): measured depth leads


def branch_datasets(cfg: TrainConfig, name: str) -> tuple[Dataset, Dataset]:
    """(training, validation) sets of branch `name`: synthetic weather on the clean photographs / road
    frames, interleaved with (a share REAL_PAIR_SHARE of) the real pairs of `cfg.paired` for haze
    (re-synthesised at new densities and airlights from their measured transmission); validation on the held-out real pairs when
    the hold-out names some, else on synthetic weather over the held-out (or all) clean images."""
    from edgerestore.data.datasets import InterleavedDataset, RealHazeDataset
    from edgerestore.data.synthetic import SyntheticWeatherDataset

    images = stage_images(cfg, real=False)
    synthetic = SyntheticWeatherDataset(
        patch_size=cfg.patch_size,
        conditions=(name,),
        seed=cfg.seed,
        images=images.train,
        streaks=images.streaks,
    )
    synthetic_val = SyntheticWeatherDataset(
        patch_size=256,
        conditions=(name,),
        seed=cfg.seed + 10_000,
        augment=False,
        images=images.val,
        streaks=images.streaks,
    )
    if not cfg.paired:
        return synthetic, synthetic_val
    if name != "haze":
        raise UserError(
            f"--branch-only {name} --paired: real pairs train the haze branch only (real-depth haze); "
            f"{name} trains on synthetic weather"
        )
    real = RealHazeDataset(cfg.paired, cfg.patch_size, seed=cfg.seed, split="train", hold_out=cfg.hold_out)
    train_set = InterleavedDataset([synthetic, real], [1.0 - REAL_PAIR_SHARE, REAL_PAIR_SHARE])
    try:
        val_set: Dataset = RealHazeDataset(
            cfg.paired, None, seed=cfg.seed, split="val", hold_out=cfg.hold_out
        )
    except UserError:  # nothing held out: validate on synthetic haze
        val_set = synthetic_val
    return train_set, val_set


def train_branch(cfg: TrainConfig, name: str, progress: Progress | bool = True) -> dict:
    """Fine-tune one condition's branch of the UFFN checkpoint `cfg.out` on that condition's synthetic pairs;
    router, trunk and the other branches are frozen (bit for bit), so their evaluations still hold.

    Branches are independent graphs after the shared trunk, so a better recipe for one condition (e.g. a
    new synthetic prior) does not need the whole model retrained. The stage keeps its own step, optimizer and
    schedule under ``branch_stages[name]`` in the checkpoint and resumes exactly; its log is
    ``<out>.<name>.log.jsonl``.
    """
    clean = "--branch-only trains on synthetic weather: give --clean DIR"
    payload, model = _open_stage_checkpoint(
        cfg, "--branch-only", "fine-tunes a branch", None if cfg.branch_from is not None else clean
    )
    if name not in model.branches:
        raise UserError(f"--branch-only {name!r}: the branches are {', '.join(model.branches)}")
    if cfg.branch_from is not None:
        return _copy_branch(cfg, name, payload)
    saved = payload.get("config", {}).get("branch_decoders") or {}
    was = {b: saved.get(b, DEFAULT_DECODER) for b in model.branches}  # the checkpoint's decoders
    changed = sorted(b for b in model.branches if was[b] != model.branch_decoder(b))
    others = [b for b in changed if b != name]
    if others:
        raise UserError(
            f"--branch-only {name}: only the {name} branch's decoder may change; the {others[0]} branch's would "
            f"change from {was[others[0]]} to {model.branch_decoder(others[0])}"
        )
    state, fresh = payload["model"], name in changed
    if fresh:  # --set branch_decoders=…: this branch's decoder starts afresh, everything else is loaded
        prefix = f"branches.{name}.decoder."
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=not fresh)
    except RuntimeError as exc:
        raise UserError(
            f"{cfg.out} does not match profile {cfg.profile}: {str(exc).splitlines()[0]}"
        ) from None
    if fresh and (unexpected or any(not k.startswith(prefix) for k in missing)):
        raise UserError(
            f"{cfg.out} does not match profile {cfg.profile} at "
            f"{(unexpected or [k for k in missing if not k.startswith(prefix)])[0]}"
        )
    if fresh:
        print(
            f"the {name} branch's decoder: {was[name]} -> {model.branch_decoder(name)} (new weights)",
            file=sys.stderr,
        )
    branch = model.branch(name)
    for param in model.parameters():
        param.requires_grad_(False)
    for param in branch.parameters():
        param.requires_grad_(True)
    opt = torch.optim.AdamW(branch.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    # a new decoder is a new stage: the recorded one (if any) trained the old decoder's parameters
    stage = {} if fresh else (payload.get("branch_stages") or {}).get(name) or {}
    resume = _resume_stage(cfg, stage, opt, sched, f"the {name} branch")
    train_set, val_set = branch_datasets(cfg, name)

    def step_loss(batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        # the composition the runtime runs, at the branch's resolution; only the branch has gradients
        loss, parts = restoration_loss(model.restore(batch["input"], name), batch["target"], cfg.loss)
        return loss, {"loss": loss.item(), **parts}

    def evaluate(step: int) -> tuple[dict, str]:
        metrics = branch_psnr(model, name, val_set, cfg.val_samples)
        branch.train()
        return metrics, ", ".join(f"{k} {v:.2f}" for k, v in metrics.items())

    def place(record: dict) -> None:
        # the config too: --set branch_scales=… / branch_decoders=… gives the branch what it was trained with
        payload["config"] = model.config.to_dict()
        payload["branch_stages"] = {**(payload.get("branch_stages") or {}), name: record}

    save, log = _stage_save(cfg, model, payload, place, opt, sched), cfg.out.with_suffix(f".{name}.log.jsonl")
    hooks = _Stage(log, f"{cfg.profile} {name} branch", step_loss, evaluate, save, ("loss", ".4f"))
    return _train_part(cfg, model, branch, hooks, train_set, opt, sched, resume, progress)


def _copy_branch(cfg: TrainConfig, name: str, payload: dict) -> dict:
    """Put branch `name` of checkpoint `cfg.branch_from` into `cfg.out`: its weights, its resolution and
    decoder, and its stage record. A branch reads only the frame and the trunk's features, so a branch
    fine-tuned on a copy of `cfg.out` (several branch stages at once on copies) equals the same stage run
    on `cfg.out` itself — provided the router-independent rest it was trained against, the trunk, is the
    same bit for bit, which is checked."""
    other = zoo.read_payload(cfg.branch_from)
    if other.get("profile") != cfg.profile or other.get("family") != "uffn":
        raise UserError(f"--branch-from {cfg.branch_from} holds {other.get('profile')}, not {cfg.profile}")
    trunk = [k for k in payload["model"] if k.startswith(("encoder.", "experts."))]
    differs = [
        k for k in trunk if k not in other["model"] or not torch.equal(other["model"][k], payload["model"][k])
    ]
    if differs:
        raise UserError(
            f"--branch-from {cfg.branch_from}: its trunk differs from {cfg.out}'s (at {differs[0]}); "
            "its branch was trained on other features"
        )
    prefix = f"branches.{name}."
    for key in [k for k in payload["model"] if k.startswith(prefix)]:
        del payload["model"][key]
    payload["model"].update({k: v for k, v in other["model"].items() if k.startswith(prefix)})
    config, theirs = dict(payload.get("config") or {}), other.get("config") or {}
    for key in ("branch_scales", "branch_decoders"):
        mine = dict(config.get(key) or {})
        mine.pop(name, None)
        if name in (theirs.get(key) or {}):
            mine[name] = theirs[key][name]
        config[key] = mine
    model = zoo.build(cfg.profile, **config)
    model.load_state_dict(payload["model"])  # the merged checkpoint builds and loads as one model
    payload["config"] = model.config.to_dict()
    stage = (other.get("branch_stages") or {}).get(name) or {}
    stage = {k: v for k, v in stage.items() if k not in ("optimizer", "scheduler")}
    stage.update(copied_from=str(cfg.branch_from), copied_sha256=sha256_file(cfg.branch_from))
    payload["branch_stages"] = {**(payload.get("branch_stages") or {}), name: stage}
    zoo.save_payload(cfg.out, payload)
    print(f"{name} branch of {cfg.out} copied from {cfg.branch_from}", file=sys.stderr)
    return {k: v for k, v in stage.items() if k.startswith(("psnr/", "input_psnr/"))}
