"""A PyTorch dataset of synthetic bad weather made on the fly from a folder of clean photographs.

Items are dicts ``{"input", "target": float32 [3, P, P] RGB in [0, 1], "condition": int}`` (the index in
`edgerestore.conditions.CONDITIONS`), the same format as `edgerestore.data.datasets`, so both mix freely.
The weather itself comes from `edgerestore.data.degrade` (numpy + OpenCV); this module imports torch and
must not be imported by the runtime or by export code.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from edgerestore.conditions import CONDITIONS
from edgerestore.data.degrade import synthesise_pair
from edgerestore.data.streaks import StreakBank
from edgerestore.errors import UserError

#: The golden ratio's fraction: index sequences (i + 1)·GOLDEN mod 1 spread any run of indices evenly.
GOLDEN = 0.6180339887498949


def load_clean_splits(
    folder: str | Path | Sequence[str | Path],
    min_side: int = 16,
    hold_out: Sequence[str] = (),
    long_side: int | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training, validation) clean photographs under `folder` (one folder or several) as uint8 RGB H×W×3
    arrays, each file read once.

    `hold_out` glob patterns (`edgerestore.data.real_sets`) split them: training gets the images that match
    none, validation those that match one (without patterns both get every image, the old behaviour:
    validation then differs from training only in its seed). `long_side` shrinks larger ones."""
    from edgerestore.data.real_sets import load_images

    folders = [folder] if isinstance(folder, (str, Path)) else list(folder)
    train, held = load_images(folders, hold_out, long_side, min_side)
    splits = (train, held if hold_out else train)
    for name, images in zip(("training", "held-out"), splits):
        if not images:
            raise UserError(
                f"no {name} images of at least {min_side} px in {', '.join(str(f) for f in folders)}"
                + (f" (hold-out {list(hold_out)})" if hold_out else "")
            )
    return splits


def load_clean_images(folder: str | Path | Sequence[str | Path], min_side: int = 16) -> list[np.ndarray]:
    """All clean photographs under `folder` (one folder or several) as uint8 RGB H×W×3 arrays, read once."""
    return load_clean_splits(folder, min_side)[0]


class SyntheticWeatherDataset(Dataset):
    """Clean photographs with synthetic weather: item ``i`` is a pure function of (seed, epoch, i).

    Training (`augment=True`): a random photograph, a scale-jittered square crop resized to `patch_size`,
    a random flip and (for some) a 90° rotation, photometric jitter on input and target, then the weather at a random
    severity (`edgerestore.data.degrade.synthesise_pair`). The condition of item ``i`` is fixed (so
    `MixedDataset` can balance it) and follows `weights` exactly in proportion (a golden-ratio sequence);
    `length` is the index range a sampler draws from. `set_epoch` changes every sample, not the labels.

    Validation (`augment=False`): a fixed set of ``len(images) × len(conditions)`` items, conditions cycling
    with the index, plain crops at the photographs' own scale; the same seed gives the same samples.

    `streaks` (a `StreakBank`): most rain from photographed streaks (`edgerestore.data.streaks`).

    `mixed_rain_snow`: the share of rain and snow items that carry both (labelled by the one drawn), for
    CMUDRN, which restores mixed weather.
    """

    def __init__(
        self,
        clean_dir: str | Path | None = None,
        patch_size: int = 128,
        conditions: Sequence[str] = CONDITIONS,
        weights: Mapping[str, float] | None = None,
        seed: int = 0,
        augment: bool = True,
        length: int | None = None,
        scale_range: tuple[float, float] = (0.75, 2.0),
        mixed_rain_snow: float = 0.0,
        images: Sequence[np.ndarray] | None = None,
        streaks: StreakBank | None = None,
    ) -> None:
        unknown = [c for c in conditions if c not in CONDITIONS]
        if unknown or not conditions:
            raise UserError(f"unknown condition(s) {unknown}; expected some of {', '.join(CONDITIONS)}")
        if images is None:
            if clean_dir is None:
                raise ValueError("give clean_dir or images")
            images = load_clean_images(clean_dir)
        self.images = list(images)
        self.patch_size, self.seed, self.augment = int(patch_size), int(seed), augment
        self.conditions = tuple(conditions)
        self.scale_range, self.mixed_rain_snow = scale_range, float(mixed_rain_snow)
        self.epoch, self.streaks = 0, streaks
        self.labels = np.array([CONDITIONS.index(c) for c in self.conditions], dtype=np.int64)
        share = np.ones(len(self.conditions))
        if weights:
            extra = set(weights) - set(CONDITIONS)
            if extra:
                raise UserError(
                    f"unknown condition(s) in weights: {sorted(extra)}; expected {', '.join(CONDITIONS)}"
                )
            share = np.array([max(0.0, float(weights.get(c, 0.0))) for c in self.conditions])
            if share.sum() <= 0:
                raise UserError("condition weights give every condition weight 0")
        self.share = share / share.sum()
        # plain lists: condition_of runs once per item (a million times) when MixedDataset balances
        self._cumulative_list = np.cumsum(self.share).tolist()
        self._label_list = self.labels.tolist()
        self._offset = (self.seed * GOLDEN * 7.0) % 1.0
        if length is None:
            length = 1_000_000 if augment else len(self.images) * len(self.conditions)
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """New samples for every index (labels stay), e.g. per epoch of a DistributedSampler-style loop."""
        self.epoch = int(epoch)

    def condition_of(self, index: int) -> int:
        """The condition label of item `index` without making it (used by `MixedDataset`)."""
        labels = self._label_list
        if not self.augment:
            return labels[index % len(labels)]
        u = ((index + 1) * GOLDEN + self._offset) % 1.0
        return labels[min(bisect.bisect_right(self._cumulative_list, u), len(labels) - 1)]

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(input, target) float32 RGB P×P×3 and the label of item `index`, without torch."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        label = self.condition_of(index)
        name = CONDITIONS[label]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.augment:
            image = self.images[int(rng.integers(len(self.images)))]
            if name in ("rain", "snow") and self.mixed_rain_snow > 0 and rng.random() < self.mixed_rain_snow:
                name = "rain+snow"
        else:
            image = self.images[(index // len(self.labels)) % len(self.images)]
        x, y = synthesise_pair(
            image, name, rng, self.patch_size, self.augment, self.scale_range, streaks=self.streaks
        )
        return x, y, label

    def __getitem__(self, index: int) -> dict:
        x, y, label = self.sample(int(index))
        return {"input": float_to_tensor(x), "target": float_to_tensor(y), "condition": label}


def float_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """float32 H×W×3 → float32 3×H×W tensor (the training items' layout)."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))
