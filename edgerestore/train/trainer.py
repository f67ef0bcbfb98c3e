"""Training loop for UFFN and CMUDRN: AdamW, warm-up + cosine LR, periodic validation, atomic checkpoints with
exact resume, deterministic seeds, and multi-GPU / multi-node data parallelism through `torchrun` (DDP).

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from edgerestore.conditions import CONDITIONS
from edgerestore.data.streaks import StreakBank
from edgerestore.errors import UserError
from edgerestore.files import sha256_file
from edgerestore.models import zoo
from edgerestore.models.uffn import DEFAULT_DECODER, UFFN
from edgerestore.progress import Progress, as_progress
from edgerestore.train.losses import UFFNLossWeights, cmudrn_loss, restoration_loss, uffn_loss


@dataclass
class TrainConfig:
    profile: str
    out: Path
    clean_dir: Path | list[Path] | None = None  # one folder of clean photographs / road frames, or several
    paired: list[Path] = field(default_factory=list)
    real: dict[str, list[Path]] = field(default_factory=dict)  # real weather photographs per condition
    hold_out: list[str] = field(default_factory=list)  # glob patterns of files kept for validation only
    rain_streaks: Path | None = None  # a folder of photographed rain streaks (Garg–Nayar) for synthetic rain
    steps: int = 10000
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 1e-4
    min_lr: float = 1e-6
    weight_decay: float = 2e-4
    warmup: int = 100
    seed: int = 0
    val_every: int = 500
    val_samples: int = 40
    checkpoint_every: int = 200
    stop_at: int | None = None  # stop (with a checkpoint) at this step without changing the LR schedule
    router_from: Path | None = None  # --router-only: take the trained router of this checkpoint instead
    branch_from: Path | None = None  # --branch-only: take that branch of this checkpoint (trained on a copy)
    init_from: Path | None = None  # a new run starts from these weights (fresh optimizer, schedule and step)
    workers: int = 1
    threads: int = 0
    overrides: dict = field(default_factory=dict)
    condition_weights: dict = field(default_factory=dict)
    loss: UFFNLossWeights = field(default_factory=UFFNLossWeights)

    def __post_init__(self) -> None:
        """An out-of-range setting is a one-line UserError naming its `edgerestore train` option (it used to
        surface as a traceback from torch or a ZeroDivisionError mid-run)."""
        minimum = {
            "steps": 1, "batch_size": 1, "patch_size": 16, "warmup": 0, "val_every": 1, "val_samples": 1,
            "checkpoint_every": 1, "workers": 0, "threads": 0,
        }  # fmt: skip
        for name, low in minimum.items():
            if getattr(self, name) < low:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)} must be ≥ {low}")
        if self.stop_at is not None and self.stop_at < 1:
            raise UserError(f"--stop-at {self.stop_at} must be ≥ 1 (leave it out to train all --steps)")
        if not self.lr > 0:
            raise UserError(f"--lr {self.lr:g} must be > 0")
        if not self.weight_decay >= 0:
            raise UserError(f"--weight-decay {self.weight_decay:g} must be ≥ 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        if isinstance(self.clean_dir, (list, tuple)):
            d["clean_dir"] = [str(p) for p in self.clean_dir]
        else:
            d["clean_dir"] = str(self.clean_dir) if self.clean_dir else None
        d["real"] = {c: [str(p) for p in v] for c, v in self.real.items()}
        d["paired"] = [str(p) for p in self.paired]
        d["router_from"] = str(self.router_from) if self.router_from else None
        d["branch_from"] = str(self.branch_from) if self.branch_from else None
        d["init_from"] = str(self.init_from) if self.init_from else None
        d["rain_streaks"] = str(self.rain_streaks) if self.rain_streaks else None
        return d


# ----------------------------------------------------------------------------------------------- data
#: real photographs (fog, road) are shrunk to this long side on loading: thumbnails and patches need no more
_LONG_SIDE = 1024


@dataclass
class StageImages:
    """The images a stage trains and validates on, each file read once: clean photographs / road frames
    (`cfg.clean_dir`) and real weather photographs per condition (`cfg.real`), split by `cfg.hold_out`.
    Without a hold-out, validation reuses the training images (the old behaviour) and has no real ones."""

    train: list[np.ndarray]
    val: list[np.ndarray]
    real_train: dict[str, list[np.ndarray]]
    real_val: dict[str, list[np.ndarray]]
    streaks: StreakBank | None = None  # photographed rain streaks (`cfg.rain_streaks`)


def stage_images(cfg: TrainConfig, real: bool = True) -> StageImages:
    """`StageImages` of `cfg` (`real=False`: without the real weather photographs, which only the router reads)."""
    from edgerestore.data.real_sets import load_images
    from edgerestore.data.synthetic import load_clean_splits

    train, val = load_clean_splits(cfg.clean_dir, hold_out=cfg.hold_out, long_side=_LONG_SIDE)
    real_train: dict[str, list[np.ndarray]] = {}
    real_val: dict[str, list[np.ndarray]] = {}
    for condition, folders in cfg.real.items() if real else ():
        real_train[condition], real_val[condition] = load_images(folders, cfg.hold_out, _LONG_SIDE)
    return StageImages(train, val, real_train, real_val, streak_bank(cfg))


def streak_bank(cfg: TrainConfig) -> StreakBank | None:
    """The photographed rain streaks of `cfg.rain_streaks` (None without), read once per stage."""
    return StreakBank(cfg.rain_streaks) if cfg.rain_streaks else None


class StepSampler(Sampler[list[int]]):
    """Batches of dataset indices for steps [start, stop): step s, rank r → a fixed, seeded set of indices.

    `keyed`: yield (index, draw seed) pairs instead, the draw seed a pure function of (seed, step, rank,
    position in the batch), for datasets whose augmentation draws from torch's generator (`PairedPlusRouter`
    seeds it per item with that seed, so a resumed run draws the same crops and flips)."""

    def __init__(
        self,
        length: int,
        batch_size: int,
        start: int,
        stop: int,
        seed: int,
        rank: int,
        world: int,
        weights=None,
        keyed: bool = False,
    ):
        self.length, self.batch_size, self.keyed = length, batch_size, keyed
        self.p = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.start, self.stop, self.seed, self.rank, self.world = start, stop, seed, rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, step, self.rank])
            if self.p is None:
                batch = rng.integers(0, self.length, self.batch_size).tolist()
            else:  # condition-balancing weights of a MixedDataset (the paper's oversampling)
                batch = rng.choice(self.length, self.batch_size, p=self.p).tolist()
            if self.keyed:
                seeds = np.random.SeedSequence([self.seed, step, self.rank, 1]).generate_state(len(batch))
                yield [(i, int(k)) for i, k in zip(batch, seeds)]
            else:
                yield batch


class PairedPlusRouter(Dataset):
    """Each item: a restoration pair (patch) plus, for UFFN, one router thumbnail of a whole degraded frame."""

    def __init__(self, pairs: Dataset, thumbnails: Dataset | None):
        self.pairs, self.thumbnails = pairs, thumbnails

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        if isinstance(index, tuple):  # (index, draw seed) from a keyed StepSampler
            index, draw_seed = index
            with torch.random.fork_rng(devices=[]):  # paired crops/flips draw from torch's generator
                torch.manual_seed(draw_seed)
                item = dict(self.pairs[index])
        else:
            item = dict(self.pairs[index])
        if self.thumbnails is not None:
            thumb = self.thumbnails[index % len(self.thumbnails)]
            item["thumbnail"], item["thumbnail_condition"] = thumb["thumbnail"], thumb["condition"]
        return item


def build_datasets(cfg: TrainConfig, model: nn.Module) -> tuple[Dataset, Dataset]:
    """(training set, fixed validation set) from clean photographs (synthetic weather) and paired folders.
    With `cfg.hold_out`, the clean images it names are validation only (`stage_images`); without, validation
    draws other weather and crops from the training images (the behaviour of the shipped first-round runs)."""
    from edgerestore.data.datasets import MixedDataset, PairedFolderDataset
    from edgerestore.data.router_thumbnails import RouterThumbnailDataset
    from edgerestore.data.synthetic import SyntheticWeatherDataset

    conditions = CONDITIONS if isinstance(model, UFFN) else ("rain", "snow")
    parts: list[Dataset] = []
    streaks = streak_bank(cfg)
    # clean images as (clean_dir, images) keyword arguments: the folder(s), or the hold-out's two splits
    train_source: dict = {"clean_dir": cfg.clean_dir}
    val_source_images: dict = {"clean_dir": cfg.clean_dir}
    if cfg.clean_dir and cfg.hold_out:
        split = stage_images(cfg, real=False)  # a hold-out that names no image is a one-line UserError
        streaks = split.streaks
        train_source, val_source_images = {"images": split.train}, {"images": split.val}
    if cfg.clean_dir:
        parts.append(
            SyntheticWeatherDataset(
                patch_size=cfg.patch_size,
                conditions=conditions,
                # clean pairs teach the branches nothing (clean passes through); the router sees clean
                # frames through its own thumbnails
                weights=cfg.condition_weights or {c: float(c != "clean") for c in conditions},
                seed=cfg.seed,
                streaks=streaks,
                **train_source,
            )
        )
    for folder in cfg.paired:
        parts.append(PairedFolderDataset(folder, patch_size=cfg.patch_size, cache=True))
    if not parts:
        raise UserError("no training data: give --clean DIR (synthetic weather) and/or --paired DIR")
    pairs = parts[0] if len(parts) == 1 else MixedDataset(parts, cfg.condition_weights or None)
    thumbs = val_thumbs = None
    if isinstance(model, UFFN):
        if not cfg.clean_dir:
            raise UserError("UFFN's router trains on synthetic weather: give --clean DIR")
        thumbs = RouterThumbnailDataset(
            size=model.thumbnail_size, seed=cfg.seed, streaks=streaks, **train_source
        )
        val_thumbs = RouterThumbnailDataset(
            size=model.thumbnail_size, seed=cfg.seed + 10_000, streaks=streaks, **val_source_images
        )
    val_source = (
        SyntheticWeatherDataset(
            patch_size=256,
            conditions=conditions,
            seed=cfg.seed + 10_000,
            augment=False,
            streaks=streaks,
            **val_source_images,
        )
        if cfg.clean_dir
        else PairedFolderDataset(cfg.paired[0], patch_size=None, augment=False)
    )
    return PairedPlusRouter(pairs, thumbs), PairedPlusRouter(val_source, val_thumbs)


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


# ----------------------------------------------------------------------------------------------- router stage
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


# ----------------------------------------------------------------------------------------------- branch stage
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


def _branch_datasets(cfg: TrainConfig, name: str) -> tuple[Dataset, Dataset]:
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
    train_set, val_set = _branch_datasets(cfg, name)

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


__all__ = [
    "TrainConfig",
    "TrainingInterrupted",
    "train",
    "train_router",
    "train_branch",
    "router_accuracy",
    "calibrate_router",
    "branch_psnr",
    "validate",
    "ship_weights",
]
