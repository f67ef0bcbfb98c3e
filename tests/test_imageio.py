"""`router_thumbnail`: the one definition of the router's input (runtime, calibration, evaluation, training)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgerestore.contract import router_thumbnail


def _scene(h: int, w: int) -> np.ndarray:
    """A smooth scene with some texture (a thumbnail of pure noise would hide any resampling error)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 37.0 + yy / 53.0)], axis=2) * 200.0
    noise = np.random.default_rng(0).integers(0, 40, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("hw", [(360, 640), (560, 420), (671, 1200), (40, 30)])
def test_frames_below_three_thumbnail_sides_get_the_single_area_resize(hw):
    """Every training thumbnail (frames of 256–560 px) and the dev images: exactly cv2's INTER_AREA."""
    frame = _scene(*hw)
    single = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA)
    assert np.array_equal(router_thumbnail(frame, 224), single)


@pytest.mark.parametrize("hw", [(720, 1280), (1080, 1920), (1079, 1917), (2160, 3840)])
def test_large_frames_are_pre_shrunk_by_an_integer_factor_and_stay_close_to_the_single_resize(hw):
    frame = _scene(*hw)
    single = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA).astype(np.int16)
    thumb = router_thumbnail(frame, 224)
    assert thumb.shape == (224, 224, 3) and thumb.dtype == np.uint8
    diff = np.abs(thumb.astype(np.int16) - single)
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 6, (diff.mean(), np.percentile(diff, 99))
