"""PSNR/SSIM follow BasicSR's conventions and agree with scikit-image on the same definitions."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from edgerestore.metrics import bgr_to_y, calculate_psnr, calculate_ssim, score


@pytest.fixture
def reference_pair(rng):
    """A smooth 64×80 BGR image and a noisy, slightly shifted copy (like a restored output)."""
    yy, xx = np.mgrid[0:64, 0:80].astype(np.float64)
    clean = np.stack([128 + 100 * np.sin(xx / 9), 128 + 90 * np.cos(yy / 7), 60 + xx + yy / 2], axis=2)
    noisy = clean + rng.normal(0, 12, clean.shape) + 5
    return np.clip(clean, 0, 255).astype(np.uint8), np.clip(noisy, 0, 255).astype(np.uint8)


def _skimage_ssim(a, b, channel_axis=None):
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=channel_axis,
    )


def test_rgb_psnr_and_ssim_match_scikit_image(reference_pair):
    a, b = reference_pair
    assert calculate_psnr(b, a) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-3)
    assert calculate_ssim(b, a) == pytest.approx(_skimage_ssim(a, b, channel_axis=2), abs=1e-3)


def test_y_channel_psnr_and_ssim_match_scikit_image_on_bt601_luma(reference_pair):
    a, b = reference_pair
    ya, yb = bgr_to_y(a), bgr_to_y(b)
    assert calculate_psnr(b, a, test_y_channel=True) == pytest.approx(
        peak_signal_noise_ratio(ya, yb, data_range=255), abs=1e-3
    )
    assert calculate_ssim(b, a, test_y_channel=True) == pytest.approx(_skimage_ssim(ya, yb), abs=1e-3)


def test_y_is_matlab_rgb2ycbcr_luma_on_bgr_order():
    assert bgr_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    assert bgr_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    red_bgr = np.array([[[0, 0, 255]]], np.uint8)
    assert bgr_to_y(red_bgr)[0, 0] == pytest.approx(16 + 65.481)


def test_identical_images_give_infinite_psnr_and_ssim_one(reference_pair):
    a, _ = reference_pair
    for y in (False, True):
        assert calculate_psnr(a, a.copy(), test_y_channel=y) == math.inf
        assert calculate_ssim(a, a.copy(), test_y_channel=y) == 1.0


def test_psnr_of_a_uniform_one_level_error_is_48_13_db():
    a = np.full((16, 16, 3), 100, np.uint8)
    assert calculate_psnr(a, a + 1) == pytest.approx(10 * math.log10(255**2), abs=1e-9)


def test_crop_border_ignores_differences_at_the_edges(reference_pair):
    a, _ = reference_pair
    b = a.copy()
    b[:2] = 0
    b[:, -2:] = 255
    assert calculate_psnr(a, b) < 40
    assert calculate_psnr(a, b, crop_border=2) == math.inf
    assert calculate_ssim(a, b, crop_border=2) == 1.0


def test_ssim_drops_with_blur_and_psnr_is_symmetric(reference_pair):
    a, b = reference_pair
    blurred = cv2.GaussianBlur(a, (9, 9), 3)
    assert calculate_ssim(a, blurred) < 1.0
    assert calculate_psnr(a, b) == calculate_psnr(b, a)


def test_mismatched_shapes_are_rejected(reference_pair):
    a, _ = reference_pair
    with pytest.raises(ValueError, match="shapes differ"):
        calculate_psnr(a, a[:-1])


def test_score_reports_both_conventions(reference_pair):
    a, b = reference_pair
    s = score(b, a)
    assert s.psnr_rgb == pytest.approx(calculate_psnr(b, a))
    assert s.psnr_y == pytest.approx(calculate_psnr(b, a, test_y_channel=True))
    assert set(s.as_dict()) == {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}


def test_wilson_interval_matches_hand_computed_values_and_edges():
    from edgerestore.metrics import wilson_interval

    low, high = wilson_interval(78, 100)  # p = 0.78: centre 0.7696, half-width 0.0803
    assert low == pytest.approx(0.6893, abs=1e-4) and high == pytest.approx(0.8500, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and 0.25 < wilson_interval(0, 10)[1] < 0.32
    assert wilson_interval(10, 10)[1] == 1.0 and 0.68 < wilson_interval(10, 10)[0] < 0.75
    narrow, wide = wilson_interval(780, 1000), wilson_interval(78, 100)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    with pytest.raises(ValueError):
        wilson_interval(5, 0)
