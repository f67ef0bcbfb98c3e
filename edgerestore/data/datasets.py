"""PyTorch datasets over paired folders, and a condition-balanced mix of several datasets.

Items are dicts ``{"input", "target": float32 [3, P, P] RGB in [0, 1], "condition": int}`` (the index in
`edgerestore.conditions.CONDITIONS`), the same format as `edgerestore.data.synthetic`'s
SyntheticWeatherDataset, so both mix freely. Finding the pairs and reading the images is torch-free
(`edgerestore.data.pairs`, `edgerestore.imageio`); this module imports torch and must not be imported by
the runtime or by export code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, WeightedRandomSampler

from edgerestore.conditions import CONDITIONS
from edgerestore.data.pairs import PairedSet, open_paired_set
from edgerestore.errors import UserError
from edgerestore.imageio import read_image


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)


class PairedFolderDataset(Dataset):
    """Random aligned patches of one paired folder (any layout `edgerestore.data.pairs` knows).

    Training (`patch_size` set, `augment=True`): the same random P×P crop of input and target (images
    smaller than P are reflect-padded), then a random horizontal flip, vertical flip and 90° rotation.
    Evaluation (`patch_size=None`, `augment=False`): whole images. Randomness comes from torch's generator,
    which DataLoader seeds per worker. `repeat` lengthens an epoch over a small set; `cache` keeps decoded
    images in memory (worth it for a few hundred images, and for DDN's 14 inputs sharing one target).
    """

    def __init__(
        self,
        root: str | Path | PairedSet,
        patch_size: int | None = 128,
        condition: str | None = None,
        augment: bool = True,
        repeat: int = 1,
        cache: bool = False,
    ) -> None:
        self.set = root if isinstance(root, PairedSet) else open_paired_set(root, condition=condition)
        name = condition or self.set.condition
        if name is None:
            raise UserError(
                f"cannot tell which condition {self.set.root} shows from its name; pass the condition "
                f"explicitly (one of {', '.join(CONDITIONS)})"
            )
        if name not in CONDITIONS:
            raise UserError(f"unknown condition {name!r}; expected one of {', '.join(CONDITIONS)}")
        self.condition_name = name
        self.condition = CONDITIONS.index(name)
        self.patch_size = patch_size
        self.augment = augment
        self.repeat = max(1, int(repeat))
        self._cache: dict[Path, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.set.pairs) * self.repeat

    def condition_of(self, index: int) -> int:
        """The condition label of item `index` without reading it (used by `MixedDataset`)."""
        return self.condition

    def _read_rgb(self, path: Path) -> np.ndarray:
        if self._cache is not None and path in self._cache:
            return self._cache[path]
        rgb = read_image(path)[:, :, ::-1]
        if self._cache is not None:
            self._cache[path] = rgb
        return rgb

    def __getitem__(self, index: int) -> dict:
        pair = self.set.pairs[index % len(self.set.pairs)]
        x, y = self._read_rgb(pair.input), self._read_rgb(pair.target)
        if x.shape != y.shape:
            raise UserError(
                f"{pair.input.name} is {x.shape[1]}×{x.shape[0]} but its target {pair.target.name} is "
                f"{y.shape[1]}×{y.shape[0]}; paired images must have the same size"
            )
        if self.patch_size is not None:
            x, y = self._random_crop(x, y, self.patch_size)
        if self.augment:
            flips = torch.randint(0, 2, (2,)).tolist()
            k = int(torch.randint(0, 4, ()).item())
            if flips[0]:
                x, y = x[:, ::-1], y[:, ::-1]
            if flips[1]:
                x, y = x[::-1], y[::-1]
            if k:
                x, y = np.rot90(x, k), np.rot90(y, k)
        return {"input": _to_tensor(x), "target": _to_tensor(y), "condition": self.condition}

    @staticmethod
    def _random_crop(x: np.ndarray, y: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
        return aligned_crop(x, y, p, lambda low, high: int(torch.randint(low, high, ()).item()))


def aligned_crop(
    x: np.ndarray, y: np.ndarray, p: int, randint: Callable[[int, int], int]
) -> tuple[np.ndarray, np.ndarray]:
    """The same random p×p crop of an input and its target (reflect-padded bottom/right when smaller, edge-
    padded when too small to reflect); `randint(low, high)` draws the corner (high exclusive)."""
    h, w = x.shape[:2]
    if h < p or w < p:
        pad = ((0, max(0, p - h)), (0, max(0, p - w)), (0, 0))
        mode = "reflect" if h > 1 and w > 1 and p - h < h and p - w < w else "edge"
        x, y = np.pad(x, pad, mode=mode), np.pad(y, pad, mode=mode)
        h, w = x.shape[:2]
    top = randint(0, h - p + 1)
    left = randint(0, w - p + 1)
    return x[top : top + p, left : left + p], y[top : top + p, left : left + p]


def condition_of_item(dataset: Dataset, index: int) -> int:
    """Condition label of item `index`, from `dataset.condition_of(index)` or a constant `dataset.condition`
    (a name or an index), without reading the item."""
    if hasattr(dataset, "condition_of"):
        return int(dataset.condition_of(index))
    constant = getattr(dataset, "condition", None)
    if isinstance(constant, str):
        constant = CONDITIONS.index(constant)
    if isinstance(constant, int):
        return constant
    raise TypeError(
        f"{type(dataset).__name__} tells neither condition_of(index) nor a constant condition; "
        "MixedDataset needs one of them to balance conditions"
    )


def item_conditions(dataset: Dataset) -> np.ndarray:
    """Condition label of every item (`condition_of_item`)."""
    n = len(dataset)
    if hasattr(dataset, "condition_of"):
        return np.fromiter((dataset.condition_of(i) for i in range(n)), dtype=np.int64, count=n)
    return np.full(n, condition_of_item(dataset, 0), dtype=np.int64)


class MixedDataset(ConcatDataset):
    """Several datasets (paired folders, synthetic mixes) concatenated, with per-item sampling weights
    that balance the conditions: each condition present is drawn equally often (or in the proportions of
    `condition_weights`), however many items it has — the UFFN paper's oversampling of rare conditions.

    Use `sampler()` with a DataLoader (instead of shuffle=True).
    """

    def __init__(self, datasets: Sequence[Dataset], condition_weights: Mapping[str, float] | None = None):
        super().__init__(list(datasets))
        self.item_conditions = np.concatenate([item_conditions(d) for d in self.datasets])
        counts = np.bincount(self.item_conditions, minlength=len(CONDITIONS))
        self.condition_counts: dict[str, int] = {
            c: int(counts[i]) for i, c in enumerate(CONDITIONS) if counts[i]
        }
        share = np.zeros(len(CONDITIONS))
        for i, c in enumerate(CONDITIONS):
            if counts[i]:
                share[i] = 1.0 if condition_weights is None else float(condition_weights.get(c, 0.0))
        if condition_weights is not None:
            unknown = set(condition_weights) - set(CONDITIONS)
            if unknown:
                raise UserError(f"unknown condition(s) {sorted(unknown)}; expected {', '.join(CONDITIONS)}")
        if share.sum() <= 0:
            raise UserError("condition weights give every condition present weight 0")
        share /= share.sum()
        per_item = np.divide(share, counts, out=np.zeros_like(share), where=counts > 0)
        self.weights: np.ndarray = per_item[self.item_conditions]

    def condition_of(self, index: int) -> int:
        return int(self.item_conditions[index])

    def sampler(
        self, num_samples: int | None = None, generator: torch.Generator | None = None
    ) -> WeightedRandomSampler:
        """Draws `num_samples` (default: len(self)) indices with replacement by the balancing weights."""
        return WeightedRandomSampler(
            torch.as_tensor(self.weights, dtype=torch.double),
            num_samples=num_samples or len(self),
            replacement=True,
            generator=generator,
        )


class RealHazeDataset(Dataset):
    """Real-depth haze pairs (RESIDE layout, e.g. SOTS-indoor `hazy/<scene>_<k>.png` → `clear/<scene>.png`),
    used as they are or re-synthesised at a new density and airlight from the transmission they measure
    (`edgerestore.data.real_sets`). Item ``i`` is a pure function of (seed, i), like the synthetic sets.

    `split="train"` keeps the pairs none of whose files match `hold_out`; `"val"` keeps the others (whole
    images, as recorded, no augmentation). Training items are random P×P crops (reflect-padded when
    smaller) with a random horizontal flip; a share `resynthesise` of them carry re-synthesised haze.
    """

    condition = CONDITIONS.index("haze")

    def __init__(
        self,
        roots: Sequence[str | Path],
        patch_size: int | None = 256,
        seed: int = 0,
        split: str = "train",
        hold_out: Sequence[str] = (),
        resynthesise: float = 0.5,
        airlight: float = 1.0,
        length: int | None = None,
    ) -> None:
        from edgerestore.data.real_sets import is_held_out

        if split not in ("train", "val"):
            raise ValueError(f"split is 'train' or 'val', got {split!r}")
        pairs = [p for root in roots for p in open_paired_set(root, condition="haze").pairs]
        held = [is_held_out(p.input, hold_out) or is_held_out(p.target, hold_out) for p in pairs]
        self.pairs = [p for p, h in zip(pairs, held) if h == (split == "val")]
        if not self.pairs:
            raise UserError(
                f"no {split} haze pairs in {', '.join(str(r) for r in roots)} with hold-out {list(hold_out)}"
            )
        self.patch_size, self.seed, self.augment = patch_size, int(seed), split == "train"
        self.resynthesise, self.airlight = float(resynthesise), float(airlight)
        self.length = int(length or (1_000_000 if self.augment else len(self.pairs)))
        self._images: dict[Path, np.ndarray] = {}
        self._transmission: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def condition_of(self, index: int) -> int:
        return self.condition

    def _rgb(self, path: Path) -> np.ndarray:
        if path not in self._images:
            self._images[path] = read_image(path)[:, :, ::-1].astype(np.float32) * (1.0 / 255.0)
        return self._images[path]

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(hazy input, clear target) float32 RGB in [0, 1], without torch."""
        from edgerestore.data.real_sets import resynthesise_haze, transmission_from_pair

        rng = np.random.default_rng([self.seed, 29, int(index)])
        pair = self.pairs[int(rng.integers(len(self.pairs)))] if self.augment else self.pairs[index]
        hazy, clear = self._rgb(pair.input), self._rgb(pair.target)
        if hazy.shape != clear.shape:
            raise UserError(f"{pair.input.name} and its target {pair.target.name} differ in size")
        if not self.augment:
            return hazy, clear
        if rng.random() < self.resynthesise:
            if pair.input not in self._transmission:
                self._transmission[pair.input] = transmission_from_pair(hazy, clear, self.airlight)
            hazy = resynthesise_haze(clear, self._transmission[pair.input], rng)
        if self.patch_size is not None:
            hazy, clear = aligned_crop(
                hazy, clear, self.patch_size, lambda low, high: int(rng.integers(low, high))
            )
        if rng.random() < 0.5:
            hazy, clear = hazy[:, ::-1], clear[:, ::-1]
        return hazy, clear

    def __getitem__(self, index: int) -> dict:
        x, y = self.sample(int(index))
        from edgerestore.data.synthetic import float_to_tensor

        return {"input": float_to_tensor(x), "target": float_to_tensor(y), "condition": self.condition}


class InterleavedDataset(Dataset):
    """Several same-format datasets drawn in fixed proportions: item ``i`` comes from dataset k for a share
    `shares[k]` of the indices (a golden-ratio sequence, so any run of indices keeps the proportions), at an
    index that is a pure function of ``i`` — exact resume keeps working."""

    def __init__(self, datasets: Sequence[Dataset], shares: Sequence[float], length: int = 1_000_000):
        if len(datasets) != len(shares) or not datasets or min(shares) < 0 or sum(shares) <= 0:
            raise ValueError("one non-negative share per dataset, not all zero")
        self.datasets = list(datasets)
        self._cumulative = np.cumsum(np.asarray(shares, dtype=np.float64) / float(sum(shares))).tolist()
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def _locate(self, index: int) -> tuple[Dataset, int]:
        import bisect

        from edgerestore.data.synthetic import GOLDEN

        u = ((index + 1) * GOLDEN) % 1.0
        k = min(bisect.bisect_right(self._cumulative, u), len(self.datasets) - 1)
        ds = self.datasets[k]
        return ds, (index * 7919 + k) % len(ds)

    def condition_of(self, index: int) -> int:
        ds, j = self._locate(index)
        return condition_of_item(ds, j)

    def __getitem__(self, index: int) -> dict:
        ds, j = self._locate(int(index))
        return ds[j]
