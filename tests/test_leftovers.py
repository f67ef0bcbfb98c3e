"""Leftovers and gaps (issue 25, item 10): what a killed or interrupted command leaves behind, and the
options that used to be accepted out of range or end in a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgerestore.cli import main
from edgerestore.files import remove_stale_partials, write_bytes_atomic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    from engine_graphs import write_export_dir

    return write_export_dir(tmp_path_factory.mktemp("export"), variants=())


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_partial_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".m.pt.{dead_pid}-0123abcd.partial"  # what SIGKILL mid-write leaves
    live = tmp_path / f".m.pt.{os.getppid()}-4567ef01.partial"  # a writer that is still running
    other = tmp_path / f".n.pt.{dead_pid}-89abcdef.partial"  # another file's: not this write's business
    for p in (stale, live, other):
        p.write_bytes(b"half")
    write_bytes_atomic(tmp_path / "m.pt", b"whole")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "m.pt").read_bytes() == b"whole"
    remove_stale_partials(tmp_path / "n.pt")
    assert not other.exists()


def test_sigterm_during_calibrate_leaves_no_temporary_folder(tmp_path, export_dir, monkeypatch, capsys):
    import shutil

    from edgerestore.precision import fp16

    export = tmp_path / "uffn"
    shutil.copytree(export_dir, export)
    original = fp16.guard

    def guard_then_sigterm(*args, **kwargs):
        assert list(export.glob("edgerestore-fp16-*")), "the temporary folder should exist here"
        os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(fp16, "guard", guard_then_sigterm)
    code = main(["calibrate", "--export", str(export), "--precision", "fp16", "--frames", "synthetic:6"])
    assert code == 143 and capsys.readouterr().err.strip().endswith("terminated (SIGTERM)")
    assert not list(export.glob("edgerestore-*")) and not (export / "fp16").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the command's handler is gone again


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_calibrate_into_a_read_only_export_is_one_line(tmp_path, export_dir, capsys):
    import shutil

    export = tmp_path / "uffn"
    shutil.copytree(export_dir, export)
    export.chmod(0o555)
    try:
        code = main(["calibrate", "--export", str(export), "--precision", "fp16", "--frames", "synthetic:6"])
    finally:
        export.chmod(0o755)
    assert code == 2 and "cannot write" in _one_line(capsys)


def test_calibrate_checks_the_export_folder_is_writable_before_any_frame(
    tmp_path, export_dir, monkeypatch, capsys
):
    """Runs as root too: the probe itself is made to fail, as on a read-only mount."""
    import edgerestore.files as files

    real_open = open

    def read_only_open(path, mode="r", *args, **kwargs):
        if ".edgerestore-probe." in str(path):
            raise PermissionError(13, "Read-only file system")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(files, "open", read_only_open, raising=False)
    code = main(["calibrate", "--export", str(export_dir), "--precision", "fp16", "--frames", "synthetic:6"])
    line = _one_line(capsys)
    assert code == 2 and "cannot write" in line and "Read-only file system" in line and "--export" in line


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--long-side", "-5"], "--long-side -5 must be at least 32 px"),
        (["--limit", "-1"], "--limit -1 must be >= 1"),
        (["--holdout", "-2"], "--holdout -2 must be >= 0"),
        (["--gt-loss-db", "nan"], "--gt-loss-db nan must be a finite number"),
        (["--fp16-min-psnr", "inf"], "--fp16-min-psnr inf must be a finite number"),
        (["--router-agreement", "1.5"], "--router-agreement 1.5 must be between 0 and 1"),
        (["--frames", "synthetic:abc"], "'synthetic:abc': the frame count after 'synthetic:' must be"),
        (["--frames", "synthetic:0"], "must be a positive integer"),
    ],
)
def test_calibrate_options_out_of_range_are_one_line(tmp_path, export_dir, capsys, extra, message):
    argv = ["calibrate", "--export", str(export_dir), "--precision", "fp16", *extra]
    if "--frames" not in extra:
        argv += ["--frames", "synthetic:6"]
    assert main(argv) == 2
    assert message in _one_line(capsys)
    assert not (export_dir / "fp16").exists()


def test_export_parity_sizes_of_zero_are_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    code = main(["export", "--profile", "uffn-tiny", "--out", str(tmp_path / "e"), "--parity-sizes", "0x0"])
    assert code == 2 and "at least 1 px" in _one_line(capsys)


def test_shipped_weights_hold_no_optimizer_state_and_load_exactly():
    torch = pytest.importorskip("torch")
    from edgerestore.models import zoo

    shipped = sorted((ROOT / "weights").glob("*.pt"))
    assert shipped
    for path in shipped:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        stages = {"main": payload, "router_stage": payload.get("router_stage") or {}}
        stages.update({f"branch {k}": v for k, v in (payload.get("branch_stages") or {}).items()})
        for name, stage in stages.items():
            assert not {"optimizer", "scheduler"} & set(stage), f"{path.name} {name} holds optimizer state"
        model, _ = zoo.load_checkpoint(path)  # strict: every tensor present and of its shape
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in payload["model"].items()), path.name
