"""The data training stages read: the clean photographs / road frames and real weather photographs split by
`--hold-out` (`stage_images`, read once per stage), the photographed rain streaks, the exact-resume step
sampler, and the joint run's sets (restoration pairs plus router thumbnails).

Imports nothing from export or the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from edgerestore.conditions import CONDITIONS
from edgerestore.data.streaks import StreakBank
from edgerestore.errors import UserError
from edgerestore.models.uffn import UFFN
from edgerestore.train.config import TrainConfig

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
