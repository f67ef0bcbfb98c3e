"""Synthetic weather (edgerestore.data.degrade), the SyntheticWeatherDataset and `edgerestore data preview`."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgerestore.conditions import CONDITIONS
from edgerestore.data.degrade import (
    DEGRADE_CONDITIONS,
    WeatherSequence,
    degrade,
    degrade_uint8_bgr,
    photometric_jitter,
    synthesise_pair,
)


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like float32 RGB image: smooth colour gradients, a few rectangles and some texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([0.3 + 0.4 * xx / w, 0.2 + 0.5 * yy / h, 0.5 - 0.3 * xx / w], axis=2)
    for _ in range(4):
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.uniform(0.05, 0.9, 3)
    img += rng.normal(0.0, 0.03, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def _flat(h: int, w: int, level: float) -> np.ndarray:
    return np.full((h, w, 3), level, np.float32)


def _lap_energy(gray: np.ndarray) -> np.ndarray:
    return cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F) ** 2


# ----------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("condition", DEGRADE_CONDITIONS)
@pytest.mark.parametrize("shape", [(37, 53), (128, 128), (201, 96)])
def test_degrade_keeps_shape_dtype_and_range_at_odd_sizes(condition, shape):
    image = _photo(*shape)
    out = degrade(image, condition, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert np.array_equal(image, _photo(*shape)), "degrade must not modify its input"


@pytest.mark.parametrize("condition", DEGRADE_CONDITIONS)
def test_same_seed_gives_identical_output_and_different_seed_a_different_one(condition):
    image = _photo(96, 120)
    a = degrade(image, condition, np.random.default_rng(7))
    b = degrade(image, condition, np.random.default_rng(7))
    c = degrade(image, condition, np.random.default_rng(8))
    assert np.array_equal(a, b)
    if condition == "clean":
        assert np.array_equal(a, image) and np.array_equal(c, image)
    else:
        assert not np.array_equal(a, c)
        assert np.abs(a - image).mean() > 1e-3, f"{condition} left the image unchanged"


def test_bad_arguments_are_rejected():
    image = _photo(32, 32)
    with pytest.raises(ValueError, match="unknown condition"):
        degrade(image, "fog", np.random.default_rng(0))
    with pytest.raises(ValueError, match="severity"):
        degrade(image, "rain", np.random.default_rng(0), severity=1.5)
    with pytest.raises(ValueError, match="H×W×3"):
        degrade(image[:, :, 0], "rain", np.random.default_rng(0))


# ----------------------------------------------------------------------------------------------- physics
def test_haze_lowers_contrast_monotonically_with_beta():
    image = _photo(96, 128)
    stds = [
        float(degrade(image, "haze", np.random.default_rng(3), severity=s).std())
        for s in np.linspace(0, 1, 5)
    ]
    assert all(a > b for a, b in zip(stds, stds[1:])), stds
    assert stds[-1] < 0.6 * image.std()


def test_haze_brightens_towards_the_airlight():
    image = _photo(64, 64)
    out = degrade(image, "haze", np.random.default_rng(0), severity=1.0)
    assert out.mean() > image.mean() + 0.1


def test_rain_adds_bright_oriented_high_frequency_energy():
    image = _flat(160, 160, 0.35)
    for seed in range(3):
        out = degrade(image, "rain", np.random.default_rng(seed), severity=0.6)
        residual = (out - image).mean(axis=2)
        assert residual.mean() > 0.005 and (residual >= -1e-6).all(), "rain only brightens a flat image"
        gx = cv2.Sobel(residual, cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(residual, cv2.CV_32F, 0, 1)
        jxx, jyy, jxy = (gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()
        coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy)
        assert coherence > 0.5, f"streaks should share one orientation (coherence {coherence:.2f})"
        assert jxx > jyy, "streaks are near vertical: their gradients are mostly horizontal"
        assert _lap_energy(residual).mean() > 1e-4


def test_snow_adds_bright_roundish_particles():
    image = _flat(160, 160, 0.15)
    out = degrade(image, "snow", np.random.default_rng(4), severity=0.7)
    bright = ((out - image).mean(axis=2) > 0.3).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(bright)
    assert n - 1 >= 10, "expected many flakes"
    w, h = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    elongation = np.maximum(w, h) / np.maximum(np.minimum(w, h), 1)
    assert np.median(elongation) <= 3.0, "flakes are blobs, not streaks"


def test_rain_streaks_are_longer_than_snow_flakes():
    image = _flat(200, 200, 0.15)

    def long_extent(condition: str) -> float:  # 90th percentile of the particles' extent, over 4 seeds
        extents = []
        for seed in range(4):
            out = degrade(image, condition, np.random.default_rng(seed), severity=0.3)
            mask = ((out - image).mean(axis=2) > 0.15).astype(np.uint8)
            _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            extents.append(
                np.percentile(np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]), 90)
            )
        return float(np.mean(extents))

    assert long_extent("rain") > 2 * long_extent("snow")


def test_raindrops_blur_the_scene_locally_and_leave_the_rest_sharp():
    rng = np.random.default_rng(0)
    texture = np.repeat(rng.uniform(0.2, 0.8, (160, 160, 1)).astype(np.float32), 3, axis=2)
    out = degrade(texture, "raindrop", np.random.default_rng(6), severity=0.8)
    before = cv2.blur(_lap_energy(texture.mean(axis=2)), (9, 9))
    after = cv2.blur(_lap_energy(out.mean(axis=2)), (9, 9))
    blurred = after < 0.3 * before
    untouched = np.isclose(out, texture, atol=1e-4).all(axis=2)
    assert 0.05 < blurred.mean() < 0.9, f"drops should cover part of the frame ({blurred.mean():.2f})"
    assert untouched.mean() > 0.1, "the scene between drops stays as it was"


def test_severity_makes_each_condition_stronger():
    image = _photo(128, 128)
    for condition in ("rain", "haze", "raindrop", "snow"):
        light = np.mean(
            [
                np.abs(degrade(image, condition, np.random.default_rng(s), 0.05) - image).mean()
                for s in range(4)
            ]
        )
        heavy = np.mean(
            [
                np.abs(degrade(image, condition, np.random.default_rng(s), 0.95) - image).mean()
                for s in range(4)
            ]
        )
        assert heavy > light, condition


def test_scale_shrinks_the_weather_features():
    image = _flat(200, 200, 0.15)
    big = degrade(image, "raindrop", np.random.default_rng(2), severity=0.5, scale=1.5)
    small = degrade(image, "raindrop", np.random.default_rng(2), severity=0.5, scale=0.5)

    def blobs(out):
        mask = (np.abs(out - image).mean(axis=2) > 0.02).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        return n - 1, float(np.median(stats[1:, cv2.CC_STAT_AREA]))

    (n_big, area_big), (n_small, area_small) = blobs(big), blobs(small)
    assert n_small > n_big and area_small < area_big


# ----------------------------------------------------------------------------------------------- helpers
def test_uint8_bgr_wrapper_is_seeded_and_keeps_the_frame_format():
    frame = (_photo(90, 160)[:, :, ::-1] * 255).astype(np.uint8)
    a = degrade_uint8_bgr(frame, "snow", seed=3)
    assert a.dtype == np.uint8 and a.shape == frame.shape
    assert np.array_equal(a, degrade_uint8_bgr(frame, "snow", seed=3))
    assert not np.array_equal(a, degrade_uint8_bgr(frame, "snow", seed=4))
    assert np.array_equal(degrade_uint8_bgr(frame, "clean", seed=0), frame)


def test_weather_sequence_moves_rain_and_keeps_haze_and_drops_still():
    frame = _photo(72, 96)
    rain = WeatherSequence(72, 96, "rain", seed=1, severity=0.5)
    f0, f1 = rain.apply(frame, 0), rain.apply(frame, 1)
    assert not np.array_equal(f0, f1), "rain falls between frames"
    assert np.array_equal(f0, rain.apply(frame, 0))
    for condition in ("haze", "raindrop"):
        seq = WeatherSequence(72, 96, condition, seed=1)
        assert np.array_equal(seq.apply(frame, 0), seq.apply(frame, 5))
    u8 = (frame * 255).astype(np.uint8)
    assert WeatherSequence(72, 96, "snow", seed=2).apply_uint8_bgr(u8, 3).dtype == np.uint8
    with pytest.raises(ValueError, match="sequence is"):
        rain.apply(_photo(10, 10), 0)


def test_photometric_jitter_stays_mild_and_in_range():
    image = _photo(64, 64)
    out = photometric_jitter(image, np.random.default_rng(0))
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert np.abs(out - image).mean() < 0.15
    u8 = (image * 255).astype(np.uint8)
    assert np.allclose(
        photometric_jitter(u8, np.random.default_rng(0)),
        photometric_jitter(u8 / 255.0, np.random.default_rng(0)),
        atol=0.01,
    )


def test_brighten_scene_lifts_the_dark_channel_for_a_share_of_samples():
    from edgerestore.data.degrade import brighten_scene

    image = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32) * 0.5
    outs = [brighten_scene(image, np.random.default_rng(seed)) for seed in range(40)]
    lifted = [o for o in outs if not np.array_equal(o, image)]
    assert 8 < len(lifted) < 32  # about half
    for o in lifted:
        assert o.dtype == np.float32 and o.min() >= image.min() and o.max() <= 1.0
        assert o.min(axis=2).mean() > image.min(axis=2).mean()  # brighter, greyer: a higher dark channel
    assert np.array_equal(
        brighten_scene(image, np.random.default_rng(3)), brighten_scene(image, np.random.default_rng(3))
    )


def test_synthesise_pair_makes_aligned_patches_and_validation_crops_are_fixed():
    clean = (_photo(150, 210) * 255).astype(np.uint8)
    x, y = synthesise_pair(clean, "rain", np.random.default_rng(0), 64)
    assert x.shape == y.shape == (64, 64, 3) and x.dtype == y.dtype == np.float32
    v1 = synthesise_pair(clean, "haze", np.random.default_rng(5), 64, augment=False)
    v2 = synthesise_pair(clean, "haze", np.random.default_rng(5), 64, augment=False)
    assert np.array_equal(v1[0], v2[0]) and np.array_equal(v1[1], v2[1])
    # validation targets are untouched crops of the photograph
    target = (v1[1] * 255).round().astype(np.uint8)
    found = cv2.matchTemplate(clean, target, cv2.TM_SQDIFF)
    assert found.min() == 0
    small = (_photo(40, 50) * 255).astype(np.uint8)  # smaller than the patch: padded, not an error
    assert synthesise_pair(small, "snow", np.random.default_rng(0), 64, augment=False)[0].shape == (64, 64, 3)


# ----------------------------------------------------------------------------------------------- dataset
@pytest.fixture(scope="module")
def clean_images():
    return [(_photo(120 + 10 * i, 160, seed=i) * 255).astype(np.uint8) for i in range(4)]


def test_dataset_items_have_the_training_format(clean_images):
    import torch

    from edgerestore.data.synthetic import SyntheticWeatherDataset

    ds = SyntheticWeatherDataset(images=clean_images, patch_size=48, seed=1)
    for i in range(10):
        item = ds[i]
        assert set(item) == {"input", "target", "condition"}
        assert item["input"].shape == item["target"].shape == (3, 48, 48)
        assert item["input"].dtype == item["target"].dtype == torch.float32
        assert item["condition"] == ds.condition_of(i) and 0 <= item["condition"] < len(CONDITIONS)
        if CONDITIONS[item["condition"]] == "clean":
            assert torch.equal(item["input"], item["target"])


def test_dataset_is_a_function_of_seed_index_and_epoch(clean_images):
    import torch

    from edgerestore.data.synthetic import SyntheticWeatherDataset

    a = SyntheticWeatherDataset(images=clean_images, patch_size=32, seed=3)
    b = SyntheticWeatherDataset(images=clean_images, patch_size=32, seed=3)
    assert torch.equal(a[11]["input"], b[11]["input"])
    assert not torch.equal(a[11]["target"], a[12]["target"])
    before = a[11]["input"].clone()
    a.set_epoch(1)
    assert not torch.equal(a[11]["input"], before) and a[11]["condition"] == b[11]["condition"]
    c = SyntheticWeatherDataset(images=clean_images, patch_size=32, seed=4)
    assert not torch.equal(c[11]["target"], b[11]["target"])


def test_dataset_obeys_condition_weights_and_restrictions(clean_images):
    from edgerestore.data.synthetic import SyntheticWeatherDataset

    weights = {"clean": 1, "rain": 4, "haze": 2, "raindrop": 1, "snow": 2}
    ds = SyntheticWeatherDataset(images=clean_images, patch_size=32, weights=weights, seed=0)
    labels = np.array([ds.condition_of(i) for i in range(5000)])
    share = np.bincount(labels, minlength=5) / len(labels)
    expected = np.array([weights[c] for c in CONDITIONS]) / 10
    assert np.abs(share - expected).max() < 0.02, share
    two = SyntheticWeatherDataset(
        images=clean_images, patch_size=32, conditions=("rain", "snow"), mixed_rain_snow=0.5
    )
    labels = {two[i]["condition"] for i in range(12)}
    assert labels == {CONDITIONS.index("rain"), CONDITIONS.index("snow")}


def test_validation_dataset_is_fixed_and_cycles_the_conditions(clean_images):
    import torch

    from edgerestore.data.synthetic import SyntheticWeatherDataset

    a = SyntheticWeatherDataset(images=clean_images, patch_size=64, augment=False, seed=9)
    b = SyntheticWeatherDataset(images=clean_images, patch_size=64, augment=False, seed=9)
    assert len(a) == len(clean_images) * len(CONDITIONS)
    assert [a[i]["condition"] for i in range(5)] == list(range(5))
    assert all(torch.equal(a[i]["input"], b[i]["input"]) for i in range(5))


def test_dataset_loads_a_folder_recursively_and_explains_an_empty_one(tmp_path):
    from edgerestore.data.synthetic import SyntheticWeatherDataset
    from edgerestore.errors import UserError

    (tmp_path / "a" / "b").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "a" / "one.png"), (_photo(80, 90) * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "a" / "b" / "two.jpg"), (_photo(70, 100, 1) * 255).astype(np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    ds = SyntheticWeatherDataset(tmp_path, patch_size=32)
    assert len(ds.images) == 2 and ds.images[0].dtype == np.uint8
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        SyntheticWeatherDataset(tmp_path / "empty")


# ----------------------------------------------------------------------------------------------- CLI
def test_preview_command_writes_a_labelled_grid_png(tmp_path):
    from edgerestore.cli import main

    clean = tmp_path / "clean"
    clean.mkdir()
    for i in range(3):
        cv2.imwrite(str(clean / f"{i}.png"), (_photo(100, 140, i) * 255).astype(np.uint8))
    out = tmp_path / "out" / "preview.png"

    def preview(path) -> int:
        args = ["--clean", str(clean), "--out", str(path), "--size", "48", "--per-condition", "2"]
        return main(["data", "preview", *args])

    assert preview(out) == 0
    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape[0] == len(CONDITIONS) * (48 + 4)
    assert not [p for p in out.parent.iterdir() if p.name != "preview.png"], "no temporary files left"
    again = tmp_path / "again.png"
    preview(again)
    assert np.array_equal(cv2.imread(str(again)), grid), "same seed, same grid"


def test_preview_command_errors_are_one_line(tmp_path, capsys):
    from edgerestore.cli import main

    (tmp_path / "empty").mkdir()
    assert (
        main(["data", "preview", "--clean", str(tmp_path / "empty"), "--out", str(tmp_path / "p.png")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert "no images" in err and len(err.splitlines()) == 1
    clean = tmp_path / "clean"
    clean.mkdir()
    cv2.imwrite(str(clean / "x.png"), (_photo(64, 64) * 255).astype(np.uint8))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert (
        main(["data", "preview", "--clean", str(clean), "--out", str(blocker / "p.png"), "--size", "32"]) == 2
    )
    assert "cannot write" in capsys.readouterr().err
    assert main(["data", "preview", "--clean", str(clean), "--out", str(tmp_path / "p.gif")]) == 2


def test_weather_synthesis_and_the_preview_verb_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, edgerestore.data.degrade, edgerestore.commands.data; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
