"""Training that survives interruption: damaged checkpoints and mismatched resumes are one line, one
training per --out, an interrupted run says so in its exit status, DDP ranks stop together and only rank 0
reports, and a --paired run resumes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from edgerestore.cli import main  # noqa: E402
from edgerestore.errors import UserError  # noqa: E402
from edgerestore.models import zoo  # noqa: E402
from edgerestore.train import trainer  # noqa: E402

TINY = ["width=8", "experts=2", "expert_dilations=(1, 2)", "router_width=8", "thumbnail_size=32"]
SETS = [a for kv in TINY for a in ("--set", kv)]


@pytest.fixture(scope="module")
def paired_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pairs") / "rain_pairs"
    rng = np.random.default_rng(1)
    for sub in ("input", "target"):
        (folder / sub).mkdir(parents=True)
    for i in range(3):
        clean = rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / "target" / f"p{i}.png"), clean)
        cv2.imwrite(
            str(folder / "input" / f"p{i}.png"), np.clip(clean.astype(int) + 30, 0, 255).astype(np.uint8)
        )
    return folder


def _argv(clean_dir: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "train", "--profile", "uffn-tiny", "--clean", str(clean_dir), "--out", str(out), "--steps", str(steps),
        "--batch-size", "2", "--patch-size", "32", "--workers", "0", "--warmup", "1", "--val-every", "1000",
        "--val-samples", "2", "--checkpoint-every", "1000", "--quiet", *SETS, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def one_step_checkpoint(clean_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "m.pt"
    assert main(_argv(clean_dir, out, 1)) == 0
    return out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("damage", ["truncated", "empty", "bitflip", "foreign"])
def test_resuming_a_damaged_checkpoint_is_one_line(tmp_path, clean_dir, one_step_checkpoint, capsys, damage):
    data = one_step_checkpoint.read_bytes()
    out = tmp_path / "m.pt"
    if damage == "truncated":
        out.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        out.write_bytes(b"")
    elif damage == "bitflip":
        flipped = bytearray(data)
        for i in range(len(flipped) // 3, len(flipped) // 3 + 2000):
            flipped[i] ^= 0xFF
        out.write_bytes(bytes(flipped))
    else:
        torch.save([1, 2, 3], out)
    capsys.readouterr()
    assert main(_argv(clean_dir, out, 2)) == 2
    line = _one_error_line(capsys)
    assert line.startswith("edgerestore train: error: ") and str(out) in line


def test_resuming_with_other_set_values_names_them(tmp_path, clean_dir, one_step_checkpoint, capsys):
    out = tmp_path / "m.pt"
    out.write_bytes(one_step_checkpoint.read_bytes())
    argv = [a for a in _argv(clean_dir, out, 2) if a not in SETS]  # the same run without its --set
    capsys.readouterr()
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert "was trained with" in line and "width=8" in line and "--set width=8" in line


def test_checkpoints_with_unknown_config_or_wrong_family_are_one_line(tmp_path, one_step_checkpoint):
    payload = torch.load(one_step_checkpoint, weights_only=False)
    newer = dict(payload, config={**payload["config"], "future_knob": 3})
    torch.save(newer, tmp_path / "newer.pt")
    with pytest.raises(UserError, match="no config field 'future_knob'"):
        zoo.load_checkpoint(tmp_path / "newer.pt")
    liar = dict(payload, family="cmudrn")
    torch.save(liar, tmp_path / "liar.pt")
    with pytest.raises(UserError, match="says family 'cmudrn' but its profile uffn-tiny is uffn"):
        zoo.load_checkpoint(tmp_path / "liar.pt")
    for bad in ("newer.pt", "liar.pt"):  # what export (and eval, build) see: one line, not a TypeError
        assert main(["export", "--checkpoint", str(tmp_path / bad), "--out", str(tmp_path / "e")]) == 2
    assert not (tmp_path / "e").exists()


def test_a_second_training_on_the_same_out_is_refused(tmp_path, clean_dir, capsys):
    from edgerestore.files import exclusive_lock

    out = tmp_path / "m.pt"
    with exclusive_lock(out, "--out", "another training"):  # as a first training holds it
        assert main(_argv(clean_dir, out, 1)) == 2
        line = _one_error_line(capsys)
        assert f"another training (pid {os.getpid()}) is writing {out}" in line
    assert not out.exists() and not (tmp_path / "m.log.jsonl").exists()
    assert main(_argv(clean_dir, out, 1)) == 0  # released: the next one runs
    assert not (tmp_path / "m.pt.lock").exists()


def test_an_interrupted_run_exits_128_plus_the_signal_and_says_where_it_stopped(
    tmp_path, clean_dir, capsys, monkeypatch
):
    calls = []
    original = trainer.compute_loss

    def loss_then_sigterm(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # during step 2, as a scheduler's preemption would arrive
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "compute_loss", loss_then_sigterm)
    out = tmp_path / "m.pt"
    assert main(_argv(clean_dir, out, 5)) == 128 + signal.SIGTERM
    captured = capsys.readouterr()
    assert "checkpoint:" not in captured.out
    assert captured.err.strip().splitlines()[-1] == (
        f"edgerestore train: interrupted by SIGTERM at step 2 of 5; checkpoint: {out} (run the same command to resume)"
    )
    assert zoo.load_checkpoint(out)[1]["step"] == 2


def test_resuming_a_finished_run_says_there_is_nothing_to_train(
    tmp_path, clean_dir, one_step_checkpoint, capsys
):
    out = tmp_path / "m.pt"
    out.write_bytes(one_step_checkpoint.read_bytes())
    capsys.readouterr()
    assert main(_argv(clean_dir, out, 1)) == 0
    assert "already at step 1, so there is nothing to train" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--branch-only", ""], "--branch-only needs a condition name"),
        (["--router-from", "x.pt"], "add --router-only"),
        (["--branch-from", "x.pt"], "add --branch-only NAME"),
    ],
)
def test_stage_options_that_used_to_be_ignored_are_refused(tmp_path, clean_dir, capsys, extra, message):
    assert main(_argv(clean_dir, tmp_path / "m.pt", 1, *extra)) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.slow
def test_paired_training_resumes_exactly(tmp_path, paired_dir):
    """Crops and flips of paired folders draw from torch's generator: seeded per item from (seed, step)."""

    def argv(out: Path, *extra: str) -> list[str]:
        return [
            "train", "--profile", "cmudrn-t3", "--paired", str(paired_dir), "--out", str(out), "--steps", "4",
            "--batch-size", "2", "--patch-size", "32", "--workers", "0", "--warmup", "1", "--val-every", "1000",
            "--val-samples", "1", "--quiet", "--set", "width=4", "--set", "loops=1", *extra,
        ]  # fmt: skip

    straight, resumed = tmp_path / "straight.pt", tmp_path / "resumed.pt"
    assert main(argv(straight)) == 0
    assert main(argv(resumed, "--stop-at", "2")) == 0
    assert main(argv(resumed)) == 0
    a, b = torch.load(straight, weights_only=False)["model"], torch.load(resumed, weights_only=False)["model"]
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"


def _ddp_agree(rank: int, init: str, result_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    session = trainer._Session(Path(result_dir) / "log", 10, 0, "t", False)
    stopped_at = None
    for step in range(1, 10):
        if rank == 1 and step == 3:
            session._on_term(signal.SIGINT, None)  # only rank 1 caught the signal
        if session.agree_to_stop(2):
            stopped_at = step
            break
    Path(result_dir, f"rank{rank}").write_text(f"{stopped_at} {session.signal}")
    dist.destroy_process_group()


def test_ddp_ranks_agree_to_stop_after_the_same_step(tmp_path):
    import torch.multiprocessing as mp

    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_ddp_agree, args=(init, str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == f"3 {int(signal.SIGINT)}"


@pytest.mark.slow
def test_sigint_to_torchrun_stops_both_ranks_with_one_report(tmp_path, clean_dir):
    out, ship = tmp_path / "ddp.pt", tmp_path / "ship.pt"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29547",
        "-m", "edgerestore.cli", *_argv(clean_dir, out, 400)[:-len(SETS)], "--checkpoint-every", "1",
        "--threads", "1", "--ship", str(ship), *SETS,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 240
    while not out.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert out.exists(), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    t0 = time.time()
    stdout, stderr = proc.communicate(timeout=120)
    assert time.time() - t0 < 25, "torchrun took too long to stop"
    assert proc.returncode != 0
    assert "Connection closed by peer" not in stderr
    assert stderr.count("edgerestore train: interrupted by SIGINT") == 1, stderr[-2000:]
    assert "checkpoint:" not in stdout and not ship.exists()
    assert 1 <= zoo.load_checkpoint(out)[1]["step"] < 400
