"""What the two part stages share — the router stage and a branch stage, each training one part of a
frozen UFFN checkpoint (`cfg.out`) in one process: opening that checkpoint, resuming the stage's own
optimizer and schedule, the trainer's one loop (`trainer._loop`) over the part, and the stage's checkpoint
(the whole payload with the stage's record in it).

Imports nothing from export or the runtime.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgerestore.errors import UserError
from edgerestore.models import zoo
from edgerestore.models.uffn import UFFN
from edgerestore.progress import Progress
from edgerestore.train.config import TrainConfig
from edgerestore.train.stage_data import StepSampler
from edgerestore.train.trainer import _loop, _Stage


def _open_stage_checkpoint(
    cfg: TrainConfig, flag: str, what: str, clean_message: str | None
) -> tuple[dict, UFFN]:
    """Threads and seed for a stage (`--router-only`, `--branch-only`), then the UFFN checkpoint it trains
    (`cfg.out`), refused in one line when missing or of another profile, and the model its config (with the
    run's `--set` values) builds, weights not loaded yet; `clean_message` (when given) is the error for a
    missing --clean."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if not cfg.out.is_file():
        raise UserError(f"{flag} {what} of an existing checkpoint; {cfg.out} not found")
    if clean_message and not cfg.clean_dir:
        raise UserError(clean_message)
    payload = zoo.read_payload(cfg.out)
    if payload.get("profile") != cfg.profile or payload.get("family") != "uffn":
        raise UserError(f"{cfg.out} holds {payload.get('profile')}; {flag} needs a UFFN {cfg.profile}")
    return payload, zoo.build(cfg.profile, **{**payload.get("config", {}), **cfg.overrides})


def _resume_stage(cfg: TrainConfig, stage: dict, opt, sched, what: str) -> tuple[int, float]:
    """(start step, wall seconds so far) of a stage: an unfinished one resumes its optimizer and schedule;
    a finished one (or none) starts a fresh schedule."""
    if not stage or stage.get("step", 0) >= stage.get("steps", 0):
        return 0, 0.0
    opt.load_state_dict(stage["optimizer"])
    sched.load_state_dict(stage["scheduler"])
    start = int(stage["step"])
    print(f"resuming {what} of {cfg.out} at step {start}", file=sys.stderr)
    return start, float(stage.get("wall_seconds", 0.0))


def _train_part(
    cfg: TrainConfig,
    model: UFFN,
    part: nn.Module,
    stage: _Stage,
    dataset: Dataset,
    opt,
    sched,
    resume: tuple[int, float],
    progress: Progress | bool,
) -> dict:
    """`_loop` for a stage that trains one part (`part`) of a frozen UFFN on `dataset` (exact-resume
    sampling, one process): the frozen parts stay in eval mode (BatchNorm statistics included)."""
    end = min(cfg.steps, cfg.stop_at or cfg.steps)
    loader = DataLoader(
        dataset,
        batch_sampler=StepSampler(len(dataset), cfg.batch_size, resume[0], end, cfg.seed, 0, 1),
        num_workers=cfg.workers,
    )
    model.eval()
    part.train()
    return _loop(cfg, stage, loader, opt, sched, resume, progress)


def _stage_save(
    cfg: TrainConfig, model: UFFN, payload: dict, place: Callable[[dict], None], opt, sched
) -> Callable[[int, float, dict], None]:
    """The checkpoint of a stage that trains one part of a frozen UFFN: the whole `payload` with today's
    weights, and the stage's record (step, optimizer, schedule, command, config, metrics) put in it by
    `place`, written atomically."""

    def save(step: int, wall: float, metrics: dict) -> None:
        payload["model"] = model.state_dict()
        place(
            dict(
                step=step,
                steps=cfg.steps,
                optimizer=opt.state_dict(),
                scheduler=sched.state_dict(),
                wall_seconds=wall,
                command=" ".join(sys.argv),
                config=cfg.to_dict(),
                **metrics,
            )
        )
        zoo.save_payload(cfg.out, payload)

    return save
