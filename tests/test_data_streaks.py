"""Rain rendered from photographed streaks (edgerestore.data.streaks) and its use by degrade, the datasets
and `train --rain-streaks`. The streak images are made here (thin bright near-vertical lines on black, the
Garg–Nayar database's format); the real database is training material, never needed by a test."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from edgerestore.data.degrade import STREAK_SHARE, RainParams, degrade, synthesise_pair
from edgerestore.data.streaks import StreakBank, StreakLayer, render_streak_layer, sample_streak_layers
from edgerestore.errors import UserError


def _streak_image(seed: int, h: int = 96, w: int = 64) -> np.ndarray:
    """Grayscale uint8: a dozen thin vertical streaks of uneven brightness on black."""
    rng = np.random.default_rng(seed)
    image = np.zeros((h, w), np.float32)
    for _ in range(12):
        x, y0 = int(rng.integers(0, w)), int(rng.integers(0, h // 2))
        length = int(rng.integers(h // 4, h // 2))
        image[y0 : y0 + length, x] = (
            rng.uniform(0.4, 1.0) * np.hanning(length)[: len(image[y0 : y0 + length])]
        )
    image = cv2.GaussianBlur(image, (0, 0), 0.6)
    return (np.clip(image / image.max(), 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def streak_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streaks")
    (folder / "sub").mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), _streak_image(i))
    cv2.imwrite(str(folder / "sub" / "3.jpg"), _streak_image(3))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_bank_reads_a_folder_recursively_as_grayscale(streak_dir):
    bank = StreakBank(streak_dir)
    assert len(bank) == 4
    assert all(image.ndim == 2 and image.dtype == np.uint8 for image in bank.images)
    clone = pickle.loads(pickle.dumps(bank))  # DataLoader workers get it pickled
    assert len(clone) == 4 and np.array_equal(clone.images[0], bank.images[0])


def test_bank_refuses_missing_empty_unreadable_and_tiny_inputs_in_one_line(tmp_path):
    cases = []
    cases.append((tmp_path / "missing", "does not exist"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    cases.append((empty, "no streak images"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png at all")
    cases.append((broken, "cannot read"))
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    cv2.imwrite(str(tiny / "a.png"), np.zeros((8, 40), np.uint8))
    cases.append((tiny, "need ≥ 16 px"))
    for folder, words in cases:
        with pytest.raises(UserError) as err:
            StreakBank(folder)
        assert words in str(err.value) and "\n" not in str(err.value), folder


def test_a_layer_renders_at_the_frame_size_in_range_and_follows_its_angle(streak_dir):
    bank = StreakBank(streak_dir)

    def orientation(angle: float) -> float:
        layer = StreakLayer(0, False, 1.0, 1.0, (0.3, 0.6), angle, 0.0, 0.4)
        out = render_streak_layer(bank, layer, 120, 200)
        assert out.shape == (120, 200) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() > 0.3
        # every corner is covered (the tile spans the frame's diagonal before it is rotated)
        assert min(out[:30, :30].max(), out[-30:, -30:].max(), out[:30, -30:].max()) > 0.05
        gx, gy = cv2.Sobel(out, cv2.CV_32F, 1, 0), cv2.Sobel(out, cv2.CV_32F, 0, 1)
        jxx, jyy, jxy = (gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()
        return float(np.degrees(0.5 * np.arctan2(2 * jxy, jxx - jyy)))  # gradient direction, 0 = horizontal

    assert abs(orientation(0.0)) < 5.0, "vertical streaks have horizontal gradients"
    tilted = orientation(30.0)
    assert 20.0 < abs(tilted) < 40.0, tilted


def test_defocus_spreads_a_layer_but_keeps_it_visible(streak_dir):
    bank = StreakBank(streak_dir)
    sharp = render_streak_layer(bank, StreakLayer(1, False, 1.0, 1.0, (0, 0), 0.0, 0.0, 0.4), 96, 96)
    soft = render_streak_layer(bank, StreakLayer(1, False, 1.0, 1.0, (0, 0), 0.0, 3.0, 0.4), 96, 96)
    assert (soft > 0.02).mean() > (sharp > 0.02).mean(), "a defocused streak covers more pixels"
    assert soft.max() > 0.25 * sharp.max()
    assert cv2.Laplacian(soft, cv2.CV_32F).var() < cv2.Laplacian(sharp, cv2.CV_32F).var()


def test_heavy_rain_has_more_and_wider_streak_layers(streak_dir):
    bank = StreakBank(streak_dir)

    def stats(severity):
        draws = [sample_streak_layers(bank, np.random.default_rng(s), severity, 1.0, 0.0) for s in range(200)]
        count = np.mean([len(d) for d in draws])
        stretch = np.mean([layer.stretch for d in draws for layer in d])
        return count, stretch

    light, heavy = stats(0.05), stats(0.95)
    assert heavy[0] > light[0] + 1.0 and heavy[1] > light[1]


def test_degrade_renders_most_rain_from_the_bank_and_stays_seeded(streak_dir):
    bank = StreakBank(streak_dir)
    kinds = [
        all(
            isinstance(layer, StreakLayer)
            for layer in RainParams.sample(np.random.default_rng(s), 0.5, 1.0, bank).layers
        )
        for s in range(300)
    ]
    assert abs(np.mean(kinds) - STREAK_SHARE) < 0.08
    assert not any(
        isinstance(layer, StreakLayer) for layer in RainParams.sample(np.random.default_rng(0), 0.5).layers
    )

    image = np.full((128, 160, 3), 0.35, np.float32)
    a = degrade(image, "rain", np.random.default_rng(3), 0.7, streaks=bank)
    b = degrade(image, "rain", np.random.default_rng(3), 0.7, streaks=bank)
    assert np.array_equal(a, b), "a pure function of the generator"
    assert a.shape == image.shape and a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    streaky = next(s for s, k in enumerate(kinds) if k)
    out = degrade(image, "rain", np.random.default_rng(streaky), 0.5, streaks=bank)
    residual = (out - image).mean(axis=2)
    assert residual.max() > 0.1, "streaks brighten the frame"
    for condition in ("snow", "haze", "clean"):  # other weather does not look at the bank
        assert np.array_equal(
            degrade(image, condition, np.random.default_rng(5), 0.5, streaks=bank),
            degrade(image, condition, np.random.default_rng(5), 0.5),
        )
    photo = (np.random.default_rng(0).random((200, 240, 3)) * 255).astype(np.uint8)
    x1, y1 = synthesise_pair(photo, "rain", np.random.default_rng(4), 64, streaks=bank)
    x2, y2 = synthesise_pair(photo, "rain", np.random.default_rng(4), 64, streaks=bank)
    assert x1.shape == y1.shape == (64, 64, 3) and np.array_equal(x1, x2) and np.array_equal(y1, y2)


def test_train_refuses_a_missing_streak_folder_in_one_line(tmp_path, clean_dir, capsys):
    pytest.importorskip("torch")
    from edgerestore.cli import main

    code = main(
        [
            "train",
            "--profile",
            "uffn-tiny",
            "--clean",
            str(clean_dir),
            "--rain-streaks",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "m.pt"),
            "--steps",
            "1",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "rain streak folder" in err[0], err
    assert not (tmp_path / "m.pt").exists()
