"""Issue 18: real training material (hold-out splits, real-depth haze re-synthesis, real photographs for the
router) and do no harm (router temperature scaling, a confidence threshold below which a frame passes through
untouched, carried checkpoint → model.json → manifest → Restorer)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgerestore.conditions import CONDITIONS, acts_on, calibrated
from edgerestore.data.real_sets import (
    is_held_out,
    load_images,
    parse_real,
    resynthesise_haze,
    split_paths,
    transmission_from_pair,
)
from edgerestore.engines.bundle import Manifest
from edgerestore.errors import UserError
from edgerestore.runtime.restorer import Restorer
from edgerestore.testing import OFFSETS, PROTOTYPES, write_bundle


# ------------------------------------------------------------------------------------------ calibration rule
def test_temperature_scaling_of_probabilities_equals_softmax_of_scaled_logits():
    z = np.array([2.0, -1.0, 0.5, 0.0, 1.5])
    p = np.exp(z) / np.exp(z).sum()
    for t in (0.5, 1.0, 2.5):
        want = np.exp(z / t) / np.exp(z / t).sum()
        assert np.allclose(calibrated(p, t), want, atol=1e-12)


def test_acts_on_needs_a_weather_verdict_above_the_threshold():
    assert not acts_on(np.array([0.6, 0.1, 0.1, 0.1, 0.1]), 0.0)  # clean never acts
    assert acts_on(np.array([0.1, 0.6, 0.1, 0.1, 0.1]), 0.5)
    assert not acts_on(np.array([0.1, 0.45, 0.25, 0.1, 0.1]), 0.5)  # unsure: passes through


def test_manifest_router_calibration_is_checked():
    base = json.loads(json.dumps(_manifest_dict()))
    assert Manifest.from_dict(base).router_calibration == {}
    base["router_calibration"] = {"temperature": 1.7, "threshold": 0.55}
    assert Manifest.from_dict(base).router_calibration == {"temperature": 1.7, "threshold": 0.55}
    for bad in ({"temperature": 0}, {"threshold": 1.0}, {"threshold": "x"}, [1, 2]):
        base["router_calibration"] = bad
        with pytest.raises(ValueError, match="router_calibration"):
            Manifest.from_dict(base)


def _manifest_dict() -> dict:
    return {
        "format_version": 1,
        "family": "uffn",
        "profile": "p",
        "conditions": list(CONDITIONS),
        "stride": 2,
        "thumbnail_size": 32,
        "backend": "onnxruntime",
        "precision": "fp32",
        "graphs": {"router": {"file": "router.onnx", "precision": "fp32", "sha256": "0" * 64}},
        "shape_profile": {"min": [16, 16], "opt": [16, 16], "max": [64, 64]},
        "builder": {},
        "device": {},
        "created_at": "2026-01-01T00:00:00+00:00",
    }


# ------------------------------------------------------------------------------------------ runtime
def _unsure(h: int = 40, w: int = 48) -> np.ndarray:
    """A frame the synthetic router calls rain with probability ≈ 0.56 (clean 0.25, haze 0.2)."""
    frame = np.empty((h, w, 3), np.uint8)
    frame[:] = (125, 140, 50)
    return frame


def _with_calibration(bundle_dir, calibration: dict):
    path = bundle_dir / "manifest.json"
    d = json.loads(path.read_text())
    d["router_calibration"] = calibration
    path.write_text(json.dumps(d))
    return bundle_dir


@pytest.fixture
def bundle_dir(tmp_path):
    return write_bundle(tmp_path / "bundle")


def test_an_unsure_frame_passes_through_untouched_and_a_sure_one_is_restored(bundle_dir):
    _with_calibration(bundle_dir, {"temperature": 1.0, "threshold": 0.8})
    with Restorer.open(bundle_dir, threads=1) as r:
        assert r.min_confidence == 0.8
        unsure = _unsure()  # the router says rain, but only with p ≈ 0.56
        result = r(unsure)
        assert not result.restored and "uncertain" in result.flags and result.condition == "clean"
        assert result.image is unsure  # bit-identical: the caller's own array
        assert "branch_rain" not in r.backend.run_counts and "trunk" not in r.backend.run_counts
        sure = np.empty_like(unsure)
        sure[:] = PROTOTYPES["rain"]
        result = r(sure)
        assert result.restored and result.condition == "rain" and "uncertain" not in result.flags
        assert int(np.median(result.image.astype(int) - sure)) in (OFFSETS["rain"], OFFSETS["rain"] + 1)


def test_the_threshold_can_be_set_per_restorer_and_zero_acts_on_every_verdict(bundle_dir):
    _with_calibration(bundle_dir, {"temperature": 1.0, "threshold": 0.8})
    with Restorer.open(bundle_dir, threads=1, min_confidence=0.0) as r:
        assert r(_unsure()).restored
    with pytest.raises(UserError, match="min_confidence"):
        Restorer.open(bundle_dir, threads=1, min_confidence=1.5)


def test_a_temperature_above_one_softens_the_confidence_the_restorer_reports(bundle_dir):
    frame = _unsure()
    with Restorer.open(bundle_dir, threads=1) as r:
        sharp = r(frame)
    _with_calibration(bundle_dir, {"temperature": 4.0, "threshold": 0.0})
    with Restorer.open(bundle_dir, threads=1) as r:
        soft = r(frame)
    assert soft.condition == sharp.condition == "rain"
    assert soft.confidence < sharp.confidence
    assert np.isclose(soft.probs.sum(), 1.0, atol=1e-5)


def test_video_keeps_its_hysteresis_through_an_unsure_frame(bundle_dir):
    _with_calibration(bundle_dir, {"temperature": 1.0, "threshold": 0.8})
    rain = np.empty((40, 48, 3), np.uint8)
    rain[:] = PROTOTYPES["rain"]
    with Restorer.open(bundle_dir, threads=1, video=True, dwell=3) as r:
        clip = [rain] * 4 + [_unsure()] + [rain] * 3
        results = [r(f) for f in clip]
        assert [x.condition for x in results] == ["rain"] * len(clip)  # no flicker to pass-through
        assert "uncertain" in results[4].flags and "smoothed" in results[4].flags


# ------------------------------------------------------------------------------------------ real data
def test_hold_out_patterns_split_every_source_by_full_path(tmp_path):
    for sub in ("seq0001", "seq0004"):
        (tmp_path / sub).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / sub / f"f{i}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
    paths = sorted(tmp_path.rglob("*.png"))
    train, held = split_paths(paths, ["*/seq0004/*"])
    assert len(train) == 3 and len(held) == 3 and all("seq0004" in str(p) for p in held)
    assert is_held_out(paths[0], []) is False
    a, b = load_images([tmp_path], ["*/seq0004/*"], long_side=16)
    assert len(a) == len(b) == 3 and max(a[0].shape[:2]) == 16  # shrunk to the long side


def test_parse_real_refuses_malformed_items_in_one_line(tmp_path):
    assert parse_real([f"haze={tmp_path}"]) == {"haze": [tmp_path]}
    for bad, message in (
        ("haze", "CONDITION=DIR"),
        (f"fog={tmp_path}", "unknown condition"),
        ("haze=/nope", "not a folder"),
    ):
        with pytest.raises(UserError, match=message):
            parse_real([bad])


def _hazy_scene(rng, h=48, w=64, beta=1.2):
    clear = rng.uniform(0.05, 0.8, (h, w, 3)).astype(np.float32)
    clear = cv2.GaussianBlur(clear, (0, 0), 1.0)
    depth = np.tile(np.linspace(0.2, 1.5, w, dtype=np.float32), (h, 1))
    t = np.exp(-beta * depth)
    return clear, t, clear * t[..., None] + (1.0 - t[..., None])


def test_transmission_is_recovered_from_a_pair_and_resynthesis_follows_the_scattering_model():
    rng = np.random.default_rng(0)
    clear, t, hazy = _hazy_scene(rng)
    est = transmission_from_pair(hazy, clear, airlight=1.0, smooth=0)
    assert np.abs(est - np.clip(t, 0.02, 1)).max() < 1e-4
    new = resynthesise_haze(clear, est, np.random.default_rng(1))
    # the new input is J·t' + A'(1 − t') for one t' = t^γ and a near-grey A': check by refitting
    assert new.shape == clear.shape and 0 <= new.min() and new.max() <= 1
    assert not np.allclose(new, hazy)
    assert (new.mean(axis=2) >= clear.mean(axis=2) - 0.3).all()


def _reside_folder(root, scenes=(1, 2, 3), levels=2):
    rng = np.random.default_rng(3)
    (root / "hazy").mkdir(parents=True)
    (root / "clear").mkdir()
    for s in scenes:
        clear, _, _ = _hazy_scene(rng)
        cv2.imwrite(str(root / "clear" / f"{s}.png"), (clear * 255).astype(np.uint8))
        for k in range(1, levels + 1):
            _, _, hazy = _hazy_scene(rng, beta=0.5 * k)
            cv2.imwrite(str(root / "hazy" / f"{s}_{k}.png"), (hazy * 255).astype(np.uint8))
    return root


def test_real_haze_pairs_split_by_scene_and_items_are_pure_functions_of_the_index(tmp_path):
    torch = pytest.importorskip("torch")
    from edgerestore.data.datasets import InterleavedDataset, RealHazeDataset

    root = _reside_folder(tmp_path / "sots")
    train = RealHazeDataset([root], 32, seed=5, split="train", hold_out=["*/3*"])
    val = RealHazeDataset([root], None, split="val", hold_out=["*/3*"])
    assert {p.target.stem for p in train.pairs} == {"1", "2"} and {p.target.stem for p in val.pairs} == {"3"}
    a, b = train[7], RealHazeDataset([root], 32, seed=5, split="train", hold_out=["*/3*"])[7]
    assert torch.equal(a["input"], b["input"]) and a["input"].shape == (3, 32, 32)
    assert val[0]["input"].shape == (3, 48, 64)  # whole images, as recorded
    with pytest.raises(UserError, match="no val haze pairs"):
        RealHazeDataset([root], None, split="val", hold_out=[])
    mixed = InterleavedDataset([train, val], [0.75, 0.25], length=4000)
    from_val = sum(mixed._locate(i)[0] is val for i in range(4000))
    assert abs(from_val / 4000 - 0.25) < 0.01


def test_router_thumbnails_use_real_photographs_for_their_condition():
    pytest.importorskip("torch")
    from edgerestore.data.router_thumbnails import RouterThumbnailDataset

    clean = [np.full((120, 160, 3), 128, np.uint8)]
    fog = [np.full((120, 160, 3), 230, np.uint8)]  # a real "fog" photograph, recognisable by its level
    ds = RouterThumbnailDataset(size=16, images=clean, real={"haze": fog}, real_share=1.0)
    haze_items = [
        ds[i] for i in range(len(CONDITIONS) * 4) if i % len(CONDITIONS) == CONDITIONS.index("haze")
    ]
    assert all(abs(float(it["thumbnail"].mean()) - 230 / 255) < 0.01 for it in haze_items)


def test_calibrate_router_picks_a_temperature_and_a_threshold_that_leaves_clean_frames_alone():
    torch = pytest.importorskip("torch")
    from edgerestore.train import router_stage

    class Items:
        def __init__(self, n):
            g = torch.Generator().manual_seed(0)
            self.y = torch.arange(n) % len(CONDITIONS)
            self.x = torch.randn(n, 5, generator=g) * 2.0  # noisy logits

        def __getitem__(self, i):
            return {"thumbnail": self.x[i], "condition": int(self.y[i])}

    class Overconfident(torch.nn.Module):
        def router(self, thumb):
            return 8.0 * thumb  # logits far too sharp

    cal = router_stage.calibrate_router(Overconfident(), Items(500), 500)
    assert cal["temperature"] > 2.0  # it undoes the sharpening
    assert cal["nll"]["after"] < cal["nll"]["before"]
    assert cal["clean_untouched"] >= router_stage.CLEAN_UNTOUCHED_TARGET
    i = cal["curve"]["threshold"].index(cal["threshold"])
    assert cal["curve"]["clean"]["untouched"][i] == cal["clean_untouched"]
    if i:  # the smallest threshold that meets the target
        assert cal["curve"]["clean"]["untouched"][i - 1] < router_stage.CLEAN_UNTOUCHED_TARGET


def test_the_trade_off_picture_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    from edgerestore.train.router_plot import plot_router_tradeoff

    taus = [0.0, 0.5, 0.9]
    cal = {
        "temperature": 1.5,
        "threshold": 0.5,
        "clean_untouched": 0.99,
        "samples": 10,
        "curve": {
            "threshold": taus,
            "clean": {"untouched": [0.9, 0.99, 1.0]},
            "rain": {"restored_right": [0.8, 0.7, 0.2], "passed_through": [0.0, 0.2, 0.8]},
        },
    }
    path = plot_router_tradeoff(cal, tmp_path / "t.png")
    assert cv2.imread(str(path)).shape[2] == 3


def test_restore_min_confidence_option_passes_unsure_images_through(bundle_dir, tmp_path, capsys):
    from edgerestore.cli import main

    _with_calibration(bundle_dir, {"temperature": 1.0, "threshold": 0.0})
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "unsure.png"), _unsure())
    common = ["--bundle", str(bundle_dir), "--threads", "1", "--quiet"]
    assert main(["restore", str(src), "--out", str(tmp_path / "acted"), *common]) == 0
    assert (
        main(["restore", str(src), "--out", str(tmp_path / "kept"), "--min-confidence", "0.9", *common]) == 0
    )
    original = cv2.imread(str(src / "unsure.png"))
    assert not np.array_equal(cv2.imread(str(tmp_path / "acted" / "unsure.png")), original)
    assert np.array_equal(cv2.imread(str(tmp_path / "kept" / "unsure.png")), original)
    capsys.readouterr()
    assert (
        main(["restore", str(src), "--out", str(tmp_path / "bad"), "--min-confidence", "1.5", *common]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--min-confidence 1.5" in err[0]
