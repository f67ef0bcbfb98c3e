"""Frames of any size: a frame beyond the bundle's max shape (or `tile_pixels`) runs in overlapping tiles whose
stitched output equals the whole-frame output, in memory bounded by the tile, not by the frame."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgerestore.errors import UserError
from edgerestore.runtime.restorer import Restorer
from edgerestore.runtime.tiles import tile_grid
from edgerestore.testing import OFFSETS, PROTOTYPES, write_bundle


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def deep_bundle(tmp_path_factory):
    """3x3 convolutions in the trunk and branches: outputs depend on neighbours, so seams would show."""
    return write_bundle(tmp_path_factory.mktemp("deep"), depth=3, max_hw=(2048, 2048))


@pytest.fixture(scope="module")
def small_max_bundle(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("small"), depth=3, max_hw=(96, 128))


def frame_of(condition: str, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-25, 26, size=(h, w, 3))
    return np.clip(np.array(PROTOTYPES[condition]) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "hw, max_pixels, max_hw, overlap",
    [
        ((301, 411), 96 * 128, (96, 128), 48),
        ((6000, 8000), 1088 * 1920, (1088, 1920), 48),
        ((65, 40), 10**6, (64, 96), 48),
        ((17, 5000), 4096, None, 8),
    ],
)
def test_tile_grid_covers_every_pixel_once_within_the_limits(hw, max_pixels, max_hw, overlap):
    h, w = hw
    tiles = tile_grid(h, w, stride=2, overlap=overlap, max_pixels=max_pixels, max_hw=max_hw, min_hw=(16, 16))
    covered = np.zeros((h, w), np.int32)
    for t in tiles:
        covered[t.cy0 : t.cy1, t.cx0 : t.cx1] += 1
        th, tw = t.y1 - t.y0 + (t.y1 - t.y0) % 2, t.x1 - t.x0 + (t.x1 - t.x0) % 2
        assert th * tw <= max_pixels and (max_hw is None or (th <= max_hw[0] and tw <= max_hw[1]))
        assert t.y0 % 2 == 0 and t.x0 % 2 == 0  # same pixel phase as the whole frame
        assert t.y0 <= t.cy0 < t.cy1 <= t.y1 and t.x0 <= t.cx0 < t.cx1 <= t.x1
    assert (covered == 1).all()


@pytest.mark.parametrize("condition", ["rain", "snow"])
def test_a_frame_beyond_the_max_shape_runs_in_tiles_without_seams(deep_bundle, small_max_bundle, condition):
    frame = frame_of(condition, 301, 411)
    with Restorer.open(deep_bundle, threads=1) as whole, Restorer.open(small_max_bundle, threads=1) as tiled:
        reference = whole(frame)
        result = tiled(frame)
    assert "tiled" not in reference.flags and "tiled" in result.flags
    assert result.condition == condition and result.restored and result.image.shape == frame.shape
    assert psnr(result.image, reference.image) >= 45.0
    assert np.array_equal(result.image, reference.image)  # the overlap exceeds the receptive field


def test_without_overlap_the_seams_show(deep_bundle):
    """The check above can fail: tiles that read no context differ from the whole frame along the seams."""
    frame = frame_of("rain", 300, 400)
    with Restorer.open(deep_bundle, threads=1) as whole:
        reference = whole(frame).image
    with Restorer.open(deep_bundle, threads=1, tile_pixels=100 * 140, tile_overlap=0) as tiled:
        result = tiled(frame)
    assert "tiled" in result.flags
    assert not np.array_equal(result.image, reference)


def test_tile_pixels_bounds_a_frame_that_the_bundle_would_take_whole(deep_bundle):
    frame = frame_of("raindrop", 250, 333, seed=3)
    with Restorer.open(deep_bundle, threads=1) as whole:
        reference = whole(frame).image
    with Restorer.open(deep_bundle, threads=1, tile_pixels=128 * 128) as tiled:
        result = tiled(frame)
    assert "tiled" in result.flags
    assert np.array_equal(result.image, reference)


def test_gray_alpha_and_16_bit_frames_keep_their_format_when_tiled(small_max_bundle, deep_bundle):
    base = frame_of("rain", 200, 260)
    alpha = np.dstack([base, np.full(base.shape[:2], 77, np.uint8)])
    deep16 = base.astype(np.uint16) * 257
    with Restorer.open(small_max_bundle, threads=1, force="rain") as r:
        for frame in (alpha, deep16):
            result = r(frame)
            assert "tiled" in result.flags and result.image.shape == frame.shape
            assert result.image.dtype == frame.dtype
        assert (r(alpha).image[:, :, 3] == 77).all()


def test_reduced_branch_on_a_large_frame_adds_its_correction_in_strips(tmp_path):
    """haze at 1/4 resolution: a frame above `tile_pixels` is upsampled strip by strip, same result."""
    bundle = write_bundle(tmp_path / "b", depth=2, branch_scales={"haze": 0.25})
    frame = frame_of("haze", 400, 520)
    with Restorer.open(bundle, threads=1) as whole:
        reference = whole(frame)
    with Restorer.open(bundle, threads=1, tile_pixels=64 * 64) as tiled:
        result = tiled(frame)
    assert "reduced" in reference.flags and {"reduced", "tiled"} <= result.flags
    assert psnr(result.image, reference.image) >= 45.0
    assert np.abs(result.image.astype(int) - reference.image.astype(int)).max() <= 1
    assert int(np.median(result.image.astype(int) - frame.astype(int))) in (
        OFFSETS["haze"],
        OFFSETS["haze"] + 1,
    )


def test_cmudrn_frames_beyond_the_max_shape_run_in_tiles(tmp_path):
    bundle = write_bundle(tmp_path / "c", family="cmudrn", max_hw=(64, 64))
    frame = frame_of("rain", 150, 170)
    with Restorer.open(bundle, threads=1) as r:
        result = r(frame)
    assert "tiled" in result.flags
    assert np.array_equal(result.image, np.clip(frame.astype(int) + 5, 0, 255).astype(np.uint8))


def test_impossible_tiles_are_one_line(small_max_bundle):
    with pytest.raises(UserError, match="tile_pixels"):
        Restorer.open(small_max_bundle, threads=1, tile_pixels=10)


def test_a_6000x8000_frame_stays_under_2_gb(tmp_path):
    """Peak resident memory of a process that restores one 6000x8000 frame (tiled) with a synthetic bundle."""
    bundle = write_bundle(tmp_path / "m", depth=1)
    code = textwrap.dedent(
        f"""
        import json, resource
        import numpy as np
        from edgerestore.runtime.restorer import Restorer
        frame = np.full((6000, 8000, 3), (170, 90, 60), np.uint8)
        with Restorer.open({str(bundle)!r}, threads=1) as r:
            result = r(frame)
        print(json.dumps({{"flags": sorted(result.flags), "shape": list(result.image.shape),
                           "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "tiled" in out["flags"] and out["shape"] == [6000, 8000, 3]
    assert out["peak_mib"] < 2048, out
