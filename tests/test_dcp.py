"""The Dark Channel Prior baseline removes synthetic haze made with the scattering model."""

from __future__ import annotations

import numpy as np
import pytest

from edgerestore.baselines import atmospheric_light, dark_channel, dehaze_dcp, guided_filter
from edgerestore.metrics import calculate_psnr


def _hazy_scene():
    """A smooth, colourful haze-free image J (one channel dark everywhere, as the prior assumes) under a
    bright sky strip, a depth ramp (the sky far away), and I = J·t + A(1 − t) with t = exp(−β d)."""
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float64)
    airlight = np.array([0.85, 0.88, 0.9])
    clear = np.stack(
        [0.04 + 0.02 * np.sin(xx / 11), 0.3 + 0.5 * yy / 96, 0.2 + 0.6 * (0.5 + 0.5 * np.cos(xx / 17))],
        axis=2,
    )
    depth = 0.3 + 1.5 * xx / 128
    clear[:12], depth[:12] = airlight, 8.0
    t = np.exp(-1.0 * depth)[..., None]
    hazy = clear * t + airlight * (1 - t)
    to_u8 = lambda x: np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    return to_u8(clear), to_u8(hazy)


def test_dcp_improves_psnr_on_a_synthetic_hazy_image():
    clear, hazy = _hazy_scene()
    restored = dehaze_dcp(hazy, patch=7, radius=16)
    assert restored.shape == hazy.shape and restored.dtype == np.uint8
    before, after = calculate_psnr(hazy, clear), calculate_psnr(restored, clear)
    assert after > before + 10, (before, after)


def test_dark_channel_is_min_over_channels_and_patch():
    img = np.full((9, 9, 3), 0.8)
    img[4, 4, 1] = 0.1
    dark = dark_channel(img, 3)
    assert dark[3:6, 3:6] == pytest.approx(np.full((3, 3), 0.1))
    assert dark[0, 0] == pytest.approx(0.8)


def test_atmospheric_light_is_brightest_input_pixel_among_haziest_dark_channel():
    img = np.full((20, 20, 3), 0.2)
    img[5, 5] = [0.9, 0.95, 1.0]
    img[6, 6] = [0.7, 0.7, 0.7]
    a = atmospheric_light(img, dark_channel(img, 1), top_fraction=0.005)
    assert a == pytest.approx([0.9, 0.95, 1.0])


def test_guided_filter_preserves_constant_source_and_follows_guide_edges():
    guide = np.zeros((32, 32))
    guide[:, 16:] = 1.0
    assert guided_filter(guide, np.full((32, 32), 0.4), 4, 1e-3) == pytest.approx(np.full((32, 32), 0.4))
    out = guided_filter(guide, guide * 0.6 + 0.2, 4, 1e-4)
    assert out[:, :14].max() < 0.25 and out[:, 18:].min() > 0.75  # edge kept, not blurred across
