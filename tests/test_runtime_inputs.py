"""Input normalisation: accepted formats come back in their own dtype/channels/order; everything else is a
one-line UserError."""

from __future__ import annotations

import numpy as np
import pytest

from edgerestore.contract import MIN_SIDE
from edgerestore.errors import UserError
from edgerestore.runtime.frames import normalise_frame
from edgerestore.runtime.restorer import Restorer
from edgerestore.testing import OFFSETS, PROTOTYPES, write_bundle


@pytest.fixture(scope="module")
def restorer(tmp_path_factory):
    with Restorer.open(write_bundle(tmp_path_factory.mktemp("bundle")), threads=1) as r:
        yield r


def rain_bgr(h=24, w=30):
    frame = np.empty((h, w, 3), np.uint8)
    frame[:] = PROTOTYPES["rain"]
    return frame


def test_bgr_rgb_and_bgra_keep_their_layout(restorer):
    bgr = rain_bgr()
    ref = restorer(bgr)
    assert ref.condition == "rain" and ref.image.shape == bgr.shape

    restorer.color = "rgb"
    try:
        rgb = restorer(bgr[:, :, ::-1].copy())
        assert rgb.condition == "rain"
        np.testing.assert_array_equal(rgb.image, ref.image[:, :, ::-1])
        rgba = np.dstack([bgr[:, :, ::-1], np.full(bgr.shape[:2], 7, np.uint8)])
        out = restorer(rgba)
        assert out.image.shape == rgba.shape
        np.testing.assert_array_equal(out.image[:, :, :3], ref.image[:, :, ::-1])
    finally:
        restorer.color = "bgr"

    alpha = np.arange(bgr.shape[0] * bgr.shape[1], dtype=np.uint8).reshape(bgr.shape[:2])
    bgra = np.dstack([bgr, alpha])
    out = restorer(bgra)
    assert out.condition == "rain" and out.image.shape == bgra.shape
    np.testing.assert_array_equal(out.image[:, :, :3], ref.image)
    np.testing.assert_array_equal(out.image[:, :, 3], alpha)  # alpha passes through


@pytest.mark.parametrize("shape", [(24, 30), (24, 30, 1)])
def test_gray_comes_back_gray(restorer, shape):
    restorer.force = "snow"
    try:
        gray = np.full(shape, 100, np.uint8)
        out = restorer(gray)
    finally:
        restorer.force = None
    assert out.restored and out.image.shape == shape and out.image.dtype == np.uint8
    assert int(np.median(out.image)) in (100 + OFFSETS["snow"], 100 + OFFSETS["snow"] + 1)


def test_16_bit_is_scaled_to_8_bit_and_back(restorer):
    frame16 = rain_bgr().astype(np.uint16) * 257
    out = restorer(frame16)
    ref = restorer(rain_bgr())
    assert out.condition == "rain" and out.image.dtype == np.uint16
    np.testing.assert_array_equal(out.image, ref.image.astype(np.uint16) * 257)
    clean16 = np.full((20, 20, 3), 128 * 257, np.uint16)
    assert restorer(clean16).image is clean16


def test_uint16_scaling_rounds_and_saturates():
    x = np.array([[0, 128, 129, 65535]] * MIN_SIDE, np.uint16)
    x = np.repeat(x, MIN_SIDE // 4 + 1, axis=1)
    bgr, fmt = normalise_frame(x)
    assert bgr.dtype == np.uint8 and fmt.dtype == np.uint16 and fmt.squeeze
    assert {int(v) for v in np.unique(bgr)} == {0, 1, 255}


@pytest.mark.parametrize(
    "frame, message",
    [
        (np.zeros((32, 32, 3), np.float32), "dtype float32"),
        (np.zeros((32, 32, 3), np.float64), "dtype float64"),
        (np.zeros((32, 32, 3), np.int32), "dtype int32"),
        (np.zeros((32, 32, 3), bool), "dtype bool"),
        (np.zeros((0, 0, 3), np.uint8), "too small"),
        (np.zeros((32, 0), np.uint8), "too small"),
        (np.zeros((32, 32, 5), np.uint8), "not an image"),
        (np.zeros((32, 32, 2), np.uint8), "not an image"),
        (np.zeros((1, 32, 32, 3), np.uint8), "not an image"),
        (np.zeros((32,), np.uint8), "not an image"),
        (np.zeros((MIN_SIDE - 1, 64, 3), np.uint8), "at least 16"),
        ([[0, 0], [0, 0]], "numpy array"),
        (None, "numpy array"),
        (b"jpeg bytes", "numpy array"),
    ],
)
def test_rejected_inputs_give_one_line_user_errors(restorer, frame, message):
    with pytest.raises(UserError, match=message) as info:
        restorer(frame)
    assert "\n" not in str(info.value)
