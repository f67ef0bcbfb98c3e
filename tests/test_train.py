"""Training: the papers' losses decrease on a fixed batch, resume is exact, DDP runs on two CPU processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from edgerestore.errors import UserError  # noqa: E402
from edgerestore.models import zoo  # noqa: E402
from edgerestore.models.cmudrn import CMUDRN, CMUDRNConfig  # noqa: E402
from edgerestore.models.uffn import UFFN, UFFNConfig  # noqa: E402
from edgerestore.train.losses import cmudrn_loss, cosine_decay, ssim, uffn_loss  # noqa: E402
from edgerestore.train.trainer import TrainConfig, train  # noqa: E402

TINY = ["width=8", "experts=2", "expert_dilations=(1, 2)", "router_width=8", "thumbnail_size=32"]
TINY_DICT = dict(width=8, experts=2, expert_dilations=(1, 2), router_width=8, thumbnail_size=32)


def test_ssim_is_one_for_identical_and_lower_for_noisy():
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)
    assert (ssim(x, (x + 0.2 * torch.randn_like(x)).clamp(0, 1)) < 0.9).all()


def test_router_weight_decays_along_a_cosine():
    assert cosine_decay(1.0, 0.0) == pytest.approx(1.0)
    assert cosine_decay(1.0, 0.5) == pytest.approx(0.5)
    assert cosine_decay(1.0, 1.0, floor=0.1) == pytest.approx(0.1)


def test_uffn_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = UFFN(UFFNConfig(**TINY_DICT)).train()
    target = torch.rand(4, 3, 32, 32)
    x = (target * 0.6 + 0.3).clamp(0, 1)
    cond = torch.tensor([1, 2, 3, 4])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        restored, logits = model(x, cond)
        loss, parts = uffn_loss(restored, target, logits, cond, progress=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts["loss"])
    assert losses[-1] < 0.7 * losses[0]


def test_cmudrn_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = CMUDRN(CMUDRNConfig(loops=2, width=8)).train()
    target = torch.rand(2, 3, 24, 24)
    x = (target + 0.3 * (torch.rand_like(target) > 0.9)).clamp(0, 1)
    cond = torch.tensor([1, 4])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, parts = cmudrn_loss(model(x), target, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts["loss"])
    assert losses[-1] < 0.8 * losses[0]


def _cfg(tmp_path: Path, clean_dir: Path, steps: int, name: str) -> TrainConfig:
    return TrainConfig(
        profile="uffn-tiny",
        out=tmp_path / name,
        clean_dir=clean_dir,
        steps=steps,
        batch_size=2,
        patch_size=32,
        warmup=2,
        val_every=1000,
        val_samples=4,
        checkpoint_every=1000,
        workers=0,
        lr=1e-3,
        overrides=TINY_DICT,
    )


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, clean_dir):
    train(_cfg(tmp_path, clean_dir, 4, "straight.pt"), progress=False)
    first = _cfg(tmp_path, clean_dir, 4, "resumed.pt")
    first.stop_at = 2  # interrupted half way through the same schedule
    train(first, progress=False)
    assert zoo.load_checkpoint(tmp_path / "resumed.pt")[1]["step"] == 2
    second = _cfg(tmp_path, clean_dir, 4, "resumed.pt")
    train(second, progress=False)
    a, meta_a = zoo.load_checkpoint(tmp_path / "straight.pt")
    b, meta_b = zoo.load_checkpoint(tmp_path / "resumed.pt")
    assert meta_a["step"] == meta_b["step"] == 4
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert (tmp_path / "straight.log.jsonl").exists()


def test_init_from_starts_a_fresh_schedule_from_the_weights_and_refuses_other_settings(tmp_path, clean_dir):
    train(_cfg(tmp_path, clean_dir, 3, "first.pt"), progress=False)
    first, _ = zoo.load_checkpoint(tmp_path / "first.pt")
    second = _cfg(tmp_path, clean_dir, 2, "second.pt")
    second.init_from, second.stop_at, second.lr = (
        tmp_path / "first.pt",
        1,
        1e-12,
    )  # one step that barely moves
    train(second, progress=False)
    payload = zoo.read_payload(tmp_path / "second.pt")
    assert payload["step"] == 1  # its own schedule, not the first run's step 3
    assert payload["train"]["history"][0]["init_from"] == str(tmp_path / "first.pt")
    assert payload["train"]["config"]["init_from"] == str(tmp_path / "first.pt")
    b, _ = zoo.load_checkpoint(tmp_path / "second.pt")
    for (name, pa), pb in zip(first.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6), name  # started from the first run's weights
    fresh = dict(zoo.build("uffn-tiny", **TINY_DICT).named_parameters())
    assert any(not torch.equal(fresh[k], v) for k, v in b.named_parameters())
    wrong = _cfg(tmp_path, clean_dir, 2, "third.pt")
    wrong.init_from, wrong.overrides = tmp_path / "first.pt", {**TINY_DICT, "width": TINY_DICT["width"] * 2}
    with pytest.raises(UserError, match="--init-from .*first.pt was trained with width="):
        train(wrong, progress=False)
    assert not (tmp_path / "third.pt").exists()


@pytest.mark.parametrize("profile", ["uffn-tiny", "cmudrn-t3"])
def test_whole_model_run_keeps_held_out_images_for_validation_only(tmp_path, clean_dir, profile):
    from edgerestore.train.trainer import build_datasets

    cfg = _cfg(tmp_path, clean_dir, 2, "m.pt")
    cfg.profile, cfg.hold_out = profile, ["*/img3.png"]
    cfg.overrides = TINY_DICT if profile == "uffn-tiny" else {}
    model = zoo.build(profile, **cfg.overrides)
    train_set, val_set = build_datasets(cfg, model)
    held_out = cv2.imread(str(clean_dir / "img3.png"))[..., ::-1]

    def holds(images) -> bool:
        return any(im.shape == held_out.shape and np.array_equal(im, held_out) for im in images)

    assert len(train_set.pairs.images) == 3 and not holds(train_set.pairs.images)
    assert len(val_set.pairs.images) == 1 and holds(val_set.pairs.images)
    if profile == "uffn-tiny":
        assert not holds(train_set.thumbnails.images) and holds(val_set.thumbnails.images)
    cfg.hold_out = ["*/nothing-*.png"]
    with pytest.raises(UserError, match="no held-out images"):
        build_datasets(cfg, model)


@pytest.mark.slow
def test_ddp_runs_on_two_cpu_processes_with_gloo(tmp_path, clean_dir):
    out = tmp_path / "ddp.pt"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "edgerestore.cli",
        "train",
        "--profile",
        "uffn-tiny",
        "--clean",
        str(clean_dir),
        "--out",
        str(out),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--patch-size",
        "32",
        "--workers",
        "0",
        "--quiet",
        "--threads",
        "1",
        "--val-every",
        "2",
        "--val-samples",
        "2",
    ] + [a for kv in TINY for a in ("--set", kv)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, meta = zoo.load_checkpoint(out)
    assert meta["step"] == 2


def _stage_straight_and_resumed(tmp_path, clean_dir, run_stage):
    """A 2-step main run, then the stage `run_stage(cfg)` for 4 steps straight and for 2 + 2 resumed on copies.

    Returns (the main run's weights, the straight run's metrics, its model and checkpoint meta, the resumed
    run's model)."""
    train(_cfg(tmp_path, clean_dir, 2, "base.pt"), progress=False)
    before = zoo.load_checkpoint(tmp_path / "base.pt")[0].state_dict()
    for name in ("straight.pt", "resumed.pt"):
        (tmp_path / name).write_bytes((tmp_path / "base.pt").read_bytes())
    metrics = run_stage(_cfg(tmp_path, clean_dir, 4, "straight.pt"))
    first = _cfg(tmp_path, clean_dir, 4, "resumed.pt")
    first.stop_at = 2
    run_stage(first)
    run_stage(_cfg(tmp_path, clean_dir, 4, "resumed.pt"))
    straight, meta = zoo.load_checkpoint(tmp_path / "straight.pt")
    return before, metrics, straight, meta, zoo.load_checkpoint(tmp_path / "resumed.pt")[0]


def _changed_keys_and_assert_equal(before: dict, a, b) -> list[str]:
    """The state-dict keys `a` changed from `before`; `a` and `b` must be equal bit for bit."""
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    return [k for k, v in a.state_dict().items() if not torch.equal(v, before[k])]


@pytest.mark.slow
def test_router_only_stage_changes_only_the_router_and_resumes_exactly(tmp_path, clean_dir):
    from edgerestore.train.router_stage import train_router

    before, metrics, a, meta, b = _stage_straight_and_resumed(
        tmp_path, clean_dir, lambda cfg: train_router(cfg, progress=False)
    )
    assert 0.0 <= metrics["router_acc"] <= 1.0 and len(metrics["confusion"]) == 5
    assert meta["router_stage"]["step"] == 4 and meta["step"] == 2  # the main stage's step is untouched
    changed = _changed_keys_and_assert_equal(before, a, b)
    assert changed and all(k.startswith("router_net.") for k in changed)
    # a finished router stage is calibrated on its validation thumbnails (do no harm), and says so beside it
    cal = meta["router_calibration"]
    assert cal["temperature"] > 0 and 0 <= cal["threshold"] < 1 and cal["samples"] >= 500
    assert (tmp_path / "straight.router_tradeoff.png").is_file()


@pytest.mark.slow
def test_branch_only_stage_changes_only_that_branch_and_resumes_exactly(tmp_path, clean_dir):
    from edgerestore.train.branch_stage import train_branch
    from edgerestore.train.trainer import ship_weights

    def haze_at_half_resolution(cfg):  # the stage trains the composition at the branch's resolution
        cfg.overrides = {**cfg.overrides, "branch_scales": {"haze": 0.5}}
        return train_branch(cfg, "haze", progress=False)

    before, metrics, a, meta, b = _stage_straight_and_resumed(tmp_path, clean_dir, haze_at_half_resolution)
    assert set(metrics) == {"psnr/haze", "input_psnr/haze"}
    assert meta["branch_stages"]["haze"]["step"] == 4 and meta["step"] == 2
    assert meta["config"]["branch_scales"] == {"haze": 0.5} and a.branch_scale("haze") == 0.5
    changed = _changed_keys_and_assert_equal(before, a, b)
    # BatchNorm running statistics outside the branch stay too: the frozen parts run in eval mode
    assert changed and all(k.startswith("branches.haze.") for k in changed)
    log = (tmp_path / "straight.haze.log.jsonl").read_text().splitlines()
    assert '"val"' in log[-1]

    shipped = torch.load(ship_weights(tmp_path / "straight.pt", tmp_path / "ship.pt"), weights_only=False)
    assert "optimizer" not in shipped and "optimizer" not in shipped["branch_stages"]["haze"]
    assert shipped["branch_stages"]["haze"]["step"] == 4
    for name, value in zoo.load_checkpoint(tmp_path / "ship.pt")[0].state_dict().items():
        assert torch.equal(value, a.state_dict()[name]), name


@pytest.mark.slow
def test_branch_only_can_give_a_branch_a_subpixel_decoder_and_resumes_exactly(tmp_path, clean_dir):
    from edgerestore.errors import UserError
    from edgerestore.train.branch_stage import train_branch

    def rain_subpixel(cfg):
        cfg.overrides = {**cfg.overrides, "branch_decoders": {"rain": "subpixel"}}
        return train_branch(cfg, "rain", progress=False)

    before, _, a, meta, b = _stage_straight_and_resumed(tmp_path, clean_dir, rain_subpixel)
    assert (
        meta["config"]["branch_decoders"] == {"rain": "subpixel"} and a.branch_decoder("rain") == "subpixel"
    )
    assert meta["branch_stages"]["rain"]["step"] == 4
    assert isinstance(a.branch("rain").decoder[-1], torch.nn.PixelShuffle)
    reshaped = [k for k, v in a.state_dict().items() if k not in before or v.shape != before[k].shape]
    assert reshaped and all(k.startswith("branches.rain.decoder.") for k in reshaped)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name  # resumed after the switch = straight, bit for bit
    changed = [k for k, v in a.state_dict().items() if k in reshaped or not torch.equal(v, before[k])]
    assert all(k.startswith("branches.rain.") for k in changed)
    with torch.no_grad():  # the trained decoder is not the zero-initialised one
        assert a.branch("rain").decoder[3].weight.abs().sum() > 0

    cfg = _cfg(tmp_path, clean_dir, 4, "straight.pt")  # changing another branch's decoder is refused
    cfg.overrides = {**cfg.overrides, "branch_decoders": {"rain": "subpixel", "snow": "subpixel"}}
    with pytest.raises(UserError, match="only the rain branch's decoder may change"):
        train_branch(cfg, "rain", progress=False)


def test_branch_only_refuses_an_unknown_branch_in_one_line(tmp_path, clean_dir):
    from edgerestore.errors import UserError
    from edgerestore.train.branch_stage import train_branch

    zoo.save_checkpoint(tmp_path / "m.pt", UFFN(UFFNConfig(**TINY_DICT)), "uffn-tiny")
    with pytest.raises(UserError, match="the branches are rain, haze, raindrop, snow"):
        train_branch(_cfg(tmp_path, clean_dir, 2, "m.pt"), "fog", progress=False)
    with pytest.raises(UserError, match="not found"):
        train_branch(_cfg(tmp_path, clean_dir, 2, "missing.pt"), "haze", progress=False)


def test_router_from_copies_a_matching_router_and_refuses_a_different_one(tmp_path, clean_dir):
    from edgerestore.errors import UserError
    from edgerestore.train.router_stage import train_router

    donor, receiver = UFFN(UFFNConfig(**TINY_DICT)), UFFN(UFFNConfig(**{**TINY_DICT, "width": 4}))
    torch.nn.init.constant_(donor.router_net.fc.bias, 0.25)
    calibration = {"temperature": 1.3, "threshold": 0.55}
    zoo.save_checkpoint(
        tmp_path / "donor.pt",
        donor,
        "uffn-tiny",
        router_stage={"router_acc": 0.9},
        router_calibration=calibration,
    )
    zoo.save_checkpoint(tmp_path / "receiver.pt", receiver, "uffn-tiny")
    cfg = _cfg(tmp_path, clean_dir, 4, "receiver.pt")
    cfg.overrides, cfg.router_from = {**TINY_DICT, "width": 4}, tmp_path / "donor.pt"
    assert train_router(cfg, progress=False)["router_acc"] == 0.9
    got, meta = zoo.load_checkpoint(tmp_path / "receiver.pt")
    assert torch.equal(got.router_net.fc.bias, donor.router_net.fc.bias)
    assert torch.equal(got.encoder[0].weight, receiver.encoder[0].weight)  # the rest is untouched
    assert meta["router_stage"]["copied_from"] == str(tmp_path / "donor.pt")
    assert meta["router_calibration"] == calibration  # the calibration travels with the router's weights
    odd = UFFN(UFFNConfig(**{**TINY_DICT, "router_width": 4}))
    zoo.save_checkpoint(tmp_path / "odd.pt", odd, "uffn-tiny")
    cfg.router_from = tmp_path / "odd.pt"
    with pytest.raises(UserError, match="differs"):
        train_router(cfg, progress=False)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--profile", "cmudrn-t3", "--branch-only", "haze"], "--branch-only is for UFFN profiles"),
        (["--profile", "cmudrn-t3", "--router-only"], "--router-only is for UFFN profiles"),
        (["--profile", "uffn-tiny", "--router-only", "--branch-only", "haze"], "separate stages"),
        (
            ["--profile", "uffn-tiny", "--router-only", "--init-from", "x.pt"],
            "--init-from starts a whole-model",
        ),
    ],
)
def test_train_stage_flags_refuse_bad_combinations_in_one_line(tmp_path, clean_dir, capsys, extra, message):
    from edgerestore.cli import main

    code = main(["train", "--clean", str(clean_dir), "--out", str(tmp_path / "m.pt"), "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "option, message",
    [
        (["--steps", "0"], "--steps 0 must be ≥ 1"),
        (["--batch-size", "0"], "--batch-size 0 must be ≥ 1"),
        (["--patch-size", "-4"], "--patch-size -4 must be ≥ 16"),
        (["--checkpoint-every", "0"], "--checkpoint-every 0 must be ≥ 1"),
        (["--val-every", "-1"], "--val-every -1 must be ≥ 1"),
        (["--workers", "-1"], "--workers -1 must be ≥ 0"),
        (["--threads", "-1"], "--threads -1 must be ≥ 0"),
        (["--stop-at", "0"], "--stop-at 0 must be ≥ 1"),
        (["--lr", "-1"], "--lr -1 must be > 0"),
        (["--weight-decay", "-0.1"], "--weight-decay -0.1 must be ≥ 0"),
    ],
)
def test_out_of_range_train_options_are_one_line_errors_before_any_file(
    tmp_path, clean_dir, capsys, option, message
):
    """They used to end mid-run in a torch traceback or a ZeroDivisionError (--checkpoint-every 0)."""
    from edgerestore.cli import main

    out = tmp_path / "m.pt"
    code = main(
        ["train", "--profile", "uffn-tiny", "--clean", str(clean_dir), "--out", str(out), "--quiet", *option]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("edgerestore train: error: "), err
    assert message in err[0] and not list(tmp_path.glob("m.pt*"))


def test_validation_runs_without_autograd():
    """Validation only measures: its forwards must not build autograd graphs (memory and time every
    `--val-every` steps); the decorator once slid onto a helper defined above it."""
    from edgerestore.train.trainer import validate

    model = UFFN(UFFNConfig(**TINY_DICT))
    modes: list[bool] = []
    model.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    rng = torch.Generator().manual_seed(0)
    item = {
        "input": torch.rand(3, 32, 32, generator=rng),
        "target": torch.rand(3, 32, 32, generator=rng),
        "condition": 1,
        "thumbnail": torch.rand(3, 32, 32, generator=rng),
        "thumbnail_condition": 1,
    }
    metrics = validate(model, [item, item], samples=2)
    assert modes == [True, True] and set(metrics) == {"psnr/rain", "input_psnr/rain", "router_acc"}


def test_branch_from_merges_branches_fine_tuned_on_copies(tmp_path, clean_dir):
    """Two branch stages run at once on copies of one checkpoint and merged with --branch-from equal the
    two stages run one after the other: each branch, its resolution/decoder and stage record come over, the
    rest stays bit for bit; a branch trained against another trunk is refused."""
    from edgerestore.errors import UserError
    from edgerestore.train.branch_stage import train_branch

    zoo.save_checkpoint(tmp_path / "base.pt", UFFN(UFFNConfig(**TINY_DICT)), "uffn-tiny")
    for name in ("rain.pt", "haze.pt", "other.pt"):
        (tmp_path / name).write_bytes((tmp_path / "base.pt").read_bytes())
    rain = _cfg(tmp_path, clean_dir, 2, "rain.pt")
    rain.overrides = {**rain.overrides, "branch_decoders": {"rain": "subpixel"}}
    train_branch(rain, "rain", progress=False)
    haze = _cfg(tmp_path, clean_dir, 2, "haze.pt")
    haze.overrides = {**haze.overrides, "branch_scales": {"haze": 0.5}}
    train_branch(haze, "haze", progress=False)
    before = zoo.load_checkpoint(tmp_path / "base.pt")[0].state_dict()

    for name, source in (("rain", "rain.pt"), ("haze", "haze.pt")):
        cfg = _cfg(tmp_path, None, 2, "base.pt")
        cfg.overrides, cfg.branch_from = {}, tmp_path / source
        train_branch(cfg, name, progress=False)
    merged, meta = zoo.load_checkpoint(tmp_path / "base.pt")
    assert merged.branch_decoder("rain") == "subpixel" and merged.branch_scale("haze") == 0.5
    assert merged.branch_decoder("haze") != "subpixel" and merged.branch_scale("rain") == 1.0
    trained = {n: zoo.load_checkpoint(tmp_path / f"{n}.pt")[0].state_dict() for n in ("rain", "haze")}
    for key, value in merged.state_dict().items():
        name = key.split(".")[1] if key.startswith("branches.") else None
        expected = trained[name][key] if name in trained else before[key]
        assert torch.equal(value, expected), key
    for name in ("rain", "haze"):
        stage = meta["branch_stages"][name]
        assert stage["step"] == 2 and stage["copied_from"].endswith(f"{name}.pt")
        assert "optimizer" not in stage and len(stage["copied_sha256"]) == 64

    train(_cfg(tmp_path, clean_dir, 2, "other.pt"), progress=False)  # a main-stage run changes the trunk
    cfg = _cfg(tmp_path, None, 2, "base.pt")
    cfg.overrides, cfg.branch_from = {}, tmp_path / "other.pt"
    with pytest.raises(UserError, match="its trunk differs"):
        train_branch(cfg, "snow", progress=False)
