"""Training loop for UFFN and CMUDRN: AdamW, warm-up + cosine LR, periodic validation, atomic checkpoints with
exact resume, deterministic seeds, and multi-GPU / multi-node data parallelism through `torchrun` (DDP).

One loop (`_loop`) runs every stage through its hooks (`_Stage`): the joint run (`train`, here), the router
stage (`train/router_stage.py`) and a branch stage (`train/branch_stage.py`), which share
`train/part_stage.py`. Settings: `train/config.py`; data: `train/stage_data.py`.

Determinism: the samples of step s on rank r are a pure function of (seed, s, r), and model, optimizer, LR
schedule and step are all checkpointed, so a resumed run continues exactly as an uninterrupted one.

Imports nothing from export or the runtime.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgerestore.conditions import CONDITIONS
from edgerestore.errors import UserError
from edgerestore.files import sha256_file
from edgerestore.models import zoo
from edgerestore.models.uffn import UFFN
from edgerestore.progress import Progress, as_progress
from edgerestore.train.config import TrainConfig
from edgerestore.train.losses import cmudrn_loss, uffn_loss
from edgerestore.train.stage_data import StepSampler, build_datasets


# ----------------------------------------------------------------------------------------------- model step
class TrainStep(nn.Module):
    """What DDP wraps: one forward over a restoration batch (teacher-forced branches) and a router batch."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> tuple:
        if isinstance(self.model, UFFN):
            # forward's own logits come from the patch's thumbnail; the router learns from whole frames instead
            restored, _ = self.model(batch["input"], batch["condition"])
            return restored, self.model.router(batch["thumbnail"])
        return (self.model(batch["input"]),)


def compute_loss(model: nn.Module, outputs: tuple, batch: dict, progress: float, cfg: TrainConfig):
    if isinstance(model, UFFN):
        restored, logits = outputs
        return uffn_loss(restored, batch["target"], logits, batch["thumbnail_condition"], progress, cfg.loss)
    return cmudrn_loss(outputs[0], batch["target"], batch["condition"])


# ----------------------------------------------------------------------------------------------- validation
def _psnr_unit(out: torch.Tensor, target: torch.Tensor) -> float:
    """RGB PSNR of tensors in [0, 1] (capped at 100 dB for identical images): the training logs' measure."""
    return float(10 * np.log10(1 / max(float(((out - target) ** 2).mean()), 1e-10)))


@torch.inference_mode()
def validate(model: nn.Module, val_set: Dataset, samples: int) -> dict:
    """PSNR (RGB, [0,1]) per condition with the true branch, and router accuracy on whole-frame thumbnails."""
    model.eval()
    psnr: dict[str, list[float]] = {}
    input_psnr: dict[str, list[float]] = {}
    correct = total = 0
    for i in range(min(samples, len(val_set))):
        item = val_set[i]
        x, y = item["input"][None], item["target"][None]
        cond = torch.tensor([int(item["condition"])])
        if isinstance(model, UFFN):
            out, _ = model(x, cond)
            logits = model.router(item["thumbnail"][None])
            correct += int(logits.argmax(1).item() == int(item["thumbnail_condition"]))
            total += 1
        else:
            out = model(x).restored
        name = CONDITIONS[int(cond)]
        psnr.setdefault(name, []).append(_psnr_unit(out.clamp(0, 1), y))
        input_psnr.setdefault(name, []).append(_psnr_unit(x, y))
    model.train()
    result = {f"psnr/{k}": float(np.mean(v)) for k, v in sorted(psnr.items())}
    result.update({f"input_psnr/{k}": float(np.mean(v)) for k, v in sorted(input_psnr.items())})
    if total:
        result["router_acc"] = correct / total
    return result


# ----------------------------------------------------------------------------------------------- the loop
def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        floor = cfg.min_lr / cfg.lr
        return floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0)))

    return f


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _save(cfg: TrainConfig, model: nn.Module, opt, sched, step: int, wall: float, history: list) -> None:
    zoo.save_checkpoint(
        cfg.out,
        model,
        cfg.profile,
        step=step,
        optimizer=opt.state_dict(),
        scheduler=sched.state_dict(),
        train=dict(
            config=cfg.to_dict(), command=" ".join(sys.argv), wall_seconds=wall, history=history[-200:]
        ),
    )


class TrainingInterrupted(Exception):
    """SIGTERM or Ctrl-C stopped a run after checkpointing step `step` of `steps` (the CLI exits 128 + the
    signal number, so a scheduler can tell a preempted run from a finished one)."""

    def __init__(self, out: Path, step: int, steps: int, signum: int) -> None:
        self.out, self.step, self.steps, self.signum = out, step, steps, signum
        name = signal.Signals(signum).name if signum else "a signal"
        super().__init__(
            f"interrupted by {name} at step {step} of {steps}; checkpoint: {out} (run the same command to resume)"
        )


class _Session:
    """A training loop's surroundings: a progress bar (or None), a stop flag set by SIGTERM / Ctrl-C (the loop
    checkpoints and exits cleanly) and a JSON-lines log; restores the signal handlers on exit."""

    def __init__(
        self, log_path: Path, total: int, initial: int, desc: str, progress: Progress | bool
    ) -> None:
        self.log_path, self.stop, self.signal = log_path, False, 0
        self._args, self._progress = dict(total=total, initial=initial, desc=desc), as_progress(progress)
        self.bar = None

    def _on_term(self, signum, frame) -> None:
        self.stop, self.signal = True, self.signal or int(signum)

    def agree_to_stop(self, world: int) -> bool:
        """Whether to stop after this step. Under DDP every rank calls this once per step and they agree
        (the largest signal number any rank caught wins), so all ranks stop after the same step: none waits
        in a collective for a rank that ran one more."""
        if world > 1:
            flag = torch.tensor([self.signal or int(self.stop)], dtype=torch.int64)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if int(flag):
                self.stop, self.signal = True, self.signal or int(flag)
        return self.stop

    def __enter__(self) -> _Session:
        self._handlers = {s: signal.signal(s, self._on_term) for s in (signal.SIGTERM, signal.SIGINT)}
        if self._progress:
            self.bar = self._progress.bar(**self._args, unit="step")
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        for s, h in self._handlers.items():
            signal.signal(s, h)

    def log(self, entry: dict) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)


def train(cfg: TrainConfig, progress: Progress | bool = True) -> dict:
    """Train (or resume, when cfg.out exists) and return the last validation metrics."""
    rank, world = _distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = zoo.build(cfg.profile, **cfg.overrides)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    start, wall_before, history = 0, 0.0, []
    if cfg.out.exists():
        payload = zoo.read_payload(cfg.out)
        if payload.get("profile") != cfg.profile:
            raise UserError(
                f"{cfg.out} holds {payload.get('profile')}, not {cfg.profile}; choose another --out"
            )
        check_same_config(cfg, model, payload)
        try:
            model.load_state_dict(payload["model"])
            if "optimizer" in payload:
                opt.load_state_dict(payload["optimizer"])
                sched.load_state_dict(payload["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserError(
                f"{cfg.out} cannot be resumed: its weights or optimizer state do not match {cfg.profile} "
                f"({str(exc).splitlines()[0][:160]})"
            ) from None
        start = int(payload.get("step", 0))
        wall_before = float(payload.get("train", {}).get("wall_seconds", 0.0))
        history = list(payload.get("train", {}).get("history", []))
        if rank == 0:
            print(f"resuming {cfg.profile} from {cfg.out} at step {start}", file=sys.stderr)
    elif cfg.init_from is not None:
        history = [_initialise(cfg, model)]
        if rank == 0:
            print(f"{cfg.profile}: a new run from the weights of {cfg.init_from}", file=sys.stderr)
    end = min(cfg.steps, cfg.stop_at or cfg.steps)
    if start >= end:
        if rank == 0:
            print(
                f"{cfg.out} is already at step {start}, so there is nothing to train (--steps {cfg.steps}"
                + (f", --stop-at {cfg.stop_at}" if cfg.stop_at else "")
                + "); raise --steps to train further, or choose another --out",
                file=sys.stderr,
            )
        if world > 1:
            dist.destroy_process_group()
        return {}
    step_module: nn.Module = TrainStep(model)
    if world > 1:
        step_module = nn.parallel.DistributedDataParallel(step_module, find_unused_parameters=True)
    train_set, val_set = build_datasets(cfg, model)
    loader = DataLoader(
        train_set,
        batch_sampler=StepSampler(
            len(train_set),
            cfg.batch_size,
            start,
            end,
            cfg.seed,
            rank,
            world,
            weights=getattr(train_set.pairs, "weights", None),
            keyed=True,
        ),
        num_workers=cfg.workers,
        persistent_workers=False,
    )
    cfg.out.parent.mkdir(parents=True, exist_ok=True)

    def step_loss(batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        return compute_loss(model, step_module(batch), batch, step / max(1, cfg.steps), cfg)

    def evaluate(step: int) -> tuple[dict, str]:
        metrics = validate(model, val_set, cfg.val_samples)  # back in training mode after it
        history.append({"step": step, "val": metrics})
        return metrics, ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())

    def save(step: int, wall: float, metrics: dict) -> None:
        _save(cfg, model, opt, sched, step, wall, history)

    def finish() -> None:
        if world > 1:
            if sys.exc_info()[0] is None:  # an error on this rank must not wait for the others
                dist.barrier()
            dist.destroy_process_group()

    joint = _Stage(
        cfg.out.with_suffix(".log.jsonl"),
        cfg.profile,
        step_loss,
        evaluate,
        save,
        ("loss", ".4f"),
        finish,
        separate_val_records=True,
    )
    return _loop(cfg, joint, loader, opt, sched, (start, wall_before), progress, rank, world)


def _initialise(cfg: TrainConfig, model: nn.Module) -> dict:
    """Load the weights of `cfg.init_from` (same profile and config; optimizer state and step are not taken:
    the run starts its own schedule at step 0, e.g. to fine-tune a finished run on other data) and return
    the history record that says where the run started from."""
    payload = zoo.read_payload(cfg.init_from)
    if payload.get("profile") != cfg.profile:
        raise UserError(f"--init-from {cfg.init_from} holds {payload.get('profile')}, not {cfg.profile}")
    check_same_config(cfg, model, payload, what=f"--init-from {cfg.init_from}")
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, ValueError) as exc:
        raise UserError(
            f"--init-from {cfg.init_from}: its weights do not match {cfg.profile} "
            f"({str(exc).splitlines()[0][:160]})"
        ) from None
    return {
        "step": 0,
        "init_from": str(cfg.init_from),
        "init_sha256": sha256_file(cfg.init_from),
        "init_step": int(payload.get("step", 0)),
    }


def check_same_config(cfg: TrainConfig, model: nn.Module, payload: dict, what: str | None = None) -> None:
    """A resumed run (or one started `--init-from` a checkpoint, `what`) must build the model the checkpoint
    was trained as: a one-line `UserError` naming the `--set` values that differ (e.g. a `--set width=8` run
    resumed without `--set`)."""
    saved = json.loads(json.dumps(payload.get("config") or {}))
    now = json.loads(json.dumps(model.config.to_dict()))
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        sets = " ".join(f"--set {k}={saved[k]!r}".replace("'", "") for k in differ if k in saved)
        advice = "give the same settings" if what else "resume with the same settings"
        raise UserError(
            f"{what or cfg.out} was trained with {', '.join(f'{k}={saved.get(k)!r}' for k in differ)}, this run "
            f"would build {', '.join(f'{k}={now.get(k)!r}' for k in differ)}; {advice} "
            f"({sets or 'no --set'})" + ("" if what else " or choose another --out")
        )


def ship_weights(checkpoint: Path, dest: Path) -> Path:
    """Strip optimizer state (of the main run and of every stage) from a training checkpoint: the small file
    committed under weights/."""
    payload = zoo.read_payload(checkpoint)
    stages = [payload, payload.get("router_stage") or {}, *(payload.get("branch_stages") or {}).values()]
    for stage in stages:
        stage.pop("optimizer", None)
        stage.pop("scheduler", None)
    return zoo.save_payload(dest, payload)


# ----------------------------------------------------------------------------------------------- the one loop
@dataclass
class _Stage:
    """What a training stage — the joint run, the router stage, a branch stage — brings to the one loop
    (`_loop`): its JSON-lines `log` and progress-bar `desc`; `step_loss(batch, step)` → (loss, the values
    logged every 20 steps), `shown` naming the one on the progress bar and its format; `evaluate(step)` →
    (validation metrics, the line printed), leaving the trained part in training mode; `save(step, wall
    seconds, metrics)` writes the checkpoint; `finish()` runs when the loop ends, however it ends (the joint
    run's DDP teardown). The joint run's log keeps its loss records (one at the last step too) apart from its
    validation records (`separate_val_records`); a stage's log merges the two."""

    log: Path
    desc: str
    step_loss: Callable[[dict, int], tuple[torch.Tensor, dict]]
    evaluate: Callable[[int], tuple[dict, str]]
    save: Callable[[int, float, dict], None]
    shown: tuple[str, str]
    finish: Callable[[], None] = lambda: None
    separate_val_records: bool = False


def _loop(
    cfg: TrainConfig,
    stage: _Stage,
    loader: DataLoader,
    opt,
    sched,
    resume: tuple[int, float],
    progress: Progress | bool,
    rank: int = 0,
    world: int = 1,
) -> dict:
    """The one training loop: steps from `resume` (start step, wall seconds so far) to `cfg.steps` (or
    `cfg.stop_at`) over `loader` (exact-resume sampling), progress bar, JSON-lines log, validation every
    `cfg.val_every` steps and checkpoints every `cfg.checkpoint_every` (rank 0 alone under DDP, where the
    ranks agree on stopping every step). A stop by signal checkpoints, then raises `TrainingInterrupted`.
    Returns the last validation metrics."""
    start, wall_before = resume
    end = min(cfg.steps, cfg.stop_at or cfg.steps)
    session = _Session(stage.log, cfg.steps, start, stage.desc, progress and rank == 0)
    t0, step, metrics = time.time(), start, {}
    try:
        with session:
            for batch in loader:
                loss, values = stage.step_loss(batch, step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                if rank == 0:
                    if session.bar is not None:
                        key, fmt = stage.shown
                        session.bar.update(1)
                        session.bar.set_postfix(
                            {key: format(values[key], fmt), "lr": f"{sched.get_last_lr()[0]:.1e}"}
                        )
                    entry: dict = {}
                    if step % 20 == 0 or (stage.separate_val_records and step == cfg.steps):
                        entry = {"step": step, "time": round(time.time() - t0 + wall_before, 1), **values}
                    if step % cfg.val_every == 0 or step == cfg.steps:
                        if stage.separate_val_records and entry:
                            session.log(entry)
                            entry = {}
                        metrics, line = stage.evaluate(step)
                        entry = {**entry, "step": step, "val": metrics}
                        session.say(f"step {step}: {line}")
                    if entry:
                        session.log(entry)
                stop = session.agree_to_stop(world)
                if rank == 0 and (
                    step % cfg.checkpoint_every == 0 or step in (cfg.steps, cfg.stop_at) or stop
                ):
                    stage.save(step, wall_before + time.time() - t0, metrics)
                if stop:
                    break
    finally:
        stage.finish()
    if session.stop and step < end:
        raise TrainingInterrupted(cfg.out, step, cfg.steps, session.signal)
    return metrics


__all__ = [
    "TrainConfig",
    "TrainingInterrupted",
    "train",
    "validate",
    "check_same_config",
    "ship_weights",
]
