"""Pairing files in every public dataset layout, guessing conditions, and the image read rules."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgerestore.data.pairs import find_pairs, find_sets, guess_condition, open_paired_set
from edgerestore.errors import UserError
from edgerestore.imageio import read_image, write_image


def _img(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))
    return path


def _names(pairs) -> list[tuple[str, str]]:
    return sorted((p.input.name, p.target.name) for p in pairs)


def test_input_target_folders_pair_by_stem_across_extensions(tmp_path):
    for i, (a, b) in enumerate([("a.png", "a.jpg"), ("b.jpeg", "b.png"), ("c.bmp", "c.tif")]):
        _img(tmp_path / "input" / a, i)
        _img(tmp_path / "target" / b, i)
    s = open_paired_set(tmp_path)
    assert s.layout == "input-target"
    assert _names(s.pairs) == [("a.png", "a.jpg"), ("b.jpeg", "b.png"), ("c.bmp", "c.tif")]
    assert [p.name for p in s.pairs] == ["a", "b", "c"]


def test_ddn_rain1400_maps_fourteen_inputs_to_one_ground_truth(tmp_path):
    root = tmp_path / "Rain1400" / "testing"
    for img in (1, 2):
        _img(root / "ground_truth" / f"{img}.jpg")
        for k in (1, 2, 14):
            _img(root / "rainy_image" / f"{img}_{k}.jpg")
    s = open_paired_set(root)
    assert s.layout == "ddn-rain1400" and s.condition == "rain" and len(s) == 6
    assert all(p.target.name == p.input.name.split("_")[0] + ".jpg" for p in s.pairs)


def test_rain100_rain_norain_folders_with_identical_names(tmp_path):
    root = tmp_path / "Rain100L"
    for i in (1, 2, 10):
        _img(root / "rain" / f"norain-{i}.png")
        _img(root / "norain" / f"norain-{i}.png")
    s = open_paired_set(root)
    assert s.layout == "rain100" and s.condition == "rain"
    assert _names(s.pairs) == [(f"norain-{i}.png", f"norain-{i}.png") for i in (1, 10, 2)]


def test_rain100_jorder_x2_suffix_is_ignored(tmp_path):
    _img(tmp_path / "rain" / "norain-7x2.png")
    _img(tmp_path / "norain" / "norain-7.png")
    assert _names(find_pairs(tmp_path)) == [("norain-7x2.png", "norain-7.png")]


def test_rain100h_prenet_layout_rainy_folder_with_targets_beside_it(tmp_path):
    root = tmp_path / "Rain100H"
    for i in (1, 2):
        _img(root / "rainy" / f"rain-{i:03d}.png")
        _img(root / f"norain-{i:03d}.png")
    s = open_paired_set(root)
    assert s.layout == "rain100" and s.condition == "rain"
    assert _names(s.pairs) == [("rain-001.png", "norain-001.png"), ("rain-002.png", "norain-002.png")]


def test_rain100_flat_folder_with_rain_and_norain_files(tmp_path):
    root = tmp_path / "rain100l_flat"
    for i in (1, 2):
        _img(root / f"rain-{i:03d}.png")
        _img(root / f"norain-{i:03d}.png")
    s = open_paired_set(root)
    assert s.layout == "rain100-flat"
    assert _names(s.pairs) == [("rain-001.png", "norain-001.png"), ("rain-002.png", "norain-002.png")]


def test_reside_sots_and_its_hazy_names_map_to_clear_images(tmp_path):
    root = tmp_path / "SOTS" / "indoor"
    for name in ("1400_1.png", "1400_10.png", "1401_3.png"):
        _img(root / "hazy" / name)
    for name in ("1400.png", "1401.png"):
        _img(root / "clear" / name)
    s = open_paired_set(root)
    assert s.layout == "reside" and s.condition == "haze"
    assert _names(s.pairs) == [
        ("1400_1.png", "1400.png"),
        ("1400_10.png", "1400.png"),
        ("1401_3.png", "1401.png"),
    ]

    its = tmp_path / "ITS"
    _img(its / "hazy" / "1_1_0.90179.png")
    _img(its / "hazy" / "1_2_0.72.png")
    _img(its / "clear" / "1.png")
    assert _names(find_pairs(its)) == [("1_1_0.90179.png", "1.png"), ("1_2_0.72.png", "1.png")]


def test_reside_outdoor_gt_folder_and_differing_extensions(tmp_path):
    root = tmp_path / "outdoor"
    _img(root / "hazy" / "0001_0.8_0.2.jpg")
    _img(root / "gt" / "0001.png")
    s = open_paired_set(root)
    assert s.layout == "reside" and s.condition == "haze"
    assert _names(s.pairs) == [("0001_0.8_0.2.jpg", "0001.png")]


def test_raindrop_rain_and_clean_suffixes(tmp_path):
    root = tmp_path / "raindrop" / "test_a"
    for i in (0, 1, 12):
        _img(root / "data" / f"{i}_rain.png")
        _img(root / "gt" / f"{i}_clean.png")
    s = open_paired_set(root)
    assert s.layout == "raindrop" and s.condition == "raindrop"
    assert _names(s.pairs) == [
        ("0_rain.png", "0_clean.png"),
        ("12_rain.png", "12_clean.png"),
        ("1_rain.png", "1_clean.png"),
    ]


def test_csd_and_snow100k_layouts(tmp_path):
    csd = tmp_path / "CSD" / "Test"
    _img(csd / "Snow" / "1.tif")
    _img(csd / "Gt" / "1.tif")
    _img(csd / "Mask" / "1.tif")
    s = open_paired_set(csd)
    assert s.layout == "csd" and s.condition == "snow" and _names(s.pairs) == [("1.tif", "1.tif")]

    snow = tmp_path / "Snow100K-S"
    _img(snow / "synthetic" / "beautiful_smile_00001.jpg")
    _img(snow / "gt" / "beautiful_smile_00001.jpg")
    _img(snow / "mask" / "beautiful_smile_00001.jpg")
    s = open_paired_set(snow)
    assert s.layout == "snow100k" and s.condition == "snow" and len(s) == 1


def test_condition_guess_from_folder_words_and_override(tmp_path):
    assert guess_condition(tmp_path / "rain100l_3") == "rain"
    assert guess_condition(tmp_path / "sots_indoor_dev") == "haze"
    assert guess_condition(tmp_path / "RainDrop_test_b") == "raindrop"
    assert guess_condition(tmp_path / "Snow100K-L") == "snow"
    assert guess_condition(tmp_path / "my_set", extra_names=["hazy"]) == "haze"
    assert guess_condition(tmp_path / "my_set") is None
    _img(tmp_path / "my_set" / "input" / "a.png")
    _img(tmp_path / "my_set" / "target" / "a.png")
    assert open_paired_set(tmp_path / "my_set").condition is None
    assert open_paired_set(tmp_path / "my_set", condition="snow").condition == "snow"
    with pytest.raises(UserError, match="unknown condition"):
        open_paired_set(tmp_path / "my_set", condition="fog")


def test_folder_without_a_layout_is_a_one_line_user_error(tmp_path):
    _img(tmp_path / "pictures" / "a.png")
    with pytest.raises(UserError, match="no paired images in .*input/\\+target/"):
        find_pairs(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        find_pairs(tmp_path / "missing")


def test_unmatched_names_are_reported_by_name(tmp_path):
    _img(tmp_path / "input" / "a.png")
    _img(tmp_path / "input" / "zebra.png")
    _img(tmp_path / "target" / "a.png")
    with pytest.raises(UserError, match=r"1 of 2 inputs .* \(zebra\.png\)") as info:
        find_pairs(tmp_path)
    assert "\n" not in str(info.value)
    assert _names(find_pairs(tmp_path, allow_unmatched=True)) == [("a.png", "a.png")]


def test_empty_input_folder_is_a_user_error(tmp_path):
    (tmp_path / "input").mkdir()
    _img(tmp_path / "target" / "a.png")
    with pytest.raises(UserError, match="no images in"):
        find_pairs(tmp_path)


def test_find_sets_accepts_a_set_or_a_parent_of_sets(tmp_path):
    for name in ("rain_a", "sots_b"):
        _img(tmp_path / name / "input" / "1.png")
        _img(tmp_path / name / "target" / "1.png")
    (tmp_path / "notes").mkdir()
    sets = find_sets(tmp_path)
    assert [(s.name, s.condition) for s in sets] == [("rain_a", "rain"), ("sots_b", "haze")]
    assert [s.name for s in find_sets(tmp_path / "rain_a")] == ["rain_a"]
    with pytest.raises(UserError, match="neither a paired set"):
        find_sets(tmp_path / "notes")


# ---- read_image rules --------------------------------------------------------------------------------


def test_read_image_scales_16_bit_to_full_8_bit_range(tmp_path):
    img16 = np.zeros((4, 4, 3), np.uint16)
    img16[0, 0] = [65535, 32896, 257]
    cv2.imwrite(str(tmp_path / "a.png"), img16)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3)
    assert out[0, 0].tolist() == [255, 128, 1]


def test_read_image_replicates_gray_and_drops_alpha(tmp_path):
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    out = read_image(tmp_path / "g.png")
    assert out.shape == (4, 4, 3) and all((out[..., c] == gray).all() for c in range(3))

    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 0
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    out = read_image(tmp_path / "a.png")
    assert out.shape == (4, 4, 3) and out[0, 0].tolist() == [10, 20, 30]

    gray16 = np.full((4, 4), 65535, np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    assert (read_image(tmp_path / "g16.png") == 255).all()


def test_read_image_float_tiff_is_taken_as_0_to_1(tmp_path):
    img = np.full((4, 4, 3), 0.5, np.float32)
    img[0, 0] = [2.0, -1.0, 1.0]
    cv2.imwrite(str(tmp_path / "f.tif"), img)
    out = read_image(tmp_path / "f.tif")
    assert out[1, 1].tolist() == [128, 128, 128] and out[0, 0].tolist() == [255, 0, 255]


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_unreadable_files_raise_user_error_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(UserError, match="broken.png"):
        read_image(path)


def test_missing_file_raises_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot read image"):
        read_image(tmp_path / "nope.png")


def test_write_image_round_trips_and_leaves_no_temporary_files(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    path = write_image(tmp_path / "sub" / "x.png", img)
    assert (read_image(path) == img).all()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.png"]


def test_write_image_with_an_extension_opencv_cannot_encode_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="unsupported extension '.xyz'"):
        write_image(tmp_path / "out.xyz", np.zeros((4, 4, 3), np.uint8))
    assert not list(tmp_path.iterdir())  # nothing half-written
