"""PairedFolderDataset crops/augments input and target alike; MixedDataset balances conditions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgerestore.conditions import CONDITIONS
from edgerestore.data.datasets import MixedDataset, PairedFolderDataset
from edgerestore.errors import UserError


def _make_set(root: Path, n: int, size=(40, 56)) -> Path:
    rng = np.random.default_rng(len(str(root)))
    for i in range(n):
        x = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        (root / "input").mkdir(parents=True, exist_ok=True)
        (root / "target").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "input" / f"{i}.png"), x)
        cv2.imwrite(str(root / "target" / f"{i}.png"), 255 - x)  # target = complement: alignment check
    return root


def test_patches_are_aligned_float_rgb_in_unit_range(tmp_path):
    torch.manual_seed(0)
    ds = PairedFolderDataset(_make_set(tmp_path / "rain_set", 2), patch_size=24, repeat=3)
    assert len(ds) == 6
    for i in range(len(ds)):
        item = ds[i]
        assert item["input"].shape == (3, 24, 24) and item["input"].dtype == torch.float32
        assert item["condition"] == CONDITIONS.index("rain")
        assert 0.0 <= item["input"].min() and item["input"].max() <= 1.0
        assert torch.allclose(item["input"] + item["target"], torch.ones_like(item["input"]), atol=1e-6)


def test_whole_images_without_augmentation_are_rgb_of_the_file(tmp_path):
    root = _make_set(tmp_path / "sots_x", 1)
    item = PairedFolderDataset(root, patch_size=None, augment=False)[0]
    bgr = cv2.imread(str(root / "input" / "0.png"))
    assert item["input"].shape == (3, 40, 56)
    assert torch.equal(
        (item["input"] * 255).round().byte(), torch.from_numpy(bgr[:, :, ::-1].transpose(2, 0, 1).copy())
    )
    assert item["condition"] == CONDITIONS.index("haze")


def test_images_smaller_than_the_patch_are_padded(tmp_path):
    ds = PairedFolderDataset(_make_set(tmp_path / "snow_tiny", 1, size=(10, 12)), patch_size=16)
    item = ds[0]
    assert item["input"].shape == (3, 16, 16)
    assert torch.allclose(item["input"] + item["target"], torch.ones(3, 16, 16), atol=1e-6)


def test_unknown_condition_needs_an_explicit_one(tmp_path):
    root = _make_set(tmp_path / "mystery", 1)
    with pytest.raises(UserError, match="cannot tell which condition"):
        PairedFolderDataset(root)
    assert PairedFolderDataset(root, condition="raindrop").condition == CONDITIONS.index("raindrop")


def test_mixed_dataset_draws_each_condition_equally_often(tmp_path):
    rain = PairedFolderDataset(_make_set(tmp_path / "rain_a", 8), patch_size=16)
    haze = PairedFolderDataset(_make_set(tmp_path / "haze_b", 2), patch_size=16)
    mix = MixedDataset([rain, haze])
    assert mix.condition_counts == {"rain": 8, "haze": 2}
    by_condition = Counter()
    for i, w in enumerate(mix.weights):
        by_condition[mix.condition_of(i)] += w
    assert by_condition[1] == pytest.approx(by_condition[2])
    drawn = Counter(
        mix.condition_of(i) for i in mix.sampler(4000, generator=torch.Generator().manual_seed(0))
    )
    assert abs(drawn[1] - drawn[2]) < 300
    assert mix[9]["condition"] == CONDITIONS.index("haze")


def test_mixed_dataset_condition_weights_and_protocol(tmp_path):
    rain = PairedFolderDataset(_make_set(tmp_path / "rain_a", 4), patch_size=16)
    haze = PairedFolderDataset(_make_set(tmp_path / "haze_b", 4), patch_size=16)
    mix = MixedDataset([rain, haze], condition_weights={"rain": 3.0, "haze": 1.0})
    assert mix.weights[:4].sum() == pytest.approx(0.75)

    class NoLabels(torch.utils.data.Dataset):
        def __len__(self):
            return 1

    with pytest.raises(TypeError, match="condition_of"):
        MixedDataset([NoLabels()])
