"""`TrainConfig`: the settings of one training run (the joint run or a stage), checked on construction (a
one-line `UserError` naming the `edgerestore train` option), and its JSON form for checkpoints and logs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgerestore.errors import UserError
from edgerestore.train.losses import UFFNLossWeights


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
